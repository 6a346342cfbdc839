//! Bounded contexts end to end: a private domain event appended over `/v1/streams` reaches
//! the public Kafka topic only as its declared public face, through the transactional outbox
//! relay of the same `weft serve` — the private field is never on the topic.

mod common;
#[path = "outbox_support/mod.rs"]
mod support;

use serde_json::json;
use weft_eventstore::{EventStore, FieldMapping, PublicMapping, TypeDeclaration, Visibility};
use weft_store::Backend;
use weft_store::testing::TestDb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_field_never_reaches_the_public_topic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = TestDb::new(Backend::Postgres).await;
    // Declared before the server starts: it loads declarations when it opens the store.
    let es = EventStore::open(db.open().await)
        .await
        .expect("event store");
    es.declare_type(TypeDeclaration {
        event_type: "OrderPlaced".into(),
        visibility: Visibility::Private,
        json_schema: None,
        registry: None,
        schema_ref: None,
        public: Some(PublicMapping {
            public_type: "OrderSubmitted".into(),
            subject: "orders.order-submitted-value".into(),
            fields: vec![
                FieldMapping {
                    from: "/order_id".into(),
                    to: "id".into(),
                },
                FieldMapping {
                    from: "/total".into(),
                    to: "amount".into(),
                },
            ],
            computed: Vec::new(),
            include_source: false,
        }),
    })
    .await
    .expect("declare");
    es.store().close().await;

    // The state database is also the outbox source the relay polls.
    let server = tokio::task::block_in_place(|| {
        support::start_server(dir.path(), &db.url, "", &["--database", &db.url])
    });
    let http = format!("http://{}", server.http_addr);
    for (id, card) in [("42", "4111111111111111"), ("43", "5500000000000004")] {
        let out = common::weft(dir.path())
            .args([
                "events",
                "--url",
                &http,
                "append",
                "--stream",
                &format!("order-{id}"),
            ])
            .args([
                "--type",
                "OrderPlaced",
                "--expected-version",
                "no_stream",
                "--data",
            ])
            .arg(json!({"order_id": id, "total": 10, "card_number": card}).to_string())
            .output()
            .expect("weft events append");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A domain event without a public face stays inside.
    let out = common::weft(dir.path())
        .args(["events", "--url", &http, "append", "--stream", "order-42"])
        .args([
            "--type",
            "FraudScoreComputed",
            "--data",
            r#"{"score": 0.93}"#,
        ])
        .output()
        .expect("weft events append");
    assert!(out.status.success());

    let msgs = tokio::task::block_in_place(|| {
        support::consume(&server.kafka_addr().to_string(), "outbox.event.order", 2)
    });
    assert_eq!(
        msgs.len(),
        2,
        "one public event per OrderPlaced, none for the rest"
    );
    for m in &msgs {
        let raw = String::from_utf8_lossy(m.payload.as_deref().unwrap_or_default()).into_owned();
        assert!(
            !raw.contains("card_number") && !raw.contains("4111") && !raw.contains("5500"),
            "private data on the public topic: {raw}"
        );
        assert!(!raw.contains("score"), "{raw}");
        let v = m.json();
        assert_eq!(v["amount"], 10);
        assert_eq!(v["id"], m.key.as_str(), "keyed by the aggregate id");
        assert_eq!(m.headers["weft-event-type"], "OrderSubmitted");
        assert_eq!(
            m.headers["weft-schema-subject"],
            "orders.order-submitted-value"
        );
    }
}
