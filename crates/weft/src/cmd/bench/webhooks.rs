//! `weft bench webhooks`: webhook deliveries per second from the gateway to a fast local
//! target. The bench serves the target itself (answers 204 at once, counts deliveries and
//! reads each event's send time from its body), subscribes it through `POST /v1/webhooks`,
//! produces N records with librdkafka and reports deliveries/s from the first produce to
//! the last delivery, produce→delivery latency, and the ceiling of the same run: the same
//! target driven by a local HTTP client with the gateway's per-target concurrency.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use hdrhistogram::Histogram;
use http_body_util::Full;
use hyper::Method;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use serde_json::json;

use super::super::events::Http;
use super::super::{ClientArgs, send_when_room};
use super::gateway::{ensure_topic, timed_value};
// The `"t":<ns>` the producer put in the record, wherever the gateway's body holds it.
use super::gateway::sent_time as sent_at;
use super::{histogram, now_ns};

#[derive(Debug, clap::Args)]
pub(crate) struct WebhooksArgs {
    /// The gateway's HTTP address (host:port of `weft serve --http-listen`)
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: String,
    /// Records produced (one delivery each)
    #[arg(long, default_value_t = 20_000)]
    records: u64,
    /// Payload bytes per record (JSON string padding included)
    #[arg(long, default_value_t = 100)]
    record_size: usize,
    /// The subscription's ordering: `none` (all concurrently) or `key` (in order per key)
    #[arg(long, default_value = "none")]
    ordering: String,
    /// Distinct record keys (matters with `--ordering key`)
    #[arg(long, default_value_t = 64)]
    keys: u64,
    /// Concurrent requests of the ceiling's client (the gateway's default per-target
    /// bulkhead is 16)
    #[arg(long, default_value_t = 16)]
    ceiling_concurrency: usize,
}

/// What the target saw.
struct Target {
    count: AtomicU64,
    /// Nanoseconds (bench clock) of the last delivery.
    last_ns: AtomicU64,
    latency: Mutex<Histogram<u64>>,
}

async fn hook(State(t): State<Arc<Target>>, body: Bytes) -> StatusCode {
    let now = now_ns();
    t.count.fetch_add(1, Ordering::Relaxed);
    t.last_ns.fetch_max(now, Ordering::Relaxed);
    if let Some(sent) = sent_at(&body)
        && let Ok(mut h) = t.latency.lock()
    {
        h.saturating_record((now.saturating_sub(sent) / 1_000).max(1));
    }
    StatusCode::NO_CONTENT
}

pub(super) fn bench_webhooks(client: &ClientArgs, args: &WebhooksArgs) -> anyhow::Result<ExitCode> {
    tokio::runtime::Handle::current().block_on(run(client, args))
}

