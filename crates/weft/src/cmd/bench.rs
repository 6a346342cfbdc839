//! `weft bench produce|consume|e2e|groups`: a librdkafka load generator for any Kafka-protocol
//! broker.
//!
//! Every record's first 8 bytes carry its send time (nanoseconds since the bench started, in
//! this process's monotonic clock), so the producer's delivery callback and the e2e consumer
//! measure latency without a side table. Throughput counts payload bytes only; MB is 10^6.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use hdrhistogram::Histogram;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::{ClientArgs, REQUEST_TIMEOUT, describe_code, describe_error};

mod cpu;
mod gateway;
mod groups;
mod produce_raw;
mod webhooks;

#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, clap::Subcommand)]
enum Mode {
    /// Producer throughput and acknowledgement latency
    Produce(Load),
    /// The broker's side of producer throughput: one prebuilt Produce request sent over and
    /// over (a client that costs almost nothing per byte), with CPU time per byte
    ProduceRaw(produce_raw::RawArgs),
    /// Consumer throughput (fills a fresh topic first unless --topic names one)
    Consume(Load),
    /// End-to-end latency (send to receive) at a fixed rate
    E2e(Load),
    /// Consumer-group rebalance pauses (scale-out, crash) per protocol, and the broker's idle
    /// cost of many groups
    Groups(groups::GroupsArgs),
    /// The gateway's live streams: N SSE clients of a topic produced at a rate
    /// (delivered/expected, latency, server memory), or the memory of N idle connections
    Gateway(gateway::GatewayArgs),
    /// Webhook deliveries/s from the gateway to a fast local target the bench serves
    /// (subscribed through the API), with produce→delivery latency and a same-run ceiling
    Webhooks(webhooks::WebhooksArgs),
    /// One group member process of `bench groups` (internal)
    #[command(hide = true)]
    GroupMember(groups::MemberArgs),
}

#[derive(Debug, Clone, clap::Args)]
struct Load {
    /// Topic (default: a new topic `weft-bench-<ms>` with --partitions partitions); created
    /// when missing
    #[arg(long)]
    topic: Option<String>,
    /// Number of records
    #[arg(long, default_value_t = 100_000)]
    records: u64,
    /// Payload size in bytes (at least 8: the send time)
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(8..))]
    record_size: u64,
    /// Partitions of the topic the bench creates
    #[arg(long, default_value_t = 1)]
    partitions: i32,
    /// Acknowledgements: all (-1), 1 or 0
    #[arg(long, default_value = "1", value_parser = ["all", "-1", "1", "0"])]
    acks: String,
    /// Target send rate in records/s (default: as fast as possible; e2e: 1000)
    #[arg(long)]
    rate: Option<u64>,
    /// librdkafka batch.size (bytes per partition batch)
    #[arg(long)]
    batch_size: Option<u64>,
    /// librdkafka batch.num.messages
    #[arg(long)]
    batch_messages: Option<u64>,
    /// librdkafka linger.ms
    #[arg(long)]
    linger_ms: Option<f64>,
    /// Compression codec
    #[arg(long, default_value = "none", value_parser = ["none", "gzip", "snappy", "lz4", "zstd"])]
    compression: String,
    /// Idempotent producer (needs --acks all)
    #[arg(long)]
    idempotence: bool,
    /// The broker's process id, to report its CPU time per payload byte (produce and
    /// consume; Linux /proc)
    #[arg(long)]
    broker_pid: Option<u32>,
}

impl Load {
    /// Defaults, with this topic and partition count (for `ensure_topic`).
    fn for_topic(topic: Option<String>, partitions: i32) -> Load {
        Load {
            topic,
            records: 0,
            record_size: 8,
            partitions,
            acks: "1".to_owned(),
            rate: None,
            batch_size: None,
            batch_messages: None,
            linger_ms: None,
            compression: "none".to_owned(),
            idempotence: false,
            broker_pid: None,
        }
    }
}

pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    cpu::keep_heap();
    super::blocking(move || match args.mode {
        Mode::Produce(load) => bench_produce(&args.client, &load),
        Mode::ProduceRaw(raw) => {
            // Its connection is a plain socket (a prebuilt frame written over and over): no
            // TLS, no SASL. Refused rather than sent in clear to a secured port.
            let label = security_label(&args.client);
            if label != "PLAINTEXT" {
                bail!(
                    "bench produce-raw speaks PLAINTEXT only (asked: {label}); measure security with bench produce"
                );
            }
            produce_raw::bench_produce_raw(&args.client, &raw)
        }
        Mode::Consume(load) => bench_consume(&args.client, &load),
        Mode::E2e(load) => bench_e2e(&args.client, &load),
        Mode::Groups(g) => groups::bench_groups(&args.client, &g),
        Mode::Gateway(g) => gateway::bench_gateway(&args.client, &g),
        Mode::Webhooks(w) => webhooks::bench_webhooks(&args.client, &w),
        Mode::GroupMember(m) => groups::member(&args.client, &m),
    })
    .await
}

