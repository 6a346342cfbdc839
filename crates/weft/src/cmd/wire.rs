//! One Kafka-protocol connection for the commands the rdkafka crate cannot serve (`weft acl`,
//! `weft user`: librdkafka's ACL and SCRAM admin calls are only reachable through its unsafe
//! FFI, which this workspace forbids): requests encoded with the `kafka-protocol` codec and
//! sent to the first bootstrap server.
//!
//! The connection honours the same client properties as the librdkafka commands (from
//! `--command-config` or `-X`, librdkafka's names), as Kafka's tools do with
//! `--command-config`:
//!
//! | property | values |
//! |---|---|
//! | `security.protocol` | `PLAINTEXT` (default), `SSL`, `SASL_PLAINTEXT`, `SASL_SSL` |
//! | `sasl.mechanism` (or `sasl.mechanisms`) | `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512` |
//! | `sasl.username`, `sasl.password` | the credential |
//! | `ssl.ca.location` | CA bundle (PEM) the broker's certificate must chain to; else the system's |
//! | `ssl.certificate.location`, `ssl.key.location` | client certificate and key (PEM) for mutual TLS |
//!
//! Other `sasl.*` / `ssl.*` properties are refused rather than ignored (an OAUTHBEARER or a
//! keystore setting would otherwise silently connect without it); librdkafka tuning
//! properties (`client.id`, timeouts…) do not concern this connection and are ignored.
//!
//! SASL is Kafka's: SaslHandshake v1 naming the mechanism, then SaslAuthenticate v1 frames
//! (PLAIN: one `\0user\0password` token; SCRAM: RFC 5802's client-first / client-final,
//! the proof computed by weft-auth's SCRAM client).

use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::{BufMut, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    RequestHeader, ResponseHeader, SaslAuthenticateRequest, SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use weft_auth::sasl::scram::ScramMechanism;

use super::{ClientArgs, REQUEST_TIMEOUT};
use crate::tls_client::{self, ClientTls};

/// Largest response accepted (a DescribeAcls of many thousands of ACLs fits).
const MAX_RESPONSE: usize = 64 * 1024 * 1024;

/// How long connecting (TCP, TLS and SASL) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// `security.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl Protocol {
    fn tls(self) -> bool {
        matches!(self, Protocol::Ssl | Protocol::SaslSsl)
    }

    fn sasl(self) -> bool {
        matches!(self, Protocol::SaslPlaintext | Protocol::SaslSsl)
    }
}

/// A SASL mechanism this connection can log in with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mechanism {
    Plain,
    Scram(ScramMechanism),
}

impl Mechanism {
    fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Scram(m) => m.as_str(),
        }
    }
}

/// A SASL login.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SaslLogin {
    pub(crate) mechanism: Mechanism,
    pub(crate) username: String,
    pub(crate) password: String,
}

impl std::fmt::Debug for SaslLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslLogin")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// How to connect, from the client properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Security {
    pub(crate) protocol: Protocol,
    pub(crate) sasl: Option<SaslLogin>,
    pub(crate) tls: ClientTls,
}

