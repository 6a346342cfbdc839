//! Golden on-disk fixtures: partitions written by format version 1, checked in under
//! `tests/golden/v1/`. Every later build must keep opening them with the same contents.
//! `WEFT_BLESS=1 cargo test -p weft-log --test golden` rewrites them (only do this when
//! introducing a new format version, and add a new directory rather than replacing v1).

mod common;

use std::path::{Path, PathBuf};

use common::*;
use weft_log::batch::Compression;
use weft_log::{FORMAT_VERSION, Partition};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/v1")
}

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

/// The deterministic recipe behind the `clean` fixture.
fn write_clean(dir: &Path) {
    let clk = clock(1_700_000_000_000);
    let p = open(dir, small_config(1_000), &clk);
    for i in 0..15u8 {
        let recs: Vec<_> = (0..3u8)
            .map(|j| {
                rec(
                    Some(&[b'k', i % 4]),
                    Some(&[b'a' + j; 60]),
                    1_700_000_000_000 + i64::from(i) * 10,
                )
            })
            .collect();
        p.append(&mut make_batch(&recs, CODECS[usize::from(i) % 5]))
            .expect("append");
    }
    p.delete_records_before(4).expect("delete records");
    p.close().expect("close");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("readdir") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

fn open_copy(name: &str) -> (tempfile::TempDir, Partition) {
    let t = tempfile::tempdir().expect("tempdir");
    copy_dir(&fixtures().join(name), t.path());
    let p = open(t.path(), small_config(1_000), &clock(1_700_000_000_000));
    (t, p)
}

#[test]
fn v1_fixtures_exist_or_are_blessed() {
    let clean = fixtures().join("clean");
    if std::env::var_os("WEFT_BLESS").is_some() {
        let _ = std::fs::remove_dir_all(fixtures());
        write_clean(&clean);
        // torn: the last batch cut short, as by a crash mid-write.
        copy_dir(&clean, &fixtures().join("torn"));
        let torn = last_log(&fixtures().join("torn"));
        let len = std::fs::metadata(&torn).expect("meta").len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&torn)
            .expect("open")
            .set_len(len - 25)
            .expect("cut");
        // corrupt: one flipped byte inside the last batch's records.
        copy_dir(&clean, &fixtures().join("corrupt"));
        let corrupt = last_log(&fixtures().join("corrupt"));
        let mut bytes = std::fs::read(&corrupt).expect("read");
        let n = bytes.len();
        bytes[n - 10] ^= 0xff;
        std::fs::write(&corrupt, bytes).expect("write");
    }
    assert_eq!(
        FORMAT_VERSION, 1,
        "a new format version needs its own golden directory"
    );
    for name in ["clean", "torn", "corrupt"] {
        assert!(
            fixtures().join(name).join("partition.meta").exists(),
            "missing fixture {name}"
        );
    }
}

fn last_log(dir: &Path) -> PathBuf {
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .expect("readdir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    logs.pop().expect("log")
}

/// Today's writer still produces exactly the v1 bytes: a change here is a format change.
#[test]
fn writer_still_produces_v1_bytes() {
    let t = tempfile::tempdir().expect("tempdir");
    write_clean(t.path());
    let mut names: Vec<_> = std::fs::read_dir(fixtures().join("clean"))
        .expect("fixture")
        .map(|e| e.expect("entry").file_name())
        .collect();
    names.sort();
    let mut fresh: Vec<_> = std::fs::read_dir(t.path())
        .expect("fresh")
        .map(|e| e.expect("e").file_name())
        .collect();
    fresh.sort();
    assert_eq!(names, fresh);
    for n in names {
        let want = std::fs::read(fixtures().join("clean").join(&n)).expect("fixture file");
        let got = std::fs::read(t.path().join(&n)).expect("fresh file");
        assert!(
            want == got,
            "{} differs from the v1 fixture",
            n.to_string_lossy()
        );
    }
}

#[test]
fn clean_fixture_reads_back() {
    let (_t, p) = open_copy("clean");
    assert_eq!(p.log_start_offset(), 4);
    assert_eq!(p.log_end_offset(), 45);
    assert!(p.state().segments > 1);
    let recs = read_all(&p, 0);
    assert_eq!(recs.len(), 41);
    assert_eq!(recs[0].offset, 4);
    let r = &recs[10]; // offset 14: batch 4, record 2
    assert_eq!(r.offset, 14);
    assert_eq!(r.key.as_deref(), Some(&[b'k', 0][..]));
    assert_eq!(r.value.as_deref(), Some(&[b'c'; 60][..]));
    assert_eq!(r.timestamp, 1_700_000_000_040);
    let t = p
        .offset_for_timestamp(1_700_000_000_095)
        .expect("lookup")
        .expect("found");
    assert_eq!((t.offset, t.timestamp), (30, 1_700_000_000_100));
}

#[test]
fn torn_and_corrupt_fixtures_serve_the_intact_prefix() {
    for name in ["torn", "corrupt"] {
        let (_t, p) = open_copy(name);
        assert_eq!(p.log_end_offset(), 42, "{name}");
        assert_eq!(read_all(&p, 0).len(), 38, "{name}");
        let mut b = make_batch(&[rec(Some(b"k"), Some(b"v"), 1)], Compression::None);
        assert_eq!(p.append(&mut b).expect("append").base_offset, 42, "{name}");
    }
}
