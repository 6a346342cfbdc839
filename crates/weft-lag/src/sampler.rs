//! The sampler: the edge that reads the cluster through the Kafka protocol (librdkafka) and
//! feeds [`Monitor`].
//!
//! One round, on a blocking thread (librdkafka's calls block):
//! 1. ListGroups + DescribeGroups: every group with its state, protocol and members;
//! 2. Metadata: every partition of every topic;
//! 3. ListOffsets (latest, read_uncommitted), batched: the log end offset of each partition;
//! 4. FindCoordinator and OffsetFetch for every group at once through [`OffsetClient`] (one
//!    connection per coordinator, OffsetFetch v8 with many groups per request), which never
//!    joins a group or disturbs its members (PLAINTEXT, or SASL_PLAINTEXT with PLAIN as on
//!    `weft serve`'s internal listener); on clusters that need TLS, SCRAM or OAUTHBEARER
//!    one never-subscribing librdkafka consumer handle per group instead;
//! 5. for each lagging partition whose committed offset changed since the last round, one
//!    small fetch at the committed offset by a consumer that only assigns partitions: the
//!    timestamp of the oldest unconsumed record (kept, so a stuck group costs no fetch).
//!
//! Memory is bounded by the live groups and partitions: clients and timestamps of groups
//! and partitions a round no longer sees are dropped.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tracing::{debug, info, warn};

use crate::eval::{Config, GroupObservation, GroupView, Monitor, PartitionObservation, Round};
use crate::offsets::{self, Access, OffsetClient};
use crate::{Error, Result};

/// Where and how to sample.
#[derive(Debug, Clone)]
pub struct SamplerConfig {
    /// Kafka bootstrap servers (`host:port,…`).
    pub bootstrap: String,
    /// Extra librdkafka properties, applied last (security settings and the like).
    pub properties: Vec<(String, String)>,
    /// Interval and window.
    pub lag: Config,
    /// Limit for each request of a round.
    pub request_timeout: Duration,
}

