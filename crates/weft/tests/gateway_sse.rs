//! The gateway's Server-Sent Events against a real `weft serve`: resume from the log across
//! a restart (nothing missed, nothing twice), retention gaps, slow-consumer eviction,
//! heartbeats and the idle timeout, connection limits, filters and refusals.

mod common;
mod gateway_support;

use std::collections::BTreeSet;

use gateway_support::{Gw, Sse, eventually};
use serde_json::json;

fn pos(ev: &gateway_support::SseEvent) -> (i64, i64) {
    let d = ev.json();
    (
        d["partition"].as_i64().expect("partition"),
        d["offset"].as_i64().expect("offset"),
    )
}

#[test]
fn sse_resumes_across_a_restart_with_no_gap_and_no_duplicate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = Gw::start(dir.path(), &[("RETRY_MS", "250")], 0);
    gw.create_topic("orders", 3, &[]);
    let first: Vec<_> = (0..30)
        .map(|i| (Some(format!("k{}", i % 7)), json!({"n": i})))
        .collect();
    let first: Vec<_> = first
        .iter()
        .map(|(k, v)| (k.as_deref(), v.clone(), None))
        .collect();
    let mut expected: BTreeSet<(i64, i64)> = gw.produce("orders", &first).into_iter().collect();

    let mut sse = Sse::connect(gw.http, "/v1/topics/orders/events?start=earliest", &[]);
    assert_eq!(sse.status, 200, "{}", sse.body_if_error);
    let mut seen = Vec::new();
    let mut last_id = None;
    for ev in sse.messages(15) {
        seen.push(pos(&ev));
        last_id = ev.id.clone();
    }
    // Shutdown drains: the stream ends with `close` (reason shutdown) and a retry hint
    // after whatever was already on its way.
    let status = gw.stop();
    assert!(status.success(), "weft serve exit: {status:?}");
    let close = loop {
        let ev = sse.next_named().expect("stream ends with a close event");
        if ev.event == "message" {
            seen.push(pos(&ev));
            last_id = ev.id.clone();
            continue;
        }
        break ev;
    };
    assert_eq!(close.event, "close");
    assert_eq!(close.json()["reason"], "shutdown");
    assert_eq!(close.retry, Some(250), "retry hint on drain: {close:?}");
    assert!(sse.next().is_none(), "nothing after close");

    let gw = Gw::start(dir.path(), &[], 0);
    let more: Vec<_> = (30..40)
        .map(|i| (Some("k1"), json!({"n": i}), None))
        .collect();
    expected.extend(gw.produce("orders", &more));
    let last_id = last_id.expect("an id");
    let mut sse = Sse::connect(
        gw.http,
        "/v1/topics/orders/events",
        &[("last-event-id", &last_id)],
    );
    assert_eq!(sse.status, 200, "{}", sse.body_if_error);
    let rest = expected.len() - seen.len();
    for ev in sse.messages(rest) {
        seen.push(pos(&ev));
    }
    let unique: BTreeSet<_> = seen.iter().copied().collect();
    assert_eq!(
        unique.len(),
        seen.len(),
        "a record was delivered twice: {seen:?}"
    );
    assert_eq!(unique, expected, "missed records");
    // Per partition the offsets arrive in order.
    for p in 0..3 {
        let offsets: Vec<i64> = seen
            .iter()
            .filter(|(q, _)| *q == p)
            .map(|(_, o)| *o)
            .collect();
        assert!(
            offsets.windows(2).all(|w| w[0] < w[1]),
            "partition {p}: {offsets:?}"
        );
    }
}

#[test]
fn a_position_deleted_by_retention_becomes_a_gap_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = Gw::start(dir.path(), &[], 0);
    gw.create_topic("audit", 1, &[]);
    let records: Vec<_> = (0..10).map(|i| (None, json!(i), Some(0))).collect();
    gw.produce("audit", &records);
    delete_records(gw.kafka, "audit", 0, 6);
    eventually("records deleted", || {
        let t = gw.get("/v1/topics/audit").json();
        (t["partitions"][0]["earliest_offset"] == 6).then_some(())
    });

    let mut sse = Sse::connect(
        gw.http,
        "/v1/topics/audit/events",
        &[("last-event-id", "0:2")],
    );
    assert_eq!(sse.status, 200, "{}", sse.body_if_error);
    let gap = sse.next_named().expect("gap");
    assert_eq!(gap.event, "gap", "{gap:?}");
    let g = gap.json();
    assert_eq!(
        (
            g["partition"].as_i64(),
            g["from"].as_i64(),
            g["to"].as_i64()
        ),
        (Some(0), Some(2), Some(6))
    );
    assert_eq!(g["missed"], 4);
    assert_eq!(
        gap.id.as_deref(),
        Some("0:6"),
        "resuming after the gap starts at 6"
    );
    let offsets: Vec<i64> = sse.messages(4).iter().map(|e| pos(e).1).collect();
    assert_eq!(offsets, vec![6, 7, 8, 9]);
}

