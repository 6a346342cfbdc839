//! The gateway's WebSocket live stream against a real `weft serve`, driven by Python's
//! `websockets` client: acknowledgements (a bounded window of unacknowledged events,
//! commits to a consumer group read back with librdkafka, a reconnect starting at the
//! group's commit).

mod common;
mod gateway_support;

use std::time::Duration;

use gateway_support::{Gw, eventually, python};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::{Value, json};

/// What `group` committed for partition 0 of `topic`, through librdkafka.
fn committed(kafka: std::net::SocketAddr, group: &str, topic: &str) -> Option<i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka.to_string())
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let got = c
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    got.elements().first().and_then(|e| match e.offset() {
        rdkafka::Offset::Offset(o) => Some(o),
        _ => None,
    })
}

/// Reads events, acknowledging as told; prints what it saw. The window check waits a
/// moment for an event that must *not* come: a broken window fails it at once (the events
/// are already produced), a slow machine can only make it pass.
const ACKING_CLIENT: &str = r#"
import asyncio, json, sys
import websockets
url = sys.argv[1]
async def main():
    out = {"offsets": [], "held": []}
    async with websockets.connect(url) as ws:
        async def event(timeout):
            m = json.loads(await asyncio.wait_for(ws.recv(), timeout))
            if m["type"] != "event":
                raise SystemExit(f"unexpected message {m}")
            out["offsets"].append(m["data"]["offset"])
            return m
        async def held():
            try:
                await event(1.0)
                return False
            except asyncio.TimeoutError:
                return True
        got = [await event(60) for _ in range(3)]
        out["held"].append(await held())
        await ws.send(json.dumps({"type": "ack", "id": got[1]["id"]}))
        got += [await event(60) for _ in range(2)]
        out["held"].append(await held())
        await ws.send(json.dumps({"type": "ack", "id": got[-1]["id"]}))
        got += [await event(60) for _ in range(3)]
        await ws.send(json.dumps({"type": "ack", "id": got[-1]["id"]}))
        got += [await event(60) for _ in range(2)]
        out["last_acked"] = got[7]["id"]
    print(json.dumps(out))
asyncio.run(main())
"#;

#[test]
fn acknowledgements_bound_the_window_and_commit_to_the_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = Gw::start(
        dir.path(),
        &[("MAX_UNACKED", "3"), ("IDLE_TIMEOUT_MS", "60000")],
        0,
    );
    gw.create_topic("acks", 1, &[]);
    let records: Vec<_> = (0..10).map(|i| (None, json!(i), Some(0))).collect();
    gw.produce("acks", &records);

    let url = format!("ws://{}/v1/topics/acks/ws", gw.http);
    let out: Value = serde_json::from_str(
        python(
            ACKING_CLIENT,
            &[&format!("{url}?start=earliest&group=dashboard")],
        )
        .trim(),
    )
    .expect("client output");
    let offsets: Vec<i64> = out["offsets"]
        .as_array()
        .expect("offsets")
        .iter()
        .map(|o| o.as_i64().expect("offset"))
        .collect();
    assert_eq!(
        offsets,
        (0..10).collect::<Vec<_>>(),
        "in order, once: {out}"
    );
    assert_eq!(
        out["held"],
        json!([true, true]),
        "a full window holds events back until an ack: {out}"
    );
    assert_eq!(out["last_acked"], "0:8");

    // The last ack (through offset 7) is the group's commit, as any Kafka client sees it.
    eventually("the group's commit", || {
        (committed(gw.kafka, "dashboard", "acks") == Some(8)).then_some(())
    });

    // A new connection of the group starts at its commit: 8 and 9 again (at least once).
    let again = r#"
import asyncio, json, sys
import websockets
async def main():
    async with websockets.connect(sys.argv[1]) as ws:
        got = []
        while len(got) < 2:
            m = json.loads(await asyncio.wait_for(ws.recv(), 60))
            if m["type"] == "event":
                got.append(m["data"]["offset"])
        print(json.dumps(got))
asyncio.run(main())
"#;
    let out = python(again, &[&format!("{url}?group=dashboard")]);
    let got: Vec<i64> = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(got, vec![8, 9], "restart at the group's commit");
}

/// Without `ack` or `group` the window does not apply: every event flows at once.
#[test]
fn without_acknowledgements_events_are_not_held_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = Gw::start(dir.path(), &[("MAX_UNACKED", "3")], 0);
    gw.create_topic("free", 1, &[]);
    let records: Vec<_> = (0..10).map(|i| (None, json!(i), Some(0))).collect();
    gw.produce("free", &records);
    let script = r#"
import asyncio, json, sys
import websockets
async def main():
    async with websockets.connect(sys.argv[1]) as ws:
        got = []
        while len(got) < 10:
            m = json.loads(await asyncio.wait_for(ws.recv(), 60))
            if m["type"] == "event":
                got.append(m["data"]["offset"])
        print(json.dumps(got))
asyncio.run(main())
"#;
    let out = python(
        script,
        &[&format!(
            "ws://{}/v1/topics/free/ws?start=earliest",
            gw.http
        )],
    );
    let got: Vec<i64> = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(got, (0..10).collect::<Vec<_>>());
}

/// A gateway served in this process, in front of the Kafka listener of a real `weft serve`,
/// whose requests carry weft-auth's `Authenticated` extension expiring at `expires_at`
/// (seconds since the epoch) — what the HTTP auth layer inserts for a bearer token.
struct ExpiringGateway {
    rt: tokio::runtime::Runtime,
    http: std::net::SocketAddr,
}

