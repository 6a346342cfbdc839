//! The `[security]` table of `weft.toml`: listeners, SASL mechanisms, authorisation, JWT
//! validation, TLS and HTTP authentication. Everything off by default (the embedded default on
//! loopback keeps working with no credentials).
//!
//! This crate owns the keys and their validation; `weft serve` only embeds the table.

use std::path::PathBuf;
use std::sync::Arc;

use jsonwebtoken::Algorithm;
use serde::Deserialize;

use crate::jwt::{Jwks, JwksFetcher, JwksSettings, JwtConfig, JwtValidator, KeySource, StaticKey};
use crate::{AuthorizerConfig, Clock, Principal, PrincipalMapping};

/// `[security]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Extra Kafka listeners, Kafka's way: `PROTOCOL://host:port` with PROTOCOL one of
    /// PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL. `kafka_listen` stays the PLAINTEXT one.
    pub listeners: Vec<String>,
    /// Kafka's `advertised.listeners`: `PROTOCOL://host:port`, the address Metadata gives
    /// clients of the listener with that protocol (default: the address it bound).
    pub advertised_listeners: Vec<String>,
    /// Kafka's `connections.max.reauth.ms` (KIP-368): SASL sessions last at most this long
    /// and the client re-authenticates; 0 or absent: only an OAUTHBEARER token's expiry
    /// bounds a session.
    pub connections_max_reauth_ms: Option<u64>,
    /// SASL mechanisms offered on SASL listeners (default: all four).
    pub sasl_mechanisms: Vec<String>,
    /// Authorise every Kafka, registry and gateway action against the ACLs (default deny).
    pub authorization: bool,
    /// Principals (`User:<name>`) allowed everything.
    pub super_users: Vec<String>,
    /// Kafka's `allow.everyone.if.no.acl.found`.
    pub allow_if_no_acls: bool,
    /// `[security.jwt]`: bearer tokens on HTTP and SASL OAUTHBEARER.
    pub jwt: Option<JwtSection>,
    /// `[security.tls]`: certificate for SSL / SASL_SSL listeners and HTTPS.
    pub tls: Option<TlsSection>,
    /// `[security.http]`: authentication on the HTTP and registry listeners.
    pub http: HttpSection,
}

/// `[security.jwt]`: how bearer tokens (HTTP, SASL OAUTHBEARER) are validated.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtSection {
    /// Required `iss` (unchecked when absent).
    pub issuer: Option<String>,
    /// Required `aud`: the token must name it (unchecked when absent).
    pub audience: Option<String>,
    /// JWKS document URL (fetched, cached, refreshed on unknown `kid`): `http://` or
    /// `https://`.
    pub jwks_url: Option<String>,
    /// CA bundle (PEM) an `https` `jwks_url`'s certificate must chain to; the system's CA
    /// bundle when absent.
    pub ca_file: Option<PathBuf>,
    /// At most one JWKS fetch per this many seconds however many unknown `kid`s arrive
    /// (default 30).
    pub jwks_min_refresh_secs: Option<u64>,
    /// Keys older than this are refetched (default 3600).
    pub jwks_max_age_secs: Option<u64>,
    /// Static public keys instead of a JWKS URL: `[[security.jwt.public_keys]]` with `file`
    /// (PEM), `algorithm` and an optional `kid`.
    pub public_keys: Vec<PublicKeyEntry>,
    /// Allowed clock skew for `exp` / `nbf`, in seconds (default 60).
    pub clock_skew_secs: Option<u64>,
    /// Claim the principal name is taken from (default `sub`).
    pub principal_claim: Option<String>,
    /// Accepted signature algorithms (default RS256, ES256, EdDSA); only asymmetric ones.
    pub algorithms: Vec<String>,
    /// Scopes every token must carry, whatever the route.
    pub required_scopes: Vec<String>,
}

/// `[[security.jwt.public_keys]]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicKeyEntry {
    pub file: PathBuf,
    /// `RS256`, `ES256`, `EdDSA`…
    pub algorithm: String,
    pub kid: Option<String>,
}

/// `[security.tls]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// CA bundle client certificates are verified against (mutual TLS).
    pub client_ca_file: Option<PathBuf>,
    /// `none`, `requested` or `required`.
    pub client_auth: Option<String>,
}

/// `[security.http]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    /// Require a valid bearer token (or Basic credentials where allowed) on every HTTP route
    /// except health checks.
    pub require_auth: bool,
    /// Accept HTTP Basic (SCRAM users' passwords) on the registry.
    pub basic: bool,
    /// Serve HTTPS on the HTTP and registry listeners with `[security.tls]`.
    pub tls: bool,
    /// Accept `?access_token=` on SSE and WebSocket requests (browsers cannot set headers
    /// there); default true. Never accepted on other requests.
    pub query_token: bool,
    /// Serve `/metrics` without credentials (a Prometheus without a token); default false.
    pub metrics_public: bool,
    /// The `realm` of `WWW-Authenticate` challenges (default `weft`).
    pub realm: String,
    /// `[security.http.scopes]`: the scope a bearer token needs per route group.
    pub scopes: HttpScopes,
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            require_auth: false,
            basic: false,
            tls: false,
            query_token: true,
            metrics_public: false,
            realm: "weft".into(),
            scopes: HttpScopes::default(),
        }
    }
}

