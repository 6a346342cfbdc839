//! Weft's security core, sans io: one principal model for every listener, ACLs and the
//! [`acl::Authorizer`], SASL server exchanges ([`sasl`]), JWT validation ([`jwt`]) and the
//! HTTP pieces ([`http`]: RFC 6750 `WWW-Authenticate`, an `AuthLayer` yielding a
//! [`Principal`]).
//!
//! Nothing here opens a socket or reads a clock on its own: SASL exchanges are state
//! machines fed with the client's bytes, JWKS documents come from a [`jwt::JwksFetcher`] the
//! edge provides, time comes from a [`Clock`]. ACLs and SCRAM credentials live in the state
//! store ([`store`], migration component `auth`).
//!
//! [`internal`]: `weft serve`'s own principal (`User:weft-internal`) and its per-process
//! secret, for the process's own Kafka and HTTP clients.

pub mod acl;
pub mod config;
pub mod http;
pub mod internal;
pub mod jwt;
pub mod principal;
pub mod sasl;
pub mod store;

pub use acl::{
    AclBinding, AclFilter, Authorizer, AuthorizerConfig, Decision, Operation, PatternType,
    Permission, ResourcePattern, ResourceType,
};
pub use config::SecurityConfig;
pub use internal::{INTERNAL_USER, InternalCredential};
pub use principal::{Principal, PrincipalMapping};

/// Seconds since the Unix epoch, injected so token expiry and rate limits are tested without
/// waiting.
pub trait Clock: Send + Sync + 'static {
    fn now_secs(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_secs(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// Fills `buf` from the operating system's random source (nonces, salts).
pub fn random_bytes(buf: &mut [u8]) {
    use rand::TryRng as _;
    // The OS source failing is not something to continue past: a predictable nonce or salt
    // would silently weaken every exchange.
    #[allow(clippy::expect_used)] // see above
    rand::rngs::SysRng
        .try_fill_bytes(buf)
        .expect("the operating system's random source failed");
}
