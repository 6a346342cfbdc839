//! `weft dlq list|inspect|redrive`: dead-letter topics written by the SDK, the gateway's
//! webhooks and the outbox relay (the envelope is `weft_resilience::dlq`'s).
//!
//! - `list`: every DLQ topic (`<topic>.dlq`, or `--suffix`) with its record count, how many
//!   were redriven and a summary of error classes.
//! - `inspect <dlq>`: the records with every header and the parsed envelope.
//! - `redrive <dlq>`: re-publishes the selected records (partition, offset range, key, error
//!   class, age) to their original topic or `--to`, with the same key, value and headers
//!   plus the redrive markers. A dry run unless `--execute`.
//!
//! What was redriven is recorded on the compacted topic `<dlq>.redriven` (created on first
//! use): one record per redriven DLQ record, keyed `<dlq>/<partition>/<offset>`, written
//! after the broker acknowledged the re-published record. A record with a marker is never
//! redriven again by this command; deleting its marker (a tombstone for the key) makes it
//! eligible again. A crash between the publish and the marker can redrive a record twice:
//! its headers (e.g. `weft-message-id`) are kept, so idempotent consumers drop the copy.
//!
//! Reading is a plain assign-and-read with librdkafka on a blocking thread (no group is
//! joined, nothing committed); re-publishing uses an idempotent producer with `acks=all`
//! and the Java-compatible `murmur2_random` partitioner, so a key lands where the SDK's
//! producer would put it.

use std::collections::{BTreeMap, HashSet};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use weft_resilience::ErrorClass;
use weft_resilience::dlq::{
    self, DeadLetter, DlqRecord, Header, Plan, Republish, Selection, Skip, TopicNaming,
};

use super::{ClientArgs, REQUEST_TIMEOUT, describe_code, describe_error};

#[derive(Debug, clap::Args)]
pub(crate) struct DlqArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Suffix that names DLQ topics (`<topic><suffix>`)
    #[arg(long, default_value = ".dlq", global = true)]
    suffix: String,
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// DLQ topics with record counts, redriven counts and error classes
    List,
    /// Print the records of a DLQ topic with every header and the parsed envelope
    Inspect {
        /// The DLQ topic
        topic: String,
        #[command(flatten)]
        select: SelectArgs,
        /// Output: text, or json (one object per line)
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        format: String,
        /// Print at most this many records
        #[arg(long)]
        max_messages: Option<usize>,
    },
    /// Re-publish selected records to their original topic (or --to); dry run unless
    /// --execute
    Redrive {
        /// The DLQ topic
        topic: String,
        #[command(flatten)]
        select: SelectArgs,
        /// Publish to this topic instead of each record's original topic
        #[arg(long)]
        to: Option<String>,
        /// Publish (without it, only print the plan)
        #[arg(long)]
        execute: bool,
    },
}

#[derive(Debug, Clone, clap::Args)]
struct SelectArgs {
    /// Only these DLQ partitions (repeatable)
    #[arg(long = "partition")]
    partitions: Vec<i32>,
    /// DLQ offsets: `<n>` or `<from>..<to>` (inclusive)
    #[arg(long, value_parser = parse_offsets)]
    offsets: Option<(i64, i64)>,
    /// Records with exactly this key (UTF-8)
    #[arg(long)]
    key: Option<String>,
    /// Records whose envelope says retryable, non-retryable or park
    #[arg(long, value_parser = parse_class)]
    error_class: Option<ErrorClass>,
    /// Records whose last failure is at least this old (`90s`, `15m`, `2h`, `7d`, `500ms`)
    #[arg(long, value_parser = parse_duration)]
    older_than: Option<Duration>,
    /// Records whose last failure is at most this old
    #[arg(long, value_parser = parse_duration)]
    newer_than: Option<Duration>,
}

impl SelectArgs {
    fn selection(&self) -> Selection {
        Selection {
            partitions: self.partitions.clone(),
            offsets: self.offsets,
            key: self.key.as_ref().map(|k| k.as_bytes().to_vec()),
            error_class: self.error_class,
            min_age: self.older_than,
            max_age: self.newer_than,
        }
    }
}

fn parse_offsets(s: &str) -> Result<(i64, i64), String> {
    let number = |v: &str| {
        v.trim()
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| format!("{v:?} is not an offset"))
    };
    let (from, to) = match s.split_once("..") {
        Some((from, to)) => (number(from)?, number(to)?),
        None => {
            let n = number(s)?;
            (n, n)
        }
    };
    if from > to {
        return Err(format!("empty offset range {from}..{to}"));
    }
    Ok((from, to))
}

