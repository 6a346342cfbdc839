//! The embedded broker's listener map from `[security]` (Kafka's `listeners`,
//! `advertised.listeners`, `sasl.enabled.mechanisms`, `connections.max.reauth.ms`).
//!
//! `kafka_listen` is always the PLAINTEXT listener; `[security] listeners` adds SSL,
//! SASL_PLAINTEXT and SASL_SSL ones. Connections on `kafka_listen` are `User:ANONYMOUS`,
//! which has no rights under authorisation unless ACLs grant them.
//!
//! `weft serve`'s own Kafka clients (gateway, lag sampler, outbox relay) use
//! `kafka_listen` while security is off. With authorisation or a SASL listener on, they
//! use [`internal`]: a SASL_PLAINTEXT listener on `127.0.0.1:0`, advertised as its bound
//! address, that accepts only the process's [`InternalCredential`] over PLAIN
//! (`User:weft-internal`, a super-user) — Kafka's inter-broker listener, in effect.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use tokio::net::TcpListener;
use tracing::info;
use weft_auth::jwt::JwtValidator;
use weft_auth::sasl::Mechanism;
use weft_auth::sasl::session::SaslConfig;
use weft_auth::store::ScramStore;
use weft_auth::{InternalCredential, SecurityConfig};
use weft_broker::security::{Listener, ListenerAddress, SaslSettings, SecurityProtocol};

/// The extra listeners, bound, and the SASL settings of the broker.
pub(crate) struct KafkaListeners {
    pub(crate) listeners: Vec<(TcpListener, Listener)>,
    pub(crate) sasl: SaslSettings,
}

/// Binds `[security] listeners` and prepares SASL: credentials in the state store (the
/// `auth` tables are migrated here), OAUTHBEARER through `jwt` when given.
pub(crate) async fn prepare(
    security: &SecurityConfig,
    store: &weft_store::Store,
    jwt: Option<Arc<JwtValidator>>,
) -> anyhow::Result<KafkaListeners> {
    let mut listeners = Vec::new();
    let mut seen = Vec::new();
    let mut tls: Option<weft_tls::Tls> = None;
    for entry in &security.listeners {
        let addr: ListenerAddress = entry
            .parse()
            .map_err(|e: String| anyhow::anyhow!("[security] listeners: {e}"))?;
        match addr.protocol {
            SecurityProtocol::Plaintext => {
                bail!("[security] listeners: {entry:?}: the PLAINTEXT listener is kafka_listen")
            }
            SecurityProtocol::Ssl | SecurityProtocol::SaslSsl if tls.is_none() => {
                let Some(section) = &security.tls else {
                    bail!(
                        "[security] listeners: {entry:?} needs [security.tls] (cert_file, key_file)"
                    )
                };
                // One handle for every TLS listener: files checked now, reloaded on change.
                tls = Some(weft_tls::Tls::from_config(section).context("[security.tls]")?);
            }
            _ => {}
        }
        if seen.contains(&addr.protocol) {
            bail!("[security] listeners: two {} listeners", addr.protocol);
        }
        seen.push(addr.protocol);
        let ip = addr
            .host
            .parse::<std::net::IpAddr>()
            .with_context(|| format!("[security] listeners: {entry:?}: host must be an IP"))?;
        let socket = crate::serve::bind(
            &format!("kafka {}", addr.protocol),
            SocketAddr::new(ip, addr.port),
        )
        .await?;
        let bound = socket
            .local_addr()
            .context("kafka listener has no address")?;
        let (host, port) = advertised(security, addr.protocol)?
            .unwrap_or_else(|| (bound.ip().to_string(), bound.port()));
        listeners.push((
            socket,
            Listener {
                protocol: addr.protocol,
                advertised_host: host,
                advertised_port: port,
                tls: addr.protocol.uses_tls().then(|| tls.clone()).flatten(),
                sasl: None,
            },
        ));
    }
    let max_reauth = security
        .connections_max_reauth_ms
        .filter(|ms| *ms > 0)
        .map(std::time::Duration::from_millis);
    let sasl = if seen.iter().any(|p| p.uses_sasl()) {
        weft_auth::store::migrate(store)
            .await
            .context("cannot prepare the auth tables")?;
        let mechanisms: Vec<Mechanism> = if security.sasl_mechanisms.is_empty() {
            Mechanism::ALL.to_vec()
        } else {
            security
                .sasl_mechanisms
                .iter()
                .map(|m| {
                    m.parse::<Mechanism>()
                        .map_err(|e| anyhow::anyhow!("[security] sasl_mechanisms: {e}"))
                })
                .collect::<anyhow::Result<_>>()?
        };
        // OAUTHBEARER validates the same JWTs as HTTP (`[security.jwt]`).
        let jwt = match jwt {
            Some(v) => Some(v),
            None if mechanisms.contains(&Mechanism::OAuthBearer) => {
                crate::http_auth::jwt_validator(security)?
            }
            None => None,
        };
        let config = SaslConfig {
            mechanisms,
            credentials: Some(ScramStore::new(store.clone())),
            jwt,
            internal: None,
        };
        info!(mechanisms = ?config.offered().iter().map(|m| m.as_str()).collect::<Vec<_>>(), "kafka sasl mechanisms");
        SaslSettings {
            config: Some(Arc::new(config)),
            max_reauth,
        }
    } else {
        SaslSettings {
            config: None,
            max_reauth,
        }
    };
    Ok(KafkaListeners { listeners, sasl })
}

