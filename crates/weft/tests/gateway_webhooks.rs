//! Webhooks against a real `weft serve` and a Python target that verifies every signature
//! with the `standardwebhooks` package (an independent implementation): retries until a
//! flaky target recovers (each record delivered once, per-key order kept), a hanging
//! target does not delay another, the DLQ after the last attempt, and a dead letter redriven
//! to its one subscription.

mod common;
mod gateway_support;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use gateway_support::{Gw, eventually, request};
use serde_json::{Value, json};

/// 32 bytes of 0x2a as a Standard Webhooks secret.
const SECRET: &str = "whsec_KioqKioqKioqKioqKioqKioqKioqKioqKioqKio=";

const TARGET: &str = r#"
import json, sys, threading, time
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
from standardwebhooks.webhooks import Webhook

secret = sys.argv[1]
wh = Webhook(secret)
seen = {}
lock = threading.Lock()
state = {"down": True}  # /sometimes fails until a GET /up

def out(**kw):
    with lock:
        sys.stdout.write(json.dumps(kw) + "\n")
        sys.stdout.flush()

class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        mid = self.headers.get("webhook-id")
        try:
            payload = wh.verify(body, {k: v for k, v in self.headers.items()})
            ok = True
        except Exception as e:
            payload, ok = None, False
        record = (payload or {}).get("record", {})
        with lock:
            n = seen.get((self.path, mid), 0) + 1
            seen[(self.path, mid)] = n
        out(event="request", path=self.path, id=mid, attempt=n, verified=ok,
            key=record.get("key"), value=record.get("value"))
        if not ok:
            code = 401
        elif self.path == "/flaky" and n <= 2:
            code = 500
        elif self.path == "/dead" or (self.path == "/sometimes" and state["down"]):
            code = 500
        elif self.path == "/hang":
            time.sleep(600)
            code = 200
        else:
            code = 204
        self.send_response(code)
        self.send_header("content-length", "0")
        self.end_headers()
        if code < 300:
            out(event="delivered", path=self.path, id=mid, key=record.get("key"),
                value=record.get("value"))

    def do_GET(self):
        if self.path == "/up":
            state["down"] = False
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()

srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
out(event="listening", port=srv.server_address[1])
srv.serve_forever()
"#;

struct Target {
    child: Child,
    port: u16,
    lines: mpsc::Receiver<String>,
    events: Vec<Value>,
}

impl Target {
    fn start() -> Target {
        let mut child = Command::new("python3")
            .args(["-c", TARGET, SECRET])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 with the standardwebhooks package (cargo xtask test installs it)");
        let lines = common::forward_lines(child.stdout.take().expect("stdout"));
        let first = lines
            .recv_timeout(common::SAFETY)
            .expect("the Python webhook target starts (needs PyPI standardwebhooks)");
        let v: Value = serde_json::from_str(&first).expect("json");
        Target {
            port: v["port"].as_u64().expect("port") as u16,
            child,
            lines,
            events: Vec::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Waits until `pred` holds over the events seen so far.
    fn wait(&mut self, what: &str, pred: impl Fn(&[Value]) -> bool) {
        let deadline = Instant::now() + common::SAFETY;
        while !pred(&self.events) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self
                    .events
                    .push(serde_json::from_str(&l).expect("json line")),
                Err(e) => panic!("{what}: {e}; events: {:#?}", self.events),
            }
        }
    }

