//! The relay: one task per source, each a loop of *read → publish → wait for acks → mark or
//! delete in the source database*.
//!
//! 1. Read a batch: polling reads rows with `published_at IS NULL` in `seq` order (minus the
//!    aggregates stopped by a bad row); logical mode reads the slot's committed inserts in
//!    commit order and loads those rows by `seq` (rows already published are dropped).
//! 2. Route each row: topic from the template, key = `aggregateid`, headers (`weft-message-id`
//!    = row id, the row's `headers` object, configured columns), payload raw or checked JSON.
//!    A row that cannot be a record (illegal topic, not JSON, too large) is a *bad row*.
//! 3. Send everything through one idempotent producer (`acks=all`), then await each
//!    delivery. Rows after a failed row of the same aggregate are not acknowledged (they are
//!    sent again, after it, and consumers dedupe by message id).
//! 4. Only then mark (`published_at`) or delete the acknowledged rows, in one statement; in
//!    logical mode then advance the slot. A crash anywhere re-publishes at most the rows
//!    whose acknowledgement was not yet committed.
//!
//! Broker or database trouble: the source backs off (exponential with jitter, `backon`),
//! records the error in its status and tries again with a fresh producer; `weft serve` stays
//! up.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use sqlx::{AnyPool, Row as _};
use tokio::sync::watch;
use tracing::{error, info, warn};
use weft_resilience::dlq::{DeadLetter, Header as DlqHeader};
use weft_resilience::retry::{ErrorClass, RetryPolicy};

use crate::config::{BadRowPolicy, Cleanup, Mode, OutboxConfig, PayloadFormat, SourceConfig};
use crate::logical::Slot;
use crate::schema::{EncodeError, Encoder};
use crate::status::{Blocked, Outbox, SourceStatus};
use crate::table::{self, Dialect, Table};
use crate::{Error, Result, headers, now_ms};

/// Runs every configured source until `shutdown` resolves. `default_bootstrap` is the Kafka
/// cluster of sources that name none. Source failures never end this function: each source
/// backs off and retries, reporting in `outbox`.
pub async fn run(
    config: OutboxConfig,
    default_bootstrap: Option<String>,
    outbox: Outbox,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    config.validate()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for source in config.sources {
        let bootstrap = source
            .bootstrap
            .clone()
            .or_else(|| default_bootstrap.clone())
            .ok_or_else(|| {
                Error::Config(format!(
                    "source {:?}: no Kafka bootstrap servers (set bootstrap)",
                    source.name
                ))
            })?;
        outbox.insert(SourceStatus::new(
            &source.name,
            &source.database,
            source.mode,
        ));
        let runner = Runner::new(source, bootstrap, outbox.clone(), stop_rx.clone())?;
        tasks.spawn(runner.run());
    }
    shutdown.await;
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// A row read from the outbox table.
#[derive(Debug, Clone)]
pub(crate) struct OutRow {
    pub(crate) seq: i64,
    pub(crate) id: String,
    pub(crate) aggregatetype: String,
    pub(crate) aggregateid: String,
    pub(crate) event_type: String,
    pub(crate) payload: Option<Vec<u8>>,
    pub(crate) headers: Option<String>,
    pub(crate) created_ms: i64,
}

impl OutRow {
    fn aggregate(&self) -> (String, String) {
        (self.aggregatetype.clone(), self.aggregateid.clone())
    }
}

/// A row ready to send.
#[derive(Debug)]
pub(crate) struct Record {
    pub(crate) topic: String,
    pub(crate) key: String,
    pub(crate) payload: Option<Vec<u8>>,
    pub(crate) headers: Vec<(String, String)>,
}

/// Turns a row into a record, or says why it cannot be one (a bad row).
pub(crate) fn route(cfg: &SourceConfig, row: &OutRow) -> std::result::Result<Record, String> {
    let topic = cfg
        .topic
        .replace("${aggregatetype}", &row.aggregatetype)
        .replace("${type}", &row.event_type);
    if topic.is_empty()
        || topic.len() > 249
        || topic == "."
        || topic == ".."
        || !topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err(format!("topic {topic:?} is not a legal Kafka topic name"));
    }
    let payload = match (&row.payload, cfg.payload) {
        (None, _) => None,
        (Some(p), PayloadFormat::Raw) => Some(p.clone()),
        (Some(p), PayloadFormat::Json) => {
            let value: serde_json::Value =
                serde_json::from_slice(p).map_err(|e| format!("payload is not JSON: {e}"))?;
            Some(value.to_string().into_bytes())
        }
    };
    let mut hs = vec![(headers::MESSAGE_ID.to_owned(), row.id.clone())];
    if let Some(text) = row.headers.as_deref().filter(|t| !t.trim().is_empty()) {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("headers column is not JSON: {e}"))?;
        let serde_json::Value::Object(map) = value else {
            return Err("headers column is not a JSON object".to_owned());
        };
        for (k, v) in map {
            let v = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            hs.push((k, v));
        }
    }
    for (column, header) in &cfg.headers {
        let value = match column.as_str() {
            "aggregatetype" => row.aggregatetype.clone(),
            "aggregateid" => row.aggregateid.clone(),
            "type" => row.event_type.clone(),
            "created_at" => row.created_ms.to_string(),
            "seq" => row.seq.to_string(),
            _ => continue,
        };
        hs.push((header.clone(), value));
    }
    let size = row.aggregateid.len()
        + payload.as_ref().map_or(0, Vec::len)
        + hs.iter().map(|(k, v)| k.len() + v.len() + 8).sum::<usize>()
        + RECORD_OVERHEAD;
    if size > cfg.max_message_bytes {
        return Err(format!(
            "record of {size} bytes exceeds max_message_bytes {}",
            cfg.max_message_bytes
        ));
    }
    Ok(Record {
        topic,
        key: row.aggregateid.clone(),
        payload,
        headers: hs,
    })
}

