//! The HTTP listener: health and readiness, consumer-group lag (`/v1/groups`, from the
//! `weft-lag` monitor); gateway, registry and dashboard routes are merged into [`router`] as
//! those crates land.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::{Path, State};
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

/// Serves `router` on an already bound listener until shutdown is requested. Handlers see
/// the peer address (`ConnectInfo<SocketAddr>`: ACL host checks and the internal
/// credential's loopback check read it). Event streams are written without hyper's
/// per-connection buffers (see [`crate::http_conn`]); everything else is hyper's.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    mut shutdown: Shutdown,
) -> anyhow::Result<()> {
    crate::http_conn::serve(listener, router, async move { shutdown.requested().await })
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

/// `/v1/groups` and `/v1/groups/{id}`: what the lag monitor's last round saw. The monitor
/// samples on its own schedule; these handlers only read its latest state.
pub(crate) fn groups_router(lag: weft_lag::Lag) -> Router {
    Router::new()
        .route("/v1/groups", get(list_groups))
        .route("/v1/groups/{id}", get(describe_group))
        .with_state(lag)
}

/// A problem body: a stable machine-readable `code` and a sentence for people.
#[derive(Serialize)]
struct Problem {
    code: &'static str,
    message: String,
}

fn problem(status: StatusCode, code: &'static str, message: String) -> Response {
    (status, Json(Problem { code, message })).into_response()
}

#[derive(Serialize)]
struct Sampling {
    /// When the last round was taken (ms since the epoch); null before the first.
    sampled_at_ms: Option<i64>,
    interval_ms: u128,
    window: usize,
}

impl Sampling {
    fn of(lag: &weft_lag::Lag) -> Sampling {
        let config = lag.config();
        Sampling {
            sampled_at_ms: lag.sampled_at_ms(),
            interval_ms: config.interval.as_millis(),
            window: config.window,
        }
    }
}

#[derive(Serialize)]
struct GroupSummary {
    group: String,
    state: String,
    protocol_type: String,
    protocol: String,
    members: usize,
    total_lag: i64,
    status: &'static str,
}

impl From<&weft_lag::GroupView> for GroupSummary {
    fn from(g: &weft_lag::GroupView) -> Self {
        GroupSummary {
            group: g.group.clone(),
            state: g.state.clone(),
            protocol_type: g.protocol_type.clone(),
            protocol: g.protocol.clone(),
            members: g.members,
            total_lag: g.total_lag,
            status: g.status.as_str(),
        }
    }
}

#[derive(Serialize)]
struct GroupList {
    #[serde(flatten)]
    sampling: Sampling,
    groups: Vec<GroupSummary>,
}

#[derive(Serialize)]
struct PartitionLag {
    topic: String,
    partition: i32,
    committed_offset: i64,
    log_end_offset: i64,
    lag: i64,
    /// Age of the oldest unconsumed record; null when its timestamp could not be read.
    lag_seconds: Option<f64>,
    status: &'static str,
}

#[derive(Serialize)]
struct GroupDetail {
    #[serde(flatten)]
    sampling: Sampling,
    #[serde(flatten)]
    summary: GroupSummary,
    partitions: Vec<PartitionLag>,
}

async fn list_groups(State(lag): State<weft_lag::Lag>) -> Json<GroupList> {
    let groups = lag.groups().iter().map(GroupSummary::from).collect();
    Json(GroupList {
        sampling: Sampling::of(&lag),
        groups,
    })
}

async fn describe_group(State(lag): State<weft_lag::Lag>, Path(id): Path<String>) -> Response {
    let Some(g) = lag.group(&id) else {
        if lag.sampled_at_ms().is_none() {
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "lag_not_sampled",
                "the lag monitor has not completed its first round yet; retry shortly".to_owned(),
            );
        }
        return problem(
            StatusCode::NOT_FOUND,
            "group_not_found",
            format!(
                "consumer group {id:?} does not exist (not listed by the cluster at the last sample)"
            ),
        );
    };
    let partitions = g
        .partitions
        .iter()
        .map(|p| PartitionLag {
            topic: p.topic.clone(),
            partition: p.partition,
            committed_offset: p.committed,
            log_end_offset: p.log_end,
            lag: p.lag,
            // Milliseconds as fractional seconds.
            lag_seconds: p.lag_ms.map(|ms| ms as f64 / 1000.0),
            status: p.status.as_str(),
        })
        .collect();
    Json(GroupDetail {
        sampling: Sampling::of(&lag),
        summary: GroupSummary::from(&g),
        partitions,
    })
    .into_response()
}

