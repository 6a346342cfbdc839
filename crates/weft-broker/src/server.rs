//! The TCP side: accept loop, per-connection framing, shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, RequestHeader, RequestKind, ResponseHeader, ResponseKind,
};
use kafka_protocol::protocol::{Decodable, Encodable};
use std::future::Future;
use tokio::io::Interest;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::fetch_wire::Part;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::BrokerConfig;
use crate::error::{Error, Result};
use crate::handlers;
use crate::security::Listener;
use crate::security::sasl::{SaslConn, Verdict};
use crate::store::{self, ProducerIdAllocator};
use crate::topics::Topics;
use crate::versions;

/// Shared broker state.
pub(crate) struct Inner {
    pub(crate) config: BrokerConfig,
    pub(crate) log: Arc<weft_log::Log>,
    pub(crate) cluster_id: String,
    pub(crate) topics: Topics,
    pub(crate) producer_ids: std::sync::Mutex<ProducerIdAllocator>,
    pub(crate) fetch_sessions: std::sync::Mutex<crate::fetch_session::Sessions>,
    pub(crate) groups: handlers::groups::Groups,
}

/// An opened broker, ready to serve.
pub struct Broker {
    inner: Arc<Inner>,
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Runs a blocking closure off the reactor.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Task(e.to_string()))
}

impl Broker {
    /// Loads (or creates) the broker state in `config.state_dir`: cluster id, topics,
    /// producer-id allocator, idempotent-producer state rebuilt from snapshots and the log.
    pub async fn open(config: BrokerConfig, log: Arc<weft_log::Log>) -> Result<Broker> {
        let inner = blocking(move || -> Result<Inner> {
            std::fs::create_dir_all(&config.state_dir).map_err(|source| Error::Io {
                path: config.state_dir.clone(),
                source,
            })?;
            for dir in [config.state_dir.clone(), config.state_dir.join("producers")] {
                let removed = store::remove_stale_temp_files(&dir)?;
                if removed > 0 {
                    info!(dir = %dir.display(), removed, "removed temporary files of an interrupted write");
                }
            }
            let cluster_id = store::load_or_create_cluster_id(&config.state_dir)?;
            let producer_ids = ProducerIdAllocator::open(&config.state_dir)?;
            let topics = Topics::open(Arc::clone(&log), &config.state_dir, now_ms())?;
            info!(
                cluster_id,
                node_id = config.node_id,
                topics = topics.all().len(),
                "broker state loaded"
            );
            let sessions = crate::fetch_session::Sessions::new(config.fetch_session_cache_slots);
            let delay = config.group_initial_rebalance_delay.as_millis() as i64;
            let offsets_log = crate::group::offsets::internal_partition(&topics)?;
            let offsets = crate::group::offsets::Offsets::open(&config.state_dir, offsets_log)?;
            let groups = handlers::groups::Groups::open(offsets, delay)?;
            Ok(Inner {
                config,
                log,
                cluster_id,
                topics,
                producer_ids: std::sync::Mutex::new(producer_ids),
                fetch_sessions: std::sync::Mutex::new(sessions),
                groups,
            })
        })
        .await??;
        Ok(Broker {
            inner: Arc::new(inner),
        })
    }

    /// The cluster id kept in the state directory.
    pub fn cluster_id(&self) -> &str {
        &self.inner.cluster_id
    }

