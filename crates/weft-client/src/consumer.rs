//! The consumer runtime: [`Consumer::run`] over a consumer group.
//!
//! Shape: one OS thread owns the librdkafka `BaseConsumer` and is the only place that polls,
//! pauses, resumes and commits. It hands records to *lanes* — tokio tasks, each running one
//! record at a time — chosen by a hash of (topic, partition, key), so records of one key in
//! one partition run in order while other keys and partitions run concurrently (records
//! without a key are spread by offset: no order is promised for them). Lanes report each
//! finished record back to the poll thread.
//!
//! Guarantees:
//! - **At-least-once.** Per partition an [`OffsetTracker`] keeps the handed-out offsets; the
//!   committed offset is one past the longest prefix of finished records. A record that
//!   failed and could not be dead-lettered is never finished, so nothing at or after it is
//!   committed and it is delivered again after a restart or rebalance.
//! - **Bounded in-flight.** A partition with `max_outstanding_per_partition` uncommitted
//!   records, or every partition when `max_outstanding` is reached, is paused (librdkafka
//!   stops fetching it and drops what it had prefetched) and resumed when work drains.
//! - **Rebalances.** Cooperative-sticky by default. When partitions are revoked the poll
//!   thread (inside librdkafka's rebalance callback, so before the revocation completes)
//!   stops lanes from starting queued records of those partitions, waits up to
//!   `revoke_timeout` for running ones, commits what finished, and forgets the partitions:
//!   completions that arrive later are ignored, so nothing is ever committed for a partition
//!   the consumer no longer owns. A lost assignment (session timeout) commits nothing.
//! - **Graceful shutdown** ([`ShutdownHandle::shutdown`]): pause everything, let running
//!   handlers finish within `shutdown_timeout`, commit synchronously, leave the group.
//!
//! Failures: a handler's [`HandlerError`] is retried in place while it is
//! [`ErrorClass::Retryable`] and the [`RetryPolicy`] allows (default: 5 attempts, full
//! jitter, bounded). Then, with opt-in retry topics ([`ConsumerConfig::retry_topics`]), a
//! retryable failure is forwarded to `<topic>.retry.<n>` (the runtime consumes those topics
//! itself and waits for each record's due time), so the partition keeps flowing; otherwise —
//! and after the last level, or for `NonRetryable`/`Park` — the record goes to
//! `<topic>.dlq` with the dead-letter envelope of `weft_resilience::dlq` (same key and value,
//! original headers kept). A record counts as finished once the retry topic or DLQ has it.
//! With dead letters switched off the record stays unfinished: its partition stops
//! committing at it. DLQ and retry topics must exist (or the cluster must auto-create them).
//!
//! Metrics (through the `metrics` facade, label `group`): `weft_client_records_total{outcome}`
//! (`ok`, `retry_topic`, `dead_letter`, `failed`, `abandoned`), `weft_client_retries_total`,
//! `weft_client_commits_total`, `weft_client_paused_partitions` (gauge).
//!
//! Breakers ([`ConsumerConfig::pause_while_open`]): while a downstream's breaker is open every
//! partition of the consumer is paused and handlers wait instead of burning attempts; a
//! failure while a breaker is open or half-open is not counted as an attempt. Processing
//! resumes when the breaker half-opens (its probes are the next records) and closes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, mpsc};
use std::time::{Duration, Instant, SystemTime};

use futures_util::FutureExt as _;
use opentelemetry::context::FutureExt as _;
use rdkafka::ClientConfig;
use rdkafka::ClientContext;
use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use tokio::sync::Notify;
use tracing::{Instrument as _, debug, info, warn};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use weft_resilience::dlq::{self, DeadLetter, RetryTopics, Route, TopicNaming};
use weft_resilience::{Breaker, BreakerState, RetryPolicy};

use crate::context;
use crate::message::Message;
use crate::producer::{Producer, ProducerConfig};
use crate::tracker::OffsetTracker;
use crate::{Error, ErrorClass, HandlerError, Result};

/// A topic and partition.
pub type Tp = (String, i32);

/// What the runtime did, for tests and metrics hooks ([`ConsumerConfig::on_event`]). Called on
/// the poll thread: keep it quick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeEvent {
    Assigned(Vec<Tp>),
    /// Revocation finished for these partitions (after their last commit).
    Revoked(Vec<Tp>),
    /// Offsets the runtime hands to librdkafka for commit (next offset to read), reported
    /// just before the commit call.
    Committed(Vec<(Tp, i64)>),
    Paused(Vec<Tp>),
    Resumed(Vec<Tp>),
    /// A record of a revoked partition that was queued or still running at the revocation
    /// deadline; it was not committed and will be delivered to the new owner.
    Abandoned(Tp, i64),
    /// A failed record was forwarded to a retry topic or the DLQ (`to`).
    Forwarded {
        from: Tp,
        offset: i64,
        to: String,
    },
}

type EventHook = Arc<dyn Fn(&RuntimeEvent) + Send + Sync>;

