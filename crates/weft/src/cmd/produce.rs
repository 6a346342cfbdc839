//! `weft produce <topic>`: one record per stdin line.

use std::io::{BufRead, Write as _};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rdkafka::ClientContext;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

use super::{ClientArgs, describe_error, parse_kv};

#[derive(Debug, clap::Args)]
pub(crate) struct ProduceArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Topic to write to
    topic: String,
    /// Split each line at the first occurrence of this string into key and value (a line
    /// without it is a record with a null key)
    #[arg(long)]
    key_separator: Option<String>,
    /// Header added to every record, `key=value` (repeatable)
    #[arg(long = "header", value_name = "K=V", value_parser = parse_kv)]
    headers: Vec<(String, String)>,
    /// Partition to write to (default: by key hash, or spread when there is no key)
    #[arg(long)]
    partition: Option<i32>,
    /// Acknowledgements: all (-1), 1 or 0
    #[arg(long, default_value = "all", value_parser = ["all", "-1", "1", "0"])]
    acks: String,
    /// Turn off the idempotent producer (on by default with acks=all)
    #[arg(long)]
    no_idempotence: bool,
    /// Compression codec
    #[arg(long, default_value = "none", value_parser = ["none", "gzip", "snappy", "lz4", "zstd"])]
    compression: String,
    /// Give up on a record not acknowledged within this time
    #[arg(long, default_value_t = 30_000)]
    delivery_timeout_ms: u64,
}

/// Counts deliveries; keeps the first few errors to print.
#[derive(Default)]
struct Deliveries {
    ok: AtomicU64,
    failed: AtomicU64,
    errors: Mutex<Vec<String>>,
}

const ERRORS_SHOWN: usize = 5;

impl ClientContext for Deliveries {}
impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err((err, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut errors) = self.errors.lock()
                    && errors.len() < ERRORS_SHOWN
                {
                    errors.push(describe_error(err));
                }
            }
        }
    }
}

pub(crate) async fn run(args: ProduceArgs) -> anyhow::Result<ExitCode> {
    super::blocking(move || produce(args)).await
}

fn produce(args: ProduceArgs) -> anyhow::Result<ExitCode> {
    let idempotence = !args.no_idempotence && matches!(args.acks.as_str(), "all" | "-1");
    let timeout = args.delivery_timeout_ms.to_string();
    let producer: ThreadedProducer<Deliveries> = args
        .client
        .config(&[
            ("acks", args.acks.as_str()),
            (
                "enable.idempotence",
                if idempotence { "true" } else { "false" },
            ),
            ("compression.codec", args.compression.as_str()),
            ("message.timeout.ms", timeout.as_str()),
            ("linger.ms", "5"),
        ])
        .create_with_context(Deliveries::default())
        .context("creating the producer")?;

    let headers = args.headers.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
        h.insert(Header {
            key: k,
            value: Some(v),
        })
    });
    let started = Instant::now();
    let mut sent = 0u64;
    let mut bytes = 0u64;
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        if input
            .read_until(b'\n', &mut line)
            .context("reading stdin")?
            == 0
        {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        let (key, value) = match &args.key_separator {
            Some(sep) => match find(&line, sep.as_bytes()) {
                Some(at) => (Some(&line[..at]), &line[at + sep.len()..]),
                None => (None, &line[..]),
            },
            None => (None, &line[..]),
        };
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&args.topic)
            .payload(value)
            .headers(headers.clone());
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(p) = args.partition {
            record = record.partition(p);
        }
        bytes += (value.len() + key.map_or(0, <[u8]>::len)) as u64;
        if let Err(e) = super::send_when_room(&producer, record, Duration::from_millis(1)) {
            bail!(
                "cannot produce to topic {:?}: {}",
                args.topic,
                describe_error(&e)
            );
        }
        sent += 1;
    }
    let flush_timeout = Duration::from_millis(args.delivery_timeout_ms) + Duration::from_secs(5);
    if let Err(e) = producer.flush(flush_timeout) {
        bail!(
            "records still unacknowledged after {flush_timeout:?}: {}",
            describe_error(&e)
        );
    }
    let ctx = producer.context();
    let ok = ctx.ok.load(Ordering::Relaxed);
    let failed = ctx.failed.load(Ordering::Relaxed);
    let mut err = std::io::stderr().lock();
    for e in ctx.errors.lock().map(|e| e.clone()).unwrap_or_default() {
        let _ = writeln!(err, "delivery failed: {e}");
    }
    let _ = writeln!(
        err,
        "produced {ok} of {sent} record(s) ({bytes} bytes of keys and values) to {:?} in {:.3} s; {failed} failed",
        args.topic,
        started.elapsed().as_secs_f64()
    );
    Ok(if failed == 0 && ok == sent {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}
