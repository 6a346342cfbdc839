//! `weft bench gateway`: the gateway's live streams under load — N Server-Sent Events
//! clients following one topic while a librdkafka producer writes to it at a fixed rate
//! (delivered/expected, produce→SSE latency p50/p99, the server's resident memory), or,
//! with `--rate 0`, the resident memory of N idle connections.
//!
//! Every figure comes with the ceiling of the same run: the same clients reading
//! pre-rendered SSE frames of the same size from an in-process server over loopback as fast
//! as it can write them. On a shared machine the figures are lower bounds; the load average
//! is printed beside them.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use hdrhistogram::Histogram;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::super::{ClientArgs, REQUEST_TIMEOUT, describe_code, send_when_room};
use super::{histogram, now_ns};

#[derive(Debug, clap::Args)]
pub(crate) struct GatewayArgs {
    /// The gateway's HTTP address (host:port of `weft serve --http-listen`)
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: String,
    /// SSE clients
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Events produced per second; 0 = idle mode (open the clients, measure memory)
    #[arg(long, default_value_t = 5000)]
    rate: u64,
    /// Seconds of producing (idle mode: seconds to hold the connections)
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Payload bytes per event (JSON string padding included)
    #[arg(long, default_value_t = 100)]
    record_size: usize,
    /// Topic (default: a new one-partition topic `weft-bench-gw-<ms>`)
    #[arg(long)]
    topic: Option<String>,
    /// The `weft serve` process id: its resident memory is reported (Linux /proc)
    #[arg(long)]
    server_pid: Option<u32>,
    /// Connections opened at once while connecting
    #[arg(long, default_value_t = 200)]
    connect_batch: usize,
}

/// What every client adds to.
#[derive(Default)]
struct Counters {
    /// Clients that received the stream's preamble (connected and subscribed).
    ready: AtomicU64,
    events: AtomicU64,
    failed: AtomicU64,
}

pub(super) fn bench_gateway(client: &ClientArgs, args: &GatewayArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Handle::current();
    rt.block_on(run(client, args))
}

