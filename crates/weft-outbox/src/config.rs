//! Relay configuration: the `[outbox]` table of `weft.toml`.
//!
//! ```toml
//! [[outbox.sources]]
//! name = "orders"
//! database = "postgres://app@127.0.0.1/orders"
//! mode = "polling"                       # or "logical" (PostgreSQL, wal_level=logical)
//! topic = "outbox.event.${aggregatetype}"
//! payload = "raw"                        # or "json": must parse as JSON, published compact
//! cleanup = "delete"                     # or "mark" (+ retention_secs, then purged)
//! on_bad_row = "stop"                    # or "dlq" (dlq_topic)
//! # optional: the JSON payload serialised with a registry schema (Confluent wire format)
//! value_schema = { registry_url = "http://127.0.0.1:8081", subject_template = "${topic}-value", version = "latest" }
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::table::{Dialect, Table};
use crate::{Error, Result};

/// The `[outbox]` table.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxConfig {
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Read unpublished rows in `seq` order (every database).
    #[default]
    Polling,
    /// PostgreSQL logical decoding (`pgoutput`) through a replication slot.
    Logical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadFormat {
    /// The payload bytes as stored.
    #[default]
    Raw,
    /// The payload must be JSON (a row that is not is a bad row); published compact.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Cleanup {
    /// Delete each row once the broker acknowledged it.
    #[default]
    Delete,
    /// Set `published_at`, and purge rows published more than `retention_secs` ago.
    Mark,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BadRowPolicy {
    /// Stop publishing that aggregate (its later rows wait), log an error, show it in the
    /// status; other aggregates go on. Re-checked every `blocked_recheck_secs`.
    #[default]
    Stop,
    /// Publish the row to `dlq_topic` with the DLQ headers and go on.
    Dlq,
}

fn default_name() -> String {
    "default".to_owned()
}
fn default_table() -> String {
    "weft_outbox".to_owned()
}
fn default_topic() -> String {
    "outbox.event.${aggregatetype}".to_owned()
}
fn default_dlq() -> String {
    "outbox.dlq".to_owned()
}
fn default_headers() -> BTreeMap<String, String> {
    BTreeMap::from([("type".to_owned(), crate::headers::EVENT_TYPE.to_owned())])
}

/// One `[[outbox.sources]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Unique among sources; names metrics and status rows.
    #[serde(default = "default_name")]
    pub name: String,
    /// `postgres://…`, `mysql://…`/`mariadb://…` or `sqlite:PATH`.
    pub database: String,
    #[serde(default = "default_table")]
    pub table: String,
    #[serde(default)]
    pub mode: Mode,
    /// Topic template: `${aggregatetype}` and `${type}` are replaced.
    #[serde(default = "default_topic")]
    pub topic: String,
    #[serde(default)]
    pub payload: PayloadFormat,
    /// Columns published as headers: column name → header name. Columns: `aggregatetype`,
    /// `aggregateid`, `type`, `created_at`, `seq`. Default `type` → `weft-event-type`.
    #[serde(default = "default_headers")]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub cleanup: Cleanup,
    /// `cleanup = "mark"`: rows published longer ago than this are purged.
    #[serde(default = "default_retention")]
    pub retention_secs: u64,
    #[serde(default)]
    pub on_bad_row: BadRowPolicy,
    #[serde(default = "default_dlq")]
    pub dlq_topic: String,
    /// A row whose record would be larger is a bad row (Kafka's `max.message.bytes`).
    #[serde(default = "default_max_bytes")]
    pub max_message_bytes: usize,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Pause after a poll that found nothing.
    #[serde(default = "default_poll")]
    pub poll_interval_ms: u64,
    /// Stopped aggregates are re-checked this often (a fixed row then flows again).
    #[serde(default = "default_recheck")]
    pub blocked_recheck_secs: u64,
    /// Logical mode: replication slot and publication (created when missing).
    #[serde(default)]
    pub slot: Option<String>,
    #[serde(default)]
    pub publication: Option<String>,
    /// Kafka bootstrap servers; default: the cluster `weft serve` uses.
    #[serde(default)]
    pub bootstrap: Option<String>,
    /// How long the producer retries one record before the relay backs off.
    #[serde(default = "default_delivery_timeout")]
    pub delivery_timeout_ms: u64,
    /// Extra librdkafka producer properties (idempotence and acks cannot be turned off).
    #[serde(default)]
    pub kafka: BTreeMap<String, String>,
    /// Serialise each row's JSON payload with a schema from a Confluent-API registry.
    #[serde(default)]
    pub value_schema: Option<ValueSchema>,
}

