//! A whole SASL exchange for one connection, over the stores: the piece the Kafka listener
//! will drive from SaslHandshake/SaslAuthenticate (not wired yet). It picks the mechanism,
//! looks credentials up in the [`ScramStore`], validates OAUTHBEARER tokens with the
//! [`JwtValidator`], and answers each client message with a [`SaslStep`].
//!
//! Failure messages sent to clients never say whether the user exists; logs name the user
//! and mechanism, never the password or token.

use std::sync::Arc;

use tracing::{info, warn};

use super::oauthbearer::{OAuthBearerError, OAuthBearerServer};
use super::scram::{ScramMechanism, ScramServer};
use super::{Mechanism, UnsupportedMechanism, plain};
use crate::Principal;
use crate::jwt::JwtValidator;
use crate::store::ScramStore;

/// What a listener offers.
#[derive(Debug, Clone)]
pub struct SaslConfig {
    pub mechanisms: Vec<Mechanism>,
    /// Needed for PLAIN and SCRAM.
    pub credentials: Option<ScramStore>,
    /// Needed for OAUTHBEARER.
    pub jwt: Option<Arc<JwtValidator>>,
    /// `weft serve`'s internal listener: PLAIN checks this credential and nothing else (the
    /// SCRAM store's users are refused there). `None` elsewhere, where the reserved user
    /// `weft-internal` is refused instead (crate::internal).
    pub internal: Option<crate::InternalCredential>,
}

impl SaslConfig {
    /// The enabled mechanisms whose backing store or validator is configured, in order
    /// (what SaslHandshake lists).
    pub fn offered(&self) -> Vec<Mechanism> {
        self.mechanisms
            .iter()
            .copied()
            .filter(|m| match m {
                Mechanism::OAuthBearer => self.jwt.is_some(),
                Mechanism::Plain => self.credentials.is_some() || self.internal.is_some(),
                _ => self.credentials.is_some(),
            })
            .collect()
    }
}

/// The answer to one client message.
#[derive(Debug, Clone, PartialEq)]
pub enum SaslStep {
    /// Send these bytes and wait for the client's next message.
    Continue(Vec<u8>),
    /// Authenticated. `response` is the last server message (SCRAM's `v=…`, empty
    /// otherwise); `expires_at` (seconds) bounds the session for OAUTHBEARER (KIP-368).
    Success {
        principal: Principal,
        response: Vec<u8>,
        expires_at: Option<u64>,
    },
    /// Refused; `message` is safe to send (Kafka's SaslAuthenticate `error_message`).
    Failure { message: String },
}

enum State {
    Plain,
    // Boxed: a SCRAM exchange carries its credential and messages; the others nothing.
    Scram(ScramMechanism, Box<ScramServer>, bool),
    OAuth(OAuthBearerServer),
    Done,
}

/// One connection's exchange.
pub struct SaslSession {
    config: Arc<SaslConfig>,
    mechanism: Mechanism,
    state: State,
}

impl std::fmt::Debug for SaslSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslSession")
            .field("mechanism", &self.mechanism)
            .finish_non_exhaustive()
    }
}

const BAD_CREDENTIALS: &str = "authentication failed: invalid user name or password";
const UNAVAILABLE: &str = "authentication failed: credentials cannot be checked now";

