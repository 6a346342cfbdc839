//! JWT bearer-token validation for HTTP and SASL OAUTHBEARER.
//!
//! Rules, in order (each failure is a distinct [`JwtError`]):
//! 1. at most [`MAX_TOKEN_BYTES`], three dot-separated parts, a JSON header;
//! 2. the header's `alg` is one of the configured asymmetric algorithms (default RS256,
//!    ES256, EdDSA): `none` and every HMAC algorithm are refused before any key is touched,
//!    so a token "signed" with the public key as an HMAC secret never reaches verification;
//! 3. the key is chosen by `kid` (static keys or a JWKS; without `kid`, the only key for the
//!    algorithm) and must be declared for that same algorithm; an unknown `kid` refreshes the
//!    JWKS at most once per `min_refresh_interval` (a flood of made-up `kid`s costs the
//!    issuer one request per interval);
//! 4. the signature verifies (the `jsonwebtoken` crate, RustCrypto backend);
//! 5. `exp` is present and `now <= exp + leeway`; `nbf`, when present, `nbf <= now + leeway`
//!    (time from an injected [`Clock`]);
//! 6. `iss` is one of the configured issuers and `aud` names one of the configured audiences
//!    (each checked when configured);
//! 7. the required scopes are all present (`scope`/`scp`);
//! 8. the principal is mapped from the claims ([`PrincipalMapping`]).
//!
//! Error descriptions never contain the token or any part of it.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use tracing::{debug, warn};

use crate::principal::{self, MappingError};
use crate::{Clock, Principal, PrincipalMapping};

pub use jsonwebtoken::Algorithm as JwtAlgorithm;
pub use jsonwebtoken::jwk::JwkSet as JwtKeySet;

/// Longer tokens are refused unread.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The algorithms a validator may accept: asymmetric only.
const ASYMMETRIC: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token is too long")]
    TooLong,
    #[error("the token's algorithm {0:?} is not accepted")]
    AlgorithmNotAllowed(String),
    #[error("no signing key with the token's key id")]
    UnknownKey,
    #[error("no signing key with the token's key id (key refresh rate-limited)")]
    UnknownKeyRefreshLimited,
    #[error("the signing keys are unavailable")]
    KeysUnavailable,
    #[error("the signing key is not for the token's algorithm")]
    KeyAlgorithmMismatch,
    #[error("the token's signature is invalid")]
    BadSignature,
    #[error("the token has no valid {0} claim")]
    MissingClaim(&'static str),
    #[error("the token expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token's issuer is not accepted")]
    WrongIssuer,
    #[error("the token's audience is not accepted")]
    WrongAudience,
    #[error("the token lacks required scope {0:?}")]
    MissingScope(String),
    #[error("{0}")]
    Principal(#[from] MappingError),
}

impl JwtError {
    /// RFC 6750's error code for this failure.
    pub fn bearer_error(&self) -> crate::http::BearerError {
        match self {
            JwtError::MissingScope(_) => crate::http::BearerError::InsufficientScope,
            _ => crate::http::BearerError::InvalidToken,
        }
    }
}

pub type Result<T, E = JwtError> = std::result::Result<T, E>;

/// Fetches a JWKS document (the binary implements it over HTTP; tests serve a set from
/// memory). Errors are described for logs; they never reach clients.
#[async_trait::async_trait]
pub trait JwksFetcher: Send + Sync + 'static {
    async fn fetch(&self) -> std::result::Result<JwkSet, String>;
}

/// A configured public key.
#[derive(Clone)]
pub struct StaticKey {
    pub kid: Option<String>,
    pub algorithm: Algorithm,
    pub key: DecodingKey,
}

impl fmt::Debug for StaticKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("{0:?} is not an asymmetric signature algorithm")]
    NotAsymmetric(Algorithm),
    #[error("invalid PEM public key: {0}")]
    Pem(String),
}

