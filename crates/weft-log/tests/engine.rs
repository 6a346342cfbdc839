//! Behaviour of one partition: append, read, lookups, bad input, durability, retention.

mod common;

use std::sync::Arc;

use common::*;
use weft_log::batch::{self, Compression};
use weft_log::{
    BatchError, CleanupPolicy, Durability, Error, Log, LogConfig, TimestampType, TopicPartition,
};

#[test]
fn offsets_are_assigned_and_reads_return_whole_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clk = clock(1_000);
    let p = open(dir.path(), small_config(1_000), &clk);
    let mut infos = Vec::new();
    for i in 0..30u8 {
        let recs: Vec<_> = (0..3)
            .map(|j| rec(Some(&[i]), Some(&[j; 40]), 100 + i64::from(i)))
            .collect();
        let mut b = make_batch(&recs, Compression::None);
        infos.push(p.append(&mut b).expect("append"));
    }
    assert_eq!(infos[0].base_offset, 0);
    assert_eq!(infos[29].last_offset, 89);
    assert_eq!(p.log_end_offset(), 90);
    assert!(
        p.state().segments > 3,
        "small segments must roll: {:?}",
        p.state()
    );
    // An offset in the middle of a batch returns that whole batch first.
    let region = p.read(46, 1).expect("read").expect("some");
    let bytes = region.read_to_bytes().expect("bytes");
    let h = batch::validate(&bytes).expect("exactly one whole batch");
    assert_eq!((h.base_offset, h.last_offset()), (45, 47));
    // max_bytes bounds the answer to whole batches.
    let bytes = p.read_bytes(0, 3 * h.total_len() + 10).expect("read");
    assert_eq!(bytes.len() % h.total_len(), 0);
    assert!(bytes.len() <= 3 * h.total_len());
    assert_eq!(read_all(&p, 0).len(), 90);
    assert!(p.read(90, 100).expect("at end").is_none());
    assert!(matches!(
        p.read(91, 100),
        Err(Error::OffsetBeyondLogEnd {
            requested: 91,
            log_end: 90
        })
    ));
}

#[test]
fn bad_batches_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clk = clock(1_000);
    let mut cfg = small_config(1 << 20);
    cfg.max_message_bytes = 400;
    let p = open(dir.path(), cfg, &clk);
    let mut good = make_batch(&[rec(Some(b"k"), Some(b"v"), 1)], Compression::None);
    p.append(&mut good.clone()).expect("append");
    let before = p.read_bytes(0, 1 << 20).expect("read");

    let mut crc = good.clone();
    let last = crc.len() - 1;
    crc[last] ^= 1;
    let mut magic = good.clone();
    magic[16] = 1;
    let mut short = good[..good.len() - 3].to_vec();
    let mut count = good.clone();
    count[57..61].copy_from_slice(&5i32.to_be_bytes());
    let fixed = batch::compute_crc(&count);
    count[17..21].copy_from_slice(&fixed.to_be_bytes());
    let mut big = make_batch(&[rec(Some(b"k"), Some(&[7; 500]), 1)], Compression::None);

    type Expect = dyn Fn(&Error) -> bool;
    let cases: Vec<(&str, &mut Vec<u8>, &Expect)> = vec![
        ("crc", &mut crc, &|e| {
            matches!(e, Error::InvalidBatch(BatchError::CrcMismatch { .. }))
        }),
        ("magic", &mut magic, &|e| {
            matches!(e, Error::InvalidBatch(BatchError::UnsupportedMagic(1)))
        }),
        ("truncated", &mut short, &|e| {
            matches!(e, Error::InvalidBatch(BatchError::LengthMismatch { .. }))
        }),
        ("count", &mut count, &|e| {
            matches!(e, Error::InvalidBatch(BatchError::InconsistentRecords(_)))
        }),
        ("size", &mut big, &|e| {
            matches!(e, Error::MessageTooLarge { max: 400, .. })
        }),
    ];
    for (name, b, want) in cases {
        let err = p.append(b).expect_err(name);
        assert!(want(&err), "{name}: unexpected {err:?}");
    }
    assert_eq!(p.log_end_offset(), 1);
    assert_eq!(p.read_bytes(0, 1 << 20).expect("read"), before);
    // The partition still accepts good batches with the next offset.
    assert_eq!(p.append(&mut good).expect("append").base_offset, 1);
}

