//! The offsets store over a real log partition: restart, tombstones, golden record bytes,
//! migration from `offsets.v1`, expiry by injected time, and a crash (kill -9 of a child
//! process) that keeps every acknowledged commit.

use std::path::Path;
use std::sync::Arc;

use weft_log::{LogConfig, Partition, SystemClock};

use super::*;

fn partition(dir: &Path) -> Arc<Partition> {
    let pdir = dir.join("__consumer_offsets-0");
    let clock = Arc::new(SystemClock);
    let p = if pdir.exists() {
        Partition::open(&pdir, LogConfig::default(), clock)
    } else {
        Partition::create(&pdir, LogConfig::default(), clock)
    };
    Arc::new(p.expect("partition"))
}

/// A store in `dir` (the partition in `dir/__consumer_offsets-0`, state files in `dir`).
pub(crate) fn store(dir: &Path) -> Offsets {
    Offsets::open(dir, partition(dir)).expect("open offsets")
}

fn c(offset: i64, metadata: &str) -> Committed {
    Committed {
        offset,
        leader_epoch: -1,
        metadata: metadata.to_owned(),
        commit_ms: 1_700_000_000_000,
    }
}

fn tp(t: &str, p: i32) -> (String, i32) {
    (t.to_owned(), p)
}

#[test]
fn offsets_survive_reopen_with_odd_names_and_metadata() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut o = store(dir.path());
    o.commit(
        "my group ü",
        [(tp("t.1", 0), c(5, "")), (tp("t.1", 3), c(7, "a b\nc"))],
    )
    .expect("commit");
    o.commit("g2", [(tp("x", 1), c(1, "m"))]).expect("commit");
    o.commit("g2", [(tp("x", 1), c(9, "m2"))]).expect("commit");
    o.note_group("g2", "consumer", 5).expect("note");
    drop(o);
    let r = store(dir.path());
    assert_eq!(r.get("my group ü", "t.1", 0), Some(&c(5, "")));
    assert_eq!(r.get("my group ü", "t.1", 3), Some(&c(7, "a b\nc")));
    assert_eq!(r.get("g2", "x", 1), Some(&c(9, "m2")));
    assert_eq!(r.get("g2", "x", 2), None);
    assert_eq!(r.all("my group ü").len(), 2);
    assert_eq!(r.groups().collect::<Vec<_>>(), vec!["g2", "my group ü"]);
    assert_eq!(r.protocol_type("g2"), Some("consumer"));
    assert_eq!(r.protocol_type("my group ü"), None);
}

#[test]
fn deleted_offsets_stay_deleted_after_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut o = store(dir.path());
    o.commit("a", [(tp("t", 0), c(1, "")), (tp("t", 1), c(2, ""))])
        .expect("commit");
    o.commit("b", [(tp("t", 0), c(3, ""))]).expect("commit");
    o.note_group("b", "classic", 1).expect("note");
    o.delete("a", Some(&[tp("t", 1), tp("u", 9)]))
        .expect("delete");
    o.delete("b", None).expect("delete group");
    drop(o);
    let mut r = store(dir.path());
    assert_eq!(r.get("a", "t", 0), Some(&c(1, "")));
    assert_eq!(r.get("a", "t", 1), None);
    assert!(!r.has_group("b"), "a deleted group is gone");
    assert_eq!(r.protocol_type("b"), None, "with its metadata");
    r.delete("a", None).expect("delete group");
    drop(r);
    assert!(!store(dir.path()).has_group("a"));
}

/// Version-1 record bytes: old data must keep reading.
#[test]
fn golden_v1_records() {
    let offset = Entry::Offset {
        group: "g".into(),
        topic: "t".into(),
        partition: 2,
        value: Some(Committed {
            offset: 42,
            leader_epoch: 3,
            metadata: "m".into(),
            commit_ms: 1_700_000_000_000,
        }),
    };
    let (k, v) = encode(&offset).expect("encode");
    let key_hex = "00010000016700017400000002";
    let value_hex = "0001000000000000002a000000030000018bcfe56800000000016d";
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    assert_eq!(hex(&k), key_hex);
    assert_eq!(v.as_deref().map(hex).as_deref(), Some(value_hex));
    let unhex = |s: &str| -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    };
    assert_eq!(decode(&unhex(key_hex), Some(&unhex(value_hex))), Ok(offset));
    let group = Entry::Group {
        group: "g".into(),
        value: Some(("consumer".into(), 7)),
    };
    let (k, v) = encode(&group).expect("encode");
    assert_eq!(hex(&k), "000101000167");
    assert_eq!(
        v.as_deref().map(hex).as_deref(),
        Some("00010008636f6e73756d65720000000000000007")
    );
    // Tombstones have no value.
    assert_eq!(
        decode(&unhex("000101000167"), None),
        Ok(Entry::Group {
            group: "g".into(),
            value: None
        })
    );
    // Unknown versions and kinds, truncation: refused, never guessed.
    for (key, value) in [
        ("0002000001670001740000000002", None),
        ("000109000167", None),
        ("00010000016700", None),
        ("000101000167", Some("0002")),
        ("00010000016700017400000002", Some("00010000")),
    ] {
        let value = value.map(unhex);
        assert!(
            decode(&unhex(key), value.as_deref()).is_err(),
            "{key} {value:?}"
        );
    }
}