impl StaticKey {
    /// A public key in PEM (`-----BEGIN PUBLIC KEY-----` SPKI, or PKCS#1 for RSA).
    pub fn from_pem(
        kid: Option<String>,
        algorithm: Algorithm,
        pem: &[u8],
    ) -> Result<StaticKey, KeyError> {
        use jsonwebtoken::AlgorithmFamily as F;
        let key = match algorithm.family() {
            F::Rsa => DecodingKey::from_rsa_pem(pem),
            F::Ec => DecodingKey::from_ec_pem(pem),
            F::Ed => DecodingKey::from_ed_pem(pem),
            F::Hmac => return Err(KeyError::NotAsymmetric(algorithm)),
        }
        .map_err(|e| KeyError::Pem(e.to_string()))?;
        Ok(StaticKey {
            kid,
            algorithm,
            key,
        })
    }
}

/// Where verification keys come from.
pub enum KeySource {
    Static(Vec<StaticKey>),
    Jwks(Jwks),
}

/// Settings of a [`Jwks`] cache.
#[derive(Debug, Clone, Copy)]
pub struct JwksSettings {
    /// At most one fetch per this many seconds, however many unknown `kid`s arrive.
    pub min_refresh_interval_secs: u64,
    /// Keys older than this are refetched on the next validation (subject to the limit
    /// above).
    pub max_age_secs: u64,
}

impl Default for JwksSettings {
    fn default() -> Self {
        JwksSettings {
            min_refresh_interval_secs: 30,
            max_age_secs: 3600,
        }
    }
}

/// A cached JWKS, refreshed when stale or on an unknown `kid`, rate-limited.
pub struct Jwks {
    fetcher: Arc<dyn JwksFetcher>,
    settings: JwksSettings,
    keys: RwLock<Cached>,
    /// Serialises fetches so concurrent misses cause one request.
    refresh: tokio::sync::Mutex<()>,
    fetches: AtomicU64,
}

#[derive(Default)]
struct Cached {
    by_kid: HashMap<String, (Option<Algorithm>, DecodingKey)>,
    /// Keys without a `kid`.
    anonymous: Vec<(Option<Algorithm>, DecodingKey)>,
    fetched_at: Option<u64>,
    last_attempt: Option<u64>,
}

impl Jwks {
    pub fn new(fetcher: Arc<dyn JwksFetcher>, settings: JwksSettings) -> Jwks {
        Jwks {
            fetcher,
            settings,
            keys: RwLock::new(Cached::default()),
            refresh: tokio::sync::Mutex::new(()),
            fetches: AtomicU64::new(0),
        }
    }

