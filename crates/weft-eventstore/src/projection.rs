//! CQRS read models: a [`Projection`] writes its table in the same SQL transaction that
//! moves its checkpoint (`es_projections`), so each event is applied exactly once with
//! respect to the log — a crash before the commit loses both, after it keeps both.
//!
//! The checkpoint update is conditional (`WHERE position = <the one read>`): a second runner
//! of the same projection that raced ahead makes this transaction roll back instead of
//! applying events twice.
//!
//! [`Projector::rebuild`] replays the log into a shadow table (`<table>__rebuild`, its own
//! checkpoint `<name>#rebuild`) while readers keep reading the live table, then — holding
//! the append lock so nothing commits meanwhile — applies the last events, drops the live
//! table, renames the shadow into its place and moves the checkpoint, in one transaction.

use std::future::Future;

use serde::Serialize;
use weft_store::sqlx::{self, Row};
use weft_store::{Tx, now_ms};

use crate::store::lock_positions;
use crate::types::{Direction, Filter, RecordedEvent};
use crate::{Error, EventStore, Result};

/// A read model.
pub trait Projection: Send {
    /// Unique name; also the checkpoint's key.
    fn name(&self) -> &str;
    /// The read model's table (the shadow of a rebuild is `<table>__rebuild`).
    fn table(&self) -> &str;
    /// Statements (separated by `;`) that create the read model as `table`. Index names
    /// should derive from `table` so a shadow's do not collide with the live ones.
    fn create_sql(&self, table: &str) -> String;
    /// Which events it wants.
    fn filter(&self) -> Filter {
        Filter::all()
    }
    /// Applies one event to `table` inside `tx`.
    fn apply(
        &mut self,
        event: &RecordedEvent,
        tx: &mut Tx,
        table: &str,
    ) -> impl Future<Output = Result<()>> + Send;
}

/// Runs a projection.
pub struct Projector<P: Projection> {
    es: EventStore,
    pub projection: P,
    /// Events per transaction.
    pub batch: usize,
    /// The checkpoint the current step moved to (for metrics after its commit).
    last: Option<u64>,
}

/// What a rebuild did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RebuildReport {
    pub events_applied: u64,
    pub position: u64,
}

fn quote_ident(name: &str) -> Result<String> {
    if name.is_empty()
        || name.len() > 60
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(Error::Invalid(format!(
            "table name {name:?} must be 1 to 60 letters, digits or _"
        )));
    }
    Ok(format!("\"{name}\""))
}

async fn checkpoint_of(es: &EventStore, name: &str) -> Result<Option<u64>> {
    let row = sqlx::query("SELECT position FROM es_projections WHERE name = $1")
        .bind(name)
        .fetch_optional(es.store().pool())
        .await?;
    Ok(row
        .map(|r| r.try_get::<i64, _>("position"))
        .transpose()?
        .map(|p| p as u64))
}

impl<P: Projection> Projector<P> {
    pub fn new(es: EventStore, projection: P) -> Projector<P> {
        Projector {
            es,
            projection,
            batch: 256,
            last: None,
        }
    }

    fn rebuild_name(&self) -> String {
        format!("{}#rebuild", self.projection.name())
    }

    fn shadow_table(&self) -> String {
        format!("{}__rebuild", self.projection.table())
    }

    /// Creates the table and the checkpoint on first use.
    pub async fn ensure(&self) -> Result<()> {
        let name = self.projection.name().to_owned();
        if checkpoint_of(&self.es, &name).await?.is_some() {
            return self.record_filter().await;
        }
        let table = self.projection.table().to_owned();
        quote_ident(&table)?;
        let mut tx = self.es.store().begin().await?;
        exec_script(&mut tx, &self.projection.create_sql(&table)).await?;
        sqlx::query("INSERT INTO es_projections (name, position, updated_ms) VALUES ($1, 0, $2)")
            .bind(&name)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.record_filter().await
    }

