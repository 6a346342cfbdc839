//! The dead-letter envelope shared by the SDK, the gateway's webhooks and the outbox relay:
//! header names, a builder and a parser; DLQ, retry and redrive-marker topic naming; and
//! redrive selection as pure functions (`weft dlq` and the SDK move the records).
//!
//! # The envelope (version 1)
//!
//! A dead letter is the failed record with the **same key and value**, its **original
//! headers kept** (in order), and these headers appended. Values are UTF-8 text; numbers in
//! decimal; times in milliseconds since the Unix epoch (Kafka's timestamp unit).
//!
//! | header | value |
//! |---|---|
//! | `weft-dlq-version` | `1` |
//! | `weft-dlq-original-topic` | topic the record was consumed from |
//! | `weft-dlq-original-partition` | its partition |
//! | `weft-dlq-original-offset` | its offset |
//! | `weft-dlq-original-timestamp` | its timestamp (ms), when known |
//! | `weft-dlq-consumer-group` | the group that failed it, when there is one |
//! | `weft-dlq-source` | what dead-lettered it (`consumer`, `webhook`, `outbox`, …), when set |
//! | `weft-dlq-error-class` | `retryable` (retries exhausted), `non-retryable` or `park` |
//! | `weft-dlq-error-message` | the last error, at most [`MAX_ERROR_MESSAGE_BYTES`] |
//! | `weft-dlq-attempts` | attempts made, the first included |
//! | `weft-dlq-first-failure` | time of the first failed attempt (ms) |
//! | `weft-dlq-last-failure` | time of the last failed attempt (ms) |
//!
//! Redrive markers, added to a record when `weft dlq redrive` re-publishes it and kept when
//! it is dead-lettered again (so its history travels with it):
//!
//! | header | value |
//! |---|---|
//! | `weft-dlq-redrive-count` | times this record was redriven |
//! | `weft-dlq-redriven-from` | `<dlq topic>/<partition>/<offset>` it was redriven from |
//! | `weft-dlq-redriven-at` | when (ms) |
//!
//! A record that was never on a topic (an outbox row that could not be published) has
//! original partition and offset `-1`, and says where it came from in its own headers.
//!
//! Building an envelope removes any envelope headers already on the record (a redriven
//! record that fails again gets a fresh envelope), except the redrive markers.
//!
//! Records on a retry topic (`<topic>.retry.<n>`) carry the same envelope plus
//! `weft-retry-level` (n) and `weft-retry-not-before` (ms): the consumer of the retry topic
//! waits until then.
//!
//! # Redrive bookkeeping
//!
//! What was redriven is recorded as a record on the compacted topic `<dlq>.redriven`, keyed
//! by [`redrive_marker_key`] (`<dlq topic>/<partition>/<offset>`), value a
//! [`RedriveMarker`]. A record whose key is there is not redriven again ([`decide`]).
//! A redrive collects the decisions in a [`Plan`], checks that every target exists, then
//! for each record to go builds a [`Republish`] (headers with the markers), publishes it
//! and writes its marker — `weft dlq redrive` and the gateway do only that I/O.
//!
//! A record can also be redriven to something that is not a topic: the gateway re-delivers
//! a webhook dead letter to its one subscription (not to every reader of the original
//! topic). Its marker then names the target `webhook:<subscription id>`, at partition and
//! offset -1.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use crate::retry::{ErrorClass, RetryError, RetryPolicy};
use crate::{Error, Result};

/// `weft-dlq-version`.
pub const VERSION: &str = "weft-dlq-version";
/// `weft-dlq-original-topic`.
pub const ORIGINAL_TOPIC: &str = "weft-dlq-original-topic";
/// `weft-dlq-original-partition`.
pub const ORIGINAL_PARTITION: &str = "weft-dlq-original-partition";
/// `weft-dlq-original-offset`.
pub const ORIGINAL_OFFSET: &str = "weft-dlq-original-offset";
/// `weft-dlq-original-timestamp`.
pub const ORIGINAL_TIMESTAMP: &str = "weft-dlq-original-timestamp";
/// `weft-dlq-consumer-group`.
pub const CONSUMER_GROUP: &str = "weft-dlq-consumer-group";
/// `weft-dlq-source`.
pub const SOURCE: &str = "weft-dlq-source";
/// `weft-dlq-error-class`.
pub const ERROR_CLASS: &str = "weft-dlq-error-class";
/// `weft-dlq-error-message`.
pub const ERROR_MESSAGE: &str = "weft-dlq-error-message";
/// `weft-dlq-attempts`.
pub const ATTEMPTS: &str = "weft-dlq-attempts";
/// `weft-dlq-first-failure`.
pub const FIRST_FAILURE: &str = "weft-dlq-first-failure";
/// `weft-dlq-last-failure`.
pub const LAST_FAILURE: &str = "weft-dlq-last-failure";
/// `weft-dlq-redrive-count`.
pub const REDRIVE_COUNT: &str = "weft-dlq-redrive-count";
/// `weft-dlq-redriven-from`.
pub const REDRIVEN_FROM: &str = "weft-dlq-redriven-from";
/// `weft-dlq-redriven-at`.
pub const REDRIVEN_AT: &str = "weft-dlq-redriven-at";
/// `weft-retry-level` (records on retry topics).
pub const RETRY_LEVEL: &str = "weft-retry-level";
/// `weft-retry-not-before` (records on retry topics).
pub const RETRY_NOT_BEFORE: &str = "weft-retry-not-before";

/// Prefix of every envelope header.
pub const ENVELOPE_PREFIX: &str = "weft-dlq-";
/// The envelope version this build writes and reads.
pub const ENVELOPE_VERSION: u32 = 1;
/// Longest error message kept (bytes; cut at a character boundary).
pub const MAX_ERROR_MESSAGE_BYTES: usize = 4096;

/// A record header. Kafka header values may be null.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Header {
    /// Name.
    pub key: String,
    /// Value, `None` for a null value.
    pub value: Option<Vec<u8>>,
}

impl Header {
    /// A header with a value.
    pub fn new(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Header {
            key: key.into(),
            value: Some(value.into()),
        }
    }

    /// The value as UTF-8, if it is.
    pub fn value_str(&self) -> Option<&str> {
        self.value
            .as_deref()
            .and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// The last value of header `key` (Kafka allows repeats; the last one wins).
pub fn last_header<'a>(headers: &'a [Header], key: &str) -> Option<&'a Header> {
    headers.iter().rev().find(|h| h.key == key)
}

/// Milliseconds since the Unix epoch (0 before it).
pub fn epoch_millis(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// What a dead letter says about its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Topic it was consumed from.
    pub original_topic: String,
    /// Partition there.
    pub original_partition: i32,
    /// Offset there.
    pub original_offset: i64,
    /// Its timestamp (ms), when known.
    pub original_timestamp: Option<i64>,
    /// The consumer group that failed it, if any.
    pub consumer_group: Option<String>,
    /// What dead-lettered it (`consumer`, `webhook`, `outbox`, …), if said.
    pub source: Option<String>,
    /// Why it is here.
    pub error_class: ErrorClass,
    /// The last error's message.
    pub error_message: String,
    /// Attempts made, the first included.
    pub attempts: u32,
    /// First failure (ms).
    pub first_failure: i64,
    /// Last failure (ms).
    pub last_failure: i64,
    /// Times this record has been redriven before (from `weft-dlq-redrive-count`; read
    /// only: the builder keeps the original markers and [`redrive_headers`] bumps them).
    pub redrive_count: u32,
}

