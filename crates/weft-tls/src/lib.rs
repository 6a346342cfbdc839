//! Weft's TLS edge: one [`Tls`] handle per `[security.tls]` table, shared by the Kafka
//! listeners (SSL, SASL_SSL) and the HTTPS listeners (HTTP, registry).
//!
//! ```text
//! let tls = Tls::from_config(&section)?;          // reads and checks the PEM files now
//! // per accepted TCP connection, in the connection's own task:
//! let (stream, peer) = tls.accept(tcp).await?;    // TlsStream<TcpStream>, Option<PeerIdentity>
//! let principal = peer.map(|p| p.principal());    // User:<CN> under mutual TLS
//! ```
//!
//! - **Files.** `cert_file` holds the server's certificate chain (leaf first) in PEM, `key_file`
//!   its private key (PKCS#8, PKCS#1 or SEC1 PEM). [`Tls::from_config`] fails if either is
//!   missing, unreadable, empty, or if the key does not match the leaf certificate.
//! - **Reload without a restart.** Every [`Tls::accept`] first stats the files (size, mtime and
//!   inode: a few syscalls, no read). When that fingerprint changed since the last attempt the
//!   files are loaded again; a file that does not load (half-written, mismatched key, bad PEM)
//!   keeps the previous configuration and logs why once, and the next change is tried again.
//!   So the first connection after a rotation is served with the new certificate;
//!   connections already open keep theirs. [`Tls::reload`] forces a load (e.g. on SIGHUP).
//! - **Mutual TLS.** `client_auth = "requested"` asks for a client certificate and verifies one
//!   if sent; `"required"` refuses the handshake without one. Both verify against
//!   `client_ca_file` (required then). The verified leaf's subject comes back as a
//!   [`PeerIdentity`]; [`PeerIdentity::principal`] is `User:<CN>` (the full RFC 4514
//!   subject when the certificate has no CN). A certificate whose principal is reserved
//!   (`User:weft-internal`, `weft serve`'s own) is refused: [`Error::ReservedPrincipal`].
//! - **Handshakes are bounded** by [`HANDSHAKE_TIMEOUT`], so a client that connects and sends
//!   nothing (or plaintext) costs one task for at most that long; the error goes to the caller,
//!   which logs it and drops the connection — the listener keeps accepting.
//! - Crypto is rustls on the *ring* provider, chosen explicitly (no process-wide default).
//!
//! [`dev`] makes a local CA, a server and a client certificate (rcgen) for `weft dev-certs`
//! and for tests.

pub mod dev;
mod identity;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{info, warn};
use weft_auth::config::TlsSection;

pub use identity::PeerIdentity;
/// The stream [`Tls::accept`] returns.
pub use tokio_rustls::server::TlsStream;