/// Whether `weft serve`'s own clients need [`internal`]: authorisation is on (anonymous
/// clients have no rights) or a SASL listener exists.
pub(crate) fn needs_internal(security: &SecurityConfig) -> bool {
    security.authorization
        || security.listeners.iter().any(|l| {
            l.parse::<ListenerAddress>()
                .is_ok_and(|a| a.protocol.uses_sasl())
        })
}

/// The internal listener: SASL_PLAINTEXT on `127.0.0.1:0` (loopback only, whatever the
/// other listeners bind), advertised as the address it bound, with its own SASL settings:
/// PLAIN against `credential` and nothing else.
pub(crate) async fn internal(
    credential: &InternalCredential,
) -> anyhow::Result<(TcpListener, Listener)> {
    let socket = crate::serve::bind(
        "kafka internal",
        SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0)),
    )
    .await?;
    let bound = socket
        .local_addr()
        .context("kafka internal listener has no address")?;
    let config = SaslConfig {
        mechanisms: vec![Mechanism::Plain],
        credentials: None,
        jwt: None,
        internal: Some(credential.clone()),
    };
    let listener = Listener {
        protocol: SecurityProtocol::SaslPlaintext,
        advertised_host: bound.ip().to_string(),
        advertised_port: bound.port(),
        tls: None,
        sasl: Some(SaslSettings {
            config: Some(Arc::new(config)),
            max_reauth: None,
        }),
    };
    Ok((socket, listener))
}

/// librdkafka properties of a client of the internal listener.
pub(crate) fn internal_client_properties(credential: &InternalCredential) -> Vec<(String, String)> {
    [
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanism", "PLAIN"),
        ("sasl.username", credential.username()),
        ("sasl.password", credential.secret()),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

/// The `advertised_listeners` entry of `protocol`, if any.
fn advertised(
    security: &SecurityConfig,
    protocol: SecurityProtocol,
) -> anyhow::Result<Option<(String, u16)>> {
    for entry in &security.advertised_listeners {
        let a: ListenerAddress = entry
            .parse()
            .map_err(|e: String| anyhow::anyhow!("[security] advertised_listeners: {e}"))?;
        if a.protocol == protocol {
            return Ok(Some((a.host, a.port)));
        }
    }
    Ok(None)
}
