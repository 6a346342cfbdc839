//! `Tls` against a rustls client over real loopback TCP: handshakes, reload on file change,
//! a broken rotation keeping the old certificate, mutual TLS (required / requested), subject
//! extraction, plaintext on the TLS port, configuration errors.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use weft_auth::config::TlsSection;
use weft_tls::dev::{DevCa, Pem, write_atomic};
use weft_tls::{Error, PeerIdentity, Tls};

struct Fixture {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    ca: DevCa,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let ca = DevCa::new("test CA").unwrap();
        let f = Fixture {
            dir: dir.path().to_owned(),
            _dir: dir,
            ca,
        };
        f.write("ca.pem", &f.ca.cert_pem());
        f.rotate_server();
        f
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn write(&self, name: &str, contents: &str) {
        write_atomic(&self.path(name), contents, false).unwrap();
    }

    /// A fresh server certificate and key for localhost; returns the certificate.
    fn rotate_server(&self) -> CertificateDer<'static> {
        let pem = self.ca.server(&["localhost".to_owned()]).unwrap();
        self.write("server.key", &pem.key);
        self.write("server.pem", &pem.cert);
        der(&pem)
    }

    fn section(&self, client_auth: Option<&str>) -> TlsSection {
        TlsSection {
            cert_file: Some(self.path("server.pem")),
            key_file: Some(self.path("server.key")),
            client_ca_file: client_auth.map(|_| self.path("ca.pem")),
            client_auth: client_auth.map(str::to_owned),
        }
    }
}