/// The bench's clock origin: send times are nanoseconds since this instant.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

fn sent_at(payload: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(payload.get(..8)?.try_into().ok()?))
}

/// Latencies in microseconds, 1 µs to 10 min, 3 significant digits.
fn histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 600_000_000, 3).context("histogram bounds")
}

fn record_latency(h: &Mutex<Histogram<u64>>, sent_ns: u64) {
    let micros = (now_ns().saturating_sub(sent_ns) / 1_000).max(1);
    if let Ok(mut h) = h.lock() {
        h.saturating_record(micros);
    }
}

#[derive(Default)]
struct Acks {
    ok: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
    latency: Mutex<Option<Histogram<u64>>>,
}

impl ClientContext for Acks {}
impl ProducerContext for Acks {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                if let Some(sent) = m.payload().and_then(sent_at)
                    && let Ok(mut h) = self.latency.lock()
                    && let Some(h) = h.as_mut()
                {
                    h.saturating_record((now_ns().saturating_sub(sent) / 1_000).max(1));
                }
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut first) = self.first_error.lock() {
                    first.get_or_insert_with(|| describe_error(e));
                }
            }
        }
    }
}

/// The security the client properties ask for (`--command-config`, `-X`), for the header
/// of every result so figures over PLAINTEXT, SSL, SASL_PLAINTEXT and SASL_SSL are told
/// apart: `PLAINTEXT`, `SSL`, `SASL_SSL/SCRAM-SHA-512`… (librdkafka's defaults: PLAINTEXT,
/// and GSSAPI as the SASL mechanism).
fn security_label(client: &ClientArgs) -> String {
    let last = |keys: &[&str]| {
        client
            .properties
            .iter()
            .rev()
            .find(|(k, _)| keys.contains(&k.as_str()))
            .map(|(_, v)| v.to_ascii_uppercase())
    };
    let protocol = last(&["security.protocol"]).unwrap_or_else(|| "PLAINTEXT".to_owned());
    if protocol.starts_with("SASL") {
        let mechanism =
            last(&["sasl.mechanism", "sasl.mechanisms"]).unwrap_or_else(|| "GSSAPI".to_owned());
        format!("{protocol}/{mechanism}")
    } else {
        protocol
    }
}

/// Creates the topic unless it exists; returns its name.
fn ensure_topic(client: &ClientArgs, load: &Load) -> anyhow::Result<String> {
    let name = load.topic.clone().unwrap_or_else(|| {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        format!("weft-bench-{ms}")
    });
    let admin: AdminClient<DefaultClientContext> = client
        .config(&[])
        .create()
        .context("creating the admin client")?;
    let topic = NewTopic::new(&name, load.partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
    let results = tokio::runtime::Handle::current()
        .block_on(admin.create_topics([&topic], &options))
        .map_err(|e| super::no_answer(e, &client.bootstrap))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => bail!("cannot create topic {name:?}: {}", describe_code(code)),
        }
    }
    Ok(name)
}

fn producer(client: &ClientArgs, load: &Load) -> anyhow::Result<ThreadedProducer<Acks>> {
    let mut settings: Vec<(&str, String)> = vec![
        ("acks", load.acks.clone()),
        ("compression.codec", load.compression.clone()),
        ("enable.idempotence", load.idempotence.to_string()),
        // The producer's queue is bounded by bytes, as the Java producer's 32 MiB
        // buffer.memory: enough for several full batches in flight, while an unbounded
        // one (librdkafka's default allows 1 GiB) only adds queueing delay to every ack.
        ("queue.buffering.max.messages", "1000000".to_owned()),
        ("queue.buffering.max.kbytes", "32768".to_owned()),
    ];
    if let Some(v) = load.batch_size {
        settings.push(("batch.size", v.to_string()));
    }
    if let Some(v) = load.batch_messages {
        settings.push(("batch.num.messages", v.to_string()));
    }
    if let Some(v) = load.linger_ms {
        settings.push(("linger.ms", v.to_string()));
    }
    let borrowed: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let acks = Acks {
        latency: Mutex::new(Some(histogram()?)),
        ..Acks::default()
    };
    client
        .config(&borrowed)
        .create_with_context(acks)
        .context("creating the producer")
}

