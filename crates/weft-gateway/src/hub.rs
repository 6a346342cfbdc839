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

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{broadcast, mpsc, watch};

use crate::outbox::{OutRx, OutTx, Refused, outbox};
use tracing::{debug, warn};

use crate::StreamLimits;
use crate::kafka::{Kafka, Record};
use crate::position::{Filter, Positions, encode};
use crate::problem::{ApiError, Principal};

/// A shared reader stops after this long without subscribers.
const HUB_IDLE: Duration = Duration::from_secs(30);
/// Records per catch-up read.
const CATCH_UP_CHUNK: usize = 500;
/// Most records in one broadcast batch.
const LIVE_BATCH: usize = 256;
/// Most broadcast batches a connection handles in one pass of its loop.
const LIVE_DRAIN: usize = 16;

/// What the live reader broadcasts: the records one poll found ready (those of one fetch,
/// usually), so every connection wakes once per batch rather than once per record.
pub(crate) type LiveBatch = Arc<Vec<Arc<Record>>>;

/// The live readers, one per topic.
pub(crate) struct Hubs {
    bootstrap: String,
    capacity: usize,
    /// How long a reader gathers records after the first before broadcasting them.
    gather: Duration,
    map: HubMap,
}

pub(crate) struct Hub {
    tx: broadcast::Sender<LiveBatch>,
    stop: Arc<AtomicBool>,
    /// `None` while the reader reads its start watermarks, then whether it started.
    ready: watch::Receiver<Option<Result<(), String>>>,
}

