//! HTTP: RFC 6750 `WWW-Authenticate` challenges and [`AuthLayer`], a tower layer that turns
//! `Authorization: Bearer …` (or `Basic …`, or an `access_token` query parameter where
//! enabled for SSE/WebSocket upgrades) into a [`Principal`] request extension.
//!
//! Missing credentials: 401 with `WWW-Authenticate: Bearer realm="…"` (no error code, RFC
//! 6750 section 3.1), unless anonymous access is allowed (then [`Principal::Anonymous`]).
//! Invalid credentials: 401 with `error="invalid_token"` and a description. Missing scope:
//! 403 with `error="insufficient_scope"` and the scope. Neither the token nor the password
//! ever reaches a log line or a response.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use tower::{Layer, Service};
use tracing::debug;

use crate::Principal;
use crate::jwt::{JwtError, JwtValidator};

/// RFC 6750 section 3.1 error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerError {
    InvalidRequest,
    InvalidToken,
    InsufficientScope,
}

impl BearerError {
    pub fn as_str(self) -> &'static str {
        match self {
            BearerError::InvalidRequest => "invalid_request",
            BearerError::InvalidToken => "invalid_token",
            BearerError::InsufficientScope => "insufficient_scope",
        }
    }

    /// The status that goes with the code: 400, 401, 403.
    pub fn status(self) -> StatusCode {
        match self {
            BearerError::InvalidRequest => StatusCode::BAD_REQUEST,
            BearerError::InvalidToken => StatusCode::UNAUTHORIZED,
            BearerError::InsufficientScope => StatusCode::FORBIDDEN,
        }
    }
}

/// A `WWW-Authenticate: Bearer …` challenge.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Challenge {
    pub realm: String,
    pub error: Option<BearerError>,
    pub description: Option<String>,
    pub scope: Option<String>,
}

impl Challenge {
    pub fn new(realm: impl Into<String>) -> Challenge {
        Challenge {
            realm: realm.into(),
            ..Challenge::default()
        }
    }

    /// The header value. Quoted values keep only characters RFC 6750 allows there
    /// (`%x20-21 / %x23-5B / %x5D-7E`): quotes and backslashes are dropped, so a value can
    /// never break out of its quotes.
    pub fn to_header_value(&self) -> String {
        fn quoted(s: &str) -> String {
            s.chars()
                .filter(|c| matches!(*c as u32, 0x20..=0x21 | 0x23..=0x5b | 0x5d..=0x7e))
                .collect()
        }
        let mut out = format!("Bearer realm=\"{}\"", quoted(&self.realm));
        if let Some(e) = self.error {
            out.push_str(&format!(", error=\"{}\"", e.as_str()));
        }
        if let Some(d) = &self.description {
            out.push_str(&format!(", error_description=\"{}\"", quoted(d)));
        }
        if let Some(s) = &self.scope {
            out.push_str(&format!(", scope=\"{}\"", quoted(s)));
        }
        out
    }

    /// A complete 401/403/400 response carrying this challenge.
    pub fn response(&self) -> Response<Body> {
        let status = self
            .error
            .map_or(StatusCode::UNAUTHORIZED, BearerError::status);
        let mut r = Response::new(Body::empty());
        *r.status_mut() = status;
        if let Ok(v) = HeaderValue::from_str(&self.to_header_value()) {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        r
    }
}

/// Why credentials were refused (no secret inside).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub error: BearerError,
    pub description: String,
    pub scope: Option<String>,
}

impl From<JwtError> for Refusal {
    fn from(e: JwtError) -> Refusal {
        Refusal {
            error: e.bearer_error(),
            scope: match &e {
                JwtError::MissingScope(s) => Some(s.clone()),
                _ => None,
            },
            description: e.to_string(),
        }
    }
}

/// Checks HTTP credentials. The binary implements it over a [`JwtValidator`] and the SCRAM
/// credential store; tests implement it directly.
#[async_trait::async_trait]
pub trait HttpAuthenticator: Send + Sync + 'static {
    async fn bearer(&self, token: &str) -> Result<Principal, Refusal>;
    /// HTTP Basic (the registry's `basic.auth.user.info`); refused unless implemented.
    async fn basic(&self, _user: &str, _password: &str) -> Result<Principal, Refusal> {
        Err(Refusal {
            error: BearerError::InvalidRequest,
            description: "basic authentication is not enabled".into(),
            scope: None,
        })
    }
}

#[async_trait::async_trait]
impl HttpAuthenticator for JwtValidator {
    async fn bearer(&self, token: &str) -> Result<Principal, Refusal> {
        self.validate(token)
            .await
            .map(|v| v.principal)
            .map_err(Refusal::from)
    }
}

/// The production authenticator: bearer tokens through a [`JwtValidator`], HTTP Basic
/// against the SCRAM credentials in the state store (the same users as Kafka SASL).
#[derive(Debug, Clone, Default)]
pub struct StoreAuthenticator {
    pub jwt: Option<Arc<JwtValidator>>,
    pub credentials: Option<crate::store::ScramStore>,
}

#[async_trait::async_trait]
impl HttpAuthenticator for StoreAuthenticator {
    async fn bearer(&self, token: &str) -> Result<Principal, Refusal> {
        match &self.jwt {
            Some(v) => v.bearer(token).await,
            None => Err(Refusal {
                error: BearerError::InvalidRequest,
                description: "bearer tokens are not enabled".into(),
                scope: None,
            }),
        }
    }