async fn run(client: &ClientArgs, args: &GatewayArgs) -> anyhow::Result<ExitCode> {
    let addr = args.http.clone();
    let topic = ensure_topic(client, args.topic.clone()).await?;
    println!(
        "gateway bench: {} SSE clients on {topic} via {addr}, {} events/s for {} s, {} B payloads",
        args.clients, args.rate, args.duration, args.record_size
    );
    println!("load average before: {}", load_average());

    // Connect the clients, in batches (a burst of SYNs overflows the accept backlog).
    let counters = Arc::new(Counters::default());
    let latency = Arc::new(std::sync::Mutex::new(histogram()?));
    let stop = Arc::new(AtomicBool::new(false));
    let path = format!("/v1/topics/{topic}/events");
    let mut tasks = Vec::with_capacity(args.clients);
    let started = Instant::now();
    let mut rss_before = None;
    for i in 0..args.clients {
        let (addr, path) = (addr.clone(), path.clone());
        let (c, stop) = (Arc::clone(&counters), Arc::clone(&stop));
        // One client in ten records latencies: parsing every event of every client would
        // make the bench client the bottleneck.
        let latency = (i % 10 == 0).then(|| Arc::clone(&latency));
        tasks.push(tokio::spawn(async move {
            if sse_client(&addr, &path, &c, latency.as_deref(), &stop)
                .await
                .is_err()
            {
                c.failed.fetch_add(1, Ordering::Relaxed);
            }
        }));
        if i == 0 {
            // The first client starts the topic's live reader (a Kafka client: megabytes,
            // once per topic); the per-connection figure is taken from after it.
            wait_ready(&counters, 1, Duration::from_secs(60)).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            rss_before = args.server_pid.and_then(rss_bytes);
        } else if (i + 1) % args.connect_batch.max(1) == 0 {
            wait_ready(&counters, i + 1, Duration::from_secs(60)).await;
        }
    }
    wait_ready(&counters, args.clients, Duration::from_secs(120)).await;
    let ready = counters.ready.load(Ordering::Relaxed);
    let failed = counters.failed.load(Ordering::Relaxed);
    println!(
        "connected: {ready} of {} in {:.1} s ({failed} failed)",
        args.clients,
        started.elapsed().as_secs_f64()
    );
    // Let the server settle (allocations after the preamble, heartbeat timers).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_connected = args.server_pid.and_then(rss_bytes);
    if let (Some(before), Some(after)) = (rss_before, rss_connected) {
        let per = after.saturating_sub(before) / ready.saturating_sub(1).max(1);
        println!(
            "server RSS: {:.1} MB with the first connection, {:.1} MB with {ready}: {per} B per further connection",
            mb(before),
            mb(after)
        );
    }

    let mut produced = 0u64;
    // From the first produce to the last delivery seen: the window the rate is taken over.
    let mut window = Duration::from_secs(args.duration.max(1));
    if args.rate > 0 {
        let start = Instant::now();
        produced = produce(client, &topic, args).await?;
        // Delivery drains: wait until nothing arrives for a second (at most 30 s).
        let mut last = counters.events.load(Ordering::Relaxed);
        let mut last_at = Instant::now();
        while last_at.elapsed() < Duration::from_secs(1) && start.elapsed() < window * 4 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = counters.events.load(Ordering::Relaxed);
            if now != last {
                (last, last_at) = (now, Instant::now());
            }
        }
        window = last_at.duration_since(start).max(window);
    } else {
        tokio::time::sleep(Duration::from_secs(args.duration)).await;
    }
    let rss_end = args.server_pid.and_then(rss_bytes);
    stop.store(true, Ordering::Relaxed);
    for t in &tasks {
        t.abort();
    }
    if args.rate > 0 {
        let delivered = counters.events.load(Ordering::Relaxed);
        let expected = produced * ready;
        // Over the whole delivery window: a gateway that falls behind delivers after the
        // producer stopped, and that time counts.
        println!(
            "delivered: {delivered} of {expected} ({:.2} %) in {:.1} s from the first produce to the last delivery: {:.0} events/s × clients",
            100.0 * delivered as f64 / expected.max(1) as f64,
            window.as_secs_f64(),
            delivered as f64 / window.as_secs_f64()
        );
        if let Ok(h) = latency.lock() {
            println!(
                "latency produce→SSE client (ms): p50 {:.1}, p99 {:.1}, max {:.1} ({} samples)",
                h.value_at_quantile(0.5) as f64 / 1000.0,
                h.value_at_quantile(0.99) as f64 / 1000.0,
                h.max() as f64 / 1000.0,
                h.len()
            );
        }
    }
    if let Some(end) = rss_end {
        println!("server RSS at the end: {:.1} MB", mb(end));
    }
    println!("load average after: {}", load_average());

    if args.rate > 0 {
        // The ceiling: the same clients, an in-process server writing the same frames.
        let ceiling = loopback_ceiling(ready.max(1) as usize, args.record_size).await?;
        println!(
            "ceiling (same clients, in-process loopback server, same frame size, 3 s): {ceiling:.0} events/s × clients"
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn wait_ready(counters: &Counters, n: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    while (counters.ready.load(Ordering::Relaxed) + counters.failed.load(Ordering::Relaxed))
        < n as u64
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Counts acknowledged records: only those can be expected at the clients.
#[derive(Default)]
struct Acked(AtomicU64);

impl rdkafka::ClientContext for Acked {}
impl rdkafka::producer::ProducerContext for Acked {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::producer::DeliveryResult<'_>, _: ()) {
        if result.is_ok() {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Produces `rate` events/s for `duration` s; each value is a JSON object whose `t` is the
/// send time (the bench's clock), padded to `record_size`. Returns how many the broker
/// acknowledged (a server saturated by its clients may not take them all: said, not fatal).
async fn produce(client: &ClientArgs, topic: &str, args: &GatewayArgs) -> anyhow::Result<u64> {
    let producer: ThreadedProducer<Acked> = client
        .config(&[("linger.ms", "1"), ("acks", "1")])
        .create_with_context(Acked::default())
        .context("creating the producer")?;
    let (topic, rate, duration, size) =
        (topic.to_owned(), args.rate, args.duration, args.record_size);
    let sent = tokio::task::spawn_blocking(move || {
        let total = rate * duration;
        let start = Instant::now();
        let mut sent = 0u64;
        while sent < total {
            // Pace: event n is due at n / rate seconds.
            let due = start + Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let value = timed_value(size);
            let record = BaseRecord::<(), str>::to(&topic).payload(&value);
            send_when_room(&producer, record, Duration::from_millis(1))
                .map_err(|e| anyhow::anyhow!("produce: {e}"))?;
            sent += 1;
        }
        if let Err(e) = producer.flush(Duration::from_secs(30)) {
            println!("producer flush: {e} (the server is saturated)");
        }
        let acked = producer.context().0.load(Ordering::Relaxed);
        println!("produced: {sent} sent, {acked} acknowledged");
        Ok::<_, anyhow::Error>(acked)
    })
    .await
    .context("producer thread")??;
    Ok(sent)
}

/// A JSON value of `size` bytes whose `t` is the bench clock now (how the clients and the
/// webhook target measure produce→delivery latency), padded with a string.
pub(super) fn timed_value(size: usize) -> String {
    let head = format!(r#"{{"t":{},"p":""#, now_ns());
    let pad = size.saturating_sub(head.len() + 2);
    format!("{head}{}\"}}", "x".repeat(pad))
}

/// One SSE client: GET, then counts `data:` lines of the chunked body until stopped;
/// with `latency`, parses each event's `"t":` send time.
async fn sse_client(
    addr: &str,
    path: &str,
    counters: &Counters,
    latency: Option<&std::sync::Mutex<Histogram<u64>>>,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let stream = TcpStream::connect(addr).await?;
    let mut reader = BufReader::with_capacity(16 * 1024, stream);
    reader
        .get_mut()
        .write_all(
            format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\naccept: text/event-stream\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    if !line.starts_with("HTTP/1.1 200") {
        bail!("status {line:?}");
    }
    loop {
        line.clear();
        reader.read_line(&mut line).await?;
        if line.trim_end().is_empty() {
            break;
        }
    }
    read_chunked_sse(&mut reader, counters, latency, stop).await
}

/// Decodes a chunked body and counts SSE `data:` lines (the first chunk, the preamble,
/// marks the client ready).
async fn read_chunked_sse<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    counters: &Counters,
    latency: Option<&std::sync::Mutex<Histogram<u64>>>,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let mut size_line = String::new();
    let mut body: Vec<u8> = Vec::new();
    let mut ready = false;
    while !stop.load(Ordering::Relaxed) {
        size_line.clear();
        if reader.read_line(&mut size_line).await? == 0 {
            return Ok(());
        }
        let n = usize::from_str_radix(size_line.trim(), 16).context("chunk size")?;
        if n == 0 {
            return Ok(());
        }
        let start = body.len();
        body.resize(start + n + 2, 0);
        reader.read_exact(&mut body[start..]).await?;
        body.truncate(start + n);
        if !ready {
            ready = true;
            counters.ready.fetch_add(1, Ordering::Relaxed);
        }
        // Complete lines only; a partial line waits for the next chunk.
        let Some(end) = body.iter().rposition(|b| *b == b'\n') else {
            continue;
        };
        let mut events = 0;
        for l in body[..end].split(|b| *b == b'\n') {
            if let Some(data) = l.strip_prefix(b"data: ") {
                events += 1;
                if let Some(h) = latency
                    && let Some(sent) = sent_time(data)
                {
                    let micros = (now_ns().saturating_sub(sent) / 1_000).max(1);
                    if let Ok(mut h) = h.lock() {
                        h.saturating_record(micros);
                    }
                }
            }
        }
        counters.events.fetch_add(events, Ordering::Relaxed);
        body.drain(..=end);
    }
    Ok(())
}

/// The `"t":<digits>` of an event's value (spaces after the colon allowed).
pub(super) fn sent_time(data: &[u8]) -> Option<u64> {
    let at = data.windows(4).position(|w| w == br#""t":"#)? + 4;
    let rest = &data[at..];
    let rest = &rest[rest.iter().take_while(|b| **b == b' ').count()..];
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// Events/s × clients the bench's own clients read from an in-process server that writes
/// SSE frames of the gateway's shape and size over loopback as fast as it can.
async fn loopback_ceiling(clients: usize, record_size: usize) -> anyhow::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let data = format!(
        r#"{{"topic":"t","partition":0,"offset":123456,"timestamp":1700000000000,"key":null,"value":{{"t":1,"p":"{}"}},"headers":{{}}}}"#,
        "x".repeat(record_size.saturating_sub(12))
    );
    let event = format!("id: 0:123457\nevent: message\ndata: {data}\n\n");
    let frame = format!("{:x}\r\n{event}\r\n", event.len());
    // 64 frames per write, like a server flushing a burst.
    let burst: Arc<Vec<u8>> = Arc::new(frame.repeat(64).into_bytes());
    let preamble = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n6\r\n: ok\n\n\r\n";
    let stop = Arc::new(AtomicBool::new(false));
    let server_stop = Arc::clone(&stop);
    let server = tokio::spawn(async move {
        let mut writers = Vec::new();
        while let Ok((mut s, _)) = listener.accept().await {
            let (burst, stop) = (Arc::clone(&burst), Arc::clone(&server_stop));
            writers.push(tokio::spawn(async move {
                let mut req = [0u8; 1024];
                let _ = s.read(&mut req).await;
                if s.write_all(preamble).await.is_err() {
                    return;
                }
                while !stop.load(Ordering::Relaxed) {
                    if s.write_all(&burst).await.is_err() {
                        return;
                    }
                }
            }));
        }
    });
    let counters = Arc::new(Counters::default());
    let client_stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..clients {
        let (addr, c, stop) = (
            addr.clone(),
            Arc::clone(&counters),
            Arc::clone(&client_stop),
        );
        tasks.push(tokio::spawn(async move {
            let _ = sse_client(&addr, "/", &c, None, &stop).await;
        }));
        if (i + 1) % 200 == 0 {
            wait_ready(&counters, i + 1, Duration::from_secs(60)).await;
        }
    }
    wait_ready(&counters, clients, Duration::from_secs(60)).await;
    let from = counters.events.load(Ordering::Relaxed);
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let n = counters.events.load(Ordering::Relaxed) - from;
    let secs = t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    client_stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.abort();
    }
    server.abort();
    Ok(n as f64 / secs)
}

pub(super) async fn ensure_topic(
    client: &ClientArgs,
    topic: Option<String>,
) -> anyhow::Result<String> {
    let name = topic.unwrap_or_else(|| {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        format!("weft-bench-gw-{ms}")
    });
    let admin: AdminClient<DefaultClientContext> = client
        .config(&[])
        .create()
        .context("creating the admin client")?;
    let new = NewTopic::new(&name, 1, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
    let results = admin
        .create_topics([&new], &options)
        .await
        .context("creating the topic")?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => bail!("cannot create topic {name:?}: {}", describe_code(code)),
        }
    }
    Ok(name)
}

/// Resident set size of a process (Linux `/proc/<pid>/status`, `VmRSS`).
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}
