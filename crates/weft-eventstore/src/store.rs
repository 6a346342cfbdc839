//! [`EventStore`]: the tables, appends and reads.
//!
//! Order of an append transaction (numbered because correctness depends on it):
//! 1. `UPDATE es_positions … RETURNING value` — the first statement, so on PostgreSQL the
//!    row lock is taken before anything is read and on SQLite the write lock is taken before
//!    the transaction has a read snapshot (no `BUSY_SNAPSHOT`);
//! 2. per stream: load its row, refuse a tombstone, detect an idempotent retry by event ids,
//!    check the expected version;
//! 3. insert the events with the next positions and revisions, update the stream row;
//! 4. store the new last position in `es_positions`;
//! 5. commit (the lock is released with it), then wake in-process subscribers.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use weft_store::sqlx::{self, Row, any::AnyRow};
use weft_store::{Migration, Store, Tx, now_ms};

use crate::schema::CompiledType;
use crate::types::{
    Direction, EventData, EventMetadata, ExpectedVersion, Filter, RecordedEvent, SchemaRef,
    StreamAppend, StreamMetadata, StreamState, WriteResult, category_of, validate_event_type,
    validate_stream_name,
};
use crate::{Error, Result, TypeDeclaration};

/// Format version of the stored event envelope (`data` and `metadata` JSON columns).
pub(crate) const ENVELOPE_VERSION: i64 = 1;

pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration::both(
        1,
        "positions, streams, events, types, snapshots, projections, persistent subscriptions",
        "CREATE TABLE es_positions (
        name TEXT PRIMARY KEY,
        value BIGINT NOT NULL
    );
    INSERT INTO es_positions (name, value) VALUES ('global', 0);
    CREATE TABLE es_streams (
        stream TEXT PRIMARY KEY,
        category TEXT NOT NULL,
        last_revision BIGINT NOT NULL,
        truncate_before BIGINT NOT NULL DEFAULT 0,
        max_count BIGINT,
        max_age_ms BIGINT,
        user_truncate_before BIGINT,
        soft_deleted BIGINT NOT NULL DEFAULT 0,
        tombstone BIGINT NOT NULL DEFAULT 0,
        created_ms BIGINT NOT NULL,
        updated_ms BIGINT NOT NULL
    );
    CREATE INDEX es_streams_by_category ON es_streams (category, stream);
    CREATE TABLE es_events (
        position BIGINT PRIMARY KEY,
        stream TEXT NOT NULL,
        category TEXT NOT NULL,
        revision BIGINT NOT NULL,
        event_id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        schema_subject TEXT,
        schema_version BIGINT,
        data TEXT NOT NULL,
        metadata TEXT NOT NULL,
        format BIGINT NOT NULL,
        recorded_ms BIGINT NOT NULL,
        UNIQUE (stream, revision),
        UNIQUE (stream, event_id)
    );
    CREATE INDEX es_events_by_category ON es_events (category, position);
    CREATE INDEX es_events_by_type ON es_events (event_type, position);
    CREATE TABLE es_event_types (
        event_type TEXT PRIMARY KEY,
        declaration TEXT NOT NULL,
        updated_ms BIGINT NOT NULL
    );
    CREATE TABLE es_snapshots (
        stream TEXT PRIMARY KEY,
        revision BIGINT NOT NULL,
        state TEXT NOT NULL,
        recorded_ms BIGINT NOT NULL
    );
    CREATE TABLE es_projections (
        name TEXT PRIMARY KEY,
        position BIGINT NOT NULL,
        updated_ms BIGINT NOT NULL
    );
    CREATE TABLE es_persistent (
        grp TEXT PRIMARY KEY,
        settings TEXT NOT NULL,
        checkpoint BIGINT NOT NULL,
        updated_ms BIGINT NOT NULL
    );
    CREATE TABLE es_parked (
        grp TEXT NOT NULL,
        position BIGINT NOT NULL,
        reason TEXT NOT NULL,
        replaying BIGINT NOT NULL DEFAULT 0,
        parked_ms BIGINT NOT NULL,
        PRIMARY KEY (grp, position)
    )",
    ),
    Migration::both(
        2,
        "persistent subscription group leases",
        "ALTER TABLE es_persistent ADD COLUMN owner TEXT;
    ALTER TABLE es_persistent ADD COLUMN lease_until BIGINT NOT NULL DEFAULT 0",
    ),
    Migration::both(
        3,
        "projection filters, so lag counts only the events a projection wants",
        "ALTER TABLE es_projections ADD COLUMN filter TEXT",
    ),
];

/// The most events one read returns.
pub const MAX_READ: usize = 4096;

/// Tunables.
#[derive(Debug, Clone)]
pub struct Options {
    /// Largest `data` + `metadata` of one event, in bytes of JSON.
    pub max_event_bytes: usize,
    /// How often subscriptions look for events appended by other processes (events appended
    /// through this `EventStore` wake them at once).
    pub poll_interval: Duration,
    /// The transactional outbox table public integration events are written to (in the
    /// append's transaction; weft-outbox's relay publishes them).
    pub outbox_table: String,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            max_event_bytes: 1 << 20,
            poll_interval: Duration::from_millis(200),
            outbox_table: "weft_outbox".to_owned(),
        }
    }
}

/// A stream's row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamInfo {
    pub stream: String,
    /// Revision of the last event ever appended; `None` before the first.
    pub last_revision: Option<u64>,
    pub state: StreamState,
    pub metadata: StreamMetadata,
}

/// What a scavenge deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScavengeReport {
    pub events_deleted: u64,
    pub batches: u64,
}

/// A projection's (or any checkpoint's) progress.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProjectionStatus {
    pub name: String,
    pub position: u64,
    pub head: u64,
    /// Events committed after the checkpoint.
    pub lag_events: u64,
    /// Age of the oldest event after the checkpoint, 0 when caught up.
    pub lag_seconds: f64,
}

