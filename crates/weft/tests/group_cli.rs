//! `weft group list|describe|delete|reset-offsets` as subprocesses against a real `weft
//! serve`; every effect is checked through the Kafka protocol (OffsetFetch, ListGroups), not
//! through the CLI's own output. Timeouts are safety limits against hangs.

mod common;
mod groups_support;

use std::thread;
use std::time::{Duration, Instant};

use groups_support::{Cluster, now_ms};

/// 2026-01-01T00:00:00Z: the records of `orders` partition 0 are stamped a second apart from
/// here, so `--to-datetime` has known answers.
const BASE_MS: i64 = 1_767_225_600_000;

/// `orders`: partition 0 with 5 records stamped BASE + 0..4 s, partition 1 with 3 records;
/// group `g` committed at 3 and 1.
fn orders() -> Cluster {
    let cluster = Cluster::start();
    // Old timestamps must not be retention's business here.
    cluster.ok(&[
        "topic",
        "create",
        "orders",
        "--partitions",
        "2",
        "--config",
        "retention.ms=-1",
    ]);
    let stamps: Vec<Option<i64>> = (0..5).map(|i| Some(BASE_MS + i * 1_000)).collect();
    cluster.produce("orders", 0, &stamps);
    cluster.produce("orders", 1, &[None; 3]);
    cluster.commit("g", &[("orders", 0, 3), ("orders", 1, 1)]);
    cluster
}

/// `(partition, committed, new)` rows of a reset plan for `topic`.
fn plan(stdout: &str, topic: &str) -> Vec<(i32, Option<i64>, i64)> {
    stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| w.len() == 4 && w[0] == topic)
        .map(|w| {
            (
                w[1].parse().expect("partition"),
                w[2].parse().ok(),
                w[3].parse().expect("new offset"),
            )
        })
        .collect()
}

#[test]
fn reset_offsets_plans_by_default_and_executes_on_request() {
    let c = orders();
    let committed = || c.committed("g", "orders", &[0, 1]);
    let reset = |args: &[&str]| {
        let mut all = vec!["group", "reset-offsets", "g"];
        all.extend_from_slice(args);
        c.ok(&all)
    };

    // Dry run: the plan, nothing committed.
    let run = reset(&["--topic", "orders", "--to-earliest"]);
    assert_eq!(
        plan(&run.stdout, "orders"),
        [(0, Some(3), 0), (1, Some(1), 0)]
    );
    assert!(run.stderr.contains("dry run"), "{}", run.stderr);
    assert_eq!(committed(), [Some(3), Some(1)]);

    // (flags, expected committed offsets of partitions 0 and 1 afterwards)
    let cases: &[(&[&str], [i64; 2])] = &[
        (&["--topic", "orders:1", "--to-latest"], [3, 3]),
        (&["--topic", "orders", "--to-earliest"], [0, 0]),
        // Kept within the log.
        (&["--all-topics", "--to-offset", "99"], [5, 3]),
        (&["--topic", "orders", "--shift-by", "-2"], [3, 1]),
        (&["--topic", "orders", "--shift-by", "-10"], [0, 0]),
        (&["--topic", "orders", "--shift-by", "+4"], [4, 3]),
        (&["--topic", "orders:0", "--to-offset", "1"], [1, 3]),
        // The first record at or after the time: offsets 2.5 s after BASE → offset 3.
        (
            &[
                "--topic",
                "orders:0",
                "--to-datetime",
                "2026-01-01T00:00:02.500Z",
            ],
            [3, 3],
        ),
        // Kafka's zone-less form, read as UTC; an exact hit.
        (
            &[
                "--topic",
                "orders:0",
                "--to-datetime",
                "2026-01-01T00:00:01.000",
            ],
            [1, 3],
        ),
        (
            &[
                "--topic",
                "orders:0",
                "--to-datetime",
                "2026-01-01T01:00:00+01:00",
            ],
            [0, 3],
        ),
        // No record that late: the log end.
        (
            &[
                "--topic",
                "orders:0",
                "--to-datetime",
                "2030-01-01T00:00:00Z",
            ],
            [5, 3],
        ),
    ];
    for (flags, expected) in cases {
        let before = committed();
        let dry = reset(flags);
        let planned: Vec<i64> = plan(&dry.stdout, "orders").iter().map(|r| r.2).collect();
        assert_eq!(committed(), before, "dry run of {flags:?} changed offsets");
        let mut args = flags.to_vec();
        args.push("--execute");
        let run = reset(&args);
        assert!(run.stderr.contains("committed"), "{}", run.stderr);
        let after = committed();
        assert_eq!(
            after,
            expected.map(Some),
            "after {flags:?} (plan {planned:?})"
        );
        // The dry run planned exactly what was executed.
        assert_eq!(plan(&run.stdout, "orders"), plan(&dry.stdout, "orders"));
    }
}

