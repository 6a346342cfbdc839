//! Persistent subscriptions: server-side consumer groups.
//!
//! A group (`es_persistent`: settings and checkpoint) reads the events passing its filter
//! and hands each to one connected [`Consumer`] — round-robin, or pinned by stream (every
//! event of a stream to the same consumer while the set of consumers is unchanged). A
//! consumer acks or nacks each delivery: a nack with [`Nack::Retry`] redelivers after an
//! exponential backoff, until `max_retries`, then the event is *parked* (`es_parked`, with the
//! reason); [`Nack::Park`] parks at once, [`Nack::Skip`] drops it. The checkpoint is the
//! highest position below which everything was acked, skipped or parked; it is stored as it
//! moves, so after a restart delivery resumes there (at least once: what was in flight is
//! delivered again). [`EventStore::replay_parked`] delivers parked events again; each leaves
//! the park when acked, and a crash during the replay leaves it parked.
//!
//! One dispatcher task per group and process owns the state; consumers talk to it through
//! a command channel. Across processes, only the holder of the group's lease
//! (`es_persistent.owner`/`lease_until`, renewed every few poll intervals) dispatches and
//! writes the checkpoint; a process whose consumers all left gives the lease up at once;
//! the others wait and take over when the lease is free or runs out, resuming
//! from the stored checkpoint (consumers connected to a waiting process get nothing
//! meanwhile).

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;
use weft_store::now_ms;
use weft_store::sqlx::{self, Row};

use crate::types::{Direction, Filter, RecordedEvent};
use crate::{Error, EventStore, Result};

/// How many not-yet-acked events a dispatcher holds.
const BUFFER: usize = 512;
/// How long a group's lease lasts without renewal.
const LEASE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    #[default]
    RoundRobin,
    /// Events of one stream go to one consumer (hash of the stream name).
    Pinned,
}

/// A group's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupSettings {
    #[serde(default)]
    pub filter: Filter,
    #[serde(default)]
    pub strategy: Strategy,
    /// Retries after the first delivery before an event is parked.
    pub max_retries: u32,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// Deliveries a consumer may hold unacked.
    pub max_in_flight: usize,
    /// Start after this global position (0: from the beginning).
    #[serde(default)]
    pub start_after: u64,
}

impl Default for GroupSettings {
    fn default() -> Self {
        GroupSettings {
            filter: Filter::all(),
            strategy: Strategy::RoundRobin,
            max_retries: 5,
            backoff_initial_ms: 100,
            backoff_max_ms: 10_000,
            max_in_flight: 16,
            start_after: 0,
        }
    }
}

/// What a consumer says about a delivery it could not handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nack {
    Retry,
    Park,
    Skip,
}

/// One event handed to a consumer.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub event: RecordedEvent,
    /// 0 on the first delivery.
    pub attempt: u32,
    /// A replay of a parked event.
    pub replayed: bool,
}

/// A group's progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupStatus {
    pub group: String,
    pub checkpoint: u64,
    pub parked: u64,
}

enum Cmd {
    Connect {
        tx: mpsc::Sender<Delivery>,
        reply: oneshot::Sender<u64>,
    },
    Disconnect {
        consumer: u64,
    },
    Ack {
        consumer: u64,
        position: u64,
    },
    Nack {
        consumer: u64,
        position: u64,
        action: Nack,
        reason: String,
    },
    Replay {
        reply: oneshot::Sender<Result<u64>>,
    },
}

#[derive(Clone)]
pub(crate) struct GroupHandle {
    cmd: mpsc::Sender<Cmd>,
}

/// A connected member of a group. Dropping it disconnects; its unacked deliveries go to
/// the others.
pub struct Consumer {
    id: u64,
    rx: mpsc::Receiver<Delivery>,
    cmd: mpsc::Sender<Cmd>,
}

impl Consumer {
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The next delivery; `None` when the group's dispatcher stopped.
    pub async fn next(&mut self) -> Option<Delivery> {
        self.rx.recv().await
    }

    pub async fn ack(&self, d: &Delivery) -> Result<()> {
        self.send(Cmd::Ack {
            consumer: self.id,
            position: d.event.position,
        })
        .await
    }

    pub async fn nack(&self, d: &Delivery, action: Nack, reason: &str) -> Result<()> {
        self.send(Cmd::Nack {
            consumer: self.id,
            position: d.event.position,
            action,
            reason: reason.to_owned(),
        })
        .await
    }

