//! Property tests of a partition against a simple in-memory model.

mod common;

use std::collections::HashMap;

use common::*;
use proptest::prelude::*;
use weft_log::batch::{Compression, Record};
use weft_log::{CleanupPolicy, Clock};

#[derive(Debug, Clone)]
enum Op {
    Append {
        records: Vec<(u8, Option<u16>, i64)>,
        codec: u8,
    },
    Read {
        at: u16,
        max_bytes: u16,
    },
    Timestamp {
        target: i64,
    },
    DeleteRecords {
        at: u16,
    },
    Reopen,
    Crash,
    Advance {
        ms: i64,
    },
    Clean,
    Retention {
        ms: i64,
        bytes: Option<u16>,
    },
}

fn op(compacting: bool) -> impl Strategy<Value = Op> {
    let value = if compacting {
        prop::option::weighted(0.8, 0u16..300).boxed()
    } else {
        (0u16..300).prop_map(Some).boxed()
    };
    let append = (
        prop::collection::vec((0u8..6, value, 0i64..1_000), 1..5),
        0u8..5,
    )
        .prop_map(|(records, codec)| Op::Append { records, codec });
    prop_oneof![
        6 => append,
        3 => (any::<u16>(), 1u16..3_000).prop_map(|(at, max_bytes)| Op::Read { at, max_bytes }),
        2 => (-10i64..1_100).prop_map(|target| Op::Timestamp { target }),
        1 => any::<u16>().prop_map(|at| Op::DeleteRecords { at }),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
        1 => (0i64..2_000).prop_map(|ms| Op::Advance { ms }),
        2 => Just(Op::Clean),
        1 => (0i64..3_000, prop::option::of(0u16..4_000))
            .prop_map(|(ms, bytes)| Op::Retention { ms, bytes }),
    ]
}

