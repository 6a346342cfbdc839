//! Client commands: `weft topic …`, `weft produce`, `weft consume`, `weft group …`,
//! `weft bench …`.
//!
//! They are librdkafka clients (the `rdkafka` crate) and know nothing about the embedded
//! broker: they work against any Kafka-protocol broker named by `--bootstrap`. librdkafka's
//! API is blocking or callback-driven, so each command runs on a blocking thread
//! ([`blocking`]) and never on the async reactor.

pub(crate) mod acl;
pub(crate) mod bench;
pub(crate) mod consume;
pub(crate) mod dev_certs;
pub(crate) mod dlq;
pub(crate) mod events;
pub(crate) mod group;
pub(crate) mod outbox;
pub(crate) mod produce;
pub(crate) mod schema;
pub(crate) mod topic;
pub(crate) mod user;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Options every client command takes.
#[derive(Debug, clap::Args)]
pub(crate) struct ClientArgs {
    /// Kafka bootstrap servers (host:port, comma-separated)
    #[arg(
        long,
        env = "WEFT_BOOTSTRAP",
        default_value = "127.0.0.1:9092",
        global = true
    )]
    pub(crate) bootstrap: String,
    /// Extra librdkafka property, `key=value` (repeatable), e.g. `-X security.protocol=ssl`
    #[arg(short = 'X', long = "property", value_name = "K=V", value_parser = parse_kv, global = true)]
    pub(crate) properties: Vec<(String, String)>,
}

impl ClientArgs {
    /// A librdkafka configuration with the bootstrap servers and the `-X` properties, which
    /// are applied last so they override what the command sets.
    pub(crate) fn config(&self, command_defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        // librdkafka logs through the `log` crate, which the CLI does not install; errors
        // reach the user through the operation results instead.
        for (key, value) in command_defaults {
            config.set(*key, *value);
        }
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }
}

/// A position in a partition, as `--from` (consume) and the short form `--to` of
/// `group reset-offsets` take it: `earliest` (or `beginning`), `latest` (or `end`),
/// `offset:<n>`, `timestamp:<ms>`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Position {
    Earliest,
    Latest,
    Offset(i64),
    Timestamp(i64),
}

impl std::str::FromStr for Position {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let number = |v: &str| {
            v.parse::<i64>()
                .map_err(|_| format!("{v:?} is not a number"))
        };
        match s {
            "earliest" | "beginning" => Ok(Position::Earliest),
            "latest" | "end" => Ok(Position::Latest),
            _ => match s.split_once(':') {
                Some(("offset", n)) => Ok(Position::Offset(number(n)?)),
                Some(("timestamp", n)) => Ok(Position::Timestamp(number(n)?)),
                _ => Err(format!(
                    "expected earliest, latest, offset:<n> or timestamp:<ms>, got {s:?}"
                )),
            },
        }
    }
}

/// Parses `key=value`; the value may itself contain `=`.
pub(crate) fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected key=value, got {s:?}")),
    }
}

/// Runs a blocking command off the reactor.
pub(crate) async fn blocking(
    f: impl FnOnce() -> anyhow::Result<ExitCode> + Send + 'static,
) -> anyhow::Result<ExitCode> {
    tokio::task::spawn_blocking(f)
        .await
        .context("command thread panicked")?
}

/// How long admin and metadata requests may take before the command gives up.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Kafka's name for an error code (`INVALID_TOPIC_EXCEPTION`), as the Kafka tools print it;
/// librdkafka's local errors keep its leading underscore (`_MSG_TIMED_OUT`).
pub(crate) fn kafka_error_name(code: RDKafkaErrorCode) -> String {
    // Where Kafka's protocol name is not the variant name spelled in capitals.
    let fixed = match code {
        RDKafkaErrorCode::InvalidTopic => Some("INVALID_TOPIC_EXCEPTION"),
        RDKafkaErrorCode::UnknownTopicOrPartition => Some("UNKNOWN_TOPIC_OR_PARTITION"),
        RDKafkaErrorCode::MessageTimedOut => Some("_MSG_TIMED_OUT"),
        RDKafkaErrorCode::OperationTimedOut => Some("_TIMED_OUT"),
        RDKafkaErrorCode::RequestTimedOut => Some("REQUEST_TIMED_OUT"),
        _ => None,
    };
    if let Some(name) = fixed {
        return name.to_owned();
    }
    let camel = format!("{code:?}");
    let mut name = String::new();
    if (code as i32) < 0 {
        name.push('_');
    }
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

/// `NAME (librdkafka's description)` for an error code.
pub(crate) fn describe_code(code: RDKafkaErrorCode) -> String {
    let display = code.to_string();
    // Display is `Variant (description)`; keep the description.
    let description = display
        .split_once(" (")
        .map(|(_, d)| d.trim_end_matches(')'))
        .unwrap_or(&display);
    format!("{} ({description})", kafka_error_name(code))
}

/// A client error in the same `NAME (description)` form when it carries a code.
pub(crate) fn describe_error(err: &KafkaError) -> String {
    match err {
        KafkaError::AdminOp(code) => describe_code(*code),
        _ => match err.rdkafka_error_code() {
            Some(code) => describe_code(code),
            None => err.to_string(),
        },
    }
}

/// A request that got no answer at all (as opposed to an error code for one resource);
/// usually the broker is unreachable, so the message names the bootstrap servers.
pub(crate) fn no_answer(err: KafkaError, bootstrap: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "no answer from the Kafka broker at {bootstrap}: {}",
        describe_error(&err)
    )
}

/// Parses a topic config list, refusing the same key twice.
pub(crate) fn unique_configs(configs: &[(String, String)]) -> anyhow::Result<()> {
    let mut seen = std::collections::HashSet::new();
    for (key, _) in configs {
        if !seen.insert(key.as_str()) {
            bail!("config {key} given twice");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_error_names() {
        let cases = [
            (RDKafkaErrorCode::InvalidTopic, "INVALID_TOPIC_EXCEPTION"),
            (RDKafkaErrorCode::TopicAlreadyExists, "TOPIC_ALREADY_EXISTS"),
            (RDKafkaErrorCode::InvalidConfig, "INVALID_CONFIG"),
            (RDKafkaErrorCode::PolicyViolation, "POLICY_VIOLATION"),
            (RDKafkaErrorCode::MessageTimedOut, "_MSG_TIMED_OUT"),
            (RDKafkaErrorCode::AllBrokersDown, "_ALL_BROKERS_DOWN"),
        ];
        for (code, name) in cases {
            assert_eq!(kafka_error_name(code), name, "{code:?}");
        }
    }

    #[test]
    fn positions() {
        let cases = [
            ("earliest", Ok(Position::Earliest)),
            ("beginning", Ok(Position::Earliest)),
            ("latest", Ok(Position::Latest)),
            ("end", Ok(Position::Latest)),
            ("offset:7", Ok(Position::Offset(7))),
            (
                "timestamp:1700000000000",
                Ok(Position::Timestamp(1_700_000_000_000)),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(input.parse::<Position>(), expected, "{input}");
        }
        assert!("offset:x".parse::<Position>().is_err());
        assert!("yesterday".parse::<Position>().is_err());
    }

    #[test]
    fn key_value_arguments() {
        assert_eq!(
            parse_kv("a.b=c=d"),
            Ok(("a.b".to_owned(), "c=d".to_owned()))
        );
        assert_eq!(parse_kv("k="), Ok(("k".to_owned(), String::new())));
        assert!(parse_kv("=v").is_err());
        assert!(parse_kv("novalue").is_err());
    }
}