    async fn send(&self, c: Cmd) -> Result<()> {
        self.cmd
            .send(c)
            .await
            .map_err(|_| Error::Invalid("the group's dispatcher has stopped".to_owned()))
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        let _ = self.cmd.try_send(Cmd::Disconnect { consumer: self.id });
    }
}

impl EventStore {
    /// Creates a persistent subscription group. Refused when it exists.
    pub async fn create_group(&self, group: &str, settings: GroupSettings) -> Result<()> {
        if group.is_empty() || group.len() > 200 {
            return Err(Error::Invalid("group names are 1 to 200 bytes".to_owned()));
        }
        if settings.max_in_flight == 0 {
            return Err(Error::Invalid(
                "max_in_flight must be at least 1".to_owned(),
            ));
        }
        let text = serde_json::to_string(&settings)
            .map_err(|e| Error::Invalid(format!("group settings: {e}")))?;
        let done = sqlx::query(
            "INSERT INTO es_persistent (grp, settings, checkpoint, updated_ms)
             VALUES ($1, $2, $3, $4) ON CONFLICT (grp) DO NOTHING",
        )
        .bind(group)
        .bind(text)
        .bind(settings.start_after as i64)
        .bind(now_ms())
        .execute(self.inner.store.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(Error::Invalid(format!("group {group} already exists")));
        }
        Ok(())
    }

    /// Joins `group` as a new consumer.
    pub async fn connect_group(&self, group: &str) -> Result<Consumer> {
        let handle = self.group_handle(group).await?;
        let settings = load_group(self, group).await?.0;
        let (tx, rx) = mpsc::channel(settings.max_in_flight.max(1));
        let (reply, id) = oneshot::channel();
        handle
            .cmd
            .send(Cmd::Connect { tx, reply })
            .await
            .map_err(|_| Error::Invalid(format!("group {group}: dispatcher stopped")))?;
        let id = id
            .await
            .map_err(|_| Error::Invalid(format!("group {group}: dispatcher stopped")))?;
        Ok(Consumer {
            id,
            rx,
            cmd: handle.cmd,
        })
    }

    /// Delivers the parked events of `group` again; returns how many.
    pub async fn replay_parked(&self, group: &str) -> Result<u64> {
        let handle = self.group_handle(group).await?;
        let (reply, answer) = oneshot::channel();
        handle
            .cmd
            .send(Cmd::Replay { reply })
            .await
            .map_err(|_| Error::Invalid(format!("group {group}: dispatcher stopped")))?;
        answer
            .await
            .map_err(|_| Error::Invalid(format!("group {group}: dispatcher stopped")))?
    }