fn codec(c: u8) -> Compression {
    [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ][c as usize % 5]
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct M {
    offset: u64,
    ts: i64,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
}

fn simplify(r: &Record) -> M {
    M {
        offset: r.offset,
        ts: r.timestamp,
        key: r.key.as_ref().map(|k| k.to_vec()).unwrap_or_default(),
        value: r.value.as_ref().map(|v| v.to_vec()),
    }
}

struct Model {
    records: Vec<M>,
    log_start: u64,
    log_end: u64,
}

impl Model {
    fn visible(&self) -> Vec<M> {
        self.records
            .iter()
            .filter(|r| r.offset >= self.log_start)
            .cloned()
            .collect()
    }
}

fn run(ops: Vec<Op>, segment_bytes: u64, policy: CleanupPolicy) {
    let dir = tempfile::tempdir().expect("tempdir");
    let clk = clock(1_000_000);
    let mut cfg = small_config(segment_bytes);
    cfg.cleanup_policy = policy;
    cfg.delete_retention_ms = 500;
    let mut p = open(dir.path(), cfg.clone(), &clk);
    let mut m = Model {
        records: Vec::new(),
        log_start: 0,
        log_end: 0,
    };
    for op in ops {
        match op {
            Op::Append { records, codec: c } => {
                let now = clk.now_ms();
                let recs: Vec<Record> = records
                    .iter()
                    .map(|(k, v, dt)| {
                        let value = v.map(|n| vec![*k; n as usize]);
                        rec(Some(&[*k]), value.as_deref(), now - 1_000 + dt)
                    })
                    .collect();
                let mut b = make_batch(&recs, codec(c));
                let info = p.append(&mut b).expect("append");
                assert_eq!(info.base_offset, m.log_end);
                for (i, r) in recs.iter().enumerate() {
                    m.records.push(M {
                        offset: m.log_end + i as u64,
                        ..simplify(r)
                    });
                }
                m.log_end += recs.len() as u64;
            }
            Op::Read { at, max_bytes } => {
                let span = m.log_end - m.log_start + 1;
                let offset = m.log_start + u64::from(at) % span;
                let got = p.read_bytes(offset, usize::from(max_bytes)).expect("read");
                if offset == m.log_end {
                    assert!(got.is_empty());
                    continue;
                }
                // Whole batches; the first holds the first visible record >= offset.
                let mut at_byte = 0;
                let mut batches = 0;
                let mut seen = Vec::new();
                while at_byte < got.len() {
                    let h = weft_log::batch::validate(
                        &got[at_byte
                            ..at_byte
                                + weft_log::batch::BatchHeader::parse(&got[at_byte..])
                                    .expect("header")
                                    .total_len()],
                    )
                    .expect("whole valid batch");
                    if batches == 0 {
                        assert!(
                            h.last_offset() >= offset,
                            "first batch ends before {offset}"
                        );
                    }
                    let end = at_byte + h.total_len();
                    seen.extend(weft_log::batch::records(&got[at_byte..end]).expect("records"));
                    at_byte = end;
                    batches += 1;
                }
                assert!(batches == 1 || got.len() <= usize::from(max_bytes));
                let want: Vec<M> = m
                    .visible()
                    .into_iter()
                    .filter(|r| r.offset >= offset)
                    .collect();
                let seen: Vec<M> = seen
                    .iter()
                    .map(simplify)
                    .filter(|r| r.offset >= offset)
                    .collect();
                // A compacted batch keeps its offset span, so it may hold no record at or
                // above `offset` yet still be the batch that "contains" it; the consumer then
                // moves past it. What was returned must be a prefix of the model.
                assert!(!got.is_empty(), "read at {offset} returned nothing");
                assert_eq!(seen[..], want[..seen.len()], "read at {offset}");
            }
            Op::Timestamp { target } => {
                let target = clk.now_ms() - 1_000 + target;
                let want = m
                    .visible()
                    .into_iter()
                    .find(|r| r.ts >= target)
                    .map(|r| (r.offset, r.ts));
                let got = p
                    .offset_for_timestamp(target)
                    .expect("lookup")
                    .map(|t| (t.offset, t.timestamp));
                assert_eq!(got, want, "timestamp {target}");
            }
            Op::DeleteRecords { at } => {
                let offset = u64::from(at) % (m.log_end + 1);
                let got = p.delete_records_before(offset).expect("delete records");
                m.log_start = m.log_start.max(offset);
                assert_eq!(got, m.log_start);
            }
            Op::Reopen => {
                p.close().expect("close");
                drop(p);
                p = open(dir.path(), cfg.clone(), &clk);
            }
            Op::Crash => {
                drop(p); // no close: no trim, no final checkpoint
                p = open(dir.path(), cfg.clone(), &clk);
            }
            Op::Advance { ms } => clk.advance(ms),
            Op::Retention { ms, bytes } => {
                let mut c = cfg.clone();
                c.retention_ms = Some(ms);
                c.retention_bytes = bytes.map(u64::from);
                p.set_config(c);
                let before = p.log_start_offset();
                p.enforce_retention().expect("retention");
                let after = p.log_start_offset();
                assert!(after >= before);
                if policy.deletes() {
                    // Only whole closed segments go, oldest first: nothing at or above the
                    // active segment, and when only time applies, nothing newer than the
                    // horizon is ever deleted.
                    assert!(after <= p.state().active_base_offset.max(before));
                    if bytes.is_none() {
                        let horizon = clk.now_ms() - ms;
                        let newest_deleted = m
                            .records
                            .iter()
                            .filter(|r| r.offset >= before && r.offset < after)
                            .map(|r| r.ts)
                            .max();
                        assert!(
                            newest_deleted.is_none_or(|t| t < horizon),
                            "deleted a record newer than {horizon}"
                        );
                    }
                } else {
                    assert_eq!(
                        after, before,
                        "retention must not delete from a compact-only log"
                    );
                }
                m.log_start = after;
                p.set_config(cfg.clone());
            }
            Op::Clean => {
                let active_base = p.state().active_base_offset;
                p.compact().expect("compact");
                if policy.compacts() {
                    let now = clk.now_ms();
                    // Compactable: closed segments (lag is 0 and no record is in the future).
                    let mut last: HashMap<Vec<u8>, u64> = HashMap::new();
                    for r in m.records.iter().filter(|r| r.offset < active_base) {
                        last.insert(r.key.clone(), r.offset);
                    }
                    m.records.retain(|r| {
                        r.offset >= active_base
                            || (last[&r.key] == r.offset
                                && (r.value.is_some() || now - r.ts < cfg.delete_retention_ms))
                    });
                }
            }
        }
        assert_eq!(p.log_end_offset(), m.log_end);
        assert_eq!(p.log_start_offset(), m.log_start);
    }
    let all: Vec<M> = read_all(&p, 0).iter().map(simplify).collect();
    assert_eq!(all, m.visible());
    assert!(all.windows(2).all(|w| w[0].offset < w[1].offset));
}

proptest! {
    // PROPTEST_CASES raises the count for a longer local run.
    #![proptest_config(ProptestConfig { cases: cases(48), ..ProptestConfig::default() })]

    #[test]
    fn append_read_lookup_match_the_model(
        ops in prop::collection::vec(op(false), 1..60),
        segment_bytes in 200u64..3_000,
    ) {
        run(ops, segment_bytes, CleanupPolicy::Delete);
    }

    #[test]
    fn compaction_matches_the_model(
        ops in prop::collection::vec(op(true), 1..60),
        segment_bytes in 200u64..3_000,
    ) {
        run(ops, segment_bytes, CleanupPolicy::Compact);
    }
}

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
