//! Event types bound to a schema-registry subject (an in-process `MemorySchemaLookup`; the
//! HTTP lookup against a real `weft serve` is crates/weft/tests/eventstore_registry.rs).

mod common;

use std::sync::Arc;

use common::{BACKENDS, open, reopen};
use serde_json::json;
use weft_eventstore::{
    Direction, EventData, EventStore, ExpectedVersion, MemorySchemaLookup, RegistryBinding,
    SchemaRef, TypeDeclaration, Visibility,
};

fn bound(event_type: &str, subject: &str, version: Option<i64>) -> TypeDeclaration {
    TypeDeclaration {
        event_type: event_type.into(),
        visibility: Visibility::Private,
        json_schema: None,
        registry: Some(RegistryBinding {
            subject: subject.into(),
            version,
        }),
        schema_ref: None,
        public: None,
    }
}

fn order_schema(required: &[&str]) -> String {
    json!({
        "type": "object",
        "required": required,
        "properties": {"order_id": {"type": "string"}, "total": {"type": "number"}}
    })
    .to_string()
}

async fn refused(es: &EventStore, stream: &str, e: EventData) -> String {
    let head = es.head().await.expect("head");
    let before = es.stream_info(stream).await.expect("info");
    let err = es
        .append(stream, ExpectedVersion::Any, vec![e])
        .await
        .expect_err("refused");
    assert_eq!(es.head().await.expect("head"), head, "nothing stored");
    assert_eq!(es.stream_info(stream).await.expect("info"), before);
    err.to_string()
}