    /// Parked events of `group`: `(position, reason)`.
    pub async fn parked(&self, group: &str) -> Result<Vec<(u64, String)>> {
        let rows =
            sqlx::query("SELECT position, reason FROM es_parked WHERE grp = $1 ORDER BY position")
                .bind(group)
                .fetch_all(self.inner.store.pool())
                .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<i64, _>("position")? as u64,
                    r.try_get("reason")?,
                ))
            })
            .collect()
    }

    pub async fn group_status(&self, group: &str) -> Result<GroupStatus> {
        let (_, checkpoint) = load_group(self, group).await?;
        let parked = self.parked(group).await?.len() as u64;
        Ok(GroupStatus {
            group: group.to_owned(),
            checkpoint,
            parked,
        })
    }

    async fn group_handle(&self, group: &str) -> Result<GroupHandle> {
        let existing = self.groups_lock().get(group).cloned();
        if let Some(h) = existing
            && !h.cmd.is_closed()
        {
            return Ok(h);
        }
        let (settings, checkpoint) = load_group(self, group).await?;
        // A replay interrupted by a crash: those events are parked again.
        sqlx::query("UPDATE es_parked SET replaying = 0 WHERE grp = $1")
            .bind(group)
            .execute(self.inner.store.pool())
            .await?;
        let mut groups = self.groups_lock();
        if let Some(h) = groups.get(group)
            && !h.cmd.is_closed()
        {
            return Ok(h.clone());
        }
        let (cmd, rx) = mpsc::channel(1024);
        let d = Dispatcher {
            es: self.clone(),
            group: group.to_owned(),
            settings,
            read_after: checkpoint,
            owner: uuid::Uuid::new_v4().to_string(),
            lease_until: None,
            stored_checkpoint: checkpoint,
            pending: BTreeMap::new(),
            consumers: Vec::new(),
            next_id: 1,
            rr: 0,
            more: true,
        };
        tokio::spawn(async move {
            let group = d.group.clone();
            if let Err(e) = d.run(rx).await {
                warn!(group, error = %e, "persistent subscription dispatcher stopped");
            }
        });
        let h = GroupHandle { cmd };
        groups.insert(group.to_owned(), h.clone());
        Ok(h)
    }

    fn groups_lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, GroupHandle>> {
        match self.inner.groups.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

async fn load_group(es: &EventStore, group: &str) -> Result<(GroupSettings, u64)> {
    let row = sqlx::query("SELECT settings, checkpoint FROM es_persistent WHERE grp = $1")
        .bind(group)
        .fetch_optional(es.inner.store.pool())
        .await?
        .ok_or_else(|| {
            Error::NotFound(format!(
                "persistent subscription group {group} does not exist"
            ))
        })?;
    let text: String = row.try_get("settings")?;
    let settings = serde_json::from_str(&text)
        .map_err(|e| Error::Corrupt(format!("group {group} settings: {e}")))?;
    Ok((settings, row.try_get::<i64, _>("checkpoint")? as u64))
}

struct Pending {
    event: RecordedEvent,
    attempt: u32,
    owner: Option<u64>,
    not_before: Option<Instant>,
    replay: bool,
}

struct Slot {
    id: u64,
    tx: mpsc::Sender<Delivery>,
    in_flight: usize,
}

struct Dispatcher {
    es: EventStore,
    group: String,
    settings: GroupSettings,
    /// Last position fetched from the store.
    read_after: u64,
    stored_checkpoint: u64,
    pending: BTreeMap<u64, Pending>,
    consumers: Vec<Slot>,
    next_id: u64,
    rr: usize,
    /// Whether the last fetch may have left events behind.
    more: bool,
    /// This dispatcher's identity in `es_persistent.owner`.
    owner: String,
    /// Until when this dispatcher holds the lease (`None`: it does not).
    lease_until: Option<Instant>,
}

impl Dispatcher {
    async fn run(mut self, mut rx: mpsc::Receiver<Cmd>) -> Result<()> {
        let mut head = self.es.watch_head();
        loop {
            if self.consumers.is_empty() {
                // Nobody to deliver to here: let another process serve the group.
                self.release_lease().await?;
            } else if self.lease().await? {
                self.fill().await?;
                self.dispatch();
                self.store_checkpoint().await?;
            }
            let wake = self
                .pending
                .values()
                .filter(|p| p.owner.is_none())
                .filter_map(|p| p.not_before)
                .min();
            let sleep = match wake {
                Some(t) => t.saturating_duration_since(Instant::now()),
                None => self.es.inner.options.poll_interval,
            }
            .min(self.es.inner.options.poll_interval);
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(c) => self.handle(c).await?,
                    None => return Ok(()),
                },
                changed = head.changed() => {
                    if changed.is_err() { return Ok(()); }
                    self.more = true;
                }
                () = tokio::time::sleep(sleep) => self.more = true,
            }
        }
    }

    /// Takes or renews the group's lease; on taking it, starts from the stored checkpoint;
    /// on losing it, forgets what it held. Returns whether this dispatcher may dispatch.
    async fn lease(&mut self) -> Result<bool> {
        let now = Instant::now();
        if self.lease_until.is_some_and(|t| t > now + LEASE * 2 / 3) {
            return Ok(true);
        }
        let wall = now_ms();
        let taken = sqlx::query(
            "UPDATE es_persistent SET owner = $1, lease_until = $2
             WHERE grp = $3 AND (owner IS NULL OR owner = $4 OR lease_until < $5)",
        )
        .bind(&self.owner)
        .bind(wall + LEASE.as_millis() as i64)
        .bind(&self.group)
        .bind(&self.owner)
        .bind(wall)
        .execute(self.es.inner.store.pool())
        .await?
        .rows_affected()
            == 1;
        match (taken, self.lease_until.is_some()) {
            (true, false) => {
                // Taking over: another process may have moved the checkpoint and parked
                // events; start from what is stored.
                let (_, checkpoint) = load_group(&self.es, &self.group).await?;
                sqlx::query("UPDATE es_parked SET replaying = 0 WHERE grp = $1")
                    .bind(&self.group)
                    .execute(self.es.inner.store.pool())
                    .await?;
                self.pending.clear();
                self.read_after = checkpoint;
                self.stored_checkpoint = checkpoint;
                self.more = true;
            }
            (false, true) => {
                warn!(group = %self.group, "persistent subscription lease lost to another process");
                self.pending.clear();
                for c in &mut self.consumers {
                    c.in_flight = 0;
                }
            }
            _ => {}
        }
        self.lease_until = taken.then_some(now + LEASE);
        Ok(taken)
    }

    /// Stores the checkpoint and gives the lease up.
    async fn release_lease(&mut self) -> Result<()> {
        if self.lease_until.is_none() {
            return Ok(());
        }
        self.store_checkpoint().await?;
        sqlx::query("UPDATE es_persistent SET lease_until = 0 WHERE grp = $1 AND owner = $2")
            .bind(&self.group)
            .bind(&self.owner)
            .execute(self.es.inner.store.pool())
            .await?;
        self.lease_until = None;
        self.pending.clear();
        Ok(())
    }

    async fn fill(&mut self) -> Result<()> {
        let live = self.pending.values().filter(|p| !p.replay).count();
        if !self.more || live >= BUFFER / 2 {
            return Ok(());
        }
        let want = BUFFER - live;
        let page = self
            .es
            .read_all(
                self.read_after + 1,
                Direction::Forwards,
                want,
                &self.settings.filter,
            )
            .await?;
        self.more = page.len() == want;
        for e in page {
            self.read_after = e.position;
            self.pending.insert(
                e.position,
                Pending {
                    event: e,
                    attempt: 0,
                    owner: None,
                    not_before: None,
                    replay: false,
                },
            );
        }
        Ok(())
    }

    fn dispatch(&mut self) {
        if self.consumers.is_empty() {
            return;
        }
        let now = Instant::now();
        let positions: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.owner.is_none() && p.not_before.is_none_or(|t| t <= now))
            .map(|(k, _)| *k)
            .collect();
        let max = self.settings.max_in_flight;
        for pos in positions {
            let Some(p) = self.pending.get(&pos) else {
                continue;
            };
            let n = self.consumers.len();
            let pick = match self.settings.strategy {
                Strategy::Pinned => {
                    let mut h = std::collections::hash_map::DefaultHasher::new();
                    p.event.stream.hash(&mut h);
                    let i = (h.finish() % n as u64) as usize;
                    (self.consumers[i].in_flight < max).then_some(i)
                }
                Strategy::RoundRobin => (0..n)
                    .map(|k| (self.rr + k) % n)
                    .find(|&i| self.consumers[i].in_flight < max),
            };
            let Some(i) = pick else {
                if self.settings.strategy == Strategy::RoundRobin {
                    break; // everyone is full
                }
                continue;
            };
            let delivery = Delivery {
                event: p.event.clone(),
                attempt: p.attempt,
                replayed: p.replay,
            };
            match self.consumers[i].tx.try_send(delivery) {
                Ok(()) => {
                    self.consumers[i].in_flight += 1;
                    let id = self.consumers[i].id;
                    if let Some(p) = self.pending.get_mut(&pos) {
                        p.owner = Some(id);
                        p.not_before = None;
                    }
                    self.rr = (i + 1) % n;
                }
                Err(mpsc::error::TrySendError::Full(_)) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    let id = self.consumers[i].id;
                    self.remove(id);
                    if self.consumers.is_empty() {
                        return;
                    }
                }
            }
        }
    }

    fn remove(&mut self, id: u64) {
        self.consumers.retain(|c| c.id != id);
        for p in self.pending.values_mut() {
            if p.owner == Some(id) {
                p.owner = None;
            }
        }
        self.rr = 0;
    }

    fn release(&mut self, consumer: u64) {
        if let Some(c) = self.consumers.iter_mut().find(|c| c.id == consumer) {
            c.in_flight = c.in_flight.saturating_sub(1);
        }
    }

    async fn handle(&mut self, cmd: Cmd) -> Result<()> {
        match cmd {
            Cmd::Connect { tx, reply } => {
                let id = self.next_id;
                self.next_id += 1;
                self.consumers.push(Slot {
                    id,
                    tx,
                    in_flight: 0,
                });
                let _ = reply.send(id);
            }
            Cmd::Disconnect { consumer } => self.remove(consumer),
            Cmd::Ack { consumer, position } => {
                if self
                    .pending
                    .get(&position)
                    .is_some_and(|p| p.owner == Some(consumer))
                {
                    self.release(consumer);
                    if let Some(p) = self.pending.remove(&position)
                        && p.replay
                    {
                        sqlx::query("DELETE FROM es_parked WHERE grp = $1 AND position = $2")
                            .bind(&self.group)
                            .bind(position as i64)
                            .execute(self.es.inner.store.pool())
                            .await?;
                    }
                }
            }
            Cmd::Nack {
                consumer,
                position,
                action,
                reason,
            } => {
                let owned = self
                    .pending
                    .get(&position)
                    .is_some_and(|p| p.owner == Some(consumer));
                if !owned {
                    return Ok(());
                }
                self.release(consumer);
                let retry = action == Nack::Retry
                    && self
                        .pending
                        .get(&position)
                        .is_some_and(|p| p.attempt < self.settings.max_retries);
                if retry {
                    if let Some(p) = self.pending.get_mut(&position) {
                        p.attempt += 1;
                        p.owner = None;
                        p.not_before = Some(Instant::now() + backoff(&self.settings, p.attempt));
                    }
                } else if let Some(p) = self.pending.remove(&position) {
                    match action {
                        Nack::Skip => {
                            if p.replay {
                                self.unpark(position).await?;
                            }
                        }
                        Nack::Retry | Nack::Park => {
                            let reason = if action == Nack::Retry {
                                format!("{reason} (after {} retries)", p.attempt)
                            } else {
                                reason
                            };
                            self.park(position, &reason).await?;
                        }
                    }
                }
            }
            Cmd::Replay { reply } => {
                let result = self.replay().await;
                let _ = reply.send(result);
            }
        }
        Ok(())
    }

    async fn park(&self, position: u64, reason: &str) -> Result<()> {
        crate::metrics::parked(&self.group);
        sqlx::query(
            "INSERT INTO es_parked (grp, position, reason, replaying, parked_ms)
             VALUES ($1, $2, $3, 0, $4)
             ON CONFLICT (grp, position) DO UPDATE SET reason = excluded.reason,
                 replaying = 0, parked_ms = excluded.parked_ms",
        )
        .bind(&self.group)
        .bind(position as i64)
        .bind(reason)
        .bind(now_ms())
        .execute(self.es.inner.store.pool())
        .await?;
        Ok(())
    }

    async fn unpark(&self, position: u64) -> Result<()> {
        sqlx::query("DELETE FROM es_parked WHERE grp = $1 AND position = $2")
            .bind(&self.group)
            .bind(position as i64)
            .execute(self.es.inner.store.pool())
            .await?;
        Ok(())
    }

    async fn replay(&mut self) -> Result<u64> {
        let rows = sqlx::query(
            "SELECT position FROM es_parked WHERE grp = $1 AND replaying = 0 ORDER BY position",
        )
        .bind(&self.group)
        .fetch_all(self.es.inner.store.pool())
        .await?;
        let mut n = 0;
        for r in rows {
            let position = r.try_get::<i64, _>("position")? as u64;
            let page = self
                .es
                .read_all(position, Direction::Forwards, 1, &Filter::all())
                .await?;
            let Some(event) = page.into_iter().next().filter(|e| e.position == position) else {
                // Scavenged since it was parked: nothing left to replay.
                self.unpark(position).await?;
                continue;
            };
            sqlx::query("UPDATE es_parked SET replaying = 1 WHERE grp = $1 AND position = $2")
                .bind(&self.group)
                .bind(position as i64)
                .execute(self.es.inner.store.pool())
                .await?;
            self.pending.insert(
                position,
                Pending {
                    event,
                    attempt: 0,
                    owner: None,
                    not_before: None,
                    replay: true,
                },
            );
            n += 1;
        }
        Ok(n)
    }

    /// Everything at or below the checkpoint is acked, skipped or parked.
    fn checkpoint(&self) -> u64 {
        self.pending
            .iter()
            .find(|(_, p)| !p.replay)
            .map_or(self.read_after, |(pos, _)| pos - 1)
    }

    async fn store_checkpoint(&mut self) -> Result<()> {
        let cp = self.checkpoint();
        if cp != self.stored_checkpoint {
            // Only while holding the lease: a process that lost it never moves the checkpoint.
            sqlx::query(
                "UPDATE es_persistent SET checkpoint = $1, updated_ms = $2
                 WHERE grp = $3 AND owner = $4",
            )
            .bind(cp as i64)
            .bind(now_ms())
            .bind(&self.group)
            .bind(&self.owner)
            .execute(self.es.inner.store.pool())
            .await?;
            self.stored_checkpoint = cp;
        }
        Ok(())
    }
}

fn backoff(s: &GroupSettings, attempt: u32) -> Duration {
    let factor = 1u64 << attempt.saturating_sub(1).min(30);
    Duration::from_millis(
        s.backoff_initial_ms
            .saturating_mul(factor)
            .min(s.backoff_max_ms),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let s = GroupSettings {
            backoff_initial_ms: 100,
            backoff_max_ms: 1_000,
            ..GroupSettings::default()
        };
        let got: Vec<u64> = (1..=6).map(|a| backoff(&s, a).as_millis() as u64).collect();
        assert_eq!(got, [100, 200, 400, 800, 1_000, 1_000]);
    }
}
