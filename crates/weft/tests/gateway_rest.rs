//! The gateway's REST API, contracts and browser check against a real `weft serve`:
//! produce (JSON, base64, Avro through the registry) and its refusals, read by offset with
//! long polling, problem bodies, size limits, versioning and deprecation headers, the
//! OpenAPI and AsyncAPI documents validated by independent tools, a WebSocket resume, and
//! headless Chromium following a topic with EventSource.

mod common;
mod gateway_support;

use std::process::Command;

use gateway_support::{Gw, python, request};
use serde_json::{Value, json};

fn latest(gw: &Gw, topic: &str) -> i64 {
    gw.get(&format!("/v1/topics/{topic}")).json()["partitions"][0]["latest_offset"]
        .as_i64()
        .expect("latest_offset")
}

#[test]
fn produce_read_and_refusals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = Gw::start(dir.path(), &[("MAX_BODY_BYTES", "4096")], 0);
    gw.create_topic("t", 1, &[]);

    // Binary (base64) and JSON values, headers, explicit partition.
    let r = gw.post(
        "/v1/topics/t/records",
        &json!({"value_format": "binary", "records": [
            {"key": "k", "value": "AAEC/w==", "headers": {"h": "v"}, "partition": 0}]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["offsets"], json!([{"partition": 0, "offset": 0}]));
    let read = gw
        .get("/v1/topics/t/partitions/0/records?offset=0&format=base64")
        .json();
    assert_eq!(read["records"][0]["value"], "AAEC/w==");
    assert_eq!(read["records"][0]["key"], "aw==");
    assert_eq!(read["records"][0]["headers"]["h"], "v");
    assert_eq!(read["next_offset"], 1);

    // Refusals: a clear problem, and nothing stored.
    let big = "x".repeat(5000);
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({"records": []}), 400, "records is empty"),
        (json!({"records": [{"valu": 1}]}), 422, "unknown field"),
        (
            json!({"value_format": "binary", "records": [{"value": "%%%"}]}),
            422,
            "not base64",
        ),
        (
            json!({"value_format": "avro", "records": [{"value": 1}]}),
            422,
            "value_schema_id",
        ),
        (
            json!({"records": [{"value": 1, "partition": 9}]}),
            422,
            "no partition 9",
        ),
        (
            json!({"records": [{"value": big}]}),
            413,
            "payload_too_large",
        ),
    ];
    for (body, status, needle) in &cases {
        let r = gw.post("/v1/topics/t/records", body);
        assert_eq!(r.status, *status, "{}: {}", needle, r.text());
        let p = r.json();
        assert!(r.text().contains(needle), "{needle}: {}", r.text());
        assert!(
            p["request_id"].as_str().is_some_and(|s| !s.is_empty()),
            "{p}"
        );
        assert_eq!(r.header("x-request-id"), p["request_id"].as_str());
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
    }
    let r = request(
        gw.http,
        "POST",
        "/v1/topics/t/records",
        &[
            ("content-type", "application/json"),
            ("x-request-id", "req-42"),
        ],
        Some(b"{not json"),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["request_id"], "req-42");
    assert_eq!(
        gw.post(
            "/v1/topics/nope/records",
            &json!({"records": [{"value": 1}]})
        )
        .status,
        404
    );
    assert_eq!(latest(&gw, "t"), 1, "refused requests stored nothing");

    // Long polling: a read at the end waits for the next record.
    let http = gw.http;
    let waiting = std::thread::spawn(move || {
        request(
            http,
            "GET",
            "/v1/topics/t/partitions/0/records?offset=1&timeout_ms=30000",
            &[],
            None,
        )
    });
    gw.produce("t", &[(None, json!({"late": true}), Some(0))]);
    let r = waiting.join().expect("reader");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["records"][0]["value"], json!({"late": true}));
    let r = gw.get("/v1/topics/t/partitions/0/records?offset=99");
    assert_eq!(r.status, 422, "{}", r.text());
}