impl Security {
    /// Reads the properties (later ones win, as librdkafka applies them).
    pub(crate) fn from_properties(properties: &[(String, String)]) -> anyhow::Result<Security> {
        let mut protocol = None;
        let mut mechanism = None;
        let (mut username, mut password) = (None, None);
        let (mut ca, mut cert, mut key) = (None, None, None);
        for (k, v) in properties {
            match k.as_str() {
                "security.protocol" => {
                    protocol = Some(match v.to_ascii_uppercase().as_str() {
                        "PLAINTEXT" => Protocol::Plaintext,
                        "SSL" => Protocol::Ssl,
                        "SASL_PLAINTEXT" => Protocol::SaslPlaintext,
                        "SASL_SSL" => Protocol::SaslSsl,
                        _ => bail!(
                            "security.protocol {v:?}: expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
                        ),
                    })
                }
                "sasl.mechanism" | "sasl.mechanisms" => {
                    mechanism = Some(match v.to_ascii_uppercase().as_str() {
                        "PLAIN" => Mechanism::Plain,
                        "SCRAM-SHA-256" => Mechanism::Scram(ScramMechanism::Sha256),
                        "SCRAM-SHA-512" => Mechanism::Scram(ScramMechanism::Sha512),
                        _ => bail!(
                            "{k} {v:?}: weft acl/user log in with PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
                        ),
                    })
                }
                "sasl.username" => username = Some(v.clone()),
                "sasl.password" => password = Some(v.clone()),
                "ssl.ca.location" => ca = Some(v.into()),
                "ssl.certificate.location" => cert = Some(v.into()),
                "ssl.key.location" => key = Some(v.into()),
                // librdkafka's default; anything else would loosen the check.
                "ssl.endpoint.identification.algorithm" if v.eq_ignore_ascii_case("https") => {}
                _ if k.starts_with("sasl.") || k.starts_with("ssl.") => bail!(
                    "{k} is not supported by weft acl/user (they support security.protocol, sasl.mechanism, sasl.username, sasl.password, ssl.ca.location, ssl.certificate.location, ssl.key.location)"
                ),
                _ => {}
            }
        }
        let protocol = protocol.unwrap_or(Protocol::Plaintext);
        let sasl = if protocol.sasl() {
            let Some(username) = username else {
                bail!("security.protocol {protocol:?} needs sasl.username");
            };
            let Some(password) = password else {
                bail!("security.protocol {protocol:?} needs sasl.password");
            };
            Some(SaslLogin {
                // librdkafka's default mechanism.
                mechanism: mechanism.unwrap_or(Mechanism::Plain),
                username,
                password,
            })
        } else {
            if mechanism.is_some() || username.is_some() || password.is_some() {
                bail!(
                    "sasl.* properties given but security.protocol is {protocol:?}: set SASL_PLAINTEXT or SASL_SSL"
                );
            }
            None
        };
        let identity = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => bail!("ssl.certificate.location and ssl.key.location go together"),
        };
        if !protocol.tls() && (ca.is_some() || identity.is_some()) {
            bail!(
                "ssl.* properties given but security.protocol is {protocol:?}: set SSL or SASL_SSL"
            );
        }
        Ok(Security {
            protocol,
            sasl,
            tls: ClientTls {
                ca_file: ca,
                identity,
            },
        })
    }
}

/// The byte stream under the Kafka frames: TCP or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One connection speaking Kafka requests.
pub(crate) struct Wire {
    stream: Box<dyn Io>,
    correlation_id: i32,
    bootstrap: String,
}

