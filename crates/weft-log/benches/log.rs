//! Storage-engine benchmarks: `cargo bench -p weft-log`. Figures and their disk ceilings
//! live in docs/benchmarks.md. Set `WEFT_BENCH_DIR` to benchmark on a particular disk
//! (default: the system temp dir). The 1 GiB open benchmarks need ~2.2 GB free.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use weft_log::batch::{self, BuildOptions, Record};
use weft_log::{Durability, Log, LogConfig, Partition, SystemClock, TopicPartition};

/// `cargo test` runs benchmarks once in test mode: keep their set-up small there.
fn full_size() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn bench_dir() -> PathBuf {
    std::env::var_os("WEFT_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from)
}

/// A producer-like batch of `size` bytes (100-byte records, uncompressed).
fn batch_of(size: usize) -> Vec<u8> {
    let n = (size - batch::HEADER_LEN) / 110;
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            offset: i as u64,
            timestamp: 1_700_000_000_000,
            key: Some(Bytes::from(format!("key-{i:04}"))),
            value: Some(Bytes::from(vec![b'x'; 90])),
            headers: vec![],
        })
        .collect();
    batch::build(BuildOptions::default(), &records).expect("batch")
}

fn config(durability: Durability) -> LogConfig {
    LogConfig {
        segment_bytes: 256 << 20,
        durability,
        retention_ms: None,
        ..LogConfig::default()
    }
}

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("append");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    let policies = [
        ("os", Durability::Os),
        (
            "group-10ms",
            Durability::GroupCommit {
                interval_ms: 10,
                max_bytes: 64 << 20,
            },
        ),
        ("every-batch", Durability::EveryBatch),
    ];
    for size in [1024usize, 16 * 1024] {
        let template = batch_of(size);
        g.throughput(Throughput::Bytes(template.len() as u64));
        for (name, durability) in policies {
            g.bench_with_input(BenchmarkId::new(name, size), &template, |b, template| {
                b.iter_custom(|iters| {
                    // A fresh partition per sample keeps disk use bounded; the time includes
                    // the final fsync so every policy is measured to durability.
                    let root = tempfile::tempdir_in(bench_dir()).expect("tempdir");
                    let log = Log::open(root.path(), config(durability)).expect("log");
                    let p = log
                        .create_partition(&TopicPartition::new("b", 0), config(durability))
                        .expect("p");
                    let mut buf = template.clone();
                    let start = Instant::now();
                    for _ in 0..iters {
                        buf.copy_from_slice(template);
                        black_box(p.append(&mut buf).expect("append"));
                    }
                    p.flush().expect("flush");
                    let t = start.elapsed();
                    log.close().expect("close");
                    t
                });
            });
        }
    }
    g.finish();
}

/// Fills a partition with `bytes` of 16 KiB batches.
fn fill(dir: &Path, bytes: u64) -> Partition {
    let p = Partition::open(dir, config(Durability::Os), Arc::new(SystemClock)).expect("open");
    let template = batch_of(16 * 1024);
    let mut buf = template.clone();
    while p.size_bytes() < bytes {
        buf.copy_from_slice(&template);
        p.append(&mut buf).expect("append");
    }
    p.flush().expect("flush");
    p
}

fn read(c: &mut Criterion) {
    let root = tempfile::tempdir_in(bench_dir()).expect("tempdir");
    let total = if full_size() { 256u64 << 20 } else { 4 << 20 };
    let p = fill(&root.path().join("r-0"), total);
    let mut g = c.benchmark_group("read");
    g.sample_size(10)
        .throughput(Throughput::Bytes(p.size_bytes()));
    g.bench_function("sequential-1MiB-fetches", |b| {
        b.iter(|| {
            let mut next = 0;
            let mut bytes = 0;
            while next < p.log_end_offset() {
                let region = p.read(next, 1 << 20).expect("read").expect("region");
                let data = region.read_to_bytes().expect("bytes");
                let mut at = 0;
                while at < data.len() {
                    let h = batch::BatchHeader::parse(&data[at..]).expect("header");
                    next = h.next_offset();
                    at += h.total_len();
                }
                bytes += data.len();
            }
            black_box(bytes)
        });
    });
    g.finish();
}

fn open(c: &mut Criterion) {
    let root = tempfile::tempdir_in(bench_dir()).expect("tempdir");
    let gib = if full_size() { 1u64 << 30 } else { 96 << 20 };
    // Clean: 1 GiB written and closed.
    let clean = root.path().join("clean-0");
    fill(&clean, gib).close().expect("close");
    // Crash: 960 MiB closed cleanly, reopened, 64 MiB more appended (one checkpoint
    // interval of group commit), then dropped without closing.
    let crash = root.path().join("crash-0");
    fill(&crash, gib - (64 << 20)).close().expect("close");
    {
        let p =
            Partition::open(&crash, config(Durability::Os), Arc::new(SystemClock)).expect("reopen");
        let template = batch_of(16 * 1024);
        let mut buf = template.clone();
        while p.size_bytes() < gib {
            buf.copy_from_slice(&template);
            p.append(&mut buf).expect("append");
        }
        // Dropped without flush or close: the checkpoint stays 64 MiB behind.
    }
    let crash_meta = std::fs::read(crash.join("partition.meta")).expect("meta");
    let mut g = c.benchmark_group("open-1GiB");
    g.sample_size(10);
    g.bench_function("after-clean-shutdown", |b| {
        b.iter(|| {
            let p = Partition::open(&clean, config(Durability::Os), Arc::new(SystemClock))
                .expect("open");
            black_box(p.log_end_offset())
        });
    });
    g.bench_function("after-crash-64MiB-unflushed", |b| {
        b.iter_batched(
            || {
                std::fs::write(crash.join("partition.meta"), &crash_meta)
                    .expect("restore checkpoint")
            },
            |()| {
                let p = Partition::open(&crash, config(Durability::Os), Arc::new(SystemClock))
                    .expect("open");
                black_box(p.log_end_offset())
            },
            criterion::BatchSize::PerIteration,
        );
    });
    g.finish();
}

/// One long run, outside criterion: 1 GiB of 16 KiB batches with OS-managed durability and
/// a final fsync, the same shape as the `dd … conv=fdatasync` ceiling. Criterion's samples
/// are much smaller and can be absorbed by a virtual disk's cache; this one cannot.
fn sustained(c: &mut Criterion) {
    let _ = c;
    let bytes = if full_size() { 1u64 << 30 } else { 8 << 20 };
    let root = tempfile::tempdir_in(bench_dir()).expect("tempdir");
    let p = Partition::open(
        &root.path().join("s-0"),
        config(Durability::Os),
        Arc::new(SystemClock),
    )
    .expect("open");
    let template = batch_of(16 * 1024);
    let mut buf = template.clone();
    let start = Instant::now();
    let mut written = 0u64;
    while written < bytes {
        buf.copy_from_slice(&template);
        p.append(&mut buf).expect("append");
        written += template.len() as u64;
    }
    p.flush().expect("flush");
    let secs = start.elapsed().as_secs_f64();
    println!(
        "sustained/os/16384: {} MiB with final fsync in {secs:.2} s = {:.0} MB/s",
        written >> 20,
        written as f64 / secs / 1e6
    );
}

criterion_group!(benches, sustained, append, read, open);
criterion_main!(benches);
