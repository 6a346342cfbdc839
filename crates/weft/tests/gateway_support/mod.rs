//! Shared helpers of the gateway tests (`tests/gateway_*.rs`): a `weft serve` started with
//! `WEFT_GATEWAY_*` settings, a tiny blocking HTTP/1.1 client, an SSE reader over a raw
//! socket (so a test can also *not* read, to be a slow consumer) and topic set-up through
//! the `weft topic` CLI. Timeouts are safety limits against hangs, never assertions.

#![allow(dead_code)] // each gateway test binary uses a different subset

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::{self, SAFETY};

/// A running `weft serve` with gateway settings from the environment.
pub(crate) struct Gw {
    child: Child,
    pub(crate) http: SocketAddr,
    pub(crate) kafka: SocketAddr,
    pub(crate) registry: SocketAddr,
    pub(crate) dir: PathBuf,
    pub(crate) lines: mpsc::Receiver<String>,
}

impl Gw {
    /// `weft serve` in `dir` (data in `dir/data`) with `env` as `WEFT_GATEWAY_<NAME>`
    /// values; `kafka` pins the Kafka port (for restarts keeping the same address) or 0.
    pub(crate) fn start(dir: &Path, env: &[(&str, &str)], kafka_port: u16) -> Gw {
        let mut cmd = common::weft(dir);
        cmd.args(["serve", "--data-dir", "data", "--log-format", "json"])
            .args([
                "--http-listen",
                "127.0.0.1:0",
                "--registry-listen",
                "127.0.0.1:0",
            ])
            .args(["--kafka-listen", &format!("127.0.0.1:{kafka_port}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(format!("WEFT_GATEWAY_{k}"), v);
        }
        let mut child = cmd.spawn().expect("spawn weft serve");
        let lines = common::forward_lines(child.stderr.take().expect("stderr"));
        let deadline = Instant::now() + SAFETY;
        let mut seen = Vec::new();
        loop {
            match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.contains(r#""message":"ready""#) => {
                    let http = common::json_field(&line, "http_addr")
                        .expect("http_addr")
                        .parse()
                        .expect("http addr");
                    let kafka = common::json_field(&line, "kafka_addr")
                        .expect("kafka_addr")
                        .parse()
                        .expect("kafka addr");
                    let registry = common::json_field(&line, "registry_addr")
                        .expect("registry_addr")
                        .parse()
                        .expect("registry addr");
                    return Gw {
                        child,
                        http,
                        kafka,
                        registry,
                        dir: dir.to_owned(),
                        lines,
                    };
                }
                Ok(line) => seen.push(line),
                Err(e) => {
                    let _ = child.kill();
                    panic!("no ready line ({e}); stderr:\n{}", seen.join("\n"));
                }
            }
        }
    }

    /// SIGTERM, then waits for the exit.
    pub(crate) fn stop(mut self) -> std::process::ExitStatus {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        common::wait_with_limit(&mut self.child, "weft serve")
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `weft topic create NAME --partitions N [--config k=v…]` against this server.
    pub(crate) fn create_topic(&self, name: &str, partitions: u32, configs: &[&str]) {
        let mut cmd = common::weft(&self.dir);
        cmd.args([
            "topic",
            "create",
            name,
            "--partitions",
            &partitions.to_string(),
        ])
        .args(["--bootstrap", &self.kafka.to_string()]);
        for c in configs {
            cmd.args(["--config", c]);
        }
        let out = cmd.output().expect("weft topic create");
        assert!(
            out.status.success(),
            "topic create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub(crate) fn get(&self, path: &str) -> Resp {
        request(self.http, "GET", path, &[], None)
    }

    pub(crate) fn post(&self, path: &str, body: &serde_json::Value) -> Resp {
        request(
            self.http,
            "POST",
            path,
            &[("content-type", "application/json")],
            Some(body.to_string().as_bytes()),
        )
    }

    /// Produces JSON values (key, value, partition) through the REST API; returns offsets.
    pub(crate) fn produce(
        &self,
        topic: &str,
        records: &[(Option<&str>, serde_json::Value, Option<i32>)],
    ) -> Vec<(i64, i64)> {
        let records: Vec<serde_json::Value> = records
            .iter()
            .map(|(k, v, p)| serde_json::json!({"key": k, "value": v, "partition": p}))
            .collect();
        let r = self.post(
            &format!("/v1/topics/{topic}/records"),
            &serde_json::json!({ "records": records }),
        );
        assert_eq!(r.status, 200, "produce: {}", r.text());
        r.json()["offsets"]
            .as_array()
            .expect("offsets")
            .iter()
            .map(|o| {
                (
                    o["partition"].as_i64().expect("p"),
                    o["offset"].as_i64().expect("o"),
                )
            })
            .collect()
    }

    /// Waits until a stderr line contains `needle`.
    pub(crate) fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + SAFETY;
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(e) => panic!("no log line with {needle:?}: {e}"),
            }
        }
    }
}