fn expiring_gateway(gw: &Gw, dir: &std::path::Path, expires_at: u64) -> ExpiringGateway {
    use weft_auth::http::{AuthMethod, Authenticated};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let kafka = gw.kafka.to_string();
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let db = dir.join(format!("expiring-gateway-{n}.db"));
    let http = rt.block_on(async move {
        let store = weft_store::Store::open_sqlite(&db).await.expect("store");
        let mut config = weft_gateway::Config::new(kafka);
        config.stream.heartbeat = Duration::from_millis(200);
        let gateway = weft_gateway::Gateway::open(config, store)
            .await
            .expect("gateway");
        let app = gateway.router().layer(axum::middleware::from_fn(
            move |mut req: axum::extract::Request, next: axum::middleware::Next| async move {
                req.extensions_mut().insert(Authenticated {
                    principal: weft_auth::Principal::user("alice"),
                    expires_at: Some(expires_at),
                    scopes: Vec::new(),
                    method: AuthMethod::Bearer,
                });
                next.run(req).await
            },
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    });
    ExpiringGateway { rt, http }
}

fn in_seconds(s: u64) -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + s
}

#[test]
fn streams_close_when_the_callers_token_expires() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = Gw::start(dir.path(), &[], 0);
    gw.create_topic("secure", 1, &[]);
    let egw = expiring_gateway(&gw, dir.path(), in_seconds(2));

    // SSE: the last event is `auth_expired`, then the stream ends.
    let mut sse = gateway_support::Sse::connect(egw.http, "/v1/topics/secure/events", &[]);
    assert_eq!(sse.status, 200, "{}", sse.body_if_error);
    gw.produce("secure", &[(None, json!("before expiry"), Some(0))]);
    let first = sse.next_named().expect("the record");
    assert_eq!(first.event, "message", "{first:?}");
    let last = sse.next_named().expect("a final event");
    assert_eq!(last.event, "auth_expired", "{last:?}");
    assert_eq!(last.json()["reason"], "auth_expired");
    assert!(sse.next().is_none(), "nothing after auth_expired");

    // WebSocket: a close message, then close code 1008 with the reason.
    let script = r#"
import asyncio, json, sys
import websockets
async def main():
    async with websockets.connect(sys.argv[1]) as ws:
        msgs = []
        try:
            while True:
                msgs.append(json.loads(await asyncio.wait_for(ws.recv(), 60)))
        except websockets.ConnectionClosed as e:
            print(json.dumps({"msgs": msgs, "code": e.rcvd.code, "reason": e.rcvd.reason}))
asyncio.run(main())
"#;
    let egw = expiring_gateway(&gw, dir.path(), in_seconds(2));
    let out: Value = serde_json::from_str(
        python(script, &[&format!("ws://{}/v1/topics/secure/ws", egw.http)]).trim(),
    )
    .expect("client output");
    assert_eq!(out["code"], 1008, "{out}");
    assert_eq!(out["reason"], "auth_expired", "{out}");
    let msgs = out["msgs"].as_array().expect("msgs");
    assert_eq!(
        msgs.last().map(|m| m["reason"].clone()),
        Some(json!("auth_expired")),
        "{out}"
    );
    drop(egw.rt);
}

/// A backlog and a live burst are written many messages per flush: every record once, in
/// order, each with its own id.
#[test]
fn a_burst_arrives_whole_in_order_with_one_id_per_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A buffer larger than the whole burst: a test client slowed down by a loaded machine
    // must not be closed as a slow consumer (that bound is tested elsewhere).
    let gw = Gw::start(dir.path(), &[("BUFFER_EVENTS", "4096")], 0);
    gw.create_topic("burst", 1, &[]);
    let batch = |from: i64| -> Vec<_> {
        (from..from + 250)
            .map(|i| (None, json!(i), Some(0)))
            .collect()
    };
    for from in (0..1000).step_by(250) {
        gw.produce("burst", &batch(from));
    }
    // The script produces nothing itself: it reads, and after the first message this test
    // produces the live half.
    let script = r#"
import asyncio, json, sys
import websockets
async def main():
    async with websockets.connect(sys.argv[1]) as ws:
        got = []
        while len(got) < int(sys.argv[2]):
            m = json.loads(await asyncio.wait_for(ws.recv(), 60))
            assert m["type"] == "event", m
            got.append([m["id"], m["data"]["offset"], m["data"]["value"]])
            if len(got) == 1:
                open(sys.argv[3], "w").close()
        print(json.dumps(got))
asyncio.run(main())
"#;
    let url = format!("ws://{}/v1/topics/burst/ws?start=earliest", gw.http);
    let started = dir.path().join("started");
    let reader = {
        let (url, started) = (url.clone(), started.clone());
        std::thread::spawn(move || {
            python(
                script,
                &[&url, "2000", started.to_str().expect("utf-8 path")],
            )
        })
    };
    // (Or the script's end: its failure is reported by the join below.)
    eventually("the client's first message", || {
        (started.exists() || reader.is_finished()).then_some(())
    });
    for from in (1000..2000).step_by(250) {
        gw.produce("burst", &batch(from));
    }
    let out = reader.join().expect("reader thread");
    let got: Vec<(String, i64, i64)> = serde_json::from_str(out.trim()).expect("json");
    let expected: Vec<(String, i64, i64)> =
        (0..2000).map(|i| (format!("0:{}", i + 1), i, i)).collect();
    assert_eq!(got, expected);
}
