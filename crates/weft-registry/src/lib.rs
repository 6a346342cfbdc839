//! Weft's schema registry: the Confluent Schema Registry REST API, so existing serializers
//! (Java, Python, Go, JavaScript…) work against Weft unchanged.
//!
//! - [`Registry`]: the operations (register, look up, delete, config, modes, compatibility)
//!   over [`weft_store`], which owns the connections and transactions. Parsing, canonical
//!   forms and compatibility rules are [`weft_schema`]'s; they are CPU work and run on the
//!   blocking pool, never on the reactor.
//! - [`router`] / [`serve`]: the HTTP API (axum), media types and the Confluent error body
//!   `{"error_code", "message"}`; [`Error`] maps to codes in one table (`error.rs`).
//! - `storage`: the tables and every query.
//!
//! Invariants: ids are global, allocated inside the registering transaction from a counter
//! that only grows, so an id is never reused, even after a permanent delete; the same
//! schema (type + canonical text + references) has one id under every subject, enforced by a
//! UNIQUE fingerprint so two registries sharing one PostgreSQL agree; a registration that
//! fails (invalid schema, unresolvable reference, incompatible) stores nothing.

// `Error` carries `weft_store::Error` (about 128 bytes, mostly migration details). An error
// ends a request, so its size costs nothing measurable; boxing it would only add noise.
#![allow(clippy::result_large_err)]

pub mod auth;
mod deprecation;
mod error;
mod http;
mod lookup;
mod metrics;
mod review;
mod storage;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{debug, info};
use weft_schema::{CompatibilityLevel, NamedSchema, ParsedSchema, SchemaType};
use weft_store::Store;
use weft_store::sqlx::AnyConnection;

pub use deprecation::Deprecation;
pub use error::{Error, Result};
pub use http::{MAX_BODY_BYTES, router, router_with_auth, serve, serve_with_auth};
pub use review::{
    DEFAULT_APPROVALS, Event as ProposalEvent, PRINCIPAL_HEADER, Proposal, Proposed,
    Status as ProposalStatus,
};

use storage::{GLOBAL, SchemaRow, VersionRow};

/// The component name under which the registry's migrations are recorded.
pub const COMPONENT: &str = "registry";
/// The level when neither the subject nor the registry sets one (Confluent's default).
pub const DEFAULT_COMPATIBILITY: CompatibilityLevel = CompatibilityLevel::Backward;
/// How many times a registration is retried after losing a race with another writer.
const MAX_ATTEMPTS: u32 = 20;
/// Parsed schemas kept in memory by id (ids never change meaning, so entries never go stale).
const CACHE_ENTRIES: usize = 1024;
/// Deepest chain of references followed.
const MAX_REFERENCE_DEPTH: usize = 64;

/// A reference from one schema to another subject's version, under the name the referring
/// schema uses (Avro full name, Protobuf import path, JSON `$ref`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    pub name: String,
    pub subject: String,
    pub version: i64,
}

/// A subject's mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    ReadWrite,
    ReadOnly,
    ReadOnlyOverride,
    Import,
    /// Weft's change control: registrations become proposals (`review.rs`).
    Review,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::ReadWrite => "READWRITE",
            Mode::ReadOnly => "READONLY",
            Mode::ReadOnlyOverride => "READONLY_OVERRIDE",
            Mode::Import => "IMPORT",
            Mode::Review => "REVIEW",
        }
    }

    fn read_only(self) -> bool {
        matches!(self, Mode::ReadOnly | Mode::ReadOnlyOverride)
    }
}

impl FromStr for Mode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Mode> {
        [
            Mode::ReadWrite,
            Mode::ReadOnly,
            Mode::ReadOnlyOverride,
            Mode::Import,
            Mode::Review,
        ]
        .into_iter()
        .find(|m| m.as_str().eq_ignore_ascii_case(s))
        .ok_or(Error::InvalidMode)
    }
}

/// A schema as a client submits it (register, look up, check compatibility).
#[derive(Debug, Clone, Default)]
pub struct SchemaInput {
    pub schema: String,
    /// `None` means AVRO.
    pub schema_type: Option<String>,
    pub references: Vec<Reference>,
    /// IMPORT mode: the id and version to register under.
    pub id: Option<i64>,
    pub version: Option<i64>,
}

/// A schema as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaOutput {
    pub id: i64,
    pub schema_type: SchemaType,
    pub schema: String,
    pub references: Vec<Reference>,
}

/// A subject's version as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionOutput {
    pub subject: String,
    pub version: i64,
    pub deleted: bool,
    pub schema: SchemaOutput,
}

/// A version as written in a path: a number or `latest` (also `-1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSpec {
    Latest,
    Number(i64),
}

