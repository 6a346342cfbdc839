//! `weft serve`'s own identity: the principal its internal clients (gateway, lag sampler,
//! outbox relay, event store, registry clients) act as once security is on, the way a Kafka
//! cluster gives inter-broker traffic its own listener and credentials.
//!
//! - The principal is `User:weft-internal` ([`INTERNAL_USER`]). The name is reserved: no
//!   other way of authenticating (SCRAM, PLAIN, HTTP Basic, JWT claims) may yield it, so
//!   only the holder of the process's [`InternalCredential`] is that principal. `weft serve`
//!   makes it a super-user.
//! - The secret is 32 random bytes drawn at start-up, per process: never written to disk,
//!   never printed (`Debug` shows `<redacted>`), compared in constant time.
//! - Kafka: a loopback SASL_PLAINTEXT listener accepting only this credential over PLAIN.
//!   HTTP: `Authorization: Bearer <secret>`, accepted only from loopback peers.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq as _;

use crate::Principal;

/// The name of `weft serve`'s own principal (`User:weft-internal`).
pub const INTERNAL_USER: &str = "weft-internal";

/// `User:weft-internal`.
pub fn internal_principal() -> Principal {
    Principal::User(INTERNAL_USER.to_owned())
}

/// Whether `name` (after `User:`) is reserved for `weft serve` itself: such a user can
/// neither authenticate with stored credentials nor be mapped from a token or certificate.
pub fn is_reserved(name: &str) -> bool {
    name == INTERNAL_USER
}

/// The process's internal credential. Cheap to clone (shared).
#[derive(Clone)]
pub struct InternalCredential {
    secret: Arc<str>,
}

impl fmt::Debug for InternalCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InternalCredential")
            .field("user", &INTERNAL_USER)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl InternalCredential {
    /// A fresh credential: 32 bytes from the OS random source, base64url without padding
    /// (43 characters, valid as a bearer `b64token` and as a librdkafka property value).
    pub fn generate() -> InternalCredential {
        let mut bytes = [0u8; 32];
        crate::random_bytes(&mut bytes);
        InternalCredential {
            secret: URL_SAFE_NO_PAD.encode(bytes).into(),
        }
    }

    /// A credential with a chosen secret (tests).
    pub fn from_secret(secret: impl Into<Arc<str>>) -> InternalCredential {
        InternalCredential {
            secret: secret.into(),
        }
    }

    /// The SASL user name (`weft-internal`).
    pub fn username(&self) -> &'static str {
        INTERNAL_USER
    }

    /// The secret, to hand to the process's own clients (never to a log).
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The `Authorization` header value the process's own HTTP clients send.
    pub fn bearer_header(&self) -> String {
        format!("Bearer {}", self.secret)
    }

    /// SASL PLAIN: the user must be `weft-internal` and the password the secret. The
    /// password comparison takes the same time wherever the first difference is.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        let password_ok = self.verify_token(password);
        // `&` rather than `&&`: check both whatever the first said.
        password_ok & (user == INTERNAL_USER)
    }

    /// A bearer token (HTTP): equal to the secret, compared in constant time.
    pub fn verify_token(&self, token: &str) -> bool {
        // Lengths differ → not equal; the secret's length is public (always 43).
        bool::from(token.as_bytes().ct_eq(self.secret.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_checked_exactly_and_never_shown() {
        let c = InternalCredential::generate();
        let other = InternalCredential::generate();
        assert_eq!(c.secret().len(), 43);
        assert_ne!(c.secret(), other.secret(), "a fresh secret per process");
        let secret = c.secret().to_owned();
        // (user, password, accepted)
        let cases: &[(&str, &str, bool)] = &[
            (INTERNAL_USER, &secret, true),
            (INTERNAL_USER, other.secret(), false),
            (INTERNAL_USER, &secret[..42], false),
            (INTERNAL_USER, &format!("{secret}x"), false),
            (INTERNAL_USER, "", false),
            ("admin", &secret, false),
            ("WEFT-INTERNAL", &secret, false),
        ];
        for (user, password, want) in cases {
            assert_eq!(c.verify(user, password), *want, "{user}/{password}");
        }
        assert!(c.verify_token(&secret));
        assert!(!c.verify_token(other.secret()));
        assert_eq!(c.bearer_header(), format!("Bearer {secret}"));
        let shown = format!("{c:?}");
        assert!(!shown.contains(&secret), "{shown}");
        assert!(shown.contains("<redacted>"));
        assert!(is_reserved("weft-internal") && !is_reserved("weft"));
        assert_eq!(internal_principal().to_string(), "User:weft-internal");
    }
}
