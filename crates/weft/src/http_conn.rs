//! The plain HTTP listener's connections: an accept loop of our own in front of hyper.
//!
//! A connection whose first request asks for an event stream (`GET …/events`: the gateway's
//! SSE streams, the dashboard's) has that request answered here, by a small HTTP/1.1
//! response writer, and everything else — every other request, and the connection's later
//! requests — by hyper, exactly as `axum::serve` would. An SSE connection is long-lived and
//! mostly idle, and hyper keeps a read buffer and a write buffer of 8 KiB or more per
//! connection for its whole life; 10,000 idle streams paid ~16 KB each for them (issue 7's
//! memory target). Here an idle stream holds its socket, the response body and nothing else:
//! the request head is read into a buffer that is dropped once parsed, and each body chunk
//! is written with one vectored write of the chunk-size line, the data and the CRLF.
//!
//! Anything this path does not fully understand — a head that is not complete within
//! [`MAX_HEAD`], that httparse refuses, a request with a body or an `Upgrade` — goes to
//! hyper with the bytes already read, so hyper gives the errors it always gave.

use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, Uri, Version};
use bytes::{Buf, Bytes};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::Service;

/// A first request head longer than this goes to hyper (which allows far more).
const MAX_HEAD: usize = 16 * 1024;
/// Headers a fast-path request may have; more goes to hyper.
const MAX_HEADERS: usize = 64;
/// A response body chunk that cannot be written for this long means a client that stopped
/// reading: the connection is closed (hyper would wait for ever; the stream's own engine
/// has already ended it as a slow consumer by then).
const STALLED_WRITE: Duration = Duration::from_secs(120);
/// Bytes a client may send while its stream is being written (a pipelined request);
/// beyond that the connection is closed.
const MAX_PIPELINED: usize = 16 * 1024;

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting, asks
/// every connection to finish (hyper's graceful shutdown; streams end themselves on the
/// gateway's shutdown) and waits for them. Handlers see `ConnectInfo<SocketAddr>`.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()>,
) -> io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = crate::http::accept(&listener, "http") => accepted,
        };
        tokio::spawn(connection(tcp, peer, router.clone(), stop_rx.clone()));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(stop_rx);
    // Every connection holds a receiver until it is done.
    stop_tx.closed().await;
    Ok(())
}