impl Hubs {
    pub(crate) fn new(bootstrap: &str, capacity: usize, gather: Duration) -> Hubs {
        Hubs {
            bootstrap: bootstrap.to_owned(),
            capacity: capacity.max(16),
            gather,
            map: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// A receiver of `topic`'s live records, starting the topic's reader if needed. Returns
    /// once the reader's start offsets are fixed, so that positions the caller resolves
    /// afterwards are all either below them (caught up) or broadcast to this receiver.
    ///
    /// Nothing here blocks the runtime: the start watermarks are queried on the reader's
    /// own thread (in `weft serve` the broker answering that query shares this runtime, so
    /// a worker blocked on it could starve the very request it waits for).
    pub(crate) async fn subscribe(
        &self,
        kafka: &Arc<Kafka>,
        topic: &str,
        partitions: &[i32],
    ) -> Result<broadcast::Receiver<LiveBatch>, ApiError> {
        let (rx, mut ready) = {
            let mut map = self
                .map
                .lock()
                .map_err(|_| ApiError::Internal("hub map poisoned".into()))?;
            match map.get(topic) {
                Some(hub) => (hub.tx.subscribe(), hub.ready.clone()),
                None => {
                    let (tx, rx) = broadcast::channel(self.capacity);
                    let (ready_tx, ready) = watch::channel(None);
                    let hub = Arc::new(Hub {
                        tx: tx.clone(),
                        stop: Arc::new(AtomicBool::new(false)),
                        ready: ready.clone(),
                    });
                    map.insert(topic.to_owned(), Arc::clone(&hub));
                    let start = Start {
                        kafka: Arc::clone(kafka),
                        bootstrap: self.bootstrap.clone(),
                        topic: topic.to_owned(),
                        partitions: partitions.to_vec(),
                        gather: self.gather,
                        tx,
                        ready: ready_tx,
                        map: Arc::clone(&self.map),
                        me: hub,
                    };
                    std::thread::Builder::new()
                        .name(format!("gw-hub-{topic}"))
                        .spawn(move || start.run())
                        .map_err(|e| {
                            map.remove(topic);
                            ApiError::Internal(format!("cannot start the live reader: {e}"))
                        })?;
                    (rx, ready)
                }
            }
        };
        let started = ready
            .wait_for(Option::is_some)
            .await
            .map_err(|_| ApiError::Kafka("the live reader stopped while starting".into()))?
            .clone();
        match started {
            Some(Ok(())) => Ok(rx),
            Some(Err(e)) => Err(ApiError::Kafka(e)),
            None => Err(ApiError::Internal("live reader state".into())),
        }
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

/// What a new live reader's thread needs.
struct Start {
    kafka: Arc<Kafka>,
    bootstrap: String,
    topic: String,
    partitions: Vec<i32>,
    gather: Duration,
    tx: broadcast::Sender<LiveBatch>,
    ready: watch::Sender<Option<Result<(), String>>>,
    map: HubMap,
    me: Arc<Hub>,
}

type HubMap = Arc<Mutex<HashMap<String, Arc<Hub>>>>;

impl Start {
    /// On the reader's thread: fixes the start offsets, reports it, then reads.
    fn run(self) {
        match self.consumer() {
            Ok(consumer) => {
                let _ = self.ready.send(Some(Ok(())));
                live_reader(
                    consumer,
                    self.topic,
                    self.gather,
                    self.tx,
                    self.map,
                    self.me,
                );
            }
            Err(e) => {
                warn!(topic = self.topic, error = %e, "live reader did not start");
                // Gone from the map before anyone hears of it, so the next subscriber
                // starts a new reader instead of reusing this failed one.
                if let Ok(mut m) = self.map.lock()
                    && m.get(&self.topic).is_some_and(|h| Arc::ptr_eq(h, &self.me))
                {
                    m.remove(&self.topic);
                }
                let _ = self.ready.send(Some(Err(e.to_string())));
            }
        }
    }

    fn consumer(&self) -> Result<BaseConsumer, ApiError> {
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
        for p in &self.partitions {
            // Through the shared, already connected metadata client, with its fallback to
            // a fresh client (`Kafka::watermarks_now`): a brand-new client can stall on
            // its first request, the shared one on a just-created topic.
            let (_, high) = self.kafka.watermarks_now(&self.topic, *p)?;
            tpl.add_partition_offset(&self.topic, *p, Offset::Offset(high))
                .map_err(|e| ApiError::Kafka(e.to_string()))?;
        }
        consumer
            .assign(&tpl)
            .map_err(|e| ApiError::Kafka(format!("live reader assign: {e}")))?;
        Ok(consumer)
    }
}

fn live_reader(
    consumer: BaseConsumer,
    topic: String,
    gather: Duration,
    tx: broadcast::Sender<LiveBatch>,
    map: HubMap,
    me: Arc<Hub>,
) {
    debug!(topic, "live reader started");
    let stop = Arc::clone(&me.stop);
    let mut unused_since: Option<Instant> = None;
    let mut last_sent: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                // Every connection of the topic wakes once per batch: under a steady
                // stream (the last batch went out less than four intervals ago) what
                // arrives within `gather` of this record joins it; after a quiet spell a
                // record goes at once, with whatever else is ready. (Gathering from the
                // record, not from the last batch: a reader that is late because the
                // cores are busy still makes full batches instead of many small ones;
                // "less than one interval ago" was tried and made small batches under
                // load: p50 0.17 s instead of 0.03 s at 1,000 clients × 5,000 events/s.)
                let mut batch = vec![Arc::new(Record::from_message(&m))];
                let steady = last_sent.is_some_and(|t| t.elapsed() < gather * 4);
                let until = Instant::now() + if steady { gather } else { Duration::ZERO };
                while batch.len() < LIVE_BATCH {
                    match consumer.poll(until.saturating_duration_since(Instant::now())) {
                        Some(Ok(m)) => batch.push(Arc::new(Record::from_message(&m))),
                        Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) | None => break,
                        Some(Err(e)) => {
                            warn!(topic, error = %e, "live reader");
                            break;
                        }
                    }
                }
                let _ = tx.send(Arc::new(batch));
                last_sent = Some(Instant::now());
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
    /// Boxed: rare, and every connection's buffer is sized by the largest variant.
    Gap(Box<Gap>),
    Heartbeat,
}

/// Offsets `from..to` of `partition` were not delivered: deleted by retention, or skipped
/// because the client was too slow (`reason`).
#[derive(Debug)]
pub(crate) struct Gap {
    pub(crate) partition: i32,
    pub(crate) from: i64,
    pub(crate) to: i64,
    pub(crate) id: String,
    pub(crate) reason: &'static str,
}

/// Client → engine.
#[derive(Debug)]
pub(crate) enum Cmd {
    /// Continue right after this position set.
    Resume(Positions),
    /// Everything up to this position set is processed (WebSocket acknowledgements).
    Ack(Positions),
    /// The client showed life (a message, a pong).
    Activity,
}

/// One live connection: the writer side reads `rx`, then `close`. Dropping it ends the
/// engine, which notices the closed channel and finishes cleanly (a last commit of
/// acknowledged positions included) rather than being aborted.
pub(crate) struct Conn {
    pub(crate) rx: OutRx,
    pub(crate) close: Arc<Mutex<Option<Close>>>,
    /// Client → engine (WebSocket); `None` for SSE, which has no way back.
    pub(crate) cmds: Option<mpsc::Sender<Cmd>>,
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

/// Per-connection options beyond the start position and the filter.
#[derive(Debug, Default)]
pub(crate) struct ConnOptions {
    /// Client acknowledgements (WebSocket): at most this many events delivered and not
    /// acknowledged; with a group, acknowledged positions are committed to it.
    pub(crate) acks: Option<AckOptions>,
    /// The caller's credentials expire then: the stream closes with `auth_expired`.
    pub(crate) expires_at: Option<std::time::SystemTime>,
    /// The client sends commands (WebSocket: resume, ack); SSE has no way back.
    pub(crate) commands: bool,
    /// SSE in this format: outputs are rendered into the wire format as they come
    /// (`None`: the writer takes the outputs themselves).
    pub(crate) sse: Option<crate::position::Format>,
}

#[derive(Debug)]
pub(crate) struct AckOptions {
    pub(crate) window: usize,
    pub(crate) group: Option<String>,
}

/// Acknowledgement state of a connection that asked for it.
struct Acks {
    window: usize,
    group: Option<String>,
    /// (partition, offset) of each delivered, unacknowledged event, in delivery order.
    unacked: VecDeque<(i32, i64)>,
    /// The commit position: the next offset per partition after what was acknowledged.
    acked: Positions,
    /// `acked` changed since the last commit to the group.
    dirty: bool,
    /// Live records were left unread because the window was full: a catch-up reads them
    /// once acknowledgements make room.
    held_back: bool,
}

impl Acks {
    fn full(&self) -> bool {
        self.unacked.len() >= self.window
    }

    /// Applies an acknowledgement of everything before `upto` (only what was delivered
    /// counts: an ack never moves the commit position past the connection's own).
    fn ack(&mut self, upto: &Positions, delivered: &Positions) {
        for (p, o) in upto {
            let (Some(&mine), Some(acked)) = (delivered.get(p), self.acked.get_mut(p)) else {
                continue;
            };
            let o = (*o).min(mine);
            if o > *acked {
                *acked = o;
                self.dirty = true;
            }
        }
        // Ids only grow in delivery order, so the acknowledged events are a prefix.
        while let Some(&(p, o)) = self.unacked.front() {
            if self.acked.get(&p).is_some_and(|a| *a > o) {
                self.unacked.pop_front();
            } else {
                break;
            }
        }
    }
}

/// Starts a connection's engine at `positions` (already resolved, one entry per followed
/// partition) with the live receiver taken *before* the positions were resolved.
pub(crate) fn open(
    ctx: EngineCtx,
    topic: String,
    live: broadcast::Receiver<LiveBatch>,
    positions: Positions,
    filter: Filter,
    permit: ConnPermit,
    options: ConnOptions,
) -> Conn {
    let (out_tx, out_rx) = outbox(
        ctx.limits.buffer_events,
        options.sse.map(|f| (topic.clone(), f)),
    );
    let (cmd_tx, cmd_rx) = if options.commands {
        let (tx, rx) = mpsc::channel(16);
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let close_slot = Arc::new(Mutex::new(None));
    let slot = Arc::clone(&close_slot);
    let acks = options.acks.map(|a| Acks {
        window: a.window.max(1),
        group: a.group,
        unacked: VecDeque::new(),
        acked: positions.clone(),
        dirty: false,
        held_back: false,
    });
    let expires_at = options.expires_at.map(|at| {
        let left = at
            .duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO);
        tokio::time::Instant::now() + left
    });
    tokio::spawn(async move {
        let mut engine = Engine {
            ctx,
            topic,
            positions,
            filter,
            out: out_tx,
            cmds: cmd_rx,
            last_activity: Instant::now(),
            caught_up: false,
            skipped: BTreeMap::new(),
            acks,
            expires_at,
            sent: false,
        };
        let mut reason = engine.run(live).await;
        if *engine.ctx.shutdown.borrow() && reason.reason != "shutdown" {
            // The cluster may stop first during a shutdown: say what really happens.
            reason = close("shutdown", Some(engine.ctx.limits.retry_ms));
        }
        engine.commit().await;
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
    }
}

struct Engine {
    ctx: EngineCtx,
    topic: String,
    positions: Positions,
    filter: Filter,
    out: OutTx,
    cmds: Option<mpsc::Receiver<Cmd>>,
    last_activity: Instant,
    /// Set by a catch-up that read something: the live receiver may have lagged meanwhile.
    caught_up: bool,
    /// Slow-consumer "gap and skip ahead": per partition, the offsets `from..to` skipped
    /// while the client's buffer was full, not yet reported. Non-empty = skipping.
    skipped: BTreeMap<i32, (i64, i64)>,
    acks: Option<Acks>,
    expires_at: Option<tokio::time::Instant>,
    /// A live event was handed to the writer since the activity time was last taken.
    sent: bool,
}

fn close(reason: &'static str, retry_ms: Option<u64>) -> Close {
    Close { reason, retry_ms }
}

/// How often acknowledged positions are committed to the client's group.
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);

impl Engine {
    async fn run(&mut self, mut live: broadcast::Receiver<LiveBatch>) -> Close {
        let limits = self.ctx.limits.clone();
        let retry = Some(limits.retry_ms);
        if let Err(c) = Box::pin(self.catch_up_all()).await {
            return c;
        }
        let mut shutdown = self.ctx.shutdown.clone();
        // Any change (or the sender gone) means shutdown, as the loop's check below.
        let shutting_down = shutdown.changed();
        tokio::pin!(shutting_down);
        let lifetime = tokio::time::sleep(limits.max_lifetime);
        tokio::pin!(lifetime);
        // The timers, the shutdown and the client-gone signals live across iterations: made
        // anew in every iteration, each delivered event would register and cancel them
        // again, for every connection the event is fanned out to.
        let expiry = sleep_until_opt(self.expires_at);
        tokio::pin!(expiry);
        let idle = tokio::time::sleep_until(tokio::time::Instant::from_std(
            self.last_activity + limits.idle_timeout,
        ));
        tokio::pin!(idle);
        let out = self.out.clone();
        let client_gone = out.closed();
        tokio::pin!(client_gone);
        let mut heartbeat = tokio::time::interval(limits.heartbeat);
        heartbeat.tick().await;
        let committing = self.acks.as_ref().is_some_and(|a| a.group.is_some());
        // Only connections that commit pay for the timer.
        let mut commits = committing.then(|| tokio::time::interval(COMMIT_INTERVAL));
        let mut caught_up = true;
        self.caught_up = false;
        loop {
            if *self.ctx.shutdown.borrow() {
                return close("shutdown", retry);
            }
            // While skipping, wake up as soon as the client has drained its buffer enough
            // to be told what it missed (not only on the next live record).
            let room_for_gaps = (!self.skipped.is_empty()).then_some(&out);
            let room_needed = self.gap_room();
            tokio::select! {
                biased;
                _ = &mut shutting_down => return close("shutdown", retry),
                () = &mut client_gone => return close("client_gone", None),
                () = &mut lifetime => return close("max_lifetime", retry),
                () = &mut expiry => return close("auth_expired", None),
                cmd = recv_opt(&mut self.cmds) => match cmd {
                    Some(Cmd::Resume(p)) => {
                        self.last_activity = Instant::now();
                        self.resume(p);
                        live = live.resubscribe();
                        if let Err(c) = Box::pin(self.catch_up_all()).await {
                            return c;
                        }
                        caught_up = true;
                    }
                    Some(Cmd::Ack(p)) => {
                        self.last_activity = Instant::now();
                        if let Some(acks) = self.acks.as_mut() {
                            acks.ack(&p, &self.positions);
                            if acks.held_back && !acks.full() {
                                acks.held_back = false;
                                // What was left unread meanwhile comes from the log.
                                if let Err(c) = Box::pin(self.catch_up_all()).await {
                                    return c;
                                }
                                caught_up = true;
                            }
                        }
                    }
                    Some(Cmd::Activity) => self.last_activity = Instant::now(),
                    None => {}
                },
                r = live.recv() => {
                    let mut r = r;
                    // Batches that are already there are handled in this wake-up (a few at
                    // most, so the other branches are still looked at): a connection that
                    // fell behind catches up with one pass of its loop per burst.
                    for _ in 0..LIVE_DRAIN {
                        match r {
                            Ok(batch) => {
                                if let Err(c) = self.on_batch(&batch).await {
                                    return c;
                                }
                                caught_up = std::mem::take(&mut self.caught_up);
                            }
                            Err(broadcast::error::RecvError::Lagged(_)) if caught_up => {
                                // Fell behind the live stream while catching up: catch up
                                // again.
                                live = live.resubscribe();
                                if let Err(c) = Box::pin(self.catch_up_all()).await {
                                    return c;
                                }
                            }
                            Err(broadcast::error::RecvError::Lagged(_)) if self.skips() => {
                                live = live.resubscribe();
                                if let Err(c) = Box::pin(self.skip_to_live_end()).await {
                                    return c;
                                }
                            }
                            Err(broadcast::error::RecvError::Lagged(_)) => {
                                return close("slow_consumer", None);
                            }
                            Err(broadcast::error::RecvError::Closed) => {
                                return close("reader_stopped", retry);
                            }
                        }
                        r = match live.try_recv() {
                            Ok(batch) => Ok(batch),
                            Err(broadcast::error::TryRecvError::Empty) => break,
                            Err(broadcast::error::TryRecvError::Lagged(n)) => {
                                Err(broadcast::error::RecvError::Lagged(n))
                            }
                            Err(broadcast::error::TryRecvError::Closed) => {
                                Err(broadcast::error::RecvError::Closed)
                            }
                        };
                    }
                }
                _ = wait_room(room_for_gaps, room_needed) => {
                    if self.out.is_closed() {
                        return close("client_gone", None);
                    }
                    self.flush_gaps();
                }
                _ = heartbeat.tick() => {
                    // A full buffer already means the client is behind; it is judged on
                    // the next event, not on a heartbeat.
                    let _ = self.out.try_send(Out::Heartbeat);
                }
                () = tick_opt(&mut commits) => self.commit().await,
                () = &mut idle => {
                    // Set for the activity seen when it was armed: re-armed if there was
                    // any since.
                    let due = tokio::time::Instant::from_std(
                        self.last_activity + limits.idle_timeout,
                    );
                    if due <= tokio::time::Instant::now() {
                        return close("idle_timeout", None);
                    }
                    idle.as_mut().reset(due);
                }
            }
        }
    }

    /// "Gap and skip ahead" applies: configured, and the client did not ask for
    /// acknowledgements (at-least-once never skips).
    fn skips(&self) -> bool {
        self.ctx.limits.slow_consumer_gap && self.acks.is_none()
    }

    /// Free buffer slots before delivery resumes after a skip: half the buffer, so a
    /// client that is still slow is not flipped back and forth on every record.
    fn gap_room(&self) -> usize {
        let cap = self.out.max_capacity();
        (cap / 2).max(1).min(cap)
    }

    /// Records `from..to` of `p` as skipped; the position moves to `to`.
    fn skip_over(&mut self, p: i32, from: i64, to: i64) {
        let e = self.skipped.entry(p).or_insert((from, to));
        e.1 = e.1.max(to);
        if let Some(next) = self.positions.get_mut(&p) {
            *next = (*next).max(to);
        }
    }

    /// Reports skipped ranges as `gap` events once the client has room. `true` when
    /// nothing is left to report (delivery continues).
    fn flush_gaps(&mut self) -> bool {
        if self.skipped.is_empty() {
            return true;
        }
        if self.out.capacity() < self.gap_room() {
            return false;
        }
        while let Some((&p, &(from, to))) = self.skipped.iter().next() {
            // The id resumes after this gap only: partitions whose gap is not reported
            // yet stay at their `from`, so a reconnect in between still learns of them.
            let mut at = self.positions.clone();
            for (q, (qfrom, _)) in &self.skipped {
                if *q != p {
                    at.insert(*q, *qfrom);
                }
            }
            let gap = Out::Gap(Box::new(Gap {
                partition: p,
                from,
                to,
                id: encode(&at),
                reason: "slow_consumer",
            }));
            if self.out.try_send(gap).is_err() {
                return false;
            }
            self.skipped.remove(&p);
        }
        true
    }

    /// After the engine itself fell behind the fan-out (skip mode): every partition jumps
    /// to its high watermark read now; what lies between is reported as skipped. Records
    /// at or above those watermarks are broadcast after the resubscription (see the module
    /// docs), records below are dropped as already passed.
    async fn skip_to_live_end(&mut self) -> Result<(), Close> {
        let partitions: Vec<i32> = self.positions.keys().copied().collect();
        for p in partitions {
            let (_, high) = self
                .ctx
                .kafka
                .watermarks(&self.topic, p)
                .await
                .map_err(|e| {
                    warn!(topic = self.topic, partition = p, error = %e, "skip watermarks");
                    close("kafka_error", Some(self.ctx.limits.retry_ms))
                })?;
            let next = self.positions.get(&p).copied().unwrap_or(high);
            if high > next {
                self.skip_over(p, next, high);
            }
        }
        self.flush_gaps();
        Ok(())
    }

    /// Commits the acknowledged positions to the client's group, if any changed.
    async fn commit(&mut self) {
        let Some(acks) = self.acks.as_mut() else {
            return;
        };
        let Some(group) = acks.group.clone() else {
            return;
        };
        if !acks.dirty {
            return;
        }
        acks.dirty = false;
        let acked = acks.acked.clone();
        if let Err(e) = self.ctx.kafka.commit(&group, &self.topic, &acked).await {
            warn!(topic = self.topic, group, error = %e, "commit of acknowledged positions");
            if let Some(a) = self.acks.as_mut() {
                a.dirty = true;
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
        // A resume restarts delivery: nothing before it is pending any more.
        self.skipped.clear();
        if let Some(acks) = self.acks.as_mut() {
            acks.unacked.clear();
            acks.held_back = false;
        }
    }

    /// Handles a live batch.
    async fn on_batch(&mut self, batch: &LiveBatch) -> Result<(), Close> {
        for record in batch.iter() {
            match self.on_live_now(record) {
                Some(done) => done?,
                // A hole before it: caught up first (rare, so boxed).
                None => Box::pin(self.fill_hole(Arc::clone(record))).await?,
            }
        }
        if std::mem::take(&mut self.sent) {
            self.last_activity = Instant::now();
        }
        Ok(())
    }

    /// Handles a live record; `None` when a hole before it has to be caught up first
    /// ([`Engine::fill_hole`]). No future: this runs per record and connection.
    fn on_live_now(&mut self, record: &Arc<Record>) -> Option<Result<(), Close>> {
        let Some(&next) = self.positions.get(&record.partition) else {
            return Some(Ok(()));
        };
        if record.offset < next {
            return Some(Ok(()));
        }
        if let Some(acks) = self.acks.as_mut()
            && acks.full()
        {
            // The client has not acknowledged enough: leave the record (and the position)
            // where it is; it is read from the log once acknowledgements make room.
            acks.held_back = true;
            return Some(Ok(()));
        }
        if !self.flush_gaps() {
            // Still skipping: this record, and any hole before it, are skipped too.
            self.skip_over(record.partition, next, record.offset + 1);
            return Some(Ok(()));
        }
        if record.offset > next {
            return None;
        }
        Some(self.deliver_live(record))
    }

    /// Catches up the hole before `record`, then delivers it.
    async fn fill_hole(&mut self, record: Arc<Record>) -> Result<(), Close> {
        self.catch_up(record.partition, Some(record.offset)).await?;
        if self.positions.get(&record.partition) != Some(&record.offset) {
            // The hole could not be read: delivering this record would skip it. The
            // client resumes from its last id instead.
            return Err(close("kafka_error", Some(self.ctx.limits.retry_ms)));
        }
        self.deliver_live(&record)
    }

    fn deliver_live(&mut self, record: &Arc<Record>) -> Result<(), Close> {
        let skips = self.skips();
        let Some(next) = self.positions.get_mut(&record.partition) else {
            return Ok(());
        };
        if record.offset < *next {
            return Ok(());
        }
        *next = record.offset + 1;
        if !self.filter.matches(record) {
            return Ok(());
        }
        // The clock is read once per batch (`run`), not per event.
        self.sent = true;
        let (p, offset) = (record.partition, record.offset);
        match self.out.try_send_event(record, &self.positions) {
            Ok(()) => {
                self.delivered(p, offset);
                Ok(())
            }
            Err(Refused::Full) if skips => {
                self.skip_over(p, offset, offset + 1);
                Ok(())
            }
            Err(Refused::Full) => Err(close("slow_consumer", None)),
            Err(Refused::Closed) => Err(close("client_gone", None)),
        }
    }

    /// Counts a delivered event against the acknowledgement window.
    fn delivered(&mut self, p: i32, offset: i64) {
        if let Some(acks) = self.acks.as_mut() {
            acks.unacked.push_back((p, offset));
        }
    }

    /// Waits for acknowledgements while the window is full (during a catch-up, where
    /// the main loop does not run), at most the idle timeout.
    async fn wait_for_acks(&mut self) -> Result<(), Close> {
        while self.acks.as_ref().is_some_and(Acks::full) {
            match tokio::time::timeout(self.ctx.limits.idle_timeout, recv_opt(&mut self.cmds)).await
            {
                Ok(Some(Cmd::Ack(p))) => {
                    self.last_activity = Instant::now();
                    if let Some(acks) = self.acks.as_mut() {
                        acks.ack(&p, &self.positions);
                    }
                }
                // A resume in the middle of a catch-up waits for the window: the client
                // has to acknowledge (or reconnect) first.
                Ok(Some(Cmd::Activity | Cmd::Resume(_))) => {}
                Ok(None) => return Err(close("client_gone", None)),
                Err(_) => return Err(close("ack_timeout", None)),
            }
        }
        Ok(())
    }

    /// Sends during a catch-up: waits for room (a client reading a backlog sets its own
    /// pace) but not longer than the idle timeout.
    async fn send_waiting(&mut self, out: Out) -> Result<(), Close> {
        self.wait_for_acks().await?;
        let event = match &out {
            Out::Event { record, .. } => Some((record.partition, record.offset)),
            _ => None,
        };
        match tokio::time::timeout(self.ctx.limits.idle_timeout, self.out.send(out)).await {
            Ok(Ok(())) => {
                self.last_activity = Instant::now();
                if let Some((p, o)) = event {
                    self.delivered(p, o);
                }
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
            self.send_waiting(Out::Gap(Box::new(Gap {
                partition: p,
                from: next,
                to: low,
                id,
                reason: "deleted_by_retention",
            })))
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

/// The next command, or never without a command channel. (`None` from a channel whose
/// senders are gone is returned as is.)
async fn recv_opt(cmds: &mut Option<mpsc::Receiver<Cmd>>) -> Option<Cmd> {
    match cmds {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The next tick, or never without an interval.
async fn tick_opt(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Sleeps until `at`, forever when `None`.
async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Resolves once `out` has `n` free places; never when `None`.
async fn wait_room(out: Option<&OutTx>, n: usize) {
    match out {
        Some(out) => out.wait_room(n).await,
        None => std::future::pending().await,
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
