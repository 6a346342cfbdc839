//! `weft schema …` run as a real process against a real `weft serve`'s registry.

mod common;

use std::path::Path;
use std::process::{Output, Stdio};

struct Weft {
    registry: String,
    dir: tempfile::TempDir,
    // Dropped (killed) before `dir` is removed.
    _server: common::Server,
}

fn start() -> Weft {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = common::Server::start(dir.path());
    Weft {
        registry: format!("http://{}", server.registry_addr()),
        _server: server,
        dir,
    }
}

/// (exit code, stdout, stderr) of `weft schema <args>` against `w`.
fn schema(w: &Weft, args: &[&str]) -> (i32, String, String) {
    run_at(&w.registry, w.dir.path(), args)
}

fn run_at(registry: &str, cwd: &Path, args: &[&str]) -> (i32, String, String) {
    let mut child = common::weft(cwd)
        .arg("schema")
        .args(["--registry", registry])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn weft schema");
    common::wait_with_limit(&mut child, "weft schema");
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().expect("output");
    (
        status.code().expect("exit code"),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn file(w: &Weft, name: &str, text: &str) -> String {
    let path = w.dir.path().join(name);
    std::fs::write(&path, text).expect("write schema file");
    path.display().to_string()
}

const V1: &str = r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"long"}]}"#;
const V2: &str = r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"long"},{"name":"note","type":"string","default":""}]}"#;
const BREAKING: &str = r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"long"},{"name":"total","type":"double"}]}"#;