    /// Records the projection's filter beside its checkpoint, so its lag counts only the
    /// events it wants.
    async fn record_filter(&self) -> Result<()> {
        let filter = serde_json::to_string(&self.projection.filter())
            .map_err(|e| Error::Invalid(format!("projection filter: {e}")))?;
        sqlx::query("UPDATE es_projections SET filter = $1 WHERE name = $2")
            .bind(filter)
            .bind(self.projection.name())
            .execute(self.es.store().pool())
            .await?;
        Ok(())
    }

    /// The committed checkpoint.
    pub async fn position(&self) -> Result<u64> {
        Ok(checkpoint_of(&self.es, self.projection.name())
            .await?
            .unwrap_or(0))
    }

    /// One transaction: the next batch of events into the live table. Returns how many
    /// events were applied (0 when caught up).
    pub async fn step(&mut self) -> Result<usize> {
        let name = self.projection.name().to_owned();
        let table = self.projection.table().to_owned();
        self.step_committed(&name, &table).await
    }

    /// One batch into `table` inside `tx`, moving checkpoint `name`. The first statement
    /// writes the checkpoint row: on PostgreSQL it locks it against a second runner, on
    /// SQLite it takes the write lock before the transaction reads (no `BUSY_SNAPSHOT`).
    async fn step_into(&mut self, name: &str, table: &str, tx: &mut Tx) -> Result<usize> {
        let row = sqlx::query(
            "UPDATE es_projections SET updated_ms = $1 WHERE name = $2 RETURNING position",
        )
        .bind(now_ms())
        .bind(name)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| Error::NotFound(format!("projection {name} is not set up")))?;
        let from = row.try_get::<i64, _>("position")? as u64;
        let events = self
            .es
            .read_all(
                from + 1,
                Direction::Forwards,
                self.batch,
                &self.projection.filter(),
            )
            .await?;
        let Some(last) = events.last().map(|e| e.position) else {
            return Ok(0);
        };
        for e in &events {
            self.projection.apply(e, tx, table).await?;
        }
        let moved = sqlx::query(
            "UPDATE es_projections SET position = $1, updated_ms = $2
             WHERE name = $3 AND position = $4",
        )
        .bind(last as i64)
        .bind(now_ms())
        .bind(name)
        .bind(from as i64)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if moved != 1 {
            return Err(Error::Invalid(format!(
                "projection {name}: checkpoint moved under this runner (another runner?)"
            )));
        }
        self.last = Some(last);
        Ok(events.len())
    }

    async fn step_committed(&mut self, name: &str, table: &str) -> Result<usize> {
        let mut tx = self.es.store().begin().await?;
        self.last = None;
        let n = self.step_into(name, table, &mut tx).await?;
        tx.commit().await?;
        if let Some(last) = self.last {
            crate::metrics::projection(name, last);
        }
        Ok(n)
    }

    /// Applies batches until a read comes back empty; returns the events applied.
    pub async fn run_until_caught_up(&mut self) -> Result<u64> {
        self.ensure().await?;
        let name = self.projection.name().to_owned();
        let table = self.projection.table().to_owned();
        let mut total = 0;
        loop {
            let n = self.step_committed(&name, &table).await?;
            total += n as u64;
            if n == 0 {
                return Ok(total);
            }
        }
    }

    /// Runs until `stop` resolves: batches while there are events, then waits for appends
    /// (in-process wake-up, or the poll interval for other processes).
    pub async fn run(&mut self, stop: impl Future<Output = ()>) -> Result<()> {
        self.ensure().await?;
        let name = self.projection.name().to_owned();
        let table = self.projection.table().to_owned();
        let mut head = self.es.watch_head();
        tokio::pin!(stop);
        loop {
            head.borrow_and_update();
            let n = self.step_committed(&name, &table).await?;
            if n > 0 {
                continue;
            }
            tokio::select! {
                () = &mut stop => return Ok(()),
                _ = head.changed() => {}
                () = tokio::time::sleep(self.es.options().poll_interval) => {}
            }
        }
    }

    /// Rebuilds the read model from the start of the log into a shadow table and swaps it
    /// in when caught up. The live table serves readers until the swap commits.
    pub async fn rebuild(&mut self) -> Result<RebuildReport> {
        self.ensure().await?;
        let live = self.projection.table().to_owned();
        let shadow = self.shadow_table();
        let rebuild = self.rebuild_name();
        let (live_q, shadow_q) = (quote_ident(&live)?, quote_ident(&shadow)?);
        let mut tx = self.es.store().begin().await?;
        exec_script(&mut tx, &format!("DROP TABLE IF EXISTS {shadow_q}")).await?;
        exec_script(&mut tx, &self.projection.create_sql(&shadow)).await?;
        sqlx::query("DELETE FROM es_projections WHERE name = $1")
            .bind(&rebuild)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO es_projections (name, position, updated_ms) VALUES ($1, 0, $2)")
            .bind(&rebuild)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let mut applied = 0u64;
        loop {
            let n = self.step_committed(&rebuild, &shadow).await?;
            applied += n as u64;
            if n < self.batch {
                break;
            }
        }
        // The swap: nothing can commit an event while this transaction holds the lock.
        let mut tx = self.es.store().begin().await?;
        lock_positions(&mut tx).await?;
        loop {
            let n = self.step_into(&rebuild, &shadow, &mut tx).await?;
            applied += n as u64;
            if n == 0 {
                break;
            }
        }
        let position = sqlx::query("SELECT position FROM es_projections WHERE name = $1")
            .bind(&rebuild)
            .fetch_one(&mut *tx)
            .await?
            .try_get::<i64, _>("position")? as u64;
        exec_script(&mut tx, &format!("DROP TABLE {live_q}")).await?;
        exec_script(
            &mut tx,
            &format!("ALTER TABLE {shadow_q} RENAME TO {live_q}"),
        )
        .await?;
        rename_indexes(&mut tx, self.es.store().backend(), &live, &shadow).await?;
        sqlx::query("UPDATE es_projections SET position = $1, updated_ms = $2 WHERE name = $3")
            .bind(position as i64)
            .bind(now_ms())
            .bind(self.projection.name())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM es_projections WHERE name = $1")
            .bind(&rebuild)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(RebuildReport {
            events_applied: applied,
            position,
        })
    }
}

