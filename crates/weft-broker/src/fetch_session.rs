//! Incremental fetch sessions (KIP-227), sans io.
//!
//! A session remembers the partitions a consumer fetches and their fetch offsets, so an
//! incremental request lists only what changed and an incremental response only the
//! partitions with news (records, an error, or a changed high watermark / log start).
//!
//! `(session_id, epoch)` in a request:
//! - `(0, -1)`: full fetch, no session;
//! - `(0, 0)` or `(id, 0)`: (re)start a session (full fetch), answered with its new id;
//! - `(id, -1)`: close the session, full fetch without one;
//! - `(id, n > 0)`: incremental; `n` must be the epoch the session expects next.
//!
//! Bounds, so that clients cannot grow the cache without limit: at most `capacity` sessions
//! and [`MAX_SESSION_PARTITIONS`] partitions in each. A full cache evicts its least recently
//! used session only if that one has been idle for [`MIN_EVICTION_IDLE`] (Kafka's
//! `min.incremental.fetch.session.eviction.ms`); otherwise the request is served without a
//! session (id 0), as Kafka does. Session ids are random so that one client cannot guess
//! (and so close or advance) another's session.

use std::collections::BTreeMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;

/// Partitions one session may hold. An incremental request that would grow a session
/// beyond it ends the session (FETCH_SESSION_ID_NOT_FOUND: the client starts over with a
/// full fetch, which the fetch handler caps at the same number).
pub(crate) const MAX_SESSION_PARTITIONS: usize = 10_000;

/// How long a session must have been unused before a new one may evict it.
pub(crate) const MIN_EVICTION_IDLE: Duration = Duration::from_secs(120);

/// What the broker last told the client about a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sent {
    pub(crate) high_watermark: i64,
    pub(crate) log_start: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionPartition {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    pub(crate) fetch_offset: i64,
    pub(crate) max_bytes: i32,
    pub(crate) sent: Option<Sent>,
}

#[derive(Debug, Clone, Copy)]
struct Position {
    fetch_offset: i64,
    max_bytes: i32,
    sent: Option<Sent>,
}

/// A session's partitions, ordered by (topic, partition) so that a response names each
/// topic once.
type Partitions = BTreeMap<(Arc<str>, i32), Position>;

#[derive(Debug)]
struct Session {
    /// The epoch the next incremental request must carry.
    next_epoch: i32,
    partitions: Partitions,
    last_used: Instant,
}

/// A partition named in a request: (topic, partition, fetch offset, max bytes). The topic
/// name is shared by all partitions of a topic.
pub(crate) type Requested = (Arc<str>, i32, i64, i32);

/// How to serve one fetch request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Full fetch of the request's partitions; `session_id` 0 or a new session's id.
    Full {
        session_id: i32,
    },
    /// Incremental: the session's partitions (after the request's changes).
    Incremental {
        session_id: i32,
        partitions: Vec<SessionPartition>,
    },
    Error(ResponseError),
}

pub(crate) struct Sessions {
    map: std::collections::HashMap<i32, Session>,
    /// Seeds session ids: random per process.
    ids: RandomState,
    counter: u64,
    capacity: usize,
}

fn next_epoch(e: i32) -> i32 {
    if e == i32::MAX { 1 } else { e + 1 }
}

impl Sessions {
    pub(crate) fn new(capacity: usize) -> Sessions {
        Sessions {
            map: std::collections::HashMap::new(),
            ids: RandomState::new(),
            counter: 0,
            capacity,
        }
    }

    /// A random positive id not in use.
    fn fresh_id(&mut self) -> i32 {
        loop {
            self.counter = self.counter.wrapping_add(1);
            let id = (self.ids.hash_one(self.counter) as i32) & i32::MAX;
            if id != 0 && !self.map.contains_key(&id) {
                return id;
            }
        }
    }