    /// Serves `listener` as a PLAINTEXT listener advertising the configured address until
    /// `shutdown` is true (or its sender is dropped), then closes connections and writes
    /// producer-state snapshots.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: watch::Receiver<bool>,
    ) -> Result<()> {
        let plain = Listener::plaintext(
            self.inner.config.advertised_host.clone(),
            self.inner.config.advertised_port,
        );
        self.serve_listeners(vec![(listener, plain)], shutdown)
            .await
    }

    /// Serves every listener (Kafka's listener map: each with its security protocol and
    /// advertised address) until `shutdown` is true (or its sender is dropped), then closes
    /// connections and writes producer-state snapshots.
    pub async fn serve_listeners(
        &self,
        listeners: Vec<(TcpListener, Listener)>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<()> {
        let inner = Arc::clone(&self.inner);
        // One accept loop per listener feeds the connection set here.
        let (accepted_tx, mut accepted) =
            mpsc::channel::<(TcpStream, SocketAddr, Arc<Listener>)>(64);
        let mut acceptors = JoinSet::new();
        for (listener, spec) in listeners {
            if let Ok(addr) = listener.local_addr() {
                info!(%addr, protocol = %spec.protocol, advertised = %format!("{}:{}", spec.advertised_host, spec.advertised_port), "kafka listener up");
            }
            acceptors.spawn(accept_loop(
                listener,
                Arc::new(spec),
                accepted_tx.clone(),
                shutdown.clone(),
            ));
        }
        drop(accepted_tx);
        let mut conns = JoinSet::new();
        let snapshots = tokio::spawn(snapshot_loop(Arc::clone(&inner), shutdown.clone()));
        let positions = tokio::spawn(positions_loop(Arc::clone(&inner), shutdown.clone()));
        let group_timer = tokio::spawn(handlers::groups::tick_loop(
            Arc::clone(&inner),
            shutdown.clone(),
        ));
        loop {
            if *shutdown.borrow() {
                break;
            }
            tokio::select! {
                next = accepted.recv() => match next {
                    Some((stream, peer, spec)) => {
                        conns.spawn(connection(Arc::clone(&inner), stream, peer, spec, shutdown.clone()));
                    }
                    None => break,
                },
                changed = shutdown.changed() => if changed.is_err() { break },
                Some(done) = conns.join_next(), if !conns.is_empty() => log_connection_end(done),
            }
        }
        acceptors.abort_all();
        drop(accepted);
        let grace = tokio::time::sleep(Duration::from_secs(5));
        tokio::pin!(grace);
        while !conns.is_empty() {
            tokio::select! {
                Some(done) = conns.join_next() => log_connection_end(done),
                _ = &mut grace => {
                    conns.abort_all();
                    while conns.join_next().await.is_some() {}
                }
            }
        }
        // The loop sees the same shutdown signal: wait for its current pass (a blocking
        // task that abort() would not stop) so it cannot race the final snapshot.
        group_timer.abort();
        positions.abort();
        // Membership changed by the last requests (after the ticker's final pass) is written
        // before the log closes; `persist` serialises with a pass still running.
        let i = Arc::clone(&inner);
        match blocking(move || i.groups.persist()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) | Err(e) => warn!(error = %e, "writing group membership at shutdown failed"),
        }
        if let Err(e) = snapshots.await {
            warn!(error = %e, "snapshot loop failed");
        }
        let expiration = inner.config.producer_id_expiration.as_millis() as i64;
        let i = Arc::clone(&inner);
        blocking(move || i.topics.snapshot_producers(now_ms(), expiration, true)).await?;
        info!("kafka listener stopped");
        Ok(())
    }
}

/// Accepts connections on one listener until shutdown.
async fn accept_loop(
    listener: TcpListener,
    spec: Arc<Listener>,
    accepted: mpsc::Sender<(TcpStream, SocketAddr, Arc<Listener>)>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    if accepted.send((stream, peer, Arc::clone(&spec))).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(error = %e, protocol = %spec.protocol, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}

fn log_connection_end(done: std::result::Result<(), tokio::task::JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        warn!(error = %e, "connection task panicked; connection closed");
    }
}

async fn snapshot_loop(inner: Arc<Inner>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(inner.config.snapshot_interval);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let i = Arc::clone(&inner);
        let expiration = i.config.producer_id_expiration.as_millis() as i64;
        let _ = blocking(move || i.topics.snapshot_producers(now_ms(), expiration, false)).await;
    }
}

/// Refreshes the partition gauges (size, start and end offsets) every 10 s.
async fn positions_loop(inner: Arc<Inner>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        for topic in inner.topics.all() {
            for h in &topic.partitions {
                h.stats().set_positions(&h.log);
            }
        }
    }
}

/// Why a connection is closed on a request.
pub(crate) struct Close(pub(crate) String);

