//! Runs the real `weft` binary: start-up, health endpoints, the data-dir lock, signals and
//! configuration errors. Timeouts here are safety limits against hangs, never assertions
//! about speed.

mod common;

use std::net::TcpListener;
use std::process::{Command, ExitStatus, Stdio};

use common::http_get as get;
use std::sync::mpsc;

use common::{SAFETY, Server, forward_lines, wait_with_limit, weft};

/// Runs `cmd` to completion (with the safety limit) and returns status and stderr.
fn run(mut cmd: Command) -> (ExitStatus, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn weft");
    let out = forward_lines(child.stdout.take().expect("stdout"));
    let err = forward_lines(child.stderr.take().expect("stderr"));
    let status = wait_with_limit(&mut child, "weft");
    // The reader threads finish once the pipes close; give them the same limit.
    let collect = |rx: mpsc::Receiver<String>| {
        let mut lines = Vec::new();
        while let Ok(line) = rx.recv_timeout(SAFETY) {
            lines.push(line);
        }
        lines.join("\n")
    };
    let stdout = collect(out);
    let stderr = collect(err);
    (status, format!("{stdout}\n{stderr}"))
}

fn sigterm(pid: u32) {
    // `kill(1)` rather than `libc::kill`: the workspace forbids `unsafe`, tests included.
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM {pid} failed");
}

#[test]
fn health_and_readiness_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    // (path, status, body fragment)
    let cases = [
        ("/healthz", 200, r#"{"status":"ok"}"#),
        ("/readyz", 200, r#""status":"ok""#),
        ("/readyz", 200, r#""listener:http":"ok""#),
        ("/readyz", 200, r#""data_dir":"ok""#),
        ("/no/such/path", 404, r#""error":"not found""#),
    ];
    for (path, code, fragment) in cases {
        let (got, body) = get(server.http_addr, path);
        assert_eq!(got, code, "{path}: {body}");
        assert!(body.contains(fragment), "{path}: {body} lacks {fragment}");
    }
}

#[test]
fn sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    sigterm(server.pid());
    let (status, rest) = server.wait();
    assert_eq!(
        status.code(),
        Some(0),
        "stderr after ready:\n{}",
        rest.join("\n")
    );
    assert!(
        rest.iter().any(|l| l.contains(r#""message":"log closed""#)),
        "{rest:#?}"
    );
    // The lock is released with the process: the same data dir starts again.
    let again = Server::start(dir.path());
    sigterm(again.pid());
    assert_eq!(again.wait().0.code(), Some(0));
}

#[test]
fn second_server_on_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _first = Server::start(dir.path());
    let mut second = weft(dir.path());
    second.args([
        "serve",
        "--data-dir",
        "data",
        "--http-listen",
        "127.0.0.1:0",
    ]);
    let (status, output) = run(second);
    assert!(!status.success(), "second server started:\n{output}");
    assert!(output.contains("data/.lock is held"), "{output}");
    assert!(
        output.contains("in use by another weft process"),
        "{output}"
    );
}

#[test]
fn busy_port_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let mut cmd = weft(dir.path());
    cmd.args([
        "serve",
        "--data-dir",
        "data",
        "--http-listen",
        &addr.to_string(),
        "--kafka-listen",
        "127.0.0.1:0",
        "--registry-listen",
        "127.0.0.1:0",
    ]);
    let (status, output) = run(cmd);
    assert!(!status.success(), "{output}");
    assert!(
        output.contains(&format!("cannot bind the http listener on {addr}")),
        "{output}"
    );
}

#[test]
fn version_is_printed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = weft(dir.path());
    cmd.arg("--version");
    let (status, output) = run(cmd);
    assert!(status.success(), "{output}");
    assert!(
        output.contains(&format!("weft {}", env!("CARGO_PKG_VERSION"))),
        "{output}"
    );
}

#[test]
fn bad_config_is_a_clear_error() {
    // (weft.toml, fragments the error must contain)
    let cases: [(&str, &[&str]); 3] = [
        ("bogus = 1\n", &["weft.toml", "unknown field `bogus`"]),
        (
            "[log]\nsegment_byts = 1\n",
            &["weft.toml", "unknown key `log.segment_byts`"],
        ),
        (
            "http_listen = 'not an address'\n",
            &["weft.toml", "http_listen"],
        ),
    ];
    for (toml, fragments) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("weft.toml"), toml).expect("write weft.toml");
        // Found in the working directory…
        let mut cmd = weft(dir.path());
        cmd.args(["serve", "--http-listen", "127.0.0.1:0"]);
        let (status, output) = run(cmd);
        assert!(!status.success(), "{toml:?} accepted:\n{output}");
        for fragment in fragments {
            assert!(
                output.contains(fragment),
                "{toml:?}: {output} lacks {fragment}"
            );
        }
        // …and named by WEFT_CONFIG from elsewhere.
        let elsewhere = tempfile::tempdir().expect("tempdir");
        let mut cmd = weft(elsewhere.path());
        cmd.args(["serve", "--http-listen", "127.0.0.1:0"])
            .env("WEFT_CONFIG", dir.path().join("weft.toml"));
        let (status, output) = run(cmd);
        assert!(
            !status.success(),
            "{toml:?} accepted via WEFT_CONFIG:\n{output}"
        );
        assert!(output.contains(fragments[1]), "{output}");
        // Nothing was created: the config is checked before the data dir is touched.
        assert!(!dir.path().join("weft-data").exists());
    }
}

#[test]
fn missing_explicit_config_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = weft(dir.path());
    cmd.args(["serve", "--config", "nope.toml"]);
    let (status, output) = run(cmd);
    assert!(!status.success(), "{output}");
    assert!(
        output.contains("cannot read config file nope.toml"),
        "{output}"
    );
}
