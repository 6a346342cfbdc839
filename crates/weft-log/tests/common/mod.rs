//! Helpers shared by the weft-log integration tests.
#![allow(dead_code, unreachable_pub)] // each test binary uses a different subset

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use weft_log::batch::{self, BuildOptions, Compression, Record};
use weft_log::{Clock, Durability, LogConfig, ManualClock, Partition};

pub fn rec(key: Option<&[u8]>, value: Option<&[u8]>, ts: i64) -> Record {
    Record {
        offset: 0,
        timestamp: ts,
        key: key.map(Bytes::copy_from_slice),
        value: value.map(Bytes::copy_from_slice),
        headers: vec![],
    }
}

/// A producer-style batch (offsets from 0) holding `records`.
pub fn make_batch(records: &[Record], codec: Compression) -> Vec<u8> {
    let recs: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            offset: i as u64,
            ..r.clone()
        })
        .collect();
    batch::build(
        BuildOptions {
            compression: codec,
            ..Default::default()
        },
        &recs,
    )
    .expect("build batch")
}

pub fn small_config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        segment_ms: i64::MAX / 2,
        retention_ms: None,
        index_interval_bytes: 128,
        durability: Durability::Os,
        ..LogConfig::default()
    }
}

pub fn clock(now: i64) -> Arc<ManualClock> {
    Arc::new(ManualClock::new(now))
}

pub fn open(dir: &Path, config: LogConfig, clock: &Arc<ManualClock>) -> Partition {
    Partition::open(dir, config, Arc::clone(clock) as Arc<dyn Clock>).expect("open partition")
}

/// Every record readable from `from`, decoded, following the read API batch by batch.
pub fn read_all(p: &Partition, from: u64) -> Vec<Record> {
    let mut out = Vec::new();
    let mut next = from.max(p.log_start_offset());
    while next < p.log_end_offset() {
        let bytes = p.read_bytes(next, 4096).expect("read");
        assert!(
            !bytes.is_empty(),
            "read at {next} below end {} returned nothing",
            p.log_end_offset()
        );
        let mut at = 0;
        while at < bytes.len() {
            let h = batch::BatchHeader::parse(&bytes[at..]).expect("header");
            let end = at + h.total_len();
            for r in batch::records(&bytes[at..end]).expect("records") {
                if r.offset >= next {
                    out.push(r);
                }
            }
            next = next.max(h.next_offset());
            at = end;
        }
    }
    out
}
