//! Fan-out: one shared Kafka reader per topic broadcasts what it reads to every live
//! connection of that topic; a connection behind the live stream (a start or resume in
//! the past, a hole after a lag) is served by the pooled catch-up readers of
//! [`crate::kafka::Kafka::read`]. No connection owns a Kafka client.
//!
//! Correctness does not depend on where the shared reader is: a connection subscribes to
//! the broadcast *before* it reads the high watermarks it catches up to, so every record is
//! either below those watermarks (caught up) or broadcast after the subscription. Live
//! records below a connection's position are skipped (no duplicates); a live record above
//! it first triggers a catch-up of the hole (no loss).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{broadcast, mpsc, watch};
use tracing::{debug, warn};

use crate::StreamLimits;
use crate::kafka::{Kafka, Record};
use crate::position::{Filter, Positions, encode};
use crate::problem::{ApiError, Principal};

/// A shared reader stops after this long without subscribers.
const HUB_IDLE: Duration = Duration::from_secs(30);
/// Records per catch-up read.
const CATCH_UP_CHUNK: usize = 500;

/// The live readers, one per topic.
pub(crate) struct Hubs {
    bootstrap: String,
    capacity: usize,
    map: Arc<Mutex<HashMap<String, Arc<Hub>>>>,
}

pub(crate) struct Hub {
    tx: broadcast::Sender<Arc<Record>>,
    stop: Arc<AtomicBool>,
}

impl Hubs {
    pub(crate) fn new(bootstrap: &str, capacity: usize) -> Hubs {
        Hubs {
            bootstrap: bootstrap.to_owned(),
            capacity: capacity.max(16),
            map: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// A receiver of `topic`'s live records, starting the topic's reader if needed.
    pub(crate) fn subscribe(
        &self,
        kafka: &Kafka,
        topic: &str,
        partitions: &[i32],
    ) -> Result<broadcast::Receiver<Arc<Record>>, ApiError> {
        let mut map = self
            .map
            .lock()
            .map_err(|_| ApiError::Internal("hub map poisoned".into()))?;
        if let Some(hub) = map.get(topic) {
            return Ok(hub.tx.subscribe());
        }
        let (tx, rx) = broadcast::channel(self.capacity);
        let stop = Arc::new(AtomicBool::new(false));
        let consumer: BaseConsumer = crate::kafka::base_config(&self.bootstrap)
            .set("group.id", "weft-gateway-hub")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "latest")
            .set("fetch.wait.max.ms", "50")
            .create()
            .map_err(|e| ApiError::Kafka(format!("cannot create the live reader: {e}")))?;
        // Start at the high watermarks read *now*, not at `Offset::End`: librdkafka resolves
        // `End` lazily, when its first fetch is set up, which can be well after the caller
        // has read its own positions. A record produced in between was then neither caught
        // up (at or above the caller's watermark) nor broadcast (below the reader's start),
        // and it was only found when a later record exposed the hole — never, if none came.
        // Explicit offsets read before the caller resolves its positions make every record
        // at or above those positions part of the broadcast.
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            // Through the shared, already connected metadata client (a brand-new client
            // can stall on its first request).
            // `block_in_place`: in `weft serve` the broker answering this query runs on the
            // same runtime; a worker blocked here could starve it until the query times out.
            let (_, high) = tokio::task::block_in_place(|| kafka.watermarks_now(topic, *p))?;
            tpl.add_partition_offset(topic, *p, Offset::Offset(high))
                .map_err(|e| ApiError::Kafka(e.to_string()))?;
        }
        consumer
            .assign(&tpl)
            .map_err(|e| ApiError::Kafka(format!("live reader assign: {e}")))?;
        let hub = Arc::new(Hub {
            tx: tx.clone(),
            stop: Arc::clone(&stop),
        });
        map.insert(topic.to_owned(), Arc::clone(&hub));
        let map_ref = Arc::clone(&self.map);
        let name = topic.to_owned();
        std::thread::Builder::new()
            .name(format!("gw-hub-{topic}"))
            .spawn(move || live_reader(consumer, name, tx, stop, map_ref, hub))
            .map_err(|e| ApiError::Internal(format!("cannot start the live reader: {e}")))?;
        Ok(rx)
    }

    /// Stops every reader (shutdown).
    pub(crate) fn stop_all(&self) {
        if let Ok(map) = self.map.lock() {
            for hub in map.values() {
                hub.stop.store(true, Ordering::Relaxed);
            }
        }
    }
}

