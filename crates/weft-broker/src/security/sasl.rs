//! The SASL side of one connection: SaslHandshake (v0, v1) and SaslAuthenticate (v0–v2)
//! driving weft-auth's [`SaslSession`], the pre-authentication gate, and KIP-368 session
//! lifetimes and re-authentication.
//!
//! Kafka's state machine, which librdkafka, the Java client and kafka-python expect:
//! 1. Before authentication a SASL connection may send ApiVersions and SaslHandshake; any
//!    other request closes it (no response).
//! 2. SaslHandshake names the mechanism. Not offered: UNSUPPORTED_SASL_MECHANISM with the
//!    offered list, then the connection closes. v1 is followed by SaslAuthenticate
//!    requests; v0 by raw SASL tokens, each a length-prefixed frame without a Kafka header,
//!    answered the same way (failure there just closes, as Kafka does).
//! 3. SaslAuthenticate carries the mechanism's messages. A refusal is answered with
//!    SASL_AUTHENTICATION_FAILED and a message, then the connection closes.
//! 4. On success the session gets the principal; v1+ responses carry
//!    `session_lifetime_ms`: the OAUTHBEARER token's remaining life, bounded by
//!    `connections.max.reauth.ms` when set. After that the next request other than a
//!    re-authentication closes the connection. Re-authentication is a new SaslHandshake v1 +
//!    SaslAuthenticate on the live connection, with the same mechanism and principal;
//!    requests in between are still served under the old session until it expires.
//!
//! On PLAINTEXT and SSL listeners SaslHandshake and SaslAuthenticate get
//! ILLEGAL_SASL_STATE, as Kafka answers them after authentication.
//!
//! Credentials never reach a log: only the user (from the exchange's own logs), the
//! mechanism and the outcome.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    ApiKey, RequestHeader, ResponseKind, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use tokio::time::Instant;
use tracing::{debug, info};
use weft_auth::sasl::Mechanism;
use weft_auth::sasl::session::{SaslConfig, SaslSession, SaslStep};

use super::{Listener, SaslSettings};
use crate::session::Session;

/// What the connection does with a frame after the SASL gate saw it.
pub(crate) enum Verdict {
    /// Not a SASL frame, and allowed now: handle it as usual.
    Pass,
    /// Send this (complete, length-prefixed) frame; the exchange goes on.
    Reply(BytesMut),
    /// Send this frame, then close the connection.
    ReplyThenClose(BytesMut, String),
    /// Close without an answer.
    Close(String),
}

enum State {
    /// No exchange running (before the first handshake, or authenticated).
    Idle,
    Exchange {
        session: Box<SaslSession>,
        /// After SaslHandshake v0: raw tokens instead of SaslAuthenticate.
        raw: bool,
        /// A re-authentication of an authenticated connection.
        reauth: bool,
    },
}

/// The SASL state of one connection.
pub(crate) struct SaslConn {
    /// `None` on PLAINTEXT and SSL listeners.
    config: Option<Arc<SaslConfig>>,
    max_reauth: Option<Duration>,
    state: State,
    /// The mechanism of the completed authentication (re-authentication must use it).
    authenticated: Option<Mechanism>,
    /// When the completed authentication stops being valid (KIP-368).
    expires: Option<Instant>,
}

impl SaslConn {
    pub(crate) fn new(listener: &Listener, settings: &SaslSettings) -> SaslConn {
        let config = listener.protocol.uses_sasl().then(|| {
            settings.config.clone().unwrap_or_else(|| {
                Arc::new(SaslConfig {
                    mechanisms: Vec::new(),
                    credentials: None,
                    jwt: None,
                    internal: None,
                })
            })
        });
        SaslConn {
            config,
            max_reauth: settings.max_reauth,
            state: State::Idle,
            authenticated: None,
            expires: None,
        }
    }

    /// The next frame is a raw SASL token (after SaslHandshake v0), not a Kafka request.
    pub(crate) fn expects_raw(&self) -> bool {
        matches!(self.state, State::Exchange { raw: true, .. })
    }

    /// Looks at one frame (without its length prefix) before the handlers do.
    pub(crate) async fn on_frame(&mut self, frame: &Bytes, session: &mut Session) -> Verdict {
        if self.expects_raw() {
            return self.raw_token(frame, session).await;
        }
        let api_key = i16::from_be_bytes([frame[0], frame[1]]);
        if api_key == ApiKey::SaslHandshake as i16 {
            return self.handshake(frame.clone(), session);
        }
        if api_key == ApiKey::SaslAuthenticate as i16 {
            return self.authenticate(frame.clone(), session).await;
        }
        if self.config.is_none() || api_key == ApiKey::ApiVersions as i16 {
            return Verdict::Pass;
        }
        if self.authenticated.is_none() {
            let api = crate::stats::api_name(api_key);
            return Verdict::Close(format!(
                "{api} request before SASL authentication completed"
            ));
        }
        if self.expires.is_some_and(|at| Instant::now() >= at) {
            return Verdict::Close(
                "SASL session expired without re-authentication (KIP-368)".to_owned(),
            );
        }
        Verdict::Pass
    }

