//! The event store inside a real `weft serve`: `/v1/streams` on the HTTP listener, driven
//! by `weft events append|read|replay`; the events survive a restart (SQLite in the data
//! dir).

mod common;

use std::path::Path;
use std::process::Output;

use common::{Server, http_get, weft};
use serde_json::Value;

fn events(dir: &Path, server: &Server, args: &[&str]) -> Output {
    weft(dir)
        .arg("events")
        .args(["--url", &format!("http://{}", server.http_addr)])
        .args(args)
        .output()
        .expect("run weft events")
}

fn ok_json_lines(out: &Output) -> Vec<Value> {
    assert!(
        out.status.success(),
        "weft events failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn stop(server: Server) {
    // SIGTERM for a clean stop; `kill(1)` because the workspace forbids `unsafe`.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let (exit, _) = server.wait();
    assert!(exit.success(), "weft serve stops cleanly");
}

#[test]
fn append_read_replay_through_weft_serve() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let d = dir.path();

    let first = ok_json_lines(&events(
        d,
        &server,
        &[
            "append",
            "--stream",
            "order-1",
            "--type",
            "OrderPlaced",
            "--data",
            r#"{"total": 5, "status": "open"}"#,
            "--expected-version",
            "no_stream",
            "--id",
            "evt-1",
        ],
    ));
    assert_eq!(first[0]["position"], 1);
    // A retry with the same id stores nothing new.
    let retry = ok_json_lines(&events(
        d,
        &server,
        &[
            "append",
            "--stream",
            "order-1",
            "--type",
            "OrderPlaced",
            "--data",
            r#"{"total": 5, "status": "open"}"#,
            "--id",
            "evt-1",
        ],
    ));
    assert_eq!(retry[0]["duplicate"], true);

    let refused = events(
        d,
        &server,
        &[
            "append",
            "--stream",
            "order-1",
            "--type",
            "X",
            "--data",
            "{}",
            "--expected-version",
            "5",
        ],
    );
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("wrong_expected_version") && err.contains("actual revision 0"),
        "{err}"
    );
    for (args, message) in [
        (
            vec!["append", "--stream", "order", "--type", "X", "--data", "{}"],
            "invalid stream name",
        ),
        (
            vec![
                "append",
                "--stream",
                "order-1",
                "--type",
                "X",
                "--data",
                "{}",
                "--expected-version",
                "sometimes",
            ],
            "sometimes",
        ),
        (
            vec![
                "append",
                "--stream",
                "order-1",
                "--type",
                "X",
                "--data",
                "{not json",
            ],
            "not valid JSON",
        ),
    ] {
        let out = events(d, &server, &args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(message), "{args:?}: {err}");
    }

    let placed = ok_json_lines(&events(d, &server, &["read", "--stream", "order-1"]));
    assert_eq!(placed.len(), 1, "refusals stored nothing");
    let t1 = placed[0]["recorded_ms"].as_i64().expect("recorded_ms");
    // The next event must be recorded strictly later than t1 (poll the clock, no sleep).
    while std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
        <= t1
    {
        std::thread::yield_now();
    }
    ok_json_lines(&events(
        d,
        &server,
        &[
            "append",
            "--stream",
            "order-1",
            "--type",
            "OrderPaid",
            "--data",
            r#"{"status": "paid"}"#,
        ],
    ));
    ok_json_lines(&events(
        d,
        &server,
        &[
            "append",
            "--stream",
            "customer-7",
            "--type",
            "Registered",
            "--data",
            "{}",
        ],
    ));
    let orders = ok_json_lines(&events(d, &server, &["read", "--category", "order"]));
    assert_eq!(orders.len(), 2);

    // Audit: the state as of t1 has only the first event applied.
    let report = ok_json_lines(&events(
        d,
        &server,
        &[
            "replay",
            "--stream",
            "order-1",
            "--until",
            &t1.to_string(),
            "--format",
            "json",
        ],
    ));
    let r = &report[0];
    assert_eq!(r["applied"].as_array().expect("applied").len(), 1, "{r}");
    assert_eq!(r["skipped"], 1);
    assert_eq!(r["state"]["order-1"]["status"], "open");
    let now = ok_json_lines(&events(
        d,
        &server,
        &["replay", "--category", "order", "--format", "json"],
    ));
    assert_eq!(now[0]["state"]["order-1"]["status"], "paid");
    let text = events(
        d,
        &server,
        &["replay", "--stream", "order-1", "--until-revision", "0"],
    );
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("applied 1 order-1@0 OrderPlaced"), "{text}");

    // --follow: history then live over SSE, stopping after --max events.
    let follower = weft(d)
        .arg("events")
        .args(["--url", &format!("http://{}", server.http_addr)])
        .args(["read", "--stream", "order-1", "--follow", "--max", "3"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn follower");
    ok_json_lines(&events(
        d,
        &server,
        &[
            "append",
            "--stream",
            "order-1",
            "--type",
            "OrderNoted",
            "--data",
            "{}",
        ],
    ));
    let followed = ok_json_lines(&follower.wait_with_output().expect("follower output"));
    let types: Vec<_> = followed
        .iter()
        .map(|e| e["type"].as_str().expect("type"))
        .collect();
    assert_eq!(types, ["OrderPlaced", "OrderPaid", "OrderNoted"]);

    // The store's series are on /metrics (weft-observe's recorder, on by default).
    let (_, metrics) = http_get(server.http_addr, "/metrics");
    for series in [
        r#"weft_eventstore_appends_total{outcome="ok"}"#,
        r#"weft_eventstore_appends_total{outcome="duplicate"}"#,
        r#"weft_eventstore_appends_total{outcome="wrong_expected_version"}"#,
        "weft_eventstore_events_appended_total 4",
    ] {
        assert!(
            metrics.contains(series),
            "{series} missing from /metrics:\n{metrics}"
        );
    }

    // The events live in the state database: they survive a restart.
    stop(server);
    let server = Server::start(dir.path());
    let again = ok_json_lines(&events(d, &server, &["read", "--stream", "order-1"]));
    assert_eq!(again.len(), 3);
    let w = ok_json_lines(&events(
        d,
        &server,
        &[
            "append",
            "--stream",
            "order-1",
            "--type",
            "OrderShipped",
            "--data",
            "{}",
            "--expected-version",
            "2",
        ],
    ));
    assert_eq!(w[0]["position"], 5, "positions go on after a restart");
    stop(server);
}
