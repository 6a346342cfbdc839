//! Compaction and retention run beside appends and reads without blocking them or
//! disturbing what they see.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use weft_log::CleanupPolicy;
use weft_log::batch::Compression;

#[test]
fn appends_reads_and_compaction_run_together() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clk = clock(1_000_000);
    let mut cfg = small_config(2_000);
    cfg.cleanup_policy = CleanupPolicy::Compact;
    let p = Arc::new(open(dir.path(), cfg, &clk));
    const BATCHES: u64 = 1_500;
    let done = Arc::new(AtomicBool::new(false));

    let writer = {
        let p = Arc::clone(&p);
        std::thread::spawn(move || {
            for i in 0..BATCHES {
                let key = [b'k', (i % 17) as u8];
                let value = i.to_be_bytes();
                let codec = [Compression::None, Compression::Zstd][(i % 2) as usize];
                let mut b = make_batch(&[rec(Some(&key), Some(&value), 900_000)], codec);
                assert_eq!(p.append(&mut b).expect("append").base_offset, i);
            }
        })
    };
    let cleaner = {
        let (p, done) = (Arc::clone(&p), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut removed = 0;
            while !done.load(Ordering::Acquire) {
                removed += p.compact().expect("compact").records_removed;
                p.enforce_retention().expect("retention");
            }
            removed
        })
    };
    let reader = {
        let (p, done) = (Arc::clone(&p), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut passes = 0;
            while !done.load(Ordering::Acquire) {
                // Offsets strictly increase and each key's values only go up: compaction
                // removes records but never reorders or renumbers them.
                let all = read_all(&p, 0);
                let mut last: HashMap<Vec<u8>, u64> = HashMap::new();
                for w in all.windows(2) {
                    assert!(w[0].offset < w[1].offset);
                }
                for r in &all {
                    let v = u64::from_be_bytes(
                        r.value
                            .as_deref()
                            .expect("value")
                            .try_into()
                            .expect("8 bytes"),
                    );
                    assert_eq!(v, r.offset, "value must match its original offset");
                    let k = r.key.as_deref().expect("key").to_vec();
                    if let Some(prev) = last.insert(k, v) {
                        assert!(prev < v);
                    }
                }
                passes += 1;
            }
            passes
        })
    };
    writer.join().expect("writer");
    done.store(true, Ordering::Release);
    let removed = cleaner.join().expect("cleaner");
    let passes = reader.join().expect("reader");
    assert!(passes > 0);
    p.compact().expect("final compaction");
    assert_eq!(p.log_end_offset(), BATCHES);
    let all = read_all(&p, 0);
    // Every key's latest value survives; superseded values in closed segments are gone.
    let active_base = p.state().active_base_offset;
    for k in 0..17u64 {
        let latest = (0..BATCHES).rev().find(|i| i % 17 == k).expect("written");
        assert!(
            all.iter().any(|r| r.offset == latest),
            "key {k} lost its latest value"
        );
    }
    let closed: Vec<_> = all.iter().filter(|r| r.offset < active_base).collect();
    assert!(
        closed.len() <= 17,
        "closed segments hold {} records",
        closed.len()
    );
    assert!(removed > 0 || closed.len() <= 17);
}