/// DeleteRecords through librdkafka's admin client (a Kafka-protocol request).
fn delete_records(kafka: std::net::SocketAddr, topic: &str, partition: i32, before: i64) {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::config::ClientConfig;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", kafka.to_string())
            .create()
            .expect("admin client");
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, rdkafka::Offset::Offset(before))
            .expect("tpl");
        let result = admin
            .delete_records(&tpl, &AdminOptions::new())
            .await
            .expect("delete records");
        for e in result.elements() {
            assert!(e.error().is_ok(), "delete records: {:?}", e.error());
        }
    });
}

#[test]
fn a_consumer_that_does_not_read_is_closed_as_slow_consumer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = Gw::start(
        dir.path(),
        &[("BUFFER_EVENTS", "4"), ("MAX_BODY_BYTES", "16777216")],
        0,
    );
    gw.create_topic("firehose", 1, &[]);
    let mut sse = Sse::connect(gw.http, "/v1/topics/firehose/events", &[]);
    assert_eq!(sse.status, 200, "{}", sse.body_if_error);
    let big = "x".repeat(100_000);
    // ~40 MB: far more than the socket buffers hold while this client does not read.
    let mut produced = 0;
    for _ in 0..10 {
        let batch: Vec<_> = (0..40).map(|_| (None, json!(big), Some(0))).collect();
        produced += gw.produce("firehose", &batch).len();
    }
    let mut messages = 0;
    let close = loop {
        let ev = sse.next_named().expect("stream ends with close");
        if ev.event == "message" {
            messages += 1;
            continue;
        }
        break ev;
    };
    assert_eq!(close.event, "close", "{close:?}");
    assert_eq!(close.json()["reason"], "slow_consumer");
    assert!(
        messages < produced,
        "evicted before everything was delivered ({messages} of {produced})"
    );
    assert!(sse.next().is_none());
}

#[test]
fn heartbeats_flow_until_the_idle_timeout_closes_the_stream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = Gw::start(
        dir.path(),
        &[("HEARTBEAT_MS", "50"), ("IDLE_TIMEOUT_MS", "800")],
        0,
    );
    gw.create_topic("quiet", 1, &[]);
    let mut sse = Sse::connect(gw.http, "/v1/topics/quiet/events", &[]);
    assert_eq!(sse.status, 200, "{}", sse.body_if_error);
    let close = sse.next_named().expect("close");
    assert_eq!(close.event, "close");
    assert_eq!(close.json()["reason"], "idle_timeout");
    let beats = close.comments.iter().filter(|c| *c == "heartbeat").count();
    assert!(
        beats >= 2,
        "heartbeats before the idle timeout: {:?}",
        close.comments
    );
}

#[test]
fn connection_limits_per_principal_and_global() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = Gw::start(
        dir.path(),
        &[
            ("MAX_CONNECTIONS", "3"),
            ("MAX_CONNECTIONS_PER_PRINCIPAL", "2"),
            ("HEARTBEAT_MS", "50"),
        ],
        0,
    );
    gw.create_topic("limited", 1, &[]);
    let open = |who: &str| {
        Sse::connect(
            gw.http,
            "/v1/topics/limited/events",
            &[("x-weft-principal", who)],
        )
    };
    let a1 = open("alice");
    let a2 = open("alice");
    assert_eq!(
        (a1.status, a2.status),
        (200, 200),
        "{} {}",
        a1.body_if_error,
        a2.body_if_error
    );
    let a3 = open("alice");
    assert_eq!(a3.status, 503, "third connection of one principal");
    assert!(
        a3.body_if_error.contains("too_many_connections"),
        "{}",
        a3.body_if_error
    );
    assert!(
        a3.headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
    );
    let b1 = open("bob");
    assert_eq!(b1.status, 200);
    let c1 = open("carol");
    assert_eq!(c1.status, 503, "global limit");
    assert!(
        c1.body_if_error.contains("connection limit"),
        "{}",
        c1.body_if_error
    );
    drop(a1);
    // The server notices the closed socket on its next heartbeat write.
    let a4 = eventually("a freed slot", || {
        let s = open("alice");
        (s.status == 200).then_some(s)
    });
    assert_eq!(a4.status, 200);
    drop((a2, b1));
}

