//! TLS end to end with clients written by others: `weft dev-certs` checked by `openssl`; a real
//! `weft serve` with `[security.http] tls = true` reached by curl and by Python's `ssl`
//! (OpenSSL) on the HTTP and registry listeners; plaintext on the TLS port refused while the
//! server stays up; mutual TLS with and without the client certificate; certificates rotated
//! by re-running `weft dev-certs` while the server runs, seen by the next connection; a clean
//! stop on SIGTERM.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{Server, run_weft};

/// `weft dev-certs --dir <dir>/certs` with `extra` arguments; returns the certs directory.
fn dev_certs(dir: &Path, extra: &[&str]) -> (PathBuf, String) {
    let mut args = vec!["dev-certs", "--dir", "certs"];
    args.extend_from_slice(extra);
    let run = run_weft(dir, "127.0.0.1:1", &args, None);
    assert_eq!(run.code, Some(0), "weft dev-certs failed: {}", run.stderr);
    let certs = std::fs::canonicalize(dir.join("certs")).expect("certs dir");
    (certs, run.stdout)
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// curl over HTTPS trusting `ca` (plus `extra` arguments): (exit code, body).
fn curl(ca: &Path, url: &str, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["--silent", "--show-error", "--max-time", "60", "--cacert"];
    args.push(path(ca));
    args.extend_from_slice(extra);
    args.push(url);
    let out = run("curl", &args);
    let code = out.status.code().expect("curl exit code");
    (code, text(&out.stdout) + &text(&out.stderr))
}

/// `weft serve` with `[security.tls]` from `certs` and HTTPS on; `tls_extra` is appended to the
/// `[security.tls]` table.
fn serve_https(dir: &Path, certs: &Path, tls_extra: &str) -> Server {
    let config = format!(
        r#"[security.tls]
cert_file = "{cert}"
key_file = "{key}"
{tls_extra}

[security.http]
tls = true
"#,
        cert = path(&certs.join("server.pem")),
        key = path(&certs.join("server.key")),
    );
    Server::start_with_config(dir, &config, &[])
}

fn stop(server: Server) {
    // SIGTERM for a clean stop; `kill(1)` because the workspace forbids `unsafe`.
    let status = Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let (status, rest) = server.wait();
    assert!(
        status.success(),
        "weft serve did not stop cleanly: {status:?}\n{}",
        rest.join("\n")
    );
}

/// The certificate the server at `addr` presents, PEM, as Python's `ssl` fetches it (no
/// verification: this is about which certificate is served).
fn served_certificate(addr: SocketAddr) -> String {
    let out = run(
        "python3",
        &[
            "-c",
            "import ssl, sys; print(ssl.get_server_certificate((sys.argv[1], int(sys.argv[2]))))",
            &addr.ip().to_string(),
            &addr.port().to_string(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

/// PEM → the base64 body only, so line endings and trailing newlines do not matter.
fn pem_body(pem: &str) -> String {
    pem.lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::trim)
        .collect()
}

#[test]
fn dev_certs_makes_a_ca_and_certificates_openssl_accepts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (certs, stdout) = dev_certs(
        dir.path(),
        &[
            "--hosts",
            "localhost,127.0.0.1,weft.test",
            "--client-name",
            "alice",
        ],
    );
    let p = |name: &str| certs.join(name).to_str().expect("utf-8").to_owned();

    // The printed weft.toml and client settings name the files written.
    for needle in [
        format!("cert_file = \"{}\"", p("server.pem")),
        format!("key_file = \"{}\"", p("server.key")),
        format!("ssl.ca.location={}", p("ca.pem")),
        format!("--cacert {}", p("ca.pem")),
        "tls = true".to_owned(),
    ] {
        assert!(stdout.contains(&needle), "{needle:?} not in:\n{stdout}");
    }

    // OpenSSL verifies both leaves against the CA.
    let verify = run(
        "openssl",
        &[
            "verify",
            "-CAfile",
            &p("ca.pem"),
            &p("server.pem"),
            &p("client.pem"),
        ],
    );
    let out = text(&verify.stdout);
    assert!(verify.status.success(), "{out}{}", text(&verify.stderr));
    assert!(
        out.contains("server.pem: OK") && out.contains("client.pem: OK"),
        "{out}"
    );
    // … for their purposes.
    for (leaf, purpose) in [("server.pem", "sslserver"), ("client.pem", "sslclient")] {
        let v = run(
            "openssl",
            &[
                "verify",
                "-purpose",
                purpose,
                "-CAfile",
                &p("ca.pem"),
                &p(leaf),
            ],
        );
        assert!(
            v.status.success(),
            "{leaf} as {purpose}: {}",
            text(&v.stdout)
        );
    }
    // A server certificate is not a client certificate.
    let wrong = run(
        "openssl",
        &[
            "verify",
            "-purpose",
            "sslclient",
            "-CAfile",
            &p("ca.pem"),
            &p("server.pem"),
        ],
    );
    assert!(!wrong.status.success());

    let sans = run(
        "openssl",
        &[
            "x509",
            "-in",
            &p("server.pem"),
            "-noout",
            "-ext",
            "subjectAltName",
        ],
    );
    let sans = text(&sans.stdout);
    for san in ["DNS:localhost", "IP Address:127.0.0.1", "DNS:weft.test"] {
        assert!(sans.contains(san), "{san} not in {sans}");
    }
    let subject = run(
        "openssl",
        &["x509", "-in", &p("client.pem"), "-noout", "-subject"],
    );
    assert!(
        text(&subject.stdout).contains("CN = alice"),
        "{}",
        text(&subject.stdout)
    );

    // Private keys are the owner's only.
    use std::os::unix::fs::PermissionsExt as _;
    for key in ["server.key", "client.key"] {
        let mode = std::fs::metadata(certs.join(key))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }
    // The key matches its certificate (same public key).
    let pubkey = |args: &[&str]| text(&run("openssl", args).stdout);
    assert_eq!(
        pubkey(&["pkey", "-in", &p("server.key"), "-pubout"]),
        pubkey(&["x509", "-in", &p("server.pem"), "-noout", "-pubkey"]),
    );

    // Bad arguments are refused.
    let bad = run_weft(
        dir.path(),
        "127.0.0.1:1",
        &["dev-certs", "--hosts", ","],
        None,
    );
    assert_ne!(bad.code, Some(0));
}

#[test]
fn https_on_the_http_and_registry_listeners() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (certs, _) = dev_certs(dir.path(), &[]);
    let ca = certs.join("ca.pem");
    let server = serve_https(dir.path(), &certs, "");
    let http = server.http_addr;
    let registry = server.registry_addr();

    // curl, trusting the dev CA, by IP (SAN 127.0.0.1) and by name (SAN localhost).
    let (code, body) = curl(&ca, &format!("https://{http}/healthz"), &[]);
    assert_eq!((code, body.as_str()), (0, r#"{"status":"ok"}"#));
    let by_name = format!("https://localhost:{}/healthz", http.port());
    let (code, body) = curl(
        &ca,
        &by_name,
        &["--resolve", &format!("localhost:{}:127.0.0.1", http.port())],
    );
    assert_eq!((code, body.as_str()), (0, r#"{"status":"ok"}"#));
    // /readyz connects to every listener, the TLS ones included.
    let (code, body) = curl(&ca, &format!("https://{http}/readyz"), &["--fail"]);
    assert_eq!(code, 0, "{body}");

    // The registry over HTTPS: register, then read back.
    let schema = r#"{"schema":"{\"type\":\"string\"}"}"#;
    let (code, body) = curl(
        &ca,
        &format!("https://{registry}/subjects/tls-value/versions"),
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/vnd.schemaregistry.v1+json",
            "--data",
            schema,
        ],
    );
    assert_eq!(code, 0, "{body}");
    assert!(body.contains(r#""id":"#), "{body}");
    let (code, body) = curl(&ca, &format!("https://{registry}/subjects"), &[]);
    assert_eq!((code, body.as_str()), (0, r#"["tls-value"]"#));

    // Python's ssl (OpenSSL) with the same CA, by host name.
    let script = r#"
import ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile=sys.argv[1])
with urllib.request.urlopen(sys.argv[2], context=ctx, timeout=60) as r:
    print(r.status, r.read().decode())
"#;
    let py = run(
        "python3",
        &[
            "-c",
            script,
            path(&ca),
            &format!("https://localhost:{}/subjects", registry.port()),
        ],
    );
    assert!(py.status.success(), "{}", text(&py.stderr));
    assert_eq!(text(&py.stdout).trim(), r#"200 ["tls-value"]"#);

    // A client that does not trust the CA is refused by its own verification (curl: 60).
    let out = run(
        "curl",
        &[
            "--silent",
            "--max-time",
            "60",
            &format!("https://{http}/healthz"),
        ],
    );
    assert_eq!(out.status.code(), Some(60), "{}", text(&out.stdout));

    // Plaintext HTTP on the TLS ports: no HTTP answer, and the server stays up.
    for addr in [http, registry] {
        let out = run(
            "curl",
            &[
                "--silent",
                "--max-time",
                "60",
                "--write-out",
                "%{http_code}",
                &format!("http://{addr}/healthz"),
            ],
        );
        assert!(
            !out.status.success(),
            "plaintext answered on {addr}: {}",
            text(&out.stdout)
        );
        assert_eq!(text(&out.stdout), "000");
    }
    let (code, body) = curl(&ca, &format!("https://{http}/healthz"), &[]);
    assert_eq!((code, body.as_str()), (0, r#"{"status":"ok"}"#));

    stop(server);
}

#[test]
fn mutual_tls_on_https() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (certs, _) = dev_certs(dir.path(), &["--client-name", "alice"]);
    let ca = certs.join("ca.pem");
    let tls_extra = format!(
        "client_ca_file = \"{}\"\nclient_auth = \"required\"",
        path(&ca)
    );
    let server = serve_https(dir.path(), &certs, &tls_extra);
    let url = format!("https://{}/healthz", server.http_addr);
    let (client_cert, client_key) = (certs.join("client.pem"), certs.join("client.key"));
    let with_cert = ["--cert", path(&client_cert), "--key", path(&client_key)];

    let (code, body) = curl(&ca, &url, &with_cert);
    assert_eq!((code, body.as_str()), (0, r#"{"status":"ok"}"#));

    // Without a client certificate: refused (TLS 1.3 reports it on the first read).
    let (code, body) = curl(&ca, &url, &[]);
    assert_ne!(code, 0, "answered without a client certificate: {body}");
    assert!(!body.contains("status"), "{body}");

    // A certificate from another CA: refused too.
    let other = tempfile::tempdir().expect("tempdir");
    let (stranger, _) = dev_certs(other.path(), &["--client-name", "mallory"]);
    let (code, body) = curl(
        &ca,
        &url,
        &[
            "--cert",
            path(&stranger.join("client.pem")),
            "--key",
            path(&stranger.join("client.key")),
        ],
    );
    assert_ne!(code, 0, "answered a stranger: {body}");

    // The server is still up for the right client.
    let (code, _) = curl(&ca, &url, &with_cert);
    assert_eq!(code, 0);
    stop(server);
}

#[test]
fn certificates_rotate_without_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (certs, _) = dev_certs(dir.path(), &[]);
    let old_ca = dir.path().join("old-ca.pem");
    std::fs::copy(certs.join("ca.pem"), &old_ca).expect("keep the old CA");
    let old_cert = std::fs::read_to_string(certs.join("server.pem")).expect("server.pem");
    let server = serve_https(dir.path(), &certs, "");
    let http = server.http_addr;
    let registry = server.registry_addr();
    let url = format!("https://{http}/healthz");

    assert_eq!(pem_body(&served_certificate(http)), pem_body(&old_cert));
    assert_eq!(curl(&old_ca, &url, &[]).0, 0);

    // Rotate: new CA, new server certificate and key, written while the server runs.
    dev_certs(dir.path(), &[]);
    let new_cert = std::fs::read_to_string(certs.join("server.pem")).expect("server.pem");
    assert_ne!(pem_body(&new_cert), pem_body(&old_cert));

    // The next connections get the new certificate, on both listeners.
    for addr in [http, registry] {
        assert_eq!(
            pem_body(&served_certificate(addr)),
            pem_body(&new_cert),
            "{addr} still serves the old certificate"
        );
    }
    let (code, body) = curl(&certs.join("ca.pem"), &url, &[]);
    assert_eq!((code, body.as_str()), (0, r#"{"status":"ok"}"#));
    // Clients that only trust the old CA no longer verify it (curl: 60).
    assert_eq!(curl(&old_ca, &url, &[]).0, 60);

    // A broken file keeps the current certificate in service.
    std::fs::write(certs.join("server.pem"), "not a certificate\n").expect("write");
    assert_eq!(pem_body(&served_certificate(http)), pem_body(&new_cert));
    assert_eq!(curl(&certs.join("ca.pem"), &url, &[]).0, 0);

    stop(server);
}

// ---- the Kafka listener over TLS (SSL), with kcat (Debian's librdkafka + OpenSSL) ----

/// kcat against `bootstrap` over SSL trusting `ca`, presenting `client` (cert, key) if given;
/// `input` goes to its stdin. (success, stdout, stderr)
fn kcat_ssl(
    bootstrap: &str,
    ca: &Path,
    client: Option<(&Path, &Path)>,
    args: &[&str],
    input: &str,
) -> (bool, String, String) {
    let mut cmd = Command::new("kcat");
    // `cargo test` may point LD_LIBRARY_PATH at rdkafka-sys's own librdkafka: kcat must load
    // the system library it was built against.
    cmd.env_remove("LD_LIBRARY_PATH")
        .args(["-b", bootstrap, "-X", "security.protocol=ssl"])
        // A producer that cannot deliver gives up after this instead of the 5 minutes default.
        .args(["-X", "message.timeout.ms=20000"])
        .args(["-X", &format!("ssl.ca.location={}", path(ca))]);
    if let Some((cert, key)) = client {
        cmd.args(["-X", &format!("ssl.certificate.location={}", path(cert))])
            .args(["-X", &format!("ssl.key.location={}", path(key))]);
    }
    cmd.args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = common::spawn_kcat(&mut cmd, input);
    let out = child.wait_with_output().expect("kcat");
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// `weft serve` with an SSL Kafka listener; `security` goes into `[security]`, `tls_extra`
/// into `[security.tls]`. Returns the server and the SSL listener's address.
fn serve_kafka_ssl(
    dir: &Path,
    certs: &Path,
    security: &str,
    tls_extra: &str,
) -> (Server, SocketAddr) {
    let config = format!(
        r#"[security]
listeners = ["SSL://127.0.0.1:0"]
{security}

[security.tls]
cert_file = "{cert}"
key_file = "{key}"
{tls_extra}
"#,
        cert = path(&certs.join("server.pem")),
        key = path(&certs.join("server.key")),
    );
    let server = Server::start_with_config(dir, &config, &[]);
    let listeners = server
        .ready_field("kafka_listeners")
        .expect("kafka_listeners in the ready line");
    let ssl = listeners
        .split(',')
        .find_map(|l| l.strip_prefix("SSL://"))
        .unwrap_or_else(|| panic!("no SSL listener in {listeners:?}"))
        .parse()
        .expect("SSL listener address");
    (server, ssl)
}

/// Mutual TLS on the Kafka SSL listener: the client certificate's CN is the principal the
/// ACLs see. alice is a super-user, bob is not: both are let in by the handshake, only alice
/// may write. Without a certificate, or with one from an untrusted CA, the handshake fails.
#[test]
fn kafka_mutual_tls_client_certificate_is_the_principal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (certs, _) = dev_certs(dir.path(), &["--client-name", "alice"]);
    // bob's certificate comes from a second CA; the server trusts both.
    let bob_dir = tempfile::tempdir().expect("tempdir");
    let (bob, _) = dev_certs(bob_dir.path(), &["--client-name", "bob"]);
    let stranger_dir = tempfile::tempdir().expect("tempdir");
    let (stranger, _) = dev_certs(stranger_dir.path(), &["--client-name", "alice"]);
    let bundle = dir.path().join("client-cas.pem");
    let cas = std::fs::read_to_string(certs.join("ca.pem")).expect("ca")
        + &std::fs::read_to_string(bob.join("ca.pem")).expect("ca");
    std::fs::write(&bundle, cas).expect("bundle");

    let (server, ssl) = serve_kafka_ssl(
        dir.path(),
        &certs,
        // ANONYMOUS: weft serve's own clients on the plaintext listener.
        r#"authorization = true
super_users = ["User:alice", "User:ANONYMOUS"]"#,
        &format!(
            "client_ca_file = \"{}\"\nclient_auth = \"required\"",
            path(&bundle)
        ),
    );
    let ssl = ssl.to_string();
    let ca = certs.join("ca.pem");
    let alice = (certs.join("client.pem"), certs.join("client.key"));
    let alice = Some((alice.0.as_path(), alice.1.as_path()));
    let bob = (bob.join("client.pem"), bob.join("client.key"));
    let bob = Some((bob.0.as_path(), bob.1.as_path()));
    let stranger = (stranger.join("client.pem"), stranger.join("client.key"));
    let stranger = Some((stranger.0.as_path(), stranger.1.as_path()));
    let consume = ["-C", "-t", "mtls", "-o", "beginning", "-e", "-q"];

    let (ok, out, err) = kcat_ssl(&ssl, &ca, alice, &["-P", "-t", "mtls"], "from-alice\n");
    assert!(ok, "alice could not produce:\n{out}\n{err}");
    let (ok, out, err) = kcat_ssl(&ssl, &ca, alice, &consume, "");
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "from-alice");

    // bob gets through the handshake but is not authorised to write.
    let (ok, out, err) = kcat_ssl(&ssl, &ca, bob, &["-P", "-t", "mtls"], "from-bob\n");
    assert!(!ok, "bob produced without an ACL:\n{out}");
    assert!(
        err.contains("Topic authorization failed"),
        "bob's error should be an authorisation failure: {err}"
    );

    // No certificate, or one from a CA the server does not trust: no session at all.
    for (who, client) in [("no certificate", None), ("stranger", stranger)] {
        let (ok, out, _) = kcat_ssl(&ssl, &ca, client, &["-P", "-t", "mtls"], "x\n");
        assert!(!ok, "{who} produced:\n{out}");
    }
    // Nothing but alice's record was written.
    let (ok, out, err) = kcat_ssl(&ssl, &ca, alice, &consume, "");
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "from-alice");
    stop(server);
}

/// The Kafka SSL listener picks up rotated files too: the next client sees the new
/// certificate, clients trusting only the old CA no longer connect.
#[test]
fn kafka_ssl_listener_rotates_certificates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (certs, _) = dev_certs(dir.path(), &[]);
    let old_ca = dir.path().join("old-ca.pem");
    std::fs::copy(certs.join("ca.pem"), &old_ca).expect("keep the old CA");
    let (server, ssl) = serve_kafka_ssl(dir.path(), &certs, "", "");
    let bootstrap = ssl.to_string();
    let metadata = ["-L"];

    let (ok, _, err) = kcat_ssl(&bootstrap, &old_ca, None, &metadata, "");
    assert!(ok, "{err}");

    dev_certs(dir.path(), &[]);
    let new_cert = std::fs::read_to_string(certs.join("server.pem")).expect("server.pem");
    assert_eq!(pem_body(&served_certificate(ssl)), pem_body(&new_cert));
    let (ok, _, err) = kcat_ssl(&bootstrap, &certs.join("ca.pem"), None, &metadata, "");
    assert!(ok, "{err}");
    let (ok, _, _) = kcat_ssl(&bootstrap, &old_ca, None, &metadata, "");
    assert!(!ok, "a client trusting only the old CA still connected");
    stop(server);
}