/// Longest a TLS handshake may take before [`Tls::accept`] gives up on the connection.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("[security.tls] {0} is not set")]
    Missing(&'static str),
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{}: {what}", path.display())]
    Pem { path: PathBuf, what: String },
    #[error("invalid [security.tls] client_auth {0:?}: expected none, requested or required")]
    ClientAuth(String),
    #[error("[security.tls] client_auth = \"{0}\" needs client_ca_file")]
    NoClientCa(ClientAuth),
    #[error("{}: {source}", path.display())]
    ClientCa {
        path: PathBuf,
        source: rustls::server::VerifierBuilderError,
    },
    #[error("{} and {}: {source}", cert.display(), key.display())]
    Identity {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    #[error("tls handshake failed: {0}")]
    Handshake(io::Error),
    #[error("tls handshake timed out after {0:?}")]
    HandshakeTimeout(Duration),
    /// The client certificate verified but names `weft serve`'s own principal
    /// (`weft_auth::internal`), which only its in-memory credential may act as.
    #[error("client certificate names the reserved principal {0}")]
    ReservedPrincipal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `[security.tls] client_auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// No client certificate asked for (the default).
    #[default]
    None,
    /// Asked for; verified when sent; a client without one still connects (no identity).
    Requested,
    /// A verified client certificate is needed to complete the handshake.
    Required,
}

impl ClientAuth {
    pub fn parse(s: Option<&str>) -> Result<ClientAuth> {
        match s.map(str::trim) {
            None | Some("none") | Some("") => Ok(ClientAuth::None),
            Some("requested") => Ok(ClientAuth::Requested),
            Some("required") => Ok(ClientAuth::Required),
            Some(other) => Err(Error::ClientAuth(other.to_owned())),
        }
    }
}

impl fmt::Display for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClientAuth::None => "none",
            ClientAuth::Requested => "requested",
            ClientAuth::Required => "required",
        })
    }
}

/// A TLS server identity from `[security.tls]`, reloaded when its files change. Cheap to clone
/// (one shared state): give every listener a clone.
#[derive(Clone)]
pub struct Tls(Arc<Inner>);

struct Inner {
    files: Files,
    client_auth: ClientAuth,
    alpn: Vec<Vec<u8>>,
    provider: Arc<CryptoProvider>,
    /// The configuration new connections get.
    current: RwLock<Arc<ServerConfig>>,
    /// Fingerprint of the files at the last load attempt, good or bad: a broken file is
    /// reported once, not on every accept.
    tried: Mutex<Fingerprint>,
}

#[derive(Debug, Clone)]
struct Files {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("cert_file", &self.0.files.cert)
            .field("key_file", &self.0.files.key)
            .field("client_ca_file", &self.0.files.client_ca)
            .field("client_auth", &self.0.client_auth)
            .finish()
    }
}

impl Tls {
    /// Loads and checks the files named by `[security.tls]` now.
    pub fn from_config(section: &TlsSection) -> Result<Tls> {
        Tls::with_alpn(section, Vec::new())
    }

    /// As [`Tls::from_config`], offering these ALPN protocols (e.g. `b"http/1.1"`).
    pub fn with_alpn(section: &TlsSection, alpn: Vec<Vec<u8>>) -> Result<Tls> {
        let client_auth = ClientAuth::parse(section.client_auth.as_deref())?;
        let files = Files {
            cert: section
                .cert_file
                .clone()
                .ok_or(Error::Missing("cert_file"))?,
            key: section.key_file.clone().ok_or(Error::Missing("key_file"))?,
            client_ca: section.client_ca_file.clone(),
        };
        if client_auth != ClientAuth::None && files.client_ca.is_none() {
            return Err(Error::NoClientCa(client_auth));
        }
        // ring has no post-quantum key exchange (hence the deprecation); aws-lc-rs would
        // add a cmake + C build of aws-lc to every build on 2 cores. X25519 and the NIST
        // curves are what librdkafka, curl and browsers fall back to.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let fingerprint = Fingerprint::of(&files);
        let config = load(&files, client_auth, &alpn, &provider)?;
        Ok(Tls(Arc::new(Inner {
            files,
            client_auth,
            alpn,
            provider,
            current: RwLock::new(Arc::new(config)),
            tried: Mutex::new(fingerprint),
        })))
    }

    pub fn client_auth(&self) -> ClientAuth {
        self.0.client_auth
    }

    /// Runs the server side of a TLS handshake on `io` with the current configuration (after
    /// picking up changed files), bounded by [`HANDSHAKE_TIMEOUT`]. Returns the stream and,
    /// when the client presented a certificate that verified, its identity.
    pub async fn accept<IO>(&self, io: IO) -> Result<(TlsStream<IO>, Option<PeerIdentity>)>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.server_config());
        let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io))
            .await
            .map_err(|_| Error::HandshakeTimeout(HANDSHAKE_TIMEOUT))?
            .map_err(Error::Handshake)?;
        let peer = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| PeerIdentity::from_der(leaf.clone()));
        // A certificate for `User:weft-internal` (a CA that signs any CN asked for) must
        // not make its holder `weft serve` itself: the connection is refused, on every
        // listener (Kafka SSL/SASL_SSL, HTTPS), before any request is read.
        if let Some(principal) = peer.as_ref().map(PeerIdentity::principal)
            && weft_auth::internal::is_reserved(principal.name())
        {
            return Err(Error::ReservedPrincipal(principal.to_string()));
        }
        Ok((stream, peer))
    }

    /// The configuration a connection accepted now would get (after picking up changed
    /// files), for callers that drive `tokio_rustls` themselves.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.refresh();
        Arc::clone(
            &self
                .0
                .current
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// Loads the files again if they changed since the last attempt. Returns whether a new
    /// configuration is in use. A file that does not load is logged and the old one kept.
    pub fn refresh(&self) -> bool {
        // A few stat calls: cheap enough to run on the reactor for every accept.
        let now = Fingerprint::of(&self.0.files);
        {
            let mut tried = self.0.tried.lock().unwrap_or_else(PoisonError::into_inner);
            if *tried == now {
                return false;
            }
            *tried = now;
        }
        match self.reload() {
            Ok(()) => true,
            Err(error) => {
                warn!(%error, "tls files changed but do not load; keeping the previous certificate");
                false
            }
        }
    }

    /// Loads the files now and, if they load, serves new connections with them.
    pub fn reload(&self) -> Result<()> {
        let inner = &self.0;
        let config = load(
            &inner.files,
            inner.client_auth,
            &inner.alpn,
            &inner.provider,
        )?;
        *inner
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(config);
        info!(cert_file = %inner.files.cert.display(), "tls certificate loaded");
        Ok(())
    }
}

/// What identifies the files' contents without reading them: per file, size, modification
/// time and inode (a rotation by rename changes the inode even within one mtime tick).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint(Vec<Option<(u64, Option<SystemTime>, u64)>>);

impl Fingerprint {
    fn of(files: &Files) -> Fingerprint {
        let paths = [
            Some(&files.cert),
            Some(&files.key),
            files.client_ca.as_ref(),
        ];
        Fingerprint(
            paths
                .into_iter()
                .flatten()
                .map(|p| std::fs::metadata(p).ok().map(|m| stamp(&m)))
                .collect(),
        )
    }
}

#[cfg(unix)]
fn stamp(m: &std::fs::Metadata) -> (u64, Option<SystemTime>, u64) {
    use std::os::unix::fs::MetadataExt as _;
    (m.len(), m.modified().ok(), m.ino())
}

#[cfg(not(unix))]
fn stamp(m: &std::fs::Metadata) -> (u64, Option<SystemTime>, u64) {
    (m.len(), m.modified().ok(), 0)
}

fn load(
    files: &Files,
    client_auth: ClientAuth,
    alpn: &[Vec<u8>],
    provider: &Arc<CryptoProvider>,
) -> Result<ServerConfig> {
    let chain = read_certs(&files.cert)?;
    let key = read_key(&files.key)?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(provider))
        .with_safe_default_protocol_versions()
        .map_err(|source| Error::Identity {
            cert: files.cert.clone(),
            key: files.key.clone(),
            source,
        })?;
    let builder = match (client_auth, &files.client_ca) {
        (ClientAuth::None, _) => builder.with_no_client_auth(),
        (_, None) => return Err(Error::NoClientCa(client_auth)),
        (_, Some(ca_path)) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(ca_path)? {
                roots.add(cert).map_err(|e| Error::Pem {
                    path: ca_path.clone(),
                    what: format!("not a usable CA certificate: {e}"),
                })?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider));
            let verifier = if client_auth == ClientAuth::Requested {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier.build().map_err(|source| Error::ClientCa {
                path: ca_path.clone(),
                source,
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|source| Error::Identity {
            cert: files.cert.clone(),
            key: files.key.clone(),
            source,
        })?;
    config.alpn_protocols = alpn.to_vec();
    Ok(config)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Pem {
            path: path.to_owned(),
            what: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(Error::Pem {
            path: path.to_owned(),
            what: "no CERTIFICATE block".to_owned(),
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| Error::Pem {
        path: path.to_owned(),
        what: match e {
            rustls::pki_types::pem::Error::NoItemsFound => "no PRIVATE KEY block".to_owned(),
            e => e.to_string(),
        },
    })
}
