use super::*;

const INTERVAL: i64 = 1_000;

fn config() -> Config {
    Config {
        interval: Duration::from_millis(INTERVAL as u64),
        window: 4,
    }
}

/// One case: `(committed, lag)` per round, one round per interval starting at t=0, fed
/// through [`Monitor::observe`] (so the last-commit bookkeeping is exercised too), then
/// `extra` more rounds repeating the last observation.
struct Case {
    name: &'static str,
    rounds: &'static [(i64, i64)],
    active: bool,
    /// Commit times known: each round's commit happened at `time − commit_age`.
    commit_age: Option<i64>,
    expected: Status,
}

fn check(case: &Case) {
    let mut monitor = Monitor::new(config());
    for (i, &(committed, lag)) in case.rounds.iter().enumerate() {
        let time_ms = i as i64 * INTERVAL;
        monitor.observe(round(time_ms, committed, lag, case.active, case.commit_age));
    }
    let view = monitor.group("g").expect("group seen");
    assert_eq!(view.status, case.expected, "{}", case.name);
    assert_eq!(view.partitions.len(), 1, "{}", case.name);
    assert_eq!(view.partitions[0].status, case.expected, "{}", case.name);
}

fn round(time_ms: i64, committed: i64, lag: i64, active: bool, age: Option<i64>) -> Round {
    Round {
        time_ms,
        groups: vec![GroupObservation {
            group: "g".into(),
            state: if active { "Stable" } else { "Empty" }.into(),
            protocol_type: "consumer".into(),
            protocol: "range".into(),
            members: usize::from(active),
            partitions: Some(vec![PartitionObservation {
                topic: "t".into(),
                partition: 0,
                committed,
                log_end: committed + lag,
                oldest_unconsumed_ms: Some(time_ms - 500),
                commit_time_ms: age.map(|a| time_ms - a),
            }]),
        }],
    }
}

#[test]
fn statuses_of_sample_sequences() {
    let cases = [
        Case {
            name: "no lag",
            rounds: &[(10, 0), (20, 0), (30, 0), (40, 0)],
            active: true,
            commit_age: None,
            expected: Status::Ok,
        },
        Case {
            name: "lag now gone",
            rounds: &[(10, 5), (10, 9), (10, 12), (22, 0)],
            active: true,
            commit_age: None,
            expected: Status::Ok,
        },
        Case {
            name: "window not full yet",
            rounds: &[(10, 5), (11, 6), (12, 7)],
            active: true,
            commit_age: None,
            expected: Status::Ok,
        },
        Case {
            name: "lag growing while commits move",
            rounds: &[(10, 5), (11, 6), (12, 6), (13, 8)],
            active: true,
            commit_age: None,
            expected: Status::Warn,
        },
        Case {
            name: "lag growing, only the newest window counts",
            rounds: &[(1, 50), (10, 5), (11, 6), (12, 6), (13, 8)],
            active: true,
            commit_age: None,
            expected: Status::Warn,
        },
        Case {
            name: "lag flat across the window is not growing",
            rounds: &[(10, 5), (11, 5), (12, 5), (13, 5)],
            active: true,
            commit_age: None,
            expected: Status::Ok,
        },
        Case {
            name: "lag dipped inside the window",
            rounds: &[(10, 5), (11, 7), (12, 6), (13, 8)],
            active: true,
            commit_age: None,
            expected: Status::Ok,
        },
        Case {
            name: "zero lag inside the window (burst) is OK",
            rounds: &[(10, 0), (11, 1), (12, 2), (13, 3)],
            active: true,
            commit_age: None,
            expected: Status::Ok,
        },
        Case {
            name: "offset not moving while a member is there",
            rounds: &[(10, 5), (10, 6), (10, 6), (10, 9)],
            active: true,
            commit_age: None,
            expected: Status::Stall,
        },
        Case {
            name: "member there, offset still for longer than the window",
            rounds: &[(10, 5), (10, 5), (10, 5), (10, 5), (10, 5), (10, 5)],
            active: true,
            commit_age: None,
            expected: Status::Stall,
        },
        Case {
            name: "no member, offset still across the window: stalled first",
            rounds: &[(10, 5), (10, 5), (10, 5), (10, 5)],
            active: false,
            commit_age: None,
            expected: Status::Stall,
        },
        Case {
            name: "no member, no commit for longer than the window",
            rounds: &[(10, 5), (10, 5), (10, 5), (10, 5), (10, 5), (10, 5)],
            active: false,
            commit_age: None,
            expected: Status::Stop,
        },
        Case {
            name: "stopped with no lag is OK",
            rounds: &[(10, 0), (10, 0), (10, 0), (10, 0), (10, 0), (10, 0)],
            active: false,
            commit_age: None,
            expected: Status::Ok,
        },
        Case {
            name: "commit times: recent commits of the same offset stall",
            rounds: &[(10, 5), (10, 5), (10, 5), (10, 5), (10, 5), (10, 5)],
            active: true,
            commit_age: Some(100),
            expected: Status::Stall,
        },
        Case {
            name: "commit times: last commit older than the window stops even with members",
            rounds: &[(10, 5), (10, 6)],
            active: true,
            commit_age: Some(4 * INTERVAL + 1),
            expected: Status::Stop,
        },
        Case {
            name: "commit times: commit exactly one window old is not yet stopped",
            rounds: &[(10, 5), (11, 6)],
            active: true,
            commit_age: Some(4 * INTERVAL),
            expected: Status::Ok,
        },
    ];
    for case in &cases {
        check(case);
    }
}