/// `value_schema = { … }`: the payload (which must then be JSON) is published in the
/// Confluent wire format (`0x00`, 4-byte schema id, body) — Avro binary for an `AVRO`
/// schema, the JSON itself (validated first) for a `JSON` schema. The schema's type comes
/// from the registry. A payload the schema refuses is a bad row (`on_bad_row`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueSchema {
    /// The registry's base URL (`http://…`), e.g. `weft serve`'s `--registry-listen`.
    pub registry_url: String,
    /// A fixed subject; overrides `subject_template`.
    #[serde(default)]
    pub subject: Option<String>,
    /// `${topic}` is replaced by the record's topic (TopicNameStrategy by default).
    #[serde(default = "default_subject_template")]
    pub subject_template: String,
    /// `"latest"` (resolved once when the relay first needs it) or a version number.
    #[serde(default)]
    pub version: SchemaVersion,
    /// Sent as `Authorization` to the registry. Not read from `weft.toml`: `weft serve`
    /// sets its internal credential when `registry_url` is its own loopback registry.
    #[serde(skip)]
    pub authorization: Option<Secret>,
}

/// A secret string whose `Debug` is `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Which version of the subject: `"latest"` or a number.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(untagged)]
pub enum SchemaVersion {
    Number(u32),
    #[default]
    #[serde(skip)]
    Latest,
    Text(String),
}

impl SchemaVersion {
    /// The path segment of `/subjects/{subject}/versions/{…}`.
    pub fn path(&self) -> String {
        match self {
            SchemaVersion::Number(n) => n.to_string(),
            SchemaVersion::Latest | SchemaVersion::Text(_) => "latest".to_owned(),
        }
    }
}

impl ValueSchema {
    /// The subject of a record published to `topic`.
    pub fn subject_for(&self, topic: &str) -> String {
        match &self.subject {
            Some(s) => s.clone(),
            None => self.subject_template.replace("${topic}", topic),
        }
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if !self.registry_url.starts_with("http://") {
            return Err(format!(
                "value_schema.registry_url {:?}: expected http://",
                self.registry_url
            ));
        }
        if self.subject.as_deref().is_some_and(str::is_empty) || self.subject_template.is_empty() {
            return Err("value_schema: empty subject".into());
        }
        match &self.version {
            SchemaVersion::Number(0) => Err("value_schema.version: versions start at 1".into()),
            SchemaVersion::Text(t) if t != "latest" => Err(format!(
                "value_schema.version {t:?}: expected \"latest\" or a number"
            )),
            _ => Ok(()),
        }
    }
}

fn default_subject_template() -> String {
    "${topic}-value".to_owned()
}

fn default_retention() -> u64 {
    7 * 24 * 3600
}
fn default_max_bytes() -> usize {
    1_000_000
}
fn default_batch() -> usize {
    500
}
fn default_poll() -> u64 {
    100
}
fn default_recheck() -> u64 {
    30
}
fn default_delivery_timeout() -> u64 {
    10_000
}

const COLUMNS: &[&str] = &["aggregatetype", "aggregateid", "type", "created_at", "seq"];

impl SourceConfig {
    /// A source with every default, reading `database`.
    pub fn new(name: &str, database: &str) -> SourceConfig {
        SourceConfig {
            name: name.to_owned(),
            database: database.to_owned(),
            table: default_table(),
            mode: Mode::Polling,
            topic: default_topic(),
            payload: PayloadFormat::Raw,
            headers: default_headers(),
            cleanup: Cleanup::Delete,
            retention_secs: default_retention(),
            on_bad_row: BadRowPolicy::Stop,
            dlq_topic: default_dlq(),
            max_message_bytes: default_max_bytes(),
            batch_size: default_batch(),
            poll_interval_ms: default_poll(),
            blocked_recheck_secs: default_recheck(),
            slot: None,
            publication: None,
            bootstrap: None,
            delivery_timeout_ms: default_delivery_timeout(),
            kafka: BTreeMap::new(),
            value_schema: None,
        }
    }

    pub fn table(&self) -> Result<Table> {
        Table::new(&self.table)
    }

    pub fn slot_name(&self) -> String {
        self.slot
            .clone()
            .unwrap_or_else(|| format!("weft_outbox_{}", sanitize(&self.name)))
    }

