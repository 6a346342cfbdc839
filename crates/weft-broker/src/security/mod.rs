//! Kafka listener security: the listener map (Kafka's PLAINTEXT, SSL, SASL_PLAINTEXT and
//! SASL_SSL, several at once) and the per-connection SASL driver ([`sasl`]) that runs
//! weft-auth's exchanges from SaslHandshake / SaslAuthenticate frames.
//!
//! The model, as Kafka's: each listener has one security protocol and its own advertised
//! address (Metadata answers with the address of the listener the client came through). On
//! a SASL listener a connection is `User:ANONYMOUS` and may send only ApiVersions,
//! SaslHandshake and SaslAuthenticate until authentication succeeds; any other request
//! closes it. On PLAINTEXT listeners every connection stays `User:ANONYMOUS`; on SSL ones
//! too, unless mutual TLS verified a client certificate: then it is `User:<CN>` (on
//! SASL_SSL the SASL principal wins, as in Kafka).
//!
//! TLS (weft-tls) is negotiated in the connection's own task before any Kafka frame; a
//! client that does not speak TLS fails the handshake and only its connection closes.
//! Fetch responses on TLS connections are copied through the TLS stream: `sendfile(2)`
//! cannot carry encryption done in user space (Kafka makes the same exception).

pub(crate) mod sasl;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use weft_auth::sasl::session::SaslConfig;

/// Kafka's `security.protocol` of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub const ALL: &'static [SecurityProtocol] = &[
        SecurityProtocol::Plaintext,
        SecurityProtocol::Ssl,
        SecurityProtocol::SaslPlaintext,
        SecurityProtocol::SaslSsl,
    ];

    /// The name, as in Kafka's `listeners`.
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    /// The listener's name in health checks (`/readyz`): `kafka-sasl_ssl`…
    pub fn check_name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "kafka-plaintext",
            SecurityProtocol::Ssl => "kafka-ssl",
            SecurityProtocol::SaslPlaintext => "kafka-sasl_plaintext",
            SecurityProtocol::SaslSsl => "kafka-sasl_ssl",
        }
    }

    /// Connections authenticate with SASL before anything else.
    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }

    /// Connections are TLS.
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SecurityProtocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        SecurityProtocol::ALL
            .iter()
            .copied()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown security protocol {s:?} (PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL)"
                )
            })
    }
}

/// One `PROTOCOL://host:port` entry of `listeners` or `advertised_listeners`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerAddress {
    pub protocol: SecurityProtocol,
    pub host: String,
    pub port: u16,
}

impl FromStr for ListenerAddress {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (protocol, rest) = s
            .split_once("://")
            .ok_or_else(|| format!("listener {s:?} is not PROTOCOL://HOST:PORT"))?;
        let protocol = protocol.parse()?;
        let (host, port) = crate::split_host_port(rest)
            .ok_or_else(|| format!("listener {s:?} is not PROTOCOL://HOST:PORT"))?;
        Ok(ListenerAddress {
            protocol,
            host,
            port,
        })
    }
}

/// One listener of the broker: its protocol and the address Metadata tells its clients.
#[derive(Clone)]
pub struct Listener {
    pub protocol: SecurityProtocol,
    pub advertised_host: String,
    pub advertised_port: u16,
    /// The TLS side of SSL and SASL_SSL listeners (certificate reloaded on change, optional
    /// mutual TLS). Required for them: a TLS listener without it refuses every connection.
    pub tls: Option<weft_tls::Tls>,
    /// This listener's own SASL settings instead of the broker's (`BrokerConfig::sasl`), as
    /// Kafka's `listener.name.<name>.sasl.*`: `weft serve`'s internal listener accepts only
    /// its own credential there.
    pub sasl: Option<SaslSettings>,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("protocol", &self.protocol)
            .field("advertised_host", &self.advertised_host)
            .field("advertised_port", &self.advertised_port)
            .field("tls", &self.tls.is_some())
            .field("own_sasl", &self.sasl.is_some())
            .finish()
    }
}

impl Listener {
    /// A PLAINTEXT listener advertising `host:port`.
    pub fn plaintext(host: impl Into<String>, port: u16) -> Listener {
        Listener {
            protocol: SecurityProtocol::Plaintext,
            advertised_host: host.into(),
            advertised_port: port,
            tls: None,
            sasl: None,
        }
    }
}

/// SASL settings shared by the SASL listeners.
#[derive(Debug, Clone, Default)]
pub struct SaslSettings {
    /// Mechanisms and their stores; `None`: every SaslHandshake on a SASL listener gets
    /// UNSUPPORTED_SASL_MECHANISM with an empty list.
    pub config: Option<Arc<SaslConfig>>,
    /// Kafka's `connections.max.reauth.ms` (KIP-368): sessions last at most this long
    /// (and at most until an OAUTHBEARER token expires); a connection that has not
    /// re-authenticated by then is closed on its next request. `None`: only token expiry
    /// bounds a session.
    pub max_reauth: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_addresses() {
        let check = |s: &str, want: Result<(SecurityProtocol, &str, u16), &str>| {
            let got: Result<ListenerAddress, String> = s.parse();
            match (got, want) {
                (Ok(a), Ok((p, h, port))) => {
                    assert_eq!((a.protocol, a.host.as_str(), a.port), (p, h, port), "{s}")
                }
                (Err(e), Err(needle)) => assert!(e.contains(needle), "{s}: {e}"),
                (got, want) => panic!("{s}: got {got:?}, want {want:?}"),
            }
        };
        use SecurityProtocol::*;
        check(
            "PLAINTEXT://127.0.0.1:9092",
            Ok((Plaintext, "127.0.0.1", 9092)),
        );
        check("SSL://[::1]:9093", Ok((Ssl, "::1", 9093)));
        check(
            "SASL_PLAINTEXT://0.0.0.0:0",
            Ok((SaslPlaintext, "0.0.0.0", 0)),
        );
        check(
            "SASL_SSL://kafka.example.com:9095",
            Ok((SaslSsl, "kafka.example.com", 9095)),
        );
        check("sasl_ssl://h:1", Err("unknown security protocol"));
        check("GSSAPI://h:1", Err("unknown security protocol"));
        check("SASL_SSL//h:1", Err("not PROTOCOL://HOST:PORT"));
        check("SSL://h", Err("not PROTOCOL://HOST:PORT"));
        check("SSL://:9093", Err("not PROTOCOL://HOST:PORT"));
        check("SSL://h:99999", Err("not PROTOCOL://HOST:PORT"));
        for p in SecurityProtocol::ALL {
            assert_eq!(p.as_str().parse::<SecurityProtocol>(), Ok(*p));
            assert_eq!(p.uses_tls(), p.as_str().contains("SSL"));
            assert_eq!(p.uses_sasl(), p.as_str().starts_with("SASL"));
        }
    }
}