/// How a [`Consumer`] connects and behaves.
#[derive(Clone)]
pub struct ConsumerConfig {
    settings: Vec<(String, String)>,
    topics: Vec<String>,
    group_id: String,
    /// Concurrent handler calls (lanes). Default 16.
    pub lanes: usize,
    /// Uncommitted records per partition before it is paused. Default 256.
    pub max_outstanding_per_partition: usize,
    /// Uncommitted records in total before every partition is paused. Default 1024.
    pub max_outstanding: usize,
    /// How often finished offsets are committed (asynchronously). Default 1 s.
    pub commit_interval: Duration,
    /// How long a revocation waits for running handlers of revoked partitions. Default 10 s.
    pub revoke_timeout: Duration,
    /// How long a shutdown waits for running handlers. Default 30 s.
    pub shutdown_timeout: Duration,
    retry: Option<RetryPolicy>,
    dead_letters: bool,
    naming: TopicNaming,
    retry_topics: Option<RetryTopics>,
    breakers: Vec<Breaker>,
    on_event: Option<EventHook>,
}

impl std::fmt::Debug for ConsumerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerConfig")
            .field("settings", &self.settings)
            .field("topics", &self.topics)
            .field("group_id", &self.group_id)
            .field("lanes", &self.lanes)
            .finish_non_exhaustive()
    }
}

