//! Development certificates: a local CA, a server certificate for some host names and IP
//! addresses, and client certificates for mutual TLS. Used by `weft dev-certs` and by tests;
//! not a way to run production PKI (the CA's key is never written to disk).

use std::io;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

pub use rcgen::Error;

/// A certificate and its private key, PEM.
#[derive(Debug, Clone)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

/// A throw-away certificate authority that signs server and client certificates.
pub struct DevCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa").finish_non_exhaustive()
    }
}

impl DevCa {
    /// A new CA named `name` (its certificate's CN), with a fresh ECDSA P-256 key.
    pub fn new(name: &str) -> Result<DevCa, Error> {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(DevCa { issuer })
    }

    /// The CA certificate, PEM: what clients trust (`ssl.ca.location`, `--cacert`).
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate valid for `hosts` (DNS names and IP addresses, as subject
    /// alternative names); its CN is the first host.
    pub fn server(&self, hosts: &[String]) -> Result<Pem, Error> {
        let mut params = CertificateParams::new(hosts.to_vec())?;
        params.distinguished_name = dn(hosts.first().map_or("weft", String::as_str));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    /// A client certificate whose subject CN is `name` (the principal `User:<name>`).
    pub fn client(&self, name: &str) -> Result<Pem, Error> {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    fn sign(&self, mut params: CertificateParams) -> Result<Pem, Error> {
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

/// What `weft dev-certs` writes, by file.
#[derive(Debug, Clone)]
pub struct DevCertFiles {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl DevCertFiles {
    /// The file names inside `dir`.
    pub fn in_dir(dir: &Path) -> DevCertFiles {
        DevCertFiles {
            ca_cert: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        }
    }
}

/// Generates a CA, a server certificate for `hosts` and a client certificate for
/// `client_name`, and writes them into `dir` (created if missing; existing files replaced,
/// each by a rename so a running server never reads half a file). Keys are readable by the
/// owner only.
pub fn write_dev_certs(
    dir: &Path,
    hosts: &[String],
    client_name: &str,
) -> io::Result<DevCertFiles> {
    let ca = DevCa::new("Weft development CA").map_err(io::Error::other)?;
    let server = ca.server(hosts).map_err(io::Error::other)?;
    let client = ca.client(client_name).map_err(io::Error::other)?;
    std::fs::create_dir_all(dir)?;
    let files = DevCertFiles::in_dir(dir);
    write_atomic(&files.ca_cert, &ca.cert_pem(), false)?;
    write_atomic(&files.server_key, &server.key, true)?;
    write_atomic(&files.server_cert, &server.cert, false)?;
    write_atomic(&files.client_key, &client.key, true)?;
    write_atomic(&files.client_cert, &client.cert, false)?;
    Ok(files)
}

/// Writes `contents` to a temporary file beside `path` and renames it over `path`.
pub fn write_atomic(path: &Path, contents: &str, private: bool) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    {
        use std::io::Write as _;
        let mut file = options.open(&tmp)?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}
