//! `value_schema` on an outbox source, inside a real `weft serve` whose own registry holds
//! the schema: payloads leave in the Confluent wire format (`0x00`, the registered id, Avro
//! binary or validated JSON); a payload the schema refuses is a bad row under the source's
//! policy (stop / DLQ); a subject the registry lacks makes the source back off until it
//! appears.

mod common;
#[path = "outbox_support/mod.rs"]
mod support;

use serde_json::Value;
use support::{Db, Kind, consume, start_server, wait_status};
use weft_client::schema::{RegistryClient, decode_avro};
use weft_outbox::OutboxEvent;
use weft_schema::SchemaType;

async fn insert(pool: &weft_store::sqlx::AnyPool, agg: &str, payload: &str) -> String {
    let mut tx = pool.begin().await.expect("begin");
    let event = OutboxEvent::new("order", agg, "OrderChanged", payload.as_bytes().to_vec());
    let id = weft_outbox::insert(&mut tx, &event).await.expect("insert");
    tx.commit().await.expect("commit");
    id.to_string()
}

/// A free local port for `--registry-listen` (weft.toml must name the registry before
/// weft serve starts).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The schema id in a wire-format payload.
fn wire_id(payload: &[u8]) -> u32 {
    assert_eq!(payload.first(), Some(&0), "magic byte 0: {payload:?}");
    u32::from_be_bytes(payload[1..5].try_into().expect("4 id bytes"))
}

#[derive(serde::Deserialize, Debug, PartialEq)]
struct Order {
    n: i64,
}

const AVRO: &str = r#"{"type":"record","name":"Order","fields":[{"name":"n","type":"long"}]}"#;

/// Avro under `${topic}-value`, latest version, policy stop: the subject is missing at first
/// (backing off, error names the registry), then registered; good rows arrive as
/// `0x00 | id | Avro` decoding to the row's JSON; `{"n":"x"}` stops aggregate A (A's later
/// row waits) while B goes on.
#[tokio::test(flavor = "multi_thread")]
async fn avro_payloads_and_a_refused_row_stops_its_aggregate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::new(Kind::Sqlite).await;
    support::init_table(dir.path(), &db.url);
    let pool = db.pool().await;
    insert(&pool, "A", r#"{"n":1}"#).await;
    let bad = insert(&pool, "A", r#"{"n":"x"}"#).await;
    insert(&pool, "A", r#"{"n":3}"#).await;
    insert(&pool, "B", r#"{"n":7}"#).await;
    let registry_addr = format!("127.0.0.1:{}", free_port());
    let url = format!("http://{registry_addr}");
    let server = start_server(
        dir.path(),
        &db.url,
        &format!("value_schema = {{ registry_url = {url:?} }}"),
        &["--registry-listen", &registry_addr],
    );
    let s = wait_status(&server, "backing off on the missing subject", |s| {
        s["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("schema registry") && e.contains("404"))
    });
    assert_eq!(s["published_total"], 0, "{s}");

    let registry = RegistryClient::new(&url).expect("registry client");
    let id = registry
        .register("outbox.event.order-value", SchemaType::Avro, AVRO)
        .await
        .expect("register");
    let s = wait_status(&server, "A stopped, B published", |s| {
        s["published_total"] == 2 && s["blocked"].as_array().is_some_and(|b| b.len() == 1)
    });
    let blocked = &s["blocked"][0];
    assert_eq!(blocked["aggregateid"], "A");
    assert_eq!(blocked["id"], bad.as_str());
    assert!(
        blocked["reason"]
            .as_str()
            .is_some_and(|r| r.contains("refused by schema \"outbox.event.order-value\"")),
        "{s}"
    );
    let msgs = consume(&server.kafka_addr().to_string(), "outbox.event.order", 2);
    assert_eq!(msgs.len(), 2, "A's third row waits behind the refused one");
    let mut got = Vec::new();
    for m in &msgs {
        let payload = m.payload.as_deref().expect("payload");
        assert_eq!(wire_id(payload), id);
        let order: Order = decode_avro(&registry, payload).await.expect("Avro body");
        got.push((m.key.clone(), order.n));
    }
    got.sort();
    assert_eq!(got, vec![("A".to_owned(), 1), ("B".to_owned(), 7)]);
    pool.close().await;
}

/// JSON Schema under a fixed subject and version 1, policy dlq: a valid payload arrives as
/// `0x00 | id | JSON`; one missing a required field goes to the DLQ (original payload, reason
/// naming the schema) and the aggregate goes on.
#[tokio::test(flavor = "multi_thread")]
async fn json_schema_payloads_and_a_refused_row_to_the_dlq() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::new(Kind::Sqlite).await;
    support::init_table(dir.path(), &db.url);
    let pool = db.pool().await;
    let registry_addr = format!("127.0.0.1:{}", free_port());
    let url = format!("http://{registry_addr}");
    let server = start_server(
        dir.path(),
        &db.url,
        &format!(
            "on_bad_row = \"dlq\"\ndlq_topic = \"app.dlq\"\n\
             value_schema = {{ registry_url = {url:?}, subject = \"orders\", version = 1 }}"
        ),
        &["--registry-listen", &registry_addr],
    );
    let registry = RegistryClient::new(&url).expect("registry client");
    let schema = r#"{"type":"object","properties":{"n":{"type":"integer"}},"required":["n"]}"#;
    let id = registry
        .register("orders", SchemaType::Json, schema)
        .await
        .expect("register");
    insert(&pool, "A", r#"{"n":1}"#).await;
    let bad = insert(&pool, "A", r#"{"m":2}"#).await;
    insert(&pool, "A", r#"{"n": 3}"#).await;
    let s = wait_status(&server, "2 published, 1 dead-lettered", |s| {
        s["published_total"] == 2 && s["dead_lettered_total"] == 1
    });
    assert!(s["blocked"].as_array().is_some_and(Vec::is_empty), "{s}");
    let bootstrap = server.kafka_addr().to_string();
    let msgs = consume(&bootstrap, "outbox.event.order", 2);
    assert_eq!(msgs.len(), 2);
    for (m, n) in msgs.iter().zip([1, 3]) {
        let payload = m.payload.as_deref().expect("payload");
        assert_eq!(wire_id(payload), id);
        let body: Value = serde_json::from_slice(&payload[5..]).expect("JSON body");
        assert_eq!(body, serde_json::json!({ "n": n }));
    }
    let dlq = consume(&bootstrap, "app.dlq", 1);
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].id(), bad);
    assert_eq!(dlq[0].payload.as_deref(), Some(&br#"{"m":2}"#[..]));
    let reason = &dlq[0].headers["weft-dlq-error-message"];
    assert!(
        reason.contains("refused by schema \"orders\" version 1"),
        "{reason}"
    );
    pool.close().await;
}