fn live_reader(
    consumer: BaseConsumer,
    topic: String,
    tx: broadcast::Sender<Arc<Record>>,
    stop: Arc<AtomicBool>,
    map: Arc<Mutex<HashMap<String, Arc<Hub>>>>,
    me: Arc<Hub>,
) {
    debug!(topic, "live reader started");
    let mut unused_since: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let _ = tx.send(Arc::new(Record::from_message(&m)));
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) | None => {}
            Some(Err(e)) => warn!(topic, error = %e, "live reader"),
        }
        if tx.receiver_count() == 0 {
            let since = *unused_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= HUB_IDLE {
                // Leave under the map's lock so no one subscribes to a reader that is gone.
                if let Ok(mut m) = map.lock()
                    && tx.receiver_count() == 0
                {
                    if m.get(&topic).is_some_and(|h| Arc::ptr_eq(h, &me)) {
                        m.remove(&topic);
                    }
                    break;
                }
            }
        } else {
            unused_since = None;
        }
    }
    debug!(topic, "live reader stopped");
}

/// Why a stream ended, sent to the client as its last message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Close {
    pub(crate) reason: &'static str,
    /// Reconnect after this long (elsewhere, during a drain).
    pub(crate) retry_ms: Option<u64>,
}

/// What a connection's engine hands its writer.
#[derive(Debug)]
pub(crate) enum Out {
    Event {
        record: Arc<Record>,
        id: String,
    },
    Gap {
        partition: i32,
        from: i64,
        to: i64,
        id: String,
    },
    Heartbeat,
}

/// Client → engine.
#[derive(Debug)]
pub(crate) enum Cmd {
    /// Continue right after this position set.
    Resume(Positions),
    /// The client showed life (a message, a pong, an ack).
    Activity,
}