/// `/metrics` (when metrics are on) and the `/ui` dashboard merged into `router`, with
/// weft-observe's request middleware (metrics, server span) around all of it.
pub(crate) fn observe(
    router: Router,
    observability: &crate::logging::Observability,
    lag: weft_lag::Lag,
    auth: Option<weft_auth::http::AuthLayer>,
) -> Router {
    let groups: weft_observe::ui::GroupSource = Arc::new(move || {
        // With partitions: the summaries of `groups()` leave them out.
        lag.groups()
            .iter()
            .filter_map(|g| lag.group(&g.group))
            .map(|g| group_row(&g))
            .collect()
    });
    let dashboard = weft_observe::ui::Dashboard {
        metrics: observability.metrics.clone(),
        groups,
        interval: Duration::from_millis(observability.config.ui_interval_ms),
    };
    let mut router = router.merge(weft_observe::ui::router(dashboard));
    if let Some(metrics) = &observability.metrics {
        router = router.merge(weft_observe::http::metrics_router(metrics.clone()));
    }
    // `[security.http]` authentication (http_auth.rs) over every route, the dashboard and
    // /metrics included; inside the observe layer so refusals are counted and traced.
    if let Some(auth) = auth {
        router = router.layer(auth);
    }
    router.layer(axum::middleware::from_fn(weft_observe::http::observe))
}

/// A lag-monitor group as the dashboard shows it.
fn group_row(g: &weft_lag::GroupView) -> weft_observe::ui::GroupRow {
    let mut log_end_by_topic = BTreeMap::new();
    for p in &g.partitions {
        *log_end_by_topic.entry(p.topic.clone()).or_insert(0) += p.log_end;
    }
    weft_observe::ui::GroupRow {
        group: g.group.clone(),
        status: g.status.as_str().to_owned(),
        members: g.members,
        lag_records: g.total_lag,
        lag_seconds: g
            .partitions
            .iter()
            .filter_map(|p| p.lag_ms)
            .max()
            .map(|ms| ms as f64 / 1000.0),
        partitions: g.partitions.len(),
        log_end_by_topic,
    }
}

// HTTPS (`[security.http] tls = true`, certificate from `[security.tls]`).

/// Most TLS handshakes in progress at once on one listener; more connections wait in the
/// kernel's backlog until one finishes (each is bounded by `weft_tls::HANDSHAKE_TIMEOUT`).
const MAX_HANDSHAKES: usize = 256;

/// TLS for the HTTP and registry listeners. With TLS on, `weft serve`'s own registry clients
/// (the gateway, the event store, the outbox) reach the registry through a plain HTTP listener
/// bound to an ephemeral loopback port instead, so they need no certificate trust of their
/// own. The same loopback listener exists with `require_auth` on and TLS off: the internal
/// bearer credential is accepted from loopback peers only, and `registry_listen` may bind a
/// non-loopback address (its peers would then not be loopback, even on this host).
pub(crate) struct Https {
    tls: Option<weft_tls::Tls>,
    registry_internal: Option<(TcpListener, SocketAddr)>,
}

