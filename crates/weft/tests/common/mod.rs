//! The one harness for integration tests that run the real `weft` binary: a clean command,
//! a `weft serve` started and waited for through its JSON `ready` log line, and the helpers
//! around it. Timeouts are safety limits against hangs, never assertions about speed.

// Each test binary (`serve`, `cli`, `kafka_kill9`) uses a different subset of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Generous limit for anything that should take well under a second (or a few, under load).
pub(crate) const SAFETY: Duration = Duration::from_secs(120);

/// `weft` with a clean environment: no inherited `WEFT_*` or `RUST_LOG`, run in `cwd` so no
/// stray `weft.toml` is picked up.
pub(crate) fn weft(cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weft"));
    cmd.current_dir(cwd)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("WEFT_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// A running `weft serve` whose `ready` line has been seen.
pub(crate) struct Server {
    child: Child,
    /// The bound HTTP address, from the `ready` line.
    pub(crate) http_addr: SocketAddr,
    /// The bound Kafka address, from the `ready` line; absent without the embedded broker.
    kafka_addr: Option<SocketAddr>,
    ready: String,
    /// Every stderr line after `ready`, until the process closes stderr.
    rest: mpsc::Receiver<String>,
    /// The stderr lines before `ready`.
    early: Vec<String>,
}

impl Server {
    /// `weft serve` in `dir` (data in `dir/data`) with every listener on an ephemeral port.
    pub(crate) fn start(dir: &Path) -> Server {
        Server::start_with(dir, &["--kafka-listen", "127.0.0.1:0"])
    }

    /// `weft serve` in `dir` (data in `dir/data`, JSON logs, HTTP on an ephemeral port)
    /// followed by `extra` arguments; returns once the `ready` line has been seen.
    /// [`Server::start_with`] with `config` written to `dir/weft.toml` and passed by
    /// `--config`, the Kafka listener on a free port, then `extra`.
    pub(crate) fn start_with_config(dir: &Path, config: &str, extra: &[&str]) -> Server {
        std::fs::write(dir.join("weft.toml"), config).expect("weft.toml");
        let mut args = vec!["--config", "weft.toml", "--kafka-listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        Server::start_with(dir, &args)
    }

    pub(crate) fn start_with(dir: &Path, extra: &[&str]) -> Server {
        let mut child = weft(dir)
            .args(["serve", "--data-dir", "data", "--log-format", "json"])
            .args(["--http-listen", "127.0.0.1:0"])
            // Tests run in parallel: never the registry's default port, unless asked.
            .args(if extra.contains(&"--registry-listen") {
                &[][..]
            } else {
                &["--registry-listen", "127.0.0.1:0"][..]
            })
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn weft serve");
        let lines = forward_lines(child.stderr.take().expect("stderr"));
        let mut seen = Vec::new();
        let deadline = Instant::now() + SAFETY;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) if line.contains(r#""message":"ready""#) => {
                    let http_addr = json_field(&line, "http_addr")
                        .unwrap_or_else(|| panic!("no http_addr in {line}"))
                        .parse()
                        .expect("http_addr is an address");
                    let kafka_addr = json_field(&line, "kafka_addr")
                        .map(|a| a.parse().expect("kafka_addr is an address"));
                    return Server {
                        child,
                        http_addr,
                        kafka_addr,
                        ready: line,
                        rest: lines,
                        early: seen,
                    };
                }
                Ok(line) => seen.push(line),
                Err(e) => {
                    let _ = child.kill();
                    panic!("no ready line ({e}); stderr so far:\n{}", seen.join("\n"));
                }
            }
        }
    }

    /// The bound Kafka address; panics when the `ready` line names none.
    pub(crate) fn kafka_addr(&self) -> SocketAddr {
        self.kafka_addr
            .unwrap_or_else(|| panic!("no kafka_addr in {}", self.ready))
    }

    /// The bound registry address; panics when the `ready` line names none.
    #[allow(dead_code)] // not every test binary talks to the registry
    pub(crate) fn registry_addr(&self) -> SocketAddr {
        json_field(&self.ready, "registry_addr")
            .unwrap_or_else(|| panic!("no registry_addr in {}", self.ready))
            .parse()
            .expect("registry_addr is an address")
    }

    /// The stderr lines logged before `ready` (start-up).
    pub(crate) fn early_lines(&self) -> &[String] {
        &self.early
    }

    /// A field of the `ready` line (e.g. `kafka_listeners`).
    pub(crate) fn ready_field(&self, key: &str) -> Option<String> {
        json_field(&self.ready, key)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL.
    pub(crate) fn kill(&mut self) -> std::io::Result<()> {
        self.child.kill()
    }

    /// Waits for exit (with the safety limit) and returns the status and the stderr lines
    /// after `ready`.
    pub(crate) fn wait(mut self) -> (ExitStatus, Vec<String>) {
        let status = wait_with_limit(&mut self.child, "weft serve");
        let rest = self.rest.try_iter().collect();
        (status, rest)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // No-op when the test already waited for it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Lines of `stream`, read on a thread so a hung child cannot hang the test. The thread keeps
/// draining after the receiver is gone so the child never blocks on a full pipe.
pub(crate) fn forward_lines(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// One HTTP/1.1 request with `Connection: close`: (status, raw response head, body). A body
/// is sent as JSON; an SSE answer (which never ends) is read up to the end of its head.
pub(crate) fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(SAFETY)).expect("timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    write!(s, "{head}\r\n{body}").expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => panic!("read: {e}"),
        }
        let text = String::from_utf8_lossy(&out);
        if text.contains("text/event-stream") && text.contains("\r\n\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad response: {text}"));
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (code, head.to_owned(), body.to_owned())
}

/// A minimal HTTP/1.1 GET: (status code, body).
pub(crate) fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect_timeout(&addr, SAFETY).expect("connect");
    stream.set_read_timeout(Some(SAFETY)).expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("write request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let code = response
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad response: {response}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

/// What a finished `weft` command printed and how it exited.
pub(crate) struct Run {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs `weft <args>` in `cwd` with `WEFT_BOOTSTRAP` set to `bootstrap` and `stdin` as its
/// input (closed when `None`), within the safety limit, and echoes what it printed.
pub(crate) fn run_weft(cwd: &Path, bootstrap: &str, args: &[&str], stdin: Option<&str>) -> Run {
    let mut child = weft(cwd)
        .args(args)
        .env("WEFT_BOOTSTRAP", bootstrap)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn weft");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        let input = input.to_owned();
        thread::spawn(move || {
            let _ = pipe.write_all(input.as_bytes());
        });
    }
    let out = read_to_string(child.stdout.take().expect("stdout"));
    let err = read_to_string(child.stderr.take().expect("stderr"));
    let status = wait_with_limit(&mut child, &format!("weft {args:?}"));
    let run = Run {
        code: status.code(),
        stdout: out.recv().expect("stdout"),
        stderr: err.recv().expect("stderr"),
    };
    eprintln!(
        "weft {args:?} -> {:?}\n{}\n{}",
        run.code, run.stdout, run.stderr
    );
    run
}

/// All of `stream` as text (lossy UTF-8), read on a thread so a full pipe never blocks the child.
fn read_to_string(mut stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stream.read_to_end(&mut buf);
        let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
    });
    rx
}

