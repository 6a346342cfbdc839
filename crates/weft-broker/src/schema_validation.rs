//! Broker-side schema validation: topics that ask for it refuse produced records whose key or
//! value does not carry a schema of the topic's subject.
//!
//! Topic configs (validated when set; `INVALID_CONFIG` otherwise):
//! - `weft.schema.validation` = `none` (default) | `id` | `full`: the level for keys and
//!   values alike;
//! - `weft.key.schema.validation`, `weft.value.schema.validation` = `inherit` (default) |
//!   `none` | `id` | `full`: the level for one side, overriding the topic-wide one.
//!
//! `id`: a non-null key/value must start with the Confluent wire format (magic byte 0 and a
//! 4-byte schema id, or magic byte 1 and a 16-byte GUID; for Protobuf schemas the
//! message-index list after it) naming a schema that a live version of the subject
//! `<topic>-key` / `<topic>-value` (TopicNameStrategy) uses. `full`: it must also decode with
//! that schema ([`ParsedSchema::validate`]). Null keys and values (tombstones) pass.
//!
//! One bad record refuses the whole partition entry with `INVALID_RECORD`; the response's
//! `error_message` names the first problem and `record_errors` lists each refused record
//! (index within the entry's records, counted across its batches). Nothing of a refused
//! entry is appended.
//!
//! The broker does not know the registry: the binary hands in a [`SchemaSource`]. The
//! [`SchemaValidator`] in front of it caches parsed schemas by id forever (an id never changes
//! meaning) and subject membership for a short time: a "no" for [`NEGATIVE_TTL`], so a schema
//! registered a moment ago is accepted quickly; a "yes" for [`POSITIVE_TTL`], so a deleted
//! version stops being accepted soon after.
//!
//! Work split: decoding batches (decompression included) and checking payloads run on the
//! blocking pool; only the look-ups through the source are awaited on the reactor.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tracing::{debug, warn};
use weft_schema::wire::{self, SchemaRef};
use weft_schema::{ParsedSchema, SchemaType};

use crate::server::blocking;

/// The topic-wide level config.
pub(crate) const CONFIG: &str = "weft.schema.validation";
/// The key-side level config.
pub(crate) const KEY_CONFIG: &str = "weft.key.schema.validation";
/// The value-side level config.
pub(crate) const VALUE_CONFIG: &str = "weft.value.schema.validation";

/// How long a "not registered" answer is believed.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(1);
/// How long an "is registered" answer is believed.
pub const POSITIVE_TTL: Duration = Duration::from_secs(10);
/// Parsed schemas kept (cleared as a whole when full).
const MAX_CACHED_SCHEMAS: usize = 4096;
/// Subject memberships kept (cleared as a whole when full).
const MAX_CACHED_MEMBERSHIPS: usize = 16_384;
/// Refused records listed in one response's `record_errors`.
const MAX_RECORD_ERRORS: usize = 100;

/// How strictly one side (key or value) of a topic's records is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    None,
    Id,
    Full,
}

impl Level {
    fn parse(s: &str) -> Option<Level> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" => Some(Level::None),
            "id" => Some(Level::Id),
            "full" => Some(Level::Full),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Level::None => "none",
            Level::Id => "id",
            Level::Full => "full",
        }
    }
}

/// Whether `value` is valid for the config `name` (one of ours): `Some(())` when it is.
pub(crate) fn parse_config(name: &str, value: &str) -> Option<()> {
    let side = name != CONFIG;
    if side && value.trim().eq_ignore_ascii_case("inherit") {
        return Some(());
    }
    Level::parse(value).map(|_| ())
}

/// How a stored override of one of our configs is shown (DescribeConfigs, CreateTopics):
/// normalized to lower case. `None` for other configs.
pub(crate) fn shown(name: &str, stored: &str) -> Option<String> {
    if ![CONFIG, KEY_CONFIG, VALUE_CONFIG].contains(&name) {
        return None;
    }
    Some(stored.trim().to_ascii_lowercase())
}

