//! Crash recovery: torn tails, flipped bits, leftovers of interrupted swaps, and a real
//! process killed with SIGKILL while appending.

mod common;

use std::io::BufRead;
use std::path::Path;

use common::*;
use proptest::prelude::*;
use weft_log::batch::Compression;

/// Writes `n` batches, "crashes" (drops without close) and returns the batch boundaries.
fn crashed_partition(dir: &Path, n: usize) -> Vec<(u64, u64, usize)> {
    let clk = clock(1_000);
    let p = open(dir, small_config(1 << 20), &clk);
    let mut bounds = Vec::new();
    let mut pos = 0;
    for i in 0..n {
        let recs: Vec<_> = (0..1 + i % 3)
            .map(|j| {
                rec(
                    Some(&[i as u8]),
                    Some(&vec![j as u8; 20 + i * 7]),
                    100 + i as i64,
                )
            })
            .collect();
        let mut b = make_batch(&recs, [Compression::None, Compression::Gzip][i % 2]);
        let info = p.append(&mut b).expect("append");
        bounds.push((info.base_offset, info.last_offset, pos));
        pos += b.len();
    }
    drop(p);
    bounds
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("readdir") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

fn active_log(dir: &Path) -> std::path::PathBuf {
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .expect("readdir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    logs.pop().expect("a log file")
}

/// Opens the damaged copy and checks it serves exactly the batches before `keep_below`
/// and accepts the next append at the right offset.
fn check_prefix(dir: &Path, keep_next_offset: u64) {
    let clk = clock(1_000);
    let p = open(dir, small_config(1 << 20), &clk);
    assert_eq!(p.log_end_offset(), keep_next_offset);
    let recs = read_all(&p, 0);
    assert_eq!(recs.len() as u64, keep_next_offset);
    assert!(recs.iter().enumerate().all(|(i, r)| r.offset == i as u64));
    let mut b = make_batch(&[rec(Some(b"x"), Some(b"y"), 5)], Compression::None);
    assert_eq!(
        p.append(&mut b).expect("append after recovery").base_offset,
        keep_next_offset
    );
    drop(p);
    // And the recovered state reopens the same.
    let p = open(dir, small_config(1 << 20), &clk);
    assert_eq!(p.log_end_offset(), keep_next_offset + 1);
}

#[test]
fn truncation_at_every_byte_of_the_last_batch() {
    let src = tempfile::tempdir().expect("tempdir");
    let bounds = crashed_partition(src.path(), 12);
    let (last_base, _, last_pos) = *bounds.last().expect("batches");
    let log_len = std::fs::metadata(active_log(src.path()))
        .expect("meta")
        .len() as usize;
    for cut in last_pos..log_len {
        let work = tempfile::tempdir().expect("tempdir");
        copy_dir(src.path(), work.path());
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(active_log(work.path()))
            .expect("open");
        f.set_len(cut as u64).expect("truncate");
        check_prefix(work.path(), last_base);
    }
}

proptest! {
    // PROPTEST_CASES raises the count for a longer local run.
    #![proptest_config(ProptestConfig { cases: cases(64), ..ProptestConfig::default() })]

    /// Any single flipped bit in the last batch loses that batch and nothing else.
    #[test]
    fn flipped_bits_in_the_tail(bit in any::<u32>()) {
        let src = tempfile::tempdir().expect("tempdir");
        let bounds = crashed_partition(src.path(), 6);
        let (last_base, _, last_pos) = *bounds.last().expect("batches");
        let path = active_log(src.path());
        let mut bytes = std::fs::read(&path).expect("read");
        let span = bytes.len() - last_pos;
        let bit = bit as usize % (span * 8);
        // The partition leader epoch is not covered by the CRC and means nothing to us.
        let byte = last_pos + bit / 8;
        prop_assume!(!(12..16).contains(&(byte - last_pos)));
        bytes[byte] ^= 1 << (bit % 8);
        std::fs::write(&path, &bytes).expect("write");
        check_prefix(src.path(), last_base);
    }
}

#[test]
fn interrupted_compaction_swap_is_repaired_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clk = clock(1_000);
    let p = open(dir.path(), small_config(300), &clk);
    for i in 0..10u8 {
        let mut b = make_batch(&[rec(Some(&[i]), Some(&[i; 100]), 100)], Compression::None);
        p.append(&mut b).expect("append");
    }
    p.close().expect("close");
    drop(p);
    // As if a crash hit between steps C3 and C4: old indexes gone, a cleaned file left.
    let first = dir.path().join(format!("{:020}", 0));
    std::fs::remove_file(first.with_extension("index")).expect("rm index");
    std::fs::remove_file(first.with_extension("timeindex")).expect("rm timeindex");
    std::fs::write(
        dir.path().join(format!("{:020}.log.cleaned", 0)),
        b"garbage",
    )
    .expect("write");
    let p = open(dir.path(), small_config(300), &clk);
    assert_eq!(read_all(&p, 0).len(), 10);
    assert!(!dir.path().join(format!("{:020}.log.cleaned", 0)).exists());
    let t = p.offset_for_timestamp(100).expect("lookup").expect("found");
    assert_eq!(t.offset, 0);
}

/// A child appends with fsync-per-batch and reports each durable append; we SIGKILL it at
/// a random moment and check every reported append survived, byte for byte in order.
#[test]
fn sigkill_loses_no_reported_append() {
    let exe = std::env::current_exe().expect("test exe");
    let dir = tempfile::tempdir().expect("tempdir");
    let part = dir.path().join("p-0");
    let mut seed = std::process::id() as u64;
    for round in 0..3 {
        // The child is this test binary running `append_loop` with the directory set.
        let mut child = std::process::Command::new(&exe)
            .args(["--exact", "append_loop", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &part)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = std::io::BufReader::new(stdout).lines();
        // Let it run for a pseudo-random number of appends, then kill it without warning.
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let stop_after = 20 + (seed >> 33) % 400;
        let mut last_reported = None;
        for _ in 0..stop_after {
            let line = lines.next().expect("child output").expect("line");
            if let Some(last) = parse_durable(&line) {
                last_reported = Some(last);
            }
        }
        // std's Child::kill sends SIGKILL on Unix: no chance to flush or close.
        child.kill().expect("SIGKILL the child");
        let _ = child.wait();
        // Drain lines the child wrote before dying: they were reported durable too.
        for line in lines.map_while(Result::ok) {
            if let Some(last) = parse_durable(&line) {
                last_reported = Some(last);
            }
        }
        let last = last_reported.expect("some appends");
        let clk = clock(1_000);
        let p = open(&part, child_config(), &clk);
        assert!(
            p.log_end_offset() > last,
            "round {round}: lost acknowledged offset {last}"
        );
        let recs = read_all(&p, 0);
        for (i, r) in recs.iter().enumerate() {
            assert_eq!(r.offset, i as u64);
            let v = String::from_utf8(r.value.as_ref().expect("value").to_vec()).expect("utf8");
            assert_eq!(v, format!("v{i}").repeat(1 + i % 40), "record {i}");
        }
    }
}

const CHILD_ENV: &str = "WEFT_LOG_CRASH_CHILD_DIR";

fn parse_durable(line: &str) -> Option<u64> {
    let rest = line.strip_prefix("durable ")?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn child_config() -> weft_log::LogConfig {
    weft_log::LogConfig {
        segment_bytes: 64 * 1024,
        durability: weft_log::Durability::EveryBatch,
        index_interval_bytes: 1024,
        ..weft_log::LogConfig::default()
    }
}

/// Appends with fsync-per-batch, printing `durable <base> <last>` after each append
/// returns. Under [`CHILD_ENV`] it is the crash test's child and runs until killed;
/// alone it runs a bounded number of appends and checks each is durable on return.
#[test]
fn append_loop() {
    use bytes::Bytes;
    use std::io::Write;
    use weft_log::batch::{BuildOptions, Record};
    let (dir, forever, _guard) = match std::env::var_os(CHILD_ENV) {
        Some(d) => (std::path::PathBuf::from(d), true, None),
        None => {
            let t = tempfile::tempdir().expect("tempdir");
            (t.path().join("p-0"), false, Some(t))
        }
    };
    let p = weft_log::Partition::open(
        &dir,
        child_config(),
        std::sync::Arc::new(weft_log::SystemClock),
    )
    .expect("open");
    let mut out = std::io::stdout().lock();
    let mut next = p.log_end_offset();
    let start = next;
    while forever || next < start + 200 {
        let n = 1 + (next % 7) as usize;
        let records: Vec<Record> = (0..n)
            .map(|i| {
                let o = next + i as u64;
                Record {
                    offset: i as u64,
                    timestamp: 1_700_000_000_000,
                    key: Some(Bytes::from(format!("k{}", o % 13))),
                    value: Some(Bytes::from(format!("v{o}").repeat(1 + (o % 40) as usize))),
                    headers: vec![],
                }
            })
            .collect();
        let codec = [Compression::None, Compression::Gzip, Compression::Lz4][(next % 3) as usize];
        let mut b = weft_log::batch::build(
            BuildOptions {
                compression: codec,
                ..Default::default()
            },
            &records,
        )
        .expect("build");
        let info = p.append(&mut b).expect("append");
        assert_eq!(info.base_offset, next);
        assert!(
            p.durable_offset() > info.last_offset,
            "every-batch append returned before fsync"
        );
        writeln!(out, "durable {} {}", info.base_offset, info.last_offset).expect("stdout");
        out.flush().expect("flush stdout");
        next = info.last_offset + 1;
    }
}

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