/// The plain loopback registry listener of `weft serve`'s own clients.
async fn internal_registry_listener() -> anyhow::Result<(TcpListener, SocketAddr)> {
    let internal = crate::serve::bind(
        "internal registry",
        SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0),
    )
    .await?;
    let addr = internal
        .local_addr()
        .context("internal registry listener has no address")?;
    Ok((internal, addr))
}

impl Https {
    /// Off unless `[security.http] tls`; then `[security.tls]` must name a loadable certificate.
    pub(crate) async fn from_config(security: &weft_auth::SecurityConfig) -> anyhow::Result<Https> {
        if !security.http.tls {
            let registry_internal = if security.http.require_auth {
                Some(internal_registry_listener().await?)
            } else {
                None
            };
            return Ok(Https {
                tls: None,
                registry_internal,
            });
        }
        let section = security.tls.as_ref().context(
            "[security.http] tls = true needs a [security.tls] table with cert_file and key_file",
        )?;
        // axum serves HTTP/1.1 only: say so in ALPN rather than let a client guess.
        let tls = weft_tls::Tls::with_alpn(section, vec![b"http/1.1".to_vec()])
            .context("cannot set up HTTPS")?;
        Ok(Https {
            tls: Some(tls),
            registry_internal: Some(internal_registry_listener().await?),
        })
    }

    /// The TLS handle for the HTTP listener, if HTTPS is on.
    pub(crate) fn tls(&self) -> Option<weft_tls::Tls> {
        self.tls.clone()
    }

    /// Where `weft serve`'s own clients reach the registry whose public listener is `public`.
    pub(crate) fn registry_client_addr(&self, public: SocketAddr) -> SocketAddr {
        match &self.registry_internal {
            Some((_, internal)) => *internal,
            None => connectable(public),
        }
    }
}

/// Serves `router` on `listener` until shutdown: over TLS when `tls` is given, else as
/// [`serve`] does.
pub(crate) async fn serve_with(
    listener: TcpListener,
    router: Router,
    tls: Option<weft_tls::Tls>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    match tls {
        None => serve(listener, router, shutdown).await,
        Some(tls) => serve_tls(listener, router, tls, shutdown)
            .await
            .context("https server stopped"),
    }
}

/// Serves the schema registry's `router` (`weft_registry::http::router…`) on its public
/// listener, over TLS when `https` says so, plus the loopback listener for `weft serve`'s own
/// clients; until shutdown. Handlers see the peer address (`ConnectInfo<SocketAddr>`).
pub(crate) async fn serve_registry(
    listener: TcpListener,
    router: Router,
    https: Https,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let plain = |listener: TcpListener, router: Router, mut shutdown: Shutdown| async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { shutdown.requested().await })
        .await
    };
    match (https.tls, https.registry_internal) {
        (Some(tls), Some((internal, _))) => {
            tokio::try_join!(
                serve_tls(listener, router.clone(), tls, shutdown.clone()),
                plain(internal, router, shutdown),
            )?;
            Ok(())
        }
        (None, Some((internal, _))) => {
            tokio::try_join!(
                plain(listener, router.clone(), shutdown.clone()),
                plain(internal, router, shutdown),
            )?;
            Ok(())
        }
        _ => plain(listener, router, shutdown).await,
    }
    .context("schema registry stopped")
}

/// axum's serve loop over TLS connections: handshakes run in their own tasks (a slow or
/// silent client holds up nobody), and a failed one is logged and dropped. Handlers see the
/// peer address (`ConnectInfo<SocketAddr>`) and, under mutual TLS, the verified client
/// certificate's [`weft_tls::PeerIdentity`] as a request extension (its `principal()` is
/// `User:<CN>`).
async fn serve_tls(
    listener: TcpListener,
    router: Router,
    tls: weft_tls::Tls,
    mut shutdown: Shutdown,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    let (tx, rx) = tokio::sync::mpsc::channel(MAX_HANDSHAKES);
    let accepting = tokio::spawn(accept_tls(listener, tls, tx));
    let listener = TlsListener {
        incoming: rx,
        local,
        accepting,
    };
    let router = router.layer(axum::middleware::from_fn(tls_peer_extensions));
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<TlsPeer>(),
    )
    .with_graceful_shutdown(async move { shutdown.requested().await })
    .await
}

