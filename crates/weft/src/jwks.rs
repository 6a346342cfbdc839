//! The JWKS fetcher behind `[security.jwt] jwks_url`, over `http://` or `https://`.
//!
//! ```text
//! let fetcher = jwks::fetcher(section)?;   // Option<Arc<dyn JwksFetcher>>, None without jwks_url
//! section.validator(fetcher, clock)?;      // weft-auth's Jwks caches and rate-limits the fetches
//! ```
//!
//! - **https** verifies the issuer's certificate (chain and name) against `[security.jwt]
//!   ca_file` when set, else the system's CA bundle ([`crate::tls_client`]: rustls on *ring*,
//!   the build weft-tls already has; no new crate). `ca_file` with an `http://` URL is refused
//!   rather than ignored: it would suggest a protection that is not there.
//! - **One connection per fetch** (hyper's HTTP/1 client over the TCP or TLS stream): fetches
//!   are rare (weft-auth's cache allows one per `jwks_min_refresh_secs` at most), so pooling
//!   would only keep a socket open to the issuer.
//! - **Bounded**: connecting takes at most 5 s, the whole fetch 10 s, the document 1 MiB; no
//!   redirects are followed. Errors are strings for the logs; they never reach clients.

// Until http_auth.rs's validators call `fetcher` (the lead wires it; helper H1 owns that
// file), only the tests use this module.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use axum::http::{Request, Uri, header};
use http_body_util::BodyExt as _;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use weft_auth::config::JwtSection;
use weft_auth::jwt::{JwksFetcher, JwtKeySet};

use crate::tls_client::{self, ClientTls};

/// A JWKS larger than this is refused (a real one is a few kB).
const MAX_JWKS_BYTES: usize = 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The fetcher for `section.jwks_url` (`None` without one), to pass to
/// `JwtSection::validator`.
pub(crate) fn fetcher(section: &JwtSection) -> anyhow::Result<Option<Arc<dyn JwksFetcher>>> {
    let Some(url) = &section.jwks_url else {
        return Ok(None);
    };
    let f = HttpJwksFetcher::new(url, section.ca_file.as_deref())?;
    Ok(Some(Arc::new(f)))
}

/// Fetches one JWKS URL, over http or https.
pub(crate) struct HttpJwksFetcher {
    uri: Uri,
    /// `host:port` to connect to.
    addr: String,
    host: String,
    /// Present for https.
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl HttpJwksFetcher {
    /// Checks the URL and, for https, reads the CA file now (a bad file fails startup, not
    /// the first token).
    pub(crate) fn new(url: &str, ca_file: Option<&Path>) -> anyhow::Result<HttpJwksFetcher> {
        let uri: Uri = url
            .parse()
            .with_context(|| format!("[security.jwt] jwks_url {url:?} is not a URL"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => bail!("[security.jwt] jwks_url {url:?} is not an http(s) URL"),
        };
        let Some(host) = uri.host().map(str::to_owned) else {
            bail!("[security.jwt] jwks_url {url:?} has no host");
        };
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            let tls = ClientTls {
                ca_file: ca_file.map(Path::to_path_buf),
                identity: None,
            };
            Some(
                tls.config()
                    .context("[security.jwt] TLS for an https jwks_url")?,
            )
        } else {
            if let Some(ca) = ca_file {
                bail!(
                    "[security.jwt] ca_file {} is set but jwks_url {url:?} is not https",
                    ca.display()
                );
            }
            None
        };
        // An IPv6 host comes bracketed from the URI; `connect` wants it so too.
        let addr = format!("{host}:{port}");
        Ok(HttpJwksFetcher {
            uri,
            addr,
            host,
            tls,
        })
    }

    async fn get(&self) -> anyhow::Result<JwtKeySet> {
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.addr))
            .await
            .map_err(|_| anyhow::anyhow!("connecting to {} timed out", self.addr))?
            .with_context(|| format!("connecting to {}", self.addr))?;
        let body = match &self.tls {
            Some(config) => {
                let tls = tls_client::connect(config.clone(), &self.host, tcp).await?;
                self.exchange(tls).await?
            }
            None => self.exchange(tcp).await?,
        };
        serde_json::from_slice(&body).context("not a JWKS")
    }

    /// One GET over `io`; the body of a 2xx answer.
    async fn exchange<IO>(&self, io: IO) -> anyhow::Result<bytes::Bytes>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .context("HTTP handshake")?;
        // Drives the connection until the response is read; ends with it.
        let conn = tokio::spawn(conn);
        let path = self.uri.path_and_query().map_or("/", |p| p.as_str());
        let authority = self
            .uri
            .authority()
            .map_or(self.host.as_str(), |a| a.as_str());
        let request = Request::get(path)
            .header(header::HOST, authority)
            .header(header::ACCEPT, "application/json")
            .header(header::USER_AGENT, "weft")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .context("building the request")?;
        let response = sender.send_request(request).await.context("request")?;
        if !response.status().is_success() {
            conn.abort();
            bail!("status {}", response.status());
        }
        let body = http_body_util::Limited::new(response.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reading the body: {e}"))?
            .to_bytes();
        conn.abort();
        Ok(body)
    }
}