    /// How many times the fetcher was called (for tests and metrics).
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    fn lookup(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Option<(Option<Algorithm>, DecodingKey)> {
        let c = self.keys.read().unwrap_or_else(|p| p.into_inner());
        match kid {
            Some(k) => c.by_kid.get(k).cloned(),
            None => only_one(
                c.by_kid
                    .values()
                    .chain(&c.anonymous)
                    .filter(|(a, k)| a.is_none_or(|a| a == alg) && k.family() == alg.family()),
            )
            .cloned(),
        }
    }

    async fn key(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
        now: u64,
    ) -> Result<(Option<Algorithm>, DecodingKey)> {
        let stale = {
            let c = self.keys.read().unwrap_or_else(|p| p.into_inner());
            c.fetched_at
                .is_none_or(|t| now.saturating_sub(t) >= self.settings.max_age_secs)
        };
        if !stale && let Some(k) = self.lookup(kid, alg) {
            return Ok(k);
        }
        let _one_fetch = self.refresh.lock().await;
        // Another task may have refreshed while this one waited.
        if let Some(k) = self.lookup(kid, alg) {
            let c = self.keys.read().unwrap_or_else(|p| p.into_inner());
            let fresh = c
                .fetched_at
                .is_some_and(|t| now.saturating_sub(t) < self.settings.max_age_secs);
            if fresh || !self.may_fetch(&c, now) {
                return Ok(k);
            }
        }
        let allowed = {
            let c = self.keys.read().unwrap_or_else(|p| p.into_inner());
            self.may_fetch(&c, now)
        };
        if !allowed {
            return self
                .lookup(kid, alg)
                .ok_or(JwtError::UnknownKeyRefreshLimited);
        }
        self.keys
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .last_attempt = Some(now);
        self.fetches.fetch_add(1, Ordering::Relaxed);
        match self.fetcher.fetch().await {
            Ok(set) => {
                let mut fresh = Cached {
                    fetched_at: Some(now),
                    last_attempt: Some(now),
                    ..Cached::default()
                };
                for jwk in &set.keys {
                    match usable(jwk) {
                        Some((alg, key)) => match &jwk.common.key_id {
                            Some(kid) => {
                                fresh.by_kid.insert(kid.clone(), (alg, key));
                            }
                            None => fresh.anonymous.push((alg, key)),
                        },
                        None => {
                            debug!(kid = ?jwk.common.key_id, "jwks key skipped: not a usable signature key")
                        }
                    }
                }
                *self.keys.write().unwrap_or_else(|p| p.into_inner()) = fresh;
                self.lookup(kid, alg).ok_or(JwtError::UnknownKey)
            }
            Err(e) => {
                warn!(error = %e, "jwks fetch failed; keeping the previous keys");
                self.lookup(kid, alg).ok_or(JwtError::KeysUnavailable)
            }
        }
    }

    fn may_fetch(&self, c: &Cached, now: u64) -> bool {
        c.last_attempt
            .is_none_or(|t| now.saturating_sub(t) >= self.settings.min_refresh_interval_secs)
    }
}

fn only_one<T>(mut it: impl Iterator<Item = T>) -> Option<T> {
    let first = it.next()?;
    it.next().is_none().then_some(first)
}

/// A JWK usable for verification: an asymmetric public key (`use` absent or `sig`).
fn usable(jwk: &Jwk) -> Option<(Option<Algorithm>, DecodingKey)> {
    use jsonwebtoken::jwk::{AlgorithmParameters, PublicKeyUse};
    if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
        return None;
    }
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return None;
    }
    let alg = match jwk.common.key_algorithm {
        // `KeyAlgorithm` serialises as its JOSE name; encryption algorithms do not parse.
        Some(ka) => Some(
            serde_json::to_value(ka)
                .ok()?
                .as_str()?
                .parse::<Algorithm>()
                .ok()?,
        ),
        None => None,
    };
    if alg.is_some_and(|a| !ASYMMETRIC.contains(&a)) {
        return None;
    }
    Some((alg, DecodingKey::from_jwk(jwk).ok()?))
}

/// What the validator checks besides the signature.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// Accepted `iss` values; empty: not checked.
    pub issuers: Vec<String>,
    /// Accepted `aud` values (the token must name one); empty: not checked.
    pub audiences: Vec<String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway_secs: u64,
    /// Scopes every token must carry (per-route-group scopes: [`JwtValidator::validate_with_scopes`]).
    pub required_scopes: Vec<String>,
    /// Accepted algorithms; anything not asymmetric is dropped.
    pub algorithms: Vec<Algorithm>,
    pub principal: PrincipalMapping,
}

impl Default for JwtConfig {
    fn default() -> Self {
        JwtConfig {
            issuers: Vec::new(),
            audiences: Vec::new(),
            leeway_secs: 60,
            required_scopes: Vec::new(),
            algorithms: vec![Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA],
            principal: PrincipalMapping::Subject,
        }
    }
}

/// A token that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    pub principal: Principal,
    /// `exp`, seconds since the epoch (session lifetime for KIP-368 re-authentication).
    pub expires_at: u64,
    pub scopes: Vec<String>,
    pub claims: Map<String, Value>,
}

/// Validates bearer tokens.
pub struct JwtValidator {
    config: JwtConfig,
    keys: KeySource,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for JwtValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtValidator")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl JwtValidator {
    pub fn new(mut config: JwtConfig, keys: KeySource, clock: Arc<dyn Clock>) -> JwtValidator {
        config.algorithms.retain(|a| ASYMMETRIC.contains(a));
        JwtValidator {
            config,
            keys,
            clock,
        }
    }

    pub fn config(&self) -> &JwtConfig {
        &self.config
    }

    /// Validates `token` with the configured required scopes.
    pub async fn validate(&self, token: &str) -> Result<Validated> {
        self.validate_with_scopes(token, &[]).await
    }