#[test]
fn a_record_of_an_unknown_version_stops_the_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = partition(dir.path());
    let rec = Record {
        offset: 0,
        timestamp: 0,
        key: Some(Bytes::from_static(&[0, 9, 0])),
        value: None,
        headers: Vec::new(),
    };
    let mut b = batch::build(BuildOptions::default(), &[rec]).expect("build");
    p.append(&mut b).expect("append");
    p.flush().expect("flush");
    drop(p);
    let err = Offsets::open(dir.path(), partition(dir.path())).err();
    assert!(
        matches!(err, Some(Error::Corrupt { .. })),
        "refused: {err:?}"
    );
}

#[test]
fn an_offsets_v1_file_is_migrated_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("offsets.v1"),
        "weft-broker offsets 1\n67 74 2 42 3 1700000000000 6d\n6832 74 0 7 -1 1700000000001 -\nend\n",
    )
    .expect("fixture");
    let o = store(dir.path());
    let want = Committed {
        offset: 42,
        leader_epoch: 3,
        metadata: "m".into(),
        commit_ms: 1_700_000_000_000,
    };
    assert_eq!(o.get("g", "t", 2), Some(&want));
    assert_eq!(o.get("h2", "t", 0).map(|c| c.offset), Some(7));
    assert!(!dir.path().join("offsets.v1").exists());
    assert!(dir.path().join("offsets.v1.migrated").exists());
    drop(o);
    // A later start reads the topic only; commits made since stay.
    let mut o = store(dir.path());
    o.commit("g", [(tp("t", 2), c(50, "new"))]).expect("commit");
    drop(o);
    let o = store(dir.path());
    assert_eq!(o.get("g", "t", 2), Some(&c(50, "new")));
    assert_eq!(o.get("h2", "t", 0).map(|c| c.offset), Some(7));
}

#[test]
fn a_garbled_offsets_v1_file_stops_the_start_and_stays() {
    for bad in [
        "weft-broker offsets 1\n67 74 2 42 3 1 -\n",
        "weft-broker offsets 1\n67 74 2 x 3 1 -\nend\n",
        "weft-broker offsets 1\n6 74 2 1 3 1 -\nend\n",
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("offsets.v1");
        std::fs::write(&path, bad).expect("write");
        assert!(
            Offsets::open(dir.path(), partition(dir.path())).is_err(),
            "{bad:?}"
        );
        assert!(path.exists(), "the file is kept for inspection");
    }
}

#[test]
fn offsets_of_empty_groups_expire_after_the_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut o = store(dir.path());
    let at = |offset: i64, ms: i64| Committed {
        offset,
        leader_epoch: -1,
        metadata: String::new(),
        commit_ms: ms,
    };
    o.commit(
        "g",
        [(tp("t", 0), at(1, 1_000)), (tp("t", 1), at(2, 50_000))],
    )
    .expect("commit");
    o.note_group("g", "classic", 1_000).expect("note");
    let retention = 60_000;
    // Members keep everything, however old.
    assert_eq!(
        o.expire_group("g", 500_000, retention, true)
            .expect("expire"),
        0
    );
    // Empty from 600 000: nothing before 660 000.
    assert_eq!(
        o.expire_group("g", 600_000, retention, false)
            .expect("expire"),
        0
    );
    assert_eq!(
        o.expire_group("g", 659_999, retention, false)
            .expect("expire"),
        0
    );
    // A commit after the group emptied counts from its own time.
    o.commit("g", [(tp("t", 2), at(3, 640_000))])
        .expect("commit");
    assert_eq!(
        o.expire_group("g", 660_000, retention, false)
            .expect("expire"),
        2
    );
    assert_eq!(o.get("g", "t", 2).map(|c| c.offset), Some(3));
    assert_eq!(
        o.expire_group("g", 699_999, retention, false)
            .expect("expire"),
        0
    );
    assert_eq!(
        o.expire_group("g", 700_000, retention, false)
            .expect("expire"),
        1
    );
    assert!(!o.has_group("g"));
    drop(o);
    let o = store(dir.path());
    assert!(!o.has_group("g"), "tombstones are durable");
    assert_eq!(o.protocol_type("g"), None);
}

