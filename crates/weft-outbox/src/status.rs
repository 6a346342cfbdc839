//! What each source is doing: rows pending, publish rate, age of the oldest unpublished row,
//! last error, stopped aggregates. Shared by the relay (writer), `GET /v1/outbox` and
//! `weft outbox status` (readers). Metrics go through the `metrics` facade:
//! `weft_outbox_rows_published_total{source}`, `weft_outbox_rows_dead_lettered_total{source}`,
//! `weft_outbox_pending_rows{source}`, `weft_outbox_oldest_unpublished_age_seconds{source}`,
//! `weft_outbox_slot_lag_bytes{source}` (logical mode), `weft_outbox_errors_total{source}`.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::config::Mode;
use crate::table::Dialect;

/// An aggregate the relay stopped publishing because of a bad row (policy `stop`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Blocked {
    pub aggregatetype: String,
    pub aggregateid: String,
    /// The bad row's id.
    pub id: String,
    pub reason: String,
    pub since_ms: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SourceStatus {
    pub name: String,
    /// The database URL, password hidden.
    pub database: String,
    pub dialect: Option<Dialect>,
    pub mode: Mode,
    /// `starting`, `running`, `backing_off` (broker or database unreachable), `standby`
    /// (another relay holds this outbox table's lock).
    pub state: &'static str,
    /// Unpublished rows (of the last count; counted about once a second).
    pub pending_rows: Option<i64>,
    pub oldest_unpublished_age_seconds: Option<f64>,
    pub published_total: u64,
    pub dead_lettered_total: u64,
    /// Rows per second over the last counting interval.
    pub publish_rate_per_second: f64,
    pub last_error: Option<String>,
    pub last_error_at_ms: Option<i64>,
    pub blocked: Vec<Blocked>,
    /// Logical mode: WAL bytes the slot holds back (`pg_current_wal_lsn() - confirmed_flush_lsn`).
    pub slot_lag_bytes: Option<i64>,
}

impl SourceStatus {
    pub(crate) fn new(name: &str, database: &str, mode: Mode) -> SourceStatus {
        SourceStatus {
            name: name.to_owned(),
            database: crate::redact(database),
            dialect: Dialect::of_url(database).ok(),
            mode,
            state: "starting",
            pending_rows: None,
            oldest_unpublished_age_seconds: None,
            published_total: 0,
            dead_lettered_total: 0,
            publish_rate_per_second: 0.0,
            last_error: None,
            last_error_at_ms: None,
            blocked: Vec::new(),
            slot_lag_bytes: None,
        }
    }
}

/// The shared status of every source. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Outbox {
    inner: Arc<RwLock<BTreeMap<String, SourceStatus>>>,
}

impl Outbox {
    pub fn new() -> Outbox {
        Outbox::default()
    }

    /// A status with every configured source listed (`starting`) before the relay runs,
    /// so `GET /v1/outbox/{name}` answers from the moment the server is ready.
    pub fn for_config(config: &crate::OutboxConfig) -> Outbox {
        let outbox = Outbox::new();
        for s in &config.sources {
            outbox.insert(SourceStatus::new(&s.name, &s.database, s.mode));
        }
        outbox
    }

    /// A snapshot of every source, by name.
    pub fn sources(&self) -> Vec<SourceStatus> {
        match self.inner.read() {
            Ok(map) => map.values().cloned().collect(),
            Err(poisoned) => poisoned.into_inner().values().cloned().collect(),
        }
    }

    pub fn source(&self, name: &str) -> Option<SourceStatus> {
        match self.inner.read() {
            Ok(map) => map.get(name).cloned(),
            Err(poisoned) => poisoned.into_inner().get(name).cloned(),
        }
    }

    /// Adds a source's status unless it is already listed.
    pub(crate) fn insert(&self, status: SourceStatus) {
        let mut map = match self.inner.write() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        map.entry(status.name.clone()).or_insert(status);
    }

    /// Applies `f` to source `name`'s status (never held across an await).
    pub(crate) fn update(&self, name: &str, f: impl FnOnce(&mut SourceStatus)) {
        let mut map = match self.inner.write() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        if let Some(s) = map.get_mut(name) {
            f(s);
        }
    }
}

#[derive(Serialize)]
struct List {
    sources: Vec<SourceStatus>,
}

#[derive(Serialize)]
struct Problem {
    code: &'static str,
    message: String,
}

/// `GET /v1/outbox` (every source) and `GET /v1/outbox/{name}` (404 for an unknown one).
pub fn router(outbox: Outbox) -> Router {
    Router::new()
        .route("/v1/outbox", get(list))
        .route("/v1/outbox/{name}", get(one))
        .with_state(outbox)
}

async fn list(State(outbox): State<Outbox>) -> Json<List> {
    Json(List {
        sources: outbox.sources(),
    })
}

async fn one(State(outbox): State<Outbox>, Path(name): Path<String>) -> Response {
    match outbox.source(&name) {
        Some(s) => Json(s).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(Problem {
                code: "not_found",
                message: format!("no outbox source named {name:?}"),
            }),
        )
            .into_response(),
    }
}