impl Wire {
    /// Connects to the first of the comma-separated bootstrap servers, with TLS and SASL as
    /// the client properties say.
    pub(crate) async fn connect(client: &ClientArgs) -> anyhow::Result<Wire> {
        let security = Security::from_properties(&client.properties)?;
        let first = client.bootstrap.split(',').next().unwrap_or("").trim();
        // Built before connecting: a bad CA file is reported as such, not as a broker error.
        let tls = if security.protocol.tls() {
            Some(security.tls.config()?)
        } else {
            None
        };
        let connect = async {
            let tcp = TcpStream::connect(first)
                .await
                .with_context(|| format!("cannot connect to the broker at {first}"))?;
            let stream: Box<dyn Io> = match tls {
                Some(config) => Box::new(
                    tls_client::connect(config, tls_client::host_of(first), tcp)
                        .await
                        .with_context(|| format!("broker at {first}"))?,
                ),
                None => Box::new(tcp),
            };
            let mut wire = Wire {
                stream,
                correlation_id: 0,
                bootstrap: first.to_owned(),
            };
            if let Some(login) = &security.sasl {
                wire.authenticate(login).await?;
            }
            anyhow::Ok(wire)
        };
        tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| {
                anyhow::anyhow!("no answer from the broker at {first} (timed out connecting)")
            })?
    }

    /// Kafka's SASL exchange: SaslHandshake v1, then SaslAuthenticate v1 frames.
    async fn authenticate(&mut self, login: &SaslLogin) -> anyhow::Result<()> {
        let name = login.mechanism.name();
        let req = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(name));
        let resp = self.call(&req, 1).await?;
        if resp.error_code != 0 {
            let enabled: Vec<&str> = resp.mechanisms.iter().map(|m| m.as_str()).collect();
            bail!(
                "the broker at {} refused SASL mechanism {name}: {} (enabled: {})",
                self.bootstrap,
                describe_code(resp.error_code),
                enabled.join(", ")
            );
        }
        match login.mechanism {
            Mechanism::Plain => {
                let token = format!("\0{}\0{}", login.username, login.password);
                self.sasl_step(token.into_bytes()).await?;
            }
            Mechanism::Scram(mech) => {
                let mut nonce = [0u8; 24];
                weft_auth::random_bytes(&mut nonce);
                let nonce: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
                let first_bare = format!("n={},r={nonce}", scram_name(&login.username));
                let server_first = self
                    .sasl_step(format!("n,,{first_bare}").into_bytes())
                    .await?;
                let server_first = String::from_utf8(server_first)
                    .context("the broker's SCRAM server-first message is not UTF-8")?;
                // RFC 5802: the server's nonce extends ours; anything else is not our exchange.
                let ours = server_first
                    .split(',')
                    .find_map(|a| a.strip_prefix("r="))
                    .is_some_and(|r| r.starts_with(&nonce) && r.len() > nonce.len());
                if !ours {
                    bail!(
                        "the broker at {} sent an invalid SCRAM server-first message",
                        self.bootstrap
                    );
                }
                let Some(fin) = weft_auth::sasl::scram::client::final_message(
                    mech,
                    &login.password,
                    &first_bare,
                    &server_first,
                ) else {
                    bail!(
                        "the broker at {} sent an invalid SCRAM server-first message",
                        self.bootstrap
                    );
                };
                self.sasl_step(fin.into_bytes()).await?;
            }
        }
        Ok(())
    }

    /// One SaslAuthenticate round trip: the server's bytes, or the refusal as an error.
    async fn sasl_step(&mut self, token: Vec<u8>) -> anyhow::Result<Vec<u8>> {
        let req = SaslAuthenticateRequest::default().with_auth_bytes(token.into());
        let resp = self.call(&req, 1).await?;
        if resp.error_code != 0 {
            let m = resp.error_message.as_deref().unwrap_or("");
            bail!(
                "SASL authentication with the broker at {} failed: {} {m}",
                self.bootstrap,
                describe_code(resp.error_code)
            );
        }
        Ok(resp.auth_bytes.to_vec())
    }

    /// Sends `req` as `version` and reads its response.
    pub(crate) async fn call<R: Request>(
        &mut self,
        req: &R,
        version: i16,
    ) -> anyhow::Result<R::Response> {
        tokio::time::timeout(REQUEST_TIMEOUT, self.call_inner(req, version))
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "no answer from the broker at {} within {REQUEST_TIMEOUT:?}",
                    self.bootstrap
                )
            })?
    }

    async fn call_inner<R: Request>(
        &mut self,
        req: &R,
        version: i16,
    ) -> anyhow::Result<R::Response> {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("weft-cli")));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, R::header_version(version))
            .context("encoding the request header")?;
        req.encode(&mut body, version)
            .context("encoding the request")?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_i32(i32::try_from(body.len()).context("request too large")?);
        frame.extend_from_slice(&body);
        let bootstrap = self.bootstrap.clone();
        let io = |e: std::io::Error| anyhow::anyhow!("talking to the broker at {bootstrap}: {e}");
        self.stream.write_all(&frame).await.map_err(io)?;
        self.stream.flush().await.map_err(io)?;
        let len = self.stream.read_i32().await.map_err(|e| {
            anyhow::anyhow!(
                "the broker at {} closed the connection ({e}); does it serve this API version and security protocol?",
                self.bootstrap
            )
        })?;
        let len = usize::try_from(len)
            .ok()
            .filter(|l| *l >= 4 && *l <= MAX_RESPONSE);
        let Some(len) = len else {
            bail!(
                "the broker at {} sent an invalid response length",
                self.bootstrap
            );
        };
        let mut buf = vec![0u8; len];
        self.stream.read_exact(&mut buf).await.map_err(io)?;
        let mut bytes = bytes::Bytes::from(buf);
        let header = ResponseHeader::decode(
            &mut bytes,
            <R::Response as HeaderVersion>::header_version(version),
        )
        .context("decoding the response header")?;
        if header.correlation_id != self.correlation_id {
            bail!(
                "the broker answered another request (correlation id {})",
                header.correlation_id
            );
        }
        R::Response::decode(&mut bytes, version).context("decoding the broker's response")
    }
}

