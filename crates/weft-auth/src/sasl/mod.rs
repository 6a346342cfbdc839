//! SASL server exchanges, sans io: each mechanism turns the client's bytes into the next
//! server message or a decision, and asks the caller for what it needs (a user's stored
//! credential, a token's validation) between steps.
//!
//! - [`plain`]: RFC 4616, verified against the user's stored SCRAM credential (one credential
//!   store for PLAIN and SCRAM; no plaintext password is stored anywhere).
//! - [`scram`]: RFC 5802 with SHA-256 and SHA-512 (RFC 7677), without channel binding.
//! - [`oauthbearer`]: RFC 7628's client response; the token goes to [`crate::jwt`].

pub mod oauthbearer;
pub mod plain;
pub mod scram;
pub mod session;

#[cfg(test)]
mod proptests;

use std::fmt;
use std::str::FromStr;

/// The longest SASL message any mechanism accepts (a JWT of a few KiB fits many times over).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// The mechanisms Weft's listeners can offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    Plain,
    ScramSha256,
    ScramSha512,
    OAuthBearer,
}

impl Mechanism {
    pub const ALL: &'static [Mechanism] = &[
        Mechanism::Plain,
        Mechanism::ScramSha256,
        Mechanism::ScramSha512,
        Mechanism::OAuthBearer,
    ];

    /// The IANA name, as in Kafka's SaslHandshake.
    pub fn as_str(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
            Mechanism::OAuthBearer => "OAUTHBEARER",
        }
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported SASL mechanism {0:?}")]
pub struct UnsupportedMechanism(pub String);

impl FromStr for Mechanism {
    type Err = UnsupportedMechanism;
    fn from_str(s: &str) -> Result<Mechanism, UnsupportedMechanism> {
        Mechanism::ALL
            .iter()
            .copied()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| UnsupportedMechanism(s.to_owned()))
    }
}

/// Decodes a SCRAM `saslname` (`=2C` → `,`, `=3D` → `=`; any other `=` is an error).
pub(crate) fn decode_saslname(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(['=', ',']) {
        if rest.as_bytes()[i] == b',' {
            return None;
        }
        out.push_str(&rest[..i]);
        let esc = rest.get(i + 1..i + 3)?;
        out.push(match esc {
            "2C" => ',',
            "3D" => '=',
            _ => return None,
        });
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// Encodes a SCRAM `saslname`.
pub fn encode_saslname(s: &str) -> String {
    s.replace('=', "=3D").replace(',', "=2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saslnames() {
        for (enc, dec) in [("a", Some("a")), ("a=2Cb=3D", Some("a,b=")), ("", Some(""))] {
            assert_eq!(decode_saslname(enc).as_deref(), dec);
        }
        for bad in ["a=", "a=2", "a=41", "a,b", "=2c"] {
            assert_eq!(decode_saslname(bad), None, "{bad}");
        }
        assert_eq!(encode_saslname("a,b="), "a=2Cb=3D");
        assert_eq!(
            "SCRAM-SHA-512".parse::<Mechanism>(),
            Ok(Mechanism::ScramSha512)
        );
        assert!("GSSAPI".parse::<Mechanism>().is_err());
    }
}
