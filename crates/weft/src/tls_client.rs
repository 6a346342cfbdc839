//! TLS for the binary's own clients: `weft acl|user` over SSL / SASL_SSL and the https JWKS
//! fetcher ([`crate::jwks`]). rustls on the *ring* provider, chosen explicitly as weft-tls
//! does for the listeners (no process-wide default provider).
//!
//! Roots are the PEM file the user names (`ssl.ca.location`, `[security.jwt] ca_file`), else
//! the system's bundle: `SSL_CERT_FILE`, then the usual distribution paths. The server's name
//! (DNS name or IP address) is always verified against its certificate, as librdkafka does by
//! default (`ssl.endpoint.identification.algorithm=https`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Where distributions keep the system's CA bundle (Debian/Ubuntu, Fedora/RHEL, Alpine and
/// the BSDs, openSUSE), tried in this order after `SSL_CERT_FILE`.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
    "/etc/ssl/ca-bundle.pem",
];

/// What a client TLS connection trusts and presents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ClientTls {
    /// CA bundle (PEM) the server's certificate must chain to; the system's when `None`.
    pub(crate) ca_file: Option<PathBuf>,
    /// Client certificate chain and key (PEM) for mutual TLS.
    pub(crate) identity: Option<(PathBuf, PathBuf)>,
}

impl ClientTls {
    /// The rustls configuration: reads and checks the files now.
    pub(crate) fn config(&self) -> anyhow::Result<Arc<ClientConfig>> {
        let roots = match &self.ca_file {
            Some(path) => roots_from(path)?,
            None => system_roots()?,
        };
        // Deprecated since rustls 0.23.48 for lacking post-quantum key exchange; ring is the
        // provider weft-tls' listeners use (no aws-lc / cmake in the build), so the same.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_root_certificates(roots);
        let config = match &self.identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = certificates(cert)?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| anyhow::anyhow!("{}: no private key: {e}", key.display()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .with_context(|| format!("{} and its key", cert.display()))?
            }
        };
        Ok(Arc::new(config))
    }
}

/// The certificates of a PEM file (at least one).
fn certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        bail!("{}: no PEM certificate in it", path.display());
    }
    Ok(certs)
}

fn roots_from(path: &Path) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certificates(path)?);
    if added == 0 {
        bail!("{}: no usable CA certificate in it", path.display());
    }
    Ok(roots)
}

/// The system's CA bundle: `SSL_CERT_FILE` when set, else the first distribution path that
/// exists.
fn system_roots() -> anyhow::Result<RootCertStore> {
    if let Some(file) = std::env::var_os("SSL_CERT_FILE") {
        return roots_from(Path::new(&file)).context("SSL_CERT_FILE");
    }
    match SYSTEM_BUNDLES.iter().map(Path::new).find(|p| p.exists()) {
        Some(path) => roots_from(path),
        None => bail!(
            "no system CA bundle found (tried {}); name a CA file",
            SYSTEM_BUNDLES.join(", ")
        ),
    }
}

/// The name `host` (of `host:port`) is verified as: an IP address or a DNS name.
pub(crate) fn server_name(host: &str) -> anyhow::Result<ServerName<'static>> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned())
        .map_err(|_| anyhow::anyhow!("{host:?} is neither a DNS name nor an IP address"))
}

/// Splits `host:port` (IPv6 in brackets) into the host.
pub(crate) fn host_of(addr: &str) -> &str {
    match addr.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => addr,
    }
}

/// A TLS handshake over `tcp` with `host`'s certificate verified.
pub(crate) async fn connect(
    config: Arc<ClientConfig>,
    host: &str,
    tcp: TcpStream,
) -> anyhow::Result<TlsStream<TcpStream>> {
    let name = server_name(host)?;
    TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .with_context(|| format!("TLS handshake with {host}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_names() {
        assert_eq!(host_of("127.0.0.1:9093"), "127.0.0.1");
        assert_eq!(host_of("[::1]:9093"), "[::1]");
        assert_eq!(host_of("broker.example"), "broker.example");
        assert!(matches!(server_name("[::1]"), Ok(ServerName::IpAddress(_))));
        assert!(matches!(
            server_name("localhost"),
            Ok(ServerName::DnsName(_))
        ));
        assert!(server_name("not a name").is_err());
    }

    #[test]
    fn files_are_checked_when_the_config_is_built() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = weft_tls::dev::write_dev_certs(dir.path(), &["127.0.0.1".to_owned()], "cli")
            .expect("dev certs");
        let ok = ClientTls {
            ca_file: Some(files.ca_cert.clone()),
            identity: Some((files.client_cert.clone(), files.client_key.clone())),
        };
        assert!(ok.config().is_ok());
        let missing = ClientTls {
            ca_file: Some(dir.path().join("nope.pem")),
            identity: None,
        };
        assert!(missing.config().is_err());
        // A key file given as the CA: no certificate in it.
        let not_a_ca = ClientTls {
            ca_file: Some(files.client_key.clone()),
            identity: None,
        };
        let err = not_a_ca.config().expect_err("a key is not a CA");
        assert!(err.to_string().contains("no PEM certificate"), "{err:#}");
        // A client certificate with another certificate's key.
        let mismatched = ClientTls {
            ca_file: Some(files.ca_cert.clone()),
            identity: Some((files.client_cert.clone(), files.server_key.clone())),
        };
        assert!(mismatched.config().is_err());
    }
}
