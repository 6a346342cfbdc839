//! `/v1/streams` over real HTTP: append, read, refusals with their codes, SSE with resume.

mod common;

use std::net::SocketAddr;

use common::{BACKENDS, open, within};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use weft_eventstore::EventStore;

struct Api {
    addr: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Api {
    async fn serve(es: EventStore) -> Api {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            axum::serve(listener, weft_eventstore::http::router(es))
                .await
                .expect("serve")
        });
        Api {
            addr,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        self.raw(method, path, body).await
    }

    async fn raw(&self, method: Method, path: &str, body: Bytes) -> (u16, Value) {
        let req = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr))
            .header("content-type", "application/json")
            .body(Full::new(body))
            .expect("request");
        let resp = self.client.request(req).await.expect("response");
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, body)
    }

    /// Opens an SSE stream and returns the first `n` `(id, event, data)` frames that carry an id.
    async fn sse(
        &self,
        path: &str,
        last_event_id: Option<u64>,
        n: usize,
    ) -> Vec<(u64, String, Value)> {
        let mut req = Request::builder()
            .uri(format!("http://{}{path}", self.addr))
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id.to_string());
        }
        let resp = self
            .client
            .request(req.body(Full::new(Bytes::new())).expect("request"))
            .await
            .expect("response");
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let mut text = String::new();
        let mut out = Vec::new();
        while out.len() < n {
            let frame = within(body.frame()).await.expect("open").expect("frame");
            if let Some(chunk) = frame.data_ref() {
                text.push_str(std::str::from_utf8(chunk).expect("utf-8"));
            }
            while let Some(end) = text.find("\n\n") {
                let block: String = text[..end].to_owned();
                text.drain(..end + 2);
                let (mut id, mut event, mut data) = (None, String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().parse().ok();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    }
                }
                if let Some(id) = id {
                    out.push((id, event, serde_json::from_str(&data).expect("json data")));
                }
            }
        }
        out
    }
}

