//! The sans-io core: windows of samples per (group, topic, partition) and the status rules.
//!
//! Nothing here reads a clock or a socket. A [`Round`] is what one sampling pass saw (its
//! time included); [`Monitor::observe`] folds it into the windows, and the views are
//! computed from the windows alone, so every rule is tested with plain data.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::Duration;

/// Burrow's partition and group states, from best to worst (the order is the severity a
/// group takes from its worst partition).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    /// Keeping up, or not enough samples yet to say otherwise.
    Ok,
    /// Lag grew across the whole window although commits moved: the consumer is slower than
    /// the producers.
    Warn,
    /// The committed offset did not move across the window while there was lag, and the
    /// consumer is still there (its commits, or the group's members, say so).
    Stall,
    /// No commit for longer than the window while there is lag, and nobody is consuming.
    Stop,
}

impl Status {
    /// The name operators know from Burrow: `OK`, `WARN`, `STALL`, `STOP`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Stall => "STALL",
            Status::Stop => "STOP",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How often samples are taken and how many make a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Time between two sampling rounds.
    pub interval: Duration,
    /// Samples kept per partition (at least 2: a trend needs two points).
    pub window: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            interval: Duration::from_secs(5),
            window: 10,
        }
    }
}

impl Config {
    /// Checks the values a user gave.
    pub fn validate(&self) -> crate::Result<()> {
        if self.interval.is_zero() {
            return Err(crate::Error::Config(
                "the sampling interval must be above zero".into(),
            ));
        }
        if self.window < 2 {
            return Err(crate::Error::Config(format!(
                "the window must hold at least 2 samples, got {}",
                self.window
            )));
        }
        Ok(())
    }

    /// The time a window covers (`interval × window`), in milliseconds: "no commit for
    /// longer than this" is STOP.
    pub fn window_ms(&self) -> i64 {
        let ms = self
            .interval
            .as_millis()
            .saturating_mul(self.window as u128);
        i64::try_from(ms).unwrap_or(i64::MAX)
    }
}

/// One observation of one partition of one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// When it was taken, in milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// The group's committed offset: the next record it will read.
    pub committed: i64,
    /// The partition's log end offset (high watermark).
    pub log_end: i64,
    /// `log_end − committed`, never negative.
    pub lag: i64,
    /// Age of the oldest unconsumed record (0 without lag); `None` when its timestamp could
    /// not be read.
    pub lag_ms: Option<i64>,
    /// When the committed offset was committed, where the source tells (Kafka's
    /// `__consumer_offsets` does, OffsetFetch does not).
    pub commit_time_ms: Option<i64>,
    /// The group had members when the sample was taken.
    pub active: bool,
}

/// The status of one partition given its window (oldest sample first), the time of its
/// last commit and the current time. The rules, in order:
///
/// 1. no samples, or no lag in the latest one: OK;
/// 2. no commit for longer than the window: STOP when commit times are known or the group
///    has no members, otherwise STALL (a member is there but its offset does not move);
/// 3. fewer samples than a full window: OK (not enough data);
/// 4. a sample without lag anywhere in the window: OK (Burrow's first rule: a consumer that
///    caught up during the window is keeping up with bursts);
/// 5. the committed offset the same in every sample: STALL;
/// 6. lag never shrinking from one sample to the next and larger at the end than at the
///    start (the offset moved, by 5): WARN;
/// 7. otherwise OK.
pub fn evaluate(window: &[Sample], last_commit_ms: i64, now_ms: i64, config: &Config) -> Status {
    let Some(last) = window.last() else {
        return Status::Ok;
    };
    if last.lag == 0 {
        return Status::Ok;
    }
    if now_ms.saturating_sub(last_commit_ms) > config.window_ms() {
        let commit_clock = last.commit_time_ms.is_some();
        return if commit_clock || !last.active {
            Status::Stop
        } else {
            Status::Stall
        };
    }
    if window.len() < config.window {
        return Status::Ok;
    }
    if window.iter().any(|s| s.lag == 0) {
        return Status::Ok;
    }
    let first = &window[0];
    if window.iter().all(|s| s.committed == first.committed) {
        return Status::Stall;
    }
    let growing = window.windows(2).all(|w| w[1].lag >= w[0].lag);
    if growing && last.lag > first.lag {
        return Status::Warn;
    }
    Status::Ok
}

/// What a sampling round saw of one partition of one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionObservation {
    pub topic: String,
    pub partition: i32,
    pub committed: i64,
    pub log_end: i64,
    /// Timestamp of the record at the committed offset (the oldest unconsumed one), when
    /// there is lag and it could be read.
    pub oldest_unconsumed_ms: Option<i64>,
    /// When the offset was committed, if the source tells.
    pub commit_time_ms: Option<i64>,
}

/// What a sampling round saw of one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupObservation {
    pub group: String,
    /// The coordinator's state name (`Stable`, `Empty`, …).
    pub state: String,
    /// `consumer` for consumer groups; empty for groups that only hold offsets.
    pub protocol_type: String,
    /// The chosen assignor (classic) or empty.
    pub protocol: String,
    pub members: usize,
    /// Partitions with a committed offset; `None` when they could not be read this round,
    /// which keeps the windows as they are instead of forgetting them.
    pub partitions: Option<Vec<PartitionObservation>>,
}

/// One sampling pass over every group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Round {
    pub time_ms: i64,
    pub groups: Vec<GroupObservation>,
}

#[derive(Debug)]
struct PartitionState {
    samples: VecDeque<Sample>,
    /// The commit time, or else the time the committed offset was first seen at its
    /// current value.
    last_commit_ms: i64,
}