async fn connection(
    inner: Arc<Inner>,
    stream: TcpStream,
    peer: SocketAddr,
    listener: Arc<Listener>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let _active = crate::stats::Occupancy::connection();
    debug!(%peer, protocol = %listener.protocol, "connection opened");
    if !listener.protocol.uses_tls() {
        let (rd, wr) = stream.into_split();
        serve_connection(&inner, rd, wr, peer, &listener, None, &mut shutdown).await;
        return;
    }
    let Some(tls) = &listener.tls else {
        warn!(%peer, protocol = %listener.protocol, "tls listener without a certificate; closing connection");
        return;
    };
    let accepted = tokio::select! {
        r = tls.accept(stream) => r,
        _ = shutdown.changed() => return,
    };
    match accepted {
        Ok((stream, identity)) => {
            // Mutual TLS: the certificate's subject is the principal on SSL listeners;
            // SASL_SSL authenticates with SASL regardless.
            let principal = identity
                .filter(|_| !listener.protocol.uses_sasl())
                .map(|id| id.principal());
            let (rd, wr) = tokio::io::split(stream);
            serve_connection(&inner, rd, wr, peer, &listener, principal, &mut shutdown).await;
        }
        Err(e) => {
            // A plaintext client, a bad certificate, a timeout: only this connection ends.
            info!(%peer, protocol = %listener.protocol, error = %e, "tls handshake failed; closing connection");
        }
    }
}

/// Serves one connection's requests over any transport (TCP, TLS).
async fn serve_connection<R, W>(
    inner: &Arc<Inner>,
    rd: R,
    wr: W,
    peer: SocketAddr,
    listener: &Arc<Listener>,
    principal: Option<weft_auth::Principal>,
    shutdown: &mut watch::Receiver<bool>,
) where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + SendFile + Unpin + Send + 'static,
{
    let mut rd = BufReader::with_capacity(16 * 1024, rd);
    // Responses leave in request order through one writer; a reply that waits (acks=-1
    // for its fsync) holds back only the responses after it, not the reading and handling
    // of the next requests. The channel bounds the replies in flight per connection.
    let (replies, queue) = mpsc::channel(MAX_IN_FLIGHT);
    let writer = tokio::spawn(write_replies(
        BufWriter::with_capacity(16 * 1024, wr),
        queue,
        peer,
    ));
    read_requests(
        inner, &mut rd, &replies, peer, listener, principal, shutdown,
    )
    .await;
    drop(replies);
    let _ = writer.await;
    linger(&mut rd).await;
}