impl ConsumerConfig {
    /// Defaults for group `group_id` reading `topics` from `bootstrap`: manual commits
    /// through the runtime only, `auto.offset.reset=earliest` (a new group misses nothing),
    /// `partition.assignment.strategy=cooperative-sticky`.
    pub fn new(bootstrap: &str, group_id: &str, topics: &[&str]) -> ConsumerConfig {
        let mut c = ConsumerConfig {
            settings: Vec::new(),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            group_id: group_id.to_owned(),
            lanes: 16,
            max_outstanding_per_partition: 256,
            max_outstanding: 1024,
            commit_interval: Duration::from_secs(1),
            revoke_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(30),
            retry: Some(RetryPolicy::default()),
            dead_letters: true,
            naming: TopicNaming::default(),
            retry_topics: None,
            breakers: Vec::new(),
            on_event: None,
        };
        c.set("bootstrap.servers", bootstrap)
            .set("group.id", group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("partition.assignment.strategy", "cooperative-sticky");
        c
    }

    /// Sets (or replaces) a librdkafka property.
    pub fn set(&mut self, key: &str, value: &str) -> &mut ConsumerConfig {
        self.settings.retain(|(k, _)| k != key);
        self.settings.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Joins with the KIP-848 consumer-group protocol (`group.protocol=consumer`: the broker
    /// assigns, incrementally) instead of the classic protocol with the client-side
    /// cooperative-sticky assignor. Removes the settings librdkafka refuses with it
    /// (`partition.assignment.strategy`, `session.timeout.ms`, `heartbeat.interval.ms`).
    pub fn kip848(&mut self) -> &mut ConsumerConfig {
        self.settings.retain(|(k, _)| {
            !matches!(
                k.as_str(),
                "partition.assignment.strategy" | "session.timeout.ms" | "heartbeat.interval.ms"
            )
        });
        self.set("group.protocol", "consumer")
    }

    /// Blocking retries in place under `policy` (default [`RetryPolicy::default`]); `None`:
    /// one attempt only.
    pub fn retry(&mut self, policy: Option<RetryPolicy>) -> &mut ConsumerConfig {
        self.retry = policy;
        self
    }

    /// Whether failed records go to the dead-letter queue (default on). Off, a failed record
    /// stays uncommitted and its partition stops committing at it.
    pub fn dead_letters(&mut self, on: bool) -> &mut ConsumerConfig {
        self.dead_letters = on;
        self
    }

    /// Names of DLQ and retry topics (default `<topic>.dlq`, `<topic>.retry.<n>`).
    pub fn topic_naming(&mut self, naming: TopicNaming) -> &mut ConsumerConfig {
        self.naming = naming;
        self
    }

    /// Non-blocking retries through retry topics (opt-in). Switches in-place retries off (set
    /// them again with [`ConsumerConfig::retry`] after this to have both). The runtime
    /// subscribes to every level's topic of every topic it reads.
    pub fn retry_topics(&mut self, topics: RetryTopics) -> &mut ConsumerConfig {
        self.naming = topics.naming().clone();
        self.retry_topics = Some(topics);
        self.retry = None;
        self
    }

    /// Pauses every partition while `breaker` is open (see the module docs).
    pub fn pause_while_open(&mut self, breaker: &Breaker) -> &mut ConsumerConfig {
        self.breakers.push(breaker.clone());
        self
    }

    /// Calls `hook` for every [`RuntimeEvent`].
    pub fn on_event(
        &mut self,
        hook: impl Fn(&RuntimeEvent) + Send + Sync + 'static,
    ) -> &mut ConsumerConfig {
        self.on_event = Some(Arc::new(hook));
        self
    }

    pub fn group_id(&self) -> &str {
        &self.group_id
    }
}

/// What handles a record. Implemented for every `Fn(Message) -> impl Future<Output =
/// Result<(), HandlerError>>`.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, message: Message) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

impl<F, Fut> Handler for F
where
    F: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send,
{
    fn handle(&self, message: Message) -> impl Future<Output = Result<(), HandlerError>> + Send {
        self(message)
    }
}

/// Asks a running [`Consumer::run`] to shut down gracefully. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct ShutdownHandle {
    flag: Arc<AtomicBool>,
}

impl ShutdownHandle {
    pub fn shutdown(&self) {
        self.flag.store(true, Ordering::SeqCst);
    }

    pub fn is_shutdown(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}

/// A consumer-group member; [`Consumer::run`] drives it.
pub struct Consumer {
    config: ConsumerConfig,
    shutdown: ShutdownHandle,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A record finished (or was given up) by a lane.
#[derive(Debug)]
struct Done {
    tp: Tp,
    epoch: u64,
    offset: i64,
    /// Finished: counts towards the committed prefix. False: failed without a DLQ, or
    /// abandoned because the partition was revoked.
    finished: bool,
}

struct Job {
    message: Message,
    epoch: u64,
}

#[derive(Debug)]
struct Part {
    epoch: u64,
    tracker: OffsetTracker,
    /// Handed to a lane and not reported back yet.
    running: usize,
    committed: Option<i64>,
    paused: bool,
}

/// State shared by the poll thread (loop and rebalance callbacks) and the lanes.
struct Shared {
    parts: Mutex<HashMap<Tp, Part>>,
    /// Partition → epoch of its current assignment; lanes start a record only when its epoch
    /// is still current.
    owned: Mutex<HashMap<Tp, u64>>,
    /// Woken when ownership changes, so lanes sleeping between retries re-check it.
    ownership_changed: Notify,
    done_rx: Mutex<mpsc::Receiver<Done>>,
    next_epoch: Mutex<u64>,
    config: ConsumerConfig,
    /// Set once the shutdown drain is over: a revocation then waits for nothing.
    drained: AtomicBool,
    /// Forwards failed records to retry topics and the DLQ.
    producer: Option<Producer>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn emit(&self, event: RuntimeEvent) {
        if let Some(hook) = &self.config.on_event {
            hook(&event);
        }
    }

    /// Whether a breaker is open (reading the state also moves an open breaker whose wait
    /// is over to half-open).
    fn breaker_open(&self) -> bool {
        self.config
            .breakers
            .iter()
            .any(|b| b.state() == BreakerState::Open)
    }

    fn breakers_closed(&self) -> bool {
        self.config
            .breakers
            .iter()
            .all(|b| b.state() == BreakerState::Closed)
    }

    fn is_owned(&self, tp: &Tp, epoch: u64) -> bool {
        lock(&self.owned).get(tp) == Some(&epoch)
    }

    /// Applies one report from a lane; reports of a forgotten partition or an old epoch are
    /// dropped.
    fn apply(&self, parts: &mut HashMap<Tp, Part>, done: Done) {
        let Some(part) = parts.get_mut(&done.tp) else {
            return;
        };
        if part.epoch != done.epoch {
            return;
        }
        part.running = part.running.saturating_sub(1);
        if done.finished {
            part.tracker.completed(done.offset);
        }
    }

    fn drain_done(&self, wait: Option<Duration>) {
        let rx = lock(&self.done_rx);
        let mut parts = lock(&self.parts);
        if let Some(wait) = wait {
            // Release the parts lock while blocking: lanes never take it, but keep the
            // critical section short anyway.
            drop(parts);
            match rx.recv_timeout(wait) {
                Ok(done) => {
                    parts = lock(&self.parts);
                    self.apply(&mut parts, done);
                }
                Err(_) => parts = lock(&self.parts),
            }
        }
        while let Ok(done) = rx.try_recv() {
            self.apply(&mut parts, done);
        }
    }

    /// Commits what finished for `which` (all owned partitions when `None`).
    fn commit(&self, consumer: &BaseConsumer<Ctx>, which: Option<&[Tp]>, mode: CommitMode) {
        let mut parts = lock(&self.parts);
        let mut tpl = TopicPartitionList::new();
        let mut committed = Vec::new();
        for (tp, part) in parts.iter_mut() {
            if which.is_some_and(|w| !w.contains(tp)) {
                continue;
            }
            let Some(next) = part.tracker.committable() else {
                continue;
            };
            if part.committed.is_some_and(|c| c >= next) {
                continue;
            }
            if tpl
                .add_partition_offset(&tp.0, tp.1, Offset::Offset(next))
                .is_err()
            {
                continue;
            }
            part.committed = Some(next);
            committed.push((tp.clone(), next));
        }
        drop(parts);
        if committed.is_empty() {
            return;
        }
        // Reported before librdkafka sees it: the event is what the runtime decided, so tests
        // check the runtime's decisions rather than librdkafka's own refusals.
        committed.sort();
        metrics::counter!("weft_client_commits_total", "group" => self.config.group_id.clone())
            .increment(1);
        self.emit(RuntimeEvent::Committed(committed.clone()));
        match consumer.commit(&tpl, mode) {
            Ok(()) => {}
            Err(e) => {
                // Forget what we believed committed so the next round tries again.
                let mut parts = lock(&self.parts);
                for (tp, _) in &committed {
                    if let Some(p) = parts.get_mut(tp) {
                        p.committed = None;
                    }
                }
                warn!(error = %e, "offset commit failed; retrying on the next round");
            }
        }
    }

    /// Pauses or resumes partitions so that outstanding work stays bounded.
    fn apply_backpressure(&self, consumer: &BaseConsumer<Ctx>, draining: bool) {
        let cfg = &self.config;
        let broken = self.breaker_open();
        let mut parts = lock(&self.parts);
        let total: usize = parts.values().map(|p| p.tracker.outstanding()).sum();
        let over_total = total >= cfg.max_outstanding;
        let (mut pause, mut resume) = (Vec::new(), Vec::new());
        let mut paused_now = 0usize;
        for (tp, part) in parts.iter_mut() {
            let want = draining
                || broken
                || over_total
                || part.tracker.outstanding() >= cfg.max_outstanding_per_partition;
            paused_now += usize::from(want);
            if want != part.paused {
                part.paused = want;
                if want {
                    pause.push(tp.clone());
                } else {
                    resume.push(tp.clone());
                }
            }
        }
        drop(parts);
        metrics::gauge!("weft_client_paused_partitions", "group" => cfg.group_id.clone())
            .set(paused_now as f64);
        for (list, is_pause) in [(pause, true), (resume, false)] {
            if list.is_empty() {
                continue;
            }
            let mut tpl = TopicPartitionList::new();
            for (t, p) in &list {
                tpl.add_partition(t, *p);
            }
            let result = if is_pause {
                consumer.pause(&tpl)
            } else {
                consumer.resume(&tpl)
            };
            if let Err(e) = result {
                warn!(error = %e, pause = is_pause, "pause/resume failed");
            }
            let mut list = list;
            list.sort();
            self.emit(if is_pause {
                RuntimeEvent::Paused(list)
            } else {
                RuntimeEvent::Resumed(list)
            });
        }
    }

    fn assigned(&self, tpl: &TopicPartitionList) {
        let mut parts = lock(&self.parts);
        let mut owned = lock(&self.owned);
        let mut added = Vec::new();
        for e in tpl.elements() {
            let tp = (e.topic().to_owned(), e.partition());
            if parts.contains_key(&tp) {
                continue;
            }
            let epoch = {
                let mut n = lock(&self.next_epoch);
                *n += 1;
                *n
            };
            parts.insert(
                tp.clone(),
                Part {
                    epoch,
                    tracker: OffsetTracker::new(),
                    running: 0,
                    committed: None,
                    paused: false,
                },
            );
            owned.insert(tp.clone(), epoch);
            added.push(tp);
        }
        drop((parts, owned));
        self.ownership_changed.notify_waiters();
        if !added.is_empty() {
            added.sort();
            info!(partitions = ?added, "partitions assigned");
            self.emit(RuntimeEvent::Assigned(added));
        }
    }

    /// Runs inside librdkafka's rebalance callback, before the revocation completes.
    fn revoking(&self, consumer: &BaseConsumer<Ctx>, tpl: &TopicPartitionList) {
        let revoked: Vec<Tp> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .filter(|tp| lock(&self.parts).contains_key(tp))
            .collect();
        if revoked.is_empty() {
            return;
        }
        // 1. Lanes start nothing more of these partitions.
        {
            let mut owned = lock(&self.owned);
            for tp in &revoked {
                owned.remove(tp);
            }
        }
        self.ownership_changed.notify_waiters();
        let lost = consumer.assignment_lost();
        // 2. Wait for running handlers (not when the assignment is lost: someone else may
        //    already own the partitions, and nothing will be committed anyway).
        let timeout = if lost || self.drained.load(Ordering::SeqCst) {
            Duration::ZERO
        } else {
            self.config.revoke_timeout
        };
        let deadline = Instant::now() + timeout;
        loop {
            self.drain_done(None);
            let running: usize = {
                let parts = lock(&self.parts);
                revoked
                    .iter()
                    .filter_map(|tp| parts.get(tp))
                    .map(|p| p.running)
                    .sum()
            };
            if running == 0 || Instant::now() >= deadline {
                break;
            }
            self.drain_done(Some(Duration::from_millis(10)));
        }
        // 3. Commit what finished, while we still own the partitions.
        if lost {
            warn!(partitions = ?revoked, "assignment lost; not committing");
        } else {
            self.commit(consumer, Some(&revoked), CommitMode::Sync);
        }
        // 4. Forget them: later reports are dropped.
        let mut parts = lock(&self.parts);
        let mut abandoned = Vec::new();
        for tp in &revoked {
            if let Some(p) = parts.remove(tp)
                && p.running > 0
            {
                abandoned.push((tp.clone(), p.running));
            }
        }
        drop(parts);
        for (tp, running) in abandoned {
            warn!(topic = %tp.0, partition = tp.1, running, "revocation deadline passed; abandoning running handlers");
        }
        let mut revoked = revoked;
        revoked.sort();
        info!(partitions = ?revoked, "partitions revoked");
        self.emit(RuntimeEvent::Revoked(revoked));
    }
}

/// librdkafka's callbacks, run on the poll thread.
struct Ctx {
    shared: Arc<Shared>,
}

impl ClientContext for Ctx {}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            self.shared.revoking(consumer, tpl);
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => self.shared.assigned(tpl),
            Rebalance::Error(e) => warn!(error = %e, "rebalance error"),
            Rebalance::Revoke(_) => {}
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            warn!(error = %e, "asynchronous offset commit failed");
        }
    }
}

impl Consumer {
    pub fn new(config: ConsumerConfig) -> Result<Consumer> {
        if config.topics.is_empty() {
            return Err(Error::Config("a consumer needs at least one topic".into()));
        }
        if config.lanes == 0
            || config.max_outstanding == 0
            || config.max_outstanding_per_partition == 0
        {
            return Err(Error::Config(
                "lanes and outstanding limits must be at least 1".into(),
            ));
        }
        Ok(Consumer {
            config,
            shutdown: ShutdownHandle::default(),
        })
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Joins the group and runs `handler` for every record until [`ShutdownHandle::shutdown`];
    /// returns after the final commit and leaving the group.
    pub async fn run<H: Handler>(self, handler: H) -> Result<()> {
        let (done_tx, done_rx) = mpsc::channel();
        let producer = if self.config.dead_letters || self.config.retry_topics.is_some() {
            let bootstrap = self
                .config
                .settings
                .iter()
                .find(|(k, _)| k == "bootstrap.servers")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            Some(Producer::new(&ProducerConfig::new(&bootstrap))?)
        } else {
            None
        };
        let shared = Arc::new(Shared {
            parts: Mutex::default(),
            owned: Mutex::default(),
            ownership_changed: Notify::new(),
            done_rx: Mutex::new(done_rx),
            next_epoch: Mutex::new(0),
            config: self.config.clone(),
            drained: AtomicBool::new(false),
            producer,
        });
        let mut client = ClientConfig::new();
        for (k, v) in &self.config.settings {
            client.set(k, v);
        }
        let consumer: BaseConsumer<Ctx> = client
            .create_with_context(Ctx {
                shared: shared.clone(),
            })
            .map_err(|e| Error::Config(format!("cannot create consumer: {e}")))?;
        let mut all_topics = self.config.topics.clone();
        if let Some(rt) = &self.config.retry_topics {
            for t in &self.config.topics {
                all_topics.extend(rt.topics(t));
            }
        }
        let topics: Vec<&str> = all_topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| Error::Consumer(format!("cannot subscribe to {topics:?}: {e}")))?;

        let handler = Arc::new(handler);
        // One extra lane per retry level: a retry-topic record waiting for its due time
        // blocks only its level's lane, never the lanes of the main topics.
        let retry_lanes = self
            .config
            .retry_topics
            .as_ref()
            .map_or(0, |rt| rt.levels() as usize);
        let total_lanes = self.config.lanes + retry_lanes;
        let mut lanes = Vec::with_capacity(total_lanes);
        let mut lane_handles = Vec::with_capacity(total_lanes);
        for _ in 0..total_lanes {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Job>();
            lanes.push(tx);
            lane_handles.push(tokio::spawn(lane(
                rx,
                handler.clone(),
                shared.clone(),
                done_tx.clone(),
            )));
        }
        drop(done_tx);

        let (finished_tx, finished_rx) = tokio::sync::oneshot::channel();
        let poll_shared = shared.clone();
        let shutdown = self.shutdown.clone();
        std::thread::Builder::new()
            .name(format!("weft-consumer-{}", self.config.group_id))
            .spawn(move || {
                poll_loop(&consumer, &poll_shared, &lanes, &shutdown);
                drop(lanes);
                // Dropping the consumer closes it: the final revocation runs (nothing left to
                // commit) and the member leaves the group.
                drop(consumer);
                let _ = finished_tx.send(());
            })
            .map_err(|e| Error::Consumer(format!("cannot start the poll thread: {e}")))?;
        // Dropping `run`'s future (a cancelled task) shuts the consumer down gracefully
        // instead of leaving the poll thread running.
        let guard = ShutdownOnDrop(self.shutdown.clone());
        let _ = finished_rx.await;
        drop(guard);
        // Handlers still running past the shutdown deadline are abandoned.
        for h in lane_handles {
            h.abort();
        }
        Ok(())
    }
}

/// Shuts the consumer down when dropped (see `Consumer::run`).
struct ShutdownOnDrop(ShutdownHandle);

impl Drop for ShutdownOnDrop {
    fn drop(&mut self) {
        self.0.shutdown();
    }
}

/// The lane of a record: FNV-1a over topic, partition and key (offset when keyless). A
/// hash of our own rather than std's `DefaultHasher`, whose algorithm is unspecified: lane
/// assignment stays the same across Rust versions.
fn lane_of(message: &Message, lanes: usize) -> usize {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(PRIME);
        }
    };
    eat(message.topic.as_bytes());
    eat(&message.partition.to_be_bytes());
    match &message.key {
        Some(k) => eat(k),
        None => eat(&message.offset.to_be_bytes()),
    }
    (h % lanes as u64) as usize
}