#[tokio::test]
async fn append_read_and_refusals() {
    for backend in BACKENDS {
        let (_db, es) = open(backend).await;
        let api = Api::serve(es.clone()).await;
        let body = json!({
            "expected_version": "no_stream",
            "events": [{"id": "e1", "type": "OrderPlaced", "data": {"total": 5},
                        "metadata": {"correlation_id": "c1", "principal": "alice"}}]
        });
        let (status, w) = api
            .call(Method::POST, "/v1/streams/order-1", Some(body.clone()))
            .await;
        assert_eq!(status, 201, "{backend:?}: {w}");
        assert_eq!(w["position"], 1);
        let (status, w) = api
            .call(Method::POST, "/v1/streams/order-1", Some(body))
            .await;
        assert_eq!(
            (status, &w["duplicate"]),
            (200, &json!(true)),
            "idempotent retry"
        );
        let (status, e) = api
            .call(
                Method::POST,
                "/v1/streams/order-1",
                Some(json!({"expected_version": 5, "events": [{"type": "X", "data": {}}]})),
            )
            .await;
        assert_eq!(
            (status, &e["code"]),
            (409, &json!("wrong_expected_version"))
        );
        assert_eq!(e["actual_revision"], 0);

        let refusals = [
            (
                "/v1/streams/order-1",
                json!({"expected_version": "sometimes", "events": [{"type": "X"}]}),
                400,
                "sometimes",
            ),
            (
                "/v1/streams/not_a_stream",
                json!({"events": [{"type": "X"}]}),
                400,
                "invalid stream name",
            ),
            (
                "/v1/streams/order-1",
                json!({"events": [{"type": "X", "data": {"x": "y".repeat(1_100_000)}}]}),
                413,
                "more than the limit",
            ),
            (
                "/v1/streams/order-1",
                json!({"events": [{"type": "X"}], "surprise": 1}),
                400,
                "unknown field",
            ),
        ];
        for (path, body, code, message) in refusals {
            let (status, e) = api.call(Method::POST, path, Some(body)).await;
            assert_eq!(status, code, "{path}: {e}");
            assert!(
                e["message"].as_str().expect("message").contains(message),
                "{e} should mention {message:?}"
            );
        }
        let (status, _) = api
            .raw(
                Method::POST,
                "/v1/streams/order-1",
                Bytes::from_static(b"{not json"),
            )
            .await;
        assert_eq!(status, 400);
        assert_eq!(
            es.head().await.expect("head"),
            1,
            "nothing of a refusal is stored"
        );

        let (status, multi) = api
            .call(
                Method::POST,
                "/v1/streams",
                Some(json!({"appends": [
                    {"stream": "order-2", "events": [{"type": "OrderPlaced", "data": {"total": 7}}]},
                    {"stream": "customer-9", "events": [{"type": "Ordered", "data": {}}]}
                ]})),
            )
            .await;
        assert_eq!(status, 201, "{multi}");
        let (status, r) = api
            .call(Method::GET, "/v1/streams/order-1?from=0", None)
            .await;
        assert_eq!(status, 200);
        assert_eq!(r["events"][0]["metadata"]["principal"], "alice");
        assert_eq!(r["events"][0]["type"], "OrderPlaced");
        let (_, r) = api
            .call(
                Method::GET,
                "/v1/streams/$all?category=order&limit=10",
                None,
            )
            .await;
        let positions: Vec<_> = r["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| e["position"].as_u64().expect("position"))
            .collect();
        assert_eq!(positions, [1, 2]);
        let (_, r) = api
            .call(
                Method::GET,
                "/v1/streams/$all?direction=backwards&limit=1",
                None,
            )
            .await;
        assert_eq!(r["events"][0]["position"], 3);
        let (status, _) = api
            .call(Method::GET, "/v1/streams/order-1?from=soon", None)
            .await;
        assert_eq!(status, 400);
        let (status, _) = api
            .call(
                Method::DELETE,
                "/v1/streams/order-2?hard=true&expected_version=0",
                None,
            )
            .await;
        assert_eq!(status, 204);
        let (status, e) = api.call(Method::GET, "/v1/streams/order-2", None).await;
        assert_eq!((status, &e["code"]), (410, &json!("stream_deleted")));
        let (status, _) = api
            .call(
                Method::PUT,
                "/v1/streams/order-1/metadata",
                Some(json!({"max_count": 1})),
            )
            .await;
        assert_eq!(status, 204);
        let (_, info) = api
            .call(Method::GET, "/v1/streams/order-1/metadata", None)
            .await;
        assert_eq!(info["metadata"]["max_count"], 1);

        // Declared types over HTTP: the schema applies at once; bad declarations are refused.
        let (status, e) = api
            .call(
                Method::PUT,
                "/v1/event-types/Priced",
                Some(json!({"json_schema": {"type": "object", "required": ["price"]}})),
            )
            .await;
        assert_eq!(status, 204, "{e}");
        let (status, e) = api
            .call(
                Method::POST,
                "/v1/streams/order-5",
                Some(json!({"events": [{"type": "Priced", "data": {}}]})),
            )
            .await;
        assert_eq!(
            (status, &e["code"]),
            (400, &json!("schema_mismatch")),
            "{e}"
        );
        let (_, t) = api.call(Method::GET, "/v1/event-types/Priced", None).await;
        assert_eq!(t["visibility"], "private");
        let (status, _) = api
            .call(
                Method::PUT,
                "/v1/event-types/Priced",
                Some(json!({"event_type": "Other"})),
            )
            .await;
        assert_eq!(status, 400);
        let (status, _) = api
            .call(
                Method::PUT,
                "/v1/event-types/Bad",
                Some(json!({"json_schema": {"type": 12}})),
            )
            .await;
        assert_eq!(status, 400);
        // order-2 was tombstoned above: its event is reclaimed.
        let (status, report) = api.call(Method::POST, "/v1/scavenge?batch=10", None).await;
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["events_deleted"], 1, "{report}");
        for path in [
            "/v1/event-types/Nope",
            "/v1/projections/nope",
            "/v1/subscriptions/nope",
        ] {
            let (status, _) = api.call(Method::GET, path, None).await;
            assert_eq!(status, 404, "{path}");
        }
    }
}

#[tokio::test]
async fn subscribe_over_sse_and_resume() {
    let (_db, es) = open(weft_store::Backend::Sqlite).await;
    let api = Api::serve(es.clone()).await;
    for i in 0..3 {
        es.append(
            "order-1",
            weft_eventstore::ExpectedVersion::Any,
            vec![common::ev("A", i)],
        )
        .await
        .expect("append");
    }
    let writer = {
        let es = es.clone();
        tokio::spawn(async move {
            for i in 3..5 {
                es.append(
                    "order-1",
                    weft_eventstore::ExpectedVersion::Any,
                    vec![common::ev("B", i)],
                )
                .await
                .expect("append");
            }
        })
    };
    let got = api.sse("/v1/streams/order-1/subscribe", None, 5).await;
    writer.await.expect("writer");
    let ids: Vec<u64> = got.iter().map(|(id, _, _)| *id).collect();
    assert_eq!(ids, [1, 2, 3, 4, 5], "history then live");
    assert_eq!(got[3].1, "B");
    assert_eq!(got[4].2["data"]["n"], 4);
    // Resume: the browser sends the last id it saw.
    let resumed = api.sse("/v1/streams/order-1/subscribe", Some(3), 2).await;
    assert_eq!(
        resumed.iter().map(|(id, _, _)| *id).collect::<Vec<_>>(),
        [4, 5]
    );
    let filtered = api
        .sse("/v1/streams/$all/subscribe?type=B&after=0", None, 2)
        .await;
    assert_eq!(
        filtered.iter().map(|(id, _, _)| *id).collect::<Vec<_>>(),
        [4, 5]
    );
}