/// A record's size without its payload, counted like `route` does.
fn record_size(record: &Record) -> usize {
    record.key.len()
        + record
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.len() + 8)
            .sum::<usize>()
        + RECORD_OVERHEAD
}

/// The longest pause between attempts while the broker or database is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Batch and record framing, counted generously so a record we accept is not refused.
const RECORD_OVERHEAD: usize = 128;

/// Errors the broker (or librdkafka) gives for this record only: retrying cannot help.
fn is_permanent(e: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::MessageSizeTooLarge
                | C::InvalidRecord
                | C::InvalidTopic
                | C::TopicAuthorizationFailed
                | C::PolicyViolation
                | C::InvalidMessage
                | C::InvalidMessageSize
                | C::InvalidRequiredAcks
                | C::UnsupportedForMessageFormat
        )
    )
}

struct Runner {
    cfg: SourceConfig,
    table: Table,
    bootstrap: String,
    outbox: Outbox,
    stop: watch::Receiver<bool>,
    db: Option<(AnyPool, Dialect)>,
    /// The connection holding this table's relay lock (PostgreSQL advisory lock, MySQL
    /// `GET_LOCK`): one relay publishes a table at a time, the others stand by.
    leader: Option<sqlx::AnyConnection>,
    slot: Option<Slot>,
    producer: Option<FutureProducer>,
    /// Aggregates stopped by a bad row (policy `stop`).
    blocked: BTreeMap<(String, String), Blocked>,
    last_recheck: Instant,
    last_stats: Option<Instant>,
    published_at_stats: u64,
    published_total: u64,
    last_purge: Option<Instant>,
    /// Logical mode: rows committed before the slot existed (or while the relay was away
    /// before the slot was made) were drained by polling since the last connect.
    drained: bool,
    /// `value_schema`: payloads encoded with a registry schema.
    encoder: Option<Encoder>,
}

/// What one round did.
enum Round {
    /// Rows were handled; go again at once.
    Busy,
    /// Nothing to do; wait `poll_interval`.
    Idle,
}

