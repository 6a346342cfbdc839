//! The webhook tables (migration component `gateway-webhooks`) and every query on them.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use weft_store::sqlx;
use weft_store::{Migration, Store};

use crate::position::Positions;

pub(crate) const MIGRATIONS: &[Migration] = &[Migration::both(
    1,
    "webhook subscriptions and delivery attempts",
    "CREATE TABLE gateway_webhooks (
        id TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        secrets TEXT NOT NULL,
        position TEXT NOT NULL,
        enabled BIGINT NOT NULL,
        disabled_reason TEXT,
        created_ms BIGINT NOT NULL
    );
    CREATE TABLE gateway_webhook_attempts (
        webhook_id TEXT NOT NULL,
        message_id TEXT NOT NULL,
        attempt BIGINT NOT NULL,
        at_ms BIGINT NOT NULL,
        status BIGINT NOT NULL,
        latency_ms BIGINT NOT NULL,
        outcome TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX gateway_webhook_attempts_by_hook ON gateway_webhook_attempts (webhook_id, at_ms);",
)];

/// What a subscription asks for (stored as JSON in `spec`, version 1).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Spec {
    pub topic: String,
    pub url: String,
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// Only records with this key.
    pub filter_key: Option<String>,
    /// Only records carrying these headers (`name:value,…`).
    pub filter_headers: Option<String>,
    /// `key` (records of one key in order) or `none`.
    pub ordering: String,
    /// Deliveries per second at most (none: unlimited).
    pub rate_limit: Option<u32>,
}

#[derive(Debug, Clone)]
pub(crate) struct Row1 {
    pub(crate) id: String,
    pub(crate) spec: Spec,
    pub(crate) secrets: Vec<String>,
    pub(crate) position: Positions,
    pub(crate) enabled: bool,
    pub(crate) disabled_reason: Option<String>,
    pub(crate) created_ms: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Attempt {
    pub message_id: String,
    pub attempt: i64,
    pub at_ms: i64,
    /// HTTP status, 0 when no response came.
    pub status: i64,
    pub latency_ms: i64,
    /// `success`, `failure`, `dlq`, `disabled`.
    pub outcome: String,
    /// Error or the first 512 bytes of the response body.
    pub detail: String,
}

type R<T> = Result<T, sqlx::Error>;

fn db(e: sqlx::Error) -> sqlx::Error {
    e
}

fn row_of(r: &sqlx::any::AnyRow) -> R<Row1> {
    let spec: String = r.try_get("spec").map_err(db)?;
    let secrets: String = r.try_get("secrets").map_err(db)?;
    let position: String = r.try_get("position").map_err(db)?;
    Ok(Row1 {
        id: r.try_get("id").map_err(db)?,
        spec: serde_json::from_str(&spec).unwrap_or(Spec {
            topic: String::new(),
            url: String::new(),
            headers: Default::default(),
            filter_key: None,
            filter_headers: None,
            ordering: "none".into(),
            rate_limit: None,
        }),
        secrets: serde_json::from_str(&secrets).unwrap_or_default(),
        position: crate::position::decode(&position).unwrap_or_default(),
        enabled: r.try_get::<i64, _>("enabled").map_err(db)? != 0,
        disabled_reason: r.try_get("disabled_reason").map_err(db)?,
        created_ms: r.try_get("created_ms").map_err(db)?,
    })
}

const COLS: &str = "id, spec, secrets, position, enabled, disabled_reason, created_ms";

pub(crate) async fn insert(store: &Store, row: &Row1) -> R<()> {
    sqlx::query(
        "INSERT INTO gateway_webhooks (id, spec, secrets, position, enabled, created_ms)
         VALUES ($1, $2, $3, $4, 1, $5)",
    )
    .bind(&row.id)
    .bind(serde_json::to_string(&row.spec).unwrap_or_default())
    .bind(serde_json::to_string(&row.secrets).unwrap_or_default())
    .bind(crate::position::encode(&row.position))
    .bind(row.created_ms)
    .execute(store.pool())
    .await
    .map_err(db)?;
    Ok(())
}

pub(crate) async fn all(store: &Store) -> R<Vec<Row1>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLS} FROM gateway_webhooks ORDER BY created_ms, id"
    ))
    .fetch_all(store.pool())
    .await
    .map_err(db)?;
    rows.iter().map(row_of).collect()
}

