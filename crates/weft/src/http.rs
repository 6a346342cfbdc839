//! The HTTP listener: health and readiness now; gateway, registry and dashboard routes are
//! merged into [`router`] as those crates land.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};

use crate::supervisor::Shutdown;

/// How long `/readyz` waits for one listener to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// What the HTTP handlers can see. Cheap to clone.
#[derive(Clone)]
pub(crate) struct AppState(Arc<Inner>);

struct Inner {
    /// Every enabled listener by name, as actually bound; `/readyz` connects to each.
    listeners: Vec<(&'static str, SocketAddr)>,
    data_dir: PathBuf,
    /// The storage engine; only ever in the state once it is open.
    #[allow(dead_code)] // read by routes that land with the gateway
    log: Arc<weft_log::Log>,
    shutdown: Shutdown,
}

impl AppState {
    pub(crate) fn new(
        listeners: Vec<(&'static str, SocketAddr)>,
        data_dir: PathBuf,
        log: Arc<weft_log::Log>,
        shutdown: Shutdown,
    ) -> AppState {
        AppState(Arc::new(Inner {
            listeners,
            data_dir,
            log,
            shutdown,
        }))
    }
}

/// All HTTP routes. Other crates' routers are merged here (`.merge(weft_gateway::router(…))`).
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .with_state(state)
}

/// Serves `router` on an already bound listener until shutdown is requested.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    mut shutdown: Shutdown,
) -> anyhow::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.requested().await })
        .await
        .context("http server stopped")
}

#[derive(Serialize)]
struct Status {
    status: &'static str,
}

async fn healthz() -> Json<Status> {
    Json(Status { status: "ok" })
}

#[derive(Serialize)]
struct Readiness {
    status: &'static str,
    /// Check name → `ok` or what went wrong.
    checks: BTreeMap<String, String>,
    /// Names of the failed checks, for scripts.
    failed: Vec<String>,
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let mut checks = BTreeMap::new();
    let shutting_down = state.0.shutdown.is_requested();
    checks.insert(
        "shutdown".to_owned(),
        if shutting_down {
            "shutting down".to_owned()
        } else {
            "ok".to_owned()
        },
    );
    for (name, addr) in &state.0.listeners {
        checks.insert(format!("listener:{name}"), check_connect(*addr).await);
    }
    // A stat can block on a sick disk: keep it off the reactor.
    let dir = state.0.data_dir.clone();
    let data = tokio::task::spawn_blocking(move || match std::fs::metadata(&dir) {
        Ok(m) if m.is_dir() => "ok".to_owned(),
        Ok(_) => format!("{} is not a directory", dir.display()),
        Err(e) => format!("{}: {e}", dir.display()),
    })
    .await
    .unwrap_or_else(|e| format!("data dir check failed: {e}"));
    checks.insert("data_dir".to_owned(), data);

    let failed: Vec<String> = checks
        .iter()
        .filter(|(_, v)| v.as_str() != "ok")
        .map(|(k, _)| k.clone())
        .collect();
    let (code, status) = if failed.is_empty() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    };
    (
        code,
        Json(Readiness {
            status,
            checks,
            failed,
        }),
    )
}

/// `ok` when `addr` accepts a TCP connection within [`CONNECT_TIMEOUT`], else why not.
async fn check_connect(addr: SocketAddr) -> String {
    let target = connectable(addr);
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await {
        Ok(Ok(_)) => "ok".to_owned(),
        Ok(Err(e)) => format!("connect {target}: {e}"),
        Err(_) => format!("connect {target}: timed out after {CONNECT_TIMEOUT:?}"),
    }
}

/// A listener bound to the unspecified address (`0.0.0.0`) is reached via loopback.
fn connectable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}

#[derive(Serialize)]
struct NotFound {
    error: &'static str,
    path: String,
}

async fn not_found(uri: Uri) -> Response {
    let body = NotFound {
        error: "not found",
        path: uri.path().to_owned(),
    };
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connectable_maps_unspecified_to_loopback() {
        let cases = [
            ("0.0.0.0:9", "127.0.0.1:9"),
            ("[::]:9", "[::1]:9"),
            ("10.1.2.3:9", "10.1.2.3:9"),
            ("127.0.0.1:9", "127.0.0.1:9"),
        ];
        for (input, expected) in cases {
            let addr: SocketAddr = input.parse().expect("valid");
            assert_eq!(connectable(addr).to_string(), expected, "{input}");
        }
    }

    #[tokio::test]
    async fn check_connect_reports_refused() {
        // Bind then drop: the port is (almost certainly) closed afterwards.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        assert_eq!(check_connect(addr).await, "ok");
        drop(listener);
        assert!(check_connect(addr).await.starts_with("connect 127.0.0.1:"));
    }
}