impl Runner {
    fn new(
        cfg: SourceConfig,
        bootstrap: String,
        outbox: Outbox,
        stop: watch::Receiver<bool>,
    ) -> Result<Runner> {
        let encoder =
            match &cfg.value_schema {
                Some(vs) => Some(Encoder::new(vs.clone()).map_err(|m| {
                    Error::Config(format!("source {:?}: value_schema: {m}", cfg.name))
                })?),
                None => None,
            };
        Ok(Runner {
            encoder,
            table: cfg.table()?,
            cfg,
            bootstrap,
            outbox,
            stop,
            db: None,
            leader: None,
            slot: None,
            producer: None,
            blocked: BTreeMap::new(),
            last_recheck: Instant::now(),
            last_stats: None,
            published_at_stats: 0,
            published_total: 0,
            last_purge: None,
            drained: false,
        })
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Sleeps `d` or until stop; true when stopping.
    async fn pause(&mut self, d: Duration) -> bool {
        let mut stop = self.stop.clone();
        tokio::select! {
            _ = stop.wait_for(|s| *s) => true,
            () = tokio::time::sleep(d) => self.stopping(),
        }
    }

    async fn run(mut self) {
        let name = self.cfg.name.clone();
        info!(source = %name, mode = ?self.cfg.mode, database = %crate::redact(&self.cfg.database), "outbox relay starting");
        // Full jitter under an exponential ceiling (100 ms … 5 s); the policy is bounded,
        // so an exhausted schedule starts over: a source retries for as long as it runs.
        let policy = RetryPolicy::default()
            .with_initial_delay(Duration::from_millis(100))
            .with_max_delay(MAX_BACKOFF)
            .with_max_attempts(weft_resilience::retry::MAX_ATTEMPTS_LIMIT)
            .with_max_elapsed(weft_resilience::retry::MAX_DURATION_LIMIT);
        let mut backoff = policy.schedule();
        while !self.stopping() {
            match self.round().await {
                Ok(Round::Busy) => {
                    backoff = policy.schedule();
                    self.outbox.update(&name, |s| s.state = "running");
                    // Figures stay current under sustained load too (at most once a second).
                    if let Err(e) = self.housekeeping().await {
                        self.failed(&e);
                    }
                }
                Ok(Round::Idle) => {
                    backoff = policy.schedule();
                    self.outbox.update(&name, |s| s.state = "running");
                    if let Err(e) = self.housekeeping().await {
                        self.failed(&e);
                    }
                    if self.pause(self.cfg.poll_interval()).await {
                        break;
                    }
                }
                Err(e) => {
                    let standby = matches!(e, Error::Standby(_));
                    if standby {
                        self.outbox.update(&name, |s| s.state = "standby");
                    } else {
                        self.failed(&e);
                    }
                    // A fresh producer and connection after any failure: librdkafka's
                    // idempotent state and a broken pool are not worth reasoning about.
                    self.producer = None;
                    self.release().await;
                    self.slot = None;
                    let delay = match backoff.next() {
                        Some(d) => d,
                        None => {
                            backoff = policy.schedule();
                            MAX_BACKOFF
                        }
                    };
                    if !standby {
                        self.outbox.update(&name, |s| s.state = "backing_off");
                    }
                    if self.pause(delay).await {
                        break;
                    }
                }
            }
        }
        if let Some(p) = self.producer.take() {
            let _ = tokio::task::spawn_blocking(move || {
                use rdkafka::producer::Producer;
                p.flush(Duration::from_secs(5))
            })
            .await;
        }
        self.release().await;
        info!(source = %name, "outbox relay stopped");
    }

    fn failed(&self, e: &Error) {
        let message = error_chain(e);
        warn!(source = %self.cfg.name, error = %message, "outbox relay round failed; backing off");
        metrics::counter!("weft_outbox_errors_total", "source" => self.cfg.name.clone())
            .increment(1);
        self.outbox.update(&self.cfg.name, |s| {
            s.last_error = Some(message);
            s.last_error_at_ms = Some(now_ms());
        });
    }

    async fn pool(&mut self) -> Result<(AnyPool, Dialect)> {
        if let Some(db) = &self.db {
            return Ok(db.clone());
        }
        let (pool, dialect) = table::connect(&self.cfg.database, 3).await?;
        match take_lead(&pool, dialect, &self.table).await {
            Ok(leader) => self.leader = leader,
            Err(e) => {
                pool.close().await;
                return Err(e);
            }
        }
        if self.leader.is_some() {
            info!(source = %self.cfg.name, table = self.table.name(), "relay lock taken; publishing");
        }
        table::apply(&pool, dialect, &self.table).await?;
        if self.cfg.mode == Mode::Logical {
            self.slot = Some(Slot::ensure(&pool, &self.cfg, &self.table).await?);
            self.drained = false;
        }
        self.db = Some((pool.clone(), dialect));
        Ok((pool, dialect))
    }

    /// Closes the lock connection (releasing the lock) and the pool.
    async fn release(&mut self) {
        if let Some(conn) = self.leader.take() {
            use sqlx::Connection as _;
            let _ = conn.close().await;
        }
        if let Some((pool, _)) = self.db.take() {
            pool.close().await;
        }
    }

    fn producer(&mut self) -> Result<FutureProducer> {
        if let Some(p) = &self.producer {
            return Ok(p.clone());
        }
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("max.in.flight.requests.per.connection", "5")
            .set("linger.ms", "5")
            .set(
                "message.timeout.ms",
                self.cfg.delivery_timeout_ms.to_string(),
            );
        for (k, v) in &self.cfg.kafka {
            c.set(k, v);
        }
        let p: FutureProducer = c.create()?;
        self.producer = Some(p.clone());
        Ok(p)
    }

    /// One read → publish → acknowledge round.
    async fn round(&mut self) -> Result<Round> {
        let (pool, dialect) = self.pool().await?;
        if self.last_recheck.elapsed() >= Duration::from_secs(self.cfg.blocked_recheck_secs)
            && !self.blocked.is_empty()
        {
            self.last_recheck = Instant::now();
            // Re-check stopped aggregates from their oldest unpublished row: a fixed or
            // deleted row lets the aggregate flow again.
            let keys: Vec<_> = std::mem::take(&mut self.blocked).into_keys().collect();
            for (at, aid) in keys {
                let rows = fetch(
                    &pool,
                    dialect,
                    &self.table,
                    &self.cfg,
                    &[],
                    Some((&at, &aid)),
                )
                .await?;
                self.publish(&pool, dialect, rows).await?;
            }
            self.publish_blocked_status();
        }
        match self.cfg.mode {
            Mode::Logical if !self.drained => {
                let exclude: Vec<_> = self.blocked.keys().cloned().collect();
                let rows = fetch(&pool, dialect, &self.table, &self.cfg, &exclude, None).await?;
                if rows.is_empty() {
                    self.drained = true;
                    info!(source = %self.cfg.name, "rows older than the slot drained; following the slot");
                    return Ok(Round::Busy);
                }
                self.publish(&pool, dialect, rows).await?;
                Ok(Round::Busy)
            }
            Mode::Polling => {
                let exclude: Vec<_> = self.blocked.keys().cloned().collect();
                let rows = fetch(&pool, dialect, &self.table, &self.cfg, &exclude, None).await?;
                if rows.is_empty() {
                    return Ok(Round::Idle);
                }
                self.publish(&pool, dialect, rows).await?;
                Ok(Round::Busy)
            }
            Mode::Logical => {
                let Some(slot) = self.slot.clone() else {
                    return Err(Error::Logical("slot not prepared".into()));
                };
                let batch = slot.peek(&pool, self.cfg.batch_size).await?;
                let seqs: Vec<i64> = batch.seqs.clone();
                let mut rows = load_by_seq(&pool, dialect, &self.table, &seqs).await?;
                // Commit order from the slot; rows of stopped aggregates wait in the table.
                rows.retain(|r| !self.blocked.contains_key(&r.aggregate()));
                let busy = !seqs.is_empty();
                self.publish(&pool, dialect, rows).await?;
                slot.advance(&pool, &batch.advance_to).await?;
                Ok(if busy { Round::Busy } else { Round::Idle })
            }
        }
    }

    /// Publishes `rows` (in order) and acknowledges what the broker acknowledged.
    async fn publish(&mut self, pool: &AnyPool, dialect: Dialect, rows: Vec<OutRow>) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let producer = self.producer()?;
        let mut halted: BTreeSet<(String, String)> = self.blocked.keys().cloned().collect();
        let mut inflight: Vec<(usize, bool, DeliveryFuture)> = Vec::with_capacity(rows.len());
        let mut transient: Option<Error> = None;
        for (i, row) in rows.iter().enumerate() {
            let agg = row.aggregate();
            if halted.contains(&agg) {
                continue;
            }
            let routed = match route(&self.cfg, row) {
                Ok(record) => match self.encode(record).await {
                    Ok(r) => r,
                    Err(e) => {
                        halted.insert(agg);
                        transient.get_or_insert(e);
                        continue;
                    }
                },
                Err(reason) => Err(reason),
            };
            match routed {
                Ok(record) => match send(&producer, &record) {
                    Ok(f) => inflight.push((i, false, f)),
                    Err(e) => {
                        halted.insert(agg);
                        transient.get_or_insert(Error::Kafka(e));
                    }
                },
                Err(reason) => match self.cfg.on_bad_row {
                    BadRowPolicy::Stop => {
                        self.block(row, &reason);
                        halted.insert(agg);
                    }
                    BadRowPolicy::Dlq => {
                        let record = self.dlq_record(row, &reason);
                        match send(&producer, &record) {
                            Ok(f) => inflight.push((i, true, f)),
                            Err(e) => {
                                halted.insert(agg);
                                transient.get_or_insert(Error::Kafka(e));
                            }
                        }
                    }
                },
            }
        }
        let mut acked: Vec<i64> = Vec::new();
        let mut dead_lettered = 0u64;
        let mut failed: BTreeSet<(String, String)> = BTreeSet::new();
        for (i, to_dlq, fut) in inflight {
            let row = &rows[i];
            let agg = row.aggregate();
            let result = match fut.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err((e, _))) => Err(e),
                Err(_) => Err(KafkaError::Canceled),
            };
            if failed.contains(&agg) {
                // A predecessor failed: this one is sent again after it.
                continue;
            }
            match result {
                Ok(()) => {
                    acked.push(row.seq);
                    if to_dlq {
                        dead_lettered += 1;
                    }
                }
                Err(e) if is_permanent(&e) && !to_dlq => {
                    let reason = format!("broker refused the record: {e}");
                    match self.cfg.on_bad_row {
                        BadRowPolicy::Stop => {
                            self.block(row, &reason);
                            failed.insert(agg);
                        }
                        BadRowPolicy::Dlq => {
                            let record = self.dlq_record(row, &reason);
                            let sent = match send(&producer, &record) {
                                Ok(f) => matches!(f.await, Ok(Ok(_))),
                                Err(_) => false,
                            };
                            if sent {
                                acked.push(row.seq);
                                dead_lettered += 1;
                            } else {
                                failed.insert(agg);
                                transient.get_or_insert(Error::Kafka(e));
                            }
                        }
                    }
                }
                Err(e) => {
                    failed.insert(agg);
                    transient.get_or_insert(Error::Kafka(e));
                }
            }
        }
        if !acked.is_empty() {
            acknowledge(pool, dialect, &self.table, self.cfg.cleanup, &acked).await?;
            let n = acked.len() as u64;
            self.published_total += n - dead_lettered;
            metrics::counter!("weft_outbox_rows_published_total", "source" => self.cfg.name.clone())
                .increment(n - dead_lettered);
            if dead_lettered > 0 {
                metrics::counter!("weft_outbox_rows_dead_lettered_total", "source" => self.cfg.name.clone())
                    .increment(dead_lettered);
            }
            let total = self.published_total;
            self.outbox.update(&self.cfg.name, |s| {
                s.published_total = total;
                s.dead_lettered_total += dead_lettered;
            });
        }
        self.publish_blocked_status();
        match transient {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// `value_schema`: the record's payload in the registry's wire format. `Ok(Err(reason))`
    /// is a bad row; `Err` a registry that cannot answer (back off).
    async fn encode(&mut self, mut record: Record) -> Result<std::result::Result<Record, String>> {
        let Some(encoder) = self.encoder.as_mut() else {
            return Ok(Ok(record));
        };
        let Some(payload) = record.payload.take() else {
            return Ok(Ok(record)); // a tombstone stays one
        };
        match encoder.encode(&record.topic, &payload).await {
            Ok(body) => {
                if body.len() > payload.len()
                    && record_size(&record) + body.len() > self.cfg.max_message_bytes
                {
                    return Ok(Err(format!(
                        "encoded record exceeds max_message_bytes {}",
                        self.cfg.max_message_bytes
                    )));
                }
                record.payload = Some(body);
                Ok(Ok(record))
            }
            Err(EncodeError::Bad(reason)) => Ok(Err(reason)),
            Err(EncodeError::Registry(m)) => Err(Error::Registry(m)),
        }
    }

    fn block(&mut self, row: &OutRow, reason: &str) {
        error!(
            source = %self.cfg.name,
            aggregatetype = %row.aggregatetype,
            aggregateid = %row.aggregateid,
            id = %row.id,
            reason,
            "outbox row cannot be published; its aggregate is stopped until the row is fixed or deleted"
        );
        self.blocked.insert(
            row.aggregate(),
            Blocked {
                aggregatetype: row.aggregatetype.clone(),
                aggregateid: row.aggregateid.clone(),
                id: row.id.clone(),
                reason: reason.to_owned(),
                since_ms: now_ms(),
            },
        );
        let name = self.cfg.name.clone();
        self.outbox.update(&name, |s| {
            s.last_error = Some(format!(
                "row {} of {}/{}: {reason}",
                row.id, row.aggregatetype, row.aggregateid
            ));
            s.last_error_at_ms = Some(now_ms());
        });
    }

    fn publish_blocked_status(&self) {
        let blocked: Vec<Blocked> = self.blocked.values().cloned().collect();
        metrics::gauge!("weft_outbox_blocked_aggregates", "source" => self.cfg.name.clone())
            .set(blocked.len() as f64);
        self.outbox.update(&self.cfg.name, |s| s.blocked = blocked);
    }

    /// The DLQ record of a bad row: same key, its payload (cut to fit), its own headers and
    /// the shared dead-letter envelope (`weft_resilience::dlq`, source `outbox`, original
    /// partition and offset -1: it was never on a topic).
    fn dlq_record(&self, row: &OutRow, reason: &str) -> Record {
        let original_topic = self
            .cfg
            .topic
            .replace("${aggregatetype}", &row.aggregatetype)
            .replace("${type}", &row.event_type);
        let mut original = vec![
            DlqHeader::new(headers::MESSAGE_ID, row.id.as_str()),
            DlqHeader::new(headers::EVENT_TYPE, row.event_type.as_str()),
            DlqHeader::new(headers::OUTBOX_SOURCE, self.cfg.name.as_str()),
        ];
        if let Some(Ok(serde_json::Value::Object(map))) = row
            .headers
            .as_deref()
            .map(serde_json::from_str::<serde_json::Value>)
        {
            for (k, v) in map {
                if let serde_json::Value::String(s) = v
                    && k.len() + s.len() < 4096
                {
                    original.push(DlqHeader::new(k, s));
                }
            }
        }
        let letter = DeadLetter::builder(original_topic, -1, -1)
            .timestamp(row.created_ms)
            .source("outbox")
            .error(ErrorClass::NonRetryable, reason)
            .build();
        let mut hs: Vec<(String, String)> = letter
            .to_headers(&original)
            .into_iter()
            .map(|h| {
                let v = h.value_str().unwrap_or_default().to_owned();
                (h.key, v)
            })
            .collect();
        let room = self.cfg.max_message_bytes.saturating_sub(
            hs.iter().map(|(k, v)| k.len() + v.len() + 8).sum::<usize>()
                + RECORD_OVERHEAD
                + 64
                + row.aggregateid.len(),
        );
        let mut payload = row.payload.clone();
        if let Some(p) = &mut payload
            && p.len() > room
        {
            p.truncate(room);
            hs.push((headers::DLQ_TRUNCATED.to_owned(), "true".to_owned()));
        }
        Record {
            topic: self.cfg.dlq_topic.clone(),
            key: row.aggregateid.clone(),
            payload,
            headers: hs,
        }
    }

    /// Counts (about once a second), purges (`mark`, about once a minute), slot lag.
    async fn housekeeping(&mut self) -> Result<()> {
        if self
            .last_stats
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return Ok(());
        }
        let Some((pool, dialect)) = self.db.clone() else {
            return Ok(());
        };
        let elapsed = self.last_stats.map(|t| t.elapsed());
        self.last_stats = Some(Instant::now());
        // The lock lives as long as its connection: a lost connection means another relay
        // may have taken over, so this one reconnects (and takes the lock or stands by).
        if let Some(conn) = &mut self.leader {
            sqlx::query("SELECT 1").execute(&mut *conn).await?;
        }
        self.stats(&pool, dialect, elapsed).await?;
        if self.cfg.cleanup == Cleanup::Mark
            && self
                .last_purge
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
        {
            self.last_purge = Some(Instant::now());
            let sql = format!(
                "DELETE FROM {} WHERE published_at IS NOT NULL AND {}",
                self.table.name(),
                Table::published_before(dialect, Duration::from_secs(self.cfg.retention_secs))
            );
            let purged = sqlx::query(&sql).execute(&pool).await?.rows_affected();
            if purged > 0 {
                info!(source = %self.cfg.name, purged, "outbox rows past retention purged");
            }
        }
        Ok(())
    }

    async fn stats(
        &mut self,
        pool: &AnyPool,
        dialect: Dialect,
        elapsed: Option<Duration>,
    ) -> Result<()> {
        let age = match dialect {
            Dialect::Postgres => {
                "CAST(EXTRACT(EPOCH FROM (now() - MIN(created_at))) * 1000 AS BIGINT)"
            }
            Dialect::MySql => {
                "CAST(TIMESTAMPDIFF(MICROSECOND, MIN(created_at), CURRENT_TIMESTAMP(6)) / 1000 AS SIGNED)"
            }
            Dialect::Sqlite => {
                "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) - MIN(created_at)"
            }
        };
        let sql = format!(
            "SELECT COUNT(*) AS n, {age} AS age_ms FROM {} WHERE published_at IS NULL",
            self.table.name()
        );
        let row = sqlx::query(&sql).fetch_one(pool).await?;
        let pending: i64 = row.try_get("n")?;
        let age_ms: Option<i64> = row.try_get("age_ms")?;
        let lag = match &self.slot {
            Some(slot) => Some(slot.lag_bytes(pool).await?),
            None => None,
        };
        let total = self.published_total;
        let rate = match elapsed {
            Some(e) if e.as_secs_f64() > 0.0 => {
                (total - self.published_at_stats) as f64 / e.as_secs_f64()
            }
            _ => 0.0,
        };
        self.published_at_stats = total;
        let name = self.cfg.name.clone();
        metrics::gauge!("weft_outbox_pending_rows", "source" => name.clone()).set(pending as f64);
        let age_s = age_ms.map(|ms| ms.max(0) as f64 / 1000.0);
        metrics::gauge!("weft_outbox_oldest_unpublished_age_seconds", "source" => name.clone())
            .set(age_s.unwrap_or(0.0));
        if let Some(lag) = lag {
            metrics::gauge!("weft_outbox_slot_lag_bytes", "source" => name.clone()).set(lag as f64);
        }
        self.outbox.update(&name, |s| {
            s.pending_rows = Some(pending);
            s.oldest_unpublished_age_seconds = age_s;
            s.publish_rate_per_second = rate;
            s.slot_lag_bytes = lag;
        });
        Ok(())
    }
}