#[test]
fn commits_survive_a_drop_without_close() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut o = store(dir.path());
    for i in 0..50 {
        o.commit("g", [(tp("t", i % 4), c(i64::from(i), "x"))])
            .expect("commit");
    }
    // No close, no flush beyond what each commit did.
    std::mem::forget(o);
    let o = store(dir.path());
    for p in 0..4 {
        let last = (0..50).filter(|i| i % 4 == p).max().map(i64::from);
        assert_eq!(o.get("g", "t", p).map(|c| c.offset), last);
    }
}

const CRASH_DIR: &str = "WEFT_OFFSETS_CRASH_CHILD_DIR";

/// The child of `acknowledged_commits_survive_kill_9`: commits forever, printing each
/// acknowledged offset. Run directly (without the variable) it checks nothing more than
/// that one commit is acknowledged.
#[test]
fn crash_child() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let (dir, forever) = match std::env::var(CRASH_DIR) {
        Ok(d) => (std::path::PathBuf::from(d), true),
        Err(_) => (scratch.path().to_path_buf(), false),
    };
    let mut o = store(&dir);
    let mut i: i64 = 0;
    loop {
        o.commit("g", [(tp("t", (i % 3) as i32), c(i, "meta"))])
            .expect("commit");
        println!("acked {i}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        i += 1;
        if !forever {
            assert_eq!(o.get("g", "t", 0).map(|c| c.offset), Some(0));
            return;
        }
    }
}

