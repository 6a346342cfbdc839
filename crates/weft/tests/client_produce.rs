//! weft-client's producer against a real `weft serve`: Java-compatible key partitioning,
//! context headers through a handler, registry serializers in the Confluent wire format.

mod client_common;
mod common;

use std::sync::{Arc, Mutex};

use client_common::{broker, consumer_config, create_topic, wait_until};
use weft_client::context::{
    self, CAUSATION_ID, CORRELATION_ID, MESSAGE_ID, MessageContext, TRACEPARENT,
};
use weft_client::schema::{RegistryClient, SchemaSerializer, decode_avro, value_subject};
use weft_client::{Consumer, HandlerError, Message, Producer, ProducerConfig, Record};

/// Key → partition of 6 under the Java client's default partitioner,
/// `(Utils.murmur2(key) & 0x7fffffff) % 6`. Computed independently with a Python port of
/// Kafka's `Utils.murmur2`, itself checked against the published vectors of Kafka's
/// `UtilsTest` ("21" → -973932308, "foobar" → -790332482, "abc" → 479470107, …).
const JAVA_VECTORS: &[(&str, i32)] = &[
    ("order-1", 4),
    ("order-2", 3),
    ("order-3", 3),
    ("customer-42", 3),
    ("key-0", 1),
    ("key-1", 0),
    ("key-2", 2),
    ("key-3", 5),
    ("key-4", 3),
    ("key-5", 2),
    ("alpha", 4),
    ("beta", 2),
    ("gamma", 4),
    ("delta", 2),
    ("weft", 0),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_land_where_the_java_client_puts_them() {
    let b = broker();
    create_topic(&b.bootstrap, "orders", 6).await;
    let producer = Producer::new(&ProducerConfig::new(&b.bootstrap)).expect("producer");
    for &(key, expected) in JAVA_VECTORS {
        // Twice: the same key keeps its partition.
        for _ in 0..2 {
            let d = producer
                .send(Record::new("orders").key(key).payload("x"))
                .await
                .expect("send");
            assert_eq!(d.partition, expected, "key {key:?}");
            assert!(d.offset >= 0);
            assert!(!d.message_id.is_empty());
        }
    }
    // Offsets grow per partition: delivery futures resolve with the broker's offsets.
    let a = producer
        .send(Record::new("orders").key("weft"))
        .await
        .expect("send");
    let c = producer
        .send(Record::new("orders").key("weft"))
        .await
        .expect("send");
    assert_eq!((a.partition, c.partition), (0, 0));
    assert_eq!(c.offset, a.offset + 1);
    assert_ne!(a.message_id, c.message_id);
    // A message id the caller sets (a relay re-publishing an event) is kept.
    let fixed = producer
        .send(
            Record::new("orders")
                .key("weft")
                .header(MESSAGE_ID, "evt-42"),
        )
        .await
        .expect("send");
    assert_eq!(fixed.message_id, "evt-42");
}

/// A record produced at the edge, handled; the handler produces a follow-up without passing
/// anything: the follow-up carries a new id, the same correlation id, the first record's id
/// as causation id and the trace context.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn context_flows_from_a_handled_record_to_what_its_handler_produces() {
    let b = broker();
    create_topic(&b.bootstrap, "in", 1).await;
    create_topic(&b.bootstrap, "out", 1).await;
    let producer = Producer::new(&ProducerConfig::new(&b.bootstrap)).expect("producer");
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    // At the edge, with a trace context passed in (as a web request's would be).
    let edge = context::scope(
        MessageContext {
            message_id: String::new(),
            correlation_id: "corr-from-http".into(),
            traceparent: Some(traceparent.into()),
            tracestate: None,
        },
        producer.send(
            Record::new("in")
                .key("k")
                .json(&serde_json::json!({"n": 1}))
                .expect("json"),
        ),
    )
    .await
    .expect("send");

    let seen: Arc<Mutex<Vec<Message>>> = Arc::default();
    let consumer =
        Consumer::new(consumer_config(&b.bootstrap, "g-in", &["in", "out"])).expect("consumer");
    let stop = consumer.shutdown_handle();
    let (p, s) = (producer.clone(), seen.clone());
    let run = tokio::spawn(consumer.run(move |m: Message| {
        let (p, s) = (p.clone(), s.clone());
        async move {
            if m.topic == "in" {
                p.send(Record::new("out").key("k").payload("follow-up"))
                    .await
                    .map_err(HandlerError::retryable)?;
            }
            s.lock().expect("seen").push(m);
            Ok(())
        }
    }));
    wait_until("both records handled", || {
        seen.lock().expect("seen").len() == 2
    })
    .await;
    stop.shutdown();
    run.await.expect("join").expect("run");

    let seen = seen.lock().expect("seen").clone();
    let first = seen.iter().find(|m| m.topic == "in").expect("in");
    let second = seen.iter().find(|m| m.topic == "out").expect("out");
    assert_eq!(first.message_id(), Some(edge.message_id.as_str()));
    assert_eq!(first.header_str(CORRELATION_ID), Some("corr-from-http"));
    assert_eq!(first.header_str(TRACEPARENT), Some(traceparent));
    assert_eq!(first.json::<serde_json::Value>().expect("json")["n"], 1);

    let second_id = second.header_str(MESSAGE_ID).expect("id");
    assert_ne!(second_id, edge.message_id);
    assert_eq!(second.header_str(CORRELATION_ID), Some("corr-from-http"));
    assert_eq!(
        second.header_str(CAUSATION_ID),
        Some(edge.message_id.as_str())
    );
    let tp = second.header_str(TRACEPARENT).expect("traceparent");
    assert!(
        tp.contains("4bf92f3577b34da6a3ce929d0e0e4736"),
        "trace id kept: {tp}"
    );
}

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
struct Order {
    id: String,
    amount: i64,
}

