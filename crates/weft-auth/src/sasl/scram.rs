//! SCRAM (RFC 5802) with SHA-256 and SHA-512 (RFC 7677), server side, without channel
//! binding (gs2 flag `n` or `y`; `p=…` is refused).
//!
//! ```text
//! client-first  n,,n=user,r=<client nonce>        → ScramServer::client_first → user name
//! (caller looks the user's ScramCredential up)     → ScramServer::server_first
//! server-first  r=<client+server nonce>,s=<salt>,i=<iterations>
//! client-final  c=biws,r=<nonce>,p=<proof>        → ScramServer::client_final
//! server-final  v=<server signature> | e=<error>
//! ```
//!
//! Stored credentials are `StoredKey = H(HMAC(SaltedPassword, "Client Key"))` and
//! `ServerKey = HMAC(SaltedPassword, "Server Key")` with their salt and iteration count;
//! the password itself is never stored. Proofs are compared in constant time. An unknown
//! user gets a fake credential (salt derived from the name and a per-process secret) and
//! fails at the proof like a wrong password, so the exchange does not reveal which users
//! exist. Passwords are used as their UTF-8 bytes, as Kafka does (no SASLprep).

use std::fmt;
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use super::{MAX_MESSAGE_BYTES, Mechanism, decode_saslname};
use crate::Principal;

/// Kafka's bounds on SCRAM iterations.
pub const MIN_ITERATIONS: u32 = 4096;
pub const MAX_ITERATIONS: u32 = 16384;

/// The hash behind a SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
    /// Only for RFC 5802's SHA-1 test vector.
    #[cfg(test)]
    Sha1,
}

impl ScramMechanism {
    pub fn mechanism(self) -> Mechanism {
        match self {
            ScramMechanism::Sha256 => Mechanism::ScramSha256,
            ScramMechanism::Sha512 => Mechanism::ScramSha512,
            #[cfg(test)]
            ScramMechanism::Sha1 => Mechanism::ScramSha256,
        }
    }

    pub fn from_mechanism(m: Mechanism) -> Option<ScramMechanism> {
        match m {
            Mechanism::ScramSha256 => Some(ScramMechanism::Sha256),
            Mechanism::ScramSha512 => Some(ScramMechanism::Sha512),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.mechanism().as_str()
    }

    fn hmac(self, key: &[u8], data: &[&[u8]]) -> Vec<u8> {
        macro_rules! mac {
            ($d:ty) => {{
                // HMAC accepts keys of any length; this cannot fail.
                let mut m = <Hmac<$d> as Mac>::new_from_slice(key)
                    .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
                for d in data {
                    m.update(d);
                }
                m.finalize().into_bytes().to_vec()
            }};
        }
        match self {
            ScramMechanism::Sha256 => mac!(Sha256),
            ScramMechanism::Sha512 => mac!(Sha512),
            #[cfg(test)]
            ScramMechanism::Sha1 => mac!(sha1::Sha1),
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => Sha256::digest(data).to_vec(),
            ScramMechanism::Sha512 => Sha512::digest(data).to_vec(),
            #[cfg(test)]
            ScramMechanism::Sha1 => sha1::Sha1::digest(data).to_vec(),
        }
    }

    /// `Hi(password, salt, i)`: PBKDF2 with HMAC as the PRF and one block.
    fn hi(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut u = self.hmac(password, &[salt, &1u32.to_be_bytes()]);
        let mut out = u.clone();
        for _ in 1..iterations {
            u = self.hmac(password, &[&u]);
            for (o, x) in out.iter_mut().zip(&u) {
                *o ^= x;
            }
        }
        out
    }
}

/// What the server keeps for one user and mechanism.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: u32,
}

impl fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramCredential")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("iterations must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}")]
    Iterations,
    #[error("password is empty")]
    EmptyPassword,
    #[error("salt is empty")]
    EmptySalt,
}

