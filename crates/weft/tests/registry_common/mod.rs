//! `weft serve` with the schema registry for the registry tests: started on ephemeral ports
//! and waited for through its `ready` line, and a minimal HTTP client.

// Each registry test file uses a subset.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use serde_json::Value;

use crate::common::{SAFETY, forward_lines, json_field, wait_with_limit, weft};

/// A `weft serve` with the registry, started and waited for through its `ready` line.
pub(crate) struct Serve {
    child: Child,
    pub(crate) registry: SocketAddr,
    pub(crate) http: SocketAddr,
    pub(crate) kafka: SocketAddr,
    _lines: mpsc::Receiver<String>,
}

impl Serve {
    pub(crate) fn start(dir: &Path, extra: &[&str]) -> Serve {
        let mut child = weft(dir)
            .args(["serve", "--data-dir", "data", "--log-format", "json"])
            .args([
                "--http-listen",
                "127.0.0.1:0",
                "--kafka-listen",
                "127.0.0.1:0",
            ])
            .args(["--registry-listen", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn weft serve");
        let lines = forward_lines(child.stderr.take().expect("stderr"));
        let deadline = Instant::now() + SAFETY;
        let mut seen = Vec::new();
        loop {
            match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.contains(r#""message":"ready""#) => {
                    let addr = |key| {
                        json_field(&line, key)
                            .unwrap_or_else(|| panic!("no {key} in {line}"))
                            .parse()
                            .expect("address")
                    };
                    return Serve {
                        registry: addr("registry_addr"),
                        http: addr("http_addr"),
                        kafka: addr("kafka_addr"),
                        child,
                        _lines: lines,
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

    /// SIGTERM and wait: a clean stop.
    pub(crate) fn stop(mut self) {
        // `kill(1)`: the workspace forbids `unsafe`, tests included.
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
        let status = wait_with_limit(&mut self.child, "weft serve");
        assert!(status.success(), "weft serve exited with {status}");
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request with `Connection: close`; the status and the body as JSON.
pub(crate) fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(SAFETY)).expect("timeout");
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, rest) = response.split_once("\r\n\r\n").expect("head");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    // axum answers small bodies with Content-Length; chunked only for streams we don't use.
    let value = serde_json::from_str(rest).unwrap_or(Value::String(rest.to_owned()));
    (status, value)
}