fn send(
    producer: &FutureProducer,
    record: &Record,
) -> std::result::Result<DeliveryFuture, KafkaError> {
    let mut hs = OwnedHeaders::new_with_capacity(record.headers.len());
    for (k, v) in &record.headers {
        hs = hs.insert(Header {
            key: k,
            value: Some(v.as_bytes()),
        });
    }
    let mut r: FutureRecord<'_, str, [u8]> = FutureRecord::to(&record.topic)
        .key(record.key.as_str())
        .headers(hs);
    if let Some(p) = &record.payload {
        r = r.payload(p.as_slice());
    }
    producer.send_result(r).map_err(|(e, _)| e)
}

/// The columns every read selects, with `created_at` as epoch milliseconds.
fn columns(dialect: Dialect) -> String {
    let (id, headers) = match dialect {
        Dialect::Postgres => ("CAST(id AS TEXT)", "headers"),
        // sqlx's Any driver reads MySQL TEXT columns as blobs; CHAR casts make them text.
        Dialect::MySql => ("CAST(id AS CHAR)", "headers"),
        Dialect::Sqlite => ("id", "headers"),
    };
    format!(
        "seq, {id} AS id, aggregatetype, aggregateid, type, payload, {headers} AS headers, {} AS created_ms",
        Table::created_ms(dialect)
    )
}