impl ScramCredential {
    /// Derives the stored keys for `password`. `iterations` is not bounded here (RFC test
    /// vectors); [`ScramCredential::generate`] enforces Kafka's bounds.
    pub fn derive(
        mech: ScramMechanism,
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> ScramCredential {
        let salted = mech.hi(password.as_bytes(), salt, iterations.max(1));
        let client_key = mech.hmac(&salted, &[b"Client Key"]);
        ScramCredential {
            salt: salt.to_vec(),
            stored_key: mech.hash(&client_key),
            server_key: mech.hmac(&salted, &[b"Server Key"]),
            iterations,
        }
    }

    /// The credential for a salted password computed elsewhere: Kafka's
    /// AlterUserScramCredentials sends `salt`, `SaltedPassword` and iterations, never the
    /// password.
    pub fn from_salted_password(
        mech: ScramMechanism,
        salted_password: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> Result<ScramCredential, CredentialError> {
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(CredentialError::Iterations);
        }
        if salt.is_empty() {
            return Err(CredentialError::EmptySalt);
        }
        let client_key = mech.hmac(salted_password, &[b"Client Key"]);
        Ok(ScramCredential {
            salt: salt.to_vec(),
            stored_key: mech.hash(&client_key),
            server_key: mech.hmac(salted_password, &[b"Server Key"]),
            iterations,
        })
    }

    /// A credential with a fresh random 32-byte salt.
    pub fn generate(
        mech: ScramMechanism,
        password: &str,
        iterations: u32,
    ) -> Result<ScramCredential, CredentialError> {
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(CredentialError::Iterations);
        }
        if password.is_empty() {
            return Err(CredentialError::EmptyPassword);
        }
        let mut salt = [0u8; 32];
        crate::random_bytes(&mut salt);
        Ok(ScramCredential::derive(mech, password, &salt, iterations))
    }

    /// Whether `password` is the one this credential was derived from (SASL PLAIN and HTTP
    /// Basic), compared in constant time.
    pub fn verify_password(&self, mech: ScramMechanism, password: &str) -> bool {
        let candidate = ScramCredential::derive(mech, password, &self.salt, self.iterations);
        bool::from(candidate.stored_key.ct_eq(&self.stored_key))
    }
}

/// Why an exchange failed; [`ScramError::server_final`] is the `e=` message to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("invalid SCRAM message encoding")]
    InvalidEncoding,
    #[error("SCRAM extensions are not supported")]
    ExtensionsNotSupported,
    #[error("channel binding is not supported")]
    ChannelBindingNotSupported,
    #[error("channel binding data does not match the client's first message")]
    ChannelBindingsDontMatch,
    #[error("invalid user name encoding")]
    InvalidUsernameEncoding,
    #[error("the authorization id differs from the user name")]
    Impersonation,
    #[error("nonce mismatch")]
    NonceMismatch,
    #[error("invalid proof")]
    InvalidProof,
    #[error("SCRAM message out of order")]
    OutOfOrder,
    #[error("SCRAM message too long")]
    TooLong,
}

impl ScramError {
    /// The RFC 5802 `server-error-value` (sent as `e=<value>`).
    pub fn code(self) -> &'static str {
        match self {
            ScramError::InvalidEncoding | ScramError::TooLong => "invalid-encoding",
            ScramError::ExtensionsNotSupported => "extensions-not-supported",
            ScramError::ChannelBindingNotSupported => "channel-binding-not-supported",
            ScramError::ChannelBindingsDontMatch => "channel-bindings-dont-match",
            ScramError::InvalidUsernameEncoding => "invalid-username-encoding",
            ScramError::Impersonation => "other-error",
            ScramError::NonceMismatch | ScramError::OutOfOrder => "other-error",
            ScramError::InvalidProof => "invalid-proof",
        }
    }

    pub fn server_final(self) -> Vec<u8> {
        format!("e={}", self.code()).into_bytes()
    }
}

/// The user a client-first message names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    pub username: String,
    /// SCRAM extensions the client sent (e.g. Kafka's `tokenauth=true`), unparsed.
    pub extensions: Vec<String>,
}

/// A finished, successful exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramSuccess {
    pub principal: Principal,
    /// `v=<server signature>`, to send to the client.
    pub server_final: Vec<u8>,
}

enum State {
    Initial,
    GotClientFirst {
        gs2_header: String,
        client_first_bare: String,
        client_nonce: String,
        username: String,
    },
    SentServerFirst {
        gs2_header: String,
        auth_prefix: String,
        nonce: String,
        username: String,
        credential: ScramCredential,
    },
    Done,
}

/// One server-side SCRAM exchange.
pub struct ScramServer {
    mech: ScramMechanism,
    server_nonce: String,
    state: State,
}

impl fmt::Debug for ScramServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramServer")
            .field("mech", &self.mech)
            .finish_non_exhaustive()
    }
}

impl ScramServer {
    /// An exchange with a fresh random server nonce.
    pub fn new(mech: ScramMechanism) -> ScramServer {
        let mut raw = [0u8; 24];
        crate::random_bytes(&mut raw);
        ScramServer::with_nonce(mech, B64.encode(raw))
    }

    /// An exchange with a given server nonce (tests, RFC vectors). It must be printable ASCII
    /// without `,`.
    pub fn with_nonce(mech: ScramMechanism, server_nonce: String) -> ScramServer {
        ScramServer {
            mech,
            server_nonce,
            state: State::Initial,
        }
    }