fn poll_loop(
    consumer: &BaseConsumer<Ctx>,
    shared: &Arc<Shared>,
    lanes: &[tokio::sync::mpsc::UnboundedSender<Job>],
    shutdown: &ShutdownHandle,
) {
    let cfg = &shared.config;
    let mut last_commit = Instant::now();
    let mut drain_deadline: Option<Instant> = None;
    loop {
        if shutdown.is_shutdown() && drain_deadline.is_none() {
            info!(group = %cfg.group_id, "shutting down: pausing, finishing running handlers");
            drain_deadline = Some(Instant::now() + cfg.shutdown_timeout);
            shared.apply_backpressure(consumer, true);
        }
        if let Some(deadline) = drain_deadline {
            let running: usize = lock(&shared.parts).values().map(|p| p.running).sum();
            if running == 0 || Instant::now() >= deadline {
                if running > 0 {
                    warn!(
                        running,
                        "shutdown deadline passed; abandoning running handlers"
                    );
                }
                shared.drain_done(None);
                shared.commit(consumer, None, CommitMode::Sync);
                shared.drained.store(true, Ordering::SeqCst);
                return;
            }
        }
        match consumer.poll(Duration::from_millis(20)) {
            Some(Ok(m)) if drain_deadline.is_none() => {
                let message = Message::from_kafka(&m);
                drop(m);
                dispatch(shared, lanes, message);
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => warn!(error = %e, "consumer error"),
            None => {}
        }
        shared.drain_done(None);
        if drain_deadline.is_none() {
            shared.apply_backpressure(consumer, false);
        }
        if last_commit.elapsed() >= cfg.commit_interval {
            shared.commit(consumer, None, CommitMode::Async);
            last_commit = Instant::now();
        }
    }
}

fn dispatch(shared: &Shared, lanes: &[tokio::sync::mpsc::UnboundedSender<Job>], message: Message) {
    let tp = (message.topic.clone(), message.partition);
    let epoch = {
        let mut parts = lock(&shared.parts);
        let Some(part) = parts.get_mut(&tp) else {
            // Not ours (a record that raced a revocation): the owner reads it.
            debug!(topic = %tp.0, partition = tp.1, offset = message.offset, "record of an unowned partition ignored");
            return;
        };
        if !part.tracker.dispatched(message.offset) {
            return;
        }
        part.running += 1;
        part.epoch
    };
    let retry_level = shared
        .config
        .retry_topics
        .as_ref()
        .and_then(|_| shared.config.naming.parse_retry_topic(&message.topic))
        .map(|(_, level)| level as usize);
    let main = shared.config.lanes;
    let lane = match retry_level {
        // Records of a level are due in offset order (one delay per level): one lane each.
        Some(level) if lanes.len() > main => {
            main + (level.saturating_sub(1) % (lanes.len() - main))
        }
        _ => lane_of(&message, main),
    };
    if lanes[lane].send(Job { message, epoch }).is_err() {
        warn!("lane stopped; record left uncommitted");
    }
}

async fn lane<H: Handler>(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Job>,
    handler: Arc<H>,
    shared: Arc<Shared>,
    done: mpsc::Sender<Done>,
) {
    while let Some(job) = rx.recv().await {
        let tp = (job.message.topic.clone(), job.message.partition);
        let offset = job.message.offset;
        let finished = if shared.is_owned(&tp, job.epoch) {
            process(&*handler, &shared, job.message, job.epoch).await
        } else {
            shared.emit(RuntimeEvent::Abandoned(tp.clone(), offset));
            record_outcome(&shared, "abandoned");
            false
        };
        let _ = done.send(Done {
            tp,
            epoch: job.epoch,
            offset,
            finished,
        });
    }
}

fn record_outcome(shared: &Shared, outcome: &'static str) {
    metrics::counter!(
        "weft_client_records_total",
        "group" => shared.config.group_id.clone(),
        "outcome" => outcome
    )
    .increment(1);
}

/// One handler call with the message's context (task-local ids, a `weft.handle` span whose
/// parent is the record's remote trace context); a panic becomes a retryable error.
async fn call<H: Handler>(handler: &H, message: Message) -> Result<(), HandlerError> {
    let ctx = message.context();
    let remote = context::remote_context(&ctx);
    let span = tracing::info_span!(
        "weft.handle",
        topic = %message.topic,
        partition = message.partition,
        offset = message.offset,
        message_id = %ctx.message_id,
    );
    let _ = span.set_parent(remote.clone());
    let fut = context::scope(ctx, handler.handle(message))
        .instrument(span)
        .with_context(remote);
    match std::panic::AssertUnwindSafe(fut).catch_unwind().await {
        Ok(result) => result,
        Err(_) => Err(HandlerError::retryable("handler panicked")),
    }
}

/// Runs a record to its end: success, retries, then the failure path. Returns whether it
/// counts as finished.
async fn process<H: Handler>(handler: &H, shared: &Shared, message: Message, epoch: u64) -> bool {
    let tp = (message.topic.clone(), message.partition);
    let naming = &shared.config.naming;
    let headers = envelope_headers(&message);
    // A record from a retry topic: its level, and it waits for its due time.
    let retry_level = shared
        .config
        .retry_topics
        .as_ref()
        .and_then(|_| naming.parse_retry_topic(&message.topic))
        .map(|(_, level)| level);
    if retry_level.is_some()
        && let Some((_, not_before)) = dlq::retry_position(&headers)
    {
        let wait = u64::try_from(not_before - dlq::epoch_millis(SystemTime::now())).unwrap_or(0);
        if !sleep_owned(shared, &tp, epoch, Duration::from_millis(wait)).await {
            shared.emit(RuntimeEvent::Abandoned(tp, message.offset));
            record_outcome(shared, "abandoned");
            return false;
        }
    }
    let previous = retry_level.and_then(|_| DeadLetter::parse(&headers).ok());
    let mut schedule = shared.config.retry.as_ref().map(RetryPolicy::schedule);
    let mut attempts = 0u32;
    let mut first_failure = None;
    let error = loop {
        if !hold_while_broken(shared, &tp, epoch, false).await {
            shared.emit(RuntimeEvent::Abandoned(tp, message.offset));
            record_outcome(shared, "abandoned");
            return false;
        }
        let result = call(handler, message.clone()).await;
        let error = match result {
            Ok(()) => {
                record_outcome(shared, "ok");
                // End-to-end latency, record timestamp → handled (issue 9: /ui shows p50/p99).
                if let Some(ts) = message.timestamp_ms {
                    let age = dlq::epoch_millis(SystemTime::now()) - ts;
                    metrics::histogram!(
                        "weft_client_e2e_latency_seconds",
                        "group" => shared.config.group_id.clone()
                    )
                    .record(Duration::from_millis(u64::try_from(age).unwrap_or(0)).as_secs_f64());
                }
                return true;
            }
            Err(e) => e,
        };
        let now = SystemTime::now();
        if !shared.breakers_closed() {
            // The breaker was (or just became) open: this failure is the downstream's, not
            // the record's; wait for it instead of counting an attempt.
            debug!(topic = %tp.0, partition = tp.1, offset = message.offset, error = %error.message, "failure while a breaker is not closed; not counted");
            if !hold_while_broken(shared, &tp, epoch, true).await {
                shared.emit(RuntimeEvent::Abandoned(tp, message.offset));
                record_outcome(shared, "abandoned");
                return false;
            }
            continue;
        }
        attempts += 1;
        first_failure.get_or_insert(now);
        let delay = match error.class {
            ErrorClass::Retryable => schedule.as_mut().and_then(Iterator::next),
            _ => None,
        };
        let Some(delay) = delay else {
            break error;
        };
        debug!(topic = %tp.0, partition = tp.1, offset = message.offset, attempts, ?delay, error = %error.message, "retrying");
        metrics::counter!("weft_client_retries_total", "group" => shared.config.group_id.clone())
            .increment(1);
        if !sleep_owned(shared, &tp, epoch, delay).await {
            shared.emit(RuntimeEvent::Abandoned(tp, message.offset));
            record_outcome(shared, "abandoned");
            return false;
        }
    };
    // The failure path: a retry topic or the DLQ.
    let original_topic = match &previous {
        Some(p) => p.original_topic.clone(),
        None => retry_level
            .and_then(|_| naming.parse_retry_topic(&message.topic))
            .map(|(base, _)| base.to_owned())
            .unwrap_or_else(|| message.topic.clone()),
    };
    let (Some(producer), true) = (
        &shared.producer,
        shared.config.dead_letters || shared.config.retry_topics.is_some(),
    ) else {
        warn!(
            topic = %tp.0, partition = tp.1, offset = message.offset, attempts,
            class = error.class.as_str(), error = %error.message,
            "handler failed and dead letters are off; record left uncommitted"
        );
        record_outcome(shared, "failed");
        return false;
    };
    let route = match &shared.config.retry_topics {
        Some(rt) => rt.route(&original_topic, retry_level.unwrap_or(0), error.class),
        None => Route::DeadLetter {
            topic: naming.dlq_topic(&original_topic),
        },
    };
    if matches!(route, Route::DeadLetter { .. }) && !shared.config.dead_letters {
        warn!(topic = %tp.0, partition = tp.1, offset = message.offset, "retries exhausted and dead letters are off; record left uncommitted");
        record_outcome(shared, "failed");
        return false;
    }
    let now_ms = dlq::epoch_millis(SystemTime::now());
    let first_ms = first_failure.map(dlq::epoch_millis).unwrap_or(now_ms);
    let (orig_partition, orig_offset, orig_ts) = match &previous {
        Some(p) => (
            p.original_partition,
            p.original_offset,
            p.original_timestamp,
        ),
        None => (message.partition, message.offset, message.timestamp_ms),
    };
    let mut letter = DeadLetter::builder(original_topic.clone(), orig_partition, orig_offset)
        .consumer_group(shared.config.group_id.clone())
        .source("consumer")
        .error(error.class, error.message.clone())
        .attempts(previous.as_ref().map_or(0, |p| p.attempts) + attempts.max(1))
        .failures(
            previous
                .as_ref()
                .map(|p| p.first_failure)
                .filter(|&f| f > 0)
                .unwrap_or(first_ms),
            now_ms,
        );
    if let Some(ts) = orig_ts {
        letter = letter.timestamp(ts);
    }
    let letter = letter.build();
    let (to, out_headers) = match &route {
        Route::Retry {
            topic,
            level,
            delay,
        } => {
            let due = now_ms + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
            (
                topic.clone(),
                letter.to_retry_headers(&headers, *level, due),
            )
        }
        Route::DeadLetter { topic } => (topic.clone(), letter.to_headers(&headers)),
    };
    let out: Vec<(String, bytes::Bytes)> = out_headers
        .into_iter()
        .map(|h| (h.key, bytes::Bytes::from(h.value.unwrap_or_default())))
        .collect();
    match producer
        .send_raw(
            &to,
            None,
            message.key.as_deref(),
            message.payload.as_deref(),
            &out,
        )
        .await
    {
        Ok(_) => {
            info!(
                topic = %tp.0, partition = tp.1, offset = message.offset, to = %to,
                class = error.class.as_str(), error = %error.message, "failed record forwarded"
            );
            shared.emit(RuntimeEvent::Forwarded {
                from: tp,
                offset: message.offset,
                to,
            });
            record_outcome(
                shared,
                if matches!(route, Route::Retry { .. }) {
                    "retry_topic"
                } else {
                    "dead_letter"
                },
            );
            true
        }
        Err(e) => {
            warn!(topic = %tp.0, partition = tp.1, offset = message.offset, to = %to, error = %e, "cannot forward failed record; left uncommitted");
            record_outcome(shared, "failed");
            false
        }
    }
}

/// The record's headers in the envelope's type.
fn envelope_headers(message: &Message) -> Vec<dlq::Header> {
    message
        .headers
        .iter()
        .map(|(k, v)| dlq::Header::new(k.clone(), v.to_vec()))
        .collect()
}

/// Sleeps `delay`, but returns false at once when the partition is revoked.
async fn sleep_owned(shared: &Shared, tp: &Tp, epoch: u64, delay: Duration) -> bool {
    let until = tokio::time::Instant::now() + delay;
    loop {
        let notified = shared.ownership_changed.notified();
        if !shared.is_owned(tp, epoch) {
            return false;
        }
        tokio::select! {
            () = tokio::time::sleep_until(until) => return shared.is_owned(tp, epoch),
            () = notified => {}
        }
    }
}

/// Waits while a breaker is open; after a failure (`after_failure`) also while it is
/// half-open with its probes taken by others. Returns false when the partition is revoked.
async fn hold_while_broken(shared: &Shared, tp: &Tp, epoch: u64, after_failure: bool) -> bool {
    const TICK: Duration = Duration::from_millis(50);
    loop {
        let waiting = shared.config.breakers.iter().any(|b| match b.state() {
            BreakerState::Open => true,
            BreakerState::HalfOpen => after_failure,
            BreakerState::Closed => false,
        });
        if !waiting {
            return shared.is_owned(tp, epoch);
        }
        // Re-read the state at a short tick as well as on ownership changes: reading it is
        // what moves an open breaker to half-open when no timer task did.
        if !sleep_owned(shared, tp, epoch, TICK).await {
            return false;
        }
        if after_failure
            && shared
                .config
                .breakers
                .iter()
                .all(|b| b.state() != BreakerState::Open)
        {
            // Half-open: try again (maybe as a probe) after one tick.
            return shared.is_owned(tp, epoch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lane assignment is part of the behaviour tests rely on (which records can run at the
    /// same time): pinned here so a change is deliberate.
    #[test]
    fn lanes_are_stable() {
        let lane = |topic: &str, partition: i32, key: Option<&str>, offset: i64, lanes: usize| {
            let m = Message {
                topic: topic.into(),
                partition,
                offset,
                timestamp_ms: None,
                key: key.map(|k| bytes::Bytes::copy_from_slice(k.as_bytes())),
                payload: None,
                headers: Vec::new(),
            };
            lane_of(&m, lanes)
        };
        let firsts = [(0, "k3"), (1, "k0"), (2, "k8"), (3, "k14")];
        let got: Vec<usize> = firsts
            .iter()
            .map(|&(p, k)| lane("rb", p, Some(k), 0, 8))
            .collect();
        assert_eq!(got, vec![3, 1, 4, 0]);
        let xs: Vec<usize> = (0..6)
            .map(|i| lane("bh", 0, Some(&format!("x-{i}")), 0, 8))
            .collect();
        assert_eq!(xs, vec![0, 3, 6, 1, 4, 7]);
        // The key decides, not the offset; keyless records spread by offset.
        assert_eq!(
            lane("t", 0, Some("k"), 1, 16),
            lane("t", 0, Some("k"), 99, 16)
        );
        let keyless: std::collections::HashSet<usize> =
            (0..64).map(|o| lane("t", 0, None, o, 16)).collect();
        assert!(keyless.len() > 8, "{keyless:?}");
    }
}