fn decode(row: &sqlx::any::AnyRow) -> Result<OutRow> {
    Ok(OutRow {
        seq: row.try_get("seq")?,
        id: row.try_get("id")?,
        aggregatetype: row.try_get("aggregatetype")?,
        aggregateid: row.try_get("aggregateid")?,
        event_type: row.try_get("type")?,
        payload: row.try_get("payload")?,
        headers: text_or_blob(row, "headers")?,
        created_ms: row.try_get("created_ms")?,
    })
}

/// Takes the relay lock of `table` on a connection of its own (kept by the caller; closing it
/// releases the lock). `Error::Standby` when another relay holds it. SQLite has no such
/// lock: one process owns a SQLite source.
async fn take_lead(
    pool: &AnyPool,
    dialect: Dialect,
    table: &Table,
) -> Result<Option<sqlx::AnyConnection>> {
    let sql = match dialect {
        Dialect::Postgres => "SELECT pg_try_advisory_lock(hashtext($1)) AS ok",
        Dialect::MySql => "SELECT CAST(COALESCE(GET_LOCK(?, 0), 0) AS SIGNED) AS ok",
        Dialect::Sqlite => return Ok(None),
    };
    let mut name = format!("weft_outbox:{}", table.name());
    name.truncate(64);
    let mut conn = pool.acquire().await?.detach();
    let row = sqlx::query(sql).bind(&name).fetch_one(&mut conn).await?;
    let ok = match dialect {
        Dialect::Postgres => row.try_get::<bool, _>("ok")?,
        _ => row.try_get::<i64, _>("ok")? == 1,
    };
    if !ok {
        use sqlx::Connection as _;
        let _ = conn.close().await;
        return Err(Error::Standby(format!(
            "another relay holds the lock {name:?} of this outbox table"
        )));
    }
    Ok(Some(conn))
}