impl VersionSpec {
    /// `latest`, `-1` or 1..=2^31-1; anything else is 42202.
    pub fn parse(s: &str) -> Result<VersionSpec> {
        if s.eq_ignore_ascii_case("latest") {
            return Ok(VersionSpec::Latest);
        }
        match s.parse::<i64>() {
            Ok(-1) => Ok(VersionSpec::Latest),
            Ok(n) if (1..=i64::from(i32::MAX)).contains(&n) => Ok(VersionSpec::Number(n)),
            _ => Err(Error::InvalidVersion(s.to_owned())),
        }
    }
}

/// The outcome of a compatibility check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompatibilityReport {
    pub is_compatible: bool,
    pub messages: Vec<String>,
}

/// The schema registry. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    store: Store,
    cache: Arc<Mutex<HashMap<i64, Arc<ParsedSchema>>>>,
}

impl Registry {
    /// Applies the registry's migrations to `store` and returns the registry on it.
    pub async fn open(store: Store) -> Result<Registry> {
        store.migrate(COMPONENT, storage::MIGRATIONS).await?;
        deprecation::migrate(&store).await?;
        review::migrate(&store).await?;
        info!(url = store.url(), "schema registry store ready");
        {
            let mut c = store
                .pool()
                .acquire()
                .await
                .map_err(weft_store::Error::from)?;
            let schemas = storage::count_schemas(&mut c).await?;
            let max_id = storage::max_schema_id(&mut c).await?;
            crate::metrics::opened(schemas, max_id);
        }
        Ok(Registry {
            store,
            cache: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    async fn conn(&self) -> Result<weft_store::sqlx::pool::PoolConnection<weft_store::sqlx::Any>> {
        Ok(self
            .store
            .pool()
            .acquire()
            .await
            .map_err(weft_store::Error::from)?)
    }

    // ---- subjects and versions ----

    /// `GET /subjects`.
    pub async fn subjects(&self, deleted: bool, prefix: Option<&str>) -> Result<Vec<String>> {
        let mut c = self.conn().await?;
        let all = storage::subjects(&mut c, deleted).await?;
        Ok(match prefix {
            Some(p) => all.into_iter().filter(|s| s.starts_with(p)).collect(),
            None => all,
        })
    }

    /// `GET /subjects/{s}/versions`.
    pub async fn versions(&self, subject: &str, deleted: bool) -> Result<Vec<i64>> {
        let mut c = self.conn().await?;
        let versions: Vec<i64> = storage::versions(&mut c, subject)
            .await?
            .into_iter()
            .filter(|v| deleted || !v.deleted)
            .map(|v| v.version)
            .collect();
        if versions.is_empty() {
            return Err(Error::SubjectNotFound(subject.to_owned()));
        }
        Ok(versions)
    }

    /// `GET /subjects/{s}/versions/{v}`.
    pub async fn version(
        &self,
        subject: &str,
        spec: VersionSpec,
        deleted: bool,
    ) -> Result<VersionOutput> {
        let mut c = self.conn().await?;
        let rows = storage::versions(&mut c, subject).await?;
        let row = pick_version(subject, &rows, spec, deleted)?;
        let schema = load_schema(&mut c, row.schema_id).await?;
        Ok(VersionOutput {
            subject: subject.to_owned(),
            version: row.version,
            deleted: row.deleted,
            schema: output(schema),
        })
    }

    /// `GET /subjects/{s}/versions/{v}/referencedby`.
    pub async fn referenced_by(&self, subject: &str, spec: VersionSpec) -> Result<Vec<i64>> {
        let mut c = self.conn().await?;
        let rows = storage::versions(&mut c, subject).await?;
        let row = pick_version(subject, &rows, spec, true)?;
        Ok(storage::referrers(&mut c, subject, row.version, false).await?)
    }

    /// `GET /schemas`: the versions of `subjects` (live ones; soft-deleted too with
    /// `deleted`), by subject then version; with `latest_only` each subject's last shown
    /// version. Subjects without such versions are skipped.
    pub async fn schemas(
        &self,
        subjects: &[String],
        deleted: bool,
        latest_only: bool,
    ) -> Result<Vec<VersionOutput>> {
        let mut c = self.conn().await?;
        let mut out = Vec::new();
        for subject in subjects {
            let rows: Vec<VersionRow> = storage::versions(&mut c, subject)
                .await?
                .into_iter()
                .filter(|v| deleted || !v.deleted)
                .collect();
            let shown = if latest_only {
                rows.last().map_or(&rows[..0], std::slice::from_ref)
            } else {
                &rows[..]
            };
            for row in shown {
                let schema = load_schema(&mut c, row.schema_id).await?;
                out.push(VersionOutput {
                    subject: subject.clone(),
                    version: row.version,
                    deleted: row.deleted,
                    schema: output(schema),
                });
            }
        }
        Ok(out)
    }

    // ---- schemas by id ----

    /// `GET /schemas/ids/{id}`. In Confluent's registry `subject` only selects the schema
    /// context the id is looked up in; there is only the default context here, so any
    /// subject finds every id. (Deserializers pass the subject their naming strategy
    /// derives, which need not be the one the writer registered under.)
    pub async fn schema_by_id(&self, id: i64, _subject: Option<&str>) -> Result<SchemaOutput> {
        let mut c = self.conn().await?;
        let schema = storage::schema(&mut c, id)
            .await?
            .ok_or_else(|| Error::SchemaNotFound(id.to_string()))?;
        Ok(output(schema))
    }

    /// `schema` in the `format` a client asked for: Protobuf `serialized` is the base64
    /// `FileDescriptorProto` (what Confluent's Python deserializer asks for); any other
    /// format, or type, is the stored text.
    pub async fn render(
        &self,
        mut schema: SchemaOutput,
        format: Option<&str>,
    ) -> Result<SchemaOutput> {
        if schema.schema_type == SchemaType::Protobuf
            && format.is_some_and(|f| f.eq_ignore_ascii_case("serialized"))
        {
            let parsed = self.parsed(schema.id).await?;
            if let ParsedSchema::Protobuf(p) = parsed.as_ref() {
                schema.schema = p.to_descriptor_base64();
            }
        }
        Ok(schema)
    }

    /// The largest schema id handed out so far (`fetchMaxId=true`).
    pub async fn max_schema_id(&self) -> Result<i64> {
        let mut c = self.conn().await?;
        Ok(storage::max_schema_id(&mut c).await?)
    }

    /// `GET /schemas/ids/{id}/versions`: `(subject, version)` pairs using the id.
    pub async fn schema_uses(&self, id: i64, deleted: bool) -> Result<Vec<(String, i64)>> {
        let mut c = self.conn().await?;
        if storage::schema(&mut c, id).await?.is_none() {
            return Err(Error::SchemaNotFound(id.to_string()));
        }
        Ok(storage::uses_of_schema(&mut c, id)
            .await?
            .into_iter()
            .filter(|(_, _, d)| deleted || !d)
            .map(|(s, v, _)| (s, v))
            .collect())
    }

    // ---- register and look up ----

    /// `POST /subjects/{s}/versions`: the schema's global id, a new version when the subject
    /// does not already have it.
    pub async fn register(
        &self,
        subject: &str,
        input: SchemaInput,
        normalize: bool,
    ) -> Result<i64> {
        check_subject(subject)?;
        let mode = self.effective_mode(subject).await?;
        if mode.read_only() {
            return Err(Error::NotPermitted(format!(
                "Subject {subject} is in read-only mode"
            )));
        }
        let import = mode == Mode::Import;
        if !import && input.id.is_some_and(|id| id >= 0) {
            return Err(Error::NotPermitted(format!(
                "Subject {subject} is not in import mode"
            )));
        }
        let normalize = normalize || self.effective_normalize(subject).await?;
        let candidate = self.prepare(&input, normalize).await?;
        let level = self.effective_compatibility(subject).await?;

        for attempt in 1..=MAX_ATTEMPTS {
            match self
                .try_register(subject, &input, &candidate, import, level)
                .await
            {
                Err(Error::Store(e)) if e.is_retryable() && attempt < MAX_ATTEMPTS => {
                    debug!(subject, attempt, error = %e, "registration raced another writer; retrying");
                    // Back off a little so the winner commits before we look again.
                    tokio::time::sleep(Duration::from_millis(2 * u64::from(attempt))).await;
                }
                Err(Error::Internal(m)) if m == RETRY && attempt < MAX_ATTEMPTS => {}
                Ok(id) => {
                    crate::metrics::registered(id);
                    return Ok(id);
                }
                other => return other,
            }
        }
        Err(Error::Internal(
            "registration kept conflicting with concurrent writers".to_owned(),
        ))
    }

    async fn try_register(
        &self,
        subject: &str,
        input: &SchemaInput,
        candidate: &Candidate,
        import: bool,
        level: CompatibilityLevel,
    ) -> Result<i64> {
        let snapshot = {
            let mut c = self.conn().await?;
            storage::versions(&mut c, subject).await?
        };
        // Already registered in this subject (and not deleted): its id, no new version.
        if let Some(existing) = snapshot
            .iter()
            .rev()
            .find(|v| !v.deleted && v.fingerprint == candidate.fingerprint)
        {
            if let Some(id) = input.id.filter(|id| *id >= 0 && *id != existing.schema_id) {
                return Err(Error::NotPermitted(format!(
                    "Schema already registered with id {} instead of input id {id}",
                    existing.schema_id
                )));
            }
            return Ok(existing.schema_id);
        }
        if !import && level != CompatibilityLevel::None {
            let live: Vec<&VersionRow> = snapshot.iter().filter(|v| !v.deleted).collect();
            let reasons = self.check_against(&candidate.parsed, &live, level).await?;
            if !reasons.is_empty() {
                return Err(Error::Incompatible(format!(
                    "Schema being registered is incompatible with an earlier schema for \
                     subject \"{subject}\", details: [{}]",
                    details(&reasons, level)
                )));
            }
        }

        let mut tx = self.store.begin().await?;
        // Someone else changed the subject since the check: check again.
        if storage::versions(&mut tx, subject).await? != snapshot {
            return Err(Error::Internal(RETRY.to_owned()));
        }
        let existing = storage::schema_id_by_fingerprint(&mut tx, &candidate.fingerprint).await?;
        let id = match (existing, input.id.filter(|id| *id >= 0)) {
            (Some(existing), Some(wanted)) if existing != wanted => {
                return Err(Error::NotPermitted(format!(
                    "Schema already registered with id {existing} instead of input id {wanted}"
                )));
            }
            (Some(existing), _) => existing,
            (None, Some(wanted)) => {
                if storage::schema(&mut tx, wanted).await?.is_some() {
                    return Err(Error::NotPermitted(format!(
                        "Overwrite new schema with id {wanted} is not permitted."
                    )));
                }
                storage::reserve_schema_id(&mut tx, wanted).await?;
                self.insert_candidate(&mut tx, wanted, candidate).await?;
                wanted
            }
            (None, None) => {
                let id = storage::next_schema_id(&mut tx).await?;
                self.insert_candidate(&mut tx, id, candidate).await?;
                id
            }
        };
        let next = snapshot.last().map_or(1, |v| v.version + 1);
        let version = match input.version.filter(|v| *v > 0) {
            Some(v) if import => {
                if snapshot.iter().any(|row| row.version == v) {
                    return Err(Error::NotPermitted(format!(
                        "Version {v} of subject {subject} already exists with another schema"
                    )));
                }
                v
            }
            Some(v) if v != next => {
                return Err(Error::NotPermitted(format!(
                    "Version {v} can only be given in IMPORT mode (the next version of \
                     subject {subject} is {next})"
                )));
            }
            _ => next,
        };
        storage::insert_version(&mut tx, subject, version, id).await?;
        tx.commit().await.map_err(weft_store::Error::from)?;
        info!(subject, version, id, "schema registered");
        Ok(id)
    }

    async fn insert_candidate(
        &self,
        c: &mut AnyConnection,
        id: i64,
        candidate: &Candidate,
    ) -> Result<()> {
        storage::insert_schema(
            c,
            id,
            candidate.parsed.schema_type(),
            &candidate.fingerprint,
            &candidate.text,
            &candidate.references,
        )
        .await?;
        Ok(())
    }

    /// `POST /subjects/{s}`: the version of `subject` holding this schema.
    pub async fn lookup(
        &self,
        subject: &str,
        input: SchemaInput,
        normalize: bool,
        deleted: bool,
    ) -> Result<VersionOutput> {
        let mut c = self.conn().await?;
        let rows = storage::versions(&mut c, subject).await?;
        drop(c);
        if !rows.iter().any(|v| deleted || !v.deleted) {
            return Err(Error::SubjectNotFound(subject.to_owned()));
        }
        let normalize = normalize || self.effective_normalize(subject).await?;
        let candidate = self.prepare(&input, normalize).await?;
        let row = rows
            .iter()
            .rev()
            .find(|v| (deleted || !v.deleted) && v.fingerprint == candidate.fingerprint)
            .ok_or(Error::SchemaNotInSubject)?;
        let mut c = self.conn().await?;
        let schema = load_schema(&mut c, row.schema_id).await?;
        Ok(VersionOutput {
            subject: subject.to_owned(),
            version: row.version,
            deleted: row.deleted,
            schema: output(schema),
        })
    }

    /// `POST /compatibility/subjects/{s}/versions[/{v}]`: against one version, or (`None`)
    /// against the versions the subject's level names.
    pub async fn check_compatibility(
        &self,
        subject: &str,
        version: Option<VersionSpec>,
        input: SchemaInput,
        normalize: bool,
    ) -> Result<CompatibilityReport> {
        let mut c = self.conn().await?;
        let rows = storage::versions(&mut c, subject).await?;
        drop(c);
        let live: Vec<&VersionRow> = rows.iter().filter(|v| !v.deleted).collect();
        let against: Vec<&VersionRow> = match version {
            Some(spec) => vec![pick_version(subject, &rows, spec, false)?],
            None => live,
        };
        let candidate = self.prepare(&input, normalize).await?;
        let level = self.effective_compatibility(subject).await?;
        let reasons = if level == CompatibilityLevel::None {
            Vec::new()
        } else {
            self.check_against(&candidate.parsed, &against, level)
                .await?
        };
        let mut messages: Vec<String> = reasons.iter().map(ToString::to_string).collect();
        let is_compatible = messages.is_empty();
        if !is_compatible {
            messages.push(format!("{{compatibility: '{level}'}}"));
        }
        Ok(CompatibilityReport {
            is_compatible,
            messages,
        })
    }

    /// Parses the submitted schema with its references resolved (off the reactor) and
    /// computes what identifies it.
    async fn prepare(&self, input: &SchemaInput, normalize: bool) -> Result<Candidate> {
        if input.schema.trim().is_empty() {
            return Err(Error::InvalidSchema("Empty schema".to_owned()));
        }
        let schema_type = match input.schema_type.as_deref() {
            None | Some("") => SchemaType::Avro,
            Some(t) => t
                .parse()
                .map_err(|_| Error::InvalidSchema(format!("Invalid schema type {t}")))?,
        };
        let mut c = self.conn().await?;
        let mut references = Vec::with_capacity(input.references.len());
        for r in &input.references {
            let rows = storage::versions(&mut c, &r.subject).await?;
            // `-1` (latest) is pinned to the version it means now.
            let spec = if r.version == -1 {
                VersionSpec::Latest
            } else {
                VersionSpec::Number(r.version)
            };
            let row = pick_version(&r.subject, &rows, spec, true).map_err(|_| {
                Error::InvalidSchema(format!(
                    "reference {:?} to subject {:?} version {} does not resolve",
                    r.name, r.subject, r.version
                ))
            })?;
            references.push(Reference {
                name: r.name.clone(),
                subject: r.subject.clone(),
                version: row.version,
            });
        }
        let named = resolve(&mut c, &references).await?;
        drop(c);
        let text = input.schema.clone();
        let refs_json = serde_json::to_string(&references)
            .map_err(|e| Error::Internal(format!("cannot encode references: {e}")))?;
        let (parsed, text, canonical) = blocking(move || {
            let parsed = ParsedSchema::parse(schema_type, &text, &named)
                .map_err(|e| Error::InvalidSchema(e.to_string()))?;
            if normalize {
                let normalized = parsed.normalized();
                let reparsed = ParsedSchema::parse(schema_type, &normalized, &named)
                    .map_err(|e| Error::InvalidSchema(e.to_string()))?;
                let canonical = reparsed.canonical();
                Ok((reparsed, normalized, canonical))
            } else {
                let canonical = parsed.canonical();
                // As Confluent: Avro and Protobuf are stored (and served) in their canonical
                // text — Protobuf sent as a base64 descriptor comes back as `.proto` text;
                // JSON Schema keeps the client's text, key order included.
                let text = match schema_type {
                    SchemaType::Json => text,
                    SchemaType::Avro | SchemaType::Protobuf => canonical.clone(),
                };
                Ok((parsed, text, canonical))
            }
        })
        .await?;
        let mut h = Sha256::new();
        h.update(schema_type.as_str());
        h.update([0]);
        h.update(canonical.as_bytes());
        h.update([0]);
        h.update(refs_json.as_bytes());
        let fingerprint = h
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        Ok(Candidate {
            parsed: Arc::new(parsed),
            text,
            references,
            fingerprint,
        })
    }

    /// Why `new` may not follow `previous` (oldest first) under `level`.
    async fn check_against(
        &self,
        new: &Arc<ParsedSchema>,
        previous: &[&VersionRow],
        level: CompatibilityLevel,
    ) -> Result<Vec<weft_schema::Incompatibility>> {
        let mut parsed = Vec::with_capacity(previous.len());
        for row in previous {
            parsed.push(self.parsed(row.schema_id).await?);
        }
        let new = Arc::clone(new);
        blocking(move || {
            let refs: Vec<&ParsedSchema> = parsed.iter().map(AsRef::as_ref).collect();
            Ok(weft_schema::check_compatibility(level, &new, &refs))
        })
        .await
    }

    /// A stored schema, parsed (from the cache when it was parsed before).
    async fn parsed(&self, id: i64) -> Result<Arc<ParsedSchema>> {
        if let Some(p) = self.cache_get(id) {
            return Ok(p);
        }
        let mut c = self.conn().await?;
        let row = load_schema(&mut c, id).await?;
        let named = resolve(&mut c, &row.references).await?;
        drop(c);
        let parsed = blocking(move || {
            ParsedSchema::parse(row.schema_type, &row.text, &named)
                .map_err(|e| Error::Internal(format!("stored schema {id} no longer parses: {e}")))
        })
        .await?;
        let parsed = Arc::new(parsed);
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(id, Arc::clone(&parsed));
        }
        Ok(parsed)
    }

    fn cache_get(&self, id: i64) -> Option<Arc<ParsedSchema>> {
        self.cache.lock().ok()?.get(&id).cloned()
    }

    // ---- deletes ----

    /// `DELETE /subjects/{s}`: the versions deleted.
    pub async fn delete_subject(&self, subject: &str, permanent: bool) -> Result<Vec<i64>> {
        self.check_writable(subject).await?;
        let mut tx = self.store.begin().await?;
        let rows = storage::versions(&mut tx, subject).await?;
        if rows.is_empty() {
            return Err(Error::SubjectNotFound(subject.to_owned()));
        }
        let live: Vec<i64> = rows
            .iter()
            .filter(|v| !v.deleted)
            .map(|v| v.version)
            .collect();
        let deleted: Vec<i64> = if permanent {
            if !live.is_empty() {
                return Err(Error::SubjectNotSoftDeleted(subject.to_owned()));
            }
            for row in &rows {
                referenced_check(&mut tx, subject, row.version, true).await?;
            }
            for row in &rows {
                storage::hard_delete(&mut tx, subject, row.version).await?;
            }
            storage::delete_config(&mut tx, subject).await?;
            storage::delete_mode(&mut tx, subject).await?;
            rows.iter().map(|v| v.version).collect()
        } else {
            if live.is_empty() {
                return Err(Error::SubjectSoftDeleted(subject.to_owned()));
            }
            for &v in &live {
                referenced_check(&mut tx, subject, v, false).await?;
            }
            for &v in &live {
                storage::soft_delete(&mut tx, subject, v).await?;
            }
            live
        };
        tx.commit().await.map_err(weft_store::Error::from)?;
        info!(subject, permanent, versions = ?deleted, "subject deleted");
        Ok(deleted)
    }

    /// `DELETE /subjects/{s}/versions/{v}`: the version deleted.
    pub async fn delete_version(
        &self,
        subject: &str,
        spec: VersionSpec,
        permanent: bool,
    ) -> Result<i64> {
        self.check_writable(subject).await?;
        let mut tx = self.store.begin().await?;
        let rows = storage::versions(&mut tx, subject).await?;
        if rows.is_empty() {
            return Err(Error::SubjectNotFound(subject.to_owned()));
        }
        // A number names any version (a soft-deleted one gets 40406 below); `latest` is the
        // newest live version, or for a permanent delete the newest of all.
        let include_deleted = permanent || matches!(spec, VersionSpec::Number(_));
        let row = pick_version(subject, &rows, spec, include_deleted)?;
        let version = row.version;
        if permanent {
            if !row.deleted {
                return Err(Error::VersionNotSoftDeleted(subject.to_owned(), version));
            }
            referenced_check(&mut tx, subject, version, true).await?;
            storage::hard_delete(&mut tx, subject, version).await?;
        } else {
            if row.deleted {
                return Err(Error::VersionSoftDeleted(subject.to_owned(), version));
            }
            referenced_check(&mut tx, subject, version, false).await?;
            storage::soft_delete(&mut tx, subject, version).await?;
        }
        tx.commit().await.map_err(weft_store::Error::from)?;
        info!(subject, version, permanent, "version deleted");
        Ok(version)
    }

    async fn check_writable(&self, subject: &str) -> Result<()> {
        if self.effective_mode(subject).await?.read_only() {
            return Err(Error::NotPermitted(format!(
                "Subject {subject} is in read-only mode"
            )));
        }
        Ok(())
    }

    // ---- config ----

    /// The level that applies to `subject`: its own, else the registry's, else BACKWARD.
    pub async fn effective_compatibility(&self, subject: &str) -> Result<CompatibilityLevel> {
        let mut c = self.conn().await?;
        for key in [subject, GLOBAL] {
            if let Some((Some(level), _)) = storage::config(&mut c, key).await? {
                return parse_level(&level);
            }
        }
        Ok(DEFAULT_COMPATIBILITY)
    }

    async fn effective_normalize(&self, subject: &str) -> Result<bool> {
        let mut c = self.conn().await?;
        for key in [subject, GLOBAL] {
            if let Some((_, Some(n))) = storage::config(&mut c, key).await? {
                return Ok(n);
            }
        }
        Ok(false)
    }

    /// `GET /config[/{s}]`: `None` subject is the registry-wide level.
    pub async fn get_compatibility(
        &self,
        subject: Option<&str>,
        default_to_global: bool,
    ) -> Result<CompatibilityLevel> {
        let Some(subject) = subject else {
            let mut c = self.conn().await?;
            return match storage::config(&mut c, GLOBAL).await? {
                Some((Some(level), _)) => parse_level(&level),
                _ => Ok(DEFAULT_COMPATIBILITY),
            };
        };
        let own = {
            let mut c = self.conn().await?;
            storage::config(&mut c, subject).await?
        };
        match own {
            Some((Some(level), _)) => parse_level(&level),
            _ if default_to_global => Box::pin(self.get_compatibility(None, false)).await,
            _ => Err(Error::CompatibilityNotConfigured(subject.to_owned())),
        }
    }

    /// `PUT /config[/{s}]`.
    pub async fn set_compatibility(
        &self,
        subject: Option<&str>,
        level: Option<CompatibilityLevel>,
        normalize: Option<bool>,
    ) -> Result<()> {
        if let Some(s) = subject {
            check_subject(s)?;
        }
        if level.is_none() && normalize.is_none() {
            return Err(Error::InvalidCompatibility);
        }
        let mut c = self.conn().await?;
        storage::set_config(
            &mut c,
            subject.unwrap_or(GLOBAL),
            level.map(CompatibilityLevel::as_str),
            normalize,
        )
        .await?;
        Ok(())
    }

    /// `DELETE /config[/{s}]`: the level that was set (or applied) before.
    pub async fn delete_compatibility(&self, subject: Option<&str>) -> Result<CompatibilityLevel> {
        let key = subject.unwrap_or(GLOBAL);
        let mut c = self.conn().await?;
        let own = storage::config(&mut c, key).await?;
        if let Some(subject) = subject
            && own.is_none()
            && storage::versions(&mut c, subject).await?.is_empty()
        {
            return Err(Error::SubjectNotFound(subject.to_owned()));
        }
        drop(c);
        let before = match &own {
            Some((Some(level), _)) => parse_level(level)?,
            _ => self.get_compatibility(None, false).await?,
        };
        let mut c = self.conn().await?;
        storage::delete_config(&mut c, key).await?;
        Ok(before)
    }

    // ---- modes ----

    /// The mode that applies to `subject`: its own, else the registry's, else READWRITE.
    pub async fn effective_mode(&self, subject: &str) -> Result<Mode> {
        let mut c = self.conn().await?;
        for key in [subject, GLOBAL] {
            if let Some(mode) = storage::mode(&mut c, key).await? {
                return mode.parse();
            }
        }
        Ok(Mode::ReadWrite)
    }

    /// `GET /mode[/{s}]`.
    pub async fn get_mode(&self, subject: Option<&str>, default_to_global: bool) -> Result<Mode> {
        let mut c = self.conn().await?;
        match subject {
            None => Ok(match storage::mode(&mut c, GLOBAL).await? {
                Some(m) => m.parse()?,
                None => Mode::ReadWrite,
            }),
            Some(s) => match storage::mode(&mut c, s).await? {
                Some(m) => m.parse(),
                None if default_to_global => Ok(match storage::mode(&mut c, GLOBAL).await? {
                    Some(m) => m.parse()?,
                    None => Mode::ReadWrite,
                }),
                None => Err(Error::ModeNotConfigured(s.to_owned())),
            },
        }
    }

    /// `PUT /mode[/{s}]`. IMPORT needs an empty registry (or subject) unless `force`.
    pub async fn set_mode(&self, subject: Option<&str>, mode: Mode, force: bool) -> Result<()> {
        if let Some(s) = subject {
            check_subject(s)?;
        }
        let mut c = self.conn().await?;
        if mode == Mode::Import && !force {
            let occupied = match subject {
                None => storage::any_version(&mut c).await?,
                Some(s) => !storage::versions(&mut c, s).await?.is_empty(),
            };
            if occupied {
                return Err(Error::NotPermitted(
                    "Cannot import since found existing subjects".to_owned(),
                ));
            }
        }
        storage::set_mode(&mut c, subject.unwrap_or(GLOBAL), mode.as_str()).await?;
        info!(
            subject = subject.unwrap_or("(global)"),
            mode = mode.as_str(),
            "mode set"
        );
        Ok(())
    }

    /// `DELETE /mode/{s}`: the mode set before.
    pub async fn delete_mode(&self, subject: &str) -> Result<Mode> {
        let mut c = self.conn().await?;
        let own = storage::mode(&mut c, subject).await?;
        let before = match own {
            Some(m) => m.parse()?,
            None if storage::versions(&mut c, subject).await?.is_empty() => {
                return Err(Error::SubjectNotFound(subject.to_owned()));
            }
            None => match storage::mode(&mut c, GLOBAL).await? {
                Some(m) => m.parse()?,
                None => Mode::ReadWrite,
            },
        };
        storage::delete_mode(&mut c, subject).await?;
        Ok(before)
    }
}

/// A submitted schema, parsed and identified.
struct Candidate {
    parsed: Arc<ParsedSchema>,
    /// The text to store: as submitted, or normalized.
    text: String,
    /// With `-1` pinned to concrete versions.
    references: Vec<Reference>,
    fingerprint: String,
}

/// The sentinel of a registration that must start over (the subject changed under it).
const RETRY: &str = "retry";

fn parse_level(s: &str) -> Result<CompatibilityLevel> {
    s.parse().map_err(|_| Error::InvalidCompatibility)
}

/// Confluent refuses empty subjects, control characters and its reserved names.
fn check_subject(subject: &str) -> Result<()> {
    if subject.is_empty()
        || subject.chars().any(char::is_control)
        || subject == GLOBAL
        || subject == "__EMPTY"
    {
        return Err(Error::InvalidSubject(subject.to_owned()));
    }
    Ok(())
}

/// The version `spec` names among `rows`, soft-deleted ones only when `deleted`.
fn pick_version<'a>(
    subject: &str,
    rows: &'a [VersionRow],
    spec: VersionSpec,
    deleted: bool,
) -> Result<&'a VersionRow> {
    let visible = |v: &&VersionRow| deleted || !v.deleted;
    if !rows.iter().any(|v| visible(&v)) {
        return Err(Error::SubjectNotFound(subject.to_owned()));
    }
    match spec {
        VersionSpec::Latest => rows
            .iter()
            .rev()
            .find(visible)
            .ok_or_else(|| Error::SubjectNotFound(subject.to_owned())),
        VersionSpec::Number(n) => rows
            .iter()
            .find(|v| v.version == n && visible(v))
            .ok_or_else(|| Error::VersionNotFound(n.to_string())),
    }
}