/// Builds a [`DeadLetter`]; see [`DeadLetter::builder`].
#[derive(Debug, Clone)]
pub struct DeadLetterBuilder {
    letter: DeadLetter,
}

impl DeadLetterBuilder {
    /// The original record's timestamp (ms).
    pub fn timestamp(mut self, millis: i64) -> Self {
        self.letter.original_timestamp = Some(millis);
        self
    }
    /// The consumer group.
    pub fn consumer_group(mut self, group: impl Into<String>) -> Self {
        self.letter.consumer_group = Some(group.into());
        self
    }
    /// What dead-lettered the record: `consumer` (the SDK), `webhook`, `outbox`, ….
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.letter.source = Some(source.into());
        self
    }
    /// Class and message of the last error (the message is cut to
    /// [`MAX_ERROR_MESSAGE_BYTES`]).
    pub fn error(mut self, class: ErrorClass, message: impl Into<String>) -> Self {
        self.letter.error_class = class;
        self.letter.error_message = truncate(message.into(), MAX_ERROR_MESSAGE_BYTES);
        self
    }
    /// Attempts made.
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.letter.attempts = attempts;
        self
    }
    /// First and last failure times (ms).
    pub fn failures(mut self, first: i64, last: i64) -> Self {
        self.letter.first_failure = first;
        self.letter.last_failure = last;
        self
    }
    /// Class, message, attempts and failure times from a [`crate::retry::retry`] run.
    pub fn retry_error<E: std::fmt::Display>(self, error: &RetryError<E>) -> Self {
        self.error(error.class, error.error.to_string())
            .attempts(error.attempts)
            .failures(
                epoch_millis(error.first_failure),
                epoch_millis(error.last_failure),
            )
    }
    /// The dead letter.
    pub fn build(self) -> DeadLetter {
        self.letter
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// True for the envelope headers a new envelope replaces (not the redrive markers).
fn replaced_by_envelope(key: &str) -> bool {
    key.starts_with(ENVELOPE_PREFIX)
        && key != REDRIVE_COUNT
        && key != REDRIVEN_FROM
        && key != REDRIVEN_AT
        || key == RETRY_LEVEL
        || key == RETRY_NOT_BEFORE
}

impl DeadLetter {
    /// The envelope as a JSON object (`weft dlq list --format json` and the gateway's
    /// `/v1/dlq/{topic}/records`): the fields by name, the error class as its header value.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "original_topic": self.original_topic,
            "original_partition": self.original_partition,
            "original_offset": self.original_offset,
            "original_timestamp": self.original_timestamp,
            "consumer_group": self.consumer_group,
            "source": self.source,
            "error_class": self.error_class.as_str(),
            "error_message": self.error_message,
            "attempts": self.attempts,
            "first_failure": self.first_failure,
            "last_failure": self.last_failure,
            "redrive_count": self.redrive_count,
        })
    }

    /// A builder for the record at `topic`/`partition`/`offset`: class `non-retryable`,
    /// empty message, 1 attempt, failures now, no timestamp or group until set.
    pub fn builder(topic: impl Into<String>, partition: i32, offset: i64) -> DeadLetterBuilder {
        let now = epoch_millis(SystemTime::now());
        DeadLetterBuilder {
            letter: DeadLetter {
                original_topic: topic.into(),
                original_partition: partition,
                original_offset: offset,
                original_timestamp: None,
                consumer_group: None,
                source: None,
                error_class: ErrorClass::NonRetryable,
                error_message: String::new(),
                attempts: 1,
                first_failure: now,
                last_failure: now,
                redrive_count: 0,
            },
        }
    }

    /// The dead-letter record's headers: `original` without any previous envelope (redrive
    /// markers kept), then this envelope.
    pub fn to_headers(&self, original: &[Header]) -> Vec<Header> {
        let mut headers: Vec<Header> = original
            .iter()
            .filter(|h| !replaced_by_envelope(&h.key))
            .cloned()
            .collect();
        headers.push(Header::new(VERSION, ENVELOPE_VERSION.to_string()));
        headers.push(Header::new(ORIGINAL_TOPIC, self.original_topic.clone()));
        headers.push(Header::new(
            ORIGINAL_PARTITION,
            self.original_partition.to_string(),
        ));
        headers.push(Header::new(
            ORIGINAL_OFFSET,
            self.original_offset.to_string(),
        ));
        if let Some(ts) = self.original_timestamp {
            headers.push(Header::new(ORIGINAL_TIMESTAMP, ts.to_string()));
        }
        if let Some(group) = &self.consumer_group {
            headers.push(Header::new(CONSUMER_GROUP, group.clone()));
        }
        if let Some(source) = &self.source {
            headers.push(Header::new(SOURCE, source.clone()));
        }
        headers.push(Header::new(ERROR_CLASS, self.error_class.as_str()));
        headers.push(Header::new(
            ERROR_MESSAGE,
            truncate(self.error_message.clone(), MAX_ERROR_MESSAGE_BYTES),
        ));
        headers.push(Header::new(ATTEMPTS, self.attempts.to_string()));
        headers.push(Header::new(FIRST_FAILURE, self.first_failure.to_string()));
        headers.push(Header::new(LAST_FAILURE, self.last_failure.to_string()));
        headers
    }

    /// Reads the envelope from a record's headers. Required: original topic, partition,
    /// offset and error class; the others default (no timestamp or group, empty message,
    /// 0 attempts, failure times 0). A missing version is read as 1; a different one is
    /// refused.
    pub fn parse(headers: &[Header]) -> Result<DeadLetter> {
        fn text<'a>(headers: &'a [Header], key: &'static str) -> Result<Option<&'a str>> {
            match last_header(headers, key) {
                None => Ok(None),
                Some(h) => match h.value.as_deref() {
                    None => Ok(None),
                    Some(v) => std::str::from_utf8(v)
                        .map(Some)
                        .map_err(|_| Error::InvalidHeader {
                            header: key,
                            value: String::from_utf8_lossy(v).into_owned(),
                            reason: "not UTF-8",
                        }),
                },
            }
        }
        fn required<'a>(headers: &'a [Header], key: &'static str) -> Result<&'a str> {
            text(headers, key)?.ok_or(Error::MissingHeader(key))
        }
        fn number<T: std::str::FromStr>(key: &'static str, value: &str) -> Result<T> {
            value.parse().map_err(|_| Error::InvalidHeader {
                header: key,
                value: value.to_owned(),
                reason: "not a number in range",
            })
        }
        fn optional<T: std::str::FromStr>(
            headers: &[Header],
            key: &'static str,
        ) -> Result<Option<T>> {
            text(headers, key)?.map(|v| number(key, v)).transpose()
        }
        if let Some(version) = text(headers, VERSION)?
            && version != ENVELOPE_VERSION.to_string()
        {
            return Err(Error::UnsupportedVersion(version.to_owned()));
        }
        let class_text = required(headers, ERROR_CLASS)?;
        let error_class = class_text.parse().map_err(|_| Error::InvalidHeader {
            header: ERROR_CLASS,
            value: class_text.to_owned(),
            reason: "expected retryable, non-retryable or park",
        })?;
        Ok(DeadLetter {
            original_topic: required(headers, ORIGINAL_TOPIC)?.to_owned(),
            original_partition: number(ORIGINAL_PARTITION, required(headers, ORIGINAL_PARTITION)?)?,
            original_offset: number(ORIGINAL_OFFSET, required(headers, ORIGINAL_OFFSET)?)?,
            original_timestamp: optional(headers, ORIGINAL_TIMESTAMP)?,
            consumer_group: text(headers, CONSUMER_GROUP)?.map(str::to_owned),
            source: text(headers, SOURCE)?.map(str::to_owned),
            error_class,
            error_message: text(headers, ERROR_MESSAGE)?.unwrap_or("").to_owned(),
            attempts: optional(headers, ATTEMPTS)?.unwrap_or(0),
            first_failure: optional(headers, FIRST_FAILURE)?.unwrap_or(0),
            last_failure: optional(headers, LAST_FAILURE)?.unwrap_or(0),
            redrive_count: optional(headers, REDRIVE_COUNT)?.unwrap_or(0),
        })
    }

    /// Headers for the record on retry topic level `level`, due at `not_before` (ms): the
    /// envelope plus `weft-retry-level` and `weft-retry-not-before`.
    pub fn to_retry_headers(
        &self,
        original: &[Header],
        level: u32,
        not_before: i64,
    ) -> Vec<Header> {
        let mut headers = self.to_headers(original);
        headers.push(Header::new(RETRY_LEVEL, level.to_string()));
        headers.push(Header::new(RETRY_NOT_BEFORE, not_before.to_string()));
        headers
    }
}