/// A text column that MySQL may report as a blob (LONGTEXT, even through `CAST(… AS CHAR)`).
fn text_or_blob(row: &sqlx::any::AnyRow, column: &str) -> Result<Option<String>> {
    match row.try_get::<Option<String>, _>(column) {
        Ok(v) => Ok(v),
        Err(_) => Ok(row
            .try_get::<Option<Vec<u8>>, _>(column)?
            .map(|b| String::from_utf8_lossy(&b).into_owned())),
    }
}

/// Unpublished rows in `seq` order: all but the `exclude`d aggregates, or only `only`.
pub(crate) async fn fetch(
    pool: &AnyPool,
    dialect: Dialect,
    table: &Table,
    cfg: &SourceConfig,
    exclude: &[(String, String)],
    only: Option<(&str, &str)>,
) -> Result<Vec<OutRow>> {
    let mut sql = format!(
        "SELECT {} FROM {} WHERE published_at IS NULL",
        columns(dialect),
        table.name()
    );
    let mut n = 0;
    let mut next = || {
        n += 1;
        dialect.param(n)
    };
    let mut binds: Vec<&str> = Vec::new();
    if let Some((at, aid)) = only {
        sql += &format!(
            " AND aggregatetype = {} AND aggregateid = {}",
            next(),
            next()
        );
        binds.extend([at, aid]);
    }
    for (at, aid) in exclude {
        sql += &format!(
            " AND NOT (aggregatetype = {} AND aggregateid = {})",
            next(),
            next()
        );
        binds.extend([at.as_str(), aid.as_str()]);
    }
    sql += &format!(" ORDER BY seq LIMIT {}", cfg.batch_size);
    let mut q = sqlx::query(&sql);
    for b in binds {
        q = q.bind(b);
    }
    let rows = q.fetch_all(pool).await?;
    rows.iter().map(decode).collect()
}