    fn of<'a>(&'a self, event: &'a str, path: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.events
            .iter()
            .filter(move |e| e["event"] == event && e["path"] == path)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn subscribe(gw: &Gw, topic: &str, url: &str, ordering: &str) -> String {
    let r = gw.post(
        "/v1/webhooks",
        &json!({"topic": topic, "url": url, "secret": SECRET, "ordering": ordering,
                "headers": {"x-tenant": "acme"}}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    assert!(
        v.get("secret").is_none(),
        "a supplied secret is never echoed"
    );
    v["id"].as_str().expect("id").to_owned()
}

#[test]
fn a_flaky_target_gets_each_record_once_in_key_order_with_verified_signatures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = Gw::start(dir.path(), &[("WEBHOOK_BACKOFF_MS", "20")], 0);
    gw.create_topic("payments", 1, &[]);
    let mut target = Target::start();
    let id = subscribe(&gw, "payments", &target.url("/flaky"), "key");
    let records: Vec<_> = (0..6)
        .map(|i| (Some(if i % 2 == 0 { "k1" } else { "k2" }), json!(i), None))
        .collect();
    gw.produce("payments", &records);
    target.wait("six deliveries", |ev| {
        ev.iter().filter(|e| e["event"] == "delivered").count() >= 6
    });
    assert!(
        target
            .of("request", "/flaky")
            .all(|e| e["verified"] == true),
        "every request verified with standardwebhooks: {:#?}",
        target.events
    );
    let delivered: Vec<&Value> = target.of("delivered", "/flaky").collect();
    let mut ids: Vec<&str> = delivered
        .iter()
        .map(|e| e["id"].as_str().expect("id"))
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 6, "each record delivered once: {delivered:#?}");
    let mut per_key: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for e in &delivered {
        per_key
            .entry(e["key"].as_str().expect("key").to_owned())
            .or_default()
            .push(e["value"].as_i64().expect("value"));
    }
    assert_eq!(per_key["k1"], vec![0, 2, 4], "order of k1 under retries");
    assert_eq!(per_key["k2"], vec![1, 3, 5], "order of k2 under retries");
    // The attempts are queryable: two failures then a success per record.
    let attempts = eventually("18 attempts recorded", || {
        let a = gw
            .get(&format!("/v1/webhooks/{id}/attempts?limit=100"))
            .json();
        (a["attempts"].as_array().map_or(0, Vec::len) >= 18).then_some(a)
    });
    let count = |o: &str| {
        attempts["attempts"]
            .as_array()
            .expect("attempts")
            .iter()
            .filter(|a| a["outcome"] == o)
            .count()
    };
    assert_eq!((count("failure"), count("success")), (12, 6));
    assert!(
        attempts["attempts"]
            .as_array()
            .expect("attempts")
            .iter()
            .any(|a| a["status"] == 500)
    );
    // No further delivery of anything already delivered (position stored).
    gw.produce("payments", &[(Some("k3"), json!(99), None)]);
    target.wait("the 7th", |ev| {
        ev.iter().filter(|e| e["event"] == "delivered").count() >= 7
    });
    assert_eq!(target.of("delivered", "/flaky").count(), 7);
}

#[test]
fn a_hanging_target_does_not_delay_another() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = Gw::start(dir.path(), &[("WEBHOOK_TIMEOUT_MS", "600000")], 0);
    gw.create_topic("events", 1, &[]);
    let mut target = Target::start();
    subscribe(&gw, "events", &target.url("/hang"), "none");
    subscribe(&gw, "events", &target.url("/fast"), "none");
    let records: Vec<_> = (0..5).map(|i| (None, json!(i), None)).collect();
    gw.produce("events", &records);
    target.wait(
        "the fast target gets all five while the other hangs",
        |ev| {
            let fast = ev
                .iter()
                .filter(|e| e["event"] == "delivered" && e["path"] == "/fast")
                .count();
            let hanging = ev
                .iter()
                .filter(|e| e["event"] == "request" && e["path"] == "/hang")
                .count();
            fast == 5 && hanging >= 1
        },
    );
    assert_eq!(
        target.of("delivered", "/hang").count(),
        0,
        "the hanging one never answered"
    );
}

/// A server whose webhooks make 2 attempts 10 ms apart, with topics `orders` and
/// `weft.webhooks.dlq`, and a target.
fn dlq_setup(dir: &std::path::Path) -> (Gw, Target) {
    let gw = Gw::start(
        dir,
        &[("WEBHOOK_ATTEMPTS", "2"), ("WEBHOOK_BACKOFF_MS", "10")],
        0,
    );
    gw.create_topic("orders", 1, &[]);
    gw.create_topic("weft.webhooks.dlq", 1, &[]);
    (gw, Target::start())
}

/// The dead letters of webhook `id` as `/v1/dlq/weft.webhooks.dlq/records` lists them.
fn webhook_letters(gw: &Gw, id: &str) -> Vec<Value> {
    let list = gw
        .get(&format!(
            "/v1/dlq/weft.webhooks.dlq/records?webhook_id={id}"
        ))
        .json();
    list["records"].as_array().cloned().unwrap_or_default()
}