async fn connection(
    mut tcp: TcpStream,
    peer: SocketAddr,
    router: Router,
    mut stop: watch::Receiver<bool>,
) {
    let read = match Box::pin(first_request(&mut tcp, peer, &router, &mut stop)).await {
        Next::Close => return,
        Next::Hyper(read) => read,
    };
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(peer));
        router.clone().call(request)
    });
    let io = TokioIo::new(Prefixed { read, io: tcp });
    // Boxed: a stream's connection never gets here and should not carry hyper's state.
    let mut conn = Box::pin(
        hyper::server::conn::http1::Builder::new()
            .serve_connection(io, service)
            .with_upgrades(),
    );
    let mut stopping = false;
    loop {
        if !stopping && *stop.borrow_and_update() {
            stopping = true;
            conn.as_mut().graceful_shutdown();
        }
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    tracing::trace!(%error, "http connection");
                }
                return;
            }
            changed = stop.changed(), if !stopping => {
                if changed.is_err() {
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// What happens to a connection after its first request.
enum Next {
    Close,
    /// hyper serves the rest, starting with these bytes already read.
    Hyper(Bytes),
}

/// The first request's head, parsed.
enum Head {
    /// Not complete yet.
    Partial,
    /// Not for this path: hyper reads it again.
    Hyper,
    /// A stream request, `len` bytes long.
    Stream {
        request: Box<Request<Body>>,
        len: usize,
        keep_alive: bool,
        http10: bool,
    },
}

/// Reads the first request. A stream request is answered here, and hyper gets the
/// connection afterwards if it stays open; any other request goes to hyper as read.
async fn first_request(
    tcp: &mut TcpStream,
    peer: SocketAddr,
    router: &Router,
    stop: &mut watch::Receiver<bool>,
) -> Next {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        // No buffer is held while the client is silent.
        tokio::select! {
            ready = tcp.readable() => if ready.is_err() {
                return Next::Close;
            },
            _ = stop.changed() => {
                if buf.is_empty() {
                    return Next::Close;
                }
                // Mid-head at shutdown: hyper answers it and closes.
                return Next::Hyper(Bytes::from(buf));
            }
        }
        buf.reserve(if buf.is_empty() { 1024 } else { buf.len() });
        match tcp.try_read_buf(&mut buf) {
            Ok(0) if buf.is_empty() => return Next::Close,
            // EOF inside a head: hyper reports it as it always did.
            Ok(0) => return Next::Hyper(Bytes::from(buf)),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(_) => return Next::Close,
        }
        match parse_head(&buf, peer) {
            Head::Partial if buf.len() < MAX_HEAD => continue,
            Head::Partial | Head::Hyper => return Next::Hyper(Bytes::from(buf)),
            Head::Stream {
                request,
                len,
                keep_alive,
                http10,
            } => {
                let mut rest = buf.split_off(len);
                drop(buf);
                let response = match Box::pin(router.clone().call(*request)).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                return match respond(tcp, response, keep_alive, http10, &mut rest).await {
                    Ok(true) => Next::Hyper(Bytes::from(rest)),
                    Ok(false) | Err(_) => {
                        let _ = tcp.shutdown().await;
                        Next::Close
                    }
                };
            }
        }
    }
}

/// Parses `buf` as a request head; a complete `GET …/events` without a body becomes a
/// request for the router.
fn parse_head(buf: &[u8], peer: SocketAddr) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Head::Partial,
        Err(_) => return Head::Hyper,
    };
    let (Some("GET"), Some(path), Some(minor)) = (parsed.method, parsed.path, parsed.version)
    else {
        return Head::Hyper;
    };
    if !path
        .split('?')
        .next()
        .is_some_and(|p| p.ends_with("/events"))
    {
        return Head::Hyper;
    }
    let Ok(uri) = path.parse::<Uri>() else {
        return Head::Hyper;
    };
    let mut map = HeaderMap::with_capacity(parsed.headers.len());
    let mut keep_alive = minor == 1;
    for h in parsed.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) else {
            return Head::Hyper;
        };
        if name == axum::http::header::CONTENT_LENGTH && h.value != b"0"
            || name == axum::http::header::TRANSFER_ENCODING
            || name == axum::http::header::UPGRADE
        {
            return Head::Hyper;
        }
        if name == axum::http::header::CONNECTION {
            let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
            if v.split(',').any(|t| t.trim() == "close") {
                keep_alive = false;
            }
        }
        map.append(name, value);
    }
    let mut request = Request::new(Body::empty());
    *request.method_mut() = Method::GET;
    *request.uri_mut() = uri;
    *request.version_mut() = if minor == 1 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    *request.headers_mut() = map;
    request.extensions_mut().insert(ConnectInfo(peer));
    Head::Stream {
        request: Box::new(request),
        len,
        keep_alive,
        http10: minor == 0,
    }
}

/// How a response body is delimited on the wire.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length,
    Chunked,
    /// HTTP/1.0: the body ends when the connection does.
    Close,
}