/// The event store. Cheap to clone.
#[derive(Clone)]
pub struct EventStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) options: Options,
    /// The last position committed through this process; subscriptions wait on it.
    pub(crate) head: watch::Sender<u64>,
    types: RwLock<HashMap<String, Arc<CompiledType>>>,
    /// Where registry-bound event types get their schema (none until set).
    registry: RwLock<Option<Arc<crate::registry::RegistryCache>>>,
    pub(crate) groups: Mutex<HashMap<String, crate::persistent::GroupHandle>>,
    queue: Mutex<Queue>,
}

/// Appends waiting for the group commit, and whether a leader task is running.
#[derive(Default)]
struct Queue {
    pending: Vec<Request>,
    leading: bool,
}

struct Request {
    appends: Vec<StreamAppend>,
    reply: tokio::sync::oneshot::Sender<Result<Vec<WriteResult>>>,
}

/// Most appends in one group transaction.
const MAX_GROUP: usize = 128;

/// Visibility of an event `e` of a stream `s` at time `$now`: what reads return and what the
/// scavenger keeps.
fn visible(now: &str) -> String {
    format!(
        "s.tombstone = 0 AND e.revision >= s.truncate_before \
         AND (s.max_count IS NULL OR e.revision > s.last_revision - s.max_count) \
         AND (s.max_age_ms IS NULL OR e.recorded_ms >= {now} - s.max_age_ms)"
    )
}

/// Positional parameters collected while building a query.
#[derive(Default)]
pub(crate) struct Binds(Vec<Bind>);

pub(crate) enum Bind {
    I(i64),
    S(String),
    OptS(Option<String>),
    OptI(Option<i64>),
}

impl Binds {
    pub(crate) fn push(&mut self, b: Bind) -> String {
        self.0.push(b);
        format!("${}", self.0.len())
    }
    pub(crate) fn i(&mut self, v: i64) -> String {
        self.push(Bind::I(v))
    }
    pub(crate) fn s(&mut self, v: impl Into<String>) -> String {
        self.push(Bind::S(v.into()))
    }
    pub(crate) fn apply(
        self,
        sql: &str,
    ) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments<'_>> {
        let mut q = sqlx::query(sql);
        for b in self.0 {
            q = match b {
                Bind::I(v) => q.bind(v),
                Bind::S(v) => q.bind(v),
                Bind::OptS(v) => q.bind(v),
                Bind::OptI(v) => q.bind(v),
            };
        }
        q
    }
}

/// `LIKE` pattern for "starts with `prefix`" (escape character `\`).
fn like_prefix(prefix: &str) -> String {
    let mut p = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '\\' | '%' | '_') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// Appends the conditions of `filter` on `e`.
pub(crate) fn filter_sql(filter: &Filter, binds: &mut Binds, sql: &mut String) {
    if let Some(s) = &filter.stream {
        sql.push_str(&format!(" AND e.stream = {}", binds.s(s.clone())));
    }
    if let Some(c) = &filter.category {
        sql.push_str(&format!(" AND e.category = {}", binds.s(c.clone())));
    }
    if let Some(p) = &filter.stream_prefix {
        sql.push_str(&format!(
            " AND e.stream LIKE {} ESCAPE '\\'",
            binds.s(like_prefix(p))
        ));
    }
    if !filter.event_types.is_empty() {
        let list: Vec<String> = filter
            .event_types
            .iter()
            .map(|t| binds.s(t.clone()))
            .collect();
        sql.push_str(&format!(" AND e.event_type IN ({})", list.join(", ")));
    }
}

const EVENT_COLUMNS: &str = "e.position, e.stream, e.revision, e.event_id, e.event_type, \
     e.schema_subject, e.schema_version, e.data, e.metadata, e.recorded_ms";

pub(crate) fn event_of(row: &AnyRow) -> Result<RecordedEvent> {
    let position: i64 = row.try_get("position")?;
    let data: String = row.try_get("data")?;
    let metadata: String = row.try_get("metadata")?;
    let subject: Option<String> = row.try_get("schema_subject")?;
    let version: Option<i64> = row.try_get("schema_version")?;
    let corrupt = |what: &str, e: serde_json::Error| {
        Error::Corrupt(format!("event at position {position}: {what}: {e}"))
    };
    Ok(RecordedEvent {
        id: row.try_get("event_id")?,
        stream: row.try_get("stream")?,
        revision: row.try_get::<i64, _>("revision")? as u64,
        position: position as u64,
        event_type: row.try_get("event_type")?,
        schema: match (subject, version) {
            (Some(subject), Some(version)) => Some(SchemaRef { subject, version }),
            _ => None,
        },
        data: serde_json::from_str(&data).map_err(|e| corrupt("data", e))?,
        metadata: serde_json::from_str(&metadata).map_err(|e| corrupt("metadata", e))?,
        recorded_ms: row.try_get("recorded_ms")?,
    })
}

/// A stream row as the append needs it.
#[derive(Debug, Clone)]
struct StreamRow {
    last_revision: i64,
    soft_deleted: bool,
    tombstone: bool,
    truncate_before: i64,
    user_truncate_before: Option<i64>,
    max_count: Option<i64>,
    max_age_ms: Option<i64>,
}

impl StreamRow {
    fn info(&self, stream: &str) -> StreamInfo {
        StreamInfo {
            stream: stream.to_owned(),
            last_revision: (self.last_revision >= 0).then_some(self.last_revision as u64),
            state: if self.tombstone {
                StreamState::Tombstoned
            } else if self.soft_deleted {
                StreamState::SoftDeleted
            } else {
                StreamState::Live
            },
            metadata: StreamMetadata {
                max_age_ms: self.max_age_ms,
                max_count: self.max_count,
                truncate_before: self.user_truncate_before.map(|v| v as u64),
            },
        }
    }
}

async fn stream_row(c: &mut sqlx::AnyConnection, stream: &str) -> Result<Option<StreamRow>> {
    let row = sqlx::query(
        "SELECT last_revision, soft_deleted, tombstone, truncate_before, user_truncate_before,
                max_count, max_age_ms
         FROM es_streams WHERE stream = $1",
    )
    .bind(stream)
    .fetch_optional(c)
    .await?;
    row.map(|r| {
        Ok(StreamRow {
            last_revision: r.try_get("last_revision")?,
            soft_deleted: r.try_get::<i64, _>("soft_deleted")? != 0,
            tombstone: r.try_get::<i64, _>("tombstone")? != 0,
            truncate_before: r.try_get("truncate_before")?,
            user_truncate_before: r.try_get("user_truncate_before")?,
            max_count: r.try_get("max_count")?,
            max_age_ms: r.try_get("max_age_ms")?,
        })
    })
    .transpose()
}

