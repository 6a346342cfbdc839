//! Per-stream ACLs over real HTTP (EventStoreDB's `$r`/`$w`/`$d`/`$mr`/`$mw` as `stream`
//! ACLs), both backends: callers are HTTP Basic users from the SCRAM store, ACLs in the
//! shared `Authorizer`, a denied request answers 403 `forbidden` and writes nothing.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method as AxumMethod, Response};
use common::{BACKENDS, open};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use weft_auth::http::{
    AuthLayer, AuthOptions, Authorization, Check, HttpPolicy, StoreAuthenticator,
};
use weft_auth::sasl::scram::{ScramCredential, ScramMechanism};
use weft_auth::store::ScramStore;
use weft_auth::{
    AclBinding, Authorizer, AuthorizerConfig, Operation, Permission, Principal, ResourcePattern,
    ResourceType,
};
use weft_eventstore::EventStore;

/// `Authorization: Basic` values of `<user>:<user>-pw`.
const USERS: [(&str, &str); 4] = [
    ("alice", "Basic YWxpY2U6YWxpY2UtcHc="),
    ("bob", "Basic Ym9iOmJvYi1wdw=="),
    ("carol", "Basic Y2Fyb2w6Y2Fyb2wtcHc="),
    ("root", "Basic cm9vdDpyb290LXB3"),
];

fn basic(user: &str) -> &'static str {
    USERS
        .iter()
        .find(|(u, _)| *u == user)
        .map(|(_, b)| *b)
        .expect("known user")
}

/// The event store's routes have no route-level checks here: every decision under test is
/// the handlers' own.
struct NoRouteChecks;

impl HttpPolicy for NoRouteChecks {
    fn scope(&self, _: &AxumMethod, _: &str) -> Option<String> {
        None
    }
    fn checks(&self, _: &AxumMethod, _: &str) -> Vec<Check> {
        Vec::new()
    }
    fn denied(&self, _: &Principal, _: &Check) -> Response<Body> {
        Response::new(Body::empty())
    }
}

/// alice: the `order-` category (read, write, metadata) but not writing `order-locked`;
/// bob: reads `$all` and `order-1`, and may delete `order-1`; carol: nothing; root:
/// super-user.
fn acls() -> Vec<AclBinding> {
    use Operation as O;
    use Permission::{Allow, Deny};
    use ResourcePattern as R;
    use ResourceType::Stream as S;
    let acl = |pattern, who: &str, op, perm| AclBinding::new(pattern, who, op, perm);
    vec![
        acl(R::prefixed(S, "order-"), "User:alice", O::Read, Allow),
        acl(R::prefixed(S, "order-"), "User:alice", O::Write, Allow),
        acl(
            R::prefixed(S, "order-"),
            "User:alice",
            O::AlterConfigs,
            Allow,
        ),
        acl(R::literal(S, "order-locked"), "User:alice", O::Write, Deny),
        acl(R::literal(S, "$all"), "User:bob", O::Read, Allow),
        acl(R::literal(S, "order-1"), "User:bob", O::Read, Allow),
        acl(R::literal(S, "order-1"), "User:bob", O::Delete, Allow),
    ]
}