pub(crate) async fn get(store: &Store, id: &str) -> R<Option<Row1>> {
    let row = sqlx::query(&format!(
        "SELECT {COLS} FROM gateway_webhooks WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(store.pool())
    .await
    .map_err(db)?;
    row.as_ref().map(row_of).transpose()
}

pub(crate) async fn delete(store: &Store, id: &str) -> R<bool> {
    let done = sqlx::query("DELETE FROM gateway_webhooks WHERE id = $1")
        .bind(id)
        .execute(store.pool())
        .await
        .map_err(db)?;
    Ok(done.rows_affected() > 0)
}

pub(crate) async fn set_position(store: &Store, id: &str, position: &Positions) -> R<()> {
    sqlx::query("UPDATE gateway_webhooks SET position = $1 WHERE id = $2")
        .bind(crate::position::encode(position))
        .bind(id)
        .execute(store.pool())
        .await
        .map_err(db)?;
    Ok(())
}

pub(crate) async fn set_secrets(store: &Store, id: &str, secrets: &[String]) -> R<()> {
    sqlx::query("UPDATE gateway_webhooks SET secrets = $1 WHERE id = $2")
        .bind(serde_json::to_string(secrets).unwrap_or_default())
        .bind(id)
        .execute(store.pool())
        .await
        .map_err(db)?;
    Ok(())
}

pub(crate) async fn set_enabled(
    store: &Store,
    id: &str,
    enabled: bool,
    reason: Option<&str>,
) -> R<()> {
    sqlx::query("UPDATE gateway_webhooks SET enabled = $1, disabled_reason = $2 WHERE id = $3")
        .bind(i64::from(enabled))
        .bind(reason)
        .bind(id)
        .execute(store.pool())
        .await
        .map_err(db)?;
    Ok(())
}

/// Writes delivery attempts with group commit: a caller's attempt is stored (committed)
/// when [`AttemptLog::record`] returns, as with one statement per attempt, but the
/// attempts of concurrent deliveries share a transaction — one commit, one sync, for many
/// deliveries instead of one each (the commit was what bounded deliveries per second).
#[derive(Clone)]
pub(crate) struct AttemptLog {
    tx: tokio::sync::mpsc::Sender<Pending>,
}

type Pending = (
    String,
    Attempt,
    tokio::sync::oneshot::Sender<Result<(), String>>,
);

/// Attempts written in one transaction at most.
const ATTEMPTS_PER_COMMIT: usize = 512;

impl AttemptLog {
    /// Starts the writer task (it ends once every `AttemptLog` is dropped).
    pub(crate) fn start(store: Store) -> AttemptLog {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Pending>(4 * ATTEMPTS_PER_COMMIT);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(ATTEMPTS_PER_COMMIT);
            while rx.recv_many(&mut batch, ATTEMPTS_PER_COMMIT).await > 0 {
                let result = write_attempts(&store, &batch)
                    .await
                    .map_err(|e| e.to_string());
                for (_, _, done) in batch.drain(..) {
                    let _ = done.send(result.clone());
                }
            }
        });
        AttemptLog { tx }
    }

    /// Stores `a`; returns once it is committed.
    pub(crate) async fn record(&self, webhook_id: &str, a: Attempt) -> Result<(), String> {
        let (done, committed) = tokio::sync::oneshot::channel();
        self.tx
            .send((webhook_id.to_owned(), a, done))
            .await
            .map_err(|_| "the attempt writer stopped".to_owned())?;
        committed
            .await
            .map_err(|_| "the attempt writer stopped".to_owned())?
    }
}

async fn write_attempts(store: &Store, batch: &[Pending]) -> R<()> {
    let mut tx = store.pool().begin().await.map_err(db)?;
    for (webhook_id, a, _) in batch {
        sqlx::query(
            "INSERT INTO gateway_webhook_attempts
             (webhook_id, message_id, attempt, at_ms, status, latency_ms, outcome, detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(webhook_id)
        .bind(&a.message_id)
        .bind(a.attempt)
        .bind(a.at_ms)
        .bind(a.status)
        .bind(a.latency_ms)
        .bind(&a.outcome)
        .bind(&a.detail)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    }
    tx.commit().await.map_err(db)
}

pub(crate) async fn attempts(store: &Store, webhook_id: &str, limit: i64) -> R<Vec<Attempt>> {
    let rows = sqlx::query(
        "SELECT message_id, attempt, at_ms, status, latency_ms, outcome, detail
         FROM gateway_webhook_attempts WHERE webhook_id = $1 ORDER BY at_ms DESC LIMIT $2",
    )
    .bind(webhook_id)
    .bind(limit)
    .fetch_all(store.pool())
    .await
    .map_err(db)?;
    rows.iter()
        .map(|r| {
            Ok(Attempt {
                message_id: r.try_get("message_id").map_err(db)?,
                attempt: r.try_get("attempt").map_err(db)?,
                at_ms: r.try_get("at_ms").map_err(db)?,
                status: r.try_get("status").map_err(db)?,
                latency_ms: r.try_get("latency_ms").map_err(db)?,
                outcome: r.try_get("outcome").map_err(db)?,
                detail: r.try_get("detail").map_err(db)?,
            })
        })
        .collect()
}
