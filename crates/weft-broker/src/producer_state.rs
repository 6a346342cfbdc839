//! Idempotent-producer state of one partition, sans io.
//!
//! Per producer id: its epoch and the last five batches (first/last sequence, first/last
//! offset). [`ProducerTable::check`] decides what to do with an incoming batch;
//! [`ProducerTable::record`] notes an appended one. The same `record` replays batch headers
//! read from the log tail at startup, so the table is rebuilt from a snapshot plus the log.
//!
//! Snapshot format (`producers/<topic>-<partition>.snapshot`, version 1):
//! ```text
//! weft-broker producers 1
//! offset <every batch below this offset is reflected>
//! p <producer id> <epoch> <last append ms> <first_seq>:<last_seq>:<first_offset>:<last_offset> ...
//! end
//! ```

use std::collections::{HashMap, VecDeque};

use kafka_protocol::ResponseError;

/// Batches remembered per producer, as Kafka does.
const REMEMBERED_BATCHES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchMeta {
    first_seq: i32,
    last_seq: i32,
    first_offset: u64,
    last_offset: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ProducerEntry {
    epoch: i16,
    last_append_ms: i64,
    batches: VecDeque<BatchMeta>,
}

/// What to do with an incoming batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    Append,
    /// A retry of a batch already appended: answer with its offsets, append nothing.
    Duplicate {
        first_offset: u64,
        last_offset: u64,
    },
    Reject(ResponseError),
}

/// The identity of a batch, from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchId {
    pub(crate) producer_id: i64,
    pub(crate) epoch: i16,
    pub(crate) first_seq: i32,
    /// Records in the batch minus one (`last_offset_delta`).
    pub(crate) last_offset_delta: i32,
}

impl BatchId {
    fn last_seq(&self) -> i32 {
        // Sequences wrap from i32::MAX to 0.
        ((i64::from(self.first_seq) + i64::from(self.last_offset_delta))
            % (i64::from(i32::MAX) + 1)) as i32
    }
}