/// `[security.http.scopes]`: unset groups need no scope (ACLs still apply).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpScopes {
    /// Registry reads (GET).
    pub registry_read: Option<String>,
    /// Registry writes (POST, PUT, DELETE).
    pub registry_write: Option<String>,
    /// Gateway reads: GET under `/v1` (records, SSE, WebSocket, topic metadata).
    pub gateway_read: Option<String>,
    /// Gateway writes: POST/PUT/PATCH/DELETE under `/v1` (produce, consumers, webhooks).
    pub gateway_write: Option<String>,
    /// Everything else on the HTTP listener: `/ui`, `/metrics`, `/v1/groups`, `/v1/outbox`.
    pub admin: Option<String>,
}

/// A `[security]` setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("[security] {0}")]
    Invalid(String),
}

/// Signature algorithms by their JOSE names; HMAC and `none` refused.
pub fn parse_algorithm(name: &str) -> Result<Algorithm, ConfigError> {
    let alg: Algorithm = name
        .parse()
        .map_err(|_| ConfigError::Invalid(format!("unknown JWT algorithm {name:?}")))?;
    if matches!(alg.family(), jsonwebtoken::AlgorithmFamily::Hmac) {
        return Err(ConfigError::Invalid(format!(
            "JWT algorithm {name:?} is symmetric; only RS*, PS*, ES* and EdDSA are accepted"
        )));
    }
    Ok(alg)
}