/// Writes `response` as HTTP/1.1. `Ok(true)`: the connection stays open for the next
/// request (`rest` holds what the client sent meanwhile).
async fn respond(
    tcp: &mut TcpStream,
    response: Response<Body>,
    keep_alive: bool,
    http10: bool,
    rest: &mut Vec<u8>,
) -> io::Result<bool> {
    let (parts, body) = response.into_parts();
    let known = parts
        .headers
        .contains_key(axum::http::header::CONTENT_LENGTH);
    let exact = axum::body::HttpBody::size_hint(&body).exact();
    let framing = if known || exact.is_some() {
        Framing::Length
    } else if !http10 {
        Framing::Chunked
    } else {
        Framing::Close
    };
    let closes_itself = parts
        .headers
        .get(axum::http::header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("close"));
    let keep_alive = keep_alive && framing != Framing::Close && !closes_itself;
    let head = encode_head(&parts, framing, exact.filter(|_| !known), keep_alive);
    let _ = tcp.set_nodelay(true);
    write_stalling(tcp, Bytes::from(head)).await?;
    let mut body = body;
    loop {
        let frame = tokio::select! {
            biased;
            frame = body.frame() => frame,
            ready = tcp.readable() => {
                ready?;
                if !client_still_there(tcp, rest)? {
                    return Ok(false);
                }
                continue;
            }
        };
        match frame {
            None => break,
            // A body that fails ends the connection without its terminating chunk, so the
            // client sees a cut response (as hyper does).
            Some(Err(_)) => return Ok(false),
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                if data.is_empty() {
                    continue;
                }
                if framing == Framing::Chunked {
                    // The chunk-size line on the stack: no allocation per chunk.
                    let mut size = [0u8; 18];
                    let n = {
                        let mut rest = &mut size[..];
                        write!(rest, "{:x}\r\n", data.len())?;
                        18 - rest.len()
                    };
                    let chunk = (&size[..n]).chain(data).chain(&b"\r\n"[..]);
                    write_stalling(tcp, chunk).await?;
                } else {
                    write_stalling(tcp, data).await?;
                }
            }
        }
    }
    if framing == Framing::Chunked {
        write_stalling(tcp, Bytes::from_static(b"0\r\n\r\n")).await?;
    }
    Ok(keep_alive)
}

/// Reads what the client sent while its response is written: `false` once it is gone (or
/// sent more than a pipelined request's worth).
fn client_still_there(tcp: &mut TcpStream, rest: &mut Vec<u8>) -> io::Result<bool> {
    let mut chunk = [0u8; 512];
    match tcp.try_read(&mut chunk) {
        Ok(0) => Ok(false),
        Ok(n) => {
            rest.extend_from_slice(&chunk[..n]);
            Ok(rest.len() <= MAX_PIPELINED)
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(true),
        Err(e) => Err(e),
    }
}

/// Writes all of `buf` (vectored), giving up after [`STALLED_WRITE`] without progress.
async fn write_stalling(tcp: &mut TcpStream, mut buf: impl Buf) -> io::Result<()> {
    match tokio::time::timeout(STALLED_WRITE, tcp.write_all_buf(&mut buf)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client stopped reading its stream",
        )),
    }
}