/// `(level, not_before_ms)` of a record read from a retry topic; `None` when the headers
/// are absent or malformed (then treat the record as due, at level 0).
pub fn retry_position(headers: &[Header]) -> Option<(u32, i64)> {
    let level = last_header(headers, RETRY_LEVEL)?
        .value_str()?
        .parse()
        .ok()?;
    let due = last_header(headers, RETRY_NOT_BEFORE)?
        .value_str()?
        .parse()
        .ok()?;
    Some((level, due))
}

/// Checks a Kafka topic name: 1 to 249 characters of `[A-Za-z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidConfig(format!(
            "{name:?} is not a valid topic name (1-249 characters of A-Z a-z 0-9 . _ -)"
        )))
    }
}

/// Names of the DLQ, retry and redrive-marker topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicNaming {
    /// Appended to a topic for its DLQ. Default `.dlq`.
    pub dlq_suffix: String,
    /// Between a topic and a retry level. Default `.retry.`.
    pub retry_infix: String,
    /// Appended to a DLQ topic for its redrive markers. Default `.redriven`.
    pub redriven_suffix: String,
}

impl Default for TopicNaming {
    fn default() -> Self {
        TopicNaming {
            dlq_suffix: ".dlq".into(),
            retry_infix: ".retry.".into(),
            redriven_suffix: ".redriven".into(),
        }
    }
}

impl TopicNaming {
    /// `<topic>.dlq`.
    pub fn dlq_topic(&self, topic: &str) -> String {
        format!("{topic}{}", self.dlq_suffix)
    }
    /// `<topic>.retry.<level>` (levels from 1).
    pub fn retry_topic(&self, topic: &str, level: u32) -> String {
        format!("{topic}{}{level}", self.retry_infix)
    }
    /// `<dlq>.redriven`.
    pub fn redriven_topic(&self, dlq_topic: &str) -> String {
        format!("{dlq_topic}{}", self.redriven_suffix)
    }
    /// True for a DLQ topic name (`x.dlq`, `x` not empty).
    pub fn is_dlq(&self, topic: &str) -> bool {
        self.original_of_dlq(topic).is_some()
    }
    /// `orders` for `orders.dlq`.
    pub fn original_of_dlq<'a>(&self, dlq_topic: &'a str) -> Option<&'a str> {
        dlq_topic
            .strip_suffix(self.dlq_suffix.as_str())
            .filter(|t| !t.is_empty())
    }
    /// `("orders", 2)` for `orders.retry.2`.
    pub fn parse_retry_topic<'a>(&self, topic: &'a str) -> Option<(&'a str, u32)> {
        let (base, level) = topic.rsplit_once(self.retry_infix.as_str())?;
        // Canonical decimal only (`1`, not `01` or `+1`), so a level has one topic name.
        let canonical = level.bytes().all(|b| b.is_ascii_digit()) && !level.starts_with('0');
        let level: u32 = level.parse().ok().filter(|_| canonical)?;
        (!base.is_empty()).then_some((base, level))
    }
}

/// Where a failed record goes next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// To retry topic `topic` (level `level`), due after `delay`.
    Retry {
        /// Retry topic name.
        topic: String,
        /// Its level (1-based).
        level: u32,
        /// How long it waits there.
        delay: Duration,
    },
    /// To the DLQ topic.
    DeadLetter {
        /// DLQ topic name.
        topic: String,
    },
}

/// Non-blocking retries through `<topic>.retry.<n>` topics with increasing delays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryTopics {
    naming: TopicNaming,
    delays: Vec<Duration>,
}

/// Most retry-topic levels [`RetryTopics::new`] accepts.
pub const MAX_RETRY_LEVELS: usize = 32;

impl RetryTopics {
    /// One level per delay (1 to [`MAX_RETRY_LEVELS`]).
    pub fn new(naming: TopicNaming, delays: Vec<Duration>) -> Result<Self> {
        if delays.is_empty() || delays.len() > MAX_RETRY_LEVELS {
            return Err(Error::InvalidConfig(format!(
                "retry topics need 1 to {MAX_RETRY_LEVELS} levels, got {}",
                delays.len()
            )));
        }
        Ok(RetryTopics { naming, delays })
    }

    /// `levels` levels whose delays are the policy's ceilings (no jitter: a retry topic's
    /// delay is the same for every record on it).
    pub fn from_policy(naming: TopicNaming, policy: &RetryPolicy, levels: u32) -> Result<Self> {
        RetryTopics::new(naming, (0..levels).map(|n| policy.ceiling(n)).collect())
    }

    /// Number of levels.
    pub fn levels(&self) -> u32 {
        self.delays.len() as u32
    }

    /// Delay of level `level` (1-based).
    pub fn delay(&self, level: u32) -> Option<Duration> {
        self.delays.get((level as usize).checked_sub(1)?).copied()
    }

