//! REST consumer instances (`/v1/consumers/…`, the Confluent REST Proxy v2 shape) against a
//! real `weft serve`: an instance is a real member of a Kafka consumer group — `weft group
//! describe` and kafka-python's admin client see it and its commits, and a kafka-python
//! consumer of the same group resumes exactly after what the instance committed. Also:
//! `max_bytes` holds records back without losing any, problem bodies, the bound on
//! instances and idle expiry, with those two limits set in `weft.toml`'s `[gateway]` table
//! and the environment winning over it.

mod common;
mod gateway_support;

use std::collections::BTreeSet;

use gateway_support::{Gw, eventually, python, request};
use serde_json::{Value, json};

fn delete(gw: &Gw, path: &str) -> gateway_support::Resp {
    request(gw.http, "DELETE", path, &[], None)
}

fn post_raw(gw: &Gw, path: &str, body: &str) -> gateway_support::Resp {
    request(
        gw.http,
        "POST",
        path,
        &[("content-type", "application/json")],
        Some(body.as_bytes()),
    )
}

/// Asserts a problem body with `status` and `code`.
fn problem(r: &gateway_support::Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    let body = r.json();
    assert_eq!(body["code"], code, "{body}");
    assert!(body["request_id"].as_str().is_some_and(|s| !s.is_empty()));
}