fn der(pem: &Pem) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.cert.as_bytes()).unwrap()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    #[allow(deprecated)] // same provider as the server
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client trusting `ca_file`, presenting `identity` if given.
fn client(ca_file: &Path, identity: Option<&Pem>) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(pem) => builder
            .with_client_auth_cert(
                vec![der(pem)],
                PrivateKeyDer::from_pem_slice(pem.key.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// What one connection looked like from both sides.
struct Outcome {
    server: Result<Option<PeerIdentity>, Error>,
    /// The certificate the client was served, and the line it read back; or its error.
    client: Result<(CertificateDer<'static>, String), String>,
}

/// One TLS connection over loopback TCP: the server answers `hello <principal>\n`.
async fn connect(tls: &Tls, connector: &tokio_rustls::TlsConnector) -> Outcome {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = async {
        let (tcp, _) = listener.accept().await.unwrap();
        match tls.accept(tcp).await {
            Ok((mut stream, peer)) => {
                let who = peer
                    .as_ref()
                    .map_or("nobody".to_owned(), |p| p.principal().to_string());
                stream
                    .write_all(format!("hello {who}\n").as_bytes())
                    .await
                    .unwrap();
                stream.shutdown().await.unwrap();
                Ok(peer)
            }
            Err(e) => Err(e),
        }
    };
    let client = async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut stream = connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let served = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
        let mut line = String::new();
        stream
            .read_to_string(&mut line)
            .await
            .map_err(|e| e.to_string())?;
        Ok((served, line))
    };
    let (server, client) = tokio::join!(server, client);
    Outcome { server, client }
}

#[tokio::test]
async fn handshake_with_a_rustls_client() {
    let f = Fixture::new();
    let tls = Tls::from_config(&f.section(None)).unwrap();
    let out = connect(&tls, &client(&f.path("ca.pem"), None)).await;
    assert_eq!(out.server.unwrap(), None);
    let (_, line) = out.client.unwrap();
    assert_eq!(line, "hello nobody\n");
}

#[tokio::test]
async fn a_client_not_trusting_the_ca_fails() {
    let f = Fixture::new();
    let tls = Tls::from_config(&f.section(None)).unwrap();
    let other = DevCa::new("other CA").unwrap();
    f.write("other.pem", &other.cert_pem());
    let out = connect(&tls, &client(&f.path("other.pem"), None)).await;
    assert!(out.client.is_err());
    assert!(matches!(out.server, Err(Error::Handshake(_))));
}

#[tokio::test]
async fn changed_files_are_served_to_the_next_connection() {
    let f = Fixture::new();
    let first = CertificateDer::from_pem_file(f.path("server.pem")).unwrap();
    let tls = Tls::from_config(&f.section(None)).unwrap();
    let connector = client(&f.path("ca.pem"), None);

    let (served, _) = connect(&tls, &connector).await.client.unwrap();
    assert_eq!(served, first);

    let second = f.rotate_server();
    assert_ne!(first, second);
    let (served, _) = connect(&tls, &connector).await.client.unwrap();
    assert_eq!(served, second, "the new certificate after a rotation");

    // Nothing changed since: nothing reloaded.
    assert!(!tls.refresh());
}

#[tokio::test]
async fn a_broken_rotation_keeps_the_previous_certificate() {
    let f = Fixture::new();
    let good = CertificateDer::from_pem_file(f.path("server.pem")).unwrap();
    let tls = Tls::from_config(&f.section(None)).unwrap();
    let connector = client(&f.path("ca.pem"), None);

    // Half a rotation: a new certificate whose key has not been written yet.
    let next = f.ca.server(&["localhost".to_owned()]).unwrap();
    f.write("server.pem", &next.cert);
    assert!(
        !tls.refresh(),
        "a certificate not matching the key is not taken"
    );
    let (served, _) = connect(&tls, &connector).await.client.unwrap();
    assert_eq!(served, good);
    assert!(matches!(tls.reload(), Err(Error::Identity { .. })));

    // Garbage instead of PEM.
    f.write("server.pem", "not a certificate\n");
    assert!(!tls.refresh());
    assert!(matches!(tls.reload(), Err(Error::Pem { .. })));
    let (served, _) = connect(&tls, &connector).await.client.unwrap();
    assert_eq!(served, good);

    // The rotation completes: picked up.
    f.write("server.key", &next.key);
    f.write("server.pem", &next.cert);
    let (served, _) = connect(&tls, &connector).await.client.unwrap();
    assert_eq!(served, der(&next));
}

#[tokio::test]
async fn mutual_tls_required_refuses_a_client_without_a_certificate() {
    let f = Fixture::new();
    let tls = Tls::from_config(&f.section(Some("required"))).unwrap();
    let out = connect(&tls, &client(&f.path("ca.pem"), None)).await;
    assert!(
        matches!(out.server, Err(Error::Handshake(_))),
        "{:?}",
        out.server
    );
    assert!(out.client.is_err(), "the client learns it was refused");
}

#[tokio::test]
async fn mutual_tls_required_refuses_a_certificate_from_another_ca() {
    let f = Fixture::new();
    let tls = Tls::from_config(&f.section(Some("required"))).unwrap();
    let stranger = DevCa::new("other CA").unwrap().client("mallory").unwrap();
    let out = connect(&tls, &client(&f.path("ca.pem"), Some(&stranger))).await;
    assert!(matches!(out.server, Err(Error::Handshake(_))));
    assert!(out.client.is_err());
}

#[tokio::test]
async fn mutual_tls_yields_the_subject_as_principal() {
    let f = Fixture::new();
    let tls = Tls::from_config(&f.section(Some("required"))).unwrap();
    let alice = f.ca.client("alice").unwrap();
    let out = connect(&tls, &client(&f.path("ca.pem"), Some(&alice))).await;
    let peer = out.server.unwrap().unwrap();
    assert_eq!(peer.common_name.as_deref(), Some("alice"));
    assert_eq!(peer.subject, "CN=alice");
    assert_eq!(peer.certificate, der(&alice));
    assert_eq!(peer.principal().to_string(), "User:alice");
    assert_eq!(out.client.unwrap().1, "hello User:alice\n");
}

/// A verified certificate naming `weft serve`'s own principal is refused after the
/// handshake (requested or required): the client never gets an answer.
#[tokio::test]
async fn a_certificate_for_the_internal_principal_is_refused() {
    let f = Fixture::new();
    for client_auth in ["requested", "required"] {
        let tls = Tls::from_config(&f.section(Some(client_auth))).unwrap();
        let forged = f.ca.client(weft_auth::INTERNAL_USER).unwrap();
        let out = connect(&tls, &client(&f.path("ca.pem"), Some(&forged))).await;
        match &out.server {
            Err(Error::ReservedPrincipal(p)) => assert_eq!(p, "User:weft-internal"),
            other => panic!("{client_auth}: {other:?}"),
        }
        if let Ok((_, line)) = &out.client {
            assert!(!line.contains("hello"), "{client_auth}: {line}");
        }
        // Names that merely resemble it are ordinary principals.
        let near = f.ca.client("weft-internal2").unwrap();
        let out = connect(&tls, &client(&f.path("ca.pem"), Some(&near))).await;
        assert_eq!(out.client.unwrap().1, "hello User:weft-internal2\n");
    }
}

#[tokio::test]
async fn mutual_tls_requested_lets_a_client_without_a_certificate_in() {
    let f = Fixture::new();
    let tls = Tls::from_config(&f.section(Some("requested"))).unwrap();
    let out = connect(&tls, &client(&f.path("ca.pem"), None)).await;
    assert_eq!(out.server.unwrap(), None);
    assert_eq!(out.client.unwrap().1, "hello nobody\n");

    let bob = f.ca.client("bob").unwrap();
    let out = connect(&tls, &client(&f.path("ca.pem"), Some(&bob))).await;
    assert_eq!(out.client.unwrap().1, "hello User:bob\n");

    // Requested still verifies what is sent.
    let stranger = DevCa::new("other CA").unwrap().client("mallory").unwrap();
    let out = connect(&tls, &client(&f.path("ca.pem"), Some(&stranger))).await;
    assert!(matches!(out.server, Err(Error::Handshake(_))));
}

#[tokio::test]
async fn plaintext_on_the_tls_port_is_a_handshake_error() {
    let f = Fixture::new();
    let tls = Tls::from_config(&f.section(None)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = async {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut reply = Vec::new();
        // The server answers with a TLS alert (or just closes); never with HTTP.
        let _ = tcp.read_to_end(&mut reply).await;
        reply
    };
    let server = async {
        let (tcp, _) = listener.accept().await.unwrap();
        tls.accept(tcp).await.map(|(_, peer)| peer)
    };
    let (reply, server) = tokio::join!(client, server);
    assert!(matches!(server, Err(Error::Handshake(_))), "{server:?}");
    assert!(!reply.starts_with(b"HTTP"));
    // The handle keeps working for the next (TLS) client.
    let out = connect(&tls, &self::client(&f.path("ca.pem"), None)).await;
    assert!(out.client.is_ok());
}

#[test]
fn configuration_errors_name_the_problem() {
    let f = Fixture::new();
    let check = |section: TlsSection, expected: &str| {
        let e = Tls::from_config(&section).unwrap_err().to_string();
        assert!(e.contains(expected), "{e:?} should contain {expected:?}");
    };
    check(
        TlsSection {
            cert_file: None,
            ..f.section(None)
        },
        "cert_file is not set",
    );
    check(
        TlsSection {
            key_file: None,
            ..f.section(None)
        },
        "key_file is not set",
    );
    check(
        TlsSection {
            client_ca_file: None,
            ..f.section(Some("required"))
        },
        "client_auth = \"required\" needs client_ca_file",
    );
    check(
        f.section(Some("sometimes")),
        "invalid [security.tls] client_auth \"sometimes\"",
    );
    check(
        TlsSection {
            cert_file: Some(f.path("missing.pem")),
            ..f.section(None)
        },
        "cannot read",
    );
    check(
        TlsSection {
            key_file: Some(f.path("ca.pem")),
            ..f.section(None)
        },
        "no PRIVATE KEY block",
    );
    check(
        TlsSection {
            cert_file: Some(f.path("server.key")),
            ..f.section(None)
        },
        "no CERTIFICATE block",
    );
    // A key that is not the certificate's.
    let other = f.ca.server(&["localhost".to_owned()]).unwrap();
    f.write("other.key", &other.key);
    check(
        TlsSection {
            key_file: Some(f.path("other.key")),
            ..f.section(None)
        },
        "other.key",
    );
    assert!(
        Tls::from_config(&f.section(Some("none"))).is_ok(),
        "none needs no CA"
    );
}

#[test]
fn a_subject_without_cn_is_the_principal_as_a_whole() {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Example");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationalUnitName, "Ops");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let peer = PeerIdentity::from_der(cert.der().clone()).unwrap();
    assert_eq!(peer.common_name, None);
    assert!(peer.subject.contains("O=Example"), "{}", peer.subject);
    assert!(peer.subject.contains("OU=Ops"), "{}", peer.subject);
    assert_eq!(
        peer.principal().to_string(),
        format!("User:{}", peer.subject)
    );
}

#[test]
fn the_last_cn_is_the_name() {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Example");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "svc-orders");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let peer = PeerIdentity::from_der(cert.der().clone()).unwrap();
    assert_eq!(peer.common_name.as_deref(), Some("svc-orders"));
    assert_eq!(peer.principal().to_string(), "User:svc-orders");
    assert!(PeerIdentity::from_der(CertificateDer::from(vec![1, 2, 3])).is_none());
}