/// The (key, value) levels of a topic with these config overrides.
pub(crate) fn levels(configs: &std::collections::BTreeMap<String, String>) -> (Level, Level) {
    let get = |n: &str| configs.get(n).and_then(|v| Level::parse(v));
    let topic = get(CONFIG).unwrap_or(Level::None);
    (
        get(KEY_CONFIG).unwrap_or(topic),
        get(VALUE_CONFIG).unwrap_or(topic),
    )
}

/// A schema source failed (the registry's store is unreachable…); the message says why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

/// What a [`SchemaSource`] call returns.
pub type SourceFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, SourceError>> + Send + 'a>>;

/// Where the broker learns about schemas: the binary implements it over its registry (in
/// process), so the broker never depends on the registry crate.
pub trait SchemaSource: Send + Sync {
    /// The schema with global id `id`, parsed with its references; `None` when no schema
    /// has that id.
    fn schema_by_id(&self, id: u32) -> SourceFuture<'_, Option<Arc<ParsedSchema>>>;

    /// The id and schema a GUID names; `None` when none does. Registries that assign no
    /// GUIDs keep the default.
    fn schema_by_guid(
        &self,
        _guid: [u8; 16],
    ) -> SourceFuture<'_, Option<(u32, Arc<ParsedSchema>)>> {
        Box::pin(async { Ok(None) })
    }

    /// Whether a live (not deleted) version of `subject` uses schema `id`.
    fn is_registered<'a>(&'a self, subject: &'a str, id: u32) -> SourceFuture<'a, bool>;
}

/// A [`SchemaSource`] with the caches described in the module docs. Cheap to clone.
#[derive(Clone)]
pub struct SchemaValidator {
    inner: Arc<ValidatorInner>,
}

struct ValidatorInner {
    source: Arc<dyn SchemaSource>,
    positive_ttl: Duration,
    negative_ttl: Duration,
    /// `None` entries are "no such id", believed until their deadline.
    schemas: Mutex<HashMap<u32, CachedSchema>>,
    memberships: Mutex<HashMap<(String, u32), (bool, Instant)>>,
}

impl fmt::Debug for SchemaValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchemaValidator")
            .field("positive_ttl", &self.inner.positive_ttl)
            .field("negative_ttl", &self.inner.negative_ttl)
            .finish_non_exhaustive()
    }
}

/// A schema by id (or "no such id") and until when it is believed (`None`: forever).
type CachedSchema = (Option<Arc<ParsedSchema>>, Option<Instant>);

