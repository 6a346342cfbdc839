//! Consumer lag over HTTP (`/v1/groups`, `/v1/groups/{id}`) from a real `weft serve` whose
//! lag monitor samples every 200 ms over windows of 4 samples. Assertions are on the states
//! reached, never on how long they took; timeouts are safety limits against hangs.

mod common;
mod groups_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use groups_support::{Cluster, Mode, now_ms, produce_with};
use serde_json::Value;

fn partition(json: &Value, topic: &str, p: i64) -> Value {
    json["partitions"]
        .as_array()
        .and_then(|ps| {
            ps.iter()
                .find(|x| x["topic"] == topic && x["partition"] == p)
                .cloned()
        })
        .unwrap_or_else(|| panic!("no {topic}/{p} in {json}"))
}

#[test]
fn lag_and_status_follow_what_the_consumers_do() {
    let cluster = Cluster::start();
    cluster.ok(&["topic", "create", "events"]);
    cluster.produce("events", 0, &[None; 10]);

    // A consumer read 4 records, committed and went away.
    cluster.commit("app", &[("events", 0, 4)]);
    let json = cluster.wait_group("app", "showed lag 6", |j| j["total_lag"] == 6);
    let p = partition(&json, "events", 0);
    assert_eq!(
        (&p["committed_offset"], &p["log_end_offset"], &p["lag"]),
        (&4.into(), &10.into(), &6.into()),
        "{json}"
    );
    assert_eq!(json["members"], 0, "{json}");

    // Nobody commits: the lag grows with every record and the group stops.
    cluster.produce("events", 0, &[None; 5]);
    cluster.wait_group("app", "showed lag 11", |j| j["total_lag"] == 11);
    let json = cluster.wait_group("app", "reached STOP", |j| j["status"] == "STOP");
    assert_eq!(partition(&json, "events", 0)["status"], "STOP", "{json}");
    assert_eq!(json["total_lag"], 11, "{json}");
    let (code, list) = cluster.get("/v1/groups");
    assert_eq!(code, 200);
    let row = list["groups"]
        .as_array()
        .and_then(|gs| gs.iter().find(|g| g["group"] == "app").cloned())
        .unwrap_or_else(|| panic!("no app in {list}"));
    assert_eq!(
        (&row["total_lag"], &row["status"], &row["members"]),
        (&11.into(), &"STOP".into(), &0.into()),
        "{list}"
    );

    // A member joins but does not commit: it is there, its offset does not move.
    let member = cluster.member("app", "events");
    let json = cluster.wait_group("app", "reached STALL with a stable member", |j| {
        j["status"] == "STALL" && j["members"] == 1 && j["state"] == "Stable"
    });
    assert_eq!(json["protocol_type"], "consumer", "{json}");

    // It commits, but slower than a producer writes: lag grows while commits move.
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let stop = Arc::clone(&stop);
        let p = cluster.producer();
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                produce_with(&p, "events", 0, &[None; 2]);
                thread::sleep(Duration::from_millis(50));
            }
        })
    };
    member.set(Mode::CommitOneMore);
    let warn = cluster.wait_group("app", "reached WARN", |j| j["status"] == "WARN");
    stop.store(true, Ordering::Relaxed);
    producer.join().expect("producer thread");
    assert_eq!(warn["members"], 1, "{warn}");

    // It catches up: no lag, OK.
    member.set(Mode::CommitEnd);
    let json = cluster.wait_group("app", "caught up", |j| {
        j["status"] == "OK" && j["total_lag"] == 0
    });
    let p = partition(&json, "events", 0);
    assert_eq!(p["lag_seconds"], 0.0, "{json}");
    assert_eq!(p["committed_offset"], p["log_end_offset"], "{json}");

    // It leaves; new records are lag nobody will read: STOP again.
    drop(member);
    cluster.produce("events", 0, &[None; 3]);
    let json = cluster.wait_group("app", "stopped after the member left", |j| {
        j["status"] == "STOP" && j["members"] == 0
    });
    assert_eq!(json["total_lag"], 3, "{json}");
    assert_eq!(json["state"], "Empty", "{json}");
}

#[test]
fn lag_seconds_is_the_age_of_the_oldest_unconsumed_record() {
    let cluster = Cluster::start();
    cluster.ok(&["topic", "create", "audit", "--config", "retention.ms=-1"]);
    let hour = 3_600_000;
    let now = now_ms();
    // Records written two hours, one hour and (twice) now minus a minute ago.
    cluster.produce(
        "audit",
        0,
        &[
            Some(now - 2 * hour),
            Some(now - hour),
            Some(now - 60_000),
            Some(now - 60_000),
        ],
    );
    // Upper bounds allow for the time the test itself takes (the safety limit).
    let slack = common::SAFETY.as_secs_f64();
    let cases = [(0, 7_200.0, 4), (1, 3_600.0, 3), (2, 60.0, 2), (4, 0.0, 0)];
    for (committed, age, lag) in cases {
        cluster.commit("old", &[("audit", 0, committed)]);
        // The timestamp is read in the round that sees the commit, or a later one.
        let json = cluster.wait_group("old", "saw the commit and its record", |j| {
            let p = &j["partitions"][0];
            p["committed_offset"] == committed && !p["lag_seconds"].is_null()
        });
        let p = partition(&json, "audit", 0);
        assert_eq!(p["lag"], lag, "{json}");
        let seconds = p["lag_seconds"]
            .as_f64()
            .unwrap_or_else(|| panic!("no lag_seconds in {json}"));
        if lag == 0 {
            assert_eq!(seconds, 0.0, "{json}");
        } else {
            assert!(
                seconds >= age && seconds < age + slack,
                "committed at {committed}: lag_seconds {seconds}, expected about {age}: {json}"
            );
        }
    }
}

#[test]
fn unknown_groups_are_a_404_problem() {
    let cluster = Cluster::start();
    cluster.ok(&["topic", "create", "t"]);
    cluster.commit("known", &[("t", 0, 0)]);
    cluster.wait_group("known", "was sampled", |_| true);
    let (code, json) = cluster.get("/v1/groups/unknown-group");
    assert_eq!(code, 404, "{json}");
    assert_eq!(json["code"], "group_not_found", "{json}");
    assert!(
        json["message"]
            .as_str()
            .is_some_and(|m| m.contains("unknown-group")),
        "{json}"
    );
    let (code, list) = cluster.get("/v1/groups");
    assert_eq!(code, 200);
    assert_eq!(list["interval_ms"], 200, "{list}");
    assert_eq!(list["window"], 4, "{list}");
    let ids: Vec<&str> = list["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter_map(|g| g["group"].as_str())
        .collect();
    assert_eq!(ids, ["known"], "{list}");
}