    fn new_session(&mut self, requested: &[Requested], now: Instant) -> i32 {
        if self.capacity == 0 || requested.len() > MAX_SESSION_PARTITIONS {
            return 0;
        }
        if self.map.len() >= self.capacity {
            let lru = self
                .map
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(&id, s)| (id, s.last_used));
            match lru {
                Some((id, used)) if now.saturating_duration_since(used) >= MIN_EVICTION_IDLE => {
                    self.map.remove(&id);
                }
                // Every session is in recent use: serve this client without one.
                _ => return 0,
            }
        }
        let id = self.fresh_id();
        let partitions = requested
            .iter()
            .map(|(topic, partition, fetch_offset, max_bytes)| {
                (
                    (Arc::clone(topic), *partition),
                    Position {
                        fetch_offset: *fetch_offset,
                        max_bytes: *max_bytes,
                        sent: None,
                    },
                )
            })
            .collect();
        self.map.insert(
            id,
            Session {
                next_epoch: 1,
                partitions,
                last_used: now,
            },
        );
        id
    }

    /// Decides how to serve a request and applies its changes to the session.
    pub(crate) fn plan(
        &mut self,
        session_id: i32,
        epoch: i32,
        requested: &[Requested],
        forgotten: &[(Arc<str>, i32)],
        now: Instant,
    ) -> Plan {
        match (session_id, epoch) {
            (0, -1) => Plan::Full { session_id: 0 },
            (_, 0) => {
                if session_id != 0 {
                    self.map.remove(&session_id);
                }
                Plan::Full {
                    session_id: self.new_session(requested, now),
                }
            }
            (id, -1) => {
                self.map.remove(&id);
                Plan::Full { session_id: 0 }
            }
            (0, _) => Plan::Error(ResponseError::InvalidFetchSessionEpoch),
            (id, epoch) => {
                let Some(s) = self.map.get_mut(&id) else {
                    return Plan::Error(ResponseError::FetchSessionIdNotFound);
                };
                if epoch != s.next_epoch {
                    return Plan::Error(ResponseError::InvalidFetchSessionEpoch);
                }
                s.next_epoch = next_epoch(epoch);
                s.last_used = now;
                for (topic, partition) in forgotten {
                    s.partitions.remove(&(Arc::clone(topic), *partition));
                }
                for (topic, partition, fetch_offset, max_bytes) in requested {
                    let p = s
                        .partitions
                        .entry((Arc::clone(topic), *partition))
                        .or_insert(Position {
                            fetch_offset: *fetch_offset,
                            max_bytes: *max_bytes,
                            sent: None,
                        });
                    p.fetch_offset = *fetch_offset;
                    p.max_bytes = *max_bytes;
                }
                if s.partitions.len() > MAX_SESSION_PARTITIONS {
                    self.map.remove(&id);
                    return Plan::Error(ResponseError::FetchSessionIdNotFound);
                }
                Plan::Incremental {
                    session_id: id,
                    partitions: s
                        .partitions
                        .iter()
                        .map(|((topic, partition), p)| SessionPartition {
                            topic: Arc::clone(topic),
                            partition: *partition,
                            fetch_offset: p.fetch_offset,
                            max_bytes: p.max_bytes,
                            sent: p.sent,
                        })
                        .collect(),
                }
            }
        }
    }

    /// Notes what a response told the client.
    pub(crate) fn record_sent(&mut self, session_id: i32, sent: &[(Arc<str>, i32, Sent)]) {
        let Some(s) = self.map.get_mut(&session_id) else {
            return;
        };
        for (topic, partition, what) in sent {
            if let Some(p) = s.partitions.get_mut(&(Arc::clone(topic), *partition)) {
                p.sent = Some(*what);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(topic: &str, p: i32, offset: i64) -> Requested {
        (Arc::from(topic), p, offset, 1024)
    }

    #[test]
    fn session_lifecycle() {
        let now = Instant::now();
        let mut s = Sessions::new(2);
        assert_eq!(
            s.plan(0, -1, &[req("a", 0, 0)], &[], now),
            Plan::Full { session_id: 0 }
        );
        let Plan::Full { session_id: id } =
            s.plan(0, 0, &[req("a", 0, 0), req("a", 1, 5)], &[], now)
        else {
            panic!("expected a new session")
        };
        assert_ne!(id, 0);
        // Incremental: only the changed partition is named; the session keeps the other.
        let Plan::Incremental { partitions, .. } = s.plan(id, 1, &[req("a", 1, 9)], &[], now)
        else {
            panic!("expected incremental")
        };
        let offsets: Vec<_> = partitions
            .iter()
            .map(|p| (p.partition, p.fetch_offset))
            .collect();
        assert_eq!(offsets, vec![(0, 0), (1, 9)]);
        // Wrong epoch, unknown id.
        assert_eq!(
            s.plan(id, 1, &[], &[], now),
            Plan::Error(ResponseError::InvalidFetchSessionEpoch)
        );
        assert_eq!(
            s.plan(id + 100, 1, &[], &[], now),
            Plan::Error(ResponseError::FetchSessionIdNotFound)
        );
        // Forget a partition, add another topic.
        let Plan::Incremental { partitions, .. } =
            s.plan(id, 2, &[req("b", 0, 1)], &[("a".into(), 0)], now)
        else {
            panic!("expected incremental")
        };
        let names: Vec<_> = partitions
            .iter()
            .map(|p| (&*p.topic, p.partition))
            .collect();
        assert_eq!(names, vec![("a", 1), ("b", 0)]);
        // Close.
        assert_eq!(s.plan(id, -1, &[], &[], now), Plan::Full { session_id: 0 });
        assert_eq!(
            s.plan(id, 3, &[], &[], now),
            Plan::Error(ResponseError::FetchSessionIdNotFound)
        );
    }

    #[test]
    fn a_full_cache_evicts_only_a_session_idle_long_enough() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut s = Sessions::new(2);
        let new = |s: &mut Sessions, now| match s.plan(0, 0, &[], &[], now) {
            Plan::Full { session_id } => session_id,
            other => panic!("expected a full plan, got {other:?}"),
        };
        let a = new(&mut s, at(0));
        let b = new(&mut s, at(1));
        assert!(a != 0 && b != 0 && a != b);
        // Full, and both used recently: no session for the newcomer, nobody evicted.
        assert_eq!(new(&mut s, at(60)), 0);
        assert_eq!(s.len(), 2);
        // `a` idle long enough: evicted for `c`; `b` (used since) stays.
        assert!(matches!(
            s.plan(b, 1, &[], &[], at(100)),
            Plan::Incremental { .. }
        ));
        let c = new(&mut s, at(130));
        assert_ne!(c, 0);
        assert_eq!(s.len(), 2);
        assert_eq!(
            s.plan(a, 1, &[], &[], at(130)),
            Plan::Error(ResponseError::FetchSessionIdNotFound)
        );
        assert!(matches!(
            s.plan(b, 2, &[], &[], at(130)),
            Plan::Incremental { .. }
        ));
        assert!(matches!(
            s.plan(c, 1, &[], &[], at(130)),
            Plan::Incremental { .. }
        ));
    }

    #[test]
    fn session_ids_are_not_sequential() {
        let now = Instant::now();
        let mut s = Sessions::new(100);
        let ids: Vec<i32> = (0..50)
            .map(|_| match s.plan(0, 0, &[], &[], now) {
                Plan::Full { session_id } => session_id,
                other => panic!("{other:?}"),
            })
            .collect();
        assert!(ids.iter().all(|&id| id > 0));
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        assert!(
            ids.windows(2).any(|w| w[1] != w[0] + 1),
            "sequential ids: {ids:?}"
        );
    }

    #[test]
    fn sessions_are_capped_in_partitions() {
        let now = Instant::now();
        let mut s = Sessions::new(10);
        let topic: Arc<str> = Arc::from("t");
        let many: Vec<Requested> = (0..=MAX_SESSION_PARTITIONS as i32)
            .map(|p| (Arc::clone(&topic), p, 0, 1))
            .collect();
        // Too many for a session: served without one.
        assert_eq!(s.plan(0, 0, &many, &[], now), Plan::Full { session_id: 0 });
        // Growing a session beyond the cap ends it.
        let Plan::Full { session_id: id } = s.plan(0, 0, &many[..MAX_SESSION_PARTITIONS], &[], now)
        else {
            panic!("expected a session")
        };
        assert_ne!(id, 0);
        assert_eq!(
            s.plan(id, 1, &many[MAX_SESSION_PARTITIONS..], &[], now),
            Plan::Error(ResponseError::FetchSessionIdNotFound)
        );
        assert_eq!(s.len(), 0);
    }
}