/// One live connection: the writer side reads `rx`, then `close`.
pub(crate) struct Conn {
    pub(crate) rx: mpsc::Receiver<Out>,
    pub(crate) close: Arc<Mutex<Option<Close>>>,
    pub(crate) cmds: mpsc::Sender<Cmd>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Conn {
    /// The close reason once `rx` has ended.
    pub(crate) fn close_reason(&self) -> Close {
        self.close
            .lock()
            .ok()
            .and_then(|c| c.clone())
            .unwrap_or(Close {
                reason: "closed",
                retry_ms: None,
            })
    }
}

/// Everything an engine needs, cheap to clone.
#[derive(Clone)]
pub(crate) struct EngineCtx {
    pub(crate) kafka: Arc<Kafka>,
    pub(crate) limits: StreamLimits,
    pub(crate) shutdown: watch::Receiver<bool>,
}

/// Starts a connection's engine at `positions` (already resolved, one entry per followed
/// partition) with the live receiver taken *before* the positions were resolved.
pub(crate) fn open(
    ctx: EngineCtx,
    topic: String,
    live: broadcast::Receiver<Arc<Record>>,
    positions: Positions,
    filter: Filter,
    permit: ConnPermit,
) -> Conn {
    let (out_tx, out_rx) = mpsc::channel(ctx.limits.buffer_events.max(1));
    let (cmd_tx, cmd_rx) = mpsc::channel(16);
    let close_slot = Arc::new(Mutex::new(None));
    let slot = Arc::clone(&close_slot);
    let task = tokio::spawn(async move {
        let mut engine = Engine {
            ctx,
            topic,
            positions,
            filter,
            out: out_tx,
            last_activity: Instant::now(),
            caught_up: false,
        };
        let mut reason = engine.run(live, cmd_rx).await;
        if *engine.ctx.shutdown.borrow() && reason.reason != "shutdown" {
            // The cluster may stop first during a shutdown: say what really happens.
            reason = close("shutdown", Some(engine.ctx.limits.retry_ms));
        }
        debug!(
            topic = engine.topic,
            reason = reason.reason,
            "stream closed"
        );
        if let Ok(mut s) = slot.lock() {
            *s = Some(reason);
        }
        drop(permit);
        // Dropping `engine.out` ends the writer's stream after what is buffered.
    });
    Conn {
        rx: out_rx,
        close: close_slot,
        cmds: cmd_tx,
        task,
    }
}

struct Engine {
    ctx: EngineCtx,
    topic: String,
    positions: Positions,
    filter: Filter,
    out: mpsc::Sender<Out>,
    last_activity: Instant,
    /// Set by a catch-up that read something: the live receiver may have lagged meanwhile.
    caught_up: bool,
}

fn close(reason: &'static str, retry_ms: Option<u64>) -> Close {
    Close { reason, retry_ms }
}

impl Engine {
    async fn run(
        &mut self,
        mut live: broadcast::Receiver<Arc<Record>>,
        mut cmds: mpsc::Receiver<Cmd>,
    ) -> Close {
        let limits = self.ctx.limits.clone();
        let retry = Some(limits.retry_ms);
        if let Err(c) = Box::pin(self.catch_up_all()).await {
            return c;
        }
        let mut shutdown = self.ctx.shutdown.clone();
        let lifetime = tokio::time::sleep(limits.max_lifetime);
        tokio::pin!(lifetime);
        let mut heartbeat = tokio::time::interval(limits.heartbeat);
        heartbeat.tick().await;
        let mut caught_up = true;
        self.caught_up = false;
        loop {
            if *shutdown.borrow() {
                return close("shutdown", retry);
            }
            let idle_at = tokio::time::Instant::from_std(self.last_activity + limits.idle_timeout);
            tokio::select! {
                biased;
                _ = shutdown.changed() => return close("shutdown", retry),
                () = &mut lifetime => return close("max_lifetime", retry),
                cmd = cmds.recv() => match cmd {
                    Some(Cmd::Resume(p)) => {
                        self.last_activity = Instant::now();
                        self.resume(p);
                        live = live.resubscribe();
                        if let Err(c) = Box::pin(self.catch_up_all()).await {
                            return c;
                        }
                        caught_up = true;
                    }
                    Some(Cmd::Activity) => self.last_activity = Instant::now(),
                    None => {}
                },
                r = live.recv() => match r {
                    Ok(record) => {
                        if let Err(c) = Box::pin(self.on_live(record)).await {
                            return c;
                        }
                        caught_up = std::mem::take(&mut self.caught_up);
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) if caught_up => {
                        // Fell behind the live stream while catching up: catch up again.
                        live = live.resubscribe();
                        if let Err(c) = Box::pin(self.catch_up_all()).await {
                            return c;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        return close("slow_consumer", None);
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        return close("reader_stopped", retry);
                    }
                },
                _ = heartbeat.tick() => {
                    // A full buffer already means the client is behind; it is judged on
                    // the next event, not on a heartbeat.
                    let _ = self.out.try_send(Out::Heartbeat);
                }
                () = tokio::time::sleep_until(idle_at) => {
                    return close("idle_timeout", None);
                }
            }
        }
    }

    /// Keeps the followed partitions; those the id names take its offsets.
    fn resume(&mut self, p: Positions) {
        for (partition, offset) in self.positions.iter_mut() {
            if let Some(o) = p.get(partition) {
                *offset = *o;
            }
        }
    }

    async fn on_live(&mut self, record: Arc<Record>) -> Result<(), Close> {
        let Some(&next) = self.positions.get(&record.partition) else {
            return Ok(());
        };
        if record.offset < next {
            return Ok(());
        }
        if record.offset > next {
            self.catch_up(record.partition, Some(record.offset)).await?;
            if self.positions.get(&record.partition) != Some(&record.offset) {
                // The hole could not be read: delivering this record would skip it. The
                // client resumes from its last id instead.
                return Err(close("kafka_error", Some(self.ctx.limits.retry_ms)));
            }
        }
        self.deliver_live(record)
    }

    fn deliver_live(&mut self, record: Arc<Record>) -> Result<(), Close> {
        let Some(next) = self.positions.get_mut(&record.partition) else {
            return Ok(());
        };
        if record.offset < *next {
            return Ok(());
        }
        *next = record.offset + 1;
        if !self.filter.matches(&record) {
            return Ok(());
        }
        self.last_activity = Instant::now();
        let id = encode(&self.positions);
        match self.out.try_send(Out::Event { record, id }) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => Err(close("slow_consumer", None)),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(close("client_gone", None)),
        }
    }

    /// Sends during a catch-up: waits for room (a client reading a backlog sets its own
    /// pace) but not longer than the idle timeout.
    async fn send_waiting(&mut self, out: Out) -> Result<(), Close> {
        match tokio::time::timeout(self.ctx.limits.idle_timeout, self.out.send(out)).await {
            Ok(Ok(())) => {
                self.last_activity = Instant::now();
                Ok(())
            }
            Ok(Err(_)) => Err(close("client_gone", None)),
            Err(_) => Err(close("slow_consumer", None)),
        }
    }