    /// Validates `token`, requiring `extra_scopes` besides the configured ones.
    pub async fn validate_with_scopes(
        &self,
        token: &str,
        extra_scopes: &[&str],
    ) -> Result<Validated> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwtError::TooLong);
        }
        let (alg, kid) = header(token)?;
        let alg = self
            .config
            .algorithms
            .iter()
            .copied()
            .find(|a| alg_name(*a) == alg)
            .ok_or(JwtError::AlgorithmNotAllowed(alg))?;
        let now = self.clock.now_secs();
        let (declared, key) = match &self.keys {
            KeySource::Static(keys) => {
                let found = match &kid {
                    Some(k) => keys.iter().find(|s| s.kid.as_deref() == Some(k)),
                    None => only_one(keys.iter().filter(|s| s.algorithm == alg)),
                };
                let s = found.ok_or(JwtError::UnknownKey)?;
                (Some(s.algorithm), s.key.clone())
            }
            KeySource::Jwks(jwks) => jwks.key(kid.as_deref(), alg, now).await?,
        };
        if declared.is_some_and(|d| d != alg) || key.family() != alg.family() {
            return Err(JwtError::KeyAlgorithmMismatch);
        }
        let mut v = Validation::new(alg);
        // Time, issuer and audience are checked below with the injected clock and our own
        // errors; the crate checks the signature only.
        v.validate_exp = false;
        v.validate_nbf = false;
        v.validate_aud = false;
        v.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &v)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                match e.kind() {
                    K::InvalidSignature
                    | K::InvalidEcdsaKey
                    | K::InvalidRsaKey(_)
                    | K::InvalidEddsaKey => JwtError::BadSignature,
                    K::InvalidAlgorithm => JwtError::KeyAlgorithmMismatch,
                    _ => JwtError::Malformed,
                }
            })?
            .claims;
        let leeway = self.config.leeway_secs;
        let exp = number(&claims, "exp")?.ok_or(JwtError::MissingClaim("exp"))?;
        if now > exp.saturating_add(leeway) {
            return Err(JwtError::Expired);
        }
        if let Some(nbf) = number(&claims, "nbf")?
            && nbf > now.saturating_add(leeway)
        {
            return Err(JwtError::NotYetValid);
        }
        if !self.config.issuers.is_empty() {
            match claims.get("iss") {
                Some(Value::String(iss)) if self.config.issuers.contains(iss) => {}
                _ => return Err(JwtError::WrongIssuer),
            }
        }
        if !self.config.audiences.is_empty() {
            let ok = match claims.get("aud") {
                Some(Value::String(a)) => self.config.audiences.contains(a),
                Some(Value::Array(list)) => list
                    .iter()
                    .filter_map(Value::as_str)
                    .any(|a| self.config.audiences.iter().any(|c| c == a)),
                _ => false,
            };
            if !ok {
                return Err(JwtError::WrongAudience);
            }
        }
        let scopes = principal::scopes(&claims);
        for required in self
            .config
            .required_scopes
            .iter()
            .map(String::as_str)
            .chain(extra_scopes.iter().copied())
        {
            if !scopes.iter().any(|s| s == required) {
                return Err(JwtError::MissingScope(required.to_owned()));
            }
        }
        let principal = self.config.principal.map(&claims)?;
        Ok(Validated {
            principal,
            expires_at: exp,
            scopes,
            claims,
        })
    }
}

fn alg_name(a: Algorithm) -> String {
    // `Algorithm` serializes as its JOSE name ("RS256", "EdDSA").
    serde_json::to_value(a)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The header's `alg` and `kid`, read before anything else so `none` and HMAC are refused
/// by name.
fn header(token: &str) -> Result<(String, Option<String>)> {
    let mut parts = token.split('.');
    let (Some(h), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let raw = URL_SAFE_NO_PAD.decode(h).map_err(|_| JwtError::Malformed)?;
    let Ok(Value::Object(h)) = serde_json::from_slice::<Value>(&raw) else {
        return Err(JwtError::Malformed);
    };
    let alg = match h.get("alg") {
        Some(Value::String(a)) => a.clone(),
        _ => return Err(JwtError::Malformed),
    };
    let kid = match h.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(JwtError::Malformed),
    };
    Ok((alg, kid))
}

/// A NumericDate claim: absent is `None`; present but not a non-negative number is an error.
fn number(claims: &Map<String, Value>, name: &'static str) -> Result<Option<u64>> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .map(Some)
            .ok_or(JwtError::MissingClaim(name)),
    }
}