#[test]
fn acknowledged_commits_survive_kill_9() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("test binary");
    let mut child = std::process::Command::new(exe)
        .args([
            "--exact",
            "group::offsets::tests::crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_DIR, dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn child");
    let out = child.stdout.take().expect("stdout");
    let mut acked: Vec<i64> = Vec::new();
    for line in BufReader::new(out).lines() {
        let line = line.expect("line");
        if let Some(n) = line.strip_prefix("acked ") {
            acked.push(n.parse().expect("number"));
            if acked.len() == 200 {
                break;
            }
        }
    }
    // SIGKILL mid-stream: no destructor, no close.
    child.kill().expect("kill");
    let _ = child.wait();
    assert_eq!(acked.len(), 200, "the child acknowledged commits");
    let o = store(dir.path());
    for p in 0..3 {
        let last_acked = acked
            .iter()
            .filter(|i| *i % 3 == i64::from(p))
            .max()
            .copied();
        let stored = o.get("g", "t", p).map(|c| c.offset);
        assert!(
            stored >= last_acked,
            "partition {p}: stored {stored:?}, acknowledged {last_acked:?}"
        );
        assert_eq!(
            o.get("g", "t", p).map(|c| c.metadata.as_str()),
            Some("meta")
        );
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn classic_group() -> state::ClassicGroup {
    state::ClassicGroup {
        protocol_type: "consumer".into(),
        generation: 3,
        protocol: Some("range".into()),
        leader: Some("m1".into()),
        members: vec![state::ClassicMember {
            member_id: "m1".into(),
            instance_id: Some("i".into()),
            client_id: "c".into(),
            client_host: String::new(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            protocols: vec![("range".into(), Bytes::from_static(b"M"))],
            assignment: Bytes::from_static(b"A"),
        }],
    }
}

fn consumer_group() -> state::ConsumerGroup {
    state::ConsumerGroup {
        epoch: 5,
        assignment_epoch: 5,
        assignor: "uniform".into(),
        resolved: vec![("t".into(), uuid::Uuid::from_u128(1), 2)],
    }
}

fn consumer_member(epoch: i32) -> state::ConsumerMember {
    let a = |ps: &[i32]| {
        let mut a = crate::group::consumer::Assignment::new();
        if !ps.is_empty() {
            a.insert(uuid::Uuid::from_u128(1), ps.iter().copied().collect());
        }
        a
    };
    state::ConsumerMember {
        instance_id: None,
        rack_id: None,
        client_id: "c".into(),
        client_host: String::new(),
        rebalance_timeout_ms: 60_000,
        session_timeout_ms: 45_000,
        topics: vec!["t".into()],
        regex: None,
        assignor: None,
        state: 0,
        epoch,
        previous_epoch: epoch - 1,
        assigned: a(&[0, 1]),
        revoking: a(&[]),
        target: a(&[0, 1]),
    }
}

/// Version-1 bytes of the membership records (kinds 2–4): old data must keep reading.
#[test]
fn golden_membership_records() {
    let cases = [
        (
            Entry::Classic {
                group: "g".into(),
                value: Some(classic_group()),
            },
            "000102000167",
            "00010008636f6e73756d6572000000030100057261\
             6e67650100026d310000000100026d310100016900\
             01630000000027100000753000000001000572616e\
             6765000000014d0000000141",
        ),
        (
            Entry::ConsumerGroup {
                group: "g".into(),
                value: Some(consumer_group()),
            },
            "000103000167",
            "000100000005000000050007756e69666f726d0000\
             00010001740000000000000000000000000000000100000002",
        ),
        (
            Entry::ConsumerMember {
                group: "g".into(),
                member: "m".into(),
                value: Some(consumer_member(5)),
            },
            "00010400016700016d",
            "00010000000163000000 00ea60 0000afc8 00000001 000174 00 00 00 00000005 00000004 \
             00000001 00000000000000000000000000000001 00000002 00000000 00000001 \
             00000000 \
             00000001 00000000000000000000000000000001 00000002 00000000 00000001",
        ),
    ];
    for (entry, key_hex, value_hex) in cases {
        let key_hex = key_hex.replace(' ', "");
        let value_hex = value_hex.replace(' ', "");
        let (k, v) = encode(&entry).expect("encode");
        assert_eq!(hex(&k), key_hex, "{entry:?}");
        assert_eq!(v.as_deref().map(hex), Some(value_hex.clone()), "{entry:?}");
        assert_eq!(
            decode(&unhex(&key_hex), Some(&unhex(&value_hex))),
            Ok(entry)
        );
        // Truncated anywhere: refused.
        let value = unhex(&value_hex);
        for cut in [3, value.len() / 2, value.len() - 1] {
            assert!(decode(&unhex(&key_hex), Some(&value[..cut])).is_err());
        }
        // Tombstones have no value.
        assert!(decode(&unhex(&key_hex), None).is_ok());
    }
}

/// Group images are written as differences: unchanged groups and members write nothing,
/// a removed member or group is tombstoned, and a reopen sees the latest.
#[test]
fn membership_is_written_as_differences_and_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut o = store(dir.path());
    let members = |ids: &[(&str, i32)]| {
        ids.iter()
            .map(|(id, e)| ((*id).to_owned(), consumer_member(*e)))
            .collect::<BTreeMap<_, _>>()
    };
    let image = |classic: Option<state::ClassicGroup>, consumer| state::GroupImage {
        classic,
        classic_unchanged: false,
        consumer,
    };
    let n = o
        .store_groups(vec![
            ("a".into(), image(Some(classic_group()), None)),
            (
                "b".into(),
                image(
                    None,
                    Some((consumer_group(), members(&[("m1", 5), ("m2", 5)]))),
                ),
            ),
        ])
        .expect("store");
    assert_eq!(n, 4, "classic a, consumer b and its two members");
    // Nothing changed: nothing written.
    let n = o
        .store_groups(vec![
            ("a".into(), image(Some(classic_group()), None)),
            (
                "b".into(),
                image(
                    None,
                    Some((consumer_group(), members(&[("m1", 5), ("m2", 5)]))),
                ),
            ),
        ])
        .expect("store");
    assert_eq!(n, 0);
    // A rebalancing classic group keeps its record; one member changes, one leaves.
    let n = o
        .store_groups(vec![
            (
                "a".into(),
                state::GroupImage {
                    classic: None,
                    classic_unchanged: true,
                    consumer: None,
                },
            ),
            (
                "b".into(),
                image(None, Some((consumer_group(), members(&[("m1", 6)])))),
            ),
        ])
        .expect("store");
    assert_eq!(n, 2, "m1 changed, m2 tombstoned");
    drop(o);
    let mut o = store(dir.path());
    let classic: Vec<_> = o
        .classic_groups()
        .map(|(g, c)| (g.to_owned(), c.clone()))
        .collect();
    assert_eq!(classic, vec![("a".to_owned(), classic_group())]);
    let consumer: Vec<_> = o
        .consumer_groups()
        .map(|(g, c, m)| (g.to_owned(), c.clone(), m.clone()))
        .collect();
    assert_eq!(
        consumer,
        vec![("b".to_owned(), consumer_group(), members(&[("m1", 6)]))]
    );
    // Both groups gone: tombstones, and nothing left after a reopen.
    let n = o
        .store_groups(vec![
            ("a".into(), image(None, None)),
            ("b".into(), image(None, None)),
        ])
        .expect("store");
    assert_eq!(n, 3, "classic a, member m1, consumer b");
    drop(o);
    let o = store(dir.path());
    assert_eq!(o.classic_groups().count(), 0);
    assert_eq!(o.consumer_groups().count(), 0);
}

/// Compaction of the topic keeps the latest membership record of every group and member
/// and drops tombstoned ones: a reopen after compacting sees the same groups.
#[test]
fn compaction_keeps_the_latest_membership() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_bytes: 2048,
        cleanup_policy: weft_log::CleanupPolicy::Compact,
        min_compaction_lag_ms: 0,
        delete_retention_ms: 0,
        ..LogConfig::default()
    };
    let pdir = dir.path().join("__consumer_offsets-0");
    let p = Arc::new(
        Partition::create(&pdir, config.clone(), Arc::new(SystemClock)).expect("partition"),
    );
    let mut o = Offsets::open(dir.path(), Arc::clone(&p)).expect("open");
    let members = |n: i32, epoch: i32| {
        (0..n)
            .map(|i| (format!("m{i}"), consumer_member(epoch)))
            .collect::<BTreeMap<_, _>>()
    };
    // 100 generations of a classic group, a consumer group growing and shrinking, and a
    // group that comes and goes.
    for round in 0..100 {
        let mut classic = classic_group();
        classic.generation = round;
        let mut consumer = consumer_group();
        consumer.epoch = round;
        consumer.assignment_epoch = round;
        let gone = state::GroupImage::default();
        let temp = if round % 2 == 0 {
            state::GroupImage {
                classic: Some(classic_group()),
                ..Default::default()
            }
        } else {
            gone
        };
        o.store_groups(vec![
            (
                "a".into(),
                state::GroupImage {
                    classic: Some(classic),
                    ..Default::default()
                },
            ),
            (
                "b".into(),
                state::GroupImage {
                    consumer: Some((consumer, members(round % 5 + 1, round))),
                    ..Default::default()
                },
            ),
            ("temp".into(), temp),
        ])
        .expect("store");
    }
    let want_classic: Vec<_> = o
        .classic_groups()
        .map(|(g, c)| (g.to_owned(), c.clone()))
        .collect();
    let want_consumer: Vec<_> = o
        .consumer_groups()
        .map(|(g, c, m)| (g.to_owned(), c.clone(), m.clone()))
        .collect();
    assert_eq!(want_classic.len(), 1, "temp was removed last");
    assert_eq!(want_consumer[0].2.len(), 5, "99 % 5 + 1 members");
    let records_before = p.log_end_offset() - p.log_start_offset();
    let stats = p.compact().expect("compact");
    assert!(
        stats.segments_deleted > 0 || stats.bytes_reclaimed > 0,
        "{stats:?}"
    );
    drop(o);
    drop(p);
    let p = Arc::new(Partition::open(&pdir, config, Arc::new(SystemClock)).expect("reopen"));
    let mut count = 0u64;
    let mut at = p.log_start_offset();
    while at < p.log_end_offset() {
        let bytes = p.read_bytes(at, 1 << 20).expect("read");
        if bytes.is_empty() {
            break;
        }
        let mut pos = 0;
        while pos < bytes.len() {
            let h = batch::BatchHeader::parse(&bytes[pos..]).expect("header");
            count += batch::records(&bytes[pos..pos + h.total_len()])
                .expect("records")
                .len() as u64;
            at = h.next_offset();
            pos += h.total_len();
        }
    }
    assert!(
        count < records_before / 4,
        "{count} of {records_before} left"
    );
    let o = Offsets::open(dir.path(), p).expect("open");
    let classic: Vec<_> = o
        .classic_groups()
        .map(|(g, c)| (g.to_owned(), c.clone()))
        .collect();
    let consumer: Vec<_> = o
        .consumer_groups()
        .map(|(g, c, m)| (g.to_owned(), c.clone(), m.clone()))
        .collect();
    assert_eq!(classic, want_classic);
    assert_eq!(consumer, want_consumer);
}