/// Waits for `child` to exit; kills it and panics, naming it `what`, after the safety limit.
pub(crate) fn wait_with_limit(child: &mut Child, what: &str) -> ExitStatus {
    let deadline = Instant::now() + SAFETY;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not exit within {SAFETY:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for `child` (see [`wait_with_limit`]), then reads its piped stdout and stderr
/// (lossy UTF-8): (status, stdout, stderr).
pub(crate) fn wait_with_output(child: &mut Child, what: &str) -> (ExitStatus, String, String) {
    let status = wait_with_limit(child, what);
    let out = read_all(child.stdout.take().expect("stdout"));
    let err = read_all(child.stderr.take().expect("stderr"));
    (status, out, err)
}

fn read_all(mut stream: impl Read) -> String {
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).expect("read child output");
    String::from_utf8_lossy(&buf).into_owned()
}

/// Spawns kcat from `cmd` (stdin piped) and writes `input` to its stdin, then closes it.
pub(crate) fn spawn_kcat(cmd: &mut Command, input: &str) -> Child {
    let mut child = cmd
        .spawn()
        .expect("kcat (Debian package kcat) must be installed");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("kcat stdin");
    child
}

/// Opens (creating it) and migrates `dir/data/state.db`, runs `seed` on the store, closes it:
/// ACLs and SCRAM users for a `weft serve` started on `dir` afterwards.
pub(crate) fn seed_state(dir: &Path, seed: impl AsyncFnOnce(weft_store::Store)) {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = weft_store::Store::open(&weft_store::sqlite_url(&data.join("state.db")))
            .await
            .expect("open state store");
        weft_auth::store::migrate(&store).await.expect("migrate");
        seed(store.clone()).await;
        store.close().await;
    });
}

/// The string value of a top-level `"key":"value"` in a JSON log line.
pub(crate) fn json_field(line: &str, key: &str) -> Option<String> {
    let key = format!(r#""{key}":""#);
    let start = line.find(&key)? + key.len();
    let end = line[start..].find('"')?;
    Some(line[start..start + end].to_owned())
}