/// The still-unpublished rows among `seqs`, in the order of `seqs`.
async fn load_by_seq(
    pool: &AnyPool,
    dialect: Dialect,
    table: &Table,
    seqs: &[i64],
) -> Result<Vec<OutRow>> {
    if seqs.is_empty() {
        return Ok(Vec::new());
    }
    let list = seqs
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let sql = format!(
        "SELECT {} FROM {} WHERE published_at IS NULL AND seq IN ({list})",
        columns(dialect),
        table.name()
    );
    let rows = sqlx::query(&sql).fetch_all(pool).await?;
    let mut by_seq: BTreeMap<i64, OutRow> = BTreeMap::new();
    for r in &rows {
        let row = decode(r)?;
        by_seq.insert(row.seq, row);
    }
    Ok(seqs.iter().filter_map(|s| by_seq.remove(s)).collect())
}

/// Marks or deletes the acknowledged rows, in one statement (one transaction).
async fn acknowledge(
    pool: &AnyPool,
    dialect: Dialect,
    table: &Table,
    cleanup: Cleanup,
    seqs: &[i64],
) -> Result<()> {
    // Integers only, so inlining them is safe and keeps the statement one round trip.
    let list = seqs
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let sql = match cleanup {
        Cleanup::Delete => format!("DELETE FROM {} WHERE seq IN ({list})", table.name()),
        Cleanup::Mark => format!(
            "UPDATE {} SET published_at = {} WHERE seq IN ({list})",
            table.name(),
            Table::now(dialect)
        ),
    };
    sqlx::query(&sql).execute(pool).await?;
    Ok(())
}