impl SecurityConfig {
    /// Checks what can be checked without I/O: every principal parses, a JWT section names a
    /// key source, algorithms are asymmetric, `require_auth` has some way to authenticate.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        for u in &self.super_users {
            if u.parse::<Principal>().is_err() {
                return bad(format!("super_users: {u:?} is not User:<name>"));
            }
        }
        if let Some(jwt) = &self.jwt {
            jwt.validate()?;
        }
        if self.http.require_auth && self.jwt.is_none() && !self.http.basic {
            return bad(
                "http.require_auth needs [security.jwt] (bearer tokens) or http.basic = true"
                    .into(),
            );
        }
        if self.http.realm.is_empty() {
            return bad("http.realm is empty".into());
        }
        Ok(())
    }

    /// The authoriser's settings (share one [`crate::Authorizer`] between listeners).
    pub fn authorizer_config(&self) -> Result<AuthorizerConfig, ConfigError> {
        let super_users = self
            .super_users
            .iter()
            .map(|u| {
                u.parse::<Principal>().map_err(|_| {
                    ConfigError::Invalid(format!("super_users: {u:?} is not User:<name>"))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(AuthorizerConfig {
            enabled: self.authorization,
            super_users,
            allow_if_no_acls: self.allow_if_no_acls,
        })
    }
}

impl JwtSection {
    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        match &self.jwks_url {
            Some(u) if !(u.starts_with("http://") || u.starts_with("https://")) => {
                return bad(format!("jwt.jwks_url {u:?} is not an http(s) URL"));
            }
            None if self.public_keys.is_empty() => {
                return bad("[security.jwt] needs jwks_url or public_keys".into());
            }
            _ => {}
        }
        for a in &self.algorithms {
            parse_algorithm(a)?;
        }
        for k in &self.public_keys {
            parse_algorithm(&k.algorithm)?;
        }
        if self.principal_claim.as_deref() == Some("") {
            return bad("jwt.principal_claim is empty".into());
        }
        if self.jwks_min_refresh_secs == Some(0) {
            return bad(
                "jwt.jwks_min_refresh_secs must be at least 1 (it protects the issuer)".into(),
            );
        }
        Ok(())
    }

    /// The validator's checks.
    pub fn jwt_config(&self) -> Result<JwtConfig, ConfigError> {
        let defaults = JwtConfig::default();
        Ok(JwtConfig {
            issuers: self.issuer.iter().cloned().collect(),
            audiences: self.audience.iter().cloned().collect(),
            leeway_secs: self.clock_skew_secs.unwrap_or(defaults.leeway_secs),
            required_scopes: self.required_scopes.clone(),
            algorithms: if self.algorithms.is_empty() {
                defaults.algorithms
            } else {
                self.algorithms
                    .iter()
                    .map(|a| parse_algorithm(a))
                    .collect::<Result<_, _>>()?
            },
            principal: match self.principal_claim.as_deref() {
                None | Some("sub") => PrincipalMapping::Subject,
                Some(c) => PrincipalMapping::Claim(c.to_owned()),
            },
        })
    }

    /// The JWKS cache settings.
    pub fn jwks_settings(&self) -> JwksSettings {
        let d = JwksSettings::default();
        JwksSettings {
            min_refresh_interval_secs: self
                .jwks_min_refresh_secs
                .unwrap_or(d.min_refresh_interval_secs),
            max_age_secs: self.jwks_max_age_secs.unwrap_or(d.max_age_secs),
        }
    }

    /// A validator: the JWKS through `fetcher` when `jwks_url` is set (the caller builds the
    /// fetcher for that URL), else the static keys read from their PEM files now.
    pub fn validator(
        &self,
        fetcher: Option<Arc<dyn JwksFetcher>>,
        clock: Arc<dyn Clock>,
    ) -> Result<JwtValidator, ConfigError> {
        self.validate()?;
        let keys = match (&self.jwks_url, fetcher) {
            (Some(_), Some(f)) => KeySource::Jwks(Jwks::new(f, self.jwks_settings())),
            (Some(u), None) => {
                return Err(ConfigError::Invalid(format!(
                    "no fetcher for jwt.jwks_url {u:?}"
                )));
            }
            (None, _) => {
                let mut keys = Vec::new();
                for k in &self.public_keys {
                    let pem = std::fs::read(&k.file).map_err(|e| {
                        ConfigError::Invalid(format!("jwt public key {}: {e}", k.file.display()))
                    })?;
                    let key =
                        StaticKey::from_pem(k.kid.clone(), parse_algorithm(&k.algorithm)?, &pem)
                            .map_err(|e| {
                                ConfigError::Invalid(format!(
                                    "jwt public key {}: {e}",
                                    k.file.display()
                                ))
                            })?;
                    keys.push(key);
                }
                KeySource::Static(keys)
            }
        };
        Ok(JwtValidator::new(self.jwt_config()?, keys, clock))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<SecurityConfig, String> {
        let c: SecurityConfig = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn defaults_are_off() {
        let c = parse("").expect("empty");
        assert!(!c.http.require_auth && !c.http.basic && !c.authorization);
        assert!(c.http.query_token && !c.http.metrics_public);
        assert_eq!(c.http.realm, "weft");
    }

    #[test]
    fn full_table() {
        let c = parse(
            r#"
            authorization = true
            super_users = ["User:admin"]
            [jwt]
            issuer = "https://issuer.test"
            audience = "weft"
            jwks_url = "https://issuer.test/jwks"
            jwks_min_refresh_secs = 10
            algorithms = ["RS256", "ES256"]
            principal_claim = "client_id"
            clock_skew_secs = 5
            [http]
            require_auth = true
            basic = true
            metrics_public = true
            [http.scopes]
            registry_read = "registry-read"
            gateway_write = "gateway-write"
            "#,
        )
        .expect("valid");
        let jwt = c.jwt.as_ref().expect("jwt");
        let cfg = jwt.jwt_config().expect("config");
        assert_eq!(cfg.issuers, ["https://issuer.test"]);
        assert_eq!(cfg.audiences, ["weft"]);
        assert_eq!(cfg.leeway_secs, 5);
        assert_eq!(cfg.algorithms, [Algorithm::RS256, Algorithm::ES256]);
        assert_eq!(cfg.principal, PrincipalMapping::Claim("client_id".into()));
        assert_eq!(jwt.jwks_settings().min_refresh_interval_secs, 10);
        assert_eq!(
            c.http.scopes.registry_read.as_deref(),
            Some("registry-read")
        );
        assert_eq!(c.http.scopes.registry_write, None);
        let a = c.authorizer_config().expect("authorizer");
        assert!(a.enabled && a.super_users.contains(&Principal::user("admin")));
    }

    #[test]
    fn refused_settings() {
        let cases = [
            ("super_users = [\"admin\"]", "not User:<name>"),
            ("[http]\nrequire_auth = true", "needs [security.jwt]"),
            ("[jwt]\nissuer = \"x\"", "needs jwks_url or public_keys"),
            (
                "[jwt]\njwks_url = \"file:///etc/keys\"",
                "not an http(s) URL",
            ),
            (
                "[jwt]\njwks_url = \"http://a\"\nalgorithms = [\"HS256\"]",
                "symmetric",
            ),
            (
                "[jwt]\njwks_url = \"http://a\"\nalgorithms = [\"none\"]",
                "unknown JWT algorithm",
            ),
            (
                "[jwt]\njwks_url = \"http://a\"\njwks_min_refresh_secs = 0",
                "at least 1",
            ),
            (
                "[[jwt.public_keys]]\nfile = \"k.pem\"\nalgorithm = \"HS512\"",
                "symmetric",
            ),
            ("[http]\nrequire_auht = true", "unknown field"),
        ];
        for (text, want) in cases {
            let err = parse(text).expect_err(text);
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn static_keys_from_files() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys");
        let c = parse(&format!(
            "[jwt]\n[[jwt.public_keys]]\nfile = \"{dir}/rsa_public.pem\"\nalgorithm = \"RS256\"\nkid = \"rsa-1\"\n"
        ))
        .expect("valid");
        let jwt = c.jwt.expect("jwt");
        jwt.validator(None, Arc::new(crate::SystemClock))
            .expect("validator");
        let mut missing = jwt.clone();
        missing.public_keys[0].file = format!("{dir}/nope.pem").into();
        let err = missing
            .validator(None, Arc::new(crate::SystemClock))
            .expect_err("missing file");
        assert!(err.to_string().contains("nope.pem"), "{err}");
    }
}