fn guard<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SchemaValidator {
    /// A validator over `source` with the default cache lifetimes.
    pub fn new(source: Arc<dyn SchemaSource>) -> SchemaValidator {
        SchemaValidator::with_ttls(source, POSITIVE_TTL, NEGATIVE_TTL)
    }

    /// A validator believing "registered" answers for `positive` and "not registered" or
    /// "unknown id" answers for `negative`.
    pub fn with_ttls(
        source: Arc<dyn SchemaSource>,
        positive: Duration,
        negative: Duration,
    ) -> SchemaValidator {
        SchemaValidator {
            inner: Arc::new(ValidatorInner {
                source,
                positive_ttl: positive,
                negative_ttl: negative,
                schemas: Mutex::new(HashMap::new()),
                memberships: Mutex::new(HashMap::new()),
            }),
        }
    }

    async fn schema(&self, id: u32) -> Result<Option<Arc<ParsedSchema>>, SourceError> {
        let now = Instant::now();
        if let Some((s, until)) = guard(&self.inner.schemas).get(&id)
            && until.is_none_or(|u| now < u)
        {
            return Ok(s.clone());
        }
        let found = self.inner.source.schema_by_id(id).await?;
        let mut cache = guard(&self.inner.schemas);
        if cache.len() >= MAX_CACHED_SCHEMAS {
            cache.clear();
        }
        let until = found
            .is_none()
            .then(|| Instant::now() + self.inner.negative_ttl);
        cache.insert(id, (found.clone(), until));
        Ok(found)
    }

    async fn registered(&self, subject: &str, id: u32) -> Result<bool, SourceError> {
        let key = (subject.to_owned(), id);
        if let Some((yes, until)) = guard(&self.inner.memberships).get(&key)
            && Instant::now() < *until
        {
            return Ok(*yes);
        }
        let yes = self.inner.source.is_registered(subject, id).await?;
        let ttl = if yes {
            self.inner.positive_ttl
        } else {
            self.inner.negative_ttl
        };
        let mut cache = guard(&self.inner.memberships);
        if cache.len() >= MAX_CACHED_MEMBERSHIPS {
            cache.clear();
        }
        cache.insert(key, (yes, Instant::now() + ttl));
        Ok(yes)
    }

    /// What `r` names, checked against `subject`: the id and schema, or why not.
    async fn resolve(&self, r: SchemaRef, subject: &str) -> Result<Resolved, SourceError> {
        let (id, schema) = match r {
            SchemaRef::Id(id) => match self.schema(id).await? {
                Some(s) => (id, s),
                None => {
                    return Ok(Err(format!(
                        "schema id {id} is unknown to the schema registry"
                    )));
                }
            },
            SchemaRef::Guid(g) => match self.inner.source.schema_by_guid(g).await? {
                Some(found) => found,
                None => {
                    return Ok(Err(format!(
                        "schema GUID {} is unknown to the schema registry",
                        guid_text(&g)
                    )));
                }
            },
        };
        if !self.registered(subject, id).await? {
            return Ok(Err(format!(
                "schema id {id} is not registered under subject {subject}"
            )));
        }
        Ok(Ok((id, schema)))
    }
}

/// [`SchemaRef`] as a map key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum RefKey {
    Id(u32),
    Guid([u8; 16]),
}

impl From<SchemaRef> for RefKey {
    fn from(r: SchemaRef) -> RefKey {
        match r {
            SchemaRef::Id(id) => RefKey::Id(id),
            SchemaRef::Guid(g) => RefKey::Guid(g),
        }
    }
}

/// A reference resolved: the id and schema, or the reason it is refused.
type Resolved = Result<(u32, Arc<ParsedSchema>), String>;

fn guid_text(g: &[u8; 16]) -> String {
    let h: String = g.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A partition entry of a produce request that refused validation.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) error: ResponseError,
    pub(crate) message: String,
    /// `(record index, message)` for Produce v8+ `record_errors`.
    pub(crate) record_errors: Vec<(i32, String)>,
}

/// One partition entry of a produce request to screen.
pub(crate) struct Entry<K> {
    pub(crate) key: K,
    pub(crate) topic: String,
    pub(crate) records: Bytes,
    pub(crate) levels: (Level, Level),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Key,
    Value,
}

impl Side {
    fn as_str(self) -> &'static str {
        match self {
            Side::Key => "key",
            Side::Value => "value",
        }
    }
}

/// One key or value to check.
struct Check {
    record: usize,
    side: Side,
    level: Level,
    /// The schema reference and the bytes after it, or why the prefix is not the wire
    /// format.
    prefix: Result<(SchemaRef, Bytes), String>,
}

/// The keys and values of one entry, decoded.
struct Scanned {
    checks: Vec<Check>,
}

/// Decodes the batches of `records` (decompressing) and picks out what `levels` ask to
/// check. `None` when the batches do not decode: the append path then refuses them with the
/// framing or CRC error it would give anyway.
fn scan(records: &Bytes, levels: (Level, Level)) -> Option<Scanned> {
    let mut checks = Vec::new();
    let mut at = 0usize;
    let mut index = 0usize;
    while at < records.len() {
        let rest = &records[at..];
        let total = rest
            .get(8..12)
            .and_then(|l| usize::try_from(i32::from_be_bytes([l[0], l[1], l[2], l[3]])).ok())
            .and_then(|l| l.checked_add(12))
            .filter(|t| *t <= rest.len())?;
        let batch = &rest[..total];
        at += total;
        weft_log::batch::validate(batch).ok()?;
        for r in weft_log::batch::records(batch).ok()? {
            for (side, level, payload) in [
                (Side::Key, levels.0, r.key),
                (Side::Value, levels.1, r.value),
            ] {
                let Some(payload) = payload.filter(|_| level != Level::None) else {
                    continue;
                };
                let prefix = match wire::split_prefix(&payload) {
                    Ok((r, rest)) => {
                        let offset = payload.len() - rest.len();
                        Ok((r, payload.slice(offset..)))
                    }
                    Err(e) => Err(format!("no Confluent wire-format prefix: {e}")),
                };
                checks.push(Check {
                    record: index,
                    side,
                    level,
                    prefix,
                });
            }
            index += 1;
        }
    }
    Some(Scanned { checks })
}