    /// The naming.
    pub fn naming(&self) -> &TopicNaming {
        &self.naming
    }

    /// Every retry topic of `topic`, level 1 first.
    pub fn topics(&self, topic: &str) -> Vec<String> {
        (1..=self.levels())
            .map(|l| self.naming.retry_topic(topic, l))
            .collect()
    }

    /// Next stop of a record of `topic` that failed with `class` while at `level` (0 = the
    /// main topic): retryable errors go one level up while there is one, everything else
    /// (and a retryable error at the last level) to the DLQ.
    pub fn route(&self, topic: &str, level: u32, class: ErrorClass) -> Route {
        let next = level.saturating_add(1);
        match (class, self.delay(next)) {
            (ErrorClass::Retryable, Some(delay)) => Route::Retry {
                topic: self.naming.retry_topic(topic, next),
                level: next,
                delay,
            },
            _ => Route::DeadLetter {
                topic: self.naming.dlq_topic(topic),
            },
        }
    }
}

/// A record read from a DLQ topic, as redrive selection sees it.
#[derive(Debug, Clone, Copy)]
pub struct DlqRecord<'a> {
    /// Partition in the DLQ topic.
    pub partition: i32,
    /// Offset there.
    pub offset: i64,
    /// Key.
    pub key: Option<&'a [u8]>,
    /// The DLQ record's own timestamp (ms).
    pub timestamp: Option<i64>,
    /// Headers.
    pub headers: &'a [Header],
}

impl DlqRecord<'_> {
    /// The record's age at `now` (ms): from its last failure, else its timestamp.
    pub fn age(&self, now: i64) -> Option<Duration> {
        let since = last_header(self.headers, LAST_FAILURE)
            .and_then(Header::value_str)
            .and_then(|v| v.parse::<i64>().ok())
            .or(self.timestamp)?;
        Some(Duration::from_millis(
            u64::try_from(now.saturating_sub(since)).unwrap_or(0),
        ))
    }
}

/// Which DLQ records to redrive; an empty selection takes everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// DLQ partitions; empty = all.
    pub partitions: Vec<i32>,
    /// DLQ offsets, inclusive `(from, to)`.
    pub offsets: Option<(i64, i64)>,
    /// Exact key.
    pub key: Option<Vec<u8>>,
    /// Error class in the envelope.
    pub error_class: Option<ErrorClass>,
    /// At least this old ([`DlqRecord::age`]).
    pub min_age: Option<Duration>,
    /// At most this old.
    pub max_age: Option<Duration>,
}

impl Selection {
    /// Whether `record` is selected at `now` (ms). A record without a readable error class
    /// or age is not selected by a class or age filter.
    pub fn matches(&self, record: &DlqRecord<'_>, now: i64) -> bool {
        if !self.partitions.is_empty() && !self.partitions.contains(&record.partition) {
            return false;
        }
        if let Some((from, to)) = self.offsets
            && !(from..=to).contains(&record.offset)
        {
            return false;
        }
        if let Some(key) = &self.key
            && record.key != Some(key.as_slice())
        {
            return false;
        }
        if let Some(class) = self.error_class {
            let found = last_header(record.headers, ERROR_CLASS)
                .and_then(Header::value_str)
                .and_then(|v| v.parse::<ErrorClass>().ok());
            if found != Some(class) {
                return false;
            }
        }
        if self.min_age.is_some() || self.max_age.is_some() {
            let Some(age) = record.age(now) else {
                return false;
            };
            if self.min_age.is_some_and(|min| age < min)
                || self.max_age.is_some_and(|max| age > max)
            {
                return false;
            }
        }
        true
    }
}

/// What to do with one DLQ record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Re-publish it to `target`.
    Redrive {
        /// Target topic.
        target: String,
    },
    /// Selected, but a marker says it was redriven already.
    AlreadyRedriven,
    /// Not selected.
    NotSelected,
    /// Selected, but there is no target: no `--to` and its envelope does not parse.
    NoTarget(Error),
}

/// The decision for `record` of `dlq_topic`, given the redrive markers seen
/// (`redriven` holds `(partition, offset)` of this DLQ topic) and an explicit target.
pub fn decide(
    record: &DlqRecord<'_>,
    selection: &Selection,
    redriven: &HashSet<(i32, i64)>,
    to: Option<&str>,
    now: i64,
) -> Decision {
    if !selection.matches(record, now) {
        return Decision::NotSelected;
    }
    if redriven.contains(&(record.partition, record.offset)) {
        return Decision::AlreadyRedriven;
    }
    match to {
        Some(target) => Decision::Redrive {
            target: target.to_owned(),
        },
        None => match DeadLetter::parse(record.headers) {
            Ok(letter) => Decision::Redrive {
                target: letter.original_topic,
            },
            Err(e) => Decision::NoTarget(e),
        },
    }
}

/// Headers of the re-published record: all of the DLQ record's headers (key and value are
/// kept by the caller) with the redrive markers set: count + 1, from, at `now` (ms).
pub fn redrive_headers(
    headers: &[Header],
    dlq_topic: &str,
    partition: i32,
    offset: i64,
    now: i64,
) -> Vec<Header> {
    let count: u32 = last_header(headers, REDRIVE_COUNT)
        .and_then(Header::value_str)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut out: Vec<Header> = headers
        .iter()
        .filter(|h| h.key != REDRIVE_COUNT && h.key != REDRIVEN_FROM && h.key != REDRIVEN_AT)
        .cloned()
        .collect();
    out.push(Header::new(
        REDRIVE_COUNT,
        count.saturating_add(1).to_string(),
    ));
    out.push(Header::new(
        REDRIVEN_FROM,
        redrive_marker_key(dlq_topic, partition, offset),
    ));
    out.push(Header::new(REDRIVEN_AT, now.to_string()));
    out
}

/// `<dlq topic>/<partition>/<offset>`: the key of a redrive marker and the value of
/// `weft-dlq-redriven-from`.
pub fn redrive_marker_key(dlq_topic: &str, partition: i32, offset: i64) -> String {
    format!("{dlq_topic}/{partition}/{offset}")
}

/// Parses [`redrive_marker_key`]'s format.
pub fn parse_redrive_marker_key(key: &str) -> Option<(&str, i32, i64)> {
    let (rest, offset) = key.rsplit_once('/')?;
    let (topic, partition) = rest.rsplit_once('/')?;
    if topic.is_empty() {
        return None;
    }
    Some((topic, partition.parse().ok()?, offset.parse().ok()?))
}

/// The value of a redrive marker: where the record went and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedriveMarker {
    /// Topic it was re-published to.
    pub target_topic: String,
    /// Partition there.
    pub target_partition: i32,
    /// Offset there.
    pub target_offset: i64,
    /// When (ms).
    pub redriven_at: i64,
}

impl RedriveMarker {
    /// `1|<at>|<partition>|<offset>|<topic>` (version first; the topic last, as it is the
    /// only free-form part and never contains `|`).
    pub fn encode(&self) -> Vec<u8> {
        format!(
            "1|{}|{}|{}|{}",
            self.redriven_at, self.target_partition, self.target_offset, self.target_topic
        )
        .into_bytes()
    }