    async fn basic(&self, user: &str, password: &str) -> Result<Principal, Refusal> {
        let refused = |d: &str| Refusal {
            error: BearerError::InvalidToken,
            description: d.into(),
            scope: None,
        };
        let Some(store) = &self.credentials else {
            return Err(Refusal {
                error: BearerError::InvalidRequest,
                description: "basic authentication is not enabled".into(),
                scope: None,
            });
        };
        match store.verify_password(user, password).await {
            Ok(true) => Ok(Principal::user(user)),
            Ok(false) => Err(refused("invalid user name or password")),
            Err(e) => {
                tracing::warn!(error = %e, "credential store unavailable for basic authentication");
                Err(refused("credentials cannot be checked now"))
            }
        }
    }
}

/// Options of [`AuthLayer`].
#[derive(Debug, Clone)]
pub struct AuthOptions {
    pub realm: String,
    /// No credentials → [`Principal::Anonymous`] instead of 401.
    pub allow_anonymous: bool,
    /// Accept `Authorization: Basic`.
    pub basic: bool,
    /// Accept `?access_token=` (browsers' EventSource/WebSocket cannot set headers). The
    /// query string must then be kept out of access logs.
    pub query_token: bool,
}

impl Default for AuthOptions {
    fn default() -> Self {
        AuthOptions {
            realm: "weft".into(),
            allow_anonymous: false,
            basic: false,
            query_token: false,
        }
    }
}

/// Authenticates every request and inserts its [`Principal`] as an extension.
#[derive(Clone)]
pub struct AuthLayer {
    auth: Arc<dyn HttpAuthenticator>,
    options: Arc<AuthOptions>,
}

impl fmt::Debug for AuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthLayer")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl AuthLayer {
    pub fn new(auth: Arc<dyn HttpAuthenticator>, options: AuthOptions) -> AuthLayer {
        AuthLayer {
            auth,
            options: Arc::new(options),
        }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService {
            inner,
            auth: self.auth.clone(),
            options: self.options.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Arc<dyn HttpAuthenticator>,
    options: Arc<AuthOptions>,
}

impl<S> fmt::Debug for AuthService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthService").finish_non_exhaustive()
    }
}

/// What a request presented.
enum Presented {
    None,
    Bearer(String),
    Basic(String, String),
    Bad(&'static str),
}

fn presented<B>(req: &Request<B>, options: &AuthOptions) -> Presented {
    let mut values = req.headers().get_all(header::AUTHORIZATION).iter();
    if let Some(v) = values.next() {
        if values.next().is_some() {
            return Presented::Bad("more than one Authorization header");
        }
        let Ok(v) = v.to_str() else {
            return Presented::Bad("malformed Authorization header");
        };
        let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            if crate::sasl::oauthbearer::is_b64token(rest) {
                return Presented::Bearer(rest.to_owned());
            }
            return Presented::Bad("malformed bearer token");
        }
        if scheme.eq_ignore_ascii_case("basic") && options.basic {
            let decoded = B64
                .decode(rest)
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            return match decoded.as_deref().and_then(|d| d.split_once(':')) {
                Some((u, p)) if !u.is_empty() => Presented::Basic(u.to_owned(), p.to_owned()),
                _ => Presented::Bad("malformed basic credentials"),
            };
        }
        return Presented::Bad("unsupported authorization scheme");
    }
    if options.query_token
        && let Some(q) = req.uri().query()
    {
        for pair in q.split('&') {
            if let Some(t) = pair.strip_prefix("access_token=") {
                return if crate::sasl::oauthbearer::is_b64token(t) {
                    Presented::Bearer(t.to_owned())
                } else {
                    Presented::Bad("malformed access_token")
                };
            }
        }
    }
    Presented::None
}

impl<S, B> Service<Request<B>> for AuthService<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // The clone that was polled ready serves this request (tower's usual dance).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        let options = self.options.clone();
        Box::pin(async move {
            let challenge = |r: Option<Refusal>| {
                let mut c = Challenge::new(options.realm.clone());
                if let Some(r) = r {
                    c.error = Some(r.error);
                    c.description = Some(r.description);
                    c.scope = r.scope;
                }
                c.response()
            };
            let result = match presented(&req, &options) {
                Presented::None if options.allow_anonymous => Ok(Principal::Anonymous),
                Presented::None => return Ok(challenge(None)),
                Presented::Bad(why) => Err(Refusal {
                    error: BearerError::InvalidRequest,
                    description: why.into(),
                    scope: None,
                }),
                Presented::Bearer(t) => auth.bearer(&t).await,
                Presented::Basic(u, p) => auth.basic(&u, &p).await,
            };
            match result {
                Ok(principal) => {
                    req.extensions_mut().insert(principal);
                    inner.call(req).await
                }
                Err(r) => {
                    debug!(error = r.error.as_str(), reason = %r.description, "http authentication refused");
                    Ok(challenge(Some(r)))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_header_values() {
        let mut c = Challenge::new("weft");
        assert_eq!(c.to_header_value(), r#"Bearer realm="weft""#);
        c.error = Some(BearerError::InvalidToken);
        c.description = Some("the token \"expired\"\\".into());
        assert_eq!(
            c.to_header_value(),
            r#"Bearer realm="weft", error="invalid_token", error_description="the token expired""#
        );
        c.error = Some(BearerError::InsufficientScope);
        c.description = None;
        c.scope = Some("registry:write".into());
        assert_eq!(
            c.to_header_value(),
            r#"Bearer realm="weft", error="insufficient_scope", scope="registry:write""#
        );
        assert_eq!(c.response().status(), StatusCode::FORBIDDEN);
        c.error = Some(BearerError::InvalidToken);
        assert_eq!(c.response().status(), StatusCode::UNAUTHORIZED);
        let line = Challenge {
            realm: "a\r\nSet-Cookie: x".into(),
            ..Challenge::default()
        };
        assert_eq!(line.to_header_value(), r#"Bearer realm="aSet-Cookie: x""#);
    }
}