#[test]
fn compacted_partitions_refuse_keyless_records_in_any_codec() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clk = clock(1_000);
    let mut cfg = small_config(1 << 20);
    cfg.cleanup_policy = CleanupPolicy::Compact;
    let p = open(dir.path(), cfg, &clk);
    for codec in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let mut b = make_batch(
            &[rec(Some(b"k"), Some(b"v"), 1), rec(None, Some(b"v"), 1)],
            codec,
        );
        assert!(
            matches!(p.append(&mut b), Err(Error::KeylessRecordInCompactedLog)),
            "{codec:?}"
        );
    }
    assert_eq!(p.log_end_offset(), 0);
}

#[test]
fn timestamp_lookups_find_the_first_record_at_or_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clk = clock(1_000);
    let p = open(dir.path(), small_config(600), &clk);
    // Timestamps go up and down; the answer is the first record in offset order.
    let ts = [10, 50, 20, 60, 30, 70, 70, 5, 80];
    for (i, t) in ts.iter().enumerate() {
        let mut b = make_batch(
            &[rec(Some(&[i as u8]), Some(&[0; 50]), *t)],
            Compression::Lz4,
        );
        p.append(&mut b).expect("append");
    }
    let check = |target: i64, want: Option<(u64, i64)>| {
        let got = p
            .offset_for_timestamp(target)
            .expect("lookup")
            .map(|t| (t.offset, t.timestamp));
        assert_eq!(got, want, "target {target}");
    };
    check(0, Some((0, 10)));
    check(15, Some((1, 50)));
    check(55, Some((3, 60)));
    check(61, Some((5, 70)));
    check(75, Some((8, 80)));
    check(81, None);
    let max = p.max_timestamp_offset().expect("max").expect("some");
    assert_eq!((max.offset, max.timestamp), (8, 80));
}

#[test]
fn log_append_time_stamps_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clk = clock(777_000);
    let mut cfg = small_config(1 << 20);
    cfg.timestamp_type = TimestampType::LogAppendTime;
    let p = open(dir.path(), cfg, &clk);
    let mut b = make_batch(&[rec(Some(b"k"), Some(b"v"), 5)], Compression::Snappy);
    let info = p.append(&mut b).expect("append");
    assert_eq!(info.log_append_time, Some(777_000));
    let r = read_all(&p, 0);
    assert_eq!(r[0].timestamp, 777_000);
}

#[test]
fn durability_policies_move_the_durable_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clk = clock(1);
    let mut cfg = small_config(1 << 20);
    cfg.durability = Durability::EveryBatch;
    let p = open(&dir.path().join("a"), cfg.clone(), &clk);
    let mut b = make_batch(&[rec(Some(b"k"), Some(b"v"), 1)], Compression::None);
    p.append(&mut b.clone()).expect("append");
    assert_eq!(p.durable_offset(), 1, "every-batch is durable on return");

    cfg.durability = Durability::Os;
    let p = open(&dir.path().join("b"), cfg.clone(), &clk);
    let seen = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let s2 = Arc::clone(&seen);
    p.set_durable_listener(Box::new(move |o| {
        s2.store(o, std::sync::atomic::Ordering::SeqCst)
    }));
    p.append(&mut b.clone()).expect("append");
    assert_eq!(
        p.durable_offset(),
        0,
        "os-managed is not durable until flushed"
    );
    assert_eq!(p.flush().expect("flush"), 1);
    assert_eq!(p.durable_offset(), 1);
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 1);

    // Group commit through the Log's flusher thread.
    cfg.durability = Durability::GroupCommit {
        interval_ms: 5,
        max_bytes: 1 << 20,
    };
    let log = Log::open(&dir.path().join("log"), cfg.clone()).expect("log");
    let p = log
        .create_partition(&TopicPartition::new("t", 0), cfg)
        .expect("create");
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    p.set_durable_listener(Box::new(move |o| {
        let _ = tx.lock().expect("lock").send(o);
    }));
    p.append(&mut b).expect("append");
    let got = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("flusher reports");
    assert_eq!(got, 1);
    assert_eq!(p.durable_offset(), 1);
    log.close().expect("close");
}

