//! The `[security]` table of `weft.toml`: listeners, SASL mechanisms, authorisation, JWT
//! validation, TLS and HTTP authentication. Everything off by default (the embedded default on
//! loopback keeps working with no credentials).
//!
//! This crate owns the keys and their validation; `weft serve` only embeds the table.

use std::path::PathBuf;

use serde::Deserialize;

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

/// `[security.jwt]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtSection {
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// JWKS document URL (fetched, cached, refreshed on unknown `kid`).
    pub jwks_url: Option<String>,
    /// Static public keys (PEM files) instead of, or besides, a JWKS URL.
    pub public_key_files: Vec<PathBuf>,
    /// Allowed clock skew for `exp` / `nbf`, in seconds.
    pub clock_skew_secs: Option<u64>,
    /// Claim the principal name is taken from (default `sub`).
    pub principal_claim: Option<String>,
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
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    /// Require a valid bearer token (or Basic credentials where allowed) on every HTTP route
    /// except health checks.
    pub require_auth: bool,
    /// Accept HTTP Basic (SCRAM users' passwords) on the registry.
    pub basic: bool,
    /// Serve HTTPS on the HTTP and registry listeners with `[security.tls]`.
    pub tls: bool,
}