/// The error and its causes, `: `-separated.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(payload: &[u8], headers: Option<&str>) -> OutRow {
        OutRow {
            seq: 7,
            id: "0190-id".into(),
            aggregatetype: "order".into(),
            aggregateid: "42".into(),
            event_type: "OrderPaid".into(),
            payload: Some(payload.to_vec()),
            headers: headers.map(str::to_owned),
            created_ms: 1000,
        }
    }

    #[test]
    fn routing() {
        let mut cfg = SourceConfig::new("s", "sqlite:x");
        cfg.headers.insert("seq".into(), "x-seq".into());
        let r = route(
            &cfg,
            &row(b"{ \"a\": 1 }", Some(r#"{"tenant":"acme","n":3}"#)),
        )
        .expect("routes");
        assert_eq!(r.topic, "outbox.event.order");
        assert_eq!(r.key, "42");
        assert_eq!(r.payload.as_deref(), Some(&b"{ \"a\": 1 }"[..]));
        let h: BTreeMap<_, _> = r.headers.into_iter().collect();
        assert_eq!(h["weft-message-id"], "0190-id");
        assert_eq!(h["tenant"], "acme");
        assert_eq!(h["n"], "3");
        assert_eq!(h["weft-event-type"], "OrderPaid");
        assert_eq!(h["x-seq"], "7");

        cfg.payload = PayloadFormat::Json;
        cfg.topic = "events.${type}".into();
        let r = route(&cfg, &row(b"{ \"a\": 1 }", None)).expect("routes");
        assert_eq!(r.payload.as_deref(), Some(&br#"{"a":1}"#[..]));
        assert_eq!(r.topic, "events.OrderPaid");
    }

    #[test]
    fn bad_rows() {
        let mut cfg = SourceConfig::new("s", "sqlite:x");
        cfg.max_message_bytes = 300;
        let cases: Vec<(SourceConfig, OutRow, &str)> = vec![
            (
                cfg.clone(),
                row(&[b'x'; 400], None),
                "exceeds max_message_bytes",
            ),
            (cfg.clone(), row(b"{}", Some("[1]")), "not a JSON object"),
            (
                cfg.clone(),
                row(b"{}", Some("{")),
                "headers column is not JSON",
            ),
            (
                SourceConfig {
                    payload: PayloadFormat::Json,
                    ..cfg.clone()
                },
                row(b"not json", None),
                "payload is not JSON",
            ),
            (
                SourceConfig {
                    topic: "t/${aggregatetype}".into(),
                    ..cfg.clone()
                },
                row(b"{}", None),
                "not a legal Kafka topic",
            ),
        ];
        for (cfg, row, fragment) in cases {
            let err = route(&cfg, &row).expect_err(fragment);
            assert!(err.contains(fragment), "{err}");
        }
    }
}