#[test]
fn an_instance_is_a_group_member_whose_commits_kafka_clients_resume_from() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = Gw::start(dir.path(), &[], 0);
    gw.create_topic("orders", 2, &[]);
    let mut sent = Vec::new();
    for i in 0..6 {
        sent.push((Some(format!("k{i}")), json!({"n": i}), Some(i % 2)));
    }
    let records: Vec<(Option<&str>, Value, Option<i32>)> = sent
        .iter()
        .map(|(k, v, p)| (k.as_deref(), v.clone(), *p))
        .collect();
    gw.produce("orders", &records);

    let base = "/v1/consumers/g1/instances/a";
    let r = gw.post(
        "/v1/consumers/g1",
        &json!({"name": "a", "auto.offset.reset": "earliest", "format": "json"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["instance_id"], "a");
    let uri = r.json()["base_uri"].as_str().expect("base_uri").to_owned();
    assert!(uri.starts_with("http://") && uri.ends_with(base), "{uri}");

    // Refusals, each a problem body.
    problem(
        &gw.post("/v1/consumers/g1", &json!({"name": "a"})),
        409,
        "conflict",
    );
    problem(
        &gw.post("/v1/consumers/g1", &json!({"name": "a/b"})),
        422,
        "unprocessable",
    );
    problem(
        &gw.post("/v1/consumers/g1", &json!({"auto.offset.reset": "middle"})),
        422,
        "unprocessable",
    );
    problem(&post_raw(&gw, "/v1/consumers/g1", "{"), 400, "bad_request");
    problem(&gw.get(&format!("{base}/records")), 409, "conflict");
    problem(
        &gw.post(
            &format!("{base}/subscription"),
            &json!({"topics": ["nope"]}),
        ),
        404,
        "topic_not_found",
    );
    problem(
        &gw.post(&format!("{base}/subscription"), &json!({"topics": []})),
        422,
        "unprocessable",
    );
    problem(
        &gw.get("/v1/consumers/g1/instances/zz/records"),
        404,
        "not_found",
    );
    problem(
        &gw.get(&format!("{base}/offsets?partitions=orders")),
        400,
        "bad_request",
    );

    let r = gw.post(
        &format!("{base}/subscription"),
        &json!({"topics": ["orders"]}),
    );
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(
        gw.get(&format!("{base}/subscription")).json(),
        json!({"topics": ["orders"]})
    );

    // The first records after the group's join, one at a time (max_bytes=1 still returns
    // one record; the others are held, not lost), then the rest.
    let first = eventually("a first record", || {
        let r = gw.get(&format!("{base}/records?timeout=500&max_bytes=1"));
        assert_eq!(r.status, 200, "{}", r.text());
        let got = r.json().as_array().cloned().expect("array");
        (!got.is_empty()).then_some(got)
    });
    assert_eq!(first.len(), 1, "{first:?}");
    let mut seen: Vec<Value> = first;
    eventually("all six records", || {
        let r = gw.get(&format!("{base}/records?timeout=200"));
        assert_eq!(r.status, 200, "{}", r.text());
        seen.extend(r.json().as_array().cloned().expect("array"));
        (seen.len() >= 6).then_some(())
    });
    let positions: BTreeSet<(i64, i64)> = seen
        .iter()
        .map(|r| {
            (
                r["partition"].as_i64().expect("p"),
                r["offset"].as_i64().expect("o"),
            )
        })
        .collect();
    assert_eq!(seen.len(), 6, "no record twice: {seen:?}");
    assert_eq!(
        positions,
        [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
            .into_iter()
            .collect()
    );
    let values: BTreeSet<i64> = seen
        .iter()
        .map(|r| r["value"]["n"].as_i64().expect("n"))
        .collect();
    assert_eq!(values, (0..6).collect());
    assert_eq!(seen[0]["topic"], "orders");
    let assigned = gw.get(&format!("{base}/assignments")).json();
    assert_eq!(
        assigned["partitions"],
        json!([{"topic": "orders", "partition": 0}, {"topic": "orders", "partition": 1}])
    );

    // Commit everything fetched (no body): the next offsets, 3 and 3.
    let r = post_raw(&gw, &format!("{base}/offsets"), "");
    assert_eq!(r.status, 200, "{}", r.text());
    let committed = gw
        .get(&format!("{base}/offsets?partitions=orders:0,orders:1"))
        .json();
    let offsets: Vec<i64> = committed["offsets"]
        .as_array()
        .expect("offsets")
        .iter()
        .map(|o| o["offset"].as_i64().expect("offset"))
        .collect();
    assert_eq!(offsets, [3, 3], "{committed}");

    // Another Kafka client sees the member and its commits: weft's CLI and kafka-python.
    let describe = common::run_weft(
        dir.path(),
        &gw.kafka.to_string(),
        &["group", "describe", "g1"],
        None,
    );
    assert_eq!(describe.code, Some(0), "{}", describe.stderr);
    assert!(
        describe.stdout.contains("weft-gateway-a"),
        "{}",
        describe.stdout
    );
    let py = python(
        r#"
import json, sys
from kafka import KafkaAdminClient
admin = KafkaAdminClient(bootstrap_servers=sys.argv[1])
offsets = admin.list_group_offsets({"g1": None})["g1"]
print(sorted((tp.partition, om.offset) for tp, om in offsets.items()))
print(json.dumps(admin.describe_groups(["g1"])["g1"], default=str))
"#,
        &[&gw.kafka.to_string()],
    );
    let mut lines = py.lines();
    assert_eq!(lines.next(), Some("[(0, 3), (1, 3)]"), "{py}");
    let described = lines.next().unwrap_or_default();
    assert!(
        described.contains("Stable") && described.contains("weft-gateway-a"),
        "{py}"
    );

    // An explicit commit names the last record processed: the group resumes after it.
    let r = gw.post(
        &format!("{base}/offsets"),
        &json!({"offsets": [{"topic": "orders", "partition": 0, "offset": 0}]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["offsets"][0]["offset"], 1);
    problem(
        &gw.post(
            &format!("{base}/offsets"),
            &json!({"offsets": [{"topic": "orders", "partition": -1, "offset": 0}]}),
        ),
        422,
        "unprocessable",
    );

    // Deleting the instance leaves the group; a kafka-python consumer of the group then
    // reads partition 0 from offset 1 and nothing of partition 1.
    assert_eq!(delete(&gw, base).status, 204);
    problem(&delete(&gw, base), 404, "not_found");
    problem(&gw.get(&format!("{base}/records")), 404, "not_found");
    let py = python(
        r#"
import sys
from kafka import KafkaConsumer
c = KafkaConsumer("orders", bootstrap_servers=sys.argv[1], group_id="g1",
                  auto_offset_reset="latest", enable_auto_commit=False,
                  consumer_timeout_ms=8000)
got = []
for m in c:
    got.append((m.partition, m.offset))
    if len(got) == 2:
        break
print(sorted(got))
"#,
        &[&gw.kafka.to_string()],
    );
    assert_eq!(py.trim(), "[(0, 1), (0, 2)]", "{py}");
}

#[test]
fn instances_are_bounded_and_expire_with_limits_from_weft_toml_and_env() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The file sets both limits; the environment overrides the timeout (600 s → 300 ms).
    std::fs::write(
        dir.path().join("weft.toml"),
        "[gateway]\nmax_consumer_instances = 1\nconsumer_instance_timeout_ms = 600000\n",
    )
    .expect("weft.toml");
    let gw = Gw::start(dir.path(), &[("CONSUMER_INSTANCE_TIMEOUT_MS", "300")], 0);
    let r = gw.post("/v1/consumers/g", &json!({"name": "one"}));
    assert_eq!(r.status, 200, "{}", r.text());
    problem(
        &gw.post("/v1/consumers/g", &json!({"name": "two"})),
        429,
        "too_many",
    );
    // Unused (any request would keep it alive), the first instance expires; then it is
    // gone and there is room again.
    gw.wait_log("consumer instance expired");
    problem(
        &gw.get("/v1/consumers/g/instances/one/subscription"),
        404,
        "not_found",
    );
    let r = gw.post("/v1/consumers/g", &json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.json()["instance_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("rest-"))
    );
}

/// Instance `name` of `group` (from the earliest offset without commits) subscribed to
/// `topic`: its path.
fn subscribed(gw: &Gw, group: &str, name: &str, topic: &str) -> String {
    let r = gw.post(
        &format!("/v1/consumers/{group}"),
        &json!({"name": name, "auto.offset.reset": "earliest"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let base = format!("/v1/consumers/{group}/instances/{name}");
    let r = gw.post(&format!("{base}/subscription"), &json!({"topics": [topic]}));
    assert_eq!(r.status, 204, "{}", r.text());
    base
}

/// Fetches from instance `base` until `n` records came, as (partition, offset).
fn fetch(gw: &Gw, base: &str, n: usize) -> Vec<(i64, i64)> {
    let mut seen = Vec::new();
    eventually(&format!("{n} records from {base}"), || {
        let r = gw.get(&format!("{base}/records?timeout=200"));
        assert_eq!(r.status, 200, "{}", r.text());
        for rec in r.json().as_array().cloned().expect("array") {
            seen.push((
                rec["partition"].as_i64().expect("p"),
                rec["offset"].as_i64().expect("o"),
            ));
        }
        (seen.len() >= n).then_some(())
    });
    seen
}

/// Instances live in memory (as the Confluent proxy's): after `weft serve` is killed and
/// restarted on the same data dir, the old instance URL is a 404 naming it, and a new
/// instance in the group reads from the group's committed offsets — nothing committed
/// comes again, nothing after the commits is lost.
#[test]
fn after_a_restart_the_old_instance_is_gone_and_a_new_one_resumes_from_the_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = Gw::start(dir.path(), &[], 0);
    gw.create_topic("orders", 2, &[]);
    let batch = |from: i64, to: i64| -> Vec<(Option<&str>, Value, Option<i32>)> {
        (from..to)
            .map(|i| (None, json!({"n": i}), Some((i % 2) as i32)))
            .collect()
    };
    gw.produce("orders", &batch(0, 6));
    let old = subscribed(&gw, "g1", "a", "orders");
    let old = old.as_str();
    assert_eq!(fetch(&gw, old, 6).len(), 6);
    let r = post_raw(&gw, &format!("{old}/offsets"), "");
    assert_eq!(r.status, 200, "{}", r.text());
    let committed = gw
        .get(&format!("{old}/offsets?partitions=orders:0,orders:1"))
        .json();
    assert_eq!(committed["offsets"][0]["offset"], 3, "{committed}");
    assert_eq!(committed["offsets"][1]["offset"], 3, "{committed}");
    // Produced, never fetched: must come to the next instance.
    gw.produce("orders", &batch(6, 10));

    drop(gw); // SIGKILL: the instance gets no chance to leave the group
    let gw = Gw::start(dir.path(), &[], 0);
    for r in [
        gw.get(&format!("{old}/records?timeout=100")),
        post_raw(&gw, &format!("{old}/offsets"), ""),
        gw.get(&format!("{old}/subscription")),
        delete(&gw, old),
    ] {
        problem(&r, 404, "not_found");
        let message = r.json()["message"].as_str().unwrap_or_default().to_owned();
        assert!(
            message.contains(r#""a""#)
                && message.contains(r#""g1""#)
                && message.contains("restarted"),
            "{message}"
        );
    }
    gw.produce("orders", &batch(10, 12));
    let new = subscribed(&gw, "g1", "b", "orders");
    let new = new.as_str();
    let mut seen = fetch(&gw, new, 6);
    // Anything more would be a record twice: one more fetch brings nothing.
    let r = gw.get(&format!("{new}/records?timeout=500"));
    assert_eq!(r.json(), json!([]), "{}", r.text());
    let count = seen.len();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(count, seen.len(), "a record twice: {seen:?}");
    assert_eq!(
        seen,
        [(0, 3), (0, 4), (0, 5), (1, 3), (1, 4), (1, 5)],
        "exactly the records after the commits"
    );
}