    /// Parses [`RedriveMarker::encode`]'s format.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let bad = || Error::InvalidHeader {
            header: "redrive marker",
            value: String::from_utf8_lossy(bytes).into_owned(),
            reason: "expected 1|<at>|<partition>|<offset>|<topic>",
        };
        let text = std::str::from_utf8(bytes).map_err(|_| bad())?;
        let mut parts = text.splitn(5, '|');
        let version = parts.next().ok_or_else(bad)?;
        if version != "1" {
            return Err(Error::UnsupportedVersion(version.to_owned()));
        }
        let mut next = || parts.next().ok_or_else(bad);
        let redriven_at = next()?.parse().map_err(|_| bad())?;
        let target_partition = next()?.parse().map_err(|_| bad())?;
        let target_offset = next()?.parse().map_err(|_| bad())?;
        let target_topic = next()?.to_owned();
        if target_topic.is_empty() {
            return Err(bad());
        }
        Ok(RedriveMarker {
            target_topic,
            target_partition,
            target_offset,
            redriven_at,
        })
    }
}

/// The headers of the record as it was before it was dead-lettered: `headers` without the
/// envelope [`DeadLetter::to_headers`] appended (nor retry headers), the redrive markers
/// kept. A caller that appended headers of its own after the envelope (the gateway's
/// `weft-webhook-id`) removes those itself.
pub fn without_envelope(headers: &[Header]) -> Vec<Header> {
    headers
        .iter()
        .filter(|h| !replaced_by_envelope(&h.key))
        .cloned()
        .collect()
}

/// Why a selected record is not redriven.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// A marker says it was redriven already.
    AlreadyRedriven,
    /// No explicit target and its envelope does not parse.
    NoTarget(Error),
}

/// The decisions for the records of one redrive, collected: `T` is whatever the caller
/// needs to publish a record later (the record itself, an index).
#[derive(Debug)]
pub struct Plan<T> {
    /// Records to re-publish, with their target, in the order added.
    pub redrive: Vec<(T, String)>,
    /// Selected records that are not redriven, and why.
    pub skipped: Vec<(T, Skip)>,
}

impl<T> Default for Plan<T> {
    fn default() -> Self {
        Plan {
            redrive: Vec::new(),
            skipped: Vec::new(),
        }
    }
}

impl<T> Plan<T> {
    /// Files `item` under its [`decide`] decision (a record not selected is dropped).
    pub fn add(&mut self, item: T, decision: Decision) {
        match decision {
            Decision::Redrive { target } => self.redrive.push((item, target)),
            Decision::AlreadyRedriven => self.skipped.push((item, Skip::AlreadyRedriven)),
            Decision::NoTarget(e) => self.skipped.push((item, Skip::NoTarget(e))),
            Decision::NotSelected => {}
        }
    }

    /// Every target of the records to re-publish, once each: they must all exist before
    /// anything is published.
    pub fn targets(&self) -> std::collections::BTreeSet<&str> {
        self.redrive.iter().map(|(_, t)| t.as_str()).collect()
    }
}

/// One record to re-publish: the headers to send it with (the DLQ record's, plus the
/// redrive markers), then, once the broker acknowledged it, the marker to write on
/// `<dlq>.redriven` under [`Republish::marker_key`]. The caller does the I/O in that
/// order (publish, then mark): a crash between the two redrives the record again later,
/// never loses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Republish {
    /// The DLQ topic the record is on.
    pub dlq_topic: String,
    /// Its partition there.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
    /// Where it goes: a topic, or for the gateway's webhook redrive `webhook:<id>`.
    pub target: String,
    /// When the redrive happens (ms).
    pub at: i64,
    /// The headers to publish it with.
    pub headers: Vec<Header>,
}

impl Republish {
    /// `record` of `dlq_topic` going to `target` at `at` (ms).
    pub fn new(dlq_topic: &str, record: &DlqRecord<'_>, target: String, at: i64) -> Self {
        Republish {
            dlq_topic: dlq_topic.to_owned(),
            partition: record.partition,
            offset: record.offset,
            headers: redrive_headers(
                record.headers,
                dlq_topic,
                record.partition,
                record.offset,
                at,
            ),
            target,
            at,
        }
    }

    /// The key of its marker ([`redrive_marker_key`]).
    pub fn marker_key(&self) -> String {
        redrive_marker_key(&self.dlq_topic, self.partition, self.offset)
    }

    /// The marker's value once the record landed at `partition`/`offset` of the target
    /// (-1/-1 for a target that is not a topic).
    pub fn marker(&self, partition: i32, offset: i64) -> Vec<u8> {
        RedriveMarker {
            target_topic: self.target.clone(),
            target_partition: partition,
            target_offset: offset,
            redriven_at: self.at,
        }
        .encode()
    }

    /// What to say when publishing it failed after `done` others were redriven.
    pub fn publish_failed(&self, done: usize, error: &dyn std::fmt::Display) -> String {
        format!(
            "cannot publish {}/{}/{} to {:?} after {done} redriven: {error}",
            self.dlq_topic, self.partition, self.offset, self.target
        )
    }