/// Sends `load.records` records, paced to `rate` when given; returns when all are
/// acknowledged (or failed).
fn send_all(
    producer: &ThreadedProducer<Acks>,
    topic: &str,
    load: &Load,
    rate: Option<u64>,
) -> anyhow::Result<()> {
    let mut payload = vec![0xA5u8; load.record_size as usize];
    let start = Instant::now();
    for i in 0..load.records {
        if let Some(rate) = rate.filter(|r| *r > 0) {
            let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        payload[..8].copy_from_slice(&now_ns().to_le_bytes());
        let record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).payload(&payload);
        if let Err(e) = super::send_when_room(producer, record, Duration::from_micros(200)) {
            bail!("cannot produce to {topic:?}: {}", describe_error(&e));
        }
    }
    producer
        .flush(Duration::from_secs(300))
        .map_err(|e| anyhow::anyhow!("flush: {}", describe_error(&e)))
}

fn print_throughput(what: &str, records: u64, bytes: u64, elapsed: Duration) {
    let secs = elapsed.as_secs_f64().max(1e-9);
    println!(
        "{what}: {:.0} msgs/s, {:.2} MB/s ({records} records, {bytes} bytes in {secs:.3} s)",
        records as f64 / secs,
        bytes as f64 / secs / 1e6,
    );
}

fn print_latency(what: &str, h: &Histogram<u64>) {
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{what} latency ms: p50={:.3} p99={:.3} p99.9={:.3} max={:.3} ({} samples)",
        ms(0.5),
        ms(0.99),
        ms(0.999),
        h.max() as f64 / 1000.0,
        h.len()
    );
}

fn failed_deliveries(acks: &Acks) -> Option<String> {
    let failed = acks.failed.load(Ordering::Relaxed);
    (failed > 0).then(|| {
        let first = acks
            .first_error
            .lock()
            .ok()
            .and_then(|e| e.clone())
            .unwrap_or_default();
        format!("{failed} deliveries failed, first: {first}")
    })
}