#[derive(Debug)]
struct GroupState {
    state: String,
    protocol_type: String,
    protocol: String,
    members: usize,
    partitions: BTreeMap<(String, i32), PartitionState>,
}

/// The latest view of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionView {
    pub topic: String,
    pub partition: i32,
    pub committed: i64,
    pub log_end: i64,
    pub lag: i64,
    pub lag_ms: Option<i64>,
    pub status: Status,
}

/// The latest view of one group; `partitions` is filled by [`Monitor::group`] only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    pub group: String,
    pub state: String,
    pub protocol_type: String,
    pub protocol: String,
    pub members: usize,
    pub total_lag: i64,
    /// The worst partition's status.
    pub status: Status,
    pub partitions: Vec<PartitionView>,
}

/// Windows of samples for every group and partition the last round saw. Memory is bounded
/// by the partitions of live groups times the window: groups and partitions a round no
/// longer reports are forgotten.
#[derive(Debug)]
pub struct Monitor {
    config: Config,
    groups: BTreeMap<String, GroupState>,
    /// Time of the last round, the "now" the statuses are computed at.
    now_ms: Option<i64>,
}

impl Monitor {
    pub fn new(config: Config) -> Monitor {
        Monitor {
            config,
            groups: BTreeMap::new(),
            now_ms: None,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// When the last round was taken, if any was.
    pub fn sampled_at_ms(&self) -> Option<i64> {
        self.now_ms
    }

    /// Folds a round in: one sample per reported partition, everything not reported dropped.
    pub fn observe(&mut self, round: Round) {
        let now = round.time_ms;
        self.now_ms = Some(now);
        let mut groups = BTreeMap::new();
        for g in round.groups {
            let mut previous = self.groups.remove(&g.group);
            let partitions = match g.partitions {
                None => previous
                    .as_mut()
                    .map(|p| std::mem::take(&mut p.partitions))
                    .unwrap_or_default(),
                Some(observed) => {
                    let mut old = previous.map(|p| p.partitions).unwrap_or_default();
                    let mut next = BTreeMap::new();
                    for p in observed {
                        let key = (p.topic.clone(), p.partition);
                        let state = old.remove(&key);
                        let state = self.push(state, &p, now, g.members > 0);
                        next.insert(key, state);
                    }
                    next
                }
            };
            groups.insert(
                g.group,
                GroupState {
                    state: g.state,
                    protocol_type: g.protocol_type,
                    protocol: g.protocol,
                    members: g.members,
                    partitions,
                },
            );
        }
        self.groups = groups;
    }

    fn push(
        &self,
        state: Option<PartitionState>,
        p: &PartitionObservation,
        now: i64,
        active: bool,
    ) -> PartitionState {
        let lag = p.log_end.saturating_sub(p.committed).max(0);
        let lag_ms = if lag == 0 {
            Some(0)
        } else {
            p.oldest_unconsumed_ms
                .map(|ts| now.saturating_sub(ts).max(0))
        };
        let sample = Sample {
            time_ms: now,
            committed: p.committed,
            log_end: p.log_end,
            lag,
            lag_ms,
            commit_time_ms: p.commit_time_ms,
            active,
        };
        let mut state = state.unwrap_or_else(|| PartitionState {
            samples: VecDeque::with_capacity(self.config.window),
            last_commit_ms: p.commit_time_ms.unwrap_or(now),
        });
        let moved = state
            .samples
            .back()
            .is_some_and(|prev| prev.committed != p.committed);
        state.last_commit_ms = match p.commit_time_ms {
            Some(t) => t.max(state.last_commit_ms),
            None if moved => now,
            None => state.last_commit_ms,
        };
        if state.samples.len() == self.config.window {
            state.samples.pop_front();
        }
        state.samples.push_back(sample);
        state
    }

    fn partition_view(&self, key: &(String, i32), p: &PartitionState) -> Option<PartitionView> {
        let last = p.samples.back()?;
        let now = self.now_ms.unwrap_or(last.time_ms);
        let (front, back) = p.samples.as_slices();
        let window: Vec<Sample> = front.iter().chain(back).copied().collect();
        Some(PartitionView {
            topic: key.0.clone(),
            partition: key.1,
            committed: last.committed,
            log_end: last.log_end,
            lag: last.lag,
            lag_ms: last.lag_ms,
            status: evaluate(&window, p.last_commit_ms, now, &self.config),
        })
    }

    fn view(&self, id: &str, g: &GroupState, with_partitions: bool) -> GroupView {
        let partitions: Vec<PartitionView> = g
            .partitions
            .iter()
            .filter_map(|(k, p)| self.partition_view(k, p))
            .collect();
        GroupView {
            group: id.to_owned(),
            state: g.state.clone(),
            protocol_type: g.protocol_type.clone(),
            protocol: g.protocol.clone(),
            members: g.members,
            total_lag: partitions.iter().map(|p| p.lag).sum(),
            status: partitions
                .iter()
                .map(|p| p.status)
                .max()
                .unwrap_or(Status::Ok),
            partitions: if with_partitions {
                partitions
            } else {
                Vec::new()
            },
        }
    }

    /// Every group, by id, without partitions.
    pub fn groups(&self) -> Vec<GroupView> {
        self.groups
            .iter()
            .map(|(id, g)| self.view(id, g, false))
            .collect()
    }

    /// One group with its partitions (by topic, then partition), if the last round saw it.
    pub fn group(&self, id: &str) -> Option<GroupView> {
        self.groups.get(id).map(|g| self.view(id, g, true))
    }

    /// Samples held, for tests of the memory bound.
    pub fn sample_count(&self) -> usize {
        self.groups
            .values()
            .flat_map(|g| g.partitions.values())
            .map(|p| p.samples.len())
            .sum()
    }
}

#[cfg(test)]
mod tests;
