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
//! the proof computed by weft-auth's SCRAM client, and the broker's server signature
//! checked, so a broker that does not hold the credential is not believed).

use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::{BufMut, BytesMut};
use hmac::Hmac;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    RequestHeader, ResponseHeader, SaslAuthenticateRequest, SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use sha2::{Sha256, Sha512};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use weft_auth::sasl::scram::{ScramCredential, ScramMechanism};

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
                let mut scram = ScramClient::new(mech, &login.username, &login.password);
                let server_first = self.sasl_step(scram.client_first().into_bytes()).await?;
                let fin = scram.client_final(&server_first).with_context(|| {
                    format!("SCRAM exchange with the broker at {}", self.bootstrap)
                })?;
                let server_final = self.sasl_step(fin.into_bytes()).await?;
                scram.verify_server_final(&server_final).with_context(|| {
                    format!("SCRAM exchange with the broker at {}", self.bootstrap)
                })?;
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

/// The client side of RFC 5802 (SCRAM), sans io: builds `client-first` and `client-final`
/// and checks the broker's `server-final` signature, which proves the broker holds the
/// user's credential (not merely that it let us in). The proof itself is weft-auth's SCRAM
/// client's.
struct ScramClient {
    mech: ScramMechanism,
    password: String,
    nonce: String,
    first_bare: String,
    /// After `client_final`: what `server-final` must carry (`v=<base64>`).
    expected_server_final: Option<String>,
}

impl ScramClient {
    fn new(mech: ScramMechanism, user: &str, password: &str) -> ScramClient {
        let mut nonce = [0u8; 24];
        weft_auth::random_bytes(&mut nonce);
        let nonce: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
        ScramClient::with_nonce(mech, user, password, nonce)
    }

    fn with_nonce(mech: ScramMechanism, user: &str, password: &str, nonce: String) -> ScramClient {
        let first_bare = format!("n={},r={nonce}", weft_auth::sasl::encode_saslname(user));
        ScramClient {
            mech,
            password: password.to_owned(),
            nonce,
            first_bare,
            expected_server_final: None,
        }
    }

    fn client_first(&self) -> String {
        format!("n,,{}", self.first_bare)
    }

    fn client_final(&mut self, server_first: &[u8]) -> anyhow::Result<String> {
        let server_first = std::str::from_utf8(server_first)
            .map_err(|_| anyhow::anyhow!("the server-first message is not UTF-8"))?;
        let attr = |name: &str| server_first.split(',').find_map(|a| a.strip_prefix(name));
        // The server's nonce extends ours; anything else is not our exchange.
        let ours =
            attr("r=").is_some_and(|r| r.starts_with(&self.nonce) && r.len() > self.nonce.len());
        let salt = attr("s=").and_then(base64_decode);
        let iterations = attr("i=").and_then(|i| i.parse::<u32>().ok());
        let (true, Some(salt), Some(iterations)) = (ours, salt, iterations) else {
            bail!("invalid server-first message");
        };
        let Some(fin) = weft_auth::sasl::scram::client::final_message(
            self.mech,
            &self.password,
            &self.first_bare,
            server_first,
        ) else {
            bail!("invalid server-first message");
        };
        let without_proof = fin.rsplit_once(",p=").map_or(fin.as_str(), |(w, _)| w);
        let auth_message = format!("{},{server_first},{without_proof}", self.first_bare);
        let server_key =
            ScramCredential::derive(self.mech, &self.password, &salt, iterations).server_key;
        let signature = match self.mech {
            ScramMechanism::Sha256 => hmac::<Hmac<Sha256>>(&server_key, auth_message.as_bytes()),
            ScramMechanism::Sha512 => hmac::<Hmac<Sha512>>(&server_key, auth_message.as_bytes()),
        };
        self.expected_server_final = Some(format!("v={}", base64_encode(&signature)));
        Ok(fin)
    }

    fn verify_server_final(&self, server_final: &[u8]) -> anyhow::Result<()> {
        let got = std::str::from_utf8(server_final).unwrap_or("");
        match &self.expected_server_final {
            Some(want) if got == want => Ok(()),
            _ if got.starts_with("e=") => bail!("the broker refused: {got}"),
            _ => bail!(
                "the broker's server signature is wrong: it does not hold this user's credential"
            ),
        }
    }
}

fn hmac<M: hmac::Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length: this cannot fail.
    let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (RFC 4648 §4), as SCRAM carries salts and signatures.
fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(B64[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let body = text.trim_end_matches('=');
    if text.len() - body.len() > 2 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut n, mut bits) = (0u32, 0u32);
    for c in body.bytes() {
        let v = B64.iter().position(|b| *b == c)? as u32;
        n = n << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((n >> bits) as u8);
            n &= (1 << bits) - 1;
        }
    }
    Some(out)
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
    fn base64_round_trips() {
        // RFC 4648's test vectors.
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(raw.as_bytes()), enc);
            assert_eq!(base64_decode(enc).as_deref(), Some(raw.as_bytes()), "{enc}");
        }
        for bad in ["Zg=", "Z===", "Zm9v!A==", "Zg"] {
            assert_eq!(base64_decode(bad), None, "{bad}");
        }
    }

    /// The whole exchange against weft-auth's SCRAM server: the broker's signature checks,
    /// a forged one (a server without the credential) does not, a user name with `=` and
    /// `,` is escaped.
    #[test]
    fn scram_exchange_against_weft_auth_server() {
        use weft_auth::sasl::scram::ScramServer;
        for mech in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
            let user = "al=ice,1";
            let cred = ScramCredential::derive(mech, "pencil", b"salt-0123456789", 4096);
            let mut client = ScramClient::new(mech, user, "pencil");
            let mut server = ScramServer::new(mech);
            let first = server
                .client_first(client.client_first().as_bytes())
                .expect("client-first");
            assert_eq!(first.username, user);
            let server_first = server.server_first(Some(&cred)).expect("server-first");
            let fin = client.client_final(&server_first).expect("client-final");
            let ok = server.client_final(fin.as_bytes()).expect("proof accepted");
            client
                .verify_server_final(&ok.server_final)
                .expect("server signature");
            assert!(client.verify_server_final(b"v=AAAA").is_err());
            assert!(client.verify_server_final(b"").is_err());

            // A server that did not extend our nonce is not our exchange.
            let mut other = ScramClient::new(mech, user, "pencil");
            assert!(other.client_final(&server_first).is_err());
            // A wrong password: the proof is refused by the server.
            let mut wrong = ScramClient::new(mech, user, "pencil2");
            let mut server = ScramServer::new(mech);
            server
                .client_first(wrong.client_first().as_bytes())
                .expect("client-first");
            let server_first = server.server_first(Some(&cred)).expect("server-first");
            let fin = wrong.client_final(&server_first).expect("client-final");
            assert!(server.client_final(fin.as_bytes()).is_err());
        }
    }
}