async fn run(client: &ClientArgs, args: &WebhooksArgs) -> anyhow::Result<ExitCode> {
    super::epoch();
    let target = Arc::new(Target {
        count: AtomicU64::new(0),
        last_ns: AtomicU64::new(0),
        latency: Mutex::new(histogram()?),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(Arc::clone(&target));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let topic = ensure_topic(client, Some(format!("weft-bench-wh-{ms}"))).await?;
    let api = Http::new(&format!("http://{}", args.http))?;
    let created = api
        .call(
            Method::POST,
            "/v1/webhooks",
            Some(json!({
                "topic": topic,
                "url": format!("http://{addr}/hook"),
                "ordering": args.ordering,
                "start": "earliest",
            })),
        )
        .await
        .context("subscribing the target")?;
    let id = created["id"]
        .as_str()
        .context("the subscription has no id")?
        .to_owned();
    println!(
        "bench webhooks: {} records of {} B on {topic} → http://{addr}/hook (ordering {}, {} keys)",
        args.records, args.record_size, args.ordering, args.keys
    );

    let start_ns = now_ns();
    let produced = produce(client, &topic, args).await?;
    // Deliveries drain: wait until all arrived or nothing arrived for 10 s.
    let mut last = target.count.load(Ordering::Relaxed);
    let mut last_at = Instant::now();
    while last < produced && last_at.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = target.count.load(Ordering::Relaxed);
        if now != last {
            (last, last_at) = (now, Instant::now());
        }
    }
    let delivered = target.count.load(Ordering::Relaxed);
    let window = Duration::from_nanos(
        target
            .last_ns
            .load(Ordering::Relaxed)
            .saturating_sub(start_ns),
    );
    println!(
        "delivered: {delivered} of {produced} in {:.2} s from the first produce to the last delivery: {:.0} deliveries/s",
        window.as_secs_f64(),
        delivered as f64 / window.as_secs_f64().max(1e-9)
    );
    if let Ok(h) = target.latency.lock() {
        println!(
            "latency produce→target (ms): p50 {:.1}, p99 {:.1}, max {:.1}",
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            h.max() as f64 / 1000.0
        );
    }
    if let Err(e) = api
        .call(Method::DELETE, &format!("/v1/webhooks/{id}"), None)
        .await
    {
        println!("could not delete the subscription {id}: {e}");
    }

    let ceiling = ceiling(addr, args, &target).await?;
    println!(
        "ceiling (the same target, a local hyper client, {} concurrent requests, 3 s): {ceiling:.0} requests/s",
        args.ceiling_concurrency
    );
    server.abort();
    Ok(if delivered >= produced {
        ExitCode::SUCCESS
    } else {
        println!("error: {} deliveries missing", produced - delivered);
        ExitCode::FAILURE
    })
}

/// Produces `args.records` records as fast as the broker takes them; returns how many were
/// acknowledged.
async fn produce(client: &ClientArgs, topic: &str, args: &WebhooksArgs) -> anyhow::Result<u64> {
    let producer: ThreadedProducer<rdkafka::producer::DefaultProducerContext> = client
        .config(&[("linger.ms", "5"), ("acks", "1")])
        .create()
        .context("creating the producer")?;
    let (topic, records, size, keys) = (
        topic.to_owned(),
        args.records,
        args.record_size,
        args.keys.max(1),
    );
    tokio::task::spawn_blocking(move || {
        for i in 0..records {
            let value = timed_value(size);
            let key = format!("k{}", i % keys);
            let record = BaseRecord::to(&topic).key(&key).payload(&value);
            send_when_room(&producer, record, Duration::from_millis(1))
                .map_err(|e| anyhow::anyhow!("produce: {e}"))?;
        }
        producer
            .flush(Duration::from_secs(60))
            .map_err(|e| anyhow::anyhow!("producer flush: {e}"))?;
        Ok(records)
    })
    .await
    .context("producer thread")?
}

/// Requests per second the target answers a local client sending the same size of body
/// with `ceiling_concurrency` requests in flight.
async fn ceiling(
    addr: std::net::SocketAddr,
    args: &WebhooksArgs,
    target: &Arc<Target>,
) -> anyhow::Result<f64> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let body = Bytes::from(format!(
        r#"{{"t":0,"p":"{}"}}"#,
        "x".repeat(args.record_size.saturating_sub(12))
    ));
    let before = target.count.load(Ordering::Relaxed);
    let until = Instant::now() + Duration::from_secs(3);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.ceiling_concurrency.max(1) {
        let (client, body) = (client.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < until {
                let req = hyper::Request::post(format!("http://{addr}/hook"))
                    .header("content-type", "application/json")
                    .body(Full::new(body.clone()))?;
                let res = client.request(req).await?;
                anyhow::ensure!(
                    res.status().is_success(),
                    "target answered {}",
                    res.status()
                );
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await.context("ceiling client")??;
    }
    let done = target.count.load(Ordering::Relaxed) - before;
    Ok(done as f64 / start.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::sent_at;

    #[test]
    fn the_send_time_is_found_wherever_the_body_holds_it() {
        assert_eq!(sent_at(br#"{"t":123,"p":"xx"}"#), Some(123));
        assert_eq!(
            sent_at(br#"{"topic":"a","value":{"t": 98765,"p":""}}"#),
            Some(98765)
        );
        assert_eq!(sent_at(br#"{"value":"no time"}"#), None);
        assert_eq!(sent_at(b"\xff\xfe"), None);
    }
}