const ORDER_AVRO: &str = r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"string"},{"name":"amount","type":"long"}]}"#;
const ORDER_JSON_SCHEMA: &str = r#"{"type":"object","properties":{"id":{"type":"string"},"amount":{"type":"integer","minimum":0}},"required":["id","amount"]}"#;

/// Avro and JSON Schema payloads in the wire format: the schema is registered once (same id
/// every time), the record decodes with the registry's schema, a value the JSON Schema
/// refuses is never sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn registry_serializers_write_the_confluent_wire_format() {
    let b = broker();
    create_topic(&b.bootstrap, "orders-avro", 1).await;
    let registry_url = format!("http://{}", b.server.registry_addr());
    let registry = RegistryClient::new(&registry_url).expect("registry client");
    let ser = SchemaSerializer::new(registry.clone());
    let order = Order {
        id: "o-1".into(),
        amount: 42,
    };
    let subject = value_subject("orders-avro");
    let bytes = ser.avro(&subject, ORDER_AVRO, &order).await.expect("avro");
    assert_eq!(bytes[0], 0, "magic byte");
    let id = u32::from_be_bytes(bytes[1..5].try_into().expect("4 bytes"));
    assert_eq!(
        ser.schema_id(&subject, weft_schema::SchemaType::Avro, ORDER_AVRO)
            .await
            .expect("id"),
        id
    );
    let producer = Producer::new(&ProducerConfig::new(&b.bootstrap)).expect("producer");
    producer
        .send(Record::new("orders-avro").key("o-1").payload(bytes.clone()))
        .await
        .expect("send");
    let back: Order = decode_avro(&registry, &bytes).await.expect("decode");
    assert_eq!(back, order);
    // A lookup-only serializer finds the registered schema.
    let lookup = SchemaSerializer::new(registry.clone()).lookup_only();
    assert_eq!(
        lookup
            .schema_id(&subject, weft_schema::SchemaType::Avro, ORDER_AVRO)
            .await
            .expect("lookup"),
        id
    );
    // ...and refuses one that is not registered.
    let other = r#"{"type":"record","name":"Other","fields":[{"name":"x","type":"int"}]}"#;
    assert!(
        lookup
            .schema_id(&subject, weft_schema::SchemaType::Avro, other)
            .await
            .is_err()
    );

    let json_subject = value_subject("orders-json");
    let ok = ser
        .json_schema(&json_subject, ORDER_JSON_SCHEMA, &order)
        .await
        .expect("json schema");
    assert_eq!(ok[0], 0);
    let bad = Order {
        id: "o-2".into(),
        amount: -1,
    };
    let err = ser
        .json_schema(&json_subject, ORDER_JSON_SCHEMA, &bad)
        .await
        .expect_err("minimum 0 refused");
    assert!(err.to_string().contains("does not match"), "{err}");
    // Protobuf: registered, framed with the message indexes; the body validates against the
    // registered schema (weft-schema's decoder, the one broker-side validation uses).
    let proto = "syntax = \"proto3\";\npackage shop;\nmessage Ping { string name = 1; int64 n = 2; }\nmessage Pong { bool ok = 1; }\n";
    // Pong { ok: true }: field 1, varint, 1.
    let framed = ser
        .protobuf_encoded(&value_subject("pings"), proto, &[1], &[0x08, 0x01])
        .await
        .expect("protobuf");
    let (schema_ref, rest) = weft_schema::wire::split_prefix(&framed).expect("prefix");
    let weft_schema::wire::SchemaRef::Id(proto_id) = schema_ref else {
        panic!("id prefix expected");
    };
    let (indexes, body) = weft_schema::wire::split_message_indexes(rest).expect("indexes");
    assert_eq!(indexes, vec![1]);
    let (kind, text) = registry.schema_by_id(proto_id).await.expect("schema by id");
    assert_eq!(kind, weft_schema::SchemaType::Protobuf);
    let parsed = weft_schema::ParsedSchema::parse(kind, &text, &[]).expect("parses");
    parsed
        .validate(body, &indexes)
        .expect("body is a valid Pong");
    assert!(
        parsed.validate(&[0x08], &indexes).is_err(),
        "a truncated body is not"
    );

    // An Avro value of the wrong shape is refused before anything is sent.
    let err = ser
        .avro(&subject, ORDER_AVRO, &serde_json::json!({"id": 5}))
        .await
        .expect_err("wrong shape refused");
    assert!(err.to_string().contains("avro"), "{err}");
}
