//! The one principal model: `User:<name>` from SASL, HTTP Basic or JWT claims, or anonymous.

use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};

/// Who is calling. Written `User:<name>` like Kafka's `KafkaPrincipal`; anonymous is
/// `User:ANONYMOUS` (Kafka's name for unauthenticated callers).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Principal {
    User(String),
    Anonymous,
}

pub const ANONYMOUS: &str = "ANONYMOUS";

impl Principal {
    pub fn user(name: impl Into<String>) -> Principal {
        let name = name.into();
        if name == ANONYMOUS {
            Principal::Anonymous
        } else {
            Principal::User(name)
        }
    }

    /// The name after `User:`.
    pub fn name(&self) -> &str {
        match self {
            Principal::User(n) => n,
            Principal::Anonymous => ANONYMOUS,
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "User:{}", self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid principal {0:?}: expected User:<name>")]
pub struct InvalidPrincipal(pub String);

impl FromStr for Principal {
    type Err = InvalidPrincipal;

    fn from_str(s: &str) -> Result<Principal, InvalidPrincipal> {
        match s.split_once(':') {
            Some(("User", name)) if !name.is_empty() => Ok(Principal::user(name)),
            _ => Err(InvalidPrincipal(s.to_owned())),
        }
    }
}

/// How a validated JWT becomes a [`Principal`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PrincipalMapping {
    /// The `sub` claim.
    #[default]
    Subject,
    /// A string claim of the operator's choice (e.g. `client_id`, `preferred_username`).
    Claim(String),
    /// The first `(scope, principal name)` pair whose scope the token carries (`scope` as a
    /// space-separated string or `scp` as a string or an array).
    Scopes(Vec<(String, String)>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error("the token has no string claim {0:?} to take the principal from")]
    MissingClaim(String),
    #[error("the token carries none of the scopes that map to a principal")]
    NoMappedScope,
    /// `User:weft-internal` belongs to `weft serve` itself (crate::internal); a token
    /// cannot claim it.
    #[error("the token maps to the reserved principal User:{0}")]
    Reserved(String),
}

impl PrincipalMapping {
    pub fn map(&self, claims: &Map<String, Value>) -> Result<Principal, MappingError> {
        let principal = self.map_unchecked(claims)?;
        if crate::internal::is_reserved(principal.name()) {
            return Err(MappingError::Reserved(principal.name().to_owned()));
        }
        Ok(principal)
    }

    fn map_unchecked(&self, claims: &Map<String, Value>) -> Result<Principal, MappingError> {
        match self {
            PrincipalMapping::Subject => string_claim(claims, "sub"),
            PrincipalMapping::Claim(c) => string_claim(claims, c),
            PrincipalMapping::Scopes(pairs) => {
                let scopes = scopes(claims);
                pairs
                    .iter()
                    .find(|(scope, _)| scopes.iter().any(|s| s == scope))
                    .map(|(_, name)| Principal::user(name.clone()))
                    .ok_or(MappingError::NoMappedScope)
            }
        }
    }
}

fn string_claim(claims: &Map<String, Value>, name: &str) -> Result<Principal, MappingError> {
    match claims.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(Principal::user(s.clone())),
        _ => Err(MappingError::MissingClaim(name.to_owned())),
    }
}

/// The scopes a token carries: `scope` (RFC 8693 / RFC 9068, space separated) and `scp`
/// (string or array, as Azure AD and Okta issue it).
pub fn scopes(claims: &Map<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    for key in ["scope", "scp"] {
        match claims.get(key) {
            Some(Value::String(s)) => out.extend(s.split_whitespace().map(str::to_owned)),
            Some(Value::Array(a)) => {
                out.extend(a.iter().filter_map(|v| v.as_str()).map(str::to_owned))
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().expect("object").clone()
    }

    #[test]
    fn display_and_parse_round_trip() {
        for (text, p) in [
            ("User:alice", Principal::user("alice")),
            ("User:ANONYMOUS", Principal::Anonymous),
            ("User:a:b", Principal::user("a:b")),
        ] {
            assert_eq!(p.to_string(), text);
            assert_eq!(text.parse::<Principal>().expect("parses"), p);
        }
        for bad in ["alice", "Group:x", "User:", ""] {
            assert!(bad.parse::<Principal>().is_err(), "{bad}");
        }
    }

    #[test]
    fn mapping_from_claims() {
        let c = claims(
            json!({"sub": "svc-1", "client_id": "orders", "scope": "read write",
                              "scp": ["admin"]}),
        );
        assert_eq!(
            PrincipalMapping::Subject.map(&c),
            Ok(Principal::user("svc-1"))
        );
        assert_eq!(
            PrincipalMapping::Claim("client_id".into()).map(&c),
            Ok(Principal::user("orders"))
        );
        assert_eq!(
            PrincipalMapping::Claim("email".into()).map(&c),
            Err(MappingError::MissingClaim("email".into()))
        );
        let by_scope = PrincipalMapping::Scopes(vec![
            ("nope".into(), "x".into()),
            ("admin".into(), "ops".into()),
            ("read".into(), "reader".into()),
        ]);
        assert_eq!(by_scope.map(&c), Ok(Principal::user("ops")));
        let none = claims(json!({"sub": "s"}));
        assert_eq!(by_scope.map(&none), Err(MappingError::NoMappedScope));
        assert_eq!(scopes(&c), vec!["read", "write", "admin"]);
        // weft serve's own principal cannot come from a token, whichever way it maps.
        let forged = claims(json!({"sub": "weft-internal", "scope": "read"}));
        let reserved = Err(MappingError::Reserved("weft-internal".into()));
        assert_eq!(PrincipalMapping::Subject.map(&forged), reserved);
        let to_internal = PrincipalMapping::Scopes(vec![("read".into(), "weft-internal".into())]);
        assert_eq!(to_internal.map(&forged), reserved);
    }
}
