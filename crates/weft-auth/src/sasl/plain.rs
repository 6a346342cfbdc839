//! SASL PLAIN (RFC 4616): `[authzid] NUL authcid NUL passwd`.
//!
//! Kafka's rule for the authorization identity applies: empty or equal to the user name
//! (no impersonation). The password is checked against the user's stored SCRAM credential
//! with [`crate::sasl::scram::ScramCredential::verify_password`].

use std::fmt;

use super::MAX_MESSAGE_BYTES;

/// RFC 4616: each of authzid, authcid and passwd is at most 255 octets.
const MAX_FIELD: usize = 255;

/// A parsed PLAIN message. Its `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainRequest {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for PlainRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainRequest")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PlainError {
    #[error("malformed PLAIN message: expected [authzid] NUL user NUL password")]
    Malformed,
    #[error("PLAIN message is not UTF-8")]
    NotUtf8,
    #[error("PLAIN user name or password is empty")]
    Empty,
    #[error("PLAIN field longer than 255 bytes")]
    TooLong,
    #[error("PLAIN authorization id differs from the user name (impersonation is not allowed)")]
    Impersonation,
}

/// Parses one PLAIN client message.
pub fn parse(msg: &[u8]) -> Result<PlainRequest, PlainError> {
    if msg.len() > MAX_MESSAGE_BYTES {
        return Err(PlainError::TooLong);
    }
    let mut parts = msg.split(|b| *b == 0);
    let (Some(authzid), Some(authcid), Some(passwd), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(PlainError::Malformed);
    };
    if authzid.len() > MAX_FIELD || authcid.len() > MAX_FIELD || passwd.len() > MAX_FIELD {
        return Err(PlainError::TooLong);
    }
    fn text(b: &[u8]) -> Result<&str, PlainError> {
        std::str::from_utf8(b).map_err(|_| PlainError::NotUtf8)
    }
    let (authzid, username, password) = (text(authzid)?, text(authcid)?, text(passwd)?);
    if username.is_empty() || password.is_empty() {
        return Err(PlainError::Empty);
    }
    if !authzid.is_empty() && authzid != username {
        return Err(PlainError::Impersonation);
    }
    Ok(PlainRequest {
        username: username.to_owned(),
        password: password.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases() {
        let ok = |u: &str, p: &str| {
            Ok(PlainRequest {
                username: u.into(),
                password: p.into(),
            })
        };
        for (msg, expected) in [
            // RFC 4616 section 4's examples.
            (
                &b"\0tim\0tanstaaftanstaaf"[..],
                ok("tim", "tanstaaftanstaaf"),
            ),
            (b"tim\0tim\0tanstaaftanstaaf", ok("tim", "tanstaaftanstaaf")),
            (b"Ursel\0Kurt\0xipj3plmq", Err(PlainError::Impersonation)),
            (b"\0tim", Err(PlainError::Malformed)),
            (b"\0a\0b\0c", Err(PlainError::Malformed)),
            (b"", Err(PlainError::Malformed)),
            (b"\0\0pw", Err(PlainError::Empty)),
            (b"\0u\0", Err(PlainError::Empty)),
            (b"\0u\xff\0pw", Err(PlainError::NotUtf8)),
        ] {
            assert_eq!(parse(msg), expected, "{msg:?}");
        }
        let long = [&b"\0u\0"[..], &[b'x'; 256]].concat();
        assert_eq!(parse(&long), Err(PlainError::TooLong));
    }

    #[test]
    fn debug_hides_the_password() {
        let r = parse(b"\0u\0hunter2").expect("valid");
        assert!(!format!("{r:?}").contains("hunter2"));
    }
}
