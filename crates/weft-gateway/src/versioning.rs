//! API versions: everything lives under `/v1`; `/v2` routes can live beside it. A route or
//! a whole version can be deprecated: its responses then carry `Deprecation` (RFC 9745,
//! `@<unix seconds>`), `Sunset` (RFC 8594, an HTTP date) and `Link: <successor>;
//! rel="successor-version"`, and every call is counted per principal (logged, and served
//! at `GET /v1/deprecations`).

use std::collections::BTreeMap;
use std::sync::Mutex;

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Value, json};
use tracing::warn;
use utoipa::ToSchema;

use crate::Gateway;
use crate::problem::principal_of;

/// One deprecated route (an exact path, or a prefix ending in `/`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Deprecation {
    pub path: String,
    /// Since when (unix seconds).
    pub deprecated_at: i64,
    /// When it goes away (an HTTP date).
    pub sunset: String,
    /// The route that replaces it.
    pub successor: String,
}

/// The deprecated routes and who still calls them.
pub(crate) struct Deprecations {
    routes: Vec<Deprecation>,
    /// (path, principal) → calls.
    calls: Mutex<BTreeMap<(String, String), u64>>,
}

impl Default for Deprecations {
    fn default() -> Self {
        Deprecations {
            routes: vec![Deprecation {
                path: "/v1/info".into(),
                deprecated_at: 1_767_225_600, // 2026-01-01
                sunset: "Thu, 31 Dec 2026 23:59:59 GMT".into(),
                successor: "/v2/info".into(),
            }],
            calls: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Deprecations {
    fn find(&self, path: &str) -> Option<&Deprecation> {
        self.routes
            .iter()
            .find(|d| d.path == path || (d.path.ends_with('/') && path.starts_with(&d.path)))
    }
}

/// Adds the deprecation headers to responses of deprecated routes and counts the callers.
pub(crate) async fn deprecation_layer(
    State(gw): State<Gateway>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    let found = gw.0.deprecations.find(&path).cloned();
    let principal = principal_of(request.headers());
    let mut response = next.run(request).await;
    if let Some(d) = found {
        warn!(
            path,
            principal = principal.0,
            successor = d.successor,
            "deprecated route called"
        );
        if let Ok(mut calls) = gw.0.deprecations.calls.lock() {
            *calls.entry((d.path.clone(), principal.0)).or_insert(0) += 1;
        }
        let h = response.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&format!("@{}", d.deprecated_at)) {
            h.insert("deprecation", v);
        }
        if let Ok(v) = HeaderValue::from_str(&d.sunset) {
            h.insert("sunset", v);
        }
        if let Ok(v) =
            HeaderValue::from_str(&format!("<{}>; rel=\"successor-version\"", d.successor))
        {
            h.insert("link", v);
        }
    }
    response
}

pub(crate) fn v1_routes() -> Router<Gateway> {
    Router::new()
        .route("/info", get(info_v1))
        .route("/deprecations", get(deprecations))
}

pub(crate) fn v2_routes() -> Router<Gateway> {
    Router::new().route("/info", get(info_v2))
}

/// v1 of the gateway's self-description (deprecated in favour of `/v2/info`).
#[utoipa::path(get, path = "/v1/info", responses((status = 200, body = Object)))]
pub(crate) async fn info_v1() -> Json<Value> {
    Json(json!({"name": "weft-gateway", "version": env!("CARGO_PKG_VERSION"), "api_version": 1}))
}

/// v2: the version fields grouped, plus the features served.
#[utoipa::path(get, path = "/v2/info", responses((status = 200, body = Object)))]
pub(crate) async fn info_v2() -> Json<Value> {
    Json(json!({
        "name": "weft-gateway",
        "api": {"version": 2, "server_version": env!("CARGO_PKG_VERSION")},
        "features": ["rest", "sse", "websocket", "webhooks"],
    }))
}

#[derive(Serialize, ToSchema)]
pub struct DeprecationCalls {
    pub path: String,
    pub principal: String,
    pub calls: u64,
}

#[derive(Serialize, ToSchema)]
pub struct DeprecationReport {
    pub deprecated: Vec<Deprecation>,
    pub calls: Vec<DeprecationCalls>,
}

/// Deprecated routes and how often each principal still calls them.
#[utoipa::path(get, path = "/v1/deprecations", responses((status = 200, body = DeprecationReport)))]
pub(crate) async fn deprecations(State(gw): State<Gateway>) -> Json<DeprecationReport> {
    let d = &gw.0.deprecations;
    let calls = d
        .calls
        .lock()
        .map(|c| {
            c.iter()
                .map(|((path, principal), n)| DeprecationCalls {
                    path: path.clone(),
                    principal: principal.clone(),
                    calls: *n,
                })
                .collect()
        })
        .unwrap_or_default();
    Json(DeprecationReport {
        deprecated: d.routes.clone(),
        calls,
    })
}
