//! The values that cross the store's API: stream names, expected versions, events to append
//! and recorded events, stream metadata and read filters.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Error, Result};

/// The longest stream name accepted.
pub const MAX_STREAM_NAME: usize = 200;
/// The longest event type accepted.
pub const MAX_EVENT_TYPE: usize = 200;

/// What the writer believes about the stream it appends to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "ExpectedVersionRepr")]
pub enum ExpectedVersion {
    /// No check.
    Any,
    /// The stream must not exist (or be soft-deleted with nothing after the delete).
    NoStream,
    /// The stream must exist.
    StreamExists,
    /// The stream's last revision must be exactly this.
    Exact(u64),
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any"),
            ExpectedVersion::NoStream => f.write_str("no_stream"),
            ExpectedVersion::StreamExists => f.write_str("stream_exists"),
            ExpectedVersion::Exact(n) => write!(f, "{n}"),
        }
    }
}

impl FromStr for ExpectedVersion {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "any" => Ok(ExpectedVersion::Any),
            "no_stream" => Ok(ExpectedVersion::NoStream),
            "stream_exists" => Ok(ExpectedVersion::StreamExists),
            _ => s
                .parse::<u64>()
                .map(ExpectedVersion::Exact)
                .map_err(|_| Error::InvalidExpectedVersion(s.to_owned())),
        }
    }
}

impl From<ExpectedVersion> for String {
    fn from(v: ExpectedVersion) -> String {
        v.to_string()
    }
}

/// JSON accepts `"any"`, `"no_stream"`, `"stream_exists"`, a revision as a number or a string.
#[derive(Deserialize)]
#[serde(untagged)]
enum ExpectedVersionRepr {
    Number(u64),
    Text(String),
}

impl TryFrom<ExpectedVersionRepr> for ExpectedVersion {
    type Error = Error;
    fn try_from(r: ExpectedVersionRepr) -> Result<Self> {
        match r {
            ExpectedVersionRepr::Number(n) => Ok(ExpectedVersion::Exact(n)),
            ExpectedVersionRepr::Text(s) => s.parse(),
        }
    }
}

/// A schema in the registry that an event's data follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaRef {
    pub subject: String,
    pub version: i64,
}

/// Who and what caused an event. Stored as JSON beside the data; unknown keys are kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// When the event happened according to the writer (ms since the epoch); the store's own
    /// time is [`RecordedEvent::recorded_ms`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_ms: Option<i64>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

/// An event to append.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventData {
    /// Unique within the stream; a retried append with the same ids is a no-op.
    #[serde(default = "new_id")]
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default)]
    pub data: Value,
    #[serde(default)]
    pub metadata: EventMetadata,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<SchemaRef>,
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl EventData {
    /// An event with a fresh id.
    pub fn new(event_type: impl Into<String>, data: Value) -> EventData {
        EventData {
            id: new_id(),
            event_type: event_type.into(),
            data,
            metadata: EventMetadata::default(),
            schema: None,
        }
    }

    pub fn with_id(mut self, id: impl Into<String>) -> EventData {
        self.id = id.into();
        self
    }

    pub fn with_metadata(mut self, metadata: EventMetadata) -> EventData {
        self.metadata = metadata;
        self
    }
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    pub id: String,
    pub stream: String,
    /// 0 for a stream's first event.
    pub revision: u64,
    /// Global, gap-free, commit-ordered; 1 for the store's first event.
    pub position: u64,
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<SchemaRef>,
    pub data: Value,
    pub metadata: EventMetadata,
    /// When the store committed it (ms since the epoch).
    pub recorded_ms: i64,
}

impl RecordedEvent {
    pub fn category(&self) -> &str {
        category_of(&self.stream)
    }
}

/// One stream's part of an append.
#[derive(Debug, Clone)]
pub struct StreamAppend {
    pub stream: String,
    pub expected: ExpectedVersion,
    pub events: Vec<EventData>,
}

/// What an append wrote (or, for an idempotent retry, had written before).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteResult {
    pub stream: String,
    /// Revision of the stream's last event after the append.
    pub next_expected: u64,
    /// Global position of the append's last event.
    pub position: u64,
    /// Positions of the events, in order.
    pub first_position: u64,
    /// Whether this append was a retry of one already written (nothing new stored).
    pub duplicate: bool,
}

/// Per-stream retention settings honoured by every read and applied by the scavenger.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamMetadata {
    /// Events older than this (by recorded time) are hidden.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_ms: Option<i64>,
    /// Only the last `max_count` events are visible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_count: Option<i64>,
    /// Events with a lower revision are hidden.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncate_before: Option<u64>,
}