#[test]
fn filters_select_partitions_keys_and_headers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = Gw::start(dir.path(), &[("IDLE_TIMEOUT_MS", "20000")], 0);
    gw.create_topic("mixed", 2, &[]);
    let r = gw.post(
        "/v1/topics/mixed/records",
        &json!({"records": [
            {"key": "a", "value": 1, "partition": 0, "headers": {"type": "created"}},
            {"key": "b", "value": 2, "partition": 0, "headers": {"type": "created"}},
            {"key": "a", "value": 3, "partition": 1, "headers": {"type": "created"}},
            {"key": "a", "value": 4, "partition": 0, "headers": {"type": "deleted"}},
            {"key": "a", "value": 5, "partition": 0, "headers": {"type": "created"}},
        ]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let mut sse = Sse::connect(
        gw.http,
        "/v1/topics/mixed/events?start=earliest&partitions=0&key=a&header=type:created",
        &[],
    );
    assert_eq!(sse.status, 200, "{}", sse.body_if_error);
    let values: Vec<i64> = sse
        .messages(2)
        .iter()
        .map(|e| e.json()["value"].as_i64().expect("value"))
        .collect();
    assert_eq!(values, vec![1, 5]);
    // Only partition 0 is in the id.
    gw.produce("mixed", &[(Some("a"), json!(6), Some(1))]);
    let r = gw.post(
        "/v1/topics/mixed/records",
        &json!({"records": [{"key": "a", "value": 7, "partition": 0, "headers": {"type": "created"}}]}),
    );
    assert_eq!(r.status, 200);
    let next = sse.messages(1).remove(0);
    assert_eq!(next.json()["value"], 7);
    assert_eq!(next.id.as_deref(), Some("0:5"));
}

/// Regression: the topic's shared live reader used to start at `Offset::End`, which
/// librdkafka resolves only when its first fetch is set up — after the connection had read
/// its position. A record produced right after connecting then fell between the two and was
/// never delivered (no later record came to expose the hole).
#[test]
fn a_record_produced_right_after_connecting_is_delivered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = Gw::start(dir.path(), &[("IDLE_TIMEOUT_MS", "20000")], 0);
    for round in 0..3 {
        // Each round a new topic, so each connection starts a new live reader.
        let topic = format!("fresh{round}");
        gw.create_topic(&topic, 1, &[]);
        let mut sse = Sse::connect(gw.http, &format!("/v1/topics/{topic}/events"), &[]);
        assert_eq!(sse.status, 200, "{}", sse.body_if_error);
        gw.produce(&topic, &[(Some("k"), json!(round), Some(0))]);
        let ev = sse.messages(1).remove(0);
        assert_eq!(ev.json()["value"], round, "round {round}");
        assert_eq!(ev.id.as_deref(), Some("0:1"), "round {round}");
    }
}

#[test]
fn bad_stream_requests_get_problems() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = Gw::start(dir.path(), &[], 0);
    gw.create_topic("t", 2, &[]);
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], u16, &'a str);
    let cases: &[Case<'_>] = &[
        ("/v1/topics/nope/events", &[], 404, "topic_not_found"),
        (
            "/v1/topics/t/events?start=yesterday",
            &[],
            400,
            "bad_request",
        ),
        (
            "/v1/topics/t/events?partitions=7",
            &[],
            400,
            "no partition 7",
        ),
        (
            "/v1/topics/t/events",
            &[("last-event-id", "zero")],
            400,
            "resume id",
        ),
        (
            "/v1/topics/t/events",
            &[("last-event-id", "0:99")],
            400,
            "beyond the end",
        ),
    ];
    for (path, headers, status, needle) in cases {
        let s = Sse::connect(gw.http, path, headers);
        assert_eq!(s.status, *status, "{path}: {}", s.body_if_error);
        assert!(
            s.body_if_error.contains(needle),
            "{path}: {}",
            s.body_if_error
        );
        assert!(
            s.body_if_error.contains("request_id"),
            "{path}: {}",
            s.body_if_error
        );
    }
}

