//! SASL OAUTHBEARER (RFC 7628), server side.
//!
//! ```text
//! client  n,a=user,\x01auth=Bearer <token>\x01key=value\x01\x01  → OAuthBearerServer::client_initial
//! (caller validates the token with crate::jwt)
//! success: empty server message, done
//! failure: server sends {"status":"invalid_token",…}             ← OAuthBearerServer::reject
//!          client answers \x01                                   → OAuthBearerServer::client_ack
//!          the exchange fails
//! ```

use std::collections::BTreeMap;
use std::fmt;

use super::{MAX_MESSAGE_BYTES, decode_saslname};

/// The parsed client response. Its `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuthBearerRequest {
    pub token: String,
    /// The `a=` authorization id of the GS2 header, when present.
    pub authzid: Option<String>,
    /// Key/value pairs other than `auth` (Kafka sends SASL extensions this way).
    pub extensions: BTreeMap<String, String>,
}

impl fmt::Debug for OAuthBearerRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthBearerRequest")
            .field("token", &"<redacted>")
            .field("authzid", &self.authzid)
            .field("extensions", &self.extensions)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OAuthBearerError {
    #[error("malformed OAUTHBEARER client response")]
    Malformed,
    #[error("OAUTHBEARER client response has no auth=Bearer <token>")]
    NoToken,
    #[error("channel binding is not supported")]
    ChannelBindingNotSupported,
    #[error("OAUTHBEARER client response too long")]
    TooLong,
    #[error("OAUTHBEARER message out of order")]
    OutOfOrder,
    #[error("the client did not acknowledge the error response with a single 0x01")]
    BadAck,
    /// The exchange ended after an error response (the normal end of a refused token).
    #[error("token refused")]
    Refused,
}

const KVSEP: u8 = 0x01;

/// Parses the client's initial response.
pub fn parse_client_response(msg: &[u8]) -> Result<OAuthBearerRequest, OAuthBearerError> {
    if msg.len() > MAX_MESSAGE_BYTES {
        return Err(OAuthBearerError::TooLong);
    }
    let msg = std::str::from_utf8(msg).map_err(|_| OAuthBearerError::Malformed)?;
    // gs2-header = gs2-cbind-flag "," [ authzid ] "," ; then kvsep *kvpair kvsep
    let (flag, rest) = msg.split_once(',').ok_or(OAuthBearerError::Malformed)?;
    match flag {
        "n" | "y" => {}
        f if f.starts_with("p=") => return Err(OAuthBearerError::ChannelBindingNotSupported),
        _ => return Err(OAuthBearerError::Malformed),
    }
    let (authzid, rest) = rest.split_once(',').ok_or(OAuthBearerError::Malformed)?;
    let authzid = match authzid {
        "" => None,
        a => Some(
            a.strip_prefix("a=")
                .and_then(decode_saslname)
                .filter(|a| !a.is_empty())
                .ok_or(OAuthBearerError::Malformed)?,
        ),
    };
    // kvsep *(key "=" value kvsep) kvsep
    let pairs = rest
        .strip_prefix('\x01')
        .and_then(|r| r.strip_suffix('\x01'))
        .ok_or(OAuthBearerError::Malformed)?;
    let mut token = None;
    let mut extensions = BTreeMap::new();
    if !pairs.is_empty() {
        let pairs = pairs
            .strip_suffix('\x01')
            .ok_or(OAuthBearerError::Malformed)?;
        for pair in pairs.split(KVSEP as char) {
            let (key, value) = pair.split_once('=').ok_or(OAuthBearerError::Malformed)?;
            // key = 1*(ALPHA); value = *(VCHAR / SP / HTAB / CR / LF)
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(OAuthBearerError::Malformed);
            }
            if !value
                .bytes()
                .all(|b| matches!(b, 0x21..=0x7e | b' ' | b'\t' | b'\r' | b'\n'))
            {
                return Err(OAuthBearerError::Malformed);
            }
            if key == "auth" {
                if token.is_some() {
                    return Err(OAuthBearerError::Malformed);
                }
                // RFC 6750 credentials: scheme case-insensitive, one space, b64token.
                let (scheme, t) = value.split_once(' ').ok_or(OAuthBearerError::NoToken)?;
                if !scheme.eq_ignore_ascii_case("bearer") || !is_b64token(t) {
                    return Err(OAuthBearerError::NoToken);
                }
                token = Some(t.to_owned());
            } else if extensions
                .insert(key.to_owned(), value.to_owned())
                .is_some()
            {
                return Err(OAuthBearerError::Malformed);
            }
        }
    }
    Ok(OAuthBearerRequest {
        token: token.ok_or(OAuthBearerError::NoToken)?,
        authzid,
        extensions,
    })
}

/// RFC 6750 `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
pub(crate) fn is_b64token(t: &str) -> bool {
    let body = t.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// The error response of RFC 7628 section 3.2.2.
pub fn error_response(
    status: &str,
    scope: Option<&str>,
    openid_configuration: Option<&str>,
) -> Vec<u8> {
    let mut m = serde_json::Map::new();
    m.insert("status".into(), status.into());
    if let Some(s) = scope {
        m.insert("scope".into(), s.into());
    }
    if let Some(c) = openid_configuration {
        m.insert("openid-configuration".into(), c.into());
    }
    serde_json::Value::Object(m).to_string().into_bytes()
}

enum State {
    Initial,
    Validating,
    Rejected,
    Done,
}

/// One server-side OAUTHBEARER exchange.
pub struct OAuthBearerServer {
    state: State,
}

impl Default for OAuthBearerServer {
    fn default() -> Self {
        OAuthBearerServer {
            state: State::Initial,
        }
    }
}

impl fmt::Debug for OAuthBearerServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthBearerServer").finish_non_exhaustive()
    }
}