struct Api {
    addr: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Api {
    async fn start(es: EventStore) -> Api {
        let store = es.store().clone();
        weft_auth::store::migrate(&store)
            .await
            .expect("auth tables");
        let credentials = ScramStore::new(store);
        for (user, _) in USERS {
            let cred =
                ScramCredential::generate(ScramMechanism::Sha256, &format!("{user}-pw"), 4096)
                    .expect("credential");
            credentials
                .upsert(user, ScramMechanism::Sha256, &cred)
                .await
                .expect("user");
        }
        let authorizer = Authorizer::new(AuthorizerConfig {
            enabled: true,
            super_users: [Principal::user("root")].into_iter().collect(),
            allow_if_no_acls: false,
        });
        authorizer.add(acls());
        let layer = AuthLayer::new(
            Arc::new(StoreAuthenticator {
                jwt: None,
                credentials: Some(credentials),
            }),
            AuthOptions {
                basic: true,
                ..AuthOptions::default()
            },
        )
        .with_authorization(Authorization {
            authorizer: Arc::new(authorizer),
            policy: Arc::new(NoRouteChecks),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = weft_eventstore::http::router(es).layer(layer);
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        Api {
            addr,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Status and JSON body; SSE answers are not read past their status.
    async fn call(
        &self,
        who: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        let req = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr))
            .header("content-type", "application/json")
            .header("authorization", basic(who))
            .body(Full::new(body))
            .expect("request");
        let resp = self.client.request(req).await.expect("response");
        let status = resp.status().as_u16();
        let sse = resp
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        if sse {
            return (status, Value::Null);
        }
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}

fn events(n: usize) -> Value {
    let events: Vec<Value> = (0..n)
        .map(|i| json!({ "type": "Placed", "data": { "n": i } }))
        .collect();
    json!({ "events": events })
}

#[tokio::test]
async fn stream_acls_decide_each_route() {
    for backend in BACKENDS {
        eprintln!("--- backend {backend:?}");
        let (_db, es) = open(backend).await;
        let api = Api::start(es).await;
        for s in ["order-1", "order-locked", "invoice-1"] {
            let (status, body) = api
                .call(
                    "root",
                    Method::POST,
                    &format!("/v1/streams/{s}"),
                    Some(events(1)),
                )
                .await;
            assert_eq!(status, 201, "root appends to {s}: {body}");
        }
        let multi = |streams: &[&str]| {
            let appends: Vec<Value> = streams
                .iter()
                .map(|s| json!({ "stream": s, "events": events(1)["events"] }))
                .collect();
            Some(json!({ "appends": appends }))
        };
        let meta = Some(json!({ "max_count": 10 }));
        // (caller, method, path, body, status)
        let cases: Vec<(&str, Method, &str, Option<Value>, u16)> = vec![
            ("alice", Method::GET, "/v1/streams/order-1", None, 200),
            (
                "alice",
                Method::POST,
                "/v1/streams/order-2",
                Some(events(1)),
                201,
            ),
            (
                "alice",
                Method::GET,
                "/v1/streams/order-1/subscribe",
                None,
                200,
            ),
            // Another category, and a literal deny beating the prefixed allow.
            ("alice", Method::GET, "/v1/streams/invoice-1", None, 403),
            (
                "alice",
                Method::POST,
                "/v1/streams/invoice-1",
                Some(events(1)),
                403,
            ),
            (
                "alice",
                Method::POST,
                "/v1/streams/order-locked",
                Some(events(1)),
                403,
            ),
            ("alice", Method::GET, "/v1/streams/order-locked", None, 200),
            // A multi-stream append is all or nothing.
            (
                "alice",
                Method::POST,
                "/v1/streams",
                multi(&["order-3", "invoice-1"]),
                403,
            ),
            (
                "alice",
                Method::POST,
                "/v1/streams",
                multi(&["order-3", "order-4"]),
                201,
            ),
            // $all is its own resource (EventStoreDB: admins only by default).
            ("alice", Method::GET, "/v1/streams/$all", None, 403),
            (
                "alice",
                Method::GET,
                "/v1/streams/$all?prefix=order-",
                None,
                403,
            ),
            (
                "alice",
                Method::GET,
                "/v1/streams/$all/subscribe",
                None,
                403,
            ),
            ("bob", Method::GET, "/v1/streams/$all", None, 200),
            ("bob", Method::GET, "/v1/streams/$all/subscribe", None, 200),
            // Metadata: ALTER_CONFIGS implies DESCRIBE_CONFIGS ($mw, $mr).
            (
                "alice",
                Method::PUT,
                "/v1/streams/order-1/metadata",
                meta.clone(),
                204,
            ),
            (
                "alice",
                Method::GET,
                "/v1/streams/order-1/metadata",
                None,
                200,
            ),
            (
                "bob",
                Method::GET,
                "/v1/streams/order-1/metadata",
                None,
                403,
            ),
            (
                "bob",
                Method::PUT,
                "/v1/streams/order-1/metadata",
                meta,
                403,
            ),
            // Delete: $d. alice may write but not delete.
            ("alice", Method::DELETE, "/v1/streams/order-2", None, 403),
            ("bob", Method::DELETE, "/v1/streams/order-1", None, 204),
            ("carol", Method::GET, "/v1/streams/order-1", None, 403),
            (
                "carol",
                Method::POST,
                "/v1/streams/carol-1",
                Some(events(1)),
                403,
            ),
            ("root", Method::GET, "/v1/streams/invoice-1", None, 200),
        ];
        for (who, method, path, body, want) in cases {
            let m = method.clone();
            let (status, answer) = api.call(who, method, path, body).await;
            assert_eq!(status, want, "{who} {m} {path}: {answer}");
            if status == 403 {
                assert_eq!(answer["code"], "forbidden", "{answer}");
                assert!(
                    answer["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with(&format!("User:{who} is denied"))),
                    "{answer}"
                );
            }
        }
        // The refused appends wrote nothing: invoice-1 and order-locked hold root's event
        // only, order-3 (refused in the first multi-append) exactly one, carol-1 none.
        for (stream, n) in [("invoice-1", 1), ("order-locked", 1), ("order-3", 1)] {
            let (status, body) = api
                .call("root", Method::GET, &format!("/v1/streams/{stream}"), None)
                .await;
            assert_eq!(status, 200, "{stream}: {body}");
            assert_eq!(
                body["events"].as_array().map(Vec::len),
                Some(n),
                "{stream}: {body}"
            );
        }
        let (status, body) = api
            .call("root", Method::GET, "/v1/streams/carol-1", None)
            .await;
        assert_eq!(
            (status, &body["events"]),
            (200, &json!([])),
            "carol-1: {body}"
        );
    }
}