/// Order `o-1` (value `{"total": 5}`, header `trace: t-1`) on `orders`.
fn produce_order(gw: &Gw) -> gateway_support::Resp {
    gw.post(
        "/v1/topics/orders/records",
        &json!({"records": [{"key": "o-1", "value": {"total": 5}, "headers": {"trace": "t-1"}}]}),
    )
}

#[test]
fn after_the_last_attempt_a_record_goes_to_the_dlq_with_its_headers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (gw, mut target) = dlq_setup(dir.path());
    let id = subscribe(&gw, "orders", &target.url("/dead"), "key");
    let r = produce_order(&gw);
    assert_eq!(r.status, 200);
    target.wait("two attempts", |ev| {
        ev.iter().filter(|e| e["event"] == "request").count() >= 2
    });
    let dlq = eventually("a DLQ record", || {
        let r = gw.get("/v1/topics/weft.webhooks.dlq/partitions/0/records?offset=0&timeout_ms=200");
        let v = r.json();
        (!v["records"].as_array().is_none_or(Vec::is_empty)).then_some(v)
    });
    let rec = &dlq["records"][0];
    assert_eq!(rec["key"], "o-1");
    assert_eq!(rec["value"], json!({"total": 5}));
    let h = &rec["headers"];
    assert_eq!(h["trace"], "t-1", "original headers kept: {h}");
    // The SDK's DLQ envelope (weft_resilience::dlq), so `weft dlq` can inspect and redrive.
    assert_eq!(h["weft-webhook-id"], id.as_str());
    assert_eq!(h["weft-dlq-source"], "webhook");
    assert_eq!(h["weft-dlq-original-topic"], "orders");
    assert_eq!(h["weft-dlq-original-partition"], "0");
    assert_eq!(h["weft-dlq-original-offset"], "0");
    assert_eq!(h["weft-dlq-attempts"], "2");
    let attempts = gw.get(&format!("/v1/webhooks/{id}/attempts")).json();
    assert!(
        attempts["attempts"]
            .as_array()
            .expect("attempts")
            .iter()
            .any(|a| a["outcome"] == "dlq"),
        "{attempts}"
    );

    // The target's breaker (weft-resilience) is on /metrics under the webhook's id.
    let metrics = gw.get("/metrics").text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("weft_breaker_state{") && l.contains(&format!("webhook:{id}"))),
        "{metrics}"
    );

    // The DLQ API shows it for this webhook (none for another id) and redrives it to the
    // original topic, where the webhook's worker picks it up again; once only.
    let list = gw
        .get(&format!(
            "/v1/dlq/weft.webhooks.dlq/records?webhook_id={id}"
        ))
        .json();
    assert_eq!(
        list["records"][0]["dead_letter"]["source"], "webhook",
        "{list}"
    );
    assert_eq!(list["records"][0]["dead_letter"]["attempts"], 2, "{list}");
    let none = gw
        .get("/v1/dlq/weft.webhooks.dlq/records?webhook_id=wh_other")
        .json();
    assert_eq!(none["records"], json!([]), "{none}");
    let requests = |t: &Target| t.events.iter().filter(|e| e["event"] == "request").count();
    let before = requests(&target);
    for expected in [1, 0] {
        let r = gw.post(
            "/v1/dlq/weft.webhooks.dlq/redrive",
            // Its DLQ offset only: the redriven copy fails again and is dead-lettered anew.
            &json!({"webhook_id": id, "to_offset": 0}),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(
            r.json()["redriven"].as_array().map(Vec::len),
            Some(expected),
            "{}",
            r.text()
        );
    }
    let back = gw
        .get("/v1/topics/orders/partitions/0/records?offset=1")
        .json();
    assert_eq!(back["records"][0]["key"], "o-1", "{back}");
    assert_eq!(back["records"][0]["headers"]["trace"], "t-1", "{back}");
    target.wait("the redriven record delivered again", |ev| {
        ev.iter().filter(|e| e["event"] == "request").count() > before
    });
}

