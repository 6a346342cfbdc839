//! A registry served over real HTTP on an ephemeral port, on a fresh database of either
//! backend, and a small JSON client for it.

#![allow(dead_code)] // each test file uses a subset

use std::net::SocketAddr;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use weft_registry::Registry;
use weft_store::Backend;
use weft_store::testing::TestDb;

pub(crate) const BACKENDS: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

/// A registry process: its HTTP address and the database under it.
pub(crate) struct Api {
    pub(crate) addr: SocketAddr,
    pub(crate) registry: Registry,
    client: Client<HttpConnector, Full<Bytes>>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// An answer: status, content type, body (JSON when it parses, else a JSON string).
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) content_type: String,
    pub(crate) body: Value,
}

impl Answer {
    /// The Confluent `error_code` of an error answer (0 when there is none).
    pub(crate) fn code(&self) -> i64 {
        self.body["error_code"].as_i64().unwrap_or(0)
    }
}

impl Api {
    /// A registry on `db` (migrations applied), serving on 127.0.0.1:0.
    pub(crate) async fn start(db: &TestDb) -> Api {
        let store = db.open().await;
        let registry = Registry::open(store).await.expect("registry opens");
        Api::serve(registry).await
    }

    pub(crate) async fn serve(registry: Registry) -> Api {
        Api::serve_with_auth(registry, None).await
    }

    /// [`Api::serve`] behind an authentication (and authorisation) layer.
    pub(crate) async fn serve_with_auth(
        registry: Registry,
        auth: Option<weft_auth::http::AuthLayer>,
    ) -> Api {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(weft_registry::serve_with_auth(
            listener,
            registry.clone(),
            auth,
            async {
                let _ = stopped.await;
            },
        ));
        Api {
            addr,
            registry,
            client: Client::builder(TokioExecutor::new()).build_http(),
            stop: Some(stop),
            server: Some(server),
        }
    }

    /// Stops serving and closes the store.
    pub(crate) async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server");
        }
        self.registry.store().close().await;
    }

    pub(crate) async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, &[], None).await
    }

    pub(crate) async fn delete(&self, path: &str) -> Answer {
        self.send(Method::DELETE, path, &[], None).await
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> Answer {
        self.json(Method::POST, path, body).await
    }

    pub(crate) async fn put(&self, path: &str, body: Value) -> Answer {
        self.json(Method::PUT, path, body).await
    }

    async fn json(&self, method: Method, path: &str, body: Value) -> Answer {
        let bytes = serde_json::to_vec(&body).expect("encode");
        let ct = [("content-type", "application/vnd.schemaregistry.v1+json")];
        self.send(method, path, &ct, Some(bytes)).await
    }

    /// Any request; `headers` are (name, value).
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Answer {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{}{}", self.addr, path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .expect("request");
        let res = self.client.request(req).await.expect("http request");
        let status = res.status().as_u16();
        let content_type = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let bytes = res.into_body().collect().await.expect("body").to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Answer {
            status,
            content_type,
            body,
        }
    }
}

/// An Avro record schema text with `fields` (JSON field objects).
pub(crate) fn avro_record(name: &str, fields: &[Value]) -> String {
    serde_json::json!({ "type": "record", "name": name, "fields": fields }).to_string()
}

/// `{"name": n, "type": t}`.
pub(crate) fn field(name: &str, ty: &str) -> Value {
    serde_json::json!({ "name": name, "type": ty })
}

/// `{"name": n, "type": t, "default": d}`.
pub(crate) fn field_default(name: &str, ty: &str, default: Value) -> Value {
    serde_json::json!({ "name": name, "type": ty, "default": default })
}
