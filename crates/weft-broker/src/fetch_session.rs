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

use std::collections::HashMap;
use std::time::Instant;

use kafka_protocol::ResponseError;

/// What the broker last told the client about a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sent {
    pub(crate) high_watermark: i64,
    pub(crate) log_start: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionPartition {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) fetch_offset: i64,
    pub(crate) max_bytes: i32,
    pub(crate) sent: Option<Sent>,
}

#[derive(Debug)]
struct Session {
    /// The epoch the next incremental request must carry.
    next_epoch: i32,
    partitions: Vec<SessionPartition>,
    last_used: Instant,
}

/// A partition named in a request: (topic, partition, fetch offset, max bytes).
pub(crate) type Requested = (String, i32, i64, i32);

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
    map: HashMap<i32, Session>,
    next_id: i32,
    capacity: usize,
}

fn next_epoch(e: i32) -> i32 {
    if e == i32::MAX { 1 } else { e + 1 }
}

impl Sessions {
    pub(crate) fn new(capacity: usize) -> Sessions {
        Sessions {
            map: HashMap::new(),
            next_id: 1,
            capacity,
        }
    }

    fn new_session(&mut self, requested: &[Requested], now: Instant) -> i32 {
        if self.capacity == 0 {
            return 0;
        }
        if self.map.len() >= self.capacity
            && let Some((&oldest, _)) = self.map.iter().min_by_key(|(_, s)| s.last_used)
        {
            self.map.remove(&oldest);
        }
        let id = self.next_id;
        self.next_id = if self.next_id == i32::MAX {
            1
        } else {
            self.next_id + 1
        };
        let partitions = requested
            .iter()
            .map(
                |(topic, partition, fetch_offset, max_bytes)| SessionPartition {
                    topic: topic.clone(),
                    partition: *partition,
                    fetch_offset: *fetch_offset,
                    max_bytes: *max_bytes,
                    sent: None,
                },
            )
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
        forgotten: &[(String, i32)],
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
                s.partitions.retain(|p| {
                    !forgotten
                        .iter()
                        .any(|(t, n)| *t == p.topic && *n == p.partition)
                });
                for (topic, partition, fetch_offset, max_bytes) in requested {
                    match s
                        .partitions
                        .iter_mut()
                        .find(|p| p.topic == *topic && p.partition == *partition)
                    {
                        Some(p) => {
                            p.fetch_offset = *fetch_offset;
                            p.max_bytes = *max_bytes;
                        }
                        None => s.partitions.push(SessionPartition {
                            topic: topic.clone(),
                            partition: *partition,
                            fetch_offset: *fetch_offset,
                            max_bytes: *max_bytes,
                            sent: None,
                        }),
                    }
                }
                Plan::Incremental {
                    session_id: id,
                    partitions: s.partitions.clone(),
                }
            }
        }
    }

    /// Notes what a response told the client.
    pub(crate) fn record_sent(&mut self, session_id: i32, sent: &[(String, i32, Sent)]) {
        let Some(s) = self.map.get_mut(&session_id) else {
            return;
        };
        for (topic, partition, what) in sent {
            if let Some(p) = s
                .partitions
                .iter_mut()
                .find(|p| p.topic == *topic && p.partition == *partition)
            {
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
        (topic.to_owned(), p, offset, 1024)
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
            .map(|p| (p.topic.as_str(), p.partition))
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
    fn the_cache_evicts_the_least_recently_used() {
        let t0 = Instant::now();
        let later = t0 + std::time::Duration::from_secs(1);
        let mut s = Sessions::new(2);
        let Plan::Full { session_id: a } = s.plan(0, 0, &[], &[], t0) else {
            panic!()
        };
        let Plan::Full { session_id: b } = s.plan(0, 0, &[], &[], later) else {
            panic!()
        };
        let Plan::Full { session_id: c } = s.plan(0, 0, &[], &[], later) else {
            panic!()
        };
        assert_eq!(s.len(), 2);
        assert_eq!(
            s.plan(a, 1, &[], &[], later),
            Plan::Error(ResponseError::FetchSessionIdNotFound)
        );
        assert!(matches!(
            s.plan(b, 1, &[], &[], later),
            Plan::Incremental { .. }
        ));
        assert!(matches!(
            s.plan(c, 1, &[], &[], later),
            Plan::Incremental { .. }
        ));
    }
}