#[test]
fn evaluate_on_edges() {
    let c = config();
    assert_eq!(evaluate(&[], 0, 0, &c), Status::Ok);
    let s = |t: i64, committed: i64, lag: i64| Sample {
        time_ms: t,
        committed,
        log_end: committed + lag,
        lag,
        lag_ms: None,
        commit_time_ms: None,
        active: false,
    };
    // The STOP boundary is "longer than the window": window_ms itself is not enough.
    let one = [s(0, 1, 1)];
    assert_eq!(evaluate(&one, 0, c.window_ms(), &c), Status::Ok);
    assert_eq!(evaluate(&one, 0, c.window_ms() + 1, &c), Status::Stop);
    // An offset that went back and forth (a reset) moved: not stalled.
    let w = [s(0, 5, 3), s(1, 2, 6), s(2, 5, 4), s(3, 5, 5)];
    assert_eq!(evaluate(&w, 2, 3, &c), Status::Ok);
}

#[test]
fn lag_seconds_from_the_oldest_unconsumed_record() {
    let mut m = Monitor::new(config());
    let obs = |committed: i64, log_end: i64, ts: Option<i64>| PartitionObservation {
        topic: "t".into(),
        partition: 0,
        committed,
        log_end,
        oldest_unconsumed_ms: ts,
        commit_time_ms: None,
    };
    let cases = [
        (obs(5, 9, Some(1_000)), 10_000, Some(9_000)),
        (obs(9, 9, Some(1_000)), 10_000, Some(0)),
        (obs(5, 9, None), 10_000, None),
        // A record stamped in the future (clock skew) is not negative lag.
        (obs(5, 9, Some(20_000)), 10_000, Some(0)),
        // Committed past the end (truncated log): no lag.
        (obs(12, 9, Some(1_000)), 10_000, Some(0)),
    ];
    for (p, now, expected) in cases {
        let expected_lag = (p.log_end - p.committed).max(0);
        m.observe(Round {
            time_ms: now,
            groups: vec![GroupObservation {
                group: "g".into(),
                state: "Empty".into(),
                protocol_type: String::new(),
                protocol: String::new(),
                members: 0,
                partitions: Some(vec![p.clone()]),
            }],
        });
        let view = m.group("g").expect("group");
        assert_eq!(view.partitions[0].lag_ms, expected, "{p:?}");
        assert_eq!(view.partitions[0].lag, expected_lag, "{p:?}");
        assert_eq!(view.total_lag, expected_lag, "{p:?}");
    }
}

#[test]
fn groups_take_their_worst_partition_and_gone_ones_are_forgotten() {
    let mut m = Monitor::new(config());
    let part = |p: i32, committed: i64, lag: i64| PartitionObservation {
        topic: "t".into(),
        partition: p,
        committed,
        log_end: committed + lag,
        oldest_unconsumed_ms: None,
        commit_time_ms: None,
    };
    let group = |id: &str, parts: Option<Vec<PartitionObservation>>| GroupObservation {
        group: id.into(),
        state: "Empty".into(),
        protocol_type: "consumer".into(),
        protocol: String::new(),
        members: 0,
        partitions: parts,
    };
    // Partition 0 never moves with lag (→ STOP after the window), partition 1 keeps up.
    for i in 0..6 {
        m.observe(Round {
            time_ms: i * INTERVAL,
            groups: vec![
                group("g", Some(vec![part(0, 3, 2), part(1, 10 * i, 0)])),
                group("other", Some(vec![part(0, 1, 0)])),
            ],
        });
    }
    let g = m.group("g").expect("g");
    let statuses: Vec<Status> = g.partitions.iter().map(|p| p.status).collect();
    assert_eq!(statuses, [Status::Stop, Status::Ok]);
    assert_eq!(g.status, Status::Stop);
    assert_eq!(g.total_lag, 2);
    assert_eq!(m.sample_count(), 4 + 4 + 4, "windows are bounded");
    let ids: Vec<String> = m.groups().into_iter().map(|g| g.group).collect();
    assert_eq!(ids, ["g", "other"]);

    // A round that could not read g's offsets keeps its windows; one without `other`
    // forgets it; a partition no longer reported is forgotten.
    m.observe(Round {
        time_ms: 6 * INTERVAL,
        groups: vec![group("g", None)],
    });
    assert_eq!(m.groups().len(), 1);
    assert_eq!(m.group("g").expect("g").status, Status::Stop);
    assert_eq!(m.sample_count(), 8);
    m.observe(Round {
        time_ms: 7 * INTERVAL,
        groups: vec![group("g", Some(vec![part(1, 80, 0)]))],
    });
    let g = m.group("g").expect("g");
    assert_eq!(g.partitions.len(), 1);
    assert_eq!(g.status, Status::Ok);
    assert_eq!(m.sample_count(), 4);
    assert!(m.group("other").is_none());
}

#[test]
fn config_is_checked() {
    let bad = [
        Config {
            interval: Duration::ZERO,
            window: 10,
        },
        Config {
            interval: Duration::from_secs(1),
            window: 1,
        },
    ];
    for c in bad {
        assert!(c.validate().is_err(), "{c:?}");
    }
    assert!(Config::default().validate().is_ok());
    assert_eq!(Config::default().window_ms(), 50_000);
}