#[test]
fn bad_reset_requests_are_refused_and_change_nothing() {
    let c = orders();
    c.ok(&["topic", "create", "orders-b"]);
    c.produce("orders-b", 0, &[None; 2]);
    let before = c.committed("g", "orders", &[0, 1]);
    // (flags, exit code, fragment of stderr)
    let cases: &[(&[&str], i32, &str)] = &[
        (&["--topic", "orders"], 2, "--to-earliest"),
        (
            &["--topic", "orders", "--to-earliest", "--to-latest"],
            2,
            "cannot be used with",
        ),
        (&["--to-earliest"], 2, "--topic"),
        (
            &["--topic", "orders", "--all-topics", "--to-earliest"],
            2,
            "cannot be used with",
        ),
        (
            &["--topic", "orders", "--to-datetime", "yesterday"],
            2,
            "YYYY-MM-DDTHH:mm:SS.sss",
        ),
        (&["--topic", "nope", "--to-earliest"], 1, "nope"),
        (
            &["--topic", "orders:7", "--to-earliest"],
            1,
            "no partition 7",
        ),
        (
            &["--topic", "orders:x", "--to-earliest"],
            1,
            "bad partition",
        ),
        // Shifting needs a committed offset: g has none on orders-b.
        (
            &[
                "--topic",
                "orders",
                "--topic",
                "orders-b",
                "--shift-by",
                "1",
            ],
            1,
            "no committed offset to shift",
        ),
    ];
    for (flags, code, fragment) in cases {
        let mut args = vec!["group", "reset-offsets", "g"];
        args.extend_from_slice(flags);
        args.push("--execute");
        let run = c.cli(&args);
        assert_eq!(run.code, Some(*code), "{flags:?}: {}", run.stderr);
        assert!(
            run.stderr.contains(fragment),
            "{flags:?}: expected {fragment:?} in {}",
            run.stderr
        );
        assert_eq!(c.committed("g", "orders", &[0, 1]), before, "{flags:?}");
        assert_eq!(c.committed("g", "orders-b", &[0]), [None], "{flags:?}");
    }
    // A group without offsets has nothing for --all-topics to reset.
    let run = c.cli(&[
        "group",
        "reset-offsets",
        "fresh",
        "--all-topics",
        "--to-earliest",
    ]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("no committed offsets"),
        "{}",
        run.stderr
    );
}

/// Waits until `weft group describe` shows `group` in `state`.
fn wait_state(c: &Cluster, group: &str, state: &str) {
    let deadline = Instant::now() + common::SAFETY;
    loop {
        let run = c.cli(&["group", "describe", group]);
        if run.stdout.contains(&format!("state: {state}\n")) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{group} never {state}: {}",
            run.stdout
        );
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn reset_and_delete_are_refused_while_members_are_active() {
    let c = orders();
    let member = c.member("g", "orders");
    wait_state(&c, "g", "Stable");
    let before = c.committed("g", "orders", &[0, 1]);

    for execute in [false, true] {
        let mut args = vec![
            "group",
            "reset-offsets",
            "g",
            "--topic",
            "orders",
            "--to-earliest",
        ];
        if execute {
            args.push("--execute");
        }
        let run = c.cli(&args);
        assert_eq!(run.code, Some(1), "{}", run.stderr);
        assert!(
            run.stderr.contains(
                "offsets can only be reset while group \"g\" is inactive, but its state is \
                 Stable with 1 member(s)"
            ),
            "{}",
            run.stderr
        );
    }
    let run = c.cli(&["group", "delete", "g"]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("cannot delete group \"g\": it has 1 active member(s)"),
        "{}",
        run.stderr
    );
    assert_eq!(c.committed("g", "orders", &[0, 1]), before);

    // The member leaves: the group is empty and goes, offsets with it.
    drop(member);
    wait_state(&c, "g", "Empty");
    let run = c.ok(&["group", "delete", "g"]);
    assert!(run.stderr.contains("deleted group \"g\""), "{}", run.stderr);
    assert_eq!(c.committed("g", "orders", &[0, 1]), [None, None]);
    let list = c.ok(&["group", "list"]);
    assert!(
        !list.stdout.lines().any(|l| l.starts_with("g ")),
        "{}",
        list.stdout
    );
    let run = c.cli(&["group", "describe", "g"]);
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("does not exist"), "{}", run.stderr);

    // Unknown groups: a clear error, and the others in the same call are still deleted.
    c.commit("other", &[("orders", 0, 1)]);
    let run = c.cli(&["group", "delete", "never-was", "other"]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("cannot delete group \"never-was\": it does not exist"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("deleted group \"other\""),
        "{}",
        run.stderr
    );
    assert_eq!(c.committed("other", "orders", &[0]), [None]);
}

/// `(partition, committed, log-end, lag, lag-sec, status)` rows of `weft group describe`.
fn rows(describe: &str, topic: &str) -> Vec<(i32, String, String, String, String, String)> {
    describe
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| w.len() == 8 && w[0] == topic)
        .map(|w| {
            (
                w[1].parse().expect("partition"),
                w[2].to_owned(),
                w[3].to_owned(),
                w[4].to_owned(),
                w[5].to_owned(),
                w[6].to_owned(),
            )
        })
        .collect()
}