    fn handshake(&mut self, frame: Bytes, session: &Session) -> Verdict {
        let (header, req) = match decode::<SaslHandshakeRequest>(ApiKey::SaslHandshake, frame) {
            Ok(d) => d,
            Err(reason) => return Verdict::Close(reason),
        };
        let version = header.request_api_version;
        let reply = |code: i16, mechanisms: Vec<Mechanism>| {
            let resp = SaslHandshakeResponse::default()
                .with_error_code(code)
                .with_mechanisms(
                    mechanisms
                        .iter()
                        .map(|m| StrBytes::from_static_str(m.as_str()))
                        .collect(),
                );
            crate::server::encode(
                ApiKey::SaslHandshake,
                version,
                header.correlation_id,
                &ResponseKind::SaslHandshake(resp),
            )
        };
        let Some(config) = self.config.clone() else {
            return verdict(
                reply(ResponseError::IllegalSaslState.code(), Vec::new()),
                None,
            );
        };
        let offered = config.offered();
        if matches!(self.state, State::Exchange { .. }) {
            return verdict(
                reply(ResponseError::IllegalSaslState.code(), offered),
                Some("SaslHandshake in the middle of a SASL exchange".to_owned()),
            );
        }
        let reauth = self.authenticated.is_some();
        if reauth && version == 0 {
            return verdict(
                reply(ResponseError::IllegalSaslState.code(), offered),
                Some("re-authentication needs SaslHandshake v1".to_owned()),
            );
        }
        let requested = req.mechanism.as_str();
        if let Some(previous) = self.authenticated
            && previous.as_str() != requested
        {
            return verdict(
                reply(ResponseError::IllegalSaslState.code(), offered),
                Some(format!(
                    "re-authentication with {requested} instead of {previous}"
                )),
            );
        }
        match SaslSession::start(config, requested) {
            Ok(exchange) => {
                debug!(peer = %session.peer, mechanism = requested, version, reauth, "sasl handshake");
                self.state = State::Exchange {
                    session: Box::new(exchange),
                    raw: version == 0,
                    reauth,
                };
                verdict(reply(0, offered), None)
            }
            Err(_) => {
                info!(peer = %session.peer, mechanism = requested, "sasl mechanism not enabled");
                verdict(
                    reply(ResponseError::UnsupportedSaslMechanism.code(), offered),
                    Some(format!("SASL mechanism {requested:?} not enabled")),
                )
            }
        }
    }

    async fn authenticate(&mut self, frame: Bytes, session: &mut Session) -> Verdict {
        let (header, req) = match decode::<SaslAuthenticateRequest>(ApiKey::SaslAuthenticate, frame)
        {
            Ok(d) => d,
            Err(reason) => return Verdict::Close(reason),
        };
        let version = header.request_api_version;
        let reply = |code: i16, message: Option<String>, bytes: Vec<u8>, life: i64| {
            let resp = SaslAuthenticateResponse::default()
                .with_error_code(code)
                .with_error_message(message.map(StrBytes::from_string))
                .with_auth_bytes(Bytes::from(bytes))
                .with_session_lifetime_ms(life);
            crate::server::encode(
                ApiKey::SaslAuthenticate,
                version,
                header.correlation_id,
                &ResponseKind::SaslAuthenticate(resp),
            )
        };
        let exchange = match (&self.config, &mut self.state) {
            (Some(_), State::Exchange { raw: false, .. }) => {
                match std::mem::replace(&mut self.state, State::Idle) {
                    State::Exchange {
                        session, reauth, ..
                    } => Some((session, reauth)),
                    State::Idle => None,
                }
            }
            _ => None,
        };
        let Some((mut exchange, reauth)) = exchange else {
            let message = "SaslAuthenticate outside a SASL exchange (send SaslHandshake v1 first)";
            let close = self.config.is_some().then(|| message.to_owned());
            return verdict(
                reply(
                    ResponseError::IllegalSaslState.code(),
                    Some(message.to_owned()),
                    Vec::new(),
                    0,
                ),
                close,
            );
        };
        let mechanism = exchange.mechanism();
        match exchange.step(&req.auth_bytes).await {
            SaslStep::Continue(bytes) => {
                self.state = State::Exchange {
                    session: exchange,
                    raw: false,
                    reauth,
                };
                verdict(reply(0, None, bytes, 0), None)
            }
            SaslStep::Success {
                principal,
                response,
                expires_at,
            } => {
                if reauth && principal != session.principal {
                    info!(peer = %session.peer, %mechanism, "re-authentication as another principal refused");
                    let message =
                        "authentication failed: re-authentication cannot change the principal";
                    return verdict(
                        reply(
                            ResponseError::SaslAuthenticationFailed.code(),
                            Some(message.to_owned()),
                            Vec::new(),
                            0,
                        ),
                        Some(message.to_owned()),
                    );
                }
                let lifetime = self.complete(mechanism, expires_at);
                info!(peer = %session.peer, %principal, %mechanism, reauth,
                    session_lifetime_ms = lifetime.map(|d| d.as_millis() as u64),
                    "sasl authentication succeeded");
                session.principal = principal;
                let life_ms = lifetime.map_or(0, |d| d.as_millis().max(1) as i64);
                verdict(reply(0, None, response, life_ms), None)
            }
            SaslStep::Failure { message } => {
                info!(peer = %session.peer, %mechanism, reauth, "sasl authentication failed; closing after the response");
                verdict(
                    reply(
                        ResponseError::SaslAuthenticationFailed.code(),
                        Some(message.clone()),
                        Vec::new(),
                        0,
                    ),
                    Some(message),
                )
            }
        }
    }