/// Who is at the other end of a TLS connection.
#[derive(Debug, Clone)]
struct TlsPeer {
    addr: SocketAddr,
    /// The verified client certificate's subject, under mutual TLS.
    identity: Option<weft_tls::PeerIdentity>,
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>>
    for TlsPeer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> TlsPeer {
        stream.remote_addr().clone()
    }
}

/// Puts what the connection knows into each request: `ConnectInfo<SocketAddr>` (as on the
/// plain listeners: the ACL host check reads it) and the client's `PeerIdentity`, if any.
async fn tls_peer_extensions(
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<TlsPeer>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(peer.addr));
    if let Some(identity) = peer.identity {
        // What `[security.http]` authentication reads (weft-auth knows nothing of TLS).
        request
            .extensions_mut()
            .insert(weft_auth::http::ClientCertificate(identity.principal()));
        request.extensions_mut().insert(identity);
    }
    next.run(request).await
}

/// Connections whose TLS handshake completed, for axum's serve loop.
struct TlsListener {
    incoming: tokio::sync::mpsc::Receiver<(weft_tls::TlsStream<TcpStream>, TlsPeer)>,
    local: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = weft_tls::TlsStream<TcpStream>;
    type Addr = TlsPeer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.incoming.recv().await {
            Some(conn) => conn,
            // The accept task only stops once this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<TlsPeer> {
        Ok(TlsPeer {
            addr: self.local,
            identity: None,
        })
    }
}