#[tokio::test]
async fn registry_bound_types_are_validated_and_recorded() {
    for backend in BACKENDS {
        let (db, es) = open(backend).await;
        // No registry configured: the binding cannot be checked, so it is refused.
        let err = es
            .declare_type(bound("OrderPlaced", "orders-value", None))
            .await
            .expect_err("no registry");
        assert!(
            err.to_string().contains("no schema registry is configured"),
            "{err}"
        );

        let registry = Arc::new(MemorySchemaLookup::new());
        assert_eq!(
            registry.register("orders-value", "JSON", &order_schema(&["order_id"])),
            1
        );
        assert_eq!(
            registry.register(
                "orders-value",
                "JSON",
                &order_schema(&["order_id", "total"])
            ),
            2
        );
        registry.register("avro-value", "AVRO", r#"{"type":"string"}"#);
        es.set_schema_lookup(registry.clone());

        for (decl, message) in [
            (bound("X", "nope-value", None), "no subject nope-value"),
            (
                bound("X", "orders-value", Some(9)),
                "no subject orders-value version 9",
            ),
            (bound("X", "avro-value", None), "is a AVRO schema"),
        ] {
            let err = es.declare_type(decl).await.expect_err("refused");
            assert!(err.to_string().contains(message), "{err}");
            assert!(es.declared_type("X").is_none());
        }

        es.declare_type(bound("OrderPlaced", "orders-value", None))
            .await
            .expect("bound to latest");
        es.declare_type(bound("OrderDrafted", "orders-value", Some(1)))
            .await
            .expect("bound to version 1");

        let full = json!({"order_id": "o1", "total": 5});
        let partial = json!({"order_id": "o2"});
        es.append(
            "order-1",
            ExpectedVersion::NoStream,
            vec![
                EventData::new("OrderPlaced", full.clone()),
                EventData::new("OrderDrafted", partial.clone()),
            ],
        )
        .await
        .expect("valid events appended");

        // Invalid against the latest (version 2): refused, naming subject, version, violation.
        let err = refused(
            &es,
            "order-1",
            EventData::new("OrderPlaced", partial.clone()),
        )
        .await;
        assert!(
            err.contains("registry subject orders-value version 2") && err.contains("total"),
            "{err}"
        );
        let err = refused(
            &es,
            "order-1",
            EventData::new("OrderDrafted", json!({"order_id": 7})),
        )
        .await;
        assert!(
            err.contains("registry subject orders-value version 1") && err.contains("/order_id"),
            "{err}"
        );
        // An event naming another subject than its type's binding.
        let mut other = EventData::new("OrderPlaced", full.clone());
        other.schema = Some(SchemaRef {
            subject: "payments-value".into(),
            version: 1,
        });
        let err = refused(&es, "order-1", other).await;
        assert!(err.contains("bound to subject orders-value"), "{err}");
        // An event naming an older version of its subject is checked against that version.
        let mut pinned = EventData::new("OrderPlaced", partial.clone());
        pinned.schema = Some(SchemaRef {
            subject: "orders-value".into(),
            version: 1,
        });
        es.append("order-1", ExpectedVersion::Exact(1), vec![pinned])
            .await
            .expect("valid against version 1");
        let mut missing = EventData::new("OrderPlaced", full.clone());
        missing.schema = Some(SchemaRef {
            subject: "orders-value".into(),
            version: 5,
        });
        let err = refused(&es, "order-1", missing).await;
        assert!(err.contains("no subject orders-value version 5"), "{err}");

        let events = es
            .read_stream("order-1", 0, Direction::Forwards, 10)
            .await
            .expect("read");
        let refs: Vec<_> = events
            .iter()
            .map(|e| e.schema.clone().map(|s| (s.subject, s.version)))
            .collect();
        let v = |n| Some(("orders-value".to_owned(), n));
        assert_eq!(refs, vec![v(2), v(1), v(1)], "{backend:?}");
        assert_eq!(events[0].data, full);

        // After a restart the binding is kept; without a registry its appends are refused.
        let es = reopen(&db).await;
        assert!(
            es.declared_type("OrderPlaced")
                .expect("kept")
                .registry
                .is_some()
        );
        let err = refused(&es, "order-1", EventData::new("OrderPlaced", full.clone())).await;
        assert!(err.contains("no schema registry is configured"), "{err}");
        es.set_schema_lookup(registry);
        es.append(
            "order-1",
            ExpectedVersion::Exact(2),
            vec![EventData::new("OrderPlaced", full)],
        )
        .await
        .expect("appended once the registry is back");
    }
}

/// `method path` with a JSON `body` on the registry at `base`; returns its answer.
async fn call_http(base: &str, method: &str, path: &str, body: serde_json::Value) -> String {
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let req = hyper::Request::builder()
        .method(method)
        .uri(format!("{base}{path}"))
        .header("content-type", "application/vnd.schemaregistry.v1+json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    let res = client.request(req).await.expect("the registry answers");
    let status = res.status();
    let raw = res.into_body().collect().await.expect("body").to_bytes();
    let text = String::from_utf8_lossy(&raw).into_owned();
    assert!(status.is_success(), "{method} {path}: {status} {text}");
    text
}

/// The HTTP lookup against the real schema registry server (weft-registry's REST API).
#[tokio::test]
async fn http_lookup_against_the_registry_server() {
    let db = weft_store::testing::TestDb::new(weft_store::Backend::Sqlite).await;
    let registry = weft_registry::Registry::open(db.open().await)
        .await
        .expect("registry opens");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(weft_registry::serve(listener, registry, async move {
        let _ = stopped.await;
    }));
    let base = format!("http://{addr}");
    // Version 2 requires more than version 1: allowed once compatibility checks are off.
    call_http(
        &base,
        "PUT",
        "/config/orders-value",
        json!({"compatibility": "NONE"}),
    )
    .await;
    for required in [&["order_id"][..], &["order_id", "total"]] {
        let schema = json!({"schemaType": "JSON", "schema": order_schema(required)});
        call_http(&base, "POST", "/subjects/orders-value/versions", schema).await;
    }

    let (_db, es) = open(weft_store::Backend::Sqlite).await;
    es.set_schema_lookup(Arc::new(weft_eventstore::HttpSchemaLookup::new(&base)));
    let err = es
        .declare_type(bound("OrderPlaced", "unknown-value", None))
        .await
        .expect_err("unknown subject");
    assert!(
        err.to_string().contains("no subject unknown-value"),
        "{err}"
    );
    es.declare_type(bound("OrderPlaced", "orders-value", None))
        .await
        .expect("declared");
    let ok = es
        .append(
            "order-1",
            ExpectedVersion::NoStream,
            vec![EventData::new(
                "OrderPlaced",
                json!({"order_id": "o1", "total": 3}),
            )],
        )
        .await
        .expect("valid event appended");
    assert_eq!(ok.next_expected, 0);
    let err = refused(
        &es,
        "order-1",
        EventData::new("OrderPlaced", json!({"order_id": "o2"})),
    )
    .await;
    assert!(
        err.contains("registry subject orders-value version 2") && err.contains("total"),
        "{err}"
    );
    let events = es
        .read_stream("order-1", 0, Direction::Forwards, 10)
        .await
        .expect("read");
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].schema,
        Some(SchemaRef {
            subject: "orders-value".into(),
            version: 2
        })
    );
    let _ = stop.send(());
    server
        .await
        .expect("joined")
        .expect("server stopped cleanly");
}
