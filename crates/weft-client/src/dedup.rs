//! Idempotent consumers: a dedup table in the state store (SQLite or PostgreSQL, through
//! `weft-store`), keyed by consumer group and [`Message::dedup_key`] (`weft-message-id`, else
//! `topic/partition/offset`), with a retention window.
//!
//! - [`Dedup::transactional`]: the handler gets the store transaction the dedup mark was
//!   written in; its own SQL and the mark commit or roll back together, so a record
//!   delivered any number of times — a redelivery after a crash between the side effect and
//!   the offset commit included — has its effect exactly once.
//! - [`Dedup::idempotent`]: for side effects outside the database: skip records already
//!   marked, mark after the handler succeeded. A crash between the side effect and the mark
//!   repeats the effect once; use the transactional variant where that matters.
//!
//! Marks older than the retention window are purged (at most once per `retention / 10`, in
//! the background); a duplicate arriving after its mark was purged is processed again, so
//! the window must exceed the longest redelivery delay (retention of retry topics and DLQ
//! redrives included).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use weft_store::{Migration, Store, Tx, sqlx};

use crate::consumer::Handler;
use crate::message::Message;
use crate::{HandlerError, Result};

/// Migration component name in `weft_migrations`.
pub const COMPONENT: &str = "client-dedup";

/// The dedup table's migrations (never edit a released one; add a new one).
pub const MIGRATIONS: &[Migration] = &[Migration::both(
    1,
    "dedup marks",
    "CREATE TABLE weft_client_dedup (\
         consumer_group TEXT NOT NULL, \
         dedup_key TEXT NOT NULL, \
         seen_ms BIGINT NOT NULL, \
         PRIMARY KEY (consumer_group, dedup_key)); \
     CREATE INDEX weft_client_dedup_seen ON weft_client_dedup (seen_ms)",
)];

/// The dedup table of one consumer group. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Dedup {
    store: Store,
    group: String,
    retention: Duration,
    last_purge_ms: Arc<AtomicI64>,
}

impl Dedup {
    /// Applies the migrations and returns the table for `group`.
    pub async fn new(store: Store, group: &str, retention: Duration) -> Result<Dedup> {
        store.migrate(COMPONENT, MIGRATIONS).await?;
        Ok(Dedup {
            store,
            group: group.to_owned(),
            retention,
            last_purge_ms: Arc::new(AtomicI64::new(weft_store::now_ms())),
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Writes the mark for `key` in `tx`; true when it is new (the record was not processed
    /// yet), false for a duplicate. Under concurrency the loser waits for the winner's
    /// transaction (row lock / SQLite's single writer) and then sees the duplicate.
    pub async fn mark(&self, tx: &mut Tx, key: &str) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "INSERT INTO weft_client_dedup (consumer_group, dedup_key, seen_ms) \
             VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(&self.group)
        .bind(key)
        .bind(weft_store::now_ms())
        .execute(&mut **tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Whether `key` has a mark.
    pub async fn seen(&self, key: &str) -> Result<bool, sqlx::Error> {
        let row = sqlx::query(
            "SELECT 1 FROM weft_client_dedup WHERE consumer_group = $1 AND dedup_key = $2",
        )
        .bind(&self.group)
        .bind(key)
        .fetch_optional(self.store.pool())
        .await?;
        Ok(row.is_some())
    }

    /// Deletes marks older than the retention window; returns how many.
    pub async fn purge(&self) -> Result<u64> {
        let cutoff =
            weft_store::now_ms() - i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX);
        let done =
            sqlx::query("DELETE FROM weft_client_dedup WHERE consumer_group = $1 AND seen_ms < $2")
                .bind(&self.group)
                .bind(cutoff)
                .execute(self.store.pool())
                .await?;
        self.last_purge_ms
            .store(weft_store::now_ms(), Ordering::Relaxed);
        Ok(done.rows_affected())
    }

    fn maybe_purge(&self) {
        let every = i64::try_from(self.retention.as_millis() / 10)
            .unwrap_or(i64::MAX)
            .max(1_000);
        let now = weft_store::now_ms();
        let last = self.last_purge_ms.load(Ordering::Relaxed);
        if now - last < every
            || self
                .last_purge_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = me.purge().await {
                tracing::warn!(error = %e, group = %me.group, "dedup purge failed");
            }
        });
    }

    /// Wraps a handler whose side effects live outside the database (see module docs).
    pub fn idempotent<H: Handler>(self, handler: H) -> Idempotent<H> {
        Idempotent {
            dedup: self,
            handler,
        }
    }

    /// Wraps a handler that does its work in the store transaction holding the dedup mark:
    /// `f(message, tx)` returns the transaction to commit, or an error (the transaction,
    /// mark included, rolls back).
    pub fn transactional<F, Fut>(self, f: F) -> Transactional<F>
    where
        F: Fn(Message, Tx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Tx, HandlerError>> + Send,
    {
        Transactional { dedup: self, f }
    }
}

/// See [`Dedup::idempotent`].
#[derive(Debug)]
pub struct Idempotent<H> {
    dedup: Dedup,
    handler: H,
}

impl<H: Handler> Handler for Idempotent<H> {
    async fn handle(&self, message: Message) -> Result<(), HandlerError> {
        self.dedup.maybe_purge();
        let key = message.dedup_key();
        if self.dedup.seen(&key).await? {
            tracing::debug!(key, "duplicate skipped");
            return Ok(());
        }
        self.handler.handle(message).await?;
        let mut tx = self.dedup.store.begin().await.map_err(store_error)?;
        self.dedup.mark(&mut tx, &key).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// See [`Dedup::transactional`].
#[derive(Debug)]
pub struct Transactional<F> {
    dedup: Dedup,
    f: F,
}

impl<F, Fut> Handler for Transactional<F>
where
    F: Fn(Message, Tx) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Tx, HandlerError>> + Send,
{
    async fn handle(&self, message: Message) -> Result<(), HandlerError> {
        self.dedup.maybe_purge();
        let key = message.dedup_key();
        let mut tx = self.dedup.store.begin().await.map_err(store_error)?;
        if !self.dedup.mark(&mut tx, &key).await? {
            tracing::debug!(key, "duplicate skipped");
            tx.rollback().await?;
            return Ok(());
        }
        let tx = (self.f)(message, tx).await?;
        tx.commit().await?;
        Ok(())
    }
}

fn store_error(e: weft_store::Error) -> HandlerError {
    match e {
        weft_store::Error::Sql(e) => HandlerError::from(e),
        other => HandlerError::retryable(other),
    }
}