#[test]
fn avro_through_the_registry_and_schema_mismatch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = Gw::start(dir.path(), &[], 0);
    gw.create_topic("users", 1, &[]);
    let schema = json!({"type": "record", "name": "User", "fields": [
        {"name": "name", "type": "string"}, {"name": "age", "type": "int"}]});
    let r = request(
        gw.registry,
        "POST",
        "/subjects/users-value/versions",
        &[("content-type", "application/vnd.schemaregistry.v1+json")],
        Some(json!({"schema": schema.to_string()}).to_string().as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.json()["id"].as_i64().expect("id");
    let ok = gw.post(
        "/v1/topics/users/records",
        &json!({"value_format": "avro", "value_schema_id": id,
                "records": [{"key": "u1", "value": {"name": "Ada", "age": 36}}]}),
    );
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.json()["value_schema_id"], id);
    let bad = gw.post(
        "/v1/topics/users/records",
        &json!({"value_format": "avro", "value_schema_id": id,
                "records": [{"value": {"name": "Bob", "age": 1}}, {"value": {"name": 7}}]}),
    );
    assert_eq!(bad.status, 422, "{}", bad.text());
    assert_eq!(bad.json()["details"][0]["record"], 1, "{}", bad.text());
    let missing = gw.post(
        "/v1/topics/users/records",
        &json!({"value_format": "avro", "value_schema_id": 9999, "records": [{"value": {}}]}),
    );
    assert_eq!(missing.status, 422, "{}", missing.text());
    assert_eq!(
        latest(&gw, "users"),
        1,
        "nothing of a refused batch was stored"
    );
    // Confluent wire format: magic byte 0 and the id.
    let read = gw
        .get("/v1/topics/users/partitions/0/records?offset=0&format=base64")
        .json();
    let prefix = python(
        "import base64, sys\nprint(list(base64.b64decode(sys.argv[1])[:5]))",
        &[read["records"][0]["value"].as_str().expect("value")],
    );
    let mut expected = vec![0u8];
    expected.extend((id as i32).to_be_bytes());
    assert_eq!(prefix.trim(), format!("{expected:?}"));

    // AsyncAPI names the registry schema of the topic.
    let doc = gw.get("/asyncapi.json").json();
    assert_eq!(
        doc["components"]["messages"]["users"]["payload"]["x-weft-schema-id"],
        id
    );
}

#[test]
fn v2_evolves_beside_v1_and_v1_says_it_is_deprecated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = Gw::start(dir.path(), &[], 0);
    let v1 = request(
        gw.http,
        "GET",
        "/v1/info",
        &[("x-weft-principal", "legacy-app")],
        None,
    );
    assert_eq!(v1.status, 200);
    assert_eq!(v1.json()["api_version"], 1, "v1 keeps its shape");
    assert_eq!(v1.header("deprecation"), Some("@1767225600"));
    assert!(v1.header("sunset").is_some_and(|s| s.ends_with("GMT")));
    assert_eq!(
        v1.header("link"),
        Some("</v2/info>; rel=\"successor-version\"")
    );
    let v2 = gw.get("/v2/info");
    assert_eq!(v2.status, 200);
    assert_eq!(v2.json()["api"]["version"], 2);
    assert!(v2.header("deprecation").is_none());
    let report = gw.get("/v1/deprecations").json();
    assert_eq!(
        report["calls"],
        json!([{"path": "/v1/info", "principal": "legacy-app", "calls": 1}])
    );
    // Other v1 routes are not deprecated.
    assert!(gw.get("/v1/topics").header("deprecation").is_none());
}

/// NODE_PATH as `cargo xtask test` sets it, else the repository's npm prefix.
fn node_path() -> String {
    std::env::var("NODE_PATH").unwrap_or_else(|_| {
        format!(
            "{}/../../target/npm/node_modules",
            env!("CARGO_MANIFEST_DIR")
        )
    })
}