impl SaslSession {
    /// Starts an exchange with the mechanism the client asked for; unknown or not offered →
    /// Kafka's UNSUPPORTED_SASL_MECHANISM.
    pub fn start(
        config: Arc<SaslConfig>,
        mechanism: &str,
    ) -> Result<SaslSession, UnsupportedMechanism> {
        let m: Mechanism = mechanism.parse()?;
        if !config.offered().contains(&m) {
            return Err(UnsupportedMechanism(mechanism.to_owned()));
        }
        let state = match m {
            Mechanism::Plain => State::Plain,
            Mechanism::ScramSha256 => State::Scram(
                ScramMechanism::Sha256,
                Box::new(ScramServer::new(ScramMechanism::Sha256)),
                false,
            ),
            Mechanism::ScramSha512 => State::Scram(
                ScramMechanism::Sha512,
                Box::new(ScramServer::new(ScramMechanism::Sha512)),
                false,
            ),
            Mechanism::OAuthBearer => State::OAuth(OAuthBearerServer::new()),
        };
        Ok(SaslSession {
            config,
            mechanism: m,
            state,
        })
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// Answers one client message.
    pub async fn step(&mut self, input: &[u8]) -> SaslStep {
        let mechanism = self.mechanism.as_str();
        let fail = |message: &str| SaslStep::Failure {
            message: message.to_owned(),
        };
        match std::mem::replace(&mut self.state, State::Done) {
            State::Done => fail("authentication failed: exchange already finished"),
            State::Plain => {
                let req = match plain::parse(input) {
                    Ok(r) => r,
                    Err(e) => return fail(&format!("authentication failed: {e}")),
                };
                if let Some(internal) = &self.config.internal {
                    if internal.verify(&req.username, &req.password) {
                        return SaslStep::Success {
                            principal: crate::internal::internal_principal(),
                            response: Vec::new(),
                            expires_at: None,
                        };
                    }
                    info!(mechanism, user = %req.username, "internal sasl authentication failed");
                    return fail(BAD_CREDENTIALS);
                }
                if crate::internal::is_reserved(&req.username) {
                    info!(mechanism, user = %req.username, "reserved user refused");
                    return fail(BAD_CREDENTIALS);
                }
                let Some(store) = &self.config.credentials else {
                    return fail(UNAVAILABLE);
                };
                match store.verify_password(&req.username, &req.password).await {
                    Ok(true) => SaslStep::Success {
                        principal: Principal::user(req.username),
                        response: Vec::new(),
                        expires_at: None,
                    },
                    Ok(false) => {
                        info!(mechanism, user = %req.username, "sasl authentication failed");
                        fail(BAD_CREDENTIALS)
                    }
                    Err(e) => {
                        warn!(mechanism, error = %e, "credential store unavailable");
                        fail(UNAVAILABLE)
                    }
                }
            }
            State::Scram(mech, mut server, false) => {
                let first = match server.client_first(input) {
                    Ok(f) => f,
                    Err(e) => return fail(&format!("authentication failed: {e}")),
                };
                // Never a stored credential for weft serve's own user, even if one exists.
                if crate::internal::is_reserved(&first.username) {
                    info!(mechanism, user = %first.username, "reserved user refused");
                    return fail(BAD_CREDENTIALS);
                }
                let Some(store) = &self.config.credentials else {
                    return fail(UNAVAILABLE);
                };
                let cred = match store.get(&first.username, mech).await {
                    Ok(c) => c,
                    Err(e) => {
                        warn!(mechanism, error = %e, "credential store unavailable");
                        return fail(UNAVAILABLE);
                    }
                };
                match server.server_first(cred.as_ref()) {
                    Ok(msg) => {
                        self.state = State::Scram(mech, server, true);
                        SaslStep::Continue(msg)
                    }
                    Err(e) => fail(&format!("authentication failed: {e}")),
                }
            }
            State::Scram(_, mut server, true) => match server.client_final(input) {
                Ok(ok) => SaslStep::Success {
                    principal: ok.principal,
                    response: ok.server_final,
                    expires_at: None,
                },
                Err(e) => {
                    info!(mechanism, error = %e, "sasl authentication failed");
                    fail(BAD_CREDENTIALS)
                }
            },
            State::OAuth(mut server) => {
                // The client's 0x01 after an error response.
                if input == [0x01] {
                    return fail(&format!(
                        "authentication failed: {}",
                        OAuthBearerError::Refused
                    ));
                }
                let req = match server.client_initial(input) {
                    Ok(r) => r,
                    Err(e) => return fail(&format!("authentication failed: {e}")),
                };
                let Some(jwt) = &self.config.jwt else {
                    return fail(UNAVAILABLE);
                };
                match jwt.validate(&req.token).await {
                    Ok(v)
                        if req
                            .authzid
                            .as_ref()
                            .is_some_and(|a| a != v.principal.name()) =>
                    {
                        let _ = server.reject("invalid_token", None);
                        fail(
                            "authentication failed: authorization id differs from the token's principal",
                        )
                    }
                    Ok(v) => SaslStep::Success {
                        principal: v.principal,
                        response: server.accept().unwrap_or_default(),
                        expires_at: Some(v.expires_at),
                    },
                    Err(e) => {
                        info!(mechanism, error = %e, "sasl authentication failed");
                        // RFC 7628: the error JSON, then the client's 0x01, then failure.
                        match server.reject(e.bearer_error().as_str(), None) {
                            Ok(json) => {
                                self.state = State::OAuth(server);
                                SaslStep::Continue(json)
                            }
                            Err(_) => fail(&format!("authentication failed: {e}")),
                        }
                    }
                }
            }
        }
    }
}
