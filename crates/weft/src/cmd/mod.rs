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
pub(crate) mod wire;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Options every client command takes: the bootstrap servers and the client properties,
/// those of the `--command-config` file first, then the `-X` ones (later ones win).
///
/// Parsed through [`ClientFlags`] (clap's own derive) and built from it, so the command
/// config file is read while the command line is parsed (a bad file is a usage error).
#[derive(Clone)]
pub(crate) struct ClientArgs {
    pub(crate) bootstrap: String,
    pub(crate) properties: Vec<(String, String)>,
}

/// The flags behind [`ClientArgs`].
#[derive(Debug, clap::Args)]
struct ClientFlags {
    /// Kafka bootstrap servers (host:port, comma-separated)
    #[arg(
        long,
        env = "WEFT_BOOTSTRAP",
        default_value = "127.0.0.1:9092",
        global = true
    )]
    bootstrap: String,
    /// Client properties file, as Kafka's tools take it: `key=value` lines with librdkafka's
    /// names (security.protocol, sasl.mechanism, sasl.username, sasl.password,
    /// ssl.ca.location, ssl.certificate.location, ssl.key.location…); `-X` overrides it
    #[arg(
        long = "command-config",
        value_name = "FILE",
        env = "WEFT_COMMAND_CONFIG",
        value_parser = read_properties_file,
        global = true
    )]
    command_config: Option<PropertiesFile>,
    /// Extra librdkafka property, `key=value` (repeatable), e.g. `-X security.protocol=ssl`
    #[arg(short = 'X', long = "property", value_name = "K=V", value_parser = parse_kv, global = true)]
    properties: Vec<(String, String)>,
}

/// The properties of a `--command-config` file, in file order.
#[derive(Debug, Clone)]
struct PropertiesFile(Vec<(String, String)>);

fn read_properties_file(path: &str) -> Result<PropertiesFile, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    parse_properties(&text)
        .map(PropertiesFile)
        .map_err(|e| format!("{path}: {e}"))
}

/// Java-style properties as Kafka's `--command-config` files are written: `key=value` or
/// `key: value` per line, blank lines and `#` / `!` comments skipped, whitespace around
/// keys and values trimmed (no line continuations or escapes).
pub(crate) fn parse_properties(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let split = line.find(['=', ':']).map(|i| (&line[..i], &line[i + 1..]));
        match split {
            Some((k, v)) if !k.trim().is_empty() => {
                out.push((k.trim().to_owned(), v.trim().to_owned()));
            }
            _ => return Err(format!("line {}: expected key=value", n + 1)),
        }
    }
    Ok(out)
}

impl From<ClientFlags> for ClientArgs {
    fn from(f: ClientFlags) -> ClientArgs {
        let mut properties = f.command_config.map(|c| c.0).unwrap_or_default();
        properties.extend(f.properties);
        ClientArgs {
            bootstrap: f.bootstrap,
            properties,
        }
    }
}

impl clap::FromArgMatches for ClientArgs {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        ClientFlags::from_arg_matches(matches).map(ClientArgs::from)
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = ClientArgs::from_arg_matches(matches)?;
        Ok(())
    }
}

impl clap::Args for ClientArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        ClientFlags::augment_args(cmd)
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        ClientFlags::augment_args_for_update(cmd)
    }
}

/// Secrets (`sasl.password`, `ssl.key.password`, `sasl.oauthbearer.client.secret`…) masked.
impl std::fmt::Debug for ClientArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let masked: Vec<(&str, &str)> = self
            .properties
            .iter()
            .map(|(k, v)| {
                let secret = k.contains("password") || k.contains("secret");
                (k.as_str(), if secret { "***" } else { v.as_str() })
            })
            .collect();
        f.debug_struct("ClientArgs")
            .field("bootstrap", &self.bootstrap)
            .field("properties", &masked)
            .finish()
    }
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

/// Queues `record` on a threaded producer, waiting `pause` at a time while librdkafka's
/// queue is full (its background thread drains it as acknowledgements arrive).
pub(crate) fn send_when_room<C, K, P>(
    producer: &rdkafka::producer::ThreadedProducer<C>,
    mut record: rdkafka::producer::BaseRecord<'_, K, P, C::DeliveryOpaque>,
    pause: Duration,
) -> Result<(), KafkaError>
where
    C: rdkafka::producer::ProducerContext,
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                std::thread::sleep(pause);
            }
            Err((e, _)) => return Err(e),
        }
    }
}

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
    fn properties_files() {
        let text = "# Kafka client properties\n\
                    security.protocol=SASL_SSL\n\
                    \n\
                    ! another comment\n\
                    sasl.mechanism = SCRAM-SHA-512\n\
                    sasl.username: admin\n\
                    sasl.password=p=w:d\n\
                    \tssl.ca.location=/etc/weft/ca.pem  \n";
        let got = parse_properties(text).expect("valid");
        let want = [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "admin"),
            ("sasl.password", "p=w:d"),
            ("ssl.ca.location", "/etc/weft/ca.pem"),
        ];
        let got: Vec<(&str, &str)> = got.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(got, want);
        assert_eq!(
            parse_properties("a=1\njust-a-key\n"),
            Err("line 2: expected key=value".to_owned())
        );
        assert!(parse_properties("=v").is_err());
    }

    /// `--command-config` first, `-X` after it (so `-X` wins); secrets masked in Debug.
    #[test]
    fn command_config_then_x_properties() {
        use clap::Parser as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("client.properties");
        std::fs::write(
            &file,
            "security.protocol=SASL_PLAINTEXT\nsasl.username=a\nsasl.password=hunter2\n",
        )
        .expect("write");
        let cli = crate::cli::Cli::try_parse_from([
            "weft",
            "acl",
            "--command-config",
            file.to_str().expect("utf-8 path"),
            "-X",
            "sasl.username=b",
            "list",
        ])
        .expect("parses");
        let crate::cli::Command::Acl(args) = cli.command else {
            panic!("not acl");
        };
        let debug = format!("{args:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("\"sasl.username\", \"b\""), "{debug}");
        let missing = crate::cli::Cli::try_parse_from([
            "weft",
            "user",
            "list",
            "--command-config",
            "/nonexistent/client.properties",
        ]);
        let err = missing
            .expect_err("a missing file is a usage error")
            .to_string();
        assert!(err.contains("/nonexistent/client.properties"), "{err}");
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
