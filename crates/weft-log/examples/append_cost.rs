//! The broker's per-batch work on the append path, for instruction counts
//! (`valgrind --tool=callgrind`) and CPU time per byte. Not a criterion bench: one fixed
//! workload, so that two runs of it can be compared instruction for instruction.
//!
//! ```sh
//! cargo build --release -p weft-log --example append_cost
//! valgrind --tool=callgrind target/release/examples/append_cost copy 200
//! valgrind --tool=callgrind target/release/examples/append_cost direct 200
//! ```
//!
//! Each run appends the same v2 batch (about 1 MB: 976 uncompressed records of 1 KiB, what
//! librdkafka sends with its default `batch.size`) N times to a fresh partition under the
//! `os` policy (no fsync: the disk is not what is measured). Modes:
//! - `copy`: what the broker did up to 2026-12-05: check the CRC (idempotence needs the
//!   header), copy the batch out of the request into its own buffer, append it (which
//!   checked the CRC and the record framing again, then wrote the rewritten buffer);
//! - `direct`: what it does now: one [`weft_log::batch::check`], then
//!   [`weft_log::Partition::append_checked`], which writes the rewritten 61-byte header and
//!   the records from the caller's buffer with one `pwritev`.

use std::sync::Arc;
use std::time::Instant;

use weft_log::batch::{BuildOptions, Record, build, check, validate};
use weft_log::{Durability, LogConfig, Partition, SystemClock};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "direct".to_owned());
    let n: u64 = args.next().map_or(Ok(200), |s| s.parse())?;
    let records: Vec<Record> = (0..976u64)
        .map(|offset| Record {
            offset,
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(vec![0xA5u8; 1024].into()),
            headers: Vec::new(),
        })
        .collect();
    let batch = build(BuildOptions::default(), &records)?;
    let dir = tempfile::tempdir()?;
    let config = LogConfig {
        durability: Durability::Os,
        ..LogConfig::default()
    };
    let p = Partition::create(&dir.path().join("bench-0"), config, Arc::new(SystemClock))?;
    let cpu0 = cpu_seconds()?;
    let start = Instant::now();
    for _ in 0..n {
        match mode.as_str() {
            "copy" => {
                validate(&batch)?;
                let mut own = batch.clone();
                p.append(&mut own)?;
            }
            "direct" => {
                let checked = check(&batch)?;
                p.append_checked(&checked)?;
            }
            other => return Err(format!("unknown mode {other:?} (copy or direct)").into()),
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds()? - cpu0;
    let bytes = n as f64 * batch.len() as f64;
    println!(
        "{mode}: {n} appends of {} B, {:.0} MB/s wall, {:.3} ns CPU per byte (user+system)",
        batch.len(),
        bytes / elapsed / 1e6,
        cpu * 1e9 / bytes
    );
    Ok(())
}

/// User + system CPU time of this process, from `/proc/self/stat` (USER_HZ = 100).
fn cpu_seconds() -> Result<f64, Box<dyn std::error::Error>> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let after = stat.rsplit_once(") ").map(|(_, a)| a).ok_or("bad stat")?;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| -> Result<u64, Box<dyn std::error::Error>> {
        Ok(f.get(i).ok_or("short stat")?.parse()?)
    };
    Ok((ticks(11)? + ticks(12)?) as f64 / 100.0)
}