impl SamplerConfig {
    pub fn new(bootstrap: impl Into<String>, lag: Config) -> SamplerConfig {
        SamplerConfig {
            bootstrap: bootstrap.into(),
            properties: Vec::new(),
            lag,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// The lag monitor shared between the sampler and its readers (the HTTP handlers). Cheap to
/// clone; readers get owned snapshots, and no lock is held across an `.await`.
#[derive(Debug, Clone)]
pub struct Lag {
    monitor: Arc<RwLock<Monitor>>,
}

impl Lag {
    pub fn new(config: Config) -> Lag {
        Lag {
            monitor: Arc::new(RwLock::new(Monitor::new(config))),
        }
    }

    /// Every group the last round saw, by id.
    pub fn groups(&self) -> Vec<GroupView> {
        self.read(Monitor::groups)
    }

    /// One group with its partitions, if the last round saw it.
    pub fn group(&self, id: &str) -> Option<GroupView> {
        self.read(|m| m.group(id))
    }

    /// When the last round was taken (ms since the epoch); `None` before the first.
    pub fn sampled_at_ms(&self) -> Option<i64> {
        self.read(Monitor::sampled_at_ms)
    }

    /// The interval and window in use.
    pub fn config(&self) -> Config {
        self.read(|m| *m.config())
    }

    fn read<T>(&self, f: impl FnOnce(&Monitor) -> T) -> T {
        // A panic while observing leaves a monitor that is still consistent enough to read.
        let guard = self.monitor.read().unwrap_or_else(PoisonError::into_inner);
        f(&guard)
    }

    /// Folds in a round (the sampler calls this; tests may too).
    pub fn observe(&self, round: Round) {
        let groups = {
            let mut guard = self.monitor.write().unwrap_or_else(PoisonError::into_inner);
            guard.observe(round);
            // With their partitions (`groups()` leaves them out).
            guard
                .groups()
                .iter()
                .filter_map(|g| guard.group(&g.group))
                .collect::<Vec<_>>()
        };
        crate::metrics::record_groups(&groups);
    }

    /// Samples every `config.lag.interval` until `shutdown` resolves. A failed round is
    /// logged and the next one tried: the monitor keeps its last state meanwhile.
    pub async fn run(
        &self,
        config: SamplerConfig,
        shutdown: impl Future<Output = ()>,
    ) -> Result<()> {
        config.lag.validate()?;
        let mut sampler = Some(Sampler::new(config.clone())?);
        let mut ticker = tokio::time::interval(config.lag.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        let mut failing = false;
        loop {
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                _ = ticker.tick() => {}
            }
            let Some(mut s) = sampler.take() else {
                return Err(Error::Task("sampler lost".into()));
            };
            let task = tokio::task::spawn_blocking(move || {
                let started = std::time::Instant::now();
                let result = s.round();
                crate::metrics::record_round(result.is_ok(), started.elapsed().as_secs_f64());
                (s, result)
            });
            // On shutdown the round in flight finishes on its thread (each request is
            // bounded by the request timeout) and its clients are dropped there.
            let (s, result) = tokio::select! {
                () = &mut shutdown => return Ok(()),
                joined = task => joined.map_err(|e| Error::Task(e.to_string()))?,
            };
            sampler = Some(s);
            match result {
                Ok(round) => {
                    if failing {
                        warn!("lag sampling recovered");
                        failing = false;
                    }
                    debug!(groups = round.groups.len(), "lag sampled");
                    self.observe(round);
                }
                Err(e) => {
                    // Once per outage, not every interval.
                    if !failing {
                        warn!(error = %e, "lag sampling failed; retrying every interval");
                    }
                    failing = true;
                }
            }
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

type Key = (String, i32);

/// The clients of the sampler and what it remembers between rounds. Blocking.
struct Sampler {
    config: SamplerConfig,
    /// Metadata, ListGroups and ListOffsets; never joins anything.
    admin: BaseConsumer,
    /// Reads one record at a committed offset; only ever assigns.
    reader: BaseConsumer,
    /// Committed offsets of every group over Kafka-protocol connections (PLAINTEXT or
    /// SASL_PLAINTEXT/PLAIN); `None` when the cluster needs something else.
    offsets: Option<OffsetClient>,
    /// Secured clusters only: one handle per group for OffsetFetch (librdkafka fetches
    /// offsets of the group named in the client's configuration); none of them subscribes.
    groups: HashMap<String, BaseConsumer>,
    /// ((topic, partition), offset) → timestamp of the first record at or after it, for
    /// the committed offsets of lagging partitions.
    timestamps: HashMap<(Key, i64), i64>,
}

impl Sampler {
    fn new(config: SamplerConfig) -> Result<Sampler> {
        let admin = client(&config, "weft-lag", &[])?;
        let reader = client(
            &config,
            "weft-lag",
            &[
                ("auto.offset.reset", "earliest"),
                ("fetch.wait.max.ms", "100"),
                // Read only a little past the committed offset: one record is enough (a
                // larger first batch still comes whole).
                ("max.partition.fetch.bytes", "4096"),
                ("queued.min.messages", "1"),
            ],
        )?;
        let client = || OffsetClient::new(&config.bootstrap, config.request_timeout);
        let offsets = match offsets::access(&config.properties) {
            Access::Plaintext => Some(client()),
            Access::SaslPlain(credentials) => Some(client().with_sasl_plain(credentials)),
            Access::Unsupported(why) => {
                // Still sampled, only with more client handles.
                info!(
                    unsupported = %why,
                    "consumer lag: the batched offset client speaks PLAINTEXT and \
                     SASL_PLAINTEXT/PLAIN only; committed offsets are read through one \
                     librdkafka handle per group"
                );
                None
            }
        };
        Ok(Sampler {
            config,
            admin,
            reader,
            offsets,
            groups: HashMap::new(),
            timestamps: HashMap::new(),
        })
    }

    fn round(&mut self) -> Result<Round> {
        let timeout = self.config.request_timeout;
        let kafka = |context: &'static str| move |source| Error::Kafka { context, source };
        let list = self
            .admin
            .fetch_group_list(None, timeout)
            .map_err(kafka("listing groups"))?;
        let metadata = self
            .admin
            .fetch_metadata(None, timeout)
            .map_err(kafka("reading metadata"))?;
        let mut partitions: Vec<Key> = Vec::new();
        for t in metadata.topics() {
            if t.error().is_some() {
                continue;
            }
            partitions.extend(t.partitions().iter().map(|p| (t.name().to_owned(), p.id())));
        }
        partitions.sort();
        let log_ends = self.log_ends(&partitions)?;

        let mut seen_groups = HashSet::new();
        let names: Vec<String> = list.groups().iter().map(|g| g.name().to_owned()).collect();
        let mut fetched = match self.offsets.as_mut() {
            Some(client) => client.fetch(&names)?,
            None => HashMap::new(),
        };
        let mut committed: Vec<(GroupObservation, Vec<(Key, i64)>)> = Vec::new();
        for g in list.groups() {
            seen_groups.insert(g.name().to_owned());
            let offsets = if self.offsets.is_some() {
                fetched.remove(g.name()).flatten()
            } else {
                match self.committed(g.name(), &partitions) {
                    Ok(offsets) => Some(offsets),
                    Err(e) => {
                        warn!(group = g.name(), error = %e, "cannot fetch committed offsets");
                        None
                    }
                }
            };
            let observation = GroupObservation {
                group: g.name().to_owned(),
                state: g.state().to_owned(),
                protocol_type: g.protocol_type().to_owned(),
                protocol: g.protocol().to_owned(),
                members: g.members().len(),
                partitions: offsets.is_some().then(Vec::new),
            };
            committed.push((observation, offsets.unwrap_or_default()));
        }
        self.groups.retain(|id, _| seen_groups.contains(id));

        // The oldest unconsumed record of every lagging partition at a committed offset not
        // read before.
        let mut live: BTreeSet<(Key, i64)> = BTreeSet::new();
        for (_, offsets) in &committed {
            for (key, offset) in offsets {
                if log_ends.get(key).is_some_and(|end| end > offset) {
                    live.insert((key.clone(), *offset));
                }
            }
        }
        self.timestamps.retain(|k, _| live.contains(k));
        let wanted: BTreeSet<(Key, i64)> = live
            .into_iter()
            .filter(|k| !self.timestamps.contains_key(k))
            .collect();
        self.read_timestamps(&wanted);

        let time_ms = now_ms();
        let groups = committed
            .into_iter()
            .map(|(mut g, offsets)| {
                if let Some(list) = g.partitions.as_mut() {
                    for (key, offset) in offsets {
                        let Some(&log_end) = log_ends.get(&key) else {
                            continue;
                        };
                        let oldest = self.timestamps.get(&(key.clone(), offset)).copied();
                        list.push(PartitionObservation {
                            topic: key.0,
                            partition: key.1,
                            committed: offset,
                            log_end,
                            oldest_unconsumed_ms: oldest,
                            commit_time_ms: None,
                        });
                    }
                }
                g
            })
            .collect();
        Ok(Round { time_ms, groups })
    }

    /// Log end offsets (high watermarks) of `partitions`, in one batched ListOffsets.
    fn log_ends(&self, partitions: &[Key]) -> Result<HashMap<Key, i64>> {
        let mut out = HashMap::new();
        if partitions.is_empty() {
            return Ok(out);
        }
        let mut tpl = TopicPartitionList::new();
        for (t, p) in partitions {
            // Offset::End is timestamp -1: ListOffsets' "latest".
            tpl.add_partition_offset(t, *p, Offset::End)
                .map_err(|source| Error::Kafka {
                    context: "building a partition list",
                    source,
                })?;
        }
        let found = self
            .admin
            .offsets_for_times(tpl, self.config.request_timeout)
            .map_err(|source| Error::Kafka {
                context: "listing log end offsets",
                source,
            })?;
        for e in found.elements() {
            if let (Offset::Offset(n), Ok(())) = (e.offset(), e.error()) {
                out.insert((e.topic().to_owned(), e.partition()), n);
            }
        }
        Ok(out)
    }

    /// The committed offsets of `group` among `partitions`, through a librdkafka handle of
    /// its own (secured clusters only).
    fn committed(&mut self, group: &str, partitions: &[Key]) -> Result<Vec<(Key, i64)>> {
        if partitions.is_empty() {
            return Ok(Vec::new());
        }
        let consumer = match self.groups.get(group) {
            Some(c) => c,
            None => {
                let c = client(
                    &self.config,
                    group,
                    &[
                        ("enable.auto.commit", "false"),
                        ("enable.auto.offset.store", "false"),
                    ],
                )?;
                self.groups.entry(group.to_owned()).or_insert(c)
            }
        };
        let mut tpl = TopicPartitionList::new();
        for (t, p) in partitions {
            tpl.add_partition(t, *p);
        }
        let tpl = consumer
            .committed_offsets(tpl, self.config.request_timeout)
            .map_err(|source| Error::Kafka {
                context: "fetching committed offsets",
                source,
            })?;
        Ok(tpl
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(n) => Some(((e.topic().to_owned(), e.partition()), n)),
                _ => None,
            })
            .collect())
    }

    /// Reads the first record at or after each wanted offset and remembers its timestamp.
    /// A consumer assigns one offset per partition, so groups at different offsets of the
    /// same partition take one pass each; all passes share one time limit, and what is not
    /// read within it stays unknown this round.
    fn read_timestamps(&mut self, wanted: &BTreeSet<(Key, i64)>) {
        let limit = self.config.lag.interval.min(self.config.request_timeout);
        let deadline = Instant::now() + limit;
        let mut left: BTreeSet<(Key, i64)> = wanted.clone();
        while !left.is_empty() && Instant::now() < deadline {
            // The smallest remaining offset of each partition.
            let mut pass: BTreeMap<Key, i64> = BTreeMap::new();
            for (key, offset) in &left {
                pass.entry(key.clone()).or_insert(*offset);
            }
            for (key, offset) in &pass {
                left.remove(&(key.clone(), *offset));
            }
            self.read_pass(&pass, deadline);
        }
    }

    fn read_pass(&mut self, wanted: &BTreeMap<Key, i64>, deadline: Instant) {
        for (key, ts) in oldest_unconsumed(&self.reader, wanted, deadline) {
            if let Some(&offset) = wanted.get(&key) {
                self.timestamps.insert((key, offset), ts);
            }
        }
    }
}

/// Timestamps of the first record at or after each `(topic, partition) → offset`: the
/// oldest unconsumed record of a group committed there. `reader` must be a consumer that
/// only assigns (it is assigned the partitions, then unassigned) and should reset to
/// `earliest`, so an offset below the log start reads the first record still there.
/// Partitions with nothing to read before `deadline` are missing from the answer.
pub fn oldest_unconsumed(
    reader: &BaseConsumer,
    wanted: &BTreeMap<(String, i32), i64>,
    deadline: Instant,
) -> HashMap<(String, i32), i64> {
    let mut found = HashMap::new();
    if wanted.is_empty() {
        return found;
    }
    let mut tpl = TopicPartitionList::new();
    for ((t, p), offset) in wanted {
        // Only fails for a negative offset, which OffsetFetch never returns.
        let _ = tpl.add_partition_offset(t, *p, Offset::Offset(*offset));
    }
    if let Err(e) = reader.assign(&tpl) {
        warn!(error = %e, "cannot assign partitions to read record timestamps");
        return found;
    }
    let mut missing: HashSet<&Key> = wanted.keys().collect();
    while !missing.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match reader.poll(left.min(Duration::from_millis(100))) {
            Some(Ok(m)) => {
                let key = (m.topic().to_owned(), m.partition());
                let Some(&from) = wanted.get(&key) else {
                    continue;
                };
                if m.offset() < from || !missing.contains(&key) {
                    continue;
                }
                missing.remove(&key);
                if let Some(ts) = m.timestamp().to_millis() {
                    found.insert(key, ts);
                }
            }
            Some(Err(e)) => debug!(error = %e, "reading a record timestamp"),
            None => {}
        }
    }
    if !missing.is_empty() {
        debug!(
            partitions = missing.len(),
            "no record timestamp within the limit"
        );
    }
    if let Err(e) = reader.unassign() {
        warn!(error = %e, "cannot unassign the timestamp reader");
    }
    found
}

/// A librdkafka consumer handle with `group.id` = `group` that is only used for requests
/// (never `subscribe`), so it never joins the group.
fn client(config: &SamplerConfig, group: &str, extra: &[(&str, &str)]) -> Result<BaseConsumer> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.bootstrap)
        .set("group.id", group)
        .set("client.id", "weft-lag")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_uncommitted")
        .set("enable.partition.eof", "false");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    for (k, v) in &config.properties {
        c.set(k, v);
    }
    c.create().map_err(|source| Error::Kafka {
        context: "creating a client",
        source,
    })
}