fn parse_class(s: &str) -> Result<ErrorClass, String> {
    s.parse().map_err(|e: weft_resilience::Error| e.to_string())
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{s:?} needs a unit: ms, s, m, h or d"))?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("{s:?} is not a duration"))?;
    let unit_ms: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m, h or d)")),
    };
    n.checked_mul(unit_ms)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{s:?} is too long"))
}

/// A record read from a DLQ topic.
#[derive(Debug)]
struct Record {
    partition: i32,
    offset: i64,
    timestamp: Option<i64>,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<Header>,
}

impl Record {
    fn view(&self) -> DlqRecord<'_> {
        DlqRecord {
            partition: self.partition,
            offset: self.offset,
            key: self.key.as_deref(),
            timestamp: self.timestamp,
            headers: &self.headers,
        }
    }
}

pub(crate) async fn run(args: DlqArgs) -> anyhow::Result<ExitCode> {
    let naming = TopicNaming {
        dlq_suffix: args.suffix.clone(),
        ..TopicNaming::default()
    };
    if args.suffix.is_empty() {
        bail!("--suffix must not be empty");
    }
    match args.action {
        Action::List => {
            let client = args.client;
            super::blocking(move || list(&client, &naming)).await
        }
        Action::Inspect {
            topic,
            select,
            format,
            max_messages,
        } => {
            let client = args.client;
            super::blocking(move || {
                inspect(&client, &naming, &topic, &select, &format, max_messages)
            })
            .await
        }
        Action::Redrive {
            topic,
            select,
            to,
            execute,
        } => {
            redrive(
                &args.client,
                &naming,
                &topic,
                &select,
                to.as_deref(),
                execute,
            )
            .await
        }
    }
}

fn now_ms() -> i64 {
    dlq::epoch_millis(SystemTime::now())
}

fn reader(client: &ClientArgs) -> anyhow::Result<BaseConsumer> {
    // librdkafka's consumer needs a group.id even when it only assigns partitions; it never
    // joins the group nor commits.
    client
        .config(&[
            ("group.id", "weft-cli"),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("enable.partition.eof", "true"),
            ("auto.offset.reset", "earliest"),
        ])
        .create()
        .context("creating the consumer")
}

/// Partitions of `topic`, or `None` when it does not exist.
fn partitions(
    consumer: &BaseConsumer,
    client: &ClientArgs,
    topic: &str,
) -> anyhow::Result<Option<Vec<i32>>> {
    let metadata = consumer
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .map_err(|e| super::no_answer(e, &client.bootstrap))?;
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Ok(None);
    };
    match t.error() {
        None => Ok(Some(t.partitions().iter().map(|p| p.id()).collect())),
        Some(err) => {
            let code: RDKafkaErrorCode = err.into();
            if code == RDKafkaErrorCode::UnknownTopicOrPartition {
                Ok(None)
            } else {
                bail!("cannot read topic {topic:?}: {}", describe_code(code))
            }
        }
    }
}

/// Every topic name.
fn topic_names(consumer: &BaseConsumer, client: &ClientArgs) -> anyhow::Result<Vec<String>> {
    let metadata = consumer
        .fetch_metadata(None, REQUEST_TIMEOUT)
        .map_err(|e| super::no_answer(e, &client.bootstrap))?;
    let mut names: Vec<String> = metadata
        .topics()
        .iter()
        .map(|t| t.name().to_owned())
        .collect();
    names.sort_unstable();
    Ok(names)
}