/// RFC 5802's `saslname`: `=` and `,` escaped.
fn scram_name(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

/// A Kafka error code as a message: name and description.
pub(crate) fn describe_code(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        Some(e) => format!("{e:?} ({code}): {e}"),
        None => format!("error code {code}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(kv: &[(&str, &str)]) -> Vec<(String, String)> {
        kv.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn check(kv: &[(&str, &str)]) -> Result<Security, String> {
        Security::from_properties(&props(kv)).map_err(|e| e.to_string())
    }

    #[test]
    fn security_from_properties() {
        let plain = check(&[]).expect("plaintext");
        assert_eq!(plain.protocol, Protocol::Plaintext);
        assert_eq!(plain.sasl, None);
        // librdkafka tuning properties do not concern this connection.
        assert!(check(&[("client.id", "x"), ("socket.timeout.ms", "5")]).is_ok());

        let s = check(&[
            ("security.protocol", "sasl_ssl"),
            ("sasl.mechanisms", "SCRAM-SHA-512"),
            ("sasl.username", "admin"),
            ("sasl.password", "pw"),
            ("ssl.ca.location", "/ca.pem"),
            ("ssl.certificate.location", "/c.pem"),
            ("ssl.key.location", "/c.key"),
            ("ssl.endpoint.identification.algorithm", "https"),
        ])
        .expect("sasl_ssl");
        assert_eq!(s.protocol, Protocol::SaslSsl);
        let login = s.sasl.expect("login");
        assert_eq!(login.mechanism, Mechanism::Scram(ScramMechanism::Sha512));
        assert_eq!(
            (login.username.as_str(), login.password.as_str()),
            ("admin", "pw")
        );
        assert_eq!(s.tls.ca_file, Some("/ca.pem".into()));
        assert_eq!(s.tls.identity, Some(("/c.pem".into(), "/c.key".into())));
        // The password never shows in Debug output.
        assert!(!format!("{login:?}").contains("pw"));

        // Later properties win (the command-config file, then -X).
        let s = check(&[
            ("security.protocol", "SSL"),
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.username", "a"),
            ("sasl.password", "b"),
        ])
        .expect("later wins");
        assert_eq!(s.protocol, Protocol::SaslPlaintext);
        assert_eq!(s.sasl.map(|l| l.mechanism), Some(Mechanism::Plain));

        let refused: &[(&[(&str, &str)], &str)] = &[
            (&[("security.protocol", "TLS")], "expected PLAINTEXT"),
            (
                &[("security.protocol", "SASL_SSL"), ("sasl.password", "p")],
                "needs sasl.username",
            ),
            (
                &[("security.protocol", "SASL_SSL"), ("sasl.username", "u")],
                "needs sasl.password",
            ),
            (&[("sasl.username", "u")], "set SASL_PLAINTEXT or SASL_SSL"),
            (&[("ssl.ca.location", "/ca")], "set SSL or SASL_SSL"),
            (
                &[("security.protocol", "SSL"), ("ssl.key.location", "/k")],
                "go together",
            ),
            (&[("sasl.mechanism", "OAUTHBEARER")], "PLAIN, SCRAM-SHA-256"),
            (&[("sasl.jaas.config", "x")], "not supported"),
            (&[("ssl.keystore.location", "x")], "not supported"),
            (
                &[("ssl.endpoint.identification.algorithm", "none")],
                "not supported",
            ),
        ];
        for (kv, expected) in refused {
            let err = check(kv).expect_err("refused");
            assert!(err.contains(expected), "{kv:?}: {err}");
        }
    }

    #[test]
    fn scram_names_are_escaped() {
        assert_eq!(scram_name("a=b,c"), "a=3Db=2Cc");
        assert_eq!(scram_name("alice"), "alice");
    }
}
