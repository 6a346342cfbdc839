//! `weft consume <topic>`: prints records as text, JSON lines or a template.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::{ClientArgs, REQUEST_TIMEOUT, describe_code, describe_error};

#[derive(Debug, clap::Args)]
pub(crate) struct ConsumeArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Topic to read
    topic: String,
    /// Where to start: beginning, latest, offset:<n> or timestamp:<ms> (the first record
    /// whose timestamp is at or after it). With --group: where a group without a committed
    /// offset starts (beginning or latest)
    #[arg(long, default_value = "beginning")]
    from: From,
    /// Consumer group: subscribe and commit offsets. Without it, every partition (or
    /// --partition) is assigned and nothing is committed
    #[arg(long)]
    group: Option<String>,
    /// Read only this partition (not with --group)
    #[arg(long, conflicts_with = "group")]
    partition: Option<i32>,
    /// Exit after this many records
    #[arg(long)]
    max_messages: Option<u64>,
    /// Exit when no record arrived for this long (default: wait for ever)
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Output: text, json (one object per line) or template (see --template)
    #[arg(long, default_value = "text", value_parser = ["text", "json", "template"])]
    format: String,
    /// Template for --format template: %t topic, %p partition, %o offset, %T timestamp (ms),
    /// %k key, %v value, %h headers (k=v,…), %K/%V key/value length, %% percent, \n, \t
    #[arg(long, default_value = "%k %v")]
    template: String,
}

use super::Position as From;

pub(crate) async fn run(args: ConsumeArgs) -> anyhow::Result<ExitCode> {
    super::blocking(move || consume(args)).await
}

fn consume(args: ConsumeArgs) -> anyhow::Result<ExitCode> {
    let reset = match args.from {
        From::Latest => "latest",
        _ => "earliest",
    };
    let consumer: BaseConsumer = match &args.group {
        Some(group) => {
            if matches!(args.from, From::Offset(_) | From::Timestamp(_)) {
                bail!("--from offset:/timestamp: needs explicit partitions; drop --group");
            }
            let consumer: BaseConsumer = args
                .client
                .config(&[
                    ("group.id", group.as_str()),
                    ("auto.offset.reset", reset),
                    ("enable.auto.commit", "true"),
                ])
                .create()
                .context("creating the consumer")?;
            consumer
                .subscribe(&[&args.topic])
                .map_err(|e| anyhow::anyhow!("cannot subscribe: {}", describe_error(&e)))?;
            consumer
        }
        None => {
            // librdkafka's consumer needs a group.id even when it only assigns partitions;
            // it never joins the group nor commits.
            let consumer: BaseConsumer = args
                .client
                .config(&[
                    ("group.id", "weft-cli"),
                    ("auto.offset.reset", reset),
                    ("enable.auto.commit", "false"),
                    ("enable.auto.offset.store", "false"),
                ])
                .create()
                .context("creating the consumer")?;
            let assignment = assignment(&consumer, &args)?;
            consumer
                .assign(&assignment)
                .map_err(|e| anyhow::anyhow!("cannot assign: {}", describe_error(&e)))?;
            consumer
        }
    };

    let template = parse_template(&args.template);
    let idle_limit = args.timeout_ms.map(Duration::from_millis);
    let mut last = Instant::now();
    let mut count = 0u64;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    while args.max_messages.is_none_or(|max| count < max) {
        if idle_limit.is_some_and(|limit| last.elapsed() >= limit) {
            break;
        }
        let Some(result) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = match result {
            Ok(m) => m,
            Err(e) => {
                // Fatal for the topic as a whole (e.g. it does not exist); transient errors
                // are retried inside librdkafka and not reported here.
                bail!("cannot consume {:?}: {}", args.topic, describe_error(&e));
            }
        };
        last = Instant::now();
        count += 1;
        let line = match args.format.as_str() {
            "json" => json_line(&message),
            "template" => render(&template, &message),
            _ => text_line(&message),
        };
        // A closed pipe (`| head`) ends the command quietly.
        if writeln!(out, "{line}").is_err() {
            break;
        }
    }
    let _ = out.flush();
    eprintln!("consumed {count} record(s)");
    Ok(ExitCode::SUCCESS)
}

/// Every partition of the topic (or the one asked for) at the starting offset.
fn assignment(consumer: &BaseConsumer, args: &ConsumeArgs) -> anyhow::Result<TopicPartitionList> {
    let partitions: Vec<i32> = match args.partition {
        Some(p) => vec![p],
        None => {
            let metadata = consumer
                .fetch_metadata(Some(&args.topic), REQUEST_TIMEOUT)
                .map_err(|e| super::no_answer(e, &args.client.bootstrap))?;
            let Some(topic) = metadata.topics().iter().find(|t| t.name() == args.topic) else {
                bail!("topic {:?} not found", args.topic);
            };
            if let Some(err) = topic.error() {
                bail!(
                    "cannot read topic {:?}: {}",
                    args.topic,
                    describe_code(err.into())
                );
            }
            topic.partitions().iter().map(|p| p.id()).collect()
        }
    };
    let mut list = TopicPartitionList::new();
    for p in &partitions {
        let offset = match args.from {
            From::Earliest => Offset::Beginning,
            From::Latest => Offset::End,
            From::Offset(n) => Offset::Offset(n),
            // The offset is looked up below.
            From::Timestamp(ms) => Offset::Offset(ms),
        };
        list.add_partition_offset(&args.topic, *p, offset)
            .map_err(|e| anyhow::anyhow!("bad partition {p}: {}", describe_error(&e)))?;
    }
    if let From::Timestamp(_) = args.from {
        // ListOffsets by time; a partition with no record that late gets the end offset.
        list = consumer
            .offsets_for_times(list, REQUEST_TIMEOUT)
            .map_err(|e| {
                anyhow::anyhow!("cannot look offsets up by time: {}", describe_error(&e))
            })?;
    }
    Ok(list)
}

