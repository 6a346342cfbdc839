//! Per-partition contiguous-completion tracking (sans io): which offset may be committed.
//!
//! Records of a partition are handed out in offset order and finish in any order (different
//! keys run concurrently). The committable offset is one past the highest offset `o` such
//! that `o` and every record handed out before it have finished — never past a record still
//! running or failed-and-pending, so a crash re-delivers it (at-least-once).

use std::collections::BTreeMap;

#[derive(Debug, Default, Clone)]
pub struct OffsetTracker {
    /// Handed-out offsets not yet committable → whether they finished.
    pending: BTreeMap<i64, bool>,
    /// Highest offset handed out.
    last_dispatched: Option<i64>,
    /// One past the last offset of the finished prefix.
    committable: Option<i64>,
}

impl OffsetTracker {
    pub fn new() -> OffsetTracker {
        OffsetTracker::default()
    }

    /// Records that `offset` was handed to a handler. Returns false (and records nothing) for
    /// an offset not above every one handed out before — a re-delivery that must not run
    /// twice concurrently.
    pub fn dispatched(&mut self, offset: i64) -> bool {
        if self.last_dispatched.is_some_and(|last| offset <= last) {
            return false;
        }
        self.last_dispatched = Some(offset);
        self.pending.insert(offset, false);
        true
    }

    /// Records that `offset` finished (success, or handed to a retry topic / DLQ). Returns
    /// whether the committable offset moved.
    pub fn completed(&mut self, offset: i64) -> bool {
        match self.pending.get_mut(&offset) {
            Some(done) => *done = true,
            None => return false,
        }
        let mut moved = false;
        while let Some(entry) = self.pending.first_entry() {
            if !*entry.get() {
                break;
            }
            let (o, _) = entry.remove_entry();
            self.committable = Some(o + 1);
            moved = true;
        }
        moved
    }

    /// The offset to commit (the next record to read after a restart), if any record
    /// finished.
    pub fn committable(&self) -> Option<i64> {
        self.committable
    }

    /// Records handed out and not yet in the finished prefix.
    pub fn outstanding(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn prefix_only() {
        let mut t = OffsetTracker::new();
        for o in [10, 11, 13, 14] {
            assert!(t.dispatched(o));
        }
        assert!(!t.dispatched(12), "below the last handed-out offset");
        assert!(!t.completed(11));
        assert_eq!(t.committable(), None);
        assert!(t.completed(10));
        assert_eq!(t.committable(), Some(12));
        assert!(!t.completed(14));
        assert_eq!(t.committable(), Some(12));
        assert!(t.completed(13));
        assert_eq!(t.committable(), Some(15));
        assert_eq!(t.outstanding(), 0);
        assert!(!t.completed(99), "never handed out");
    }

    proptest! {
        /// Against a model: committable is one past the longest finished prefix of the
        /// handed-out offsets, whatever the completion order.
        #[test]
        fn matches_model(gaps in prop::collection::vec(1i64..4, 1..60), order in any::<prop::sample::Index>(), seed in any::<u64>()) {
            let mut offsets = Vec::new();
            let mut o = 0;
            for g in &gaps { o += g; offsets.push(o); }
            let mut t = OffsetTracker::new();
            for &o in &offsets { prop_assert!(t.dispatched(o)); }
            // A deterministic shuffle of the completion order.
            let mut done_order = offsets.clone();
            let mut s = seed | 1;
            for i in (1..done_order.len()).rev() {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                done_order.swap(i, (s % (i as u64 + 1)) as usize);
            }
            let stop = order.index(done_order.len() + 1);
            let finished: std::collections::HashSet<i64> = done_order[..stop].iter().copied().collect();
            for o in &done_order[..stop] { t.completed(*o); }
            let prefix = offsets.iter().take_while(|o| finished.contains(o)).last().map(|o| o + 1);
            prop_assert_eq!(t.committable(), prefix);
            prop_assert_eq!(t.outstanding(), offsets.iter().skip_while(|o| finished.contains(o)).count());
        }
    }
}
