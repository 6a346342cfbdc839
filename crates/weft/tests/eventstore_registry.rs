//! Event types bound to a schema-registry subject inside a real `weft serve`: the event store
//! looks the schema up in the server's own registry over its REST API.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;

use common::Server;
use serde_json::{Value, json};

/// A minimal HTTP/1.1 request: `(status, body)`.
fn call(addr: SocketAddr, method: &str, path: &str, body: &Value) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    let body = body.to_string();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn registry_bound_types_through_weft_serve() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let (http, registry) = (server.http_addr, server.registry_addr());
    let schema = json!({
        "type": "object",
        "required": ["order_id", "total"],
        "properties": {"order_id": {"type": "string"}, "total": {"type": "number"}}
    });
    let (status, body) = call(
        registry,
        "POST",
        "/subjects/orders-value/versions",
        &json!({"schemaType": "JSON", "schema": schema.to_string()}),
    );
    assert_eq!(status, 200, "{body}");

    let (status, body) = call(
        http,
        "PUT",
        "/v1/event-types/OrderPlaced",
        &json!({"registry": {"subject": "nope-value"}}),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("no subject nope-value"), "{body}");
    let (status, body) = call(
        http,
        "PUT",
        "/v1/event-types/OrderPlaced",
        &json!({"registry": {"subject": "orders-value"}}),
    );
    assert_eq!(status, 204, "{body}");

    let append = |data: Value| {
        call(
            http,
            "POST",
            "/v1/streams/order-1",
            &json!({"events": [{"type": "OrderPlaced", "data": data}]}),
        )
    };
    let (status, body) = append(json!({"order_id": "o1", "total": 5}));
    assert_eq!(status, 201, "{body}");
    let (status, body) = append(json!({"order_id": "o2"}));
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("schema_mismatch")
            && body.contains("registry subject orders-value version 1")
            && body.contains("total"),
        "{body}"
    );

    let (status, body) = call(http, "GET", "/v1/streams/order-1", &Value::Null);
    assert_eq!(status, 200, "{body}");
    let read: Value = serde_json::from_str(&body).expect("JSON");
    let events = read["events"].as_array().expect("events");
    assert_eq!(events.len(), 1, "the refused event was not stored: {body}");
    assert_eq!(
        events[0]["schema"],
        json!({"subject": "orders-value", "version": 1})
    );
}