/// Why one key or value is refused, given what its reference resolved to; `None` when it
/// passes. Blocking for `full` (decodes the payload).
fn judge(check: &Check, subject: &str, resolved: Option<&Resolved>) -> Option<String> {
    let (_, rest) = match &check.prefix {
        Ok(p) => p,
        Err(e) => return Some(e.clone()),
    };
    let (id, schema) = match resolved? {
        Ok(found) => found,
        Err(why) => return Some(why.clone()),
    };
    let (indexes, payload) = if schema.schema_type() == SchemaType::Protobuf {
        match wire::split_message_indexes(rest) {
            Ok((indexes, payload)) => (indexes, payload),
            Err(e) => return Some(format!("schema id {id}: {e}")),
        }
    } else {
        (Vec::new(), &rest[..])
    };
    // The message indexes must name a message of the schema, whatever the level.
    if let ParsedSchema::Protobuf(p) = schema.as_ref()
        && let Err(e) = p.message_name_at(&indexes)
    {
        return Some(format!(
            "message indexes {indexes:?} name no message of schema id {id}: {e}"
        ));
    }
    if check.level == Level::Full
        && let Err(e) = schema.validate(payload, &indexes)
    {
        return Some(format!(
            "does not decode with schema id {id} of subject {subject}: {e}"
        ));
    }
    None
}