async fn load_schema(c: &mut AnyConnection, id: i64) -> Result<SchemaRow> {
    storage::schema(c, id)
        .await?
        .ok_or_else(|| Error::SchemaNotFound(id.to_string()))
}

/// 42206 when a schema still in use refers to `subject` `version` (any use when `any`).
async fn referenced_check(
    c: &mut AnyConnection,
    subject: &str,
    version: i64,
    any: bool,
) -> Result<()> {
    let ids = storage::referrers(c, subject, version, any).await?;
    if ids.is_empty() {
        return Ok(());
    }
    Err(Error::ReferenceExists(format!(
        "One or more references exist to the schema {{magic=1,keytype=SCHEMA,subject={subject},version={version}}} (referenced by schema ids {ids:?})"
    )))
}

/// Every schema `references` need, transitively, dependencies first, each once.
fn resolve<'a>(
    c: &'a mut AnyConnection,
    references: &'a [Reference],
) -> Pin<Box<dyn Future<Output = Result<Vec<NamedSchema>>> + Send + 'a>> {
    Box::pin(async move {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        collect(c, references, &mut out, &mut seen, 0).await?;
        Ok(out)
    })
}

fn collect<'a>(
    c: &'a mut AnyConnection,
    references: &'a [Reference],
    out: &'a mut Vec<NamedSchema>,
    seen: &'a mut HashSet<(String, i64)>,
    depth: usize,
) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>> {
    Box::pin(async move {
        if depth > MAX_REFERENCE_DEPTH {
            return Err(Error::InvalidSchema(format!(
                "references nest deeper than {MAX_REFERENCE_DEPTH}"
            )));
        }
        for r in references {
            if !seen.insert((r.subject.clone(), r.version)) {
                continue;
            }
            let rows = storage::versions(c, &r.subject).await?;
            let row = rows
                .iter()
                .find(|v| v.version == r.version)
                .ok_or_else(|| {
                    Error::InvalidSchema(format!(
                        "reference {:?} to subject {:?} version {} does not resolve",
                        r.name, r.subject, r.version
                    ))
                })?;
            let schema = load_schema(c, row.schema_id).await?;
            collect(c, &schema.references, out, seen, depth + 1).await?;
            out.push(NamedSchema {
                name: r.name.clone(),
                text: schema.text,
            });
        }
        Ok(())
    })
}