    pub fn publication_name(&self) -> String {
        self.publication
            .clone()
            .unwrap_or_else(|| format!("weft_outbox_{}", sanitize(&self.name)))
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }

    /// Checks what can be checked without connecting.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(format!("source {:?}: {m}", self.name)));
        if self.name.is_empty() {
            return bad("name is empty".into());
        }
        let dialect = Dialect::of_url(&self.database)?;
        self.table()?;
        if self.mode == Mode::Logical && dialect != Dialect::Postgres {
            return bad("mode = \"logical\" needs a PostgreSQL database".into());
        }
        if self.topic.is_empty() {
            return bad("topic template is empty".into());
        }
        for column in self.headers.keys() {
            if !COLUMNS.contains(&column.as_str()) {
                return bad(format!(
                    "headers: unknown column {column:?}; expected one of {}",
                    COLUMNS.join(", ")
                ));
            }
        }
        if self.batch_size == 0 || self.max_message_bytes == 0 {
            return bad("batch_size and max_message_bytes must be at least 1".into());
        }
        for ident in [self.slot_name(), self.publication_name()] {
            if !ident.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || ident.len() > 63 {
                return bad(format!("{ident:?} is not a valid slot/publication name"));
            }
        }
        if let Some(vs) = &self.value_schema {
            vs.validate().or_else(bad)?;
        }
        for key in ["enable.idempotence", "acks", "bootstrap.servers"] {
            if self.kafka.contains_key(key) {
                return bad(format!("kafka.{key} is set by the relay"));
            }
        }
        Ok(())
    }
}

impl OutboxConfig {
    pub fn validate(&self) -> Result<()> {
        let mut names = std::collections::BTreeSet::new();
        for s in &self.sources {
            s.validate()?;
            if !names.insert(&s.name) {
                return Err(Error::Config(format!(
                    "two outbox sources are named {:?}",
                    s.name
                )));
            }
        }
        Ok(())
    }
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<OutboxConfig> {
        let c: OutboxConfig = toml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn defaults() {
        let c = SourceConfig::new("orders", "sqlite:x.db");
        assert_eq!(c.database, "sqlite:x.db");
        assert_eq!(c.topic, "outbox.event.${aggregatetype}");
        assert_eq!(c.slot_name(), "weft_outbox_orders");
        let parsed: OutboxConfig =
            toml::from_str("[[sources]]\nname='orders'\ndatabase='sqlite:x.db'").expect("toml");
        assert_eq!(parsed.sources[0], c, "serde defaults and new() agree");
        c.validate().expect("valid");
    }

    #[test]
    fn errors() {
        let cases = [
            ("[[sources]]\nname='a'", "missing field `database`"),
            (
                "[[sources]]\ndatabase='redis://x'",
                "unsupported database URL",
            ),
            (
                "[[sources]]\ndatabase='sqlite:x'\nmode='logical'",
                "needs a PostgreSQL",
            ),
            (
                "[[sources]]\ndatabase='sqlite:x'\nmode='cdc'",
                "unknown variant",
            ),
            (
                "[[sources]]\ndatabase='sqlite:x'\ntable='a;b'",
                "invalid outbox table",
            ),
            (
                "[[sources]]\ndatabase='sqlite:x'\nheaders={payload='p'}",
                "unknown column",
            ),
            (
                "[[sources]]\ndatabase='sqlite:x'\nkafka={acks='1'}",
                "set by the relay",
            ),
            ("[[sources]]\ndatabase='sqlite:x'\nbogus=1", "unknown field"),
            (
                "[[sources]]\ndatabase='sqlite:x'\nvalue_schema={registry_url='https://r'}",
                "expected http://",
            ),
            (
                "[[sources]]\ndatabase='sqlite:x'\nvalue_schema={registry_url='http://r',version='newest'}",
                "expected \"latest\"",
            ),
            (
                "[[sources]]\ndatabase='sqlite:x'\nvalue_schema={registry_url='http://r',version=0}",
                "start at 1",
            ),
            (
                "[[sources]]\ndatabase='sqlite:x'\nvalue_schema={registry_url='http://r',format='avro'}",
                "unknown field",
            ),
            (
                "[[sources]]\ndatabase='sqlite:x'\n[[sources]]\ndatabase='sqlite:y'",
                "two outbox sources",
            ),
        ];
        for (text, fragment) in cases {
            let err = parse(text).expect_err(text).to_string();
            assert!(err.contains(fragment), "{text:?}: {err}");
        }
    }
}