/// `POST /v1/webhooks/{id}/redrive`: a dead letter goes back to its subscription alone —
/// once, signed (verified by `standardwebhooks`) under the webhook-id of the first
/// attempts — never to the topic, so another subscription and a plain reader of the topic
/// see it once; it is marked, and a second redrive does nothing.
#[test]
fn a_dead_letter_redriven_to_its_webhook_reaches_it_alone_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (gw, mut target) = dlq_setup(dir.path());
    let id = subscribe(&gw, "orders", &target.url("/sometimes"), "key");
    subscribe(&gw, "orders", &target.url("/fast"), "key");
    let r = produce_order(&gw);
    assert_eq!(r.status, 200, "{}", r.text());
    target.wait("two failed attempts", |ev| {
        ev.iter()
            .filter(|e| e["event"] == "request" && e["path"] == "/sometimes")
            .count()
            >= 2
    });
    let webhook_id = target
        .of("request", "/sometimes")
        .next()
        .and_then(|e| e["id"].as_str())
        .expect("webhook-id")
        .to_owned();
    let records = |gw: &Gw| webhook_letters(gw, &id);
    let dead = eventually("the dead letter", || {
        let r = records(&gw);
        (!r.is_empty()).then_some(r)
    });
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["redriven"], false);

    // Refusals, then a dry run that sends nothing.
    let r = gw.post("/v1/webhooks/wh_nope/redrive", &json!({}));
    assert_eq!(r.status, 404, "{}", r.text());
    let r = gw.post(
        &format!("/v1/webhooks/{id}/redrive"),
        &json!({"webhook_id": "wh_other"}),
    );
    assert_eq!(r.status, 422, "{}", r.text());
    let r = gw.post(
        &format!("/v1/webhooks/{id}/redrive"),
        &json!({"to": "orders"}),
    );
    assert_eq!(r.status, 422, "unknown field: {}", r.text());
    let dry = gw.post(
        &format!("/v1/webhooks/{id}/redrive"),
        &json!({"dry_run": true}),
    );
    assert_eq!(dry.status, 200, "{}", dry.text());
    assert_eq!(
        dry.json()["redriven"],
        json!([{"partition": 0, "offset": 0, "target": format!("webhook:{id}")}])
    );
    assert_eq!(
        records(&gw)[0]["redriven"],
        false,
        "a dry run marks nothing"
    );

    // The target recovers; the redrive re-delivers in the background.
    let up = request(
        format!("127.0.0.1:{}", target.port).parse().expect("addr"),
        "GET",
        "/up",
        &[],
        None,
    );
    assert_eq!(up.status, 204);
    let r = gw.post(&format!("/v1/webhooks/{id}/redrive"), &json!({}));
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(
        r.json()["redriven"],
        json!([{"partition": 0, "offset": 0, "target": format!("webhook:{id}")}])
    );
    target.wait("the redelivery", |ev| {
        ev.iter()
            .any(|e| e["event"] == "delivered" && e["path"] == "/sometimes")
    });
    let delivered: Vec<&Value> = target.of("delivered", "/sometimes").collect();
    assert_eq!(delivered[0]["id"], webhook_id.as_str(), "same webhook-id");
    assert_eq!(delivered[0]["key"], "o-1");
    assert_eq!(delivered[0]["value"], json!({"total": 5}));
    assert!(
        target
            .of("request", "/sometimes")
            .all(|e| e["verified"] == true),
        "every signature verified by standardwebhooks: {:#?}",
        target.events
    );
    eventually("the dead letter marked redriven", || {
        (records(&gw)[0]["redriven"] == true).then_some(())
    });

    // A second redrive does nothing.
    let again = gw.post(&format!("/v1/webhooks/{id}/redrive"), &json!({}));
    assert_eq!(again.status, 202, "{}", again.text());
    assert_eq!(again.json()["redriven"], json!([]), "{}", again.text());
    assert_eq!(
        again.json()["skipped"],
        json!([{"partition": 0, "offset": 0, "reason": "already_redriven"}])
    );
    // Nothing went back to the topic: a plain reader sees the one record, and so does the
    // other subscription — a later record of the same key (in key order after any copy)
    // arrives after exactly one delivery of the first.
    let read = gw
        .get("/v1/topics/orders/partitions/0/records?offset=0&timeout_ms=200")
        .json();
    assert_eq!(read["records"].as_array().map(Vec::len), Some(1), "{read}");
    gw.produce("orders", &[(Some("o-1"), json!(2), None)]);
    target.wait("the later record at both targets", |ev| {
        ["/fast", "/sometimes"].iter().all(|p| {
            ev.iter()
                .any(|e| e["event"] == "delivered" && e["path"] == *p && e["value"] == 2)
        })
    });
    let fast: Vec<Value> = target
        .of("delivered", "/fast")
        .map(|e| e["value"].clone())
        .collect();
    assert_eq!(fast, [json!({"total": 5}), json!(2)]);
    let first: Vec<&Value> = target
        .of("delivered", "/sometimes")
        .filter(|e| e["id"] == webhook_id.as_str())
        .collect();
    assert_eq!(first.len(), 1, "delivered once: {:#?}", target.events);
    // The redelivery has its own attempt history; the DLQ holds only the first letter.
    let attempts = gw.get(&format!("/v1/webhooks/{id}/attempts")).json();
    let outcomes: Vec<&str> = attempts["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .filter(|a| a["message_id"] == webhook_id.as_str())
        .map(|a| a["outcome"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(outcomes, ["success", "dlq", "failure"], "most recent first");
    assert_eq!(records(&gw).len(), 1);
}

/// A redriven dead letter whose target still fails is dead-lettered anew (same original
/// position, a new DLQ record that can be redriven in turn); the first one is marked.
#[test]
fn a_webhook_redrive_that_fails_again_is_dead_lettered_anew() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (gw, mut target) = dlq_setup(dir.path());
    let id = subscribe(&gw, "orders", &target.url("/dead"), "key");
    assert_eq!(produce_order(&gw).status, 200);
    let letters = |gw: &Gw| webhook_letters(gw, &id);
    eventually("the first dead letter", || {
        (letters(&gw).len() == 1).then_some(())
    });
    let r = gw.post(&format!("/v1/webhooks/{id}/redrive"), &json!({}));
    assert_eq!(r.status, 202, "{}", r.text());
    let both = eventually("the second dead letter, the first marked", || {
        let l = letters(&gw);
        (l.len() == 2 && l[0]["redriven"] == true).then_some(l)
    });
    assert_eq!(both[1]["redriven"], false);
    for l in &both {
        assert_eq!(l["dead_letter"]["original_topic"], "orders");
        assert_eq!(l["dead_letter"]["original_offset"], 0);
        assert_eq!(l["headers"]["trace"], "t-1", "{l}");
    }
    target.wait("four attempts", |ev| {
        ev.iter().filter(|e| e["event"] == "request").count() >= 4
    });
    let ids: std::collections::BTreeSet<&str> = target
        .of("request", "/dead")
        .map(|e| e["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids.len(), 1, "one webhook-id throughout: {ids:?}");
    // Only the new letter is left to redrive.
    let dry = gw.post(
        &format!("/v1/webhooks/{id}/redrive"),
        &json!({"dry_run": true}),
    );
    assert_eq!(
        dry.json()["redriven"],
        json!([{"partition": 0, "offset": 1, "target": format!("webhook:{id}")}])
    );
}

#[test]
fn bad_subscriptions_are_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = Gw::start(dir.path(), &[], 0);
    gw.create_topic("t", 1, &[]);
    let cases = [
        (json!({"topic": "t", "url": "ftp://x/"}), 422, "only http"),
        (
            json!({"topic": "t", "url": "http://127.0.0.1:1/", "secret": "whsec_!!"}),
            422,
            "secret",
        ),
        (
            json!({"topic": "t", "url": "http://127.0.0.1:1/", "ordering": "fifo"}),
            422,
            "ordering",
        ),
        (
            json!({"topic": "nope", "url": "http://127.0.0.1:1/"}),
            404,
            "topic_not_found",
        ),
        (json!({"topic": "t"}), 422, "url"),
    ];
    for (body, status, needle) in cases {
        let r = gw.post("/v1/webhooks", &body);
        assert_eq!(r.status, status, "{body}: {}", r.text());
        assert!(r.text().contains(needle), "{body}: {}", r.text());
    }
    assert_eq!(gw.get("/v1/webhooks").json()["webhooks"], json!([]));
    // A generated secret is returned once, on creation.
    let r = gw.post(
        "/v1/webhooks",
        &json!({"topic": "t", "url": "http://127.0.0.1:1/"}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(
        r.json()["secret"]
            .as_str()
            .expect("secret")
            .starts_with("whsec_")
    );
    let id = r.json()["id"].as_str().expect("id").to_owned();
    assert!(
        gw.get(&format!("/v1/webhooks/{id}"))
            .json()
            .get("secret")
            .is_none()
    );
}