    /// A raw token after SaslHandshake v0: answered with a length-prefixed token; a failure
    /// closes the connection without an answer (the v0 protocol has no error frame).
    async fn raw_token(&mut self, frame: &Bytes, session: &mut Session) -> Verdict {
        let State::Exchange {
            session: mut exchange,
            reauth,
            ..
        } = std::mem::replace(&mut self.state, State::Idle)
        else {
            return Verdict::Close("raw SASL token outside an exchange".to_owned());
        };
        let mechanism = exchange.mechanism();
        match exchange.step(frame).await {
            SaslStep::Continue(bytes) => {
                self.state = State::Exchange {
                    session: exchange,
                    raw: true,
                    reauth,
                };
                Verdict::Reply(raw_frame(&bytes))
            }
            SaslStep::Success {
                principal,
                response,
                expires_at,
            } => {
                let lifetime = self.complete(mechanism, expires_at);
                info!(peer = %session.peer, %principal, %mechanism,
                    session_lifetime_ms = lifetime.map(|d| d.as_millis() as u64),
                    "sasl authentication succeeded (handshake v0)");
                session.principal = principal;
                Verdict::Reply(raw_frame(&response))
            }
            SaslStep::Failure { message } => {
                info!(peer = %session.peer, %mechanism, "sasl authentication failed (handshake v0)");
                Verdict::Close(message)
            }
        }
    }

    /// Records a successful authentication; returns the session lifetime, if bounded.
    fn complete(&mut self, mechanism: Mechanism, expires_at: Option<u64>) -> Option<Duration> {
        let token_left = expires_at.map(|exp| {
            let now_ms = crate::server::now_ms().max(0) as u64;
            Duration::from_millis(exp.saturating_mul(1000).saturating_sub(now_ms))
        });
        let lifetime = match (token_left, self.max_reauth) {
            (Some(t), Some(m)) => Some(t.min(m)),
            (t, m) => t.or(m),
        };
        self.authenticated = Some(mechanism);
        self.expires = lifetime.map(|d| Instant::now() + d);
        lifetime
    }
}

/// Decodes a SASL request frame; out-of-range versions and malformed bodies close.
fn decode<T: Decodable>(api: ApiKey, mut body: Bytes) -> Result<(RequestHeader, T), String> {
    let version = i16::from_be_bytes([body[2], body[3]]);
    let range = api.valid_versions();
    match crate::versions::range(api as i16) {
        Some((_, min, max)) if (min..=max).contains(&version) && version >= range.min => {}
        _ => return Err(format!("{api:?} version {version} is not served")),
    }
    let header = RequestHeader::decode(&mut body, api.request_header_version(version))
        .map_err(|e| format!("malformed {api:?} v{version} request header: {e}"))?;
    let req = T::decode(&mut body, version)
        .map_err(|e| format!("malformed {api:?} v{version} request: {e}"))?;
    Ok((header, req))
}

fn verdict(
    encoded: Result<BytesMut, crate::server::Close>,
    close_after: Option<String>,
) -> Verdict {
    match (encoded, close_after) {
        (Ok(b), None) => Verdict::Reply(b),
        (Ok(b), Some(reason)) => Verdict::ReplyThenClose(b, reason),
        (Err(crate::server::Close(reason)), _) => Verdict::Close(reason),
    }
}

fn raw_frame(bytes: &[u8]) -> BytesMut {
    let mut b = BytesMut::with_capacity(4 + bytes.len());
    b.put_u32(bytes.len() as u32);
    b.put_slice(bytes);
    b
}