/// Reads `topic` from the beginning to its end as of now, calling `each` per record.
fn read_topic(
    consumer: &BaseConsumer,
    client: &ClientArgs,
    topic: &str,
    mut each: impl FnMut(Record) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let Some(partitions) = partitions(consumer, client, topic)? else {
        bail!("topic {topic:?} not found");
    };
    // The end of each partition now; records produced later are not read.
    let mut pending: BTreeMap<i32, i64> = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    for p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, REQUEST_TIMEOUT)
            .map_err(|e| {
                anyhow::anyhow!("cannot read offsets of {topic}/{p}: {}", describe_error(&e))
            })?;
        if high > low {
            pending.insert(p, high);
            assignment
                .add_partition_offset(topic, p, Offset::Beginning)
                .map_err(|e| anyhow::anyhow!("bad partition {p}: {}", describe_error(&e)))?;
        }
    }
    if pending.is_empty() {
        return Ok(());
    }
    consumer
        .assign(&assignment)
        .map_err(|e| anyhow::anyhow!("cannot assign: {}", describe_error(&e)))?;
    let mut last_progress = Instant::now();
    while !pending.is_empty() {
        if last_progress.elapsed() > REQUEST_TIMEOUT {
            bail!(
                "reading {topic:?} stalled: no record for {REQUEST_TIMEOUT:?} with partitions {:?} unfinished",
                pending.keys().collect::<Vec<_>>()
            );
        }
        let Some(result) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = match result {
            Ok(m) => m,
            Err(KafkaError::PartitionEOF(p)) => {
                pending.remove(&p);
                continue;
            }
            Err(e) => bail!("cannot read {topic:?}: {}", describe_error(&e)),
        };
        last_progress = Instant::now();
        let (partition, offset) = (message.partition(), message.offset());
        if pending
            .get(&partition)
            .is_some_and(|high| offset + 1 >= *high)
        {
            pending.remove(&partition);
        }
        let headers = message
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| Header {
                        key: h.key.to_owned(),
                        value: h.value.map(<[u8]>::to_vec),
                    })
                    .collect()
            })
            .unwrap_or_default();
        each(Record {
            partition,
            offset,
            timestamp: message.timestamp().to_millis(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers,
        })?;
    }
    consumer
        .unassign()
        .map_err(|e| anyhow::anyhow!("cannot unassign: {}", describe_error(&e)))?;
    Ok(())
}

/// `(partition, offset)` of the records of `dlq_topic` that have a redrive marker (a
/// tombstone removes one). An absent marker topic means none.
fn redriven(
    client: &ClientArgs,
    naming: &TopicNaming,
    dlq_topic: &str,
) -> anyhow::Result<HashSet<(i32, i64)>> {
    let consumer = reader(client)?;
    let markers = naming.redriven_topic(dlq_topic);
    let mut done = HashSet::new();
    if partitions(&consumer, client, &markers)?.is_none() {
        return Ok(done);
    }
    read_topic(&consumer, client, &markers, |r| {
        let Some(key) = r.key.as_deref().and_then(|k| std::str::from_utf8(k).ok()) else {
            return Ok(());
        };
        if let Some((topic, p, o)) = dlq::parse_redrive_marker_key(key)
            && topic == dlq_topic
        {
            if r.value.is_some() {
                done.insert((p, o));
            } else {
                done.remove(&(p, o));
            }
        }
        Ok(())
    })?;
    Ok(done)
}

fn list(client: &ClientArgs, naming: &TopicNaming) -> anyhow::Result<ExitCode> {
    let consumer = reader(client)?;
    let dlqs: Vec<String> = topic_names(&consumer, client)?
        .into_iter()
        .filter(|t| naming.is_dlq(t))
        .collect();
    println!(
        "{:<40} {:>10} {:>8} {:>9}  ERROR CLASSES",
        "DLQ TOPIC", "PARTITIONS", "RECORDS", "REDRIVEN"
    );
    for topic in &dlqs {
        let partition_count = partitions(&consumer, client, topic)?.map_or(0, |p| p.len());
        let done = redriven(client, naming, topic)?;
        let mut records = 0u64;
        let mut redriven_count = 0u64;
        let mut classes: BTreeMap<String, u64> = BTreeMap::new();
        let topic_reader = reader(client)?;
        read_topic(&topic_reader, client, topic, |r| {
            records += 1;
            if done.contains(&(r.partition, r.offset)) {
                redriven_count += 1;
            }
            let class = dlq::last_header(&r.headers, dlq::ERROR_CLASS)
                .and_then(Header::value_str)
                .unwrap_or("unknown")
                .to_owned();
            *classes.entry(class).or_default() += 1;
            Ok(())
        })?;
        let summary = classes
            .iter()
            .map(|(c, n)| format!("{c}={n}"))
            .collect::<Vec<_>>()
            .join(" ");
        println!(
            "{topic:<40} {partition_count:>10} {records:>8} {redriven_count:>9}  {}",
            if summary.is_empty() { "-" } else { &summary }
        );
    }
    eprintln!("{} DLQ topic(s)", dlqs.len());
    Ok(ExitCode::SUCCESS)
}

fn lossy(bytes: Option<&[u8]>) -> Option<String> {
    bytes.map(|b| String::from_utf8_lossy(b).into_owned())
}