#[test]
fn the_callers_buffer_is_not_rewritten_and_the_stored_copy_is() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clk = clock(555_000);
    for lat in [false, true] {
        let mut cfg = small_config(1 << 20);
        if lat {
            cfg.timestamp_type = TimestampType::LogAppendTime;
        }
        let p = open(&dir.path().join(lat.to_string()), cfg, &clk);
        let first = make_batch(&[rec(Some(b"a"), Some(b"1"), 7)], Compression::None);
        let mut second = make_batch(
            &[rec(Some(b"b"), Some(b"2"), 8), rec(Some(b"c"), None, 9)],
            Compression::None,
        );
        p.append(&mut first.clone()).expect("append");
        let sent = second.clone();
        let info = p.append(&mut second).expect("append");
        assert_eq!((info.base_offset, info.last_offset), (1, 2));
        assert_eq!(second, sent, "the caller's bytes are left alone");
        let stored = p.read_bytes(1, 1 << 20).expect("read");
        let h = batch::validate(&stored).expect("the stored copy has a valid CRC");
        assert_eq!(h.base_offset, 1);
        assert_eq!(h.is_log_append_time(), lat);
        assert_eq!(&stored[batch::HEADER_LEN..], &sent[batch::HEADER_LEN..]);
        let ts: Vec<i64> = read_all(&p, 1).iter().map(|r| r.timestamp).collect();
        assert_eq!(ts, if lat { vec![555_000; 2] } else { vec![8, 9] });
    }
}

#[test]
fn an_unsynced_append_owes_a_flush_under_every_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clk = clock(1);
    let mut cfg = small_config(1 << 20);
    cfg.durability = Durability::EveryBatch;
    let b = make_batch(&[rec(Some(b"k"), Some(b"v"), 1)], Compression::None);
    let checked = batch::check(&b).expect("valid");

    let p = open(&dir.path().join("a"), cfg.clone(), &clk);
    let info = p.append_unsynced(&checked).expect("append");
    assert!(info.flush_owed);
    assert_eq!(p.log_end_offset(), 1, "readable at once");
    assert_eq!(p.durable_offset(), 0, "not durable before the flush");
    assert_eq!(p.flush().expect("flush"), 1);
    assert_eq!(p.durable_offset(), 1);
    let info = p.append_checked(&checked).expect("append");
    assert!(!info.flush_owed);
    assert_eq!(p.durable_offset(), 2, "append_checked flushes itself");

    // Other policies owe nothing.
    cfg.durability = Durability::Os;
    let p = open(&dir.path().join("b"), cfg.clone(), &clk);
    assert!(!p.append_unsynced(&checked).expect("append").flush_owed);

    // A flush owed and never run: the Log's flusher thread runs it.
    cfg.durability = Durability::EveryBatch;
    let log = Log::open(&dir.path().join("log"), cfg.clone()).expect("log");
    let p = log
        .create_partition(&TopicPartition::new("t", 0), cfg)
        .expect("create");
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    p.set_durable_listener(Box::new(move |o| {
        let _ = tx.lock().expect("lock").send(o);
    }));
    assert!(p.append_unsynced(&checked).expect("append").flush_owed);
    let got = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("the flusher runs the forgotten flush");
    assert_eq!(got, 1);
    log.close().expect("close");
}

#[test]
fn retention_by_time_bytes_and_log_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clk = clock(10_000);
    let mut cfg = small_config(500);
    cfg.retention_ms = Some(1_000);
    let p = open(dir.path(), cfg.clone(), &clk);
    for i in 0..20i64 {
        let mut b = make_batch(
            &[rec(Some(b"k"), Some(&[0; 100]), 9_000 + i * 100)],
            Compression::None,
        );
        p.append(&mut b).expect("append");
    }
    let before = p.state();
    assert!(before.segments >= 5);
    // now=10_000, retention 1_000: segments whose newest record is < 9_000 go (none yet).
    assert_eq!(
        p.enforce_retention().expect("retention").segments_deleted,
        0
    );
    clk.set(10_950);
    let s = p.enforce_retention().expect("retention");
    assert!(s.segments_deleted > 0);
    let start = p.log_start_offset();
    assert!(start > 0);
    // Everything still readable starts at a record newer than now - retention... or in
    // the segment holding the boundary.
    let first = &read_all(&p, 0)[0];
    assert_eq!(first.offset, start);
    assert!(matches!(
        p.read(0, 10),
        Err(Error::OffsetBelowLogStart { requested: 0, .. })
    ));

    // retention.bytes keeps at most that many bytes in closed segments plus the active one.
    cfg.retention_ms = None;
    cfg.retention_bytes = Some(600);
    p.set_config(cfg);
    p.enforce_retention().expect("retention");
    assert!(p.size_bytes() <= 600 + 500, "{:?}", p.state());

    // DeleteRecords moves the start, survives reopen and deletes whole segments below it.
    let end = p.log_end_offset();
    assert_eq!(p.delete_records_before(end - 1).expect("delete"), end - 1);
    assert!(p.delete_records_before(end + 1).is_err());
    drop(p);
    let p = open(dir.path(), small_config(500), &clk);
    assert_eq!(p.log_start_offset(), end - 1);
    assert_eq!(read_all(&p, 0).len(), 1);
}