fn output(row: SchemaRow) -> SchemaOutput {
    SchemaOutput {
        id: row.id,
        schema_type: row.schema_type,
        schema: row.text,
        references: row.references,
    }
}

/// Confluent's `details: [...]` list: each reason, then the level.
fn details(reasons: &[weft_schema::Incompatibility], level: CompatibilityLevel) -> String {
    let mut parts: Vec<String> = reasons
        .iter()
        .map(|r| {
            format!(
                "{{errorType:'{}', description:'{}', additionalInfo:'{}'}}",
                r.kind, r.message, r.location
            )
        })
        .collect();
    parts.push(format!("{{compatibility: '{level}'}}"));
    parts.join(", ")
}

/// Runs CPU work (parsing, compatibility checks) on the blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("schema task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_specs() {
        let ok = [
            ("latest", VersionSpec::Latest),
            ("LATEST", VersionSpec::Latest),
            ("-1", VersionSpec::Latest),
            ("1", VersionSpec::Number(1)),
            ("2147483647", VersionSpec::Number(2_147_483_647)),
        ];
        for (s, expected) in ok {
            assert_eq!(VersionSpec::parse(s).expect(s), expected, "{s}");
        }
        for s in ["0", "-2", "2147483648", "x", "", "1.5"] {
            let err = VersionSpec::parse(s).expect_err(s);
            assert_eq!(err.error_code(), 42202, "{s}");
        }
    }

    #[test]
    fn modes_parse() {
        assert_eq!("import".parse::<Mode>().expect("import"), Mode::Import);
        assert_eq!(
            "READONLY_OVERRIDE".parse::<Mode>().expect("ro"),
            Mode::ReadOnlyOverride
        );
        assert_eq!("FOO".parse::<Mode>().expect_err("foo").error_code(), 42204);
    }

    #[test]
    fn subjects_checked() {
        for bad in ["", "__GLOBAL", "__EMPTY", "a\nb"] {
            assert_eq!(
                check_subject(bad).expect_err(bad).error_code(),
                42208,
                "{bad:?}"
            );
        }
        check_subject("orders-value").expect("fine");
    }
}