// `JwksFetcher` is an `async_trait` trait; written out by hand (what the macro generates),
// as http_auth.rs does, so the binary needs no extra dependency for one impl.
impl JwksFetcher for HttpJwksFetcher {
    fn fetch<'life0, 'async_trait>(
        &'life0 self,
    ) -> Pin<Box<dyn Future<Output = Result<JwtKeySet, String>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            match tokio::time::timeout(FETCH_TIMEOUT, self.get()).await {
                Ok(Ok(set)) => Ok(set),
                Ok(Err(e)) => Err(format!("GET {}: {e:#}", self.uri)),
                Err(_) => Err(format!(
                    "GET {}: timed out after {FETCH_TIMEOUT:?}",
                    self.uri
                )),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    use super::*;

    /// RFC 7517's example EC key (appendix A.1).
    const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhNUmB3wL5rtpmL9XIvb7M","use":"sig","alg":"ES256","kid":"k1"}]}"#;

    /// A one-route HTTP/1.1 server answering `status` and `body` to every request, over TLS
    /// with weft-tls' listener config when `tls` is set; sends each request head it reads.
    async fn serve(
        tls: Option<weft_tls::Tls>,
        status: &'static str,
        body: &'static str,
    ) -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (heads, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (tls, heads) = (tls.clone(), heads.clone());
                tokio::spawn(async move {
                    match tls {
                        Some(tls) => {
                            // A refused handshake is what some tests want.
                            if let Ok((stream, _)) = tls.accept(tcp).await {
                                answer(stream, status, body, heads).await;
                            }
                        }
                        None => answer(tcp, status, body, heads).await,
                    }
                });
            }
        });
        (addr, rx)
    }

    async fn answer<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
        mut s: S,
        status: &str,
        body: &str,
        heads: mpsc::UnboundedSender<String>,
    ) {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if s.read_exact(&mut byte).await.is_err() {
                return;
            }
            head.push(byte[0]);
            // Not HTTP (a TLS ClientHello starts with 0x16): answer plaintext at once, as a
            // plain server would, instead of waiting for a blank line that never comes.
            if head.len() == 1 && !byte[0].is_ascii_alphabetic() {
                let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
                return;
            }
        }
        let _ = heads.send(String::from_utf8_lossy(&head).into_owned());
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = s.write_all(response.as_bytes()).await;
        let _ = s.shutdown().await;
    }

    /// `weft dev-certs`' files for 127.0.0.1 in `dir`, and a TLS listener config over them.
    fn dev_tls(dir: &Path) -> (weft_tls::dev::DevCertFiles, weft_tls::Tls) {
        let files = weft_tls::dev::write_dev_certs(dir, &["127.0.0.1".to_owned()], "client")
            .expect("dev certs");
        let section = weft_auth::config::TlsSection {
            cert_file: Some(files.server_cert.clone()),
            key_file: Some(files.server_key.clone()),
            ..Default::default()
        };
        (files, weft_tls::Tls::from_config(&section).expect("tls"))
    }

    fn section(url: String, ca_file: Option<&Path>) -> JwtSection {
        JwtSection {
            jwks_url: Some(url),
            ca_file: ca_file.map(Path::to_path_buf),
            ..JwtSection::default()
        }
    }

    async fn fetch(url: String, ca_file: Option<&Path>) -> Result<JwtKeySet, String> {
        let f = fetcher(&section(url, ca_file))
            .map_err(|e| format!("{e:#}"))?
            .expect("a fetcher for a jwks_url");
        f.fetch().await
    }

    #[tokio::test]
    async fn https_jwks_is_verified_against_the_configured_ca() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (files, tls) = dev_tls(&dir.path().join("issuer"));
        let (addr, mut heads) = serve(Some(tls), "200 OK", JWKS).await;
        let url = format!("https://{addr}/.well-known/jwks.json?v=1");

        let set = fetch(url.clone(), Some(&files.ca_cert))
            .await
            .expect("fetched over https");
        assert_eq!(set.keys.len(), 1);
        assert_eq!(set.keys[0].common.key_id.as_deref(), Some("k1"));
        let head = heads.recv().await.expect("request head");
        assert!(
            head.starts_with("GET /.well-known/jwks.json?v=1 HTTP/1.1\r\n"),
            "{head}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("host: {addr}\r\n")),
            "{head}"
        );

        // Another CA (a second `weft dev-certs` run): the issuer's certificate is refused.
        let (other, _) = dev_tls(&dir.path().join("other"));
        let err = fetch(url.clone(), Some(&other.ca_cert))
            .await
            .expect_err("an untrusted certificate");
        assert!(err.contains("TLS handshake"), "{err}");
        assert!(err.to_lowercase().contains("certificate"), "{err}");

        // The right CA, the wrong name: the certificate is for 127.0.0.1, not localhost.
        let by_name = format!("https://localhost:{}/.well-known/jwks.json", addr.port());
        let err = fetch(by_name, Some(&files.ca_cert))
            .await
            .expect_err("a certificate for another name");
        assert!(err.to_lowercase().contains("certificate"), "{err}");
    }

    #[tokio::test]
    async fn errors_are_described_and_plain_http_still_works() {
        let (addr, _heads) = serve(None, "200 OK", JWKS).await;
        let set = fetch(format!("http://{addr}/jwks"), None)
            .await
            .expect("http");
        assert_eq!(set.keys.len(), 1);

        let (addr, _heads) = serve(None, "404 Not Found", "{}").await;
        let err = fetch(format!("http://{addr}/jwks"), None)
            .await
            .expect_err("404");
        assert!(err.contains("status 404"), "{err}");

        let (addr, _heads) = serve(None, "200 OK", "{\"not\":\"a jwks\"}").await;
        let err = fetch(format!("http://{addr}/jwks"), None)
            .await
            .expect_err("not a JWKS");
        assert!(err.contains("not a JWKS"), "{err}");

        // A plaintext server behind an https URL: the handshake fails, it does not hang.
        let dir = tempfile::tempdir().expect("tempdir");
        let (files, _) = dev_tls(dir.path());
        let err = fetch(format!("https://{addr}/jwks"), Some(&files.ca_cert))
            .await
            .expect_err("no TLS there");
        assert!(err.contains("TLS handshake"), "{err}");

        // Configuration errors come at startup, not with the first token.
        let missing = dir.path().join("missing.pem");
        let cases: [(&str, Option<&Path>, &str); 3] = [
            ("ftp://issuer/jwks", None, "not an http(s) URL"),
            ("http://issuer/jwks", Some(&files.ca_cert), "is not https"),
            ("https://issuer/jwks", Some(&missing), "missing.pem"),
        ];
        for (url, ca, expected) in cases {
            let err = fetcher(&section(url.to_owned(), ca))
                .err()
                .map(|e| format!("{e:#}"))
                .unwrap_or_default();
            assert!(err.contains(expected), "{url}: {err:?}");
        }
    }
}