impl OAuthBearerServer {
    pub fn new() -> OAuthBearerServer {
        OAuthBearerServer::default()
    }

    /// Step 1: the client's initial response. The caller validates the token next and then
    /// calls [`OAuthBearerServer::accept`] or [`OAuthBearerServer::reject`].
    pub fn client_initial(&mut self, msg: &[u8]) -> Result<OAuthBearerRequest, OAuthBearerError> {
        if !matches!(self.state, State::Initial) {
            self.state = State::Done;
            return Err(OAuthBearerError::OutOfOrder);
        }
        match parse_client_response(msg) {
            Ok(r) => {
                self.state = State::Validating;
                Ok(r)
            }
            Err(e) => {
                self.state = State::Done;
                Err(e)
            }
        }
    }

    /// The token was valid: the exchange succeeds with an empty server message.
    pub fn accept(&mut self) -> Result<Vec<u8>, OAuthBearerError> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Validating => Ok(Vec::new()),
            _ => Err(OAuthBearerError::OutOfOrder),
        }
    }

    /// The token was refused: the JSON error to send; the client must then send `0x01`.
    pub fn reject(
        &mut self,
        status: &str,
        scope: Option<&str>,
    ) -> Result<Vec<u8>, OAuthBearerError> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Validating => {
                self.state = State::Rejected;
                Ok(error_response(status, scope, None))
            }
            _ => Err(OAuthBearerError::OutOfOrder),
        }
    }

    /// The client's answer to an error response. Always ends in failure: `Refused` for the
    /// proper `0x01`, `BadAck` otherwise.
    pub fn client_ack(&mut self, msg: &[u8]) -> OAuthBearerError {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Rejected if msg == [KVSEP] => OAuthBearerError::Refused,
            State::Rejected => OAuthBearerError::BadAck,
            _ => OAuthBearerError::OutOfOrder,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7628_examples_and_kafka_extensions() {
        // RFC 7628 section 4.1 (the host and port pairs are ordinary key/values).
        let msg = b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01\
                    auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01";
        let r = parse_client_response(msg).expect("valid");
        assert_eq!(r.token, "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==");
        assert_eq!(r.authzid.as_deref(), Some("user@example.com"));
        assert_eq!(r.extensions.get("port").map(String::as_str), Some("143"));
        // What librdkafka/Kafka send: no authzid, extensions after auth, scheme case.
        let r =
            parse_client_response(b"n,,\x01auth=bearer a.b.c\x01traceId=1\x01\x01").expect("valid");
        assert_eq!(r.token, "a.b.c");
        assert!(!format!("{r:?}").contains("a.b.c"));
    }

    #[test]
    fn malformed_responses() {
        for (msg, err) in [
            (&b""[..], OAuthBearerError::Malformed),
            (b"n,,", OAuthBearerError::Malformed),
            (b"n,,\x01\x01", OAuthBearerError::NoToken),
            (b"n,,\x01auth=Bearer x\x01", OAuthBearerError::Malformed),
            (b"n,,auth=Bearer x\x01\x01", OAuthBearerError::Malformed),
            (
                b"p=tls-unique,,\x01auth=Bearer x\x01\x01",
                OAuthBearerError::ChannelBindingNotSupported,
            ),
            (b"q,,\x01auth=Bearer x\x01\x01", OAuthBearerError::Malformed),
            (
                b"n,b=x,\x01auth=Bearer x\x01\x01",
                OAuthBearerError::Malformed,
            ),
            (b"n,,\x01auth=Basic x\x01\x01", OAuthBearerError::NoToken),
            (b"n,,\x01auth=Bearer\x01\x01", OAuthBearerError::NoToken),
            (b"n,,\x01auth=Bearer a b\x01\x01", OAuthBearerError::NoToken),
            (
                b"n,,\x01auth=Bearer x\x01auth=Bearer y\x01\x01",
                OAuthBearerError::Malformed,
            ),
            (
                b"n,,\x01k1=v\x01auth=Bearer x\x01\x01",
                OAuthBearerError::Malformed,
            ),
            (
                b"n,,\x01=v\x01auth=Bearer x\x01\x01",
                OAuthBearerError::Malformed,
            ),
            (
                b"n,,\x01k=\x00\x01auth=Bearer x\x01\x01",
                OAuthBearerError::Malformed,
            ),
            (
                b"n,,\x01auth=Bearer x\xff\x01\x01",
                OAuthBearerError::Malformed,
            ),
        ] {
            assert_eq!(parse_client_response(msg), Err(err), "{msg:?}");
        }
    }

    #[test]
    fn state_machine() {
        let mut s = OAuthBearerServer::new();
        s.client_initial(b"n,,\x01auth=Bearer t\x01\x01")
            .expect("valid");
        assert_eq!(s.accept(), Ok(Vec::new()));
        assert_eq!(s.accept(), Err(OAuthBearerError::OutOfOrder));

        let mut s = OAuthBearerServer::new();
        s.client_initial(b"n,,\x01auth=Bearer t\x01\x01")
            .expect("valid");
        let json = s.reject("invalid_token", Some("kafka")).expect("in order");
        assert_eq!(json, br#"{"scope":"kafka","status":"invalid_token"}"#);
        assert_eq!(s.client_ack(b"\x01"), OAuthBearerError::Refused);

        let mut s = OAuthBearerServer::new();
        s.client_initial(b"n,,\x01auth=Bearer t\x01\x01")
            .expect("valid");
        s.reject("invalid_token", None).expect("in order");
        assert_eq!(s.client_ack(b"x"), OAuthBearerError::BadAck);

        let mut s = OAuthBearerServer::new();
        assert_eq!(
            s.reject("invalid_token", None),
            Err(OAuthBearerError::OutOfOrder)
        );
    }
}