    /// Step 1: parses `client-first-message`.
    pub fn client_first(&mut self, msg: &[u8]) -> Result<ClientFirst, ScramError> {
        if !matches!(self.state, State::Initial) {
            return Err(self.fail(ScramError::OutOfOrder));
        }
        let r = parse_client_first(msg);
        match r {
            Ok((gs2_header, client_first_bare, client_nonce, username, extensions)) => {
                self.state = State::GotClientFirst {
                    gs2_header,
                    client_first_bare,
                    client_nonce,
                    username: username.clone(),
                };
                Ok(ClientFirst {
                    username,
                    extensions,
                })
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Step 2: the `server-first-message` for the user's credential (`None`: unknown user;
    /// the exchange continues with a fake credential and fails at the proof).
    pub fn server_first(
        &mut self,
        credential: Option<&ScramCredential>,
    ) -> Result<Vec<u8>, ScramError> {
        let State::GotClientFirst {
            gs2_header,
            client_first_bare,
            client_nonce,
            username,
        } = std::mem::replace(&mut self.state, State::Done)
        else {
            return Err(self.fail(ScramError::OutOfOrder));
        };
        let credential = match credential {
            Some(c) => c.clone(),
            None => self.fake_credential(&username),
        };
        let nonce = format!("{client_nonce}{}", self.server_nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&credential.salt),
            credential.iterations
        );
        self.state = State::SentServerFirst {
            gs2_header,
            auth_prefix: format!("{client_first_bare},{server_first}"),
            nonce,
            username,
            credential,
        };
        Ok(server_first.into_bytes())
    }

    /// Step 3: checks `client-final-message`; on success the principal and `v=…`, on failure
    /// an error whose [`ScramError::server_final`] is the `e=…` to send.
    pub fn client_final(&mut self, msg: &[u8]) -> Result<ScramSuccess, ScramError> {
        let State::SentServerFirst {
            gs2_header,
            auth_prefix,
            nonce,
            username,
            credential,
        } = std::mem::replace(&mut self.state, State::Done)
        else {
            return Err(self.fail(ScramError::OutOfOrder));
        };
        let msg = text(msg)?;
        // client-final-message-without-proof "," proof
        let (without_proof, proof) = msg.rsplit_once(",p=").ok_or(ScramError::InvalidEncoding)?;
        let mut attrs = without_proof.split(',');
        let cbind = attrs
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or(ScramError::InvalidEncoding)?;
        let cbind = B64.decode(cbind).map_err(|_| ScramError::InvalidEncoding)?;
        if cbind != gs2_header.as_bytes() {
            return Err(ScramError::ChannelBindingsDontMatch);
        }
        let r = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(ScramError::InvalidEncoding)?;
        // Extensions may follow the nonce; none is understood, none is required.
        for ext in attrs {
            if !is_attr(ext) {
                return Err(ScramError::InvalidEncoding);
            }
        }
        // librdkafka before 2.6.1 (still Debian bookworm's kcat) sends the client nonce twice,
        // `r=<client nonce><client nonce><server nonce>` (confluentinc/librdkafka#4895); Kafka
        // 3.8.1–3.9 accepted that form and so do we — exactly that form, nothing looser. The
        // proof still covers the message as sent.
        let client_nonce = nonce
            .strip_suffix(self.server_nonce.as_str())
            .unwrap_or_default();
        let doubled = format!("{client_nonce}{nonce}");
        let exact = r.as_bytes().ct_eq(nonce.as_bytes());
        let legacy = r.as_bytes().ct_eq(doubled.as_bytes());
        if !bool::from(exact | legacy) {
            return Err(ScramError::NonceMismatch);
        }
        let proof = B64.decode(proof).map_err(|_| ScramError::InvalidEncoding)?;
        let auth_message = format!("{auth_prefix},{without_proof}");
        let client_signature = self
            .mech
            .hmac(&credential.stored_key, &[auth_message.as_bytes()]);
        if proof.len() != client_signature.len() {
            return Err(ScramError::InvalidProof);
        }
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        let stored_key = self.mech.hash(&client_key);
        if !bool::from(stored_key.ct_eq(&credential.stored_key)) {
            return Err(ScramError::InvalidProof);
        }
        let server_signature = self
            .mech
            .hmac(&credential.server_key, &[auth_message.as_bytes()]);
        Ok(ScramSuccess {
            principal: Principal::user(username),
            server_final: format!("v={}", B64.encode(server_signature)).into_bytes(),
        })
    }

    fn fail(&mut self, e: ScramError) -> ScramError {
        self.state = State::Done;
        e
    }

    /// A credential no password matches, stable per user name within this process so two
    /// attempts for an unknown user look like two attempts for a known one.
    fn fake_credential(&self, username: &str) -> ScramCredential {
        static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
        let secret = SECRET.get_or_init(|| {
            let mut s = [0u8; 32];
            crate::random_bytes(&mut s);
            s
        });
        let salt = self.mech.hmac(secret, &[b"salt", username.as_bytes()]);
        let mut stored_key = self.mech.hmac(secret, &[b"stored", username.as_bytes()]);
        // Flip a bit so even a hash pre-image of the derived value cannot match by design.
        stored_key[0] ^= 1;
        ScramCredential {
            salt: salt[..salt.len().min(32)].to_vec(),
            server_key: self.mech.hmac(secret, &[b"server", username.as_bytes()]),
            stored_key,
            iterations: MIN_ITERATIONS,
        }
    }
}

fn text(msg: &[u8]) -> Result<&str, ScramError> {
    if msg.len() > MAX_MESSAGE_BYTES {
        return Err(ScramError::TooLong);
    }
    std::str::from_utf8(msg).map_err(|_| ScramError::InvalidEncoding)
}

/// `attr-val = ALPHA "=" value`, relaxed to several letters for Kafka's `tokenauth=true`.
fn is_attr(s: &str) -> bool {
    s.split_once('=')
        .is_some_and(|(k, _)| !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphabetic()))
}

type ParsedFirst = (String, String, String, String, Vec<String>);

fn parse_client_first(msg: &[u8]) -> Result<ParsedFirst, ScramError> {
    let msg = text(msg)?;
    // gs2-header = gs2-cbind-flag "," [ authzid ] ","
    let (flag, rest) = msg.split_once(',').ok_or(ScramError::InvalidEncoding)?;
    match flag {
        "n" | "y" => {}
        f if f.starts_with("p=") => return Err(ScramError::ChannelBindingNotSupported),
        _ => return Err(ScramError::InvalidEncoding),
    }
    let (authzid, bare) = rest.split_once(',').ok_or(ScramError::InvalidEncoding)?;
    let authzid = match authzid {
        "" => None,
        a => Some(
            a.strip_prefix("a=")
                .and_then(decode_saslname)
                .ok_or(ScramError::InvalidEncoding)?,
        ),
    };
    let gs2_header = format!("{flag},{},", &rest[..rest.len() - bare.len() - 1]);
    let mut attrs = bare.split(',');
    let first = attrs.next().ok_or(ScramError::InvalidEncoding)?;
    if first.starts_with("m=") {
        return Err(ScramError::ExtensionsNotSupported);
    }
    let username = first
        .strip_prefix("n=")
        .ok_or(ScramError::InvalidEncoding)?;
    let username = decode_saslname(username).ok_or(ScramError::InvalidUsernameEncoding)?;
    if username.is_empty() {
        return Err(ScramError::InvalidUsernameEncoding);
    }
    let nonce = attrs
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .ok_or(ScramError::InvalidEncoding)?;
    // printable = %x21-2B / %x2D-7E (no ',')
    if nonce.is_empty()
        || !nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
    {
        return Err(ScramError::InvalidEncoding);
    }
    let extensions: Vec<String> = attrs.map(str::to_owned).collect();
    if !extensions.iter().all(|e| is_attr(e)) {
        return Err(ScramError::InvalidEncoding);
    }
    if authzid.as_ref().is_some_and(|a| *a != username) {
        return Err(ScramError::Impersonation);
    }
    Ok((
        gs2_header,
        bare.to_owned(),
        nonce.to_owned(),
        username,
        extensions,
    ))
}

/// The client side, for tests and `weft` commands that log in: builds the messages a
/// client sends. Not used by servers.
pub mod client {
    use super::*;

    /// `client-final-message` for the given exchange.
    pub fn final_message(
        mech: ScramMechanism,
        password: &str,
        client_first_bare: &str,
        server_first: &str,
    ) -> Option<String> {
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for a in server_first.split(',') {
            if let Some(v) = a.strip_prefix("r=") {
                nonce = Some(v);
            } else if let Some(v) = a.strip_prefix("s=") {
                salt = B64.decode(v).ok();
            } else if let Some(v) = a.strip_prefix("i=") {
                iterations = v.parse::<u32>().ok();
            }
        }
        let (nonce, salt, iterations) = (nonce?, salt?, iterations?);
        let salted = mech.hi(password.as_bytes(), &salt, iterations);
        let client_key = mech.hmac(&salted, &[b"Client Key"]);
        let stored_key = mech.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = mech.hmac(&stored_key, &[auth_message.as_bytes()]);
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        Some(format!("{without_proof},p={}", B64.encode(proof)))
    }
}

#[cfg(test)]
mod tests;