#[test]
fn openapi_and_asyncapi_documents_pass_independent_validators() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = Gw::start(dir.path(), &[], 0);
    gw.create_topic("orders.v1", 2, &[]);
    let openapi = gw.get("/openapi.json");
    assert_eq!(openapi.status, 200);
    let doc = openapi.json();
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        "/v1/topics",
        "/v1/topics/{topic}",
        "/v1/topics/{topic}/records",
        "/v1/topics/{topic}/partitions/{partition}/records",
        "/v1/topics/{topic}/events",
        "/v1/topics/{topic}/ws",
        "/v1/webhooks",
        "/v1/webhooks/{id}",
        "/v1/webhooks/{id}/attempts",
        "/v2/info",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from OpenAPI"
        );
    }
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, &openapi.body).expect("write");
    let out = python(
        "import sys\nfrom openapi_spec_validator import validate\nfrom openapi_spec_validator.readers import read_from_filename\nd, _ = read_from_filename(sys.argv[1])\nvalidate(d)\nprint('valid')\n",
        &[file.to_str().expect("path")],
    );
    assert_eq!(out.trim(), "valid");

    let asyncapi = gw.get("/asyncapi.json");
    assert_eq!(asyncapi.status, 200);
    let a = asyncapi.json();
    assert_eq!(a["asyncapi"], "3.0.0");
    assert!(a["channels"].get("orders_v1_sse").is_some(), "{a}");
    let file = dir.path().join("asyncapi.json");
    std::fs::write(&file, &asyncapi.body).expect("write");
    let script = r#"
const { Parser } = require('@asyncapi/parser');
const fs = require('fs');
(async () => {
  const { document, diagnostics } = await new Parser().parse(fs.readFileSync(process.argv[process.argv.length - 1], 'utf8'));
  const errors = diagnostics.filter(d => d.severity === 0);
  if (!document || errors.length) { console.error(JSON.stringify(errors, null, 1)); process.exit(1); }
  console.log('valid ' + document.channels().length);
})();
"#;
    let out = Command::new("node")
        .args(["-e", script, file.to_str().expect("path")])
        .env("NODE_PATH", node_path())
        .output()
        .expect("node (a test prerequisite) runs");
    assert!(
        out.status.success(),
        "@asyncapi/parser refused the document (npm @asyncapi/parser needed):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "valid 3");
}

#[test]
fn websocket_resume_message_continues_exactly_after_the_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = Gw::start(dir.path(), &[], 0);
    gw.create_topic("ws", 2, &[]);
    let records: Vec<_> = (0..10).map(|i| (None, json!(i), Some(i % 2))).collect();
    gw.produce("ws", &records);
    // Python's `websockets` client: read 4 events, then on a second connection send a
    // resume with the 4th id and read the remaining 6.
    let script = r#"
import asyncio, json, sys
import websockets
url = sys.argv[1]
async def main():
    got = []
    async with websockets.connect(url + "?start=earliest") as ws:
        while len(got) < 4:
            m = json.loads(await ws.recv())
            if m["type"] == "event":
                got.append(m)
    last = got[-1]["id"]
    async with websockets.connect(url + "?start=latest") as ws:
        await ws.send(json.dumps({"type": "resume", "id": last}))
        while len(got) < 10:
            m = json.loads(await asyncio.wait_for(ws.recv(), 60))
            if m["type"] == "event":
                got.append(m)
    print(json.dumps([[m["data"]["partition"], m["data"]["offset"]] for m in got]))
asyncio.run(main())
"#;
    let out = python(script, &[&format!("ws://{}/v1/topics/ws/ws", gw.http)]);
    let got: Vec<(i64, i64)> = serde_json::from_str(out.trim()).expect("json");
    let mut sorted = got.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 10, "no duplicate: {got:?}");
    assert_eq!(
        sorted,
        (0..2)
            .flat_map(|p| (0..5).map(move |o| (p, o)))
            .collect::<Vec<_>>()
    );
}