/// With `slow_consumer_gap`, a client that cannot keep up is not closed: it is told what
/// it missed (a `gap` with reason `slow_consumer`) and continues from the live end. Every
/// offset is either delivered once or inside exactly one reported gap.
#[test]
fn a_slow_consumer_gets_a_gap_and_continues_from_the_live_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = Gw::start(
        dir.path(),
        &[
            ("BUFFER_EVENTS", "4"),
            ("SLOW_CONSUMER_GAP", "1"),
            ("MAX_BODY_BYTES", "16777216"),
            ("IDLE_TIMEOUT_MS", "60000"),
        ],
        0,
    );
    gw.create_topic("firehose", 1, &[]);
    let mut sse = Sse::connect(gw.http, "/v1/topics/firehose/events", &[]);
    assert_eq!(sse.status, 200, "{}", sse.body_if_error);
    let big = "x".repeat(100_000);
    // ~40 MB while this client does not read: far more than its buffer and the sockets'.
    for _ in 0..10 {
        let batch: Vec<_> = (0..40).map(|_| (None, json!(big), Some(0))).collect();
        gw.produce("firehose", &batch);
    }
    // Now read; once the backlog is drained, one more record must arrive live.
    let backlog_end = 400;
    let mut seen: Vec<i64> = Vec::new();
    let mut gaps: Vec<(i64, i64, String)> = Vec::new();
    let mut last = None;
    loop {
        let ev = sse.next_named().expect("the stream stays open");
        match ev.event.as_str() {
            "message" => {
                let offset = pos(&ev).1;
                seen.push(offset);
                if Some(offset) == last {
                    break;
                }
                if offset + 1 == backlog_end && last.is_none() {
                    last = Some(gw.produce("firehose", &[(None, json!("last"), Some(0))])[0].1);
                }
            }
            "gap" => {
                let g = ev.json();
                assert_eq!(g["reason"], "slow_consumer", "{ev:?}");
                let (from, to) = (
                    g["from"].as_i64().expect("from"),
                    g["to"].as_i64().expect("to"),
                );
                if last.is_some_and(|l| to > l) {
                    panic!("the record produced after the gap was skipped too: {ev:?}");
                }
                assert_eq!(g["missed"].as_i64(), Some(to - from));
                assert_eq!(ev.id, Some(format!("0:{to}")), "resume after the gap");
                gaps.push((from, to, ev.id.clone().unwrap_or_default()));
                // Told what it missed up to the end of the backlog: the next record comes
                // from the live end. (Not after the first gap: a busy engine may still be
                // working through the backlog then, skipping on, past a record produced
                // meanwhile.)
                if to == backlog_end && last.is_none() {
                    last = Some(gw.produce("firehose", &[(None, json!("last"), Some(0))])[0].1);
                }
            }
            other => panic!("unexpected {other}: {ev:?}"),
        }
    }
    assert!(!gaps.is_empty(), "no gap reported");
    let last = last.expect("a gap was seen");
    // Every offset 0..=last exactly once: delivered or inside one gap.
    let mut covered = vec![0u32; usize::try_from(last + 1).expect("offset")];
    for o in &seen {
        covered[usize::try_from(*o).expect("offset")] += 1;
    }
    for (from, to, _) in &gaps {
        for o in *from..*to {
            covered[usize::try_from(o).expect("offset")] += 1;
        }
    }
    let wrong: Vec<_> = covered
        .iter()
        .enumerate()
        .filter(|(_, n)| **n != 1)
        .collect();
    assert!(
        wrong.is_empty(),
        "offsets covered ≠ once: {wrong:?} (gaps {gaps:?})"
    );
    assert_eq!(seen.last(), Some(&last));
    assert!(
        seen.len() < covered.len(),
        "something was skipped ({} delivered of {})",
        seen.len(),
        covered.len()
    );
}

/// A backlog and a live burst arrive in many events per HTTP chunk (the writer gathers what
/// is buffered): every record once, in order, each with its own id and its own JSON.
#[test]
fn a_burst_arrives_whole_in_order_with_one_id_per_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A buffer larger than the whole burst: a test client slowed down by a loaded machine
    // must not be closed as a slow consumer (that bound is tested elsewhere).
    let gw = Gw::start(dir.path(), &[("BUFFER_EVENTS", "4096")], 0);
    gw.create_topic("burst", 1, &[]);
    let pad = "p".repeat(200);
    let batch = |from: usize| -> Vec<_> {
        (from..from + 250)
            .map(|i| (Some("k"), json!({"i": i, "pad": pad}), Some(0)))
            .collect()
    };
    // ~340 KB of backlog: several 64 KiB chunks.
    for from in (0..1500).step_by(250) {
        gw.produce("burst", &batch(from));
    }
    let mut sse = Sse::connect(gw.http, "/v1/topics/burst/events?start=earliest", &[]);
    assert_eq!(sse.status, 200, "{}", sse.body_if_error);
    let first = sse.messages(1);
    for from in (1500..2000).step_by(250) {
        gw.produce("burst", &batch(from));
    }
    let rest = sse.messages(1999);
    for (i, ev) in first.iter().chain(&rest).enumerate() {
        let d = ev.json();
        let i = i64::try_from(i).expect("index");
        assert_eq!(pos(ev), (0, i), "{ev:?}");
        assert_eq!(ev.id, Some(format!("0:{}", i + 1)), "{ev:?}");
        assert_eq!(d["value"]["i"], json!(i), "{ev:?}");
        assert_eq!((&d["key"], &d["topic"]), (&json!("k"), &json!("burst")));
    }
}