fn bench_produce(client: &ClientArgs, load: &Load) -> anyhow::Result<ExitCode> {
    let topic = ensure_topic(client, load)?;
    println!(
        "bench produce: {} records of {} B to {topic} ({} partitions, acks={}, {})",
        load.records,
        load.record_size,
        load.partitions,
        load.acks,
        security_label(client)
    );
    let producer = producer(client, load)?;
    epoch();
    let cpu = cpu::CpuMeter::start(load.broker_pid)?;
    let start = Instant::now();
    send_all(&producer, &topic, load, load.rate)?;
    let elapsed = start.elapsed();
    let acks = producer.context();
    let ok = acks.ok.load(Ordering::Relaxed);
    print_throughput("produce", ok, ok * load.record_size, elapsed);
    cpu.report(ok * load.record_size, elapsed)?;
    if let Ok(h) = acks.latency.lock()
        && let Some(h) = h.as_ref()
    {
        print_latency("ack", h);
    }
    if let Some(failure) = failed_deliveries(acks) {
        eprintln!("error: {failure}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// A consumer assigned to every partition of `topic` at `offsets` (by partition).
fn consumer_at(
    client: &ClientArgs,
    topic: &str,
    start: impl Fn(&BaseConsumer, i32) -> anyhow::Result<Offset>,
) -> anyhow::Result<(BaseConsumer, usize)> {
    let consumer: BaseConsumer = client
        .config(&[
            ("group.id", "weft-bench"),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
        ])
        .create()
        .context("creating the consumer")?;
    let metadata = consumer
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .map_err(|e| super::no_answer(e, &client.bootstrap))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        bail!("topic {topic:?} has no partitions in the broker's metadata");
    }
    let mut list = TopicPartitionList::new();
    for p in &partitions {
        list.add_partition_offset(topic, *p, start(&consumer, *p)?)
            .map_err(|e| anyhow::anyhow!("assignment: {}", describe_error(&e)))?;
    }
    consumer
        .assign(&list)
        .map_err(|e| anyhow::anyhow!("assign: {}", describe_error(&e)))?;
    Ok((consumer, partitions.len()))
}

/// Stop waiting for records when none arrived for this long.
const IDLE: Duration = Duration::from_secs(10);

fn bench_consume(client: &ClientArgs, load: &Load) -> anyhow::Result<ExitCode> {
    let topic = ensure_topic(client, load)?;
    if load.topic.is_none() {
        let producer = producer(client, load)?;
        send_all(&producer, &topic, load, None)?;
        if let Some(failure) = failed_deliveries(producer.context()) {
            bail!("filling {topic}: {failure}");
        }
    }
    println!(
        "bench consume: {} records of {} B from {topic} ({})",
        load.records,
        load.record_size,
        security_label(client)
    );
    let (consumer, _) = consumer_at(client, &topic, |_, _| Ok(Offset::Beginning))?;
    let cpu = cpu::CpuMeter::start(load.broker_pid)?;
    let start = Instant::now();
    let (mut count, mut bytes) = (0u64, 0u64);
    let mut last = Instant::now();
    while count < load.records && last.elapsed() < IDLE {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                count += 1;
                bytes += m.payload_len() as u64;
                last = Instant::now();
            }
            Some(Err(e)) => bail!("consuming {topic}: {}", describe_error(&e)),
            None => {}
        }
    }
    print_throughput("consume", count, bytes, last.duration_since(start));
    cpu.report(bytes, last.duration_since(start))?;
    if count < load.records {
        eprintln!(
            "error: only {count} of {} records arrived (idle for {IDLE:?})",
            load.records
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn bench_e2e(client: &ClientArgs, load: &Load) -> anyhow::Result<ExitCode> {
    let topic = ensure_topic(client, load)?;
    let rate = load.rate.unwrap_or(1000);
    println!(
        "bench e2e: {} records of {} B to {topic} at {rate} records/s ({} partitions, acks={}, {})",
        load.records,
        load.record_size,
        load.partitions,
        load.acks,
        security_label(client)
    );
    // Start at the current end, read explicitly so no record sent afterwards is skipped.
    let (consumer, _) = consumer_at(client, &topic, |c, p| {
        let (_, high) = c
            .fetch_watermarks(&topic, p, REQUEST_TIMEOUT)
            .map_err(|e| anyhow::anyhow!("watermarks: {}", describe_error(&e)))?;
        Ok(Offset::Offset(high))
    })?;
    let latency = Arc::new(Mutex::new(histogram()?));
    let received = Arc::new(AtomicU64::new(0));
    epoch();
    let reader = {
        let (latency, received) = (Arc::clone(&latency), Arc::clone(&received));
        let records = load.records;
        std::thread::spawn(move || -> anyhow::Result<()> {
            let mut last = Instant::now();
            while received.load(Ordering::Relaxed) < records && last.elapsed() < IDLE {
                match consumer.poll(Duration::from_millis(100)) {
                    Some(Ok(m)) => {
                        if let Some(sent) = m.payload().and_then(sent_at) {
                            record_latency(&latency, sent);
                        }
                        received.fetch_add(1, Ordering::Relaxed);
                        last = Instant::now();
                    }
                    Some(Err(e)) => bail!("consuming: {}", describe_error(&e)),
                    None => {}
                }
            }
            Ok(())
        })
    };
    let producer = producer(client, load)?;
    let start = Instant::now();
    send_all(&producer, &topic, load, Some(rate))?;
    let sent_in = start.elapsed();
    reader
        .join()
        .map_err(|_| anyhow::anyhow!("consumer thread panicked"))??;
    let acks = producer.context();
    let ok = acks.ok.load(Ordering::Relaxed);
    print_throughput("produce", ok, ok * load.record_size, sent_in);
    if let Ok(h) = acks.latency.lock()
        && let Some(h) = h.as_ref()
    {
        print_latency("ack", h);
    }
    if let Ok(h) = latency.lock() {
        print_latency("e2e", &h);
    }
    let got = received.load(Ordering::Relaxed);
    if let Some(failure) = failed_deliveries(acks) {
        eprintln!("error: {failure}");
        return Ok(ExitCode::FAILURE);
    }
    if got < load.records {
        eprintln!("error: only {got} of {} records arrived", load.records);
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_labels() {
        let label = |kv: &[(&str, &str)]| {
            security_label(&ClientArgs {
                bootstrap: String::new(),
                properties: kv
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            })
        };
        assert_eq!(label(&[]), "PLAINTEXT");
        assert_eq!(label(&[("security.protocol", "ssl")]), "SSL");
        assert_eq!(
            label(&[
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanisms", "SCRAM-SHA-256"),
                ("sasl.mechanism", "SCRAM-SHA-512"),
            ]),
            "SASL_SSL/SCRAM-SHA-512"
        );
        // The last one wins, as librdkafka applies them (-X after the command config).
        assert_eq!(
            label(&[
                ("security.protocol", "SASL_SSL"),
                ("security.protocol", "SASL_PLAINTEXT"),
                ("sasl.mechanism", "PLAIN"),
            ]),
            "SASL_PLAINTEXT/PLAIN"
        );
        assert_eq!(
            label(&[("security.protocol", "SASL_PLAINTEXT")]),
            "SASL_PLAINTEXT/GSSAPI"
        );
    }
}