#[test]
fn register_check_get_and_list() {
    let w = start();
    let v1 = file(&w, "v1.avsc", V1);
    let (code, out, err) = schema(
        &w,
        &["register", "--subject", "orders-value", "--file", &v1],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("registered orders-value version 1 id "),
        "{out}"
    );

    // Compatible: exit 0.
    let v2 = file(&w, "v2.avsc", V2);
    let (code, out, err) = schema(&w, &["check", "--subject", "orders-value", "--file", &v2]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("is compatible with orders-value"), "{out}");

    // Incompatible: exit 1 with the reasons, and nothing registered.
    let bad = file(&w, "bad.avsc", BREAKING);
    let (code, out, err) = schema(&w, &["check", "--subject", "orders-value", "--file", &bad]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("is NOT compatible with orders-value"), "{out}");
    assert!(out.contains("total"), "the reason names the field: {out}");
    assert!(out.contains("BACKWARD"), "the level is named: {out}");

    // Invalid: exit 1 too.
    let broken = file(
        &w,
        "broken.avsc",
        r#"{"type":"record","name":"Order","fields":[{"name":"id"}]}"#,
    );
    let (code, out, err) = schema(
        &w,
        &["check", "--subject", "orders-value", "--file", &broken],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("invalid schema"), "{out}");

    let (code, out, err) = schema(
        &w,
        &["register", "--subject", "orders-value", "--file", &v2],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("registered orders-value version 2 id "),
        "{out}"
    );
    // Registering the breaking one is refused: exit 1, the registry's message.
    let (code, _, err) = schema(
        &w,
        &["register", "--subject", "orders-value", "--file", &bad],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("409"), "{err}");

    let (code, out, _) = schema(&w, &["get", "--subject", "orders-value"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("schema printed as JSON");
    assert_eq!(v["fields"][1]["name"], "note");
    let (code, out, _) = schema(
        &w,
        &[
            "get",
            "--subject",
            "orders-value",
            "--version",
            "1",
            "--json",
        ],
    );
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json answer");
    assert_eq!(v["version"], 1);

    // A JSON Schema and a Protobuf schema, types guessed from the files.
    let js = file(
        &w,
        "c.json",
        r#"{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","properties":{"name":{"type":"string"}}}"#,
    );
    assert_eq!(
        schema(
            &w,
            &["register", "--subject", "customers-value", "--file", &js]
        )
        .0,
        0
    );
    let proto = file(
        &w,
        "p.proto",
        "syntax = \"proto3\";\npackage shop;\nmessage Payment {\n  int64 cents = 1;\n}\n",
    );
    assert_eq!(
        schema(
            &w,
            &["register", "--subject", "payments-value", "--file", &proto]
        )
        .0,
        0
    );

    let (code, out, _) = schema(&w, &["list"]);
    assert_eq!(code, 0);
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["SUBJECT", "VERSION", "ID", "TYPE", "STATUS"]);
    let subjects: Vec<(&str, &str, &str)> = rows[1..].iter().map(|r| (r[0], r[1], r[3])).collect();
    assert_eq!(
        subjects,
        [
            ("customers-value", "1", "JSON"),
            ("orders-value", "1", "AVRO"),
            ("orders-value", "2", "AVRO"),
            ("payments-value", "1", "PROTOBUF"),
        ]
    );
    let (_, out, _) = schema(&w, &["list", "--prefix", "orders"]);
    assert_eq!(out.lines().count(), 3, "{out}");
}

#[test]
fn diff_says_what_changed() {
    let w = start();
    let subject = "people-value";
    let (code, _, err) = {
        let path = file(
            &w,
            "p1.avsc",
            r#"{"type":"record","name":"Person","fields":[{"name":"name","type":"string"},{"name":"age","type":"int"}]}"#,
        );
        schema(&w, &["register", "--subject", subject, "--file", &path])
    };
    assert_eq!(code, 0, "{err}");
    // NONE lets anything in; diff then says what is wrong both ways.
    let none = http_put(
        &w,
        &format!("/config/{subject}"),
        r#"{"compatibility":"NONE"}"#,
    );
    assert!(none.contains("NONE"), "{none}");
    let p2 = file(
        &w,
        "p2.avsc",
        r#"{"type":"record","name":"Person","fields":[{"name":"name","type":"string"},{"name":"age","type":"long"},{"name":"email","type":"string"}]}"#,
    );
    assert_eq!(
        schema(&w, &["register", "--subject", subject, "--file", &p2]).0,
        0
    );

    let (code, out, err) = schema(
        &w,
        &["diff", "--subject", subject, "--from", "1", "--to", "2"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("version 1"), "{out}");
    assert!(out.contains("added    Person.email: string"), "{out}");
    assert!(out.contains("changed  Person.age: int -> long"), "{out}");
    // New reader: email has no default, so old data cannot be read.
    assert!(
        out.contains("backward (version 2 reads data written with version 1): no"),
        "{out}"
    );
    assert!(out.contains("email"), "{out}");
    // Old reader of new data: int cannot read long.
    assert!(
        out.contains("forward (version 1 reads data written with version 2): no"),
        "{out}"
    );

    let (code, out, _) = schema(
        &w,
        &["diff", "--subject", subject, "--from", "2", "--to", "2"],
    );
    assert_eq!(code, 0);
    assert!(out.contains("nothing changed"), "{out}");
    let (code, _, err) = schema(
        &w,
        &["diff", "--subject", subject, "--from", "1", "--to", "7"],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("40402"), "{err}");
}

#[test]
fn deprecate_shows_in_list_and_get() {
    let w = start();
    let v1 = file(&w, "v1.avsc", V1);
    let v2 = file(&w, "v2.avsc", V2);
    assert_eq!(
        schema(
            &w,
            &["register", "--subject", "orders-value", "--file", &v1]
        )
        .0,
        0
    );
    assert_eq!(
        schema(
            &w,
            &["register", "--subject", "orders-value", "--file", &v2]
        )
        .0,
        0
    );
    let (code, out, err) = schema(
        &w,
        &[
            "deprecate",
            "--subject",
            "orders-value",
            "--version",
            "1",
            "--sunset",
            "2027-01-31",
            "--note",
            "use version 2",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("deprecated, sunset 2027-01-31"), "{out}");
    let (_, out, _) = schema(&w, &["list"]);
    let v1_row = out
        .lines()
        .find(|l| l.starts_with("orders-value  1"))
        .expect("v1 row");
    assert!(
        v1_row.ends_with("deprecated, sunset 2027-01-31: use version 2"),
        "{out}"
    );
    let v2_row = out
        .lines()
        .find(|l| l.starts_with("orders-value  2"))
        .expect("v2 row");
    assert!(!v2_row.contains("deprecated"), "{out}");
    let (code, _, err) = schema(&w, &["get", "--subject", "orders-value", "--version", "1"]);
    assert_eq!(code, 0);
    assert!(
        err.contains("deprecated (sunset Sun, 31 Jan 2027 00:00:00 GMT): use version 2"),
        "{err}"
    );
    // A bad date is refused by the registry: exit 1.
    let (code, _, err) = schema(
        &w,
        &[
            "deprecate",
            "--subject",
            "orders-value",
            "--version",
            "2",
            "--sunset",
            "soon",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("RFC 3339"), "{err}");
    let (code, _, _) = schema(
        &w,
        &[
            "deprecate",
            "--subject",
            "orders-value",
            "--version",
            "1",
            "--undo",
        ],
    );
    assert_eq!(code, 0);
    let (_, out, _) = schema(&w, &["list"]);
    assert!(!out.contains("deprecated"), "{out}");
}

#[test]
fn register_in_a_review_subject_files_a_proposal() {
    let w = start();
    let reply = http_put(&w, "/mode/orders-value", r#"{"mode":"REVIEW"}"#);
    assert!(reply.contains("REVIEW"), "{reply}");
    let v1 = file(&w, "v1.avsc", V1);
    // Proposing needs a principal.
    let (code, _, err) = schema(
        &w,
        &["register", "--subject", "orders-value", "--file", &v1],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("x-weft-principal"), "{err}");
    let (code, out, err) = schema(
        &w,
        &[
            "--principal",
            "alice",
            "register",
            "--subject",
            "orders-value",
            "--file",
            &v1,
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("proposal 1 created for orders-value: needs 2 approval(s)"),
        "{out}"
    );
    // Nothing registered yet.
    let (code, _, err) = schema(&w, &["get", "--subject", "orders-value"]);
    assert_eq!(code, 1, "{err}");
}

#[test]
fn errors_have_distinct_exit_codes() {
    let w = start();
    let (code, _, err) = schema(&w, &["get", "--subject", "nobody"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("Subject 'nobody' not found"), "{err}");
    // Nothing listens on port 1: the registry could not be asked at all.
    let (code, _, err) = run_at("http://127.0.0.1:1", w.dir.path(), &["list"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no answer from the schema registry"), "{err}");
    let (code, _, err) = run_at("https://127.0.0.1:1", w.dir.path(), &["list"]);
    assert_ne!(code, 0, "{err}");
}

/// PUT with a JSON body over a plain socket; the response text.
fn http_put(w: &Weft, path: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let addr = w.registry.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    let req = format!(
        "PUT {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}