/// The next connection on `listener` (`what` names it in the log). A failed accept (out of
/// file descriptors and the like) is logged and retried after a pause instead of spinning.
pub(crate) async fn accept(listener: &TcpListener, what: &str) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(error) => {
                tracing::warn!(%error, "{what} accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Accepts TCP connections and hands each one, once its handshake is done, to `tx`; stops
/// when the receiving side is gone.
async fn accept_tls(
    listener: TcpListener,
    tls: weft_tls::Tls,
    tx: tokio::sync::mpsc::Sender<(weft_tls::TlsStream<TcpStream>, TlsPeer)>,
) {
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&handshakes).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            () = tx.closed() => return,
        };
        let (tcp, peer) = tokio::select! {
            accepted = accept(&listener, "https") => accepted,
            () = tx.closed() => return,
        };
        let tls = tls.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tls.accept(tcp).await {
                Ok((stream, identity)) => {
                    let peer = TlsPeer {
                        addr: peer,
                        identity,
                    };
                    // Refused only once the server is shutting down.
                    let _ = tx.send((stream, peer)).await;
                }
                Err(weft_tls::Error::Handshake(error))
                    if error.kind() == std::io::ErrorKind::UnexpectedEof =>
                {
                    // Connect-and-close probes (`/readyz`, load balancers): not worth a line.
                    tracing::debug!(%peer, %error, "tls handshake: peer closed");
                }
                Err(error) => tracing::info!(%peer, %error, "tls handshake failed"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Under mutual TLS a handler sees the client certificate's identity and the peer
    /// address; curl (OpenSSL) is the client. Without a certificate there is no answer.
    #[tokio::test]
    async fn https_handlers_see_the_client_certificate_identity() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = weft_tls::dev::write_dev_certs(dir.path(), &["127.0.0.1".to_owned()], "carol")
            .expect("dev certs");
        let section = weft_auth::config::TlsSection {
            cert_file: Some(files.server_cert.clone()),
            key_file: Some(files.server_key.clone()),
            client_ca_file: Some(files.ca_cert.clone()),
            client_auth: Some("requested".to_owned()),
        };
        let tls = weft_tls::Tls::from_config(&section).expect("tls");
        let router = Router::new().route(
            "/whoami",
            get(
                |identity: Option<axum::Extension<weft_tls::PeerIdentity>>,
                 axum::extract::ConnectInfo(addr): axum::extract::ConnectInfo<SocketAddr>| async move {
                    let who = identity.map_or("anonymous".to_owned(), |i| i.principal().to_string());
                    format!("{who} from {}", addr.ip())
                },
            ),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let sup = crate::supervisor::Supervisor::new();
        let server = tokio::spawn(serve_tls(listener, router, tls, sup.shutdown()));

        let curl = move |client: bool| {
            let files = files.clone();
            tokio::task::spawn_blocking(move || {
                let mut cmd = std::process::Command::new("curl");
                cmd.args(["--silent", "--show-error", "--max-time", "60", "--cacert"])
                    .arg(&files.ca_cert);
                if client {
                    cmd.arg("--cert").arg(&files.client_cert);
                    cmd.arg("--key").arg(&files.client_key);
                }
                let out = cmd
                    .arg(format!("https://{addr}/whoami"))
                    .output()
                    .expect("curl");
                String::from_utf8_lossy(&out.stdout).into_owned()
            })
        };
        assert_eq!(curl(true).await.expect("curl"), "User:carol from 127.0.0.1");
        assert_eq!(curl(false).await.expect("curl"), "anonymous from 127.0.0.1");
        server.abort();
    }

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

    async fn body(response: Response) -> (StatusCode, serde_json::Value) {
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, serde_json::from_slice(&body).expect("json"))
    }

    fn round(time_ms: i64) -> weft_lag::Round {
        weft_lag::Round {
            time_ms,
            groups: vec![weft_lag::GroupObservation {
                group: "g".into(),
                state: "Empty".into(),
                protocol_type: "consumer".into(),
                protocol: String::new(),
                members: 0,
                partitions: Some(vec![weft_lag::PartitionObservation {
                    topic: "t".into(),
                    partition: 0,
                    committed: 3,
                    log_end: 10,
                    oldest_unconsumed_ms: Some(time_ms - 1_500),
                    commit_time_ms: None,
                }]),
            }],
        }
    }

    #[tokio::test]
    async fn group_routes_answer_from_the_monitor() {
        let lag = weft_lag::Lag::new(weft_lag::Config::default());
        let unknown = || describe_group(State(lag.clone()), Path("nobody".to_owned()));
        let (code, json) = body(unknown().await).await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(json["code"], "lag_not_sampled");

        lag.observe(round(1_000_000));
        let (code, json) = body(unknown().await).await;
        assert_eq!(code, StatusCode::NOT_FOUND);
        assert_eq!(json["code"], "group_not_found");
        assert!(
            json["message"]
                .as_str()
                .expect("message")
                .contains("nobody")
        );

        let Json(list) = list_groups(State(lag.clone())).await;
        let list = serde_json::to_value(list).expect("json");
        assert_eq!(list["sampled_at_ms"], 1_000_000);
        assert_eq!(list["groups"][0]["group"], "g");
        assert_eq!(list["groups"][0]["total_lag"], 7);
        assert_eq!(list["groups"][0]["status"], "OK");

        let response = describe_group(State(lag.clone()), Path("g".to_owned())).await;
        let (code, json) = body(response).await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(json["state"], "Empty");
        assert_eq!(json["members"], 0);
        let p = &json["partitions"][0];
        assert_eq!(
            (
                &p["topic"],
                &p["partition"],
                &p["committed_offset"],
                &p["log_end_offset"]
            ),
            (&"t".into(), &0.into(), &3.into(), &10.into())
        );
        assert_eq!(p["lag"], 7);
        assert_eq!(p["lag_seconds"], 1.5);
        assert_eq!(p["status"], "OK");
    }
}