fn lossy(bytes: Option<&[u8]>) -> Option<String> {
    bytes.map(|b| String::from_utf8_lossy(b).into_owned())
}

fn headers_of(m: &BorrowedMessage<'_>) -> Vec<(String, Option<String>)> {
    m.headers()
        .map(|hs| {
            hs.iter()
                .map(|h| (h.key.to_owned(), lossy(h.value)))
                .collect()
        })
        .unwrap_or_default()
}

fn timestamp_of(m: &BorrowedMessage<'_>) -> Option<i64> {
    m.timestamp().to_millis()
}

/// `partition:offset timestamp key [headers] value`; a null key or value prints as `-`.
fn text_line(m: &BorrowedMessage<'_>) -> String {
    let headers = headers_of(m)
        .into_iter()
        .map(|(k, v)| format!("{k}={}", v.unwrap_or_default()))
        .collect::<Vec<_>>()
        .join(",");
    format!(
        "{}:{} {} {} [{}] {}",
        m.partition(),
        m.offset(),
        timestamp_of(m).map_or_else(|| "-".to_owned(), |t| t.to_string()),
        lossy(m.key()).unwrap_or_else(|| "-".to_owned()),
        headers,
        lossy(m.payload()).unwrap_or_else(|| "-".to_owned()),
    )
}

/// One JSON object; keys, values and header values are strings (bytes that are not UTF-8
/// are replaced by U+FFFD) or null.
fn json_line(m: &BorrowedMessage<'_>) -> String {
    let headers: Vec<serde_json::Value> = headers_of(m)
        .into_iter()
        .map(|(k, v)| serde_json::json!({ "key": k, "value": v }))
        .collect();
    serde_json::json!({
        "topic": m.topic(),
        "partition": m.partition(),
        "offset": m.offset(),
        "timestamp": timestamp_of(m),
        "key": lossy(m.key()),
        "value": lossy(m.payload()),
        "headers": headers,
    })
    .to_string()
}

#[derive(Debug, PartialEq)]
enum Piece {
    Text(String),
    Field(char),
}

fn parse_template(template: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        match c {
            '%' => match chars.next() {
                Some('%') => text.push('%'),
                Some(f @ ('t' | 'p' | 'o' | 'T' | 'k' | 'v' | 'h' | 'K' | 'V')) => {
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(Piece::Field(f));
                }
                Some(other) => {
                    text.push('%');
                    text.push(other);
                }
                None => text.push('%'),
            },
            '\\' => match chars.next() {
                Some('n') => text.push('\n'),
                Some('t') => text.push('\t'),
                Some('\\') => text.push('\\'),
                Some(other) => {
                    text.push('\\');
                    text.push(other);
                }
                None => text.push('\\'),
            },
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    pieces
}

fn render(pieces: &[Piece], m: &BorrowedMessage<'_>) -> String {
    let mut out = String::new();
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Field('t') => out.push_str(m.topic()),
            Piece::Field('p') => out.push_str(&m.partition().to_string()),
            Piece::Field('o') => out.push_str(&m.offset().to_string()),
            Piece::Field('T') => out.push_str(&timestamp_of(m).unwrap_or(-1).to_string()),
            Piece::Field('k') => out.push_str(&lossy(m.key()).unwrap_or_default()),
            Piece::Field('v') => out.push_str(&lossy(m.payload()).unwrap_or_default()),
            Piece::Field('K') => out.push_str(&m.key().map_or(-1, |k| k.len() as i64).to_string()),
            Piece::Field('V') => {
                out.push_str(&m.payload().map_or(-1, |v| v.len() as i64).to_string())
            }
            Piece::Field('h') => out.push_str(
                &headers_of(m)
                    .into_iter()
                    .map(|(k, v)| format!("{k}={}", v.unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            Piece::Field(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_values() {
        let cases = [
            ("beginning", Ok(From::Earliest)),
            ("latest", Ok(From::Latest)),
            ("offset:42", Ok(From::Offset(42))),
            (
                "timestamp:1700000000000",
                Ok(From::Timestamp(1_700_000_000_000)),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(input.parse::<From>(), expected, "{input}");
        }
        assert!("offset:x".parse::<From>().is_err());
        assert!("yesterday".parse::<From>().is_err());
    }

    #[test]
    fn templates() {
        use Piece::*;
        assert_eq!(
            parse_template(r"%k=%v\t%% %x"),
            vec![
                Field('k'),
                Text("=".into()),
                Field('v'),
                Text("\t% %x".into())
            ]
        );
    }
}