    async fn catch_up_all(&mut self) -> Result<(), Close> {
        let partitions: Vec<i32> = self.positions.keys().copied().collect();
        for p in partitions {
            self.catch_up(p, None).await?;
        }
        Ok(())
    }

    /// Delivers partition `p` from its position up to `until` (exclusive), or up to the
    /// high watermark read now; a position below the low watermark becomes a `gap`.
    async fn catch_up(&mut self, p: i32, until: Option<i64>) -> Result<(), Close> {
        let retry = Some(self.ctx.limits.retry_ms);
        let kafka = Arc::clone(&self.ctx.kafka);
        let (low, high) = kafka.watermarks(&self.topic, p).await.map_err(|e| {
            warn!(topic = self.topic, partition = p, error = %e, "catch-up watermarks");
            close("kafka_error", retry)
        })?;
        let until = until.unwrap_or(high);
        let mut next = self.positions.get(&p).copied().unwrap_or(low);
        if next < low {
            self.positions.insert(p, low);
            let id = encode(&self.positions);
            self.send_waiting(Out::Gap {
                partition: p,
                from: next,
                to: low,
                id,
            })
            .await?;
            next = low;
        }
        let mut empty_reads = 0u64;
        while next < until {
            let read = kafka
                .read(
                    &self.topic,
                    p,
                    next,
                    Some(until),
                    CATCH_UP_CHUNK,
                    Duration::from_secs(5),
                )
                .await
                .map_err(|e| {
                    warn!(topic = self.topic, partition = p, error = %e, "catch-up read");
                    close("kafka_error", retry)
                })?;
            if read.records.is_empty() && read.next <= next {
                // Nothing below `until` although the watermark said so: a fetch that saw
                // an older end (a fresh reader can be slow to fetch), or a tail of offsets
                // without records (transaction markers). An empty read proves nothing, so
                // the position never moves because of one: offsets are only passed when a
                // fetch returns a later record (`Read::next`) or retention removed them
                // (the low watermark, reported as a `gap` above). After a few tries the
                // position stays where it is: a later live record retries the hole (and
                // closes the stream rather than skip it), a reconnect retries it too.
                empty_reads += 1;
                if empty_reads >= 5 {
                    debug!(
                        topic = self.topic,
                        partition = p,
                        next,
                        until,
                        "catch-up read nothing; position kept"
                    );
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100 * empty_reads)).await;
                continue;
            }
            empty_reads = 0;
            self.caught_up = true;
            for record in read.records {
                let offset = record.offset;
                self.positions.insert(p, offset + 1);
                if self.filter.matches(&record) {
                    let id = encode(&self.positions);
                    self.send_waiting(Out::Event {
                        record: Arc::new(record),
                        id,
                    })
                    .await?;
                }
            }
            next = read.next.max(next);
            self.positions.insert(p, next);
        }
        Ok(())
    }
}

/// Connection limits, global and per principal.
pub(crate) struct ConnLimits {
    max_global: usize,
    max_per_principal: usize,
    global: AtomicUsize,
    per: Mutex<HashMap<Principal, usize>>,
}

/// Held for the life of a connection.
pub(crate) struct ConnPermit {
    limits: Arc<ConnLimits>,
    principal: Principal,
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        self.limits.global.fetch_sub(1, Ordering::Relaxed);
        if let Ok(mut per) = self.limits.per.lock()
            && let Some(n) = per.get_mut(&self.principal)
        {
            *n -= 1;
            if *n == 0 {
                per.remove(&self.principal);
            }
        }
    }
}

impl ConnLimits {
    pub(crate) fn new(max_global: usize, max_per_principal: usize) -> ConnLimits {
        ConnLimits {
            max_global,
            max_per_principal,
            global: AtomicUsize::new(0),
            per: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn open(&self) -> usize {
        self.global.load(Ordering::Relaxed)
    }

    /// A permit, or which limit is reached.
    pub(crate) fn acquire(
        self: &Arc<Self>,
        principal: &Principal,
    ) -> Result<ConnPermit, &'static str> {
        let mut per = self.per.lock().map_err(|_| "limits poisoned")?;
        if self.global.load(Ordering::Relaxed) >= self.max_global {
            return Err("the gateway's connection limit is reached");
        }
        let n = per.entry(principal.clone()).or_insert(0);
        if *n >= self.max_per_principal {
            return Err("this principal's connection limit is reached");
        }
        *n += 1;
        self.global.fetch_add(1, Ordering::Relaxed);
        Ok(ConnPermit {
            limits: Arc::clone(self),
            principal: principal.clone(),
        })
    }
}