#[test]
fn describe_shows_lag_in_records_and_seconds_and_the_status_from_http() {
    let c = Cluster::start();
    c.ok(&["topic", "create", "audit", "--config", "retention.ms=-1"]);
    let hour = 3_600_000;
    c.produce("audit", 0, &[Some(now_ms() - hour), None, None]);
    c.commit("slow", &[("audit", 0, 0)]);

    // One-shot: lag in records and seconds, no status.
    let run = c.ok(&["group", "describe", "slow"]);
    let r = rows(&run.stdout, "audit");
    assert_eq!(r.len(), 1, "{}", run.stdout);
    let (p, committed, end, lag, seconds, status) = &r[0];
    assert_eq!(
        (
            *p,
            committed.as_str(),
            end.as_str(),
            lag.as_str(),
            status.as_str()
        ),
        (0, "0", "3", "3", "-"),
        "{}",
        run.stdout
    );
    let seconds: f64 = seconds.parse().expect("lag seconds");
    assert!(
        seconds >= 3_600.0 && seconds < 3_600.0 + common::SAFETY.as_secs_f64(),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("status:"), "{}", run.stdout);

    // With the server's HTTP address: the monitor's status too (STOP: nobody commits).
    let http = c.server.http_addr.to_string();
    let deadline = Instant::now() + common::SAFETY;
    loop {
        let run = c.ok(&["group", "describe", "slow", "--http", &http]);
        if run.stdout.contains("status: STOP\n") {
            let r = rows(&run.stdout, "audit");
            assert_eq!(r[0].5, "STOP", "{}", run.stdout);
            break;
        }
        assert!(Instant::now() < deadline, "never STOP: {}", run.stdout);
        thread::sleep(Duration::from_millis(100));
    }

    // Caught up: no lag, zero seconds.
    c.commit("slow", &[("audit", 0, 3)]);
    let run = c.ok(&["group", "describe", "slow"]);
    let r = rows(&run.stdout, "audit");
    assert_eq!(
        (r[0].3.as_str(), r[0].4.as_str()),
        ("0", "0.0"),
        "{}",
        run.stdout
    );

    // A server that is not there is an error naming it.
    let run = c.cli(&["group", "describe", "slow", "--http", "127.0.0.1:1"]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("127.0.0.1:1"), "{}", run.stderr);
}

#[test]
fn a_group_that_consumed_is_listed_and_described() {
    let c = Cluster::start();
    c.ok(&["topic", "create", "orders", "--partitions", "2"]);
    c.produce("orders", 0, &[None; 3]);
    c.produce("orders", 1, &[None; 2]);
    // The --group path of `weft consume`: subscribes, and commits what it read on exit.
    let run = c.ok(&[
        "consume",
        "orders",
        "--group",
        "g",
        "--max-messages",
        "5",
        "--timeout-ms",
        "30000",
    ]);
    assert_eq!(run.stdout.lines().count(), 5, "{}", run.stdout);

    let list = c.ok(&["group", "list"]);
    let row: Vec<&str> = list
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|w| w.first() == Some(&"g"))
        .unwrap_or_else(|| panic!("no group g in {}", list.stdout));
    // Everyone has left: the group is empty and keeps its protocol type.
    assert_eq!(row[1..3], ["Empty", "consumer"], "{}", list.stdout);

    let describe = c.ok(&["group", "describe", "g"]);
    assert!(
        describe
            .stdout
            .contains("state: Empty\nprotocol: consumer/"),
        "{}",
        describe.stdout
    );
    assert!(
        describe.stdout.contains("members: 0\n"),
        "{}",
        describe.stdout
    );
    let expected = |p: i32, committed: &str, end: &str, lag: &str, sec: &str| {
        (
            p,
            committed.into(),
            end.into(),
            lag.into(),
            sec.into(),
            "-".into(),
        )
    };
    assert_eq!(
        rows(&describe.stdout, "orders"),
        [
            expected(0, "3", "3", "0", "0.0"),
            expected(1, "2", "2", "0", "0.0")
        ],
        "{}",
        describe.stdout
    );

    // New records are lag until the group reads them.
    c.produce("orders", 1, &[None; 2]);
    let describe = c.ok(&["group", "describe", "g"]);
    let r = rows(&describe.stdout, "orders");
    assert_eq!(
        (r[1].1.as_str(), r[1].2.as_str(), r[1].3.as_str()),
        ("2", "4", "2")
    );
    let seconds: f64 = r[1].4.parse().expect("lag seconds");
    assert!(
        (0.0..common::SAFETY.as_secs_f64()).contains(&seconds),
        "{}",
        describe.stdout
    );
}