/// Lingering close: the writer has sent every answer and shut its side; the peer may have
/// pipelined more bytes behind the request that ended the connection (a SASL client does).
/// Closing with those bytes unread makes the kernel answer with RST, which can destroy the
/// last answer still on its way to the peer (a refused login would then look like a lost
/// connection). So read and discard until the peer closes too, for at most a second and
/// 1 MiB.
async fn linger<R: AsyncRead + Unpin>(rd: &mut R) {
    let drain = async {
        let mut sink = [0u8; 8192];
        let mut left = 1usize << 20;
        while left > 0 {
            match rd.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

/// A transport that can send a segment file range: `sendfile(2)` on plain TCP, a read into
/// memory and a write elsewhere (TLS encrypts in user space).
pub(crate) trait SendFile {
    fn send_file(
        &mut self,
        region: &weft_log::FileRegion,
    ) -> impl Future<Output = std::io::Result<()>> + Send;
}

/// TLS: never handed file ranges (its Fetch responses are copied, see `fetch_reply`); if
/// one came, it would be read into memory and written through the stream.
impl<S: AsyncRead + AsyncWrite + Send> SendFile for tokio::io::WriteHalf<S> {
    fn send_file(
        &mut self,
        region: &weft_log::FileRegion,
    ) -> impl Future<Output = std::io::Result<()>> + Send {
        let r = region.clone();
        async move {
            let bytes = tokio::task::spawn_blocking(move || r.read_to_bytes())
                .await
                .map_err(std::io::Error::other)??;
            self.write_all(&bytes).await
        }
    }
}

impl SendFile for tokio::net::tcp::OwnedWriteHalf {
    fn send_file(
        &mut self,
        region: &weft_log::FileRegion,
    ) -> impl Future<Output = std::io::Result<()>> + Send {
        let stream: &TcpStream = AsRef::<TcpStream>::as_ref(&*self);
        send_file(stream, region)
    }
}

/// How long a connection stays open after answering a refused authentication.
const FAILED_AUTHENTICATION_DELAY: Duration = Duration::from_millis(100);

/// Replies a connection may have queued before it stops reading requests.
const MAX_IN_FLIGHT: usize = 16;

/// A response ready for the wire: one encoded frame, or (zero-copy Fetch) encoded bytes
/// and file ranges in order.
pub(crate) enum Wire {
    Frame(BytesMut),
    Parts(Vec<Part>),
}

type Outgoing = std::pin::Pin<Box<dyn Future<Output = std::result::Result<Wire, Close>> + Send>>;

/// A reply in a connection's queue, with what its metrics need.
struct Queued {
    api: &'static str,
    /// When the whole request frame had been read.
    read_at: Instant,
    /// When it entered the reply queue.
    queued_at: Instant,
    reply: Outgoing,
    /// The request's Produce/Fetch span (disabled when spans are off): the latency
    /// histograms are recorded inside it, so their OpenMetrics exemplars carry its trace.
    span: tracing::Span,
}

async fn read_requests<R: AsyncRead + Unpin + Send>(
    inner: &Arc<Inner>,
    rd: &mut BufReader<R>,
    replies: &mpsc::Sender<Queued>,
    peer: SocketAddr,
    listener: &Arc<Listener>,
    principal: Option<weft_auth::Principal>,
    shutdown: &mut watch::Receiver<bool>,
) {
    let idle = inner.config.connections_max_idle;
    let max = inner.config.socket_request_max_bytes;
    let mut session = crate::session::Session::anonymous(peer);
    if let Some(principal) = principal {
        session.principal = principal;
    }
    // A listener's own SASL settings win (weft serve's internal listener).
    let mut sasl = SaslConn::new(
        listener,
        listener.sasl.as_ref().unwrap_or(&inner.config.sasl),
    );
    loop {
        let len = tokio::select! {
            r = tokio::time::timeout(idle, rd.read_i32()) => match r {
                Err(_) => {
                    info!(%peer, idle_ms = idle.as_millis() as u64, "closing idle connection");
                    return;
                }
                Ok(Err(_)) => {
                    debug!(%peer, "connection closed by peer");
                    return;
                }
                Ok(Ok(n)) => n,
            },
            _ = shutdown.changed() => return,
        };
        if len < 0 || len as usize > max {
            warn!(%peer, len, max, "request frame size out of bounds; closing connection");
            return;
        }
        // After SaslHandshake v0 the client sends raw SASL tokens, which may be short.
        if len < 8 && !sasl.expects_raw() {
            warn!(%peer, len, "request frame shorter than a request header; closing connection");
            return;
        }
        let frame = match tokio::time::timeout(idle, read_frame(&mut *rd, len as usize)).await {
            Ok(Ok(frame)) if frame.len() == len as usize => frame,
            Ok(Ok(frame)) => {
                warn!(%peer, len, received = frame.len(), "connection closed in the middle of a request frame");
                return;
            }
            Ok(Err(e)) => {
                warn!(%peer, len, error = %e, "connection failed in the middle of a request frame");
                return;
            }
            Err(_) => {
                warn!(%peer, len, "request frame incomplete after the idle timeout; closing connection");
                return;
            }
        };
        let read_at = Instant::now();
        let frame = frame.freeze();
        let api = if sasl.expects_raw() {
            "SaslAuthenticate"
        } else {
            crate::stats::api_name(be_i16(&frame, 0))
        };
        // The SASL gate: handshake and authentication frames are answered here (they change
        // the session); other requests pass only when the session allows them.
        let (reply, close) = match sasl.on_frame(&frame, &mut session).await {
            Verdict::Pass => (None, None),
            Verdict::Reply(bytes) => (Some(bytes), None),
            Verdict::ReplyThenClose(bytes, reason) => (Some(bytes), Some(reason)),
            Verdict::Close(reason) => (None, Some(reason)),
        };
        let answered = reply.is_some();
        if let Some(bytes) = reply {
            let queued = Queued {
                api,
                read_at,
                queued_at: Instant::now(),
                reply: Box::pin(async move { Ok(Wire::Frame(bytes)) }),
                span: tracing::Span::none(),
            };
            if replies.send(queued).await.is_err() {
                return;
            }
        }
        if let Some(reason) = close {
            // The writer sends what is queued (the refusal) before it closes.
            warn!(%peer, reason, "closing connection");
            if answered {
                // Kafka's `connection.failed.authentication.delay.ms` (100 ms): the refusal
                // reaches the client well before the close (some clients drop a response
                // that arrives together with the FIN), and guessing passwords gets slower.
                tokio::time::sleep(FAILED_AUTHENTICATION_DELAY).await;
            }
            return;
        }
        if answered {
            continue;
        }
        match handle_frame(inner, &session, listener, frame).await {
            Ok(Some((reply, span))) => {
                let queued = Queued {
                    api,
                    read_at,
                    queued_at: Instant::now(),
                    reply,
                    span,
                };
                if replies.send(queued).await.is_err() {
                    return;
                }
            }
            Ok(None) => {}
            Err(Close(reason)) => {
                warn!(%peer, reason, "closing connection");
                return;
            }
        }
    }
}

/// Reads a request body of `len` bytes (fewer if the peer closes first). Memory grows with
/// the bytes that actually arrive, not with the length a peer claims: a prefix of 100 MiB
/// followed by nothing costs 64 KiB. Once the first 64 KiB have arrived the rest is reserved
/// at once, so a large produce is received into one buffer without re-copying (growing by
/// doubling copied up to the whole request again), and it is not zeroed first.
async fn read_frame<R: AsyncRead + Unpin>(rd: &mut R, len: usize) -> std::io::Result<BytesMut> {
    const FIRST: usize = 64 * 1024;
    let mut frame = BytesMut::with_capacity(len.min(FIRST));
    while frame.len() < len {
        if frame.len() == frame.capacity() {
            frame.reserve(len - frame.len());
        }
        let want = (len - frame.len()) as u64;
        if (&mut *rd).take(want).read_buf(&mut frame).await? == 0 {
            break;
        }
    }
    Ok(frame)
}

async fn write_replies<W: AsyncWrite + SendFile + Unpin + Send>(
    mut wr: BufWriter<W>,
    mut queue: mpsc::Receiver<Queued>,
    peer: SocketAddr,
) {
    while let Some(q) = queue.recv().await {
        let picked = Instant::now();
        q.span
            .in_scope(|| crate::stats::queue(q.api, picked - q.queued_at));
        let wire = match q.reply.await {
            Ok(wire) => wire,
            Err(Close(reason)) => {
                warn!(%peer, reason, "closing connection");
                break;
            }
        };
        let ready = Instant::now();
        // Processing: from the frame read to the response complete, without the time in the
        // queue (counted above).
        q.span.in_scope(|| {
            crate::stats::processing(
                q.api,
                (ready - q.read_at).saturating_sub(picked - q.queued_at),
            )
        });
        let sent = match wire {
            Wire::Frame(bytes) => wr.write_all(&bytes).await,
            Wire::Parts(parts) => write_parts(&mut wr, parts).await,
        };
        if let Err(e) = sent {
            debug!(%peer, error = %e, "peer went away before its response was written");
            return;
        }
        // Flush when nothing else is ready to go, so pipelined replies share a write.
        if queue.is_empty() && wr.flush().await.is_err() {
            debug!(%peer, "peer went away before its response was written");
            return;
        }
        q.span
            .in_scope(|| crate::stats::send(q.api, ready.elapsed()));
    }
    let _ = wr.flush().await;
    let _ = wr.shutdown().await;
}

/// Writes a zero-copy response: bytes through the buffer, file ranges with `sendfile(2)`
/// straight from the segment file to the socket (after flushing what is buffered).
async fn write_parts<W: AsyncWrite + SendFile + Unpin + Send>(
    wr: &mut BufWriter<W>,
    parts: Vec<Part>,
) -> std::io::Result<()> {
    for part in parts {
        match part {
            Part::Bytes(b) => wr.write_all(&b).await?,
            Part::File(region) => {
                wr.flush().await?;
                wr.get_mut().send_file(&region).await?;
            }
        }
    }
    Ok(())
}

/// Elsewhere than Linux: the range is read into memory and written.
#[cfg(not(target_os = "linux"))]
async fn send_file(stream: &TcpStream, region: &weft_log::FileRegion) -> std::io::Result<()> {
    let r = region.clone();
    let bytes = tokio::task::spawn_blocking(move || r.read_to_bytes())
        .await
        .map_err(std::io::Error::other)??;
    let mut at = 0;
    while at < bytes.len() {
        stream.writable().await?;
        match stream.try_write(&bytes[at..]) {
            Ok(n) => at += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sends `region` with `sendfile(2)`, driven by the socket's write readiness. A segment
/// file shorter than the region (it cannot shrink while the log holds it, but a disk can
/// fail) ends the connection: the response's length prefix has already been sent.
#[cfg(target_os = "linux")]
async fn send_file(stream: &TcpStream, region: &weft_log::FileRegion) -> std::io::Result<()> {
    let mut offset = region.position;
    let end = region.position + region.len as u64;
    while offset < end {
        stream.writable().await?;
        let want = usize::try_from(end - offset)
            .unwrap_or(usize::MAX)
            .min(1 << 30);
        let sent = stream.try_io(Interest::WRITABLE, || {
            rustix::fs::sendfile(stream, &*region.file, Some(&mut offset), want)
                .map_err(std::io::Error::from)
        });
        match sent {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "segment file shorter than the fetched range",
                ));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

/// Decodes one request frame and runs it; the reply is a future of the encoded response
/// (`None`: no response, as for Produce with acks=0).
pub(crate) async fn handle_frame(
    inner: &Arc<Inner>,
    session: &crate::session::Session,
    listener: &Listener,
    frame: Bytes,
) -> std::result::Result<Option<(Outgoing, tracing::Span)>, Close> {
    let (raw_key, raw_version) = (be_i16(&frame, 0), be_i16(&frame, 2));
    let decoded = match decode_frame(frame) {
        Ok(d) => d,
        Err(close) => {
            crate::stats::request(raw_key, raw_version, "closed");
            return Err(close);
        }
    };
    match decoded {
        Decoded::Immediate {
            api,
            version,
            correlation_id,
            response,
        } => {
            let error = match &response {
                ResponseKind::ApiVersions(r)
                    if r.error_code == kafka_protocol::ResponseError::UnsupportedVersion.code() =>
                {
                    "unsupported_version"
                }
                _ => "invalid_request",
            };
            crate::stats::request(raw_key, raw_version, error);
            let bytes = encode(api, version, correlation_id, &response).map(Wire::Frame);
            Ok(Some((
                Box::pin(async move { bytes }),
                tracing::Span::none(),
            )))
        }
        Decoded::Encoded(bytes) => {
            crate::stats::request(raw_key, raw_version, "unsupported_version");
            Ok(bytes.map(|b| {
                (
                    Box::pin(async move { Ok(Wire::Frame(b)) }) as Outgoing,
                    tracing::Span::none(),
                )
            }))
        }
        Decoded::Request {
            header,
            api,
            version,
            request,
        } => {
            let correlation_id = header.correlation_id;
            let (reply, span) = crate::trace::handle(inner, session, &header, request).await;
            let outcome = if matches!(reply, Some(handlers::Reply::Close(_))) {
                "closed"
            } else {
                "none"
            };
            crate::stats::request(raw_key, raw_version, outcome);
            let outgoing: Outgoing = match reply {
                None => return Ok(None),
                Some(handlers::Reply::Now(mut response)) => {
                    advertise_listener(inner, listener, &mut response);
                    let bytes = encode(api, version, correlation_id, &response).map(Wire::Frame);
                    Box::pin(async move { bytes })
                }
                Some(handlers::Reply::Close(close)) => return Err(close),
                Some(handlers::Reply::Later(pending)) => Box::pin(async move {
                    encode(api, version, correlation_id, &pending.await).map(Wire::Frame)
                }),
                Some(handlers::Reply::Fetch(response, regions)) => Box::pin(fetch_reply(
                    version,
                    correlation_id,
                    *response,
                    regions,
                    // TLS encrypts in user space: sendfile(2) cannot carry it, the records
                    // are copied (as Kafka does on SSL listeners).
                    !listener.protocol.uses_tls(),
                )),
            };
            Ok(Some((outgoing, span)))
        }
    }
}

/// A Fetch response whose records are file ranges: sent zero-copy, or (if the codec's
/// layout cannot be cut, which its tests rule out for the served versions) read into
/// memory and encoded as usual.
async fn fetch_reply(
    version: i16,
    correlation_id: i32,
    response: kafka_protocol::messages::FetchResponse,
    regions: Vec<crate::fetch_wire::Region>,
    zero_copy: bool,
) -> std::result::Result<Wire, Close> {
    let cut = if zero_copy {
        crate::fetch_wire::encode(version, correlation_id, response.clone(), &regions)
    } else {
        Err("the transport cannot send files".to_owned())
    };
    match cut {
        Ok(parts) => Ok(Wire::Parts(parts)),
        Err(reason) => {
            if zero_copy {
                warn!(
                    reason,
                    version, "zero-copy fetch encoding refused; copying the records"
                );
            }
            let filled = blocking(move || crate::fetch_wire::fill(response, &regions))
                .await
                .map_err(|e| Close(format!("fetch task failed: {e}")))?
                .map_err(|e| Close(format!("cannot read fetched records: {e}")))?;
            encode(
                ApiKey::Fetch,
                version,
                correlation_id,
                &ResponseKind::Fetch(filled),
            )
            .map(Wire::Frame)
        }
    }
}

/// Tells a client this broker's address on the listener it connected through: handlers
/// answer with the configured advertised address, which a listener with another one
/// replaces in Metadata, DescribeCluster and FindCoordinator (Kafka's per-listener
/// advertised addresses).
fn advertise_listener(inner: &Inner, listener: &Listener, response: &mut ResponseKind) {
    let (host, port) = (
        &listener.advertised_host,
        i32::from(listener.advertised_port),
    );
    if *host == inner.config.advertised_host && port == i32::from(inner.config.advertised_port) {
        return;
    }
    let host = kafka_protocol::protocol::StrBytes::from_string(host.clone());
    rewrite_advertised(inner.config.node_id, host, port, response);
}

/// Puts this node's address on `listener` into a Metadata, DescribeCluster or
/// FindCoordinator answer (whatever its version).
fn rewrite_advertised(
    node: i32,
    host: kafka_protocol::protocol::StrBytes,
    port: i32,
    response: &mut ResponseKind,
) {
    match response {
        ResponseKind::Metadata(r) => {
            for b in r.brokers.iter_mut().filter(|b| b.node_id.0 == node) {
                b.host = host.clone();
                b.port = port;
            }
        }
        ResponseKind::DescribeCluster(r) => {
            for b in r.brokers.iter_mut().filter(|b| b.broker_id.0 == node) {
                b.host = host.clone();
                b.port = port;
            }
        }
        ResponseKind::FindCoordinator(r) => {
            // v0–v3 answer in the top-level fields; v4+ only in `coordinators` (where the
            // top-level ones must stay at their defaults, or the encoder refuses them).
            if r.coordinators.is_empty() && r.node_id.0 == node {
                r.host = host.clone();
                r.port = port;
            }
            for c in r.coordinators.iter_mut().filter(|c| c.node_id.0 == node) {
                c.host = host.clone();
                c.port = port;
            }
        }
        _ => {}
    }
}

/// A request frame, decoded.
pub(crate) enum Decoded {
    /// Answered without the broker's state (ApiVersions newer than ours or undecodable).
    Immediate {
        api: ApiKey,
        version: i16,
        correlation_id: i32,
        response: ResponseKind,
    },
    /// Answered with bytes encoded outside the codec (`None`: no answer, acks=0).
    Encoded(Option<BytesMut>),
    Request {
        header: RequestHeader,
        api: ApiKey,
        version: i16,
        request: RequestKind,
    },
}

/// Decodes a request frame (without its length prefix). Pure: no I/O, no broker state; the
/// fuzz target drives it.
pub(crate) fn decode_frame(frame: Bytes) -> std::result::Result<Decoded, Close> {
    if frame.len() < 8 {
        return Err(Close(format!(
            "request of {} bytes is shorter than a request header",
            frame.len()
        )));
    }
    let api_key = be_i16(&frame, 0);
    let version = be_i16(&frame, 2);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    if api_key == ApiKey::ApiVersions as i16
        && let Some((_, _, max)) = versions::range(api_key)
        && version > max
    {
        // KIP-511: answer in the v0 format so the client can pick a version we speak.
        debug!(
            version,
            "apiversions request newer than ours; answering in v0"
        );
        let resp = handlers::api_versions_response(
            kafka_protocol::ResponseError::UnsupportedVersion.code(),
        );
        return Ok(Decoded::Immediate {
            api: ApiKey::ApiVersions,
            version: 0,
            correlation_id,
            response: ResponseKind::ApiVersions(resp),
        });
    }
    let Some((api, min, max)) = versions::range(api_key) else {
        return Err(Close(format!(
            "unsupported api key {api_key} (version {version})"
        )));
    };
    if version < min || version > max {
        return Err(Close(format!(
            "{api:?} version {version} is outside the advertised range {min}..={max}"
        )));
    }
    let mut body = frame;
    if versions::refused(api, version) {
        // Only Produce v0–v2 (message formats v0/v1): every partition gets
        // UNSUPPORTED_VERSION in the v0–v2 layout, which the codec cannot encode.
        let header = RequestHeader::decode(&mut body, api.request_header_version(version))
            .map_err(|e| Close(format!("malformed {api:?} v{version} request header: {e}")))?;
        let req = crate::legacy_produce::parse(body).map_err(Close)?;
        debug!(
            version,
            acks = req.acks,
            "produce v0-v2 (message format v0/v1) refused with UNSUPPORTED_VERSION"
        );
        let reply = (req.acks != 0).then(|| {
            crate::legacy_produce::encode_error(
                version,
                header.correlation_id,
                &req,
                kafka_protocol::ResponseError::UnsupportedVersion.code(),
            )
        });
        return Ok(Decoded::Encoded(reply));
    }
    let header = RequestHeader::decode(&mut body, api.request_header_version(version))
        .map_err(|e| Close(format!("malformed {api:?} v{version} request header: {e}")))?;
    match crate::guard::decode_request(api, body, version) {
        Ok(request) => Ok(Decoded::Request {
            header,
            api,
            version,
            request,
        }),
        Err(e) if api == ApiKey::ApiVersions => {
            // Kafka answers an undecodable ApiVersions with INVALID_REQUEST.
            debug!(error = %e, "undecodable apiversions request");
            let resp = ApiVersionsResponse::default()
                .with_error_code(kafka_protocol::ResponseError::InvalidRequest.code());
            Ok(Decoded::Immediate {
                api,
                version,
                correlation_id: header.correlation_id,
                response: ResponseKind::ApiVersions(resp),
            })
        }
        Err(e) => Err(Close(format!("malformed {api:?} v{version} request: {e}"))),
    }
}

/// Fuzzing entry point: decodes one request frame (without its length prefix) the way a
/// connection does, and encodes the immediate answers. See `FINDINGS.md` for the one known
/// way input still takes the process down (the codec's unbounded array preallocation).
#[doc(hidden)]
pub fn decode_request_frame(frame: &[u8]) -> std::result::Result<(), String> {
    match decode_frame(Bytes::copy_from_slice(frame)).map_err(|Close(reason)| reason)? {
        Decoded::Immediate {
            api,
            version,
            correlation_id,
            response,
        } => encode(api, version, correlation_id, &response)
            .map(|_| ())
            .map_err(|Close(r)| r),
        Decoded::Encoded(_) | Decoded::Request { .. } => Ok(()),
    }
}

pub(crate) fn encode(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    response: &ResponseKind,
) -> std::result::Result<BytesMut, Close> {
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, api.response_header_version(version))
        .and_then(|_| response.encode(&mut buf, version))
        .map_err(|e| Close(format!("cannot encode {api:?} v{version} response: {e}")))?;
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::find_coordinator_response::Coordinator;
    use kafka_protocol::messages::{ApiKey, BrokerId, FindCoordinatorResponse, ResponseKind};
    use kafka_protocol::protocol::StrBytes;

    use super::{encode, rewrite_advertised};

    /// A listener's address goes where each FindCoordinator version carries it, and the
    /// answer still encodes at that version (v4+ refuse top-level host/port).
    #[test]
    fn find_coordinator_answers_carry_the_listener_address_at_every_version() {
        let host = || StrBytes::from_static_str("10.0.0.7");
        for version in 0..=6 {
            let mut r = FindCoordinatorResponse::default();
            if version < 4 {
                r.node_id = BrokerId(0);
                r.host = StrBytes::from_static_str("127.0.0.1");
                r.port = 9092;
            } else {
                r.coordinators.push(
                    Coordinator::default()
                        .with_key(StrBytes::from_static_str("g"))
                        .with_node_id(BrokerId(0))
                        .with_host(StrBytes::from_static_str("127.0.0.1"))
                        .with_port(9092),
                );
            }
            let mut response = ResponseKind::FindCoordinator(r);
            rewrite_advertised(0, host(), 9094, &mut response);
            let ResponseKind::FindCoordinator(r) = &response else {
                unreachable!()
            };
            if version < 4 {
                assert_eq!((r.host.as_str(), r.port), ("10.0.0.7", 9094), "v{version}");
            } else {
                let c = &r.coordinators[0];
                assert_eq!((c.host.as_str(), c.port), ("10.0.0.7", 9094), "v{version}");
                assert_eq!((r.host.as_str(), r.port), ("", 0), "v{version}");
            }
            assert!(
                encode(ApiKey::FindCoordinator, version, 1, &response).is_ok(),
                "v{version} does not encode"
            );
        }
    }
}