fn next_seq(s: i32) -> i32 {
    if s == i32::MAX { 0 } else { s + 1 }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ProducerTable {
    producers: HashMap<i64, ProducerEntry>,
    /// Set when the table changed since the last snapshot.
    dirty: bool,
}

impl ProducerTable {
    pub(crate) fn check(&self, b: &BatchId) -> Check {
        if b.producer_id < 0 {
            return Check::Append;
        }
        let Some(e) = self.producers.get(&b.producer_id) else {
            // Unknown here (new producer, or its state expired or was deleted with the
            // records): accept whatever sequence it continues with.
            return Check::Append;
        };
        if b.epoch < e.epoch {
            return Check::Reject(ResponseError::InvalidProducerEpoch);
        }
        if b.epoch > e.epoch {
            return if b.first_seq == 0 {
                Check::Append
            } else {
                Check::Reject(ResponseError::OutOfOrderSequenceNumber)
            };
        }
        let last_seq = b.last_seq();
        if let Some(d) = e
            .batches
            .iter()
            .find(|m| m.first_seq == b.first_seq && m.last_seq == last_seq)
        {
            return Check::Duplicate {
                first_offset: d.first_offset,
                last_offset: d.last_offset,
            };
        }
        match e.batches.back() {
            Some(last) if b.first_seq != next_seq(last.last_seq) => {
                Check::Reject(ResponseError::OutOfOrderSequenceNumber)
            }
            _ => Check::Append,
        }
    }

    /// The epoch this partition knows for `producer_id`.
    pub(crate) fn epoch(&self, producer_id: i64) -> Option<i16> {
        self.producers.get(&producer_id).map(|e| e.epoch)
    }

    /// Notes an appended batch (or one replayed from the log).
    pub(crate) fn record(&mut self, b: &BatchId, first_offset: u64, last_offset: u64, now_ms: i64) {
        if b.producer_id < 0 {
            return;
        }
        let e = self
            .producers
            .entry(b.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: b.epoch,
                last_append_ms: now_ms,
                batches: VecDeque::new(),
            });
        if b.epoch != e.epoch {
            e.epoch = b.epoch;
            e.batches.clear();
        }
        e.last_append_ms = e.last_append_ms.max(now_ms);
        e.batches.push_back(BatchMeta {
            first_seq: b.first_seq,
            last_seq: b.last_seq(),
            first_offset,
            last_offset,
        });
        while e.batches.len() > REMEMBERED_BATCHES {
            e.batches.pop_front();
        }
        self.dirty = true;
    }

    /// Drops producers whose last append is older than `now_ms - expiration_ms`.
    pub(crate) fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers
            .retain(|_, e| now_ms.saturating_sub(e.last_append_ms) < expiration_ms);
        let removed = before - self.producers.len();
        if removed > 0 {
            self.dirty = true;
        }
        removed
    }

    /// Forgets batches below the log start (after DeleteRecords or retention) so a duplicate
    /// never answers with an offset that no longer exists.
    pub(crate) fn truncate_below(&mut self, log_start: u64) {
        for e in self.producers.values_mut() {
            let before = e.batches.len();
            e.batches.retain(|m| m.last_offset >= log_start);
            self.dirty |= before != e.batches.len();
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.producers.len()
    }

    pub(crate) fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    pub(crate) fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// The snapshot body (without header and `end`), covering every batch below `offset`.
    pub(crate) fn encode_snapshot(&self, offset: u64) -> String {
        let mut out = format!("offset {offset}\n");
        let mut ids: Vec<_> = self.producers.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let e = &self.producers[&id];
            out.push_str(&format!("p {id} {} {}", e.epoch, e.last_append_ms));
            for m in &e.batches {
                out.push_str(&format!(
                    " {}:{}:{}:{}",
                    m.first_seq, m.last_seq, m.first_offset, m.last_offset
                ));
            }
            out.push('\n');
        }
        out
    }

    /// Parses a snapshot body; returns the table and the offset it covers.
    pub(crate) fn decode_snapshot(lines: &[String]) -> Result<(ProducerTable, u64), String> {
        let mut it = lines.iter();
        let offset = it
            .next()
            .and_then(|l| l.strip_prefix("offset "))
            .and_then(|o| o.parse::<u64>().ok())
            .ok_or("missing offset line")?;
        let mut t = ProducerTable::default();
        for line in it {
            let mut f = line.split(' ');
            if f.next() != Some("p") {
                return Err(format!("bad line {line:?}"));
            }
            let mut num = || {
                f.next()
                    .and_then(|x| x.parse::<i64>().ok())
                    .ok_or(format!("bad line {line:?}"))
            };
            let id = num()?;
            let epoch = i16::try_from(num()?).map_err(|e| e.to_string())?;
            let last_append_ms = num()?;
            let mut batches = VecDeque::new();
            for b in f {
                let p: Vec<i64> = b.split(':').filter_map(|x| x.parse().ok()).collect();
                let [fs, ls, fo, lo] = p.as_slice() else {
                    return Err(format!("bad batch {b:?}"));
                };
                batches.push_back(BatchMeta {
                    first_seq: *fs as i32,
                    last_seq: *ls as i32,
                    first_offset: *fo as u64,
                    last_offset: *lo as u64,
                });
            }
            t.producers.insert(
                id,
                ProducerEntry {
                    epoch,
                    last_append_ms,
                    batches,
                },
            );
        }
        Ok((t, offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(pid: i64, epoch: i16, seq: i32, n: i32) -> BatchId {
        BatchId {
            producer_id: pid,
            epoch,
            first_seq: seq,
            last_offset_delta: n - 1,
        }
    }

    /// Drives a table through (batch, expected check) steps, appending on `Append` at the next
    /// offset like the log would.
    fn check(steps: &[(BatchId, Check)]) {
        let mut t = ProducerTable::default();
        let mut next_offset = 0u64;
        for (i, (batch, want)) in steps.iter().enumerate() {
            let got = t.check(batch);
            assert_eq!(got, *want, "step {i}: {batch:?}");
            if got == Check::Append {
                let last = next_offset + batch.last_offset_delta as u64;
                t.record(batch, next_offset, last, 0);
                next_offset = last + 1;
            }
        }
    }

    #[test]
    fn sequences_dedup_and_epochs() {
        use Check::*;
        check(&[
            (b(7, 0, 0, 10), Append),
            (b(7, 0, 10, 5), Append),
            // retry of the first batch: original offsets
            (
                b(7, 0, 0, 10),
                Duplicate {
                    first_offset: 0,
                    last_offset: 9,
                },
            ),
            (
                b(7, 0, 10, 5),
                Duplicate {
                    first_offset: 10,
                    last_offset: 14,
                },
            ),
            // gap
            (
                b(7, 0, 20, 1),
                Reject(ResponseError::OutOfOrderSequenceNumber),
            ),
            (b(7, 0, 15, 1), Append),
            // stale epoch
            (b(7, -1, 16, 1), Reject(ResponseError::InvalidProducerEpoch)),
            // bumped epoch must restart at 0
            (
                b(7, 1, 16, 1),
                Reject(ResponseError::OutOfOrderSequenceNumber),
            ),
            (b(7, 1, 0, 1), Append),
            (b(7, 0, 1, 1), Reject(ResponseError::InvalidProducerEpoch)),
            // non-idempotent producers are never deduplicated
            (b(-1, -1, -1, 3), Append),
            (b(-1, -1, -1, 3), Append),
            // another producer is independent
            (b(8, 0, 42, 1), Append),
        ]);
    }

    #[test]
    fn only_five_batches_are_remembered_and_sequences_wrap() {
        let mut t = ProducerTable::default();
        for i in 0..7 {
            t.record(&b(1, 0, i, 1), i as u64, i as u64, 0);
        }
        assert_eq!(
            t.check(&b(1, 0, 1, 1)),
            Check::Reject(ResponseError::OutOfOrderSequenceNumber)
        );
        assert_eq!(
            t.check(&b(1, 0, 2, 1)),
            Check::Duplicate {
                first_offset: 2,
                last_offset: 2
            }
        );
        let mut t = ProducerTable::default();
        t.record(&b(1, 0, i32::MAX - 1, 2), 0, 1, 0);
        assert_eq!(t.check(&b(1, 0, 0, 1)), Check::Append);
    }

    #[test]
    fn snapshot_round_trips_and_expiry() {
        let mut t = ProducerTable::default();
        t.record(&b(1, 3, 0, 2), 10, 11, 1000);
        t.record(&b(1, 3, 2, 2), 12, 13, 1001);
        t.record(&b(2, 0, 5, 1), 14, 14, 5000);
        let text = t.encode_snapshot(15);
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let (mut u, off) = ProducerTable::decode_snapshot(&lines).expect("decode");
        assert_eq!(off, 15);
        u.dirty = t.dirty;
        assert_eq!(u, t);
        assert_eq!(u.expire(6000, 2000), 1);
        assert_eq!(u.len(), 1);
        assert!(ProducerTable::decode_snapshot(&["p 1 2".to_owned()]).is_err());
    }

    mod model {
        use proptest::prelude::*;

        use super::super::*;

        /// (producer id, epoch, first sequence, last sequence)
        type Key = (i64, i16, i32, i32);

        /// A batch a producer may send: producer 0..3, epoch 0..3, first sequence near what
        /// it would send next, 1..4 records.
        fn batch() -> impl Strategy<Value = (i64, i16, i32, i32)> {
            (0i64..3, 0i16..3, 0i32..12, 1i32..4)
        }

        proptest! {
            /// Against a model that keeps every appended batch forever: an append is never
            /// answered as a duplicate of something else, a duplicate always carries the
            /// offsets of the original append, the newest five batches of the current epoch
            /// are always recognised, and snapshots round-trip exactly.
            #[test]
            fn table_agrees_with_the_full_history(ops in proptest::collection::vec(batch(), 1..200)) {
                let mut t = ProducerTable::default();
                // (pid, epoch, first_seq, last_seq) -> (first_offset, last_offset), in order
                let mut history: Vec<(Key, (u64, u64))> = Vec::new();
                let mut next_offset = 0u64;
                for (pid, epoch, seq, n) in ops {
                    let id = BatchId { producer_id: pid, epoch, first_seq: seq, last_offset_delta: n - 1 };
                    let key = (pid, epoch, seq, seq + n - 1);
                    match t.check(&id) {
                        Check::Append => {
                            let last = next_offset + (n - 1) as u64;
                            t.record(&id, next_offset, last, 0);
                            history.push((key, (next_offset, last)));
                            next_offset = last + 1;
                        }
                        Check::Duplicate { first_offset, last_offset } => {
                            let original = history.iter().rev().find(|(k, _)| *k == key).map(|(_, o)| *o);
                            prop_assert_eq!(original, Some((first_offset, last_offset)));
                        }
                        Check::Reject(_) => {}
                    }
                    // The newest five batches of this producer's current epoch are known.
                    let current: Vec<_> = history.iter().filter(|(k, _)| k.0 == pid && k.1 == epoch).collect();
                    let newest_epoch = history.iter().filter(|(k, _)| k.0 == pid).map(|(k, _)| k.1).next_back();
                    if newest_epoch == Some(epoch) {
                        for (k, o) in current.iter().rev().take(5) {
                            let again = BatchId { producer_id: k.0, epoch: k.1, first_seq: k.2, last_offset_delta: k.3 - k.2 };
                            prop_assert_eq!(t.check(&again), Check::Duplicate { first_offset: o.0, last_offset: o.1 });
                        }
                    }
                }
                let text = t.encode_snapshot(next_offset);
                let lines: Vec<String> = text.lines().map(str::to_owned).collect();
                let (mut back, offset) = ProducerTable::decode_snapshot(&lines).map_err(TestCaseError::fail)?;
                prop_assert_eq!(offset, next_offset);
                back.dirty = t.dirty;
                prop_assert_eq!(back, t);
            }
        }
    }
}