/// The status line and headers, with the framing and connection headers this writer
/// uses and a `date` (as hyper adds one).
fn encode_head(
    parts: &axum::http::response::Parts,
    framing: Framing,
    length: Option<u64>,
    keep_alive: bool,
) -> Vec<u8> {
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(parts.status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(
        parts
            .status
            .canonical_reason()
            .unwrap_or("<none>")
            .as_bytes(),
    );
    head.extend_from_slice(b"\r\n");
    let mut field = |name: &[u8], value: &[u8]| {
        head.extend_from_slice(name);
        head.extend_from_slice(b": ");
        head.extend_from_slice(value);
        head.extend_from_slice(b"\r\n");
    };
    for (name, value) in &parts.headers {
        // Framing is this writer's, not the handler's.
        if name == axum::http::header::TRANSFER_ENCODING
            || name == axum::http::header::CONNECTION && !keep_alive
        {
            continue;
        }
        field(name.as_str().as_bytes(), value.as_bytes());
    }
    match (framing, length) {
        (Framing::Length, Some(n)) => field(b"content-length", n.to_string().as_bytes()),
        (Framing::Chunked, _) => field(b"transfer-encoding", b"chunked"),
        _ => {}
    }
    if !keep_alive {
        field(b"connection", b"close");
    }
    if !parts.headers.contains_key(axum::http::header::DATE) {
        field(
            b"date",
            httpdate::fmt_http_date(SystemTime::now()).as_bytes(),
        );
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// A connection whose first bytes were already read: they are read again first.
struct Prefixed {
    read: Bytes,
    io: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.read.is_empty() {
            let n = self.read.len().min(buf.remaining());
            buf.put_slice(&self.read[..n]);
            self.read.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::AsyncReadExt;
    use tokio::sync::mpsc;

    /// Sets the flag when dropped: the stream's body is gone.
    struct Dropped(Arc<AtomicBool>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    struct Fixture {
        addr: SocketAddr,
        /// Sends the open stream's chunks.
        chunks: mpsc::Sender<mpsc::Receiver<Bytes>>,
        stream_dropped: Arc<AtomicBool>,
        stop: tokio::sync::oneshot::Sender<()>,
        server: tokio::task::JoinHandle<io::Result<()>>,
    }

    async fn fixture() -> Fixture {
        let (chunks, streams) = mpsc::channel::<mpsc::Receiver<Bytes>>(4);
        let streams = Arc::new(tokio::sync::Mutex::new(streams));
        let stream_dropped = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stream_dropped);
        let router = Router::new()
            .route(
                "/live/events",
                get(move || {
                    let streams = Arc::clone(&streams);
                    let guard = Dropped(Arc::clone(&flag));
                    async move {
                        let rx = streams.lock().await.recv().await.expect("a stream");
                        let body = futures_stream(rx, guard);
                        (
                            [("content-type", "text/event-stream")],
                            Body::from_stream(body),
                        )
                    }
                }),
            )
            .route("/fin/events", get(|| async { "finite" }))
            .route(
                "/peer/events",
                get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
            )
            .route("/healthz", get(|| async { "ok" }));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, router, async move {
            let _ = stopped.await;
        }));
        Fixture {
            addr,
            chunks,
            stream_dropped,
            stop,
            server,
        }
    }

    fn futures_stream(
        rx: mpsc::Receiver<Bytes>,
        guard: Dropped,
    ) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> + Send {
        futures_util::stream::unfold((rx, guard), |(mut rx, guard)| async move {
            let chunk = rx.recv().await?;
            Some((Ok(chunk), (rx, guard)))
        })
    }

    /// Reads until `needle` has arrived (or the peer closed); returns everything read.
    async fn read_until(tcp: &mut TcpStream, got: &mut Vec<u8>, needle: &[u8]) {
        while !got.windows(needle.len()).any(|w| w == needle) {
            let mut buf = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
                .await
                .expect("no answer in 10 s")
                .expect("read");
            assert!(
                n > 0,
                "closed before {:?}: {}",
                String::from_utf8_lossy(needle),
                String::from_utf8_lossy(got)
            );
            got.extend_from_slice(&buf[..n]);
        }
    }

    /// Connects and sends `request`.
    /// Asserts that what a client read starts with `prefix` (a status line), showing it if not.
    fn assert_starts(got: &[u8], prefix: &[u8]) {
        assert!(got.starts_with(prefix), "{}", String::from_utf8_lossy(got));
    }

    async fn send(addr: SocketAddr, request: &[u8]) -> TcpStream {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.write_all(request).await.expect("write");
        tcp
    }

    /// Sends a request for `/live/events` and hands its handler a source of chunks.
    async fn open_stream(f: &Fixture, request: &[u8]) -> (TcpStream, mpsc::Sender<Bytes>) {
        let tcp = send(f.addr, request).await;
        let (tx, rx) = mpsc::channel(4);
        f.chunks.send(rx).await.expect("stream");
        (tcp, tx)
    }

    /// Stops the server and checks that it returns.
    async fn stop(f: Fixture) {
        let _ = f.stop.send(());
        returns(f.server).await;
    }

    /// Checks that `serve` returns (within 10 s) without an error.
    async fn returns(server: tokio::task::JoinHandle<io::Result<()>>) {
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("serve did not return")
            .expect("join")
            .expect("serve");
    }

    /// A stream request is answered by this module's writer: chunked, every chunk as sent,
    /// the terminating chunk at the end, and the connection then goes on with hyper
    /// (the next request on it is answered, as a kept-alive connection should be).
    #[tokio::test]
    async fn a_stream_is_chunked_and_the_connection_goes_on_with_hyper() {
        let f = fixture().await;
        let (mut tcp, tx) = open_stream(
            &f,
            b"GET /live/events?x=1 HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n",
        )
        .await;
        let mut got = Vec::new();
        read_until(&mut tcp, &mut got, b"\r\n\r\n").await;
        let head = String::from_utf8_lossy(&got).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
        assert!(head.contains("transfer-encoding: chunked\r\n"), "{head}");
        assert!(
            head.contains("content-type: text/event-stream\r\n"),
            "{head}"
        );
        assert!(head.contains("date: "), "{head}");
        assert!(!head.contains("connection: close"), "{head}");
        got.clear();
        tx.send(Bytes::from_static(b"data: one\n\n"))
            .await
            .expect("send");
        read_until(&mut tcp, &mut got, b"data: one\n\n\r\n").await;
        assert_eq!(got, b"b\r\ndata: one\n\n\r\n");
        got.clear();
        let big = vec![b'x'; 70_000];
        tx.send(Bytes::from(big.clone())).await.expect("send");
        drop(tx);
        read_until(&mut tcp, &mut got, b"0\r\n\r\n").await;
        let mut want = b"11170\r\n".to_vec();
        want.extend_from_slice(&big);
        want.extend_from_slice(b"\r\n0\r\n\r\n");
        assert_eq!(got, want);
        // The same connection, now hyper's.
        got.clear();
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .expect("write");
        read_until(&mut tcp, &mut got, b"\r\n\r\nok").await;
        assert_starts(&got, b"HTTP/1.1 200 OK\r\n");
        stop(f).await;
    }

    /// A client that goes away ends its stream: the body is dropped (the gateway's
    /// engine notices it as `client_gone`), without anything to write.
    #[tokio::test]
    async fn a_client_that_hangs_up_drops_its_stream() {
        let f = fixture().await;
        let (mut tcp, tx) = open_stream(&f, b"GET /live/events HTTP/1.1\r\nHost: t\r\n\r\n").await;
        let mut got = Vec::new();
        read_until(&mut tcp, &mut got, b"\r\n\r\n").await;
        assert!(!f.stream_dropped.load(Ordering::SeqCst));
        drop(tcp);
        for _ in 0..200 {
            if f.stream_dropped.load(Ordering::SeqCst) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(
            f.stream_dropped.load(Ordering::SeqCst),
            "the stream outlived its client"
        );
        assert!(tx.is_closed(), "the body still reads its source");
        stop(f).await;
    }

    /// HTTP/1.0 has no chunks: the body runs to the end of the connection. A finite
    /// response has its length; `Connection: close` is honoured; the handler sees the peer.
    #[tokio::test]
    async fn http_1_0_connection_close_and_lengths() {
        let f = fixture().await;
        let (mut tcp, tx) = open_stream(&f, b"GET /live/events HTTP/1.0\r\n\r\n").await;
        tx.send(Bytes::from_static(b"data: a\n\n"))
            .await
            .expect("send");
        drop(tx);
        let mut got = Vec::new();
        tcp.read_to_end(&mut got).await.expect("read");
        let text = String::from_utf8_lossy(&got).to_string();
        assert!(
            text.to_ascii_lowercase().contains("connection: close\r\n"),
            "{text}"
        );
        assert!(
            !text.to_ascii_lowercase().contains("transfer-encoding"),
            "{text}"
        );
        assert!(text.ends_with("\r\n\r\ndata: a\n\n"), "{text}");

        let mut tcp = TcpStream::connect(f.addr).await.expect("connect");
        let me = tcp.local_addr().expect("addr");
        tcp.write_all(b"GET /peer/events HTTP/1.1\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut got = Vec::new();
        tcp.read_to_end(&mut got).await.expect("read");
        let text = String::from_utf8_lossy(&got).to_string();
        let body = me.to_string();
        assert!(
            text.to_ascii_lowercase()
                .contains(&format!("content-length: {}\r\n", body.len())),
            "{text}"
        );
        assert!(
            text.to_ascii_lowercase().contains("connection: close\r\n"),
            "{text}"
        );
        assert!(text.ends_with(&format!("\r\n\r\n{body}")), "{text}");
        stop(f).await;
    }

    /// What this path does not take goes to hyper with the bytes already read: a head
    /// split over several writes, a request with a body, garbage (hyper's 400), and a
    /// head larger than this path reads.
    #[tokio::test]
    async fn everything_else_is_hypers() {
        let f = fixture().await;
        // Split head, not a stream: hyper answers.
        let mut tcp = send(f.addr, b"GET /heal").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        tcp.write_all(b"thz HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .expect("write");
        let mut got = Vec::new();
        read_until(&mut tcp, &mut got, b"\r\n\r\nok").await;
        // A POST with a body to a stream path: hyper's router answers 405.
        let mut tcp = send(
            f.addr,
            b"POST /fin/events HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi",
        )
        .await;
        let mut got = Vec::new();
        read_until(&mut tcp, &mut got, b"\r\n\r\n").await;
        assert_starts(&got, b"HTTP/1.1 405");
        // Garbage: hyper's 400, and the connection closes.
        let mut tcp = send(f.addr, b"\x00\x01garbage\r\n\r\n").await;
        let mut got = Vec::new();
        tcp.read_to_end(&mut got).await.expect("read");
        assert_starts(&got, b"HTTP/1.1 400");
        // A 20 KiB header on a stream path: hyper reads it and answers (finite route).
        let mut req = b"GET /fin/events HTTP/1.1\r\nHost: t\r\nX-Big: ".to_vec();
        req.extend(std::iter::repeat_n(b'a', 20 * 1024));
        req.extend_from_slice(b"\r\n\r\n");
        let mut tcp = send(f.addr, &req).await;
        let mut got = Vec::new();
        read_until(&mut tcp, &mut got, b"finite").await;
        assert_starts(&got, b"HTTP/1.1 200");
        // The server is still up and takes streams.
        let mut tcp = send(f.addr, b"GET /fin/events HTTP/1.1\r\nHost: t\r\n\r\n").await;
        let mut got = Vec::new();
        read_until(&mut tcp, &mut got, b"finite").await;
        stop(f).await;
    }

    /// Shutdown stops accepting and waits for open connections: an idle one is closed, a
    /// stream finishes first.
    #[tokio::test]
    async fn shutdown_waits_for_streams_and_closes_idle_connections() {
        let f = fixture().await;
        let mut idle = TcpStream::connect(f.addr).await.expect("connect");
        let (mut streaming, tx) =
            open_stream(&f, b"GET /live/events HTTP/1.1\r\nHost: t\r\n\r\n").await;
        let mut got = Vec::new();
        read_until(&mut streaming, &mut got, b"\r\n\r\n").await;
        let _ = f.stop.send(());
        let mut rest = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(10), idle.read_to_end(&mut rest))
            .await
            .expect("the idle connection was not closed")
            .expect("read");
        assert_eq!(n, 0);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!f.server.is_finished(), "serve returned with a stream open");
        tx.send(Bytes::from_static(b"last")).await.expect("send");
        drop(tx);
        read_until(&mut streaming, &mut got, b"0\r\n\r\n").await;
        returns(f.server).await;
    }
}