#[test]
fn websocket_over_the_limit_is_closed_with_1013() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = Gw::start(dir.path(), &[("MAX_CONNECTIONS", "1")], 0);
    gw.create_topic("ws", 1, &[]);
    let script = r#"
import asyncio, sys
import websockets
async def main():
    url = sys.argv[1]
    async with websockets.connect(url) as first:
        second = await websockets.connect(url)
        try:
            await second.recv()
        except websockets.ConnectionClosed as e:
            print(e.rcvd.code, e.rcvd.reason)
asyncio.run(main())
"#;
    let out = python(script, &[&format!("ws://{}/v1/topics/ws/ws", gw.http)]);
    assert_eq!(out.trim(), "1013 too_many_connections");
}

#[test]
fn headless_chromium_follows_a_topic_with_event_source() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = Gw::start(dir.path(), &[], 0);
    gw.create_topic("browser", 1, &[]);
    gw.produce(
        "browser",
        &[
            (None, json!({"hello": "chromium"}), None),
            (None, json!(2), None),
        ],
    );
    // `close_after=2`: the page closes its EventSource after two events, so the headless
    // browser's virtual time can run out and it prints the DOM.
    let url = format!(
        "http://{}/v1/topics/browser/live.html?close_after=2",
        gw.http
    );
    let profile = dir.path().join("chromium-profile");
    let out = Command::new("timeout")
        .args([
            "120",
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
        ])
        .arg("--virtual-time-budget=10000")
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--dump-dom", &url])
        .output()
        .expect("chromium (Debian package) runs");
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(dom.contains(r#"<p id="state">closed</p>"#), "{dom}");
    assert!(dom.contains(r#"data-id="0:1""#), "{dom}");
    assert!(
        dom.contains(r#"{"headers":{},"key":null,"offset":0"#),
        "{dom}"
    );
    assert!(dom.contains(r#"data-id="0:2""#), "{dom}");
}

/// Headers of a dead letter as the SDK writes them (`weft_resilience::dlq`'s envelope).
fn envelope(class: &str) -> Value {
    json!({
        "trace": "t1",
        "weft-dlq-version": "1",
        "weft-dlq-original-topic": "orders",
        "weft-dlq-original-partition": "0",
        "weft-dlq-original-offset": "7",
        "weft-dlq-source": "consumer",
        "weft-dlq-error-class": class,
        "weft-dlq-error-message": "boom",
        "weft-dlq-attempts": "3",
        "weft-dlq-first-failure": "1000",
        "weft-dlq-last-failure": "2000",
    })
}

#[test]
fn dlq_records_are_listed_and_redriven_once_across_the_api_and_weft_dlq() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = Gw::start(dir.path(), &[], 0);
    gw.create_topic("orders", 1, &[]);
    gw.create_topic("orders.dlq", 1, &[]);
    let r = gw.post(
        "/v1/topics/orders.dlq/records",
        &json!({"records": [
            {"key": "k1", "value": {"n": 1}, "headers": envelope("retryable"), "partition": 0},
            {"key": "k2", "value": {"n": 2}, "headers": {"plain": "yes"}, "partition": 0},
            {"key": "k3", "value": {"n": 3}, "headers": envelope("park"), "partition": 0},
        ]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());

    // Listing: the parsed envelope, or why there is none.
    let list = gw.get("/v1/dlq/orders.dlq/records").json();
    let records = list["records"].as_array().expect("records");
    assert_eq!(records.len(), 3, "{list}");
    let letter = &records[0]["dead_letter"];
    assert_eq!(letter["original_topic"], "orders");
    assert_eq!(letter["original_offset"], 7);
    assert_eq!(letter["error_class"], "retryable");
    assert_eq!(letter["error_message"], "boom");
    assert_eq!(letter["attempts"], 3);
    assert_eq!(records[0]["redriven"], false);
    assert_eq!(records[1]["dead_letter"], Value::Null);
    assert!(
        records[1]["envelope_error"]
            .as_str()
            .is_some_and(|e| e.contains("weft-dlq-")),
        "{list}"
    );
    let parked = gw.get("/v1/dlq/orders.dlq/records?error_class=park").json();
    assert_eq!(parked["records"].as_array().map(Vec::len), Some(1));
    assert_eq!(parked["records"][0]["key"], "k3");
    for (path, status, code) in [
        ("/v1/dlq/nope/records", 404, "topic_not_found"),
        (
            "/v1/dlq/orders.dlq/records?error_class=bogus",
            422,
            "unprocessable",
        ),
    ] {
        let r = gw.get(path);
        assert_eq!(r.status, status, "{path}: {}", r.text());
        assert_eq!(r.json()["code"], code, "{path}");
    }

    // A dry run publishes nothing.
    let plan = gw
        .post("/v1/dlq/orders.dlq/redrive", &json!({"dry_run": true}))
        .json();
    assert_eq!(plan["redriven"].as_array().map(Vec::len), Some(2), "{plan}");
    assert_eq!(plan["skipped"][0]["offset"], 1, "{plan}");
    assert_eq!(latest(&gw, "orders"), 0);

    // One record back to its original topic, with its key, value and headers.
    let done = gw
        .post("/v1/dlq/orders.dlq/redrive", &json!({"key": "k1"}))
        .json();
    assert_eq!(done["redriven"][0]["target"], "orders", "{done}");
    assert_eq!(done["redriven"][0]["target_offset"], 0, "{done}");
    let back = gw
        .get("/v1/topics/orders/partitions/0/records?offset=0")
        .json();
    let rec = &back["records"][0];
    assert_eq!(rec["key"], "k1");
    assert_eq!(rec["value"], json!({"n": 1}));
    assert_eq!(rec["headers"]["trace"], "t1");
    assert_eq!(rec["headers"]["weft-dlq-redrive-count"], "1");
    assert!(
        rec["headers"]["weft-dlq-redriven-from"].as_str().is_some(),
        "{rec}"
    );

    // Idempotent: again, nothing is published.
    let again = gw
        .post("/v1/dlq/orders.dlq/redrive", &json!({"key": "k1"}))
        .json();
    assert_eq!(again["redriven"], json!([]), "{again}");
    assert_eq!(again["skipped"][0]["reason"], "already_redriven");
    assert_eq!(latest(&gw, "orders"), 1);

    // `weft dlq redrive` sees the API's marker (k1) and redrives only k3; the API then
    // sees the CLI's marker.
    let run = common::run_weft(
        dir.path(),
        &gw.kafka.to_string(),
        &["dlq", "redrive", "orders.dlq", "--execute"],
        None,
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("redriven 1 record(s), 1 already redriven before"),
        "{}",
        run.stderr
    );
    assert_eq!(latest(&gw, "orders"), 2);
    let list = gw.get("/v1/dlq/orders.dlq/records?key=k3").json();
    assert_eq!(list["records"][0]["redriven"], true, "{list}");

    // No envelope: only with an explicit, existing target.
    let r = gw.post(
        "/v1/dlq/orders.dlq/redrive",
        &json!({"key": "k2", "to": "missing"}),
    );
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(latest(&gw, "orders"), 2);
    let r = gw.post(
        "/v1/dlq/orders.dlq/redrive",
        &json!({"key": "k2", "to": "orders"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["redriven"][0]["partition"], 0);
    assert_eq!(latest(&gw, "orders"), 3);
    let r = gw.post("/v1/dlq/orders.dlq/redrive", &json!({"bogus": 1}));
    assert_eq!(r.status, 422, "{}", r.text());
}