/// Takes the allocation row (step 1): serialises every writer of the store.
pub(crate) async fn lock_positions(tx: &mut Tx) -> Result<u64> {
    let row =
        sqlx::query("UPDATE es_positions SET value = value WHERE name = 'global' RETURNING value")
            .fetch_one(&mut **tx)
            .await?;
    Ok(row.try_get::<i64, _>("value")? as u64)
}

/// Step 4: the new last position.
async fn store_positions(tx: &mut Tx, last: u64) -> Result<()> {
    sqlx::query("UPDATE es_positions SET value = $1 WHERE name = 'global'")
        .bind(last as i64)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn check_expected(stream: &str, expected: ExpectedVersion, row: Option<&StreamRow>) -> Result<()> {
    // A soft-deleted stream counts as absent for `no_stream`/`stream_exists` but keeps its
    // revision for exact checks (the next append continues after it).
    let last = row.and_then(|r| (r.last_revision >= 0).then_some(r.last_revision as u64));
    let exists = row.is_some_and(|r| r.last_revision >= 0 && !r.soft_deleted);
    let ok = match expected {
        ExpectedVersion::Any => true,
        ExpectedVersion::NoStream => !exists,
        ExpectedVersion::StreamExists => exists,
        ExpectedVersion::Exact(n) => last == Some(n),
    };
    if ok {
        Ok(())
    } else {
        Err(Error::WrongExpectedVersion {
            stream: stream.to_owned(),
            expected,
            actual: if exists { last } else { None },
        })
    }
}

impl EventStore {
    /// Applies the event store's migrations and loads the declared event types.
    pub async fn open(store: Store) -> Result<EventStore> {
        EventStore::open_with(store, Options::default()).await
    }

    pub async fn open_with(store: Store, options: Options) -> Result<EventStore> {
        store.migrate("eventstore", MIGRATIONS).await?;
        let rows = sqlx::query("SELECT declaration FROM es_event_types")
            .fetch_all(store.pool())
            .await?;
        let mut types = HashMap::new();
        for r in rows {
            let text: String = r.try_get("declaration")?;
            let decl: TypeDeclaration = serde_json::from_str(&text)
                .map_err(|e| Error::Corrupt(format!("event type declaration: {e}")))?;
            let compiled = CompiledType::compile(decl)?;
            types.insert(compiled.decl.event_type.clone(), Arc::new(compiled));
        }
        let es = EventStore {
            inner: Arc::new(Inner {
                store,
                options,
                head: watch::Sender::new(0),
                types: RwLock::new(types),
                registry: RwLock::new(None),
                groups: Mutex::new(HashMap::new()),
                queue: Mutex::new(Queue::default()),
            }),
        };
        let head = es.head().await?;
        es.notify(head);
        Ok(es)
    }

    /// The state store underneath (for projections' own tables).
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn options(&self) -> &Options {
        &self.inner.options
    }

    /// The last committed global position (0 when the store is empty).
    pub async fn head(&self) -> Result<u64> {
        let row = sqlx::query("SELECT value FROM es_positions WHERE name = 'global'")
            .fetch_one(self.inner.store.pool())
            .await?;
        Ok(row.try_get::<i64, _>("value")? as u64)
    }

    /// Wakes in-process subscribers: `position` is committed. Call it after committing a
    /// transaction that went through [`EventStore::append_in`].
    pub fn notify(&self, position: u64) {
        self.inner.head.send_if_modified(|h| {
            if position > *h {
                *h = position;
                crate::metrics::head(position);
                true
            } else {
                false
            }
        });
    }

    pub(crate) fn watch_head(&self) -> watch::Receiver<u64> {
        self.inner.head.subscribe()
    }

    /// Where event types bound to a registry subject get their schema from (cached: a pinned
    /// version for good, "latest" for [`crate::registry::LATEST_TTL`]).
    pub fn set_schema_lookup(&self, lookup: Arc<dyn crate::registry::SchemaLookup>) {
        let cache = Arc::new(crate::registry::RegistryCache::new(lookup));
        match self.inner.registry.write() {
            Ok(mut r) => *r = Some(cache),
            Err(poisoned) => *poisoned.into_inner() = Some(cache),
        }
    }

    fn registry(&self) -> Option<Arc<crate::registry::RegistryCache>> {
        match self.inner.registry.read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The compiled registry schema `binding` names; `Err` names the subject and why.
    async fn resolve_binding(
        &self,
        event_type: &str,
        subject: &str,
        version: Option<i64>,
    ) -> Result<Arc<crate::registry::Resolved>> {
        let Some(registry) = self.registry() else {
            return Err(Error::Invalid(format!(
                "event type {event_type} is bound to registry subject {subject}, but no schema \
                 registry is configured"
            )));
        };
        registry
            .resolve(subject, version)
            .await
            .map_err(|e| Error::Invalid(format!("event type {event_type}: {e}")))
    }

    /// Validates the data of registry-bound event types against their registry schema and
    /// records the resolved subject/version on each such event.
    async fn check_registry(&self, appends: &mut [StreamAppend]) -> Result<()> {
        for a in appends {
            for e in &mut a.events {
                let Some(binding) = self
                    .type_of(&e.event_type)
                    .and_then(|t| t.decl.registry.clone())
                else {
                    continue;
                };
                // An event naming a version of the bound subject is checked against it.
                let version = match &e.schema {
                    Some(s) if s.subject == binding.subject => Some(s.version),
                    Some(s) => {
                        return Err(Error::SchemaMismatch {
                            id: e.id.clone(),
                            event_type: e.event_type.clone(),
                            reason: format!(
                                "the event names registry subject {} but its type is bound to {}",
                                s.subject, binding
                            ),
                        });
                    }
                    None => binding.version,
                };
                let resolved = self
                    .resolve_binding(&e.event_type, &binding.subject, version)
                    .await?;
                resolved
                    .check(&e.data)
                    .map_err(|reason| Error::SchemaMismatch {
                        id: e.id.clone(),
                        event_type: e.event_type.clone(),
                        reason,
                    })?;
                e.schema = Some(resolved.schema_ref.clone());
            }
        }
        Ok(())
    }

    fn any_registry_bound(&self, appends: &[StreamAppend]) -> bool {
        appends.iter().any(|a| {
            a.events.iter().any(|e| {
                self.type_of(&e.event_type)
                    .is_some_and(|t| t.decl.registry.is_some())
            })
        })
    }

    /// Declares (or redeclares) an event type: its schema, visibility and public mapping.
    /// A type bound to a registry subject is refused unless that subject (version) exists
    /// and holds a JSON Schema.
    pub async fn declare_type(&self, decl: TypeDeclaration) -> Result<()> {
        let compiled = CompiledType::compile(decl)?;
        if let Some(b) = &compiled.decl.registry {
            self.resolve_binding(&compiled.decl.event_type, &b.subject, b.version)
                .await?;
        }
        let text = serde_json::to_string(&compiled.decl)
            .map_err(|e| Error::Invalid(format!("declaration: {e}")))?;
        let mut tx = self.inner.store.begin().await?;
        if compiled.publishes() {
            let dialect = match self.inner.store.backend() {
                weft_store::Backend::Sqlite => weft_outbox::Dialect::Sqlite,
                weft_store::Backend::Postgres => weft_outbox::Dialect::Postgres,
            };
            for ddl in self.outbox_table()?.ddl(dialect) {
                sqlx::query(&ddl).execute(&mut *tx).await?;
            }
        }
        sqlx::query("DELETE FROM es_event_types WHERE event_type = $1")
            .bind(&compiled.decl.event_type)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO es_event_types (event_type, declaration, updated_ms) VALUES ($1, $2, $3)",
        )
        .bind(&compiled.decl.event_type)
        .bind(&text)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.types_write()
            .insert(compiled.decl.event_type.clone(), Arc::new(compiled));
        Ok(())
    }

    fn outbox_table(&self) -> Result<weft_outbox::Table> {
        weft_outbox::Table::new(&self.inner.options.outbox_table)
            .map_err(|e| Error::Invalid(format!("outbox table: {e}")))
    }

    /// Step 3b: the public face of each event, into the outbox in the same transaction.
    async fn publish(
        &self,
        tx: &mut Tx,
        a: &StreamAppend,
        first_revision: i64,
        first_position: u64,
    ) -> Result<()> {
        for (k, e) in a.events.iter().enumerate() {
            let Some(t) = self.type_of(&e.event_type) else {
                continue;
            };
            let Some((public_type, payload, subject)) = t.public_event(
                &e.data,
                &a.stream,
                (first_revision + k as i64) as u64,
                first_position + k as u64,
            ) else {
                continue;
            };
            let (category, id) = a.stream.split_once('-').unwrap_or((&a.stream, ""));
            let mut out = weft_outbox::OutboxEvent::json(category, id, public_type, &payload)
                .map_err(|e| Error::InvalidEvent(e.to_string()))?
                .with_context(weft_outbox::Context {
                    correlation_id: e.metadata.correlation_id.clone(),
                    causation_id: Some(e.id.clone()),
                    ..weft_outbox::Context::default()
                });
            if let Some(subject) = subject {
                out = out.with_header("weft-schema-subject", subject);
            }
            weft_outbox::insert_into(&mut **tx, &self.outbox_table()?, &out)
                .await
                .map_err(|err| match err {
                    weft_outbox::InsertError::Sql(s) => Error::from(s),
                    other => Error::InvalidEvent(other.to_string()),
                })?;
        }
        Ok(())
    }

    pub fn declared_type(&self, event_type: &str) -> Option<TypeDeclaration> {
        self.type_of(event_type).map(|t| t.decl.clone())
    }

    pub(crate) fn type_of(&self, event_type: &str) -> Option<Arc<CompiledType>> {
        match self.inner.types.read() {
            Ok(t) => t.get(event_type).cloned(),
            Err(poisoned) => poisoned.into_inner().get(event_type).cloned(),
        }
    }

    fn types_write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<CompiledType>>> {
        match self.inner.types.write() {
            Ok(t) => t,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Appends `events` to `stream` if it is at `expected`.
    pub async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<EventData>,
    ) -> Result<WriteResult> {
        let mut results = self
            .append_multi(vec![StreamAppend {
                stream: stream.to_owned(),
                expected,
                events,
            }])
            .await?;
        results
            .pop()
            .ok_or_else(|| Error::Invalid("append wrote nothing".to_owned()))
    }

    /// Appends to several streams atomically: all or nothing.
    pub async fn append_multi(&self, mut appends: Vec<StreamAppend>) -> Result<Vec<WriteResult>> {
        let checked = match self.validate(&appends) {
            Ok(()) => self.check_registry(&mut appends).await,
            Err(e) => Err(e),
        };
        if let Err(e) = checked {
            let refused = Err(e);
            crate::metrics::append_outcome(&refused);
            return refused;
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        let lead = {
            let mut q = self.queue();
            q.pending.push(Request { appends, reply });
            !std::mem::replace(&mut q.leading, true)
        };
        if lead {
            // A task of its own, so a caller that stops waiting cannot strand the queue.
            tokio::spawn(self.clone().lead_group());
        }
        let result = answer
            .await
            .map_err(|_| Error::Invalid("the append was dropped unanswered".to_owned()))
            .and_then(|r| r);
        crate::metrics::append_outcome(&result);
        result
    }

    /// Appends inside the caller's transaction (so the caller's own rows — an outbox row, a
    /// read model — commit with the events). The caller commits, then calls
    /// [`EventStore::notify`] with the returned positions. Holding the transaction open holds
    /// every other appender.
    pub async fn append_in(
        &self,
        tx: &mut Tx,
        appends: &[StreamAppend],
    ) -> Result<Vec<WriteResult>> {
        self.validate(appends)?;
        if self.any_registry_bound(appends) {
            let mut owned = appends.to_vec();
            self.check_registry(&mut owned).await?;
            return self.append_validated(tx, &owned).await;
        }
        self.append_validated(tx, appends).await
    }

    /// Everything that can be refused without the database: names, types, sizes, schemas.
    fn validate(&self, appends: &[StreamAppend]) -> Result<()> {
        if appends.is_empty() {
            return Err(Error::InvalidEvent("nothing to append".to_owned()));
        }
        let mut streams = HashSet::new();
        for a in appends {
            validate_stream_name(&a.stream)?;
            if !streams.insert(a.stream.as_str()) {
                return Err(Error::Invalid(format!(
                    "stream {} appears twice in one append",
                    a.stream
                )));
            }
            if a.events.is_empty() {
                return Err(Error::InvalidEvent(format!(
                    "no events to append to {}",
                    a.stream
                )));
            }
            let mut ids = HashSet::new();
            for e in &a.events {
                if e.id.is_empty() || e.id.len() > 200 {
                    return Err(Error::InvalidEvent(format!(
                        "event id {:?} must be 1 to 200 bytes",
                        e.id
                    )));
                }
                if !ids.insert(e.id.as_str()) {
                    return Err(Error::InvalidEvent(format!(
                        "event id {} appears twice in one append",
                        e.id
                    )));
                }
                validate_event_type(&e.event_type)?;
                let size = json_len(&e.data) + json_len_meta(&e.metadata);
                if size > self.inner.options.max_event_bytes {
                    return Err(Error::EventTooLarge {
                        id: e.id.clone(),
                        size,
                        limit: self.inner.options.max_event_bytes,
                    });
                }
                if let Some(t) = self.type_of(&e.event_type) {
                    t.check(&e.data).map_err(|reason| Error::SchemaMismatch {
                        id: e.id.clone(),
                        event_type: e.event_type.clone(),
                        reason,
                    })?;
                }
            }
        }
        Ok(())
    }

    async fn append_validated(
        &self,
        tx: &mut Tx,
        appends: &[StreamAppend],
    ) -> Result<Vec<WriteResult>> {
        // Step 1.
        let mut last_position = lock_positions(tx).await?;
        let results = self.append_at(tx, appends, &mut last_position).await?;
        store_positions(tx, last_position).await?;
        Ok(results)
    }

    /// Steps 2 and 3 for one request, allocating after `*last_position` (moved on success).
    async fn append_at(
        &self,
        tx: &mut Tx,
        appends: &[StreamAppend],
        last_position_out: &mut u64,
    ) -> Result<Vec<WriteResult>> {
        let mut last_position = *last_position_out;
        let now = now_ms();
        let mut results = Vec::with_capacity(appends.len());
        for a in appends {
            // Step 2.
            let row = stream_row(tx, &a.stream).await?;
            if row.as_ref().is_some_and(|r| r.tombstone) {
                return Err(Error::StreamDeleted(a.stream.clone()));
            }
            if row.is_some()
                && let Some(done) = self.already_appended(tx, a).await?
            {
                results.push(done);
                continue;
            }
            check_expected(&a.stream, a.expected, row.as_ref())?;
            // Step 3.
            let first_revision = row.as_ref().map_or(0, |r| r.last_revision + 1);
            let first_position = last_position + 1;
            let category = category_of(&a.stream);
            for chunk_start in (0..a.events.len()).step_by(100) {
                let chunk = &a.events[chunk_start..(chunk_start + 100).min(a.events.len())];
                let mut binds = Binds::default();
                let mut values = Vec::with_capacity(chunk.len());
                for (i, e) in chunk.iter().enumerate() {
                    let k = (chunk_start + i) as i64;
                    let schema = e.schema.clone().or_else(|| {
                        self.type_of(&e.event_type)
                            .and_then(|t| t.decl.schema_ref.clone())
                    });
                    let cols = [
                        binds.i((first_position as i64) + k),
                        binds.s(a.stream.clone()),
                        binds.s(category),
                        binds.i(first_revision + k),
                        binds.s(e.id.clone()),
                        binds.s(e.event_type.clone()),
                        binds.push(Bind::OptS(schema.as_ref().map(|s| s.subject.clone()))),
                        binds.push(Bind::OptI(schema.as_ref().map(|s| s.version))),
                        binds.s(e.data.to_string()),
                        binds.s(metadata_json(&e.metadata)?),
                        binds.i(ENVELOPE_VERSION),
                        binds.i(now),
                    ];
                    values.push(format!("({})", cols.join(", ")));
                }
                let sql = format!(
                    "INSERT INTO es_events (position, stream, category, revision, event_id, \
                     event_type, schema_subject, schema_version, data, metadata, format, \
                     recorded_ms) VALUES {}",
                    values.join(", ")
                );
                binds.apply(&sql).execute(&mut **tx).await?;
            }
            self.publish(tx, a, first_revision, first_position).await?;
            let n = a.events.len() as i64;
            let last_revision = first_revision + n - 1;
            if row.is_some() {
                sqlx::query(
                    "UPDATE es_streams SET last_revision = $1, soft_deleted = 0, updated_ms = $2
                     WHERE stream = $3",
                )
                .bind(last_revision)
                .bind(now)
                .bind(&a.stream)
                .execute(&mut **tx)
                .await?;
            } else {
                sqlx::query(
                    "INSERT INTO es_streams (stream, category, last_revision, created_ms, updated_ms)
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&a.stream)
                .bind(category)
                .bind(last_revision)
                .bind(now)
                .bind(now)
                .execute(&mut **tx)
                .await?;
            }
            last_position += n as u64;
            results.push(WriteResult {
                stream: a.stream.clone(),
                next_expected: last_revision as u64,
                position: last_position,
                first_position,
                duplicate: false,
            });
        }
        *last_position_out = last_position;
        Ok(results)
    }

    /// Group commit: concurrent appends through this `EventStore` share one transaction
    /// (each in a savepoint, so one refused append does not take the others with it) and
    /// one commit. Positions stay gap-free and commit-ordered: the group allocates under
    /// the same lock, and every append in it becomes visible at the same commit.
    async fn lead_group(self) {
        /// Armed until the loop ends normally: a panic in a group still frees the queue.
        struct Release<'a>(&'a EventStore, bool);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                if !self.1 {
                    return;
                }
                let mut q = self.0.queue();
                q.leading = false;
                for r in q.pending.drain(..) {
                    let _ = r.reply.send(Err(Error::Invalid(
                        "the append group leader stopped".to_owned(),
                    )));
                }
            }
        }
        let mut release = Release(&self, true);
        loop {
            let batch: Vec<Request> = {
                let mut q = self.queue();
                if q.pending.is_empty() {
                    q.leading = false;
                    release.1 = false;
                    return;
                }
                let n = q.pending.len().min(MAX_GROUP);
                q.pending.drain(..n).collect()
            };
            self.commit_group(batch).await;
        }
    }

    async fn commit_group(&self, batch: Vec<Request>) {
        crate::metrics::group_commit(batch.len());
        let mut outcomes: Vec<Option<Result<Vec<WriteResult>>>> = Vec::new();
        let result = async {
            let mut tx = self.inner.store.begin().await?;
            let mut last = lock_positions(&mut tx).await?;
            let single = batch.len() == 1;
            for r in &batch {
                if single {
                    let outcome = self.append_at(&mut tx, &r.appends, &mut last).await;
                    if let Err(e) = outcome {
                        // Nothing else shares the transaction: just answer.
                        outcomes.push(Some(Err(e)));
                        return Ok::<_, Error>(None);
                    }
                    outcomes.push(Some(outcome));
                    continue;
                }
                sqlx::query("SAVEPOINT weft_append")
                    .execute(&mut *tx)
                    .await?;
                let mut moved = last;
                let outcome = self.append_at(&mut tx, &r.appends, &mut moved).await;
                if outcome.is_ok() {
                    sqlx::query("RELEASE SAVEPOINT weft_append")
                        .execute(&mut *tx)
                        .await?;
                    last = moved;
                } else {
                    sqlx::query("ROLLBACK TO SAVEPOINT weft_append")
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("RELEASE SAVEPOINT weft_append")
                        .execute(&mut *tx)
                        .await?;
                }
                outcomes.push(Some(outcome));
            }
            store_positions(&mut tx, last).await?;
            tx.commit().await?;
            Ok(Some(last))
        }
        .await;
        match result {
            Ok(committed) => {
                if let Some(last) = committed {
                    self.notify(last);
                }
                for (r, o) in batch.into_iter().zip(outcomes) {
                    let o = o.unwrap_or_else(|| Err(Error::Invalid("not attempted".to_owned())));
                    let _ = r.reply.send(o);
                }
            }
            Err(e) => {
                // The transaction failed as a whole: nothing of the group is stored.
                let message = e.to_string();
                let retryable = matches!(&e, Error::Store(s) if s.is_retryable());
                let mut first = Some(e);
                for r in batch {
                    let err = first.take().unwrap_or_else(|| {
                        Error::Store(Box::new(weft_store::Error::Sql(sqlx::Error::Protocol(
                            format!(
                                "the group commit failed: {message}{}",
                                if retryable { " (retryable)" } else { "" }
                            ),
                        ))))
                    });
                    let _ = r.reply.send(Err(err));
                }
            }
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        match self.inner.queue.lock() {
            Ok(q) => q,
            Err(p) => p.into_inner(),
        }
    }

    /// An idempotent retry: every event id already in the stream, in the same order and
    /// consecutive → the original result. Some but not all → refused.
    async fn already_appended(&self, tx: &mut Tx, a: &StreamAppend) -> Result<Option<WriteResult>> {
        let mut binds = Binds::default();
        let stream = binds.s(a.stream.clone());
        let ids: Vec<String> = a.events.iter().map(|e| binds.s(e.id.clone())).collect();
        let sql = format!(
            "SELECT event_id, revision, position FROM es_events
             WHERE stream = {stream} AND event_id IN ({})",
            ids.join(", ")
        );
        let rows = binds.apply(&sql).fetch_all(&mut **tx).await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut found: HashMap<String, (i64, i64)> = HashMap::new();
        for r in &rows {
            found.insert(
                r.try_get("event_id")?,
                (r.try_get("revision")?, r.try_get("position")?),
            );
        }
        let in_order: Option<Vec<(i64, i64)>> =
            a.events.iter().map(|e| found.get(&e.id).copied()).collect();
        match in_order {
            Some(found)
                if found
                    .windows(2)
                    .all(|w| w[1].0 == w[0].0 + 1 && w[1].1 > w[0].1) =>
            {
                let (first, last) = (found[0], found[found.len() - 1]);
                Ok(Some(WriteResult {
                    stream: a.stream.clone(),
                    next_expected: last.0 as u64,
                    position: last.1 as u64,
                    first_position: first.1 as u64,
                    duplicate: true,
                }))
            }
            _ => Err(Error::PartialDuplicate {
                stream: a.stream.clone(),
                ids: rows
                    .iter()
                    .map(|r| r.try_get("event_id"))
                    .collect::<Result<_, _>>()?,
            }),
        }
    }

    /// Events of `stream` from revision `from` (inclusive) in `direction`, at most `limit`
    /// (capped at [`MAX_READ`]). Backwards from `u64::MAX` starts at the end. A stream that does
    /// not exist reads as empty; a tombstoned one is refused.
    pub async fn read_stream(
        &self,
        stream: &str,
        from: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        validate_stream_name(stream)?;
        let mut c = self.inner.store.pool().acquire().await?;
        match stream_row(&mut c, stream).await? {
            None => return Ok(Vec::new()),
            Some(r) if r.tombstone => return Err(Error::StreamDeleted(stream.to_owned())),
            Some(_) => {}
        }
        let mut binds = Binds::default();
        let now = binds.i(now_ms());
        let (cmp, order) = match direction {
            Direction::Forwards => (">=", "ASC"),
            Direction::Backwards => ("<=", "DESC"),
        };
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM es_events e JOIN es_streams s ON s.stream = e.stream
             WHERE e.stream = {} AND e.revision {cmp} {} AND {}
             ORDER BY e.revision {order} LIMIT {}",
            binds.s(stream),
            binds.i(from.min(i64::MAX as u64) as i64),
            visible(&now),
            limit.clamp(1, MAX_READ)
        );
        let rows = binds.apply(&sql).fetch_all(&mut *c).await?;
        rows.iter().map(event_of).collect()
    }

    /// Events of `$all` passing `filter`, from global position `from` (inclusive) in
    /// `direction`, at most `limit` (capped at [`MAX_READ`]).
    pub async fn read_all(
        &self,
        from: u64,
        direction: Direction,
        limit: usize,
        filter: &Filter,
    ) -> Result<Vec<RecordedEvent>> {
        let mut binds = Binds::default();
        let now = binds.i(now_ms());
        let (cmp, order) = match direction {
            Direction::Forwards => (">=", "ASC"),
            Direction::Backwards => ("<=", "DESC"),
        };
        let mut sql = format!(
            "SELECT {EVENT_COLUMNS} FROM es_events e JOIN es_streams s ON s.stream = e.stream
             WHERE e.position {cmp} {} AND {}",
            binds.i(from.min(i64::MAX as u64) as i64),
            visible(&now)
        );
        filter_sql(filter, &mut binds, &mut sql);
        sql.push_str(&format!(
            " ORDER BY e.position {order} LIMIT {}",
            limit.clamp(1, MAX_READ)
        ));
        let rows = binds.apply(&sql).fetch_all(self.inner.store.pool()).await?;
        rows.iter().map(event_of).collect()
    }

    /// Streams of a category (`$streams` by category), in name order after `after`.
    pub async fn list_streams(
        &self,
        category: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StreamInfo>> {
        let mut binds = Binds::default();
        let mut sql = "SELECT stream, last_revision, soft_deleted, tombstone, truncate_before, \
             user_truncate_before, max_count, max_age_ms FROM es_streams WHERE 1 = 1"
            .to_owned();
        if let Some(c) = category {
            sql.push_str(&format!(" AND category = {}", binds.s(c)));
        }
        if let Some(a) = after {
            sql.push_str(&format!(" AND stream > {}", binds.s(a)));
        }
        sql.push_str(&format!(
            " ORDER BY stream LIMIT {}",
            limit.clamp(1, MAX_READ)
        ));
        let rows = binds.apply(&sql).fetch_all(self.inner.store.pool()).await?;
        rows.iter()
            .map(|r| {
                let stream: String = r.try_get("stream")?;
                let row = StreamRow {
                    last_revision: r.try_get("last_revision")?,
                    soft_deleted: r.try_get::<i64, _>("soft_deleted")? != 0,
                    tombstone: r.try_get::<i64, _>("tombstone")? != 0,
                    truncate_before: r.try_get("truncate_before")?,
                    user_truncate_before: r.try_get("user_truncate_before")?,
                    max_count: r.try_get("max_count")?,
                    max_age_ms: r.try_get("max_age_ms")?,
                };
                Ok(row.info(&stream))
            })
            .collect()
    }

    pub async fn stream_info(&self, stream: &str) -> Result<Option<StreamInfo>> {
        validate_stream_name(stream)?;
        let mut c = self.inner.store.pool().acquire().await?;
        Ok(stream_row(&mut c, stream).await?.map(|r| r.info(stream)))
    }

    /// Sets a stream's retention metadata (the stream need not exist yet).
    pub async fn set_stream_metadata(&self, stream: &str, meta: StreamMetadata) -> Result<()> {
        validate_stream_name(stream)?;
        if meta.max_count.is_some_and(|c| c < 1) || meta.max_age_ms.is_some_and(|a| a < 1) {
            return Err(Error::Invalid(
                "max_count and max_age_ms must be positive".to_owned(),
            ));
        }
        let mut tx = self.inner.store.begin().await?;
        lock_positions(&mut tx).await?;
        let row = stream_row(&mut tx, stream).await?;
        if row.as_ref().is_some_and(|r| r.tombstone) {
            return Err(Error::StreamDeleted(stream.to_owned()));
        }
        let now = now_ms();
        if row.is_none() {
            sqlx::query(
                "INSERT INTO es_streams (stream, category, last_revision, created_ms, updated_ms)
                 VALUES ($1, $2, -1, $3, $4)",
            )
            .bind(stream)
            .bind(category_of(stream))
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        // A soft delete's truncation is kept: metadata can hide more, never resurrect.
        let soft_floor = row
            .as_ref()
            .filter(|r| r.soft_deleted || r.truncate_before > r.user_truncate_before.unwrap_or(0))
            .map_or(0, |r| r.truncate_before);
        let user_tb = meta.truncate_before.map(|v| v.min(i64::MAX as u64) as i64);
        let effective = soft_floor.max(user_tb.unwrap_or(0));
        sqlx::query(
            "UPDATE es_streams SET max_count = $1, max_age_ms = $2, user_truncate_before = $3,
                 truncate_before = $4, updated_ms = $5 WHERE stream = $6",
        )
        .bind(meta.max_count)
        .bind(meta.max_age_ms)
        .bind(user_tb)
        .bind(effective)
        .bind(now)
        .bind(stream)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes a stream at `expected`: soft (its events are hidden; an append starts it again
    /// at the next revision) or hard (a tombstone: the name can never be used again).
    pub async fn delete_stream(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        hard: bool,
    ) -> Result<()> {
        validate_stream_name(stream)?;
        let mut tx = self.inner.store.begin().await?;
        lock_positions(&mut tx).await?;
        let row = stream_row(&mut tx, stream).await?;
        if row.as_ref().is_some_and(|r| r.tombstone) {
            return Err(Error::StreamDeleted(stream.to_owned()));
        }
        check_expected(stream, expected, row.as_ref())?;
        let now = now_ms();
        match (row, hard) {
            (None, _) => {
                sqlx::query(
                    "INSERT INTO es_streams (stream, category, last_revision, soft_deleted,
                         tombstone, created_ms, updated_ms) VALUES ($1, $2, -1, $3, $4, $5, $6)",
                )
                .bind(stream)
                .bind(category_of(stream))
                .bind(i64::from(!hard))
                .bind(i64::from(hard))
                .bind(now)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            (Some(_), true) => {
                sqlx::query(
                    "UPDATE es_streams SET tombstone = 1, updated_ms = $1 WHERE stream = $2",
                )
                .bind(now)
                .bind(stream)
                .execute(&mut *tx)
                .await?;
            }
            (Some(r), false) => {
                sqlx::query(
                    "UPDATE es_streams SET soft_deleted = 1, truncate_before = $1, updated_ms = $2
                     WHERE stream = $3",
                )
                .bind(r.last_revision + 1)
                .bind(now)
                .bind(stream)
                .execute(&mut *tx)
                .await?;
            }
        }
        sqlx::query("DELETE FROM es_snapshots WHERE stream = $1")
            .bind(stream)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes the events reads no longer return (metadata, deletes), `batch` rows per short
    /// transaction so appenders are never held for long. It does not take the allocation
    /// row: on PostgreSQL appends run concurrently; on SQLite each batch is one brief write.
    pub async fn scavenge(&self, batch: usize) -> Result<ScavengeReport> {
        let batch = batch.clamp(1, 10_000);
        let mut report = ScavengeReport::default();
        loop {
            let mut binds = Binds::default();
            let now = binds.i(now_ms());
            let sql = format!(
                "DELETE FROM es_events WHERE position IN (
                     SELECT e.position FROM es_events e JOIN es_streams s ON s.stream = e.stream
                     WHERE NOT ({}) LIMIT {batch})",
                visible(&now)
            );
            let mut tx = self.inner.store.begin().await?;
            let deleted = binds.apply(&sql).execute(&mut *tx).await?.rows_affected();
            tx.commit().await?;
            report.batches += 1;
            report.events_deleted += deleted;
            crate::metrics::scavenged(deleted);
            if (deleted as usize) < batch {
                break;
            }
            tokio::task::yield_now().await;
        }
        Ok(report)
    }

    /// Scavenges every `every` until `stop` resolves. A failed round is logged and retried
    /// at the next interval (reclaiming space is never worth stopping the server for).
    pub async fn run_scavenger(
        &self,
        every: Duration,
        batch: usize,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<()> {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return Ok(()),
                () = tokio::time::sleep(every) => {}
            }
            match self.scavenge(batch).await {
                Ok(r) if r.events_deleted > 0 => tracing::info!(
                    events_deleted = r.events_deleted,
                    batches = r.batches,
                    "event store scavenged"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "event store scavenge failed; retrying later"),
            }
        }
    }

    /// Stores a snapshot of `stream` as of `revision` (replacing an older one).
    pub async fn save_snapshot(
        &self,
        stream: &str,
        revision: u64,
        state: &serde_json::Value,
    ) -> Result<()> {
        validate_stream_name(stream)?;
        // A newer snapshot is never replaced by an older one.
        sqlx::query(
            "INSERT INTO es_snapshots (stream, revision, state, recorded_ms)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (stream) DO UPDATE SET revision = excluded.revision,
                 state = excluded.state, recorded_ms = excluded.recorded_ms
             WHERE es_snapshots.revision < excluded.revision",
        )
        .bind(stream)
        .bind(revision as i64)
        .bind(state.to_string())
        .bind(now_ms())
        .execute(self.inner.store.pool())
        .await?;
        Ok(())
    }

    /// The latest snapshot of `stream`: `(revision, state)`.
    pub async fn load_snapshot(&self, stream: &str) -> Result<Option<(u64, serde_json::Value)>> {
        let row = sqlx::query("SELECT revision, state FROM es_snapshots WHERE stream = $1")
            .bind(stream)
            .fetch_optional(self.inner.store.pool())
            .await?;
        row.map(|r| {
            let state: String = r.try_get("state")?;
            Ok((
                r.try_get::<i64, _>("revision")? as u64,
                serde_json::from_str(&state)
                    .map_err(|e| Error::Corrupt(format!("snapshot of {stream}: {e}")))?,
            ))
        })
        .transpose()
    }

    /// Progress of a checkpoint (projection or persistent group) against the head.
    pub async fn projection_status(&self, name: &str) -> Result<ProjectionStatus> {
        let row = sqlx::query("SELECT position, filter FROM es_projections WHERE name = $1")
            .bind(name)
            .fetch_optional(self.inner.store.pool())
            .await?
            .ok_or_else(|| Error::NotFound(format!("projection {name} has no checkpoint")))?;
        let position = row.try_get::<i64, _>("position")? as u64;
        let filter: Option<String> = row.try_get("filter")?;
        let filter = match filter {
            Some(f) => serde_json::from_str(&f)
                .map_err(|e| Error::Corrupt(format!("filter of projection {name}: {e}")))?,
            None => Filter::all(),
        };
        self.lag(name, position, &filter).await
    }

    /// Events passing `filter` after `position`: how many, and how old the oldest is.
    pub(crate) async fn lag(
        &self,
        name: &str,
        position: u64,
        filter: &Filter,
    ) -> Result<ProjectionStatus> {
        let head = self.head().await?;
        let mut binds = Binds::default();
        let mut sql = format!(
            "SELECT COUNT(*) AS n, MIN(e.recorded_ms) AS oldest FROM es_events e
             WHERE e.position > {}",
            binds.i(position as i64)
        );
        filter_sql(filter, &mut binds, &mut sql);
        let row = binds.apply(&sql).fetch_one(self.inner.store.pool()).await?;
        let n: i64 = row.try_get("n")?;
        let oldest: Option<i64> = row.try_get("oldest")?;
        Ok(ProjectionStatus {
            name: name.to_owned(),
            position,
            head,
            lag_events: n as u64,
            lag_seconds: oldest.map_or(0.0, |t| ((now_ms() - t).max(0)) as f64 / 1000.0),
        })
    }
}

fn json_len(v: &serde_json::Value) -> usize {
    // Serialising is the honest measure of what will be stored.
    v.to_string().len()
}

fn json_len_meta(m: &EventMetadata) -> usize {
    serde_json::to_string(m).map_or(0, |s| s.len())
}

fn metadata_json(m: &EventMetadata) -> Result<String> {
    serde_json::to_string(m).map_err(|e| Error::InvalidEvent(format!("metadata: {e}")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn like_prefixes_escape_wildcards() {
        assert_eq!(super::like_prefix("a_b%c\\"), "a\\_b\\%c\\\\%");
    }
}
