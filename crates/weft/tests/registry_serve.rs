//! `weft serve` runs the schema registry on its own listener over the state store: SQLite in
//! the data dir by default, PostgreSQL with `--database`; bad databases fail start-up.

mod common;

mod registry_common;

use std::io::Read;
use std::path::Path;
use std::process::Stdio;

use common::{wait_with_limit, weft};
use registry_common::{Serve, http};
use serde_json::{Value, json};

fn avro(name: &str) -> Value {
    json!({
        "schema": json!({"type": "record", "name": name, "fields": [{"name": "a", "type": "int"}]})
            .to_string()
    })
}

#[test]
fn registry_on_sqlite_in_the_data_dir_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Serve::start(dir.path(), &[]);
    let (status, body) = http(
        server.registry,
        "POST",
        "/subjects/t-value/versions",
        Some(&avro("T")),
    );
    assert_eq!(status, 200, "{body}");
    let id = body["id"].as_i64().expect("id");
    // /readyz checks the registry listener.
    let (status, ready) = http(server.http, "GET", "/readyz", None);
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["checks"]["listener:registry"], "ok", "{ready}");
    server.stop();
    assert!(
        dir.path().join("data/state.db").is_file(),
        "state.db in the data dir"
    );

    let server = Serve::start(dir.path(), &[]);
    let (status, body) = http(server.registry, "GET", "/subjects/t-value/versions/1", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], id);
    let (_, body) = http(
        server.registry,
        "POST",
        "/subjects/u-value/versions",
        Some(&avro("U")),
    );
    assert!(
        body["id"].as_i64().expect("id") > id,
        "ids go on after a restart"
    );
    server.stop();
}

#[test]
fn registry_on_postgres() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let db = rt.block_on(weft_store::testing::TestDb::new(
        weft_store::Backend::Postgres,
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Serve::start(dir.path(), &["--database", &db.url]);
    let (status, body) = http(
        server.registry,
        "POST",
        "/subjects/p-value/versions",
        Some(&avro("P")),
    );
    assert_eq!(status, 200, "{body}");
    let id = body["id"].as_i64().expect("id");
    server.stop();
    assert!(
        !dir.path().join("data/state.db").exists(),
        "no SQLite file with --database"
    );
    // A second process on the same database sees it.
    let other = tempfile::tempdir().expect("tempdir");
    let server = Serve::start(other.path(), &["--database", &db.url]);
    let (_, body) = http(
        server.registry,
        "GET",
        "/subjects/p-value/versions/latest",
        None,
    );
    assert_eq!(body["id"], id);
    server.stop();
    drop(db);
}

/// Runs `weft serve` expecting it to fail at start; returns its stderr.
fn failed_start(dir: &Path, extra: &[&str]) -> String {
    let mut child = weft(dir)
        .args(["serve", "--data-dir", "data"])
        .args([
            "--http-listen",
            "127.0.0.1:0",
            "--kafka-listen",
            "127.0.0.1:0",
        ])
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
        .expect("spawn");
    let status = wait_with_limit(&mut child, "weft serve");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read");
    assert!(
        !status.success(),
        "weft serve {extra:?} should fail; stderr:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn unreachable_database_fails_start_up_naming_it_without_the_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stderr = failed_start(
        dir.path(),
        &["--database", "postgres://nobody:secret@127.0.0.1:1/x"],
    );
    assert!(
        stderr.contains("cannot open the state database"),
        "{stderr}"
    );
    assert!(
        stderr.contains("postgres://nobody:***@127.0.0.1:1/x"),
        "{stderr}"
    );
    assert!(!stderr.contains("secret"), "{stderr}");
    // The cause, once, not a bare "timed out".
    assert!(stderr.contains("Connection refused"), "{stderr}");
    assert!(!stderr.contains("timed out"), "{stderr}");
}

#[test]
fn unsupported_database_url_fails_start_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stderr = failed_start(dir.path(), &["--database", "mysql://u:pw@localhost/db"]);
    assert!(stderr.contains("unsupported database URL"), "{stderr}");
    assert!(!stderr.contains(":pw@"), "{stderr}");
}

#[test]
fn busy_registry_port_fails_start_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let stderr = failed_start(dir.path(), &["--registry-listen", &addr]);
    assert!(
        stderr.contains("cannot bind the registry listener"),
        "{stderr}"
    );
}