fn inspect(
    client: &ClientArgs,
    naming: &TopicNaming,
    topic: &str,
    select: &SelectArgs,
    format: &str,
    max: Option<usize>,
) -> anyhow::Result<ExitCode> {
    let selection = select.selection();
    let done = redriven(client, naming, topic)?;
    let consumer = reader(client)?;
    let now = now_ms();
    let mut shown = 0usize;
    read_topic(&consumer, client, topic, |r| {
        if max.is_some_and(|m| shown >= m) || !selection.matches(&r.view(), now) {
            return Ok(());
        }
        shown += 1;
        let envelope = DeadLetter::parse(&r.headers);
        let was_redriven = done.contains(&(r.partition, r.offset));
        if format == "json" {
            let headers: Vec<serde_json::Value> = r
                .headers
                .iter()
                .map(|h| serde_json::json!({ "key": h.key, "value": lossy(h.value.as_deref()) }))
                .collect();
            let envelope = match &envelope {
                Ok(l) => l.to_json(),
                Err(e) => serde_json::json!({ "error": e.to_string() }),
            };
            println!(
                "{}",
                serde_json::json!({
                    "topic": topic,
                    "partition": r.partition,
                    "offset": r.offset,
                    "timestamp": r.timestamp,
                    "key": lossy(r.key.as_deref()),
                    "value": lossy(r.value.as_deref()),
                    "headers": headers,
                    "envelope": envelope,
                    "redriven": was_redriven,
                })
            );
        } else {
            println!(
                "{topic} {}:{} timestamp={} key={} redriven={}",
                r.partition,
                r.offset,
                r.timestamp.map_or_else(|| "-".into(), |t| t.to_string()),
                lossy(r.key.as_deref()).unwrap_or_else(|| "-".into()),
                if was_redriven { "yes" } else { "no" },
            );
            match &envelope {
                Ok(l) => println!(
                    "  from {}/{}/{} class={} attempts={} error: {}",
                    l.original_topic,
                    l.original_partition,
                    l.original_offset,
                    l.error_class,
                    l.attempts,
                    l.error_message
                ),
                Err(e) => println!("  no valid envelope: {e}"),
            }
            for h in &r.headers {
                println!(
                    "  header {}: {}",
                    h.key,
                    lossy(h.value.as_deref()).unwrap_or_else(|| "<null>".into())
                );
            }
            println!(
                "  value: {}",
                lossy(r.value.as_deref()).unwrap_or_else(|| "<null>".into())
            );
        }
        Ok(())
    })?;
    eprintln!("{shown} record(s)");
    Ok(ExitCode::SUCCESS)
}