#[test]
fn segment_ms_rolls_and_lets_retention_empty_an_idle_partition() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clk = clock(1_000);
    let mut cfg = small_config(1 << 20);
    cfg.segment_ms = 100;
    cfg.retention_ms = Some(50);
    let p = open(dir.path(), cfg, &clk);
    let mut b = make_batch(&[rec(Some(b"k"), Some(b"v"), 1_000)], Compression::None);
    p.append(&mut b).expect("append");
    clk.set(1_200);
    p.enforce_retention().expect("rolls then deletes");
    assert_eq!(p.log_start_offset(), 1);
    assert_eq!(p.log_end_offset(), 1);
    assert!(read_all(&p, 0).is_empty());
}

#[test]
fn log_manager_recovers_partitions_and_refuses_bad_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = small_config(1 << 20);
    {
        let log = Log::open(dir.path(), cfg.clone()).expect("open");
        let p = log
            .create_partition(&TopicPartition::new("orders", 3), cfg.clone())
            .expect("create");
        let mut b = make_batch(&[rec(Some(b"k"), Some(b"v"), 1)], Compression::None);
        p.append(&mut b).expect("append");
        assert!(matches!(
            log.create_partition(&TopicPartition::new("orders", 3), cfg.clone()),
            Err(Error::AlreadyExists(_))
        ));
        assert!(matches!(
            log.create_partition(&TopicPartition::new("bad/name", 0), cfg.clone()),
            Err(Error::InvalidName(_))
        ));
        log.create_partition(&TopicPartition::new("gone", 0), cfg.clone())
            .expect("create");
        log.delete_partition(&TopicPartition::new("gone", 0))
            .expect("delete");
        log.close().expect("close");
    }
    let log = Log::open(dir.path(), cfg).expect("reopen");
    let names: Vec<_> = log
        .partitions()
        .into_iter()
        .map(|(tp, _)| tp.to_string())
        .collect();
    assert_eq!(names, vec!["orders-3"]);
    let p = log
        .partition(&TopicPartition::new("orders", 3))
        .expect("present");
    assert_eq!(p.log_end_offset(), 1);
}

#[test]
fn default_config_is_kafka_like() {
    let c = LogConfig::default();
    assert_eq!(c.segment_bytes, 1 << 30);
    assert_eq!(c.max_message_bytes, 1_048_588);
    assert_eq!(
        Durability::parse(&c.durability.render()),
        Some(c.durability)
    );
    assert_eq!(
        CleanupPolicy::parse("delete,compact"),
        Some(CleanupPolicy::CompactDelete)
    );
    assert_eq!(CleanupPolicy::parse("nope"), None);
}

#[test]
fn compaction_waits_for_min_compaction_lag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clk = clock(100_000);
    let mut cfg = small_config(300);
    cfg.cleanup_policy = CleanupPolicy::Compact;
    cfg.min_compaction_lag_ms = 10_000;
    let p = open(dir.path(), cfg, &clk);
    // Ten updates of one key, each 1 s apart, in segments of about one batch each.
    for i in 0..10i64 {
        let mut b = make_batch(
            &[rec(Some(b"k"), Some(&[i as u8; 150]), 100_000 + i * 1_000)],
            Compression::None,
        );
        p.append(&mut b).expect("append");
    }
    let active_base = p.state().active_base_offset;
    assert!(active_base >= 5, "{:?}", p.state());
    // now = 100 000: every record is younger than the lag, nothing may go.
    assert_eq!(p.compact().expect("compact").records_removed, 0);
    assert_eq!(read_all(&p, 0).len(), 10);
    // now = 113 500: records with timestamps <= 103 500 (offsets 0..=3) are old enough; the
    // compactable range is the closed segments whose newest record is that old, and within it
    // only the latest value of the key survives.
    clk.set(113_500);
    let removed = p.compact().expect("compact").records_removed;
    let left: Vec<u64> = read_all(&p, 0).iter().map(|r| r.offset).collect();
    assert_eq!(removed, 3, "{left:?}");
    assert_eq!(left, vec![3, 4, 5, 6, 7, 8, 9]);
}