/// Whether a stream exists and how it was deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamState {
    Live,
    /// Soft-deleted: reads see nothing; an append starts it again at the next revision.
    SoftDeleted,
    /// Hard-deleted: a tombstone; reads and appends are refused forever.
    Tombstoned,
}

/// Read order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    #[default]
    Forwards,
    Backwards,
}

/// Which events of `$all` a read or a subscription wants. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    /// Exactly this stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// Streams of this category (`order` for `order-42`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Streams whose name starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_prefix: Option<String>,
    /// Events of one of these types.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_types: Vec<String>,
}

impl Filter {
    pub fn all() -> Filter {
        Filter::default()
    }
    pub fn stream(name: impl Into<String>) -> Filter {
        Filter {
            stream: Some(name.into()),
            ..Filter::default()
        }
    }
    pub fn category(name: impl Into<String>) -> Filter {
        Filter {
            category: Some(name.into()),
            ..Filter::default()
        }
    }
    pub fn event_type(name: impl Into<String>) -> Filter {
        Filter {
            event_types: vec![name.into()],
            ..Filter::default()
        }
    }
    pub fn prefix(prefix: impl Into<String>) -> Filter {
        Filter {
            stream_prefix: Some(prefix.into()),
            ..Filter::default()
        }
    }

    /// Whether `event` passes (the same test the SQL applies).
    pub fn matches(&self, event: &RecordedEvent) -> bool {
        self.stream.as_ref().is_none_or(|s| *s == event.stream)
            && self.category.as_ref().is_none_or(|c| c == event.category())
            && self
                .stream_prefix
                .as_ref()
                .is_none_or(|p| event.stream.starts_with(p.as_str()))
            && (self.event_types.is_empty() || self.event_types.contains(&event.event_type))
    }
}

/// The category of a stream: what comes before its first `-`.
pub fn category_of(stream: &str) -> &str {
    stream.split_once('-').map_or(stream, |(c, _)| c)
}

/// Checks a stream name: `<category>-<id>`, the category a letter then letters, digits or
/// `_`, the id non-empty of letters, digits and `_ . : @ -`; at most [`MAX_STREAM_NAME`] bytes.
pub fn validate_stream_name(name: &str) -> Result<()> {
    let invalid = |reason| {
        Err(Error::InvalidStreamName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("empty");
    }
    if name.len() > MAX_STREAM_NAME {
        return invalid("longer than 200 bytes");
    }
    let Some((category, id)) = name.split_once('-') else {
        return invalid("expected <category>-<id>");
    };
    let mut chars = category.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() => {}
        _ => return invalid("the category must start with a letter"),
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return invalid("the category may hold only letters, digits and _");
    }
    if id.is_empty() {
        return invalid("the id after the category is empty");
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '@' | '-'))
    {
        return invalid("the id may hold only letters, digits and _ . : @ -");
    }
    Ok(())
}

pub(crate) fn validate_event_type(t: &str) -> Result<()> {
    if t.is_empty() || t.len() > MAX_EVENT_TYPE {
        return Err(Error::InvalidEvent(format!(
            "event type {t:?} must be 1 to {MAX_EVENT_TYPE} bytes"
        )));
    }
    if t.chars().any(|c| c.is_whitespace() || c.is_control()) || t.starts_with('$') {
        return Err(Error::InvalidEvent(format!(
            "event type {t:?} may not contain whitespace or start with $"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names() {
        let good = ["order-42", "order-a-b", "Order_2-x.y:z@w", "a-1"];
        for name in good {
            assert!(validate_stream_name(name).is_ok(), "{name}");
        }
        let bad = [
            "",
            "order",
            "-42",
            "order-",
            "1order-2",
            "or der-1",
            "order-4 2",
            "$all-1",
            "order-42\n",
        ];
        for name in bad {
            assert!(validate_stream_name(name).is_err(), "{name:?}");
        }
        assert!(validate_stream_name(&format!("a-{}", "x".repeat(300))).is_err());
        assert_eq!(category_of("order-4-2"), "order");
    }

    #[test]
    fn expected_versions() {
        let cases = [
            ("any", Some(ExpectedVersion::Any)),
            ("no_stream", Some(ExpectedVersion::NoStream)),
            ("stream_exists", Some(ExpectedVersion::StreamExists)),
            ("7", Some(ExpectedVersion::Exact(7))),
            ("-1", None),
            ("latest", None),
            ("", None),
        ];
        for (input, expected) in cases {
            assert_eq!(input.parse::<ExpectedVersion>().ok(), expected, "{input}");
        }
        let v: ExpectedVersion = serde_json::from_str("3").expect("number");
        assert_eq!(v, ExpectedVersion::Exact(3));
        assert!(serde_json::from_str::<ExpectedVersion>("\"sometimes\"").is_err());
    }
}