impl Drop for Gw {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) struct Resp {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Resp {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request with `Connection: close`; the body is read to the end.
pub(crate) fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Resp {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(SAFETY)).expect("timeout");
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or_default();
    req.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    s.write_all(req.as_bytes()).expect("write");
    s.write_all(body).expect("write body");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Resp {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..end]).trim(), 16).unwrap_or(0);
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[end + 2..end + 2 + n]);
        b = &b[end + 2 + n + 2..];
    }
}

/// One SSE event as received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SseEvent {
    pub(crate) id: Option<String>,
    pub(crate) event: String,
    pub(crate) data: String,
    pub(crate) retry: Option<u64>,
    /// Comment lines (heartbeats) seen before this event.
    pub(crate) comments: Vec<String>,
}

impl SseEvent {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("data not JSON ({e}): {self:?}"))
    }
}

/// An SSE stream over a raw socket (chunked transfer decoded line by line).
pub(crate) struct Sse {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    reader: BufReader<TcpStream>,
    /// Decoded body bytes not yet split into lines.
    pending: Vec<u8>,
    pub(crate) body_if_error: String,
}

impl Sse {
    pub(crate) fn connect(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Sse {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(SAFETY)).expect("timeout");
        let mut req =
            format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\naccept: text/event-stream\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).expect("write");
        let mut reader = BufReader::new(s);
        let mut status_line = String::new();
        reader.read_line(&mut status_line).expect("status line");
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let mut l = String::new();
            reader.read_line(&mut l).expect("header");
            let l = l.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        let mut sse = Sse {
            status,
            headers,
            reader,
            pending: Vec::new(),
            body_if_error: String::new(),
        };
        if status != 200 {
            let length = sse
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.parse::<usize>().ok());
            let mut b = Vec::new();
            match length {
                Some(n) => {
                    b.resize(n, 0);
                    sse.reader.read_exact(&mut b).expect("error body");
                }
                None => {
                    while let Some(chunk) = sse.chunk() {
                        b.extend(chunk);
                    }
                }
            }
            sse.body_if_error = String::from_utf8_lossy(&b).into_owned();
        }
        sse
    }

    /// The next chunk of the chunked body; None at the end.
    fn chunk(&mut self) -> Option<Vec<u8>> {
        let mut size = String::new();
        if self.reader.read_line(&mut size).ok()? == 0 {
            return None;
        }
        let n = usize::from_str_radix(size.trim(), 16).ok()?;
        if n == 0 {
            return None;
        }
        let mut buf = vec![0; n + 2];
        self.reader.read_exact(&mut buf).ok()?;
        buf.truncate(n);
        Some(buf)
    }

    fn line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=i).collect();
                return Some(String::from_utf8_lossy(&line[..line.len() - 1]).into_owned());
            }
            let chunk = self.chunk()?;
            self.pending.extend(chunk);
        }
    }

    /// The next event (comments are collected into it); None when the stream ended.
    pub(crate) fn next(&mut self) -> Option<SseEvent> {
        let mut ev = SseEvent::default();
        let mut any = false;
        loop {
            let line = self.line()?;
            if line.is_empty() {
                if any {
                    if ev.event.is_empty() && (ev.id.is_some() || !ev.data.is_empty()) {
                        ev.event = "message".into();
                    }
                    return Some(ev);
                }
                continue;
            }
            if let Some(c) = line.strip_prefix(':') {
                ev.comments.push(c.trim().to_owned());
                continue;
            }
            any = true;
            let (field, value) = line.split_once(':').unwrap_or((&line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => ev.id = Some(value.to_owned()),
                "event" => ev.event = value.to_owned(),
                "data" => {
                    if !ev.data.is_empty() {
                        ev.data.push('\n');
                    }
                    ev.data.push_str(value);
                }
                "retry" => ev.retry = value.parse().ok(),
                _ => {}
            }
        }
    }

    /// The next event that is not only a `retry`/heartbeat preamble.
    pub(crate) fn next_named(&mut self) -> Option<SseEvent> {
        loop {
            let ev = self.next()?;
            if !ev.event.is_empty() {
                return Some(ev);
            }
        }
    }

    /// `n` message events (panics on anything else).
    pub(crate) fn messages(&mut self, n: usize) -> Vec<SseEvent> {
        (0..n)
            .map(|i| {
                let ev = self
                    .next_named()
                    .unwrap_or_else(|| panic!("stream ended before message {i}"));
                assert_eq!(ev.event, "message", "event {i}: {ev:?}");
                ev
            })
            .collect()
    }
}

/// Polls `f` until it returns Some, within the safety limit.
pub(crate) fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + SAFETY;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a Python script (stdin) and returns stdout; fails naming the missing package.
pub(crate) fn python(script: &str, args: &[&str]) -> String {
    let mut child = std::process::Command::new("python3")
        .arg("-")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (a test prerequisite) runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("script");
    let out = child.wait_with_output().expect("python3 output");
    assert!(
        out.status.success(),
        "python3 failed (prerequisites: cargo xtask test installs them):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