/// Screens the entries against their topics' levels; the refused ones come back keyed as
/// they went in. Entries whose levels are both `none` should not be passed.
pub(crate) async fn screen<K: Send + 'static>(
    validator: Option<&SchemaValidator>,
    entries: Vec<Entry<K>>,
) -> Vec<(K, Refusal)> {
    if entries.is_empty() {
        return Vec::new();
    }
    let Some(validator) = validator else {
        // Asked for, but nothing to validate against: refusing beats a silent pass.
        return entries
            .into_iter()
            .map(|e| {
                let message = format!(
                    "topic {} asks for schema validation but this broker has no schema registry",
                    e.topic
                );
                (
                    e.key,
                    Refusal {
                        error: ResponseError::PolicyViolation,
                        message,
                        record_errors: Vec::new(),
                    },
                )
            })
            .collect();
    };
    let scanned = blocking(move || {
        entries
            .into_iter()
            .map(|e| {
                let s = scan(&e.records, e.levels);
                (e.key, e.topic, s)
            })
            .collect::<Vec<_>>()
    })
    .await;
    let scanned = match scanned {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "schema validation task failed");
            return Vec::new();
        }
    };
    // Look every distinct (subject, reference) up once.
    let mut wanted: HashMap<(String, RefKey), SchemaRef> = HashMap::new();
    for (_, topic, s) in &scanned {
        for c in s.iter().flat_map(|s| &s.checks) {
            if let Ok((r, _)) = &c.prefix {
                wanted.insert((subject(topic, c.side), RefKey::from(*r)), *r);
            }
        }
    }
    let mut resolved: HashMap<(String, RefKey), Resolved> = HashMap::new();
    let mut failed: Option<SourceError> = None;
    for ((subject, key), r) in wanted {
        match validator.resolve(r, &subject).await {
            Ok(res) => {
                resolved.insert((subject, key), res);
            }
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    if let Some(e) = failed {
        warn!(error = %e, "schema registry look-up failed; refusing the records to validate");
        return scanned
            .into_iter()
            .map(|(key, _, _)| {
                (
                    key,
                    Refusal {
                        error: ResponseError::UnknownServerError,
                        message: format!("schema validation could not reach the registry: {e}"),
                        record_errors: Vec::new(),
                    },
                )
            })
            .collect();
    }
    let judged = blocking(move || {
        let mut out = Vec::new();
        for (key, topic, s) in scanned {
            let Some(s) = s else { continue };
            let mut errors: Vec<(usize, String)> = Vec::new();
            for c in &s.checks {
                let subject = subject(&topic, c.side);
                let found = c
                    .prefix
                    .as_ref()
                    .ok()
                    .and_then(|(r, _)| resolved.get(&(subject.clone(), RefKey::from(*r))));
                if let Some(why) = judge(c, &subject, found) {
                    let hint = match (c.side, c.prefix.is_err()) {
                        (Side::Key, true) => {
                            format!(" (set {KEY_CONFIG}=none to accept keys without a schema)")
                        }
                        _ => String::new(),
                    };
                    errors.push((
                        c.record,
                        format!("record {} {}: {why}{hint}", c.record, c.side.as_str()),
                    ));
                }
            }
            if errors.is_empty() {
                continue;
            }
            let mut message = errors[0].1.clone();
            let refused: HashSet<usize> = errors.iter().map(|(r, _)| *r).collect();
            if refused.len() > 1 {
                message.push_str(&format!(
                    " ({} records refused in all; none of this partition's records were written)",
                    refused.len()
                ));
            }
            debug!(topic, message, "produce refused by schema validation");
            let record_errors = errors
                .into_iter()
                .take(MAX_RECORD_ERRORS)
                .map(|(r, m)| (i32::try_from(r).unwrap_or(i32::MAX), m))
                .collect();
            out.push((
                key,
                Refusal {
                    error: ResponseError::InvalidRecord,
                    message,
                    record_errors,
                },
            ));
        }
        out
    })
    .await;
    judged.unwrap_or_else(|e| {
        warn!(error = %e, "schema validation task failed");
        Vec::new()
    })
}

/// TopicNameStrategy.
fn subject(topic: &str, side: Side) -> String {
    format!("{topic}-{}", side.as_str())
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn config_values() {
        let cases: &[(&str, &str, bool)] = &[
            (CONFIG, "none", true),
            (CONFIG, "id", true),
            (CONFIG, "FULL", true),
            (CONFIG, "inherit", false),
            (CONFIG, "yes", false),
            (CONFIG, "", false),
            (KEY_CONFIG, "inherit", true),
            (KEY_CONFIG, "id", true),
            (VALUE_CONFIG, "full", true),
            (VALUE_CONFIG, "strict", false),
        ];
        for (name, value, ok) in cases {
            assert_eq!(parse_config(name, value).is_some(), *ok, "{name}={value}");
        }
    }

    #[test]
    fn levels_inherit_and_override() {
        let check = |pairs: &[(&str, &str)], expected: (Level, Level)| {
            let m: BTreeMap<String, String> = pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            assert_eq!(levels(&m), expected, "{pairs:?}");
        };
        check(&[], (Level::None, Level::None));
        check(&[(CONFIG, "id")], (Level::Id, Level::Id));
        check(
            &[(CONFIG, "full"), (KEY_CONFIG, "none")],
            (Level::None, Level::Full),
        );
        check(&[(VALUE_CONFIG, "id")], (Level::None, Level::Id));
        check(
            &[(CONFIG, "id"), (KEY_CONFIG, "inherit")],
            (Level::Id, Level::Id),
        );
        check(
            &[(KEY_CONFIG, "full"), (VALUE_CONFIG, "none"), (CONFIG, "id")],
            (Level::Full, Level::None),
        );
    }

    #[test]
    fn guid_is_shown_as_uuid() {
        let mut g = [0u8; 16];
        g[0] = 0xab;
        g[15] = 1;
        assert_eq!(guid_text(&g), "ab000000-0000-0000-0000-000000000001");
    }
}