/// After the shadow table took the live name, its indexes still carry the shadow's name in
/// theirs (PostgreSQL's `<table>_pkey` included); give them the live name so the next
/// rebuild's shadow can create its own.
async fn rename_indexes(
    tx: &mut Tx,
    backend: weft_store::Backend,
    live: &str,
    shadow: &str,
) -> Result<()> {
    match backend {
        weft_store::Backend::Postgres => {
            let rows = sqlx::query(
                "SELECT indexname::text AS indexname FROM pg_indexes WHERE tablename = $1",
            )
            .bind(live)
            .fetch_all(&mut **tx)
            .await?;
            for r in rows {
                let name: String = r.try_get("indexname")?;
                if name.contains(shadow) {
                    let to = name.replace(shadow, live);
                    exec_script(tx, &format!("ALTER INDEX \"{name}\" RENAME TO \"{to}\"")).await?;
                }
            }
        }
        weft_store::Backend::Sqlite => {
            // SQLite cannot rename an index: drop it and create it again under the new name.
            let rows = sqlx::query(
                "SELECT name, sql FROM sqlite_master
                 WHERE type = 'index' AND tbl_name = $1 AND sql IS NOT NULL",
            )
            .bind(live)
            .fetch_all(&mut **tx)
            .await?;
            for r in rows {
                let name: String = r.try_get("name")?;
                let sql: String = r.try_get("sql")?;
                if name.contains(shadow) {
                    exec_script(tx, &format!("DROP INDEX \"{name}\"")).await?;
                    exec_script(tx, &sql.replace(shadow, live)).await?;
                }
            }
        }
    }
    Ok(())
}

/// Runs `;`-separated statements one by one. (`raw_sql(..).execute(&mut *tx)` makes the
/// future fail `Send`'s higher-ranked check, so a projector could not be spawned.)
async fn exec_script(tx: &mut Tx, script: &str) -> Result<()> {
    for statement in script.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        sqlx::query(statement).execute(&mut **tx).await?;
    }
    Ok(())
}