    /// What to say when it was published to `partition`/`offset` of the target but its
    /// marker could not be written on `markers`.
    pub fn mark_failed(
        &self,
        markers: &str,
        partition: i32,
        offset: i64,
        error: &dyn std::fmt::Display,
    ) -> String {
        format!(
            "published {} to {}/{partition}/{offset} but cannot record it on {markers:?}: \
             {error} (it may be redriven again)",
            self.marker_key(),
            self.target
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter() -> DeadLetter {
        DeadLetter::builder("orders", 3, 42)
            .timestamp(1_700_000_000_000)
            .consumer_group("billing")
            .error(ErrorClass::Retryable, "payment service timed out")
            .attempts(5)
            .failures(1_700_000_000_100, 1_700_000_004_000)
            .build()
    }

    fn text(headers: &[Header]) -> Vec<(String, String)> {
        headers
            .iter()
            .map(|h| {
                let v = match &h.value {
                    Some(v) => String::from_utf8_lossy(v).into_owned(),
                    None => "<null>".into(),
                };
                (h.key.clone(), v)
            })
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn envelope_version_1_golden() {
        // The exact headers of version 1: changing them breaks every consumer of DLQs
        // written by older builds, so this list only grows with a new version.
        let original = vec![
            Header::new("weft-message-id", "m-1"),
            Header::new("traceparent", "00-abc-def-01"),
            Header {
                key: "nullable".into(),
                value: None,
            },
        ];
        let headers = letter().to_headers(&original);
        assert_eq!(
            text(&headers),
            pairs(&[
                ("weft-message-id", "m-1"),
                ("traceparent", "00-abc-def-01"),
                ("nullable", "<null>"),
                ("weft-dlq-version", "1"),
                ("weft-dlq-original-topic", "orders"),
                ("weft-dlq-original-partition", "3"),
                ("weft-dlq-original-offset", "42"),
                ("weft-dlq-original-timestamp", "1700000000000"),
                ("weft-dlq-consumer-group", "billing"),
                ("weft-dlq-error-class", "retryable"),
                ("weft-dlq-error-message", "payment service timed out"),
                ("weft-dlq-attempts", "5"),
                ("weft-dlq-first-failure", "1700000000100"),
                ("weft-dlq-last-failure", "1700000004000"),
            ])
        );
        assert_eq!(DeadLetter::parse(&headers), Ok(letter()));
    }

    #[test]
    fn source_and_records_that_were_never_on_a_topic() {
        let l = DeadLetter::builder("outbox.event.order", -1, -1)
            .source("outbox")
            .error(ErrorClass::NonRetryable, "value too large")
            .failures(7, 7)
            .build();
        let headers = l.to_headers(&[Header::new("weft-outbox-row-id", "42")]);
        assert_eq!(
            text(&headers[..6]),
            pairs(&[
                ("weft-outbox-row-id", "42"),
                ("weft-dlq-version", "1"),
                ("weft-dlq-original-topic", "outbox.event.order"),
                ("weft-dlq-original-partition", "-1"),
                ("weft-dlq-original-offset", "-1"),
                ("weft-dlq-source", "outbox"),
            ])
        );
        assert_eq!(DeadLetter::parse(&headers), Ok(l));
    }

    #[test]
    fn a_new_envelope_replaces_the_old_one_but_keeps_redrive_history() {
        let first = letter().to_headers(&[Header::new("a", "1")]);
        let redriven = redrive_headers(&first, "orders.dlq", 0, 7, 1_800_000_000_000);
        let again = DeadLetter::builder("orders", 1, 99)
            .error(ErrorClass::NonRetryable, "bad amount")
            .failures(5, 6)
            .build()
            .to_headers(&redriven);
        let keys: Vec<&str> = again.iter().map(|h| h.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "a",
                REDRIVE_COUNT,
                REDRIVEN_FROM,
                REDRIVEN_AT,
                VERSION,
                ORIGINAL_TOPIC,
                ORIGINAL_PARTITION,
                ORIGINAL_OFFSET,
                ERROR_CLASS,
                ERROR_MESSAGE,
                ATTEMPTS,
                FIRST_FAILURE,
                LAST_FAILURE,
            ]
        );
        let parsed = DeadLetter::parse(&again).expect("parses");
        assert_eq!(parsed.original_offset, 99);
        assert_eq!(parsed.error_class, ErrorClass::NonRetryable);
        assert_eq!(parsed.redrive_count, 1);
        assert_eq!(parsed.original_timestamp, None);
        assert_eq!(parsed.consumer_group, None);
    }

    #[test]
    fn parse_errors_name_the_header() {
        let good = letter().to_headers(&[]);
        let without =
            |key: &str| -> Vec<Header> { good.iter().filter(|h| h.key != key).cloned().collect() };
        let with = |key: &str, value: &[u8]| -> Vec<Header> {
            let mut h = good.clone();
            h.push(Header {
                key: key.into(),
                value: Some(value.to_vec()),
            });
            h
        };
        let cases: Vec<(Vec<Header>, Error)> = vec![
            (
                without(ORIGINAL_TOPIC),
                Error::MissingHeader(ORIGINAL_TOPIC),
            ),
            (
                without(ORIGINAL_PARTITION),
                Error::MissingHeader(ORIGINAL_PARTITION),
            ),
            (
                without(ORIGINAL_OFFSET),
                Error::MissingHeader(ORIGINAL_OFFSET),
            ),
            (without(ERROR_CLASS), Error::MissingHeader(ERROR_CLASS)),
            (
                with(ORIGINAL_OFFSET, b"forty-two"),
                Error::InvalidHeader {
                    header: ORIGINAL_OFFSET,
                    value: "forty-two".into(),
                    reason: "not a number in range",
                },
            ),
            (
                with(ORIGINAL_PARTITION, b"4294967296"),
                Error::InvalidHeader {
                    header: ORIGINAL_PARTITION,
                    value: "4294967296".into(),
                    reason: "not a number in range",
                },
            ),
            (
                with(ERROR_CLASS, b"fatal"),
                Error::InvalidHeader {
                    header: ERROR_CLASS,
                    value: "fatal".into(),
                    reason: "expected retryable, non-retryable or park",
                },
            ),
            (
                with(ORIGINAL_TOPIC, &[0xff, 0xfe]),
                Error::InvalidHeader {
                    header: ORIGINAL_TOPIC,
                    value: "\u{fffd}\u{fffd}".into(),
                    reason: "not UTF-8",
                },
            ),
            (with(VERSION, b"2"), Error::UnsupportedVersion("2".into())),
        ];
        for (headers, expected) in cases {
            assert_eq!(
                DeadLetter::parse(&headers),
                Err(expected.clone()),
                "{expected}"
            );
        }
        // A missing version reads as 1; optional headers default.
        let minimal = vec![
            Header::new(ORIGINAL_TOPIC, "t"),
            Header::new(ORIGINAL_PARTITION, "0"),
            Header::new(ORIGINAL_OFFSET, "1"),
            Header::new(ERROR_CLASS, "park"),
        ];
        let parsed = DeadLetter::parse(&minimal).expect("minimal envelope");
        assert_eq!(parsed.error_class, ErrorClass::Park);
        assert_eq!((parsed.attempts, parsed.first_failure), (0, 0));
    }

    #[test]
    fn long_error_messages_are_cut_at_a_character_boundary() {
        let message = "é".repeat(MAX_ERROR_MESSAGE_BYTES); // 2 bytes each
        let l = DeadLetter::builder("t", 0, 0)
            .error(ErrorClass::NonRetryable, format!("x{message}"))
            .build();
        assert!(l.error_message.len() <= MAX_ERROR_MESSAGE_BYTES);
        assert_eq!(l.error_message.len(), MAX_ERROR_MESSAGE_BYTES - 1);
        assert!(l.error_message.starts_with("xé"));
    }

    #[test]
    fn retry_error_fills_the_envelope() {
        let err = RetryError {
            error: "timeout",
            class: ErrorClass::Retryable,
            attempts: 4,
            first_failure: SystemTime::UNIX_EPOCH + Duration::from_millis(1_000),
            last_failure: SystemTime::UNIX_EPOCH + Duration::from_millis(9_000),
        };
        let l = DeadLetter::builder("t", 0, 5).retry_error(&err).build();
        assert_eq!(
            (
                l.error_class,
                l.error_message.as_str(),
                l.attempts,
                l.first_failure,
                l.last_failure
            ),
            (ErrorClass::Retryable, "timeout", 4, 1_000, 9_000)
        );
    }

    #[test]
    fn retry_headers_carry_level_and_due_time() {
        let headers = letter().to_retry_headers(&[], 2, 1_700_000_010_000);
        assert_eq!(retry_position(&headers), Some((2, 1_700_000_010_000)));
        // Dead-lettering a record from a retry topic drops the retry headers.
        let dead = letter().to_headers(&headers);
        assert_eq!(retry_position(&dead), None);
        assert_eq!(DeadLetter::parse(&dead), Ok(letter()));
    }

    #[test]
    fn topic_naming() {
        let n = TopicNaming::default();
        assert_eq!(n.dlq_topic("orders"), "orders.dlq");
        assert_eq!(n.retry_topic("orders", 2), "orders.retry.2");
        assert_eq!(n.redriven_topic("orders.dlq"), "orders.dlq.redriven");
        let cases = [
            ("orders.dlq", Some("orders")),
            ("a.b.dlq", Some("a.b")),
            (".dlq", None),
            ("orders", None),
            ("orders.dlq.redriven", None),
        ];
        for (topic, original) in cases {
            assert_eq!(n.original_of_dlq(topic), original, "{topic}");
            assert_eq!(n.is_dlq(topic), original.is_some(), "{topic}");
        }
        let retries = [
            ("orders.retry.1", Some(("orders", 1))),
            ("orders.retry.12", Some(("orders", 12))),
            ("a.retry.b.retry.3", Some(("a.retry.b", 3))),
            ("orders.retry.0", None),
            ("orders.retry.01", None),
            ("orders.retry.x", None),
            ("orders.retry.+1", None),
            (".retry.1", None),
            ("orders", None),
        ];
        for (topic, expected) in retries {
            assert_eq!(n.parse_retry_topic(topic), expected, "{topic}");
        }
        let custom = TopicNaming {
            dlq_suffix: "-dead".into(),
            ..TopicNaming::default()
        };
        assert_eq!(custom.dlq_topic("orders"), "orders-dead");
        assert_eq!(custom.original_of_dlq("orders-dead"), Some("orders"));
    }

    #[test]
    fn topic_name_validation() {
        for ok in ["orders", "a.b-c_D9", &"x".repeat(249)] {
            assert!(validate_topic_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "ü", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn retry_topic_routing() {
        let policy = RetryPolicy::default()
            .with_initial_delay(Duration::from_secs(1))
            .with_multiplier(10.0)
            .with_max_delay(Duration::from_secs(60));
        let rt = RetryTopics::from_policy(TopicNaming::default(), &policy, 3).expect("3 levels");
        assert_eq!(rt.topics("o"), ["o.retry.1", "o.retry.2", "o.retry.3"]);
        assert_eq!(rt.delay(0), None);
        assert_eq!(rt.delay(1), Some(Duration::from_secs(1)));
        assert_eq!(rt.delay(2), Some(Duration::from_secs(10)));
        assert_eq!(rt.delay(3), Some(Duration::from_secs(60)));
        let retry = |topic: &str, level, delay| Route::Retry {
            topic: topic.into(),
            level,
            delay: Duration::from_secs(delay),
        };
        let dlq = Route::DeadLetter {
            topic: "o.dlq".into(),
        };
        let cases = [
            (0, ErrorClass::Retryable, retry("o.retry.1", 1, 1)),
            (1, ErrorClass::Retryable, retry("o.retry.2", 2, 10)),
            (2, ErrorClass::Retryable, retry("o.retry.3", 3, 60)),
            (3, ErrorClass::Retryable, dlq.clone()),
            (0, ErrorClass::NonRetryable, dlq.clone()),
            (1, ErrorClass::Park, dlq.clone()),
            (u32::MAX, ErrorClass::Retryable, dlq),
        ];
        for (level, class, expected) in cases {
            assert_eq!(rt.route("o", level, class), expected, "{level} {class}");
        }
        assert!(RetryTopics::new(TopicNaming::default(), vec![]).is_err());
        assert!(RetryTopics::new(TopicNaming::default(), vec![Duration::ZERO; 33]).is_err());
    }

    fn record<'a>(
        partition: i32,
        offset: i64,
        key: Option<&'a [u8]>,
        headers: &'a [Header],
    ) -> DlqRecord<'a> {
        DlqRecord {
            partition,
            offset,
            key,
            timestamp: Some(1_000),
            headers,
        }
    }

    #[test]
    fn selection() {
        let now = 1_700_000_004_000 + 3_600_000; // an hour after the last failure
        let retryable = letter().to_headers(&[]);
        let parked = DeadLetter::builder("orders", 0, 1)
            .error(ErrorClass::Park, "later")
            .failures(now - 60_000, now - 60_000)
            .build()
            .to_headers(&[]);
        let bare: Vec<Header> = vec![];
        let hour = Duration::from_secs(3600);
        let minute = Duration::from_secs(60);
        let all = Selection::default();
        let cases: Vec<(Selection, DlqRecord<'_>, bool)> = vec![
            (all.clone(), record(0, 0, None, &bare), true),
            (
                Selection {
                    partitions: vec![1, 2],
                    ..all.clone()
                },
                record(0, 5, None, &retryable),
                false,
            ),
            (
                Selection {
                    partitions: vec![1, 2],
                    ..all.clone()
                },
                record(2, 5, None, &retryable),
                true,
            ),
            (
                Selection {
                    offsets: Some((5, 9)),
                    ..all.clone()
                },
                record(0, 4, None, &retryable),
                false,
            ),
            (
                Selection {
                    offsets: Some((5, 9)),
                    ..all.clone()
                },
                record(0, 5, None, &retryable),
                true,
            ),
            (
                Selection {
                    offsets: Some((5, 9)),
                    ..all.clone()
                },
                record(0, 9, None, &retryable),
                true,
            ),
            (
                Selection {
                    offsets: Some((5, 9)),
                    ..all.clone()
                },
                record(0, 10, None, &retryable),
                false,
            ),
            (
                Selection {
                    key: Some(b"k1".to_vec()),
                    ..all.clone()
                },
                record(0, 0, Some(b"k1"), &retryable),
                true,
            ),
            (
                Selection {
                    key: Some(b"k1".to_vec()),
                    ..all.clone()
                },
                record(0, 0, Some(b"k2"), &retryable),
                false,
            ),
            (
                Selection {
                    key: Some(b"k1".to_vec()),
                    ..all.clone()
                },
                record(0, 0, None, &retryable),
                false,
            ),
            (
                Selection {
                    error_class: Some(ErrorClass::Park),
                    ..all.clone()
                },
                record(0, 0, None, &parked),
                true,
            ),
            (
                Selection {
                    error_class: Some(ErrorClass::Park),
                    ..all.clone()
                },
                record(0, 0, None, &retryable),
                false,
            ),
            (
                Selection {
                    error_class: Some(ErrorClass::Park),
                    ..all.clone()
                },
                record(0, 0, None, &bare),
                false,
            ),
            (
                Selection {
                    min_age: Some(hour),
                    ..all.clone()
                },
                record(0, 0, None, &retryable),
                true,
            ),
            (
                Selection {
                    min_age: Some(hour),
                    ..all.clone()
                },
                record(0, 0, None, &parked),
                false,
            ),
            (
                Selection {
                    max_age: Some(minute),
                    ..all.clone()
                },
                record(0, 0, None, &parked),
                true,
            ),
            (
                Selection {
                    max_age: Some(minute),
                    ..all.clone()
                },
                record(0, 0, None, &retryable),
                false,
            ),
            // Without envelope the record's own timestamp gives the age.
            (
                Selection {
                    min_age: Some(hour),
                    ..all.clone()
                },
                record(0, 0, None, &bare),
                true,
            ),
            (
                Selection {
                    min_age: Some(hour),
                    ..all.clone()
                },
                DlqRecord {
                    timestamp: None,
                    ..record(0, 0, None, &bare)
                },
                false,
            ),
        ];
        for (i, (selection, record, expected)) in cases.into_iter().enumerate() {
            assert_eq!(
                selection.matches(&record, now),
                expected,
                "case {i}: {selection:?}"
            );
        }
    }

    #[test]
    fn decisions() {
        let headers = letter().to_headers(&[]);
        let bare: Vec<Header> = vec![Header::new("x", "y")];
        let redriven: HashSet<(i32, i64)> = [(0, 7)].into_iter().collect();
        let all = Selection::default();
        let only_8 = Selection {
            offsets: Some((8, 8)),
            ..Selection::default()
        };
        let to_original = Decision::Redrive {
            target: "orders".into(),
        };
        assert_eq!(
            decide(&record(0, 8, None, &headers), &all, &redriven, None, 0),
            to_original
        );
        assert_eq!(
            decide(&record(0, 7, None, &headers), &all, &redriven, None, 0),
            Decision::AlreadyRedriven
        );
        // The same offset on another partition is another record.
        assert_eq!(
            decide(&record(1, 7, None, &headers), &all, &redriven, None, 0),
            to_original
        );
        assert_eq!(
            decide(&record(0, 9, None, &headers), &only_8, &redriven, None, 0),
            Decision::NotSelected
        );
        assert_eq!(
            decide(
                &record(0, 8, None, &headers),
                &all,
                &redriven,
                Some("orders.replay"),
                0
            ),
            Decision::Redrive {
                target: "orders.replay".into()
            }
        );
        assert_eq!(
            decide(&record(0, 8, None, &bare), &all, &redriven, None, 0),
            Decision::NoTarget(Error::MissingHeader(ERROR_CLASS))
        );
    }

    #[test]
    fn redrive_headers_bump_the_count_and_keep_everything_else() {
        let headers = letter().to_headers(&[Header::new("weft-message-id", "m-1")]);
        let once = redrive_headers(&headers, "orders.dlq", 2, 40, 111);
        assert_eq!(&once[..headers.len()], &headers[..]);
        assert_eq!(
            text(&once[headers.len()..]),
            pairs(&[
                (REDRIVE_COUNT, "1"),
                (REDRIVEN_FROM, "orders.dlq/2/40"),
                (REDRIVEN_AT, "111"),
            ])
        );
        let twice = redrive_headers(&once, "orders.dlq", 0, 41, 222);
        assert_eq!(twice.len(), once.len());
        assert_eq!(
            text(&twice[headers.len()..]),
            pairs(&[
                (REDRIVE_COUNT, "2"),
                (REDRIVEN_FROM, "orders.dlq/0/41"),
                (REDRIVEN_AT, "222"),
            ])
        );
    }

    #[test]
    fn redrive_markers() {
        let key = redrive_marker_key("orders.dlq", 3, 17);
        assert_eq!(key, "orders.dlq/3/17");
        assert_eq!(parse_redrive_marker_key(&key), Some(("orders.dlq", 3, 17)));
        for bad in ["", "a/b", "/1/2", "t/x/2", "t/1/y", "t/1"] {
            assert_eq!(parse_redrive_marker_key(bad), None, "{bad}");
        }
        let marker = RedriveMarker {
            target_topic: "orders".into(),
            target_partition: 1,
            target_offset: 99,
            redriven_at: 1_700_000_000_000,
        };
        assert_eq!(marker.encode(), b"1|1700000000000|1|99|orders");
        assert_eq!(RedriveMarker::decode(&marker.encode()), Ok(marker));
        assert_eq!(
            RedriveMarker::decode(b"2|1|1|1|t"),
            Err(Error::UnsupportedVersion("2".into()))
        );
        for bad in [&b""[..], b"1|x|1|1|t", b"1|1|1|1|", b"1|1|1", &[0xff]] {
            assert!(RedriveMarker::decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn without_envelope_gives_back_the_original_headers() {
        let original = vec![
            Header::new("trace", "t-1"),
            Header::new(REDRIVE_COUNT, "1"),
            Header {
                key: "null".into(),
                value: None,
            },
        ];
        let dead = letter().to_headers(&original);
        assert_eq!(without_envelope(&dead), original);
        let retried = letter().to_retry_headers(&original, 2, 9);
        assert_eq!(without_envelope(&retried), original);
        assert_eq!(without_envelope(&[]), vec![]);
    }

    #[test]
    fn a_plan_files_decisions_and_names_each_target_once() {
        let mut plan = Plan::default();
        let to = |t: &str| Decision::Redrive { target: t.into() };
        plan.add(1, to("b"));
        plan.add(2, Decision::NotSelected);
        plan.add(3, Decision::AlreadyRedriven);
        plan.add(4, to("a"));
        plan.add(5, to("b"));
        plan.add(6, Decision::NoTarget(Error::MissingHeader(ERROR_CLASS)));
        assert_eq!(
            plan.redrive,
            vec![(1, "b".to_owned()), (4, "a".into()), (5, "b".into())]
        );
        assert_eq!(
            plan.skipped,
            vec![
                (3, Skip::AlreadyRedriven),
                (6, Skip::NoTarget(Error::MissingHeader(ERROR_CLASS)))
            ]
        );
        assert_eq!(plan.targets().into_iter().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn republish_carries_the_markers_and_its_marker_record() {
        let headers = letter().to_headers(&[Header::new("weft-message-id", "m-1")]);
        let r = Republish::new(
            "orders.dlq",
            &record(2, 40, Some(b"k"), &headers),
            "orders".into(),
            111,
        );
        assert_eq!(
            r.headers,
            redrive_headers(&headers, "orders.dlq", 2, 40, 111)
        );
        assert_eq!(r.marker_key(), "orders.dlq/2/40");
        assert_eq!(
            RedriveMarker::decode(&r.marker(1, 99)),
            Ok(RedriveMarker {
                target_topic: "orders".into(),
                target_partition: 1,
                target_offset: 99,
                redriven_at: 111,
            })
        );
        let hook = Republish {
            target: "webhook:wh_1".into(),
            ..r.clone()
        };
        assert_eq!(hook.marker(-1, -1), b"1|111|-1|-1|webhook:wh_1");
        assert!(r.publish_failed(3, &"boom").contains("orders.dlq/2/40"));
        assert!(
            r.mark_failed("orders.dlq.redriven", 1, 99, &"boom")
                .contains("orders/1/99")
        );
    }
}