async fn redrive(
    client: &ClientArgs,
    naming: &TopicNaming,
    topic: &str,
    select: &SelectArgs,
    to: Option<&str>,
    execute: bool,
) -> anyhow::Result<ExitCode> {
    if let Some(to) = to {
        dlq::validate_topic_name(to).map_err(|e| anyhow::anyhow!("--to: {e}"))?;
    }
    let plan = {
        let (client, naming, topic, select, to) = (
            ClientArgs {
                bootstrap: client.bootstrap.clone(),
                properties: client.properties.clone(),
            },
            naming.clone(),
            topic.to_owned(),
            select.clone(),
            to.map(str::to_owned),
        );
        tokio::task::spawn_blocking(move || -> anyhow::Result<(Plan<Record>, Vec<String>)> {
            let done = redriven(&client, &naming, &topic)?;
            let selection = select.selection();
            let consumer = reader(&client)?;
            let now = now_ms();
            let mut plan = Plan::default();
            read_topic(&consumer, &client, &topic, |record| {
                let decision = dlq::decide(&record.view(), &selection, &done, to.as_deref(), now);
                plan.add(record, decision);
                Ok(())
            })?;
            // Every target must exist before anything is published.
            let mut missing = Vec::new();
            for target in plan.targets() {
                if partitions(&consumer, &client, target)?.is_none() {
                    missing.push(target.to_owned());
                }
            }
            Ok((plan, missing))
        })
        .await
        .context("reading thread panicked")??
    };
    let (plan, missing) = plan;

    let (mut already, mut no_target) = (0usize, 0usize);
    for (r, target) in &plan.redrive {
        let position = dlq::redrive_marker_key(topic, r.partition, r.offset);
        println!("redrive {position} -> {target}");
    }
    for (r, skip) in &plan.skipped {
        let position = dlq::redrive_marker_key(topic, r.partition, r.offset);
        match skip {
            Skip::AlreadyRedriven => {
                println!("skip {position}: already redriven");
                already += 1;
            }
            Skip::NoTarget(e) => {
                println!("skip {position}: no target ({e}); use --to");
                no_target += 1;
            }
        }
    }
    if !missing.is_empty() {
        bail!(
            "target topic(s) {} do not exist; create them first (nothing was redriven)",
            missing.join(", ")
        );
    }
    if !execute {
        eprintln!(
            "dry run: {} record(s) would be redriven, {already} already redriven, {no_target} without target; add --execute to publish",
            plan.redrive.len()
        );
        return Ok(ExitCode::SUCCESS);
    }

    let markers = naming.redriven_topic(topic);
    ensure_marker_topic(client, &markers).await?;
    let producer: FutureProducer = client
        .config(&[
            ("acks", "all"),
            ("enable.idempotence", "true"),
            ("partitioner", "murmur2_random"),
            ("message.timeout.ms", "30000"),
        ])
        .create()
        .context("creating the producer")?;
    let mut sent = 0usize;
    for (r, target) in plan.redrive {
        let out = Republish::new(topic, &r.view(), target, now_ms());
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&out.target).headers(kafka_headers(&out.headers));
        if let Some(key) = r.key.as_deref() {
            record = record.key(key);
        }
        if let Some(value) = r.value.as_deref() {
            record = record.payload(value);
        }
        let (partition, offset) = producer
            .send(record, Duration::from_secs(30))
            .await
            .map(|d| (d.partition, d.offset))
            .map_err(|(e, _)| anyhow::anyhow!(out.publish_failed(sent, &describe_error(&e))))?;
        let key = out.marker_key();
        producer
            .send(
                FutureRecord::to(&markers)
                    .key(key.as_bytes())
                    .payload(&out.marker(partition, offset)),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| {
                anyhow::anyhow!(out.mark_failed(&markers, partition, offset, &describe_error(&e)))
            })?;
        sent += 1;
    }
    eprintln!(
        "redriven {sent} record(s), {already} already redriven before, {no_target} without target; markers on {markers:?}"
    );
    Ok(ExitCode::SUCCESS)
}

fn kafka_headers(headers: &[Header]) -> OwnedHeaders {
    headers.iter().fold(OwnedHeaders::new(), |hs, h| {
        hs.insert(KafkaHeader {
            key: &h.key,
            value: h.value.as_deref(),
        })
    })
}

/// Creates the compacted marker topic if it does not exist yet.
async fn ensure_marker_topic(client: &ClientArgs, name: &str) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = client
        .config(&[])
        .create()
        .context("creating the admin client")?;
    let options = AdminOptions::new()
        .request_timeout(Some(REQUEST_TIMEOUT))
        .operation_timeout(Some(REQUEST_TIMEOUT));
    let topic =
        NewTopic::new(name, 1, TopicReplication::Fixed(-1)).set("cleanup.policy", "compact");
    let results = admin
        .create_topics([&topic], &options)
        .await
        .map_err(|e| super::no_answer(e, &client.bootstrap))?;
    for result in results {
        match result {
            Ok(_) => eprintln!("created the redrive marker topic {name:?}"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                bail!(
                    "cannot create the redrive marker topic {topic:?}: {}",
                    describe_code(code)
                )
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets() {
        let cases = [
            ("7", Ok((7, 7))),
            ("3..9", Ok((3, 9))),
            ("0..0", Ok((0, 0))),
            (" 1 .. 2 ", Ok((1, 2))),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_offsets(input), expected, "{input}");
        }
        for bad in ["", "x", "9..3", "-1", "1..", "..2", "1..2..3"] {
            assert!(parse_offsets(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        let cases = [
            ("500ms", 500),
            ("90s", 90_000),
            ("15m", 900_000),
            ("2h", 7_200_000),
            ("7d", 604_800_000),
        ];
        for (input, ms) in cases {
            assert_eq!(
                parse_duration(input),
                Ok(Duration::from_millis(ms)),
                "{input}"
            );
        }
        for bad in ["", "5", "h", "5w", "-5s", "1.5h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn classes() {
        assert_eq!(parse_class("park"), Ok(ErrorClass::Park));
        let err = parse_class("fatal").expect_err("unknown class");
        assert!(err.contains("retryable, non-retryable or park"), "{err}");
    }
}
