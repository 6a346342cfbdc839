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
use axum::http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use tower::{Layer, Service};
use tracing::debug;

use crate::acl::WILDCARD;
use crate::jwt::{JwtError, JwtValidator};
use crate::{Authorizer, Operation, Principal, ResourceType};

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

/// The request extension [`AuthLayer`] inserts (besides the bare [`Principal`]): who, and
/// until when. Long-lived responses (SSE, WebSocket) close themselves at `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub principal: Principal,
    /// The token's `exp`, seconds since the Unix epoch; `None` for HTTP Basic and anonymous.
    pub expires_at: Option<u64>,
    /// The token's scopes (empty for HTTP Basic and anonymous).
    pub scopes: Vec<String>,
    /// How the caller authenticated.
    pub method: AuthMethod,
}

/// How a request was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    Bearer,
    Basic,
    /// No credentials, on a public route or with anonymous access allowed.
    Anonymous,
    /// `weft serve`'s own credential (crate::internal) from a loopback peer: the principal
    /// `User:weft-internal`, no scope needed (its rights come from being a super-user).
    Internal,
    /// No `Authorization`, but a client certificate the TLS handshake verified
    /// ([`ClientCertificate`]): `User:<CN>`, rights from the ACLs as for HTTP Basic.
    ClientCertificate,
}

/// A request extension the TLS edge inserts when mutual TLS verified the client's
/// certificate: the principal it maps to (`User:<CN>`, as on the Kafka SSL listeners).
/// [`AuthLayer`] uses it when the request carries no `Authorization`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate(pub Principal);

impl Authenticated {
    fn anonymous() -> Authenticated {
        Authenticated {
            principal: Principal::Anonymous,
            expires_at: None,
            scopes: Vec::new(),
            method: AuthMethod::Anonymous,
        }
    }
}

/// Checks HTTP credentials. The binary implements it over a [`JwtValidator`] and the SCRAM
/// credential store; tests implement it directly.
#[async_trait::async_trait]
pub trait HttpAuthenticator: Send + Sync + 'static {
    async fn bearer(&self, token: &str) -> Result<Principal, Refusal>;
    /// A bearer token with its expiry and scopes; the default knows neither.
    async fn bearer_session(&self, token: &str) -> Result<Authenticated, Refusal> {
        self.bearer(token).await.map(|principal| Authenticated {
            principal,
            expires_at: None,
            scopes: Vec::new(),
            method: AuthMethod::Bearer,
        })
    }
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

    async fn bearer_session(&self, token: &str) -> Result<Authenticated, Refusal> {
        self.validate(token)
            .await
            .map(|v| Authenticated {
                principal: v.principal,
                expires_at: Some(v.expires_at),
                scopes: v.scopes,
                method: AuthMethod::Bearer,
            })
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
        self.bearer_session(token).await.map(|a| a.principal)
    }

    async fn bearer_session(&self, token: &str) -> Result<Authenticated, Refusal> {
        match &self.jwt {
            Some(v) => v.bearer_session(token).await,
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
        // weft serve's own user never authenticates with stored credentials.
        if crate::internal::is_reserved(user) {
            return Err(refused("invalid user name or password"));
        }
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
    /// Accept `?access_token=` (browsers' EventSource/WebSocket cannot set headers), only on
    /// stream requests: a WebSocket upgrade or `Accept: text/event-stream`. The query string
    /// must then be kept out of access logs.
    pub query_token: bool,
    /// Paths served without credentials (health checks), matched exactly.
    pub public_paths: Vec<String>,
    /// Overwrite this header with the authenticated principal's name (the gateway reads its
    /// caller from `x-weft-principal`; a client must not be able to choose it).
    pub principal_header: Option<HeaderName>,
    /// `weft serve`'s own credential: `Authorization: Bearer <secret>` from a loopback peer
    /// is `User:weft-internal`, checked (in constant time) before any JWT validation.
    pub internal: Option<crate::InternalCredential>,
}

impl Default for AuthOptions {
    fn default() -> Self {
        AuthOptions {
            realm: "weft".into(),
            allow_anonymous: false,
            basic: false,
            query_token: false,
            public_paths: Vec::new(),
            principal_header: None,
            internal: None,
        }
    }
}

/// One authorisation check a request needs: `operation` on `(resource_type, name)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub operation: Operation,
    pub resource_type: ResourceType,
    pub name: String,
}

impl Check {
    pub fn new(
        operation: Operation,
        resource_type: ResourceType,
        name: impl Into<String>,
    ) -> Check {
        Check {
            operation,
            resource_type,
            name: name.into(),
        }
    }
}

/// What a listener requires of an authenticated request, by method and path: the scope a
/// bearer token must carry (per route group) and the ACL checks; and how a denial looks in
/// the listener's own error format.
pub trait HttpPolicy: Send + Sync + 'static {
    /// The scope a bearer token needs for this route, if any (HTTP Basic users have no
    /// scopes: their rights are their ACLs).
    fn scope(&self, method: &Method, path: &str) -> Option<String>;
    /// The ACL checks for this route (all must allow).
    fn checks(&self, method: &Method, path: &str) -> Vec<Check>;
    /// The 403 answer for a denied check (the listener's error body).
    fn denied(&self, principal: &Principal, check: &Check) -> Response<Body>;
}

/// Authorisation behind authentication: the scope and ACL checks of an [`HttpPolicy`],
/// decided by the shared [`Authorizer`].
#[derive(Clone)]
pub struct Authorization {
    pub authorizer: Arc<Authorizer>,
    pub policy: Arc<dyn HttpPolicy>,
}

/// The caller's rights, a request extension [`AuthLayer`] inserts when it enforces ACLs
/// (with an [`Authorization`]): for handlers that decide per item, beyond the route's
/// [`Check`]s — a list filtered to what the caller may see, an object readable through any
/// of several resources. Absent without authorisation: handlers then allow everything
/// ([`Permissions::allows_in`] does that for an `Option`).
#[derive(Clone)]
pub struct Permissions {
    authorizer: Arc<Authorizer>,
    principal: Principal,
    host: String,
}

impl fmt::Debug for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permissions")
            .field("principal", &self.principal)
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl Permissions {
    pub fn new(
        authorizer: Arc<Authorizer>,
        principal: Principal,
        host: impl Into<String>,
    ) -> Permissions {
        Permissions {
            authorizer,
            principal,
            host: host.into(),
        }
    }

    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// Whether the caller may do `operation` on `(resource_type, name)` (the shared
    /// [`Authorizer`]: super-users, deny wins, cached; a denial is logged).
    pub fn allows(&self, operation: Operation, resource_type: ResourceType, name: &str) -> bool {
        self.authorizer
            .authorize(&self.principal, &self.host, operation, resource_type, name)
            .is_allowed()
    }

    /// [`Permissions::allows`] without the denial log, for filtering lists: an item the
    /// caller may not see is hidden, not refused.
    pub fn allows_quietly(
        &self,
        operation: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        self.authorizer
            .authorize_quietly(&self.principal, &self.host, operation, resource_type, name)
            .is_allowed()
    }

    /// [`Permissions::allows`] where `None` (no authorisation on this listener) allows.
    pub fn allows_in(
        permissions: Option<&Permissions>,
        operation: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        permissions.is_none_or(|p| p.allows(operation, resource_type, name))
    }
}

/// Authenticates every request and inserts its [`Principal`] and [`Authenticated`] as
/// extensions; with an [`Authorization`], also enforces scopes and ACLs (403) and inserts
/// the caller's [`Permissions`].
#[derive(Clone)]
pub struct AuthLayer {
    auth: Arc<dyn HttpAuthenticator>,
    options: Arc<AuthOptions>,
    authz: Option<Authorization>,
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
            authz: None,
        }
    }

    /// Adds scope and ACL enforcement.
    pub fn with_authorization(mut self, authz: Authorization) -> AuthLayer {
        self.authz = Some(authz);
        self
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService {
            inner,
            auth: self.auth.clone(),
            options: self.options.clone(),
            authz: self.authz.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Arc<dyn HttpAuthenticator>,
    options: Arc<AuthOptions>,
    authz: Option<Authorization>,
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
        && is_stream_request(req)
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

/// A WebSocket upgrade or an EventSource request: the only ones that may carry a token in
/// the query string (browsers cannot set headers on them).
fn is_stream_request<B>(req: &Request<B>) -> bool {
    let has = |name: header::HeaderName, needle: &str| {
        req.headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.to_ascii_lowercase().contains(needle))
    };
    has(header::UPGRADE, "websocket") || has(header::ACCEPT, "text/event-stream")
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
        let authz = self.authz.clone();
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
            let public = options.public_paths.iter().any(|p| p == req.uri().path());
            let client_cert = req.extensions().get::<ClientCertificate>().cloned();
            let result = match presented(&req, &options) {
                // weft serve's own clients: before JWT validation, loopback peers only.
                Presented::Bearer(t)
                    if !public
                        && options
                            .internal
                            .as_ref()
                            .is_some_and(|c| c.verify_token(&t)) =>
                {
                    if is_loopback_peer(&req) {
                        Ok(Authenticated {
                            principal: crate::internal::internal_principal(),
                            expires_at: None,
                            scopes: Vec::new(),
                            method: AuthMethod::Internal,
                        })
                    } else {
                        Err(Refusal {
                            error: BearerError::InvalidToken,
                            description: "the internal credential is accepted from loopback only"
                                .into(),
                            scope: None,
                        })
                    }
                }
                Presented::None if !public && client_cert.is_some() => {
                    match client_cert.map(|c| c.0) {
                        Some(p) if !crate::internal::is_reserved(p.name()) => Ok(Authenticated {
                            principal: p,
                            expires_at: None,
                            scopes: Vec::new(),
                            method: AuthMethod::ClientCertificate,
                        }),
                        _ => Err(Refusal {
                            error: BearerError::InvalidToken,
                            description: "the client certificate names a reserved principal".into(),
                            scope: None,
                        }),
                    }
                }
                Presented::None if options.allow_anonymous || public => {
                    Ok(Authenticated::anonymous())
                }
                Presented::None => return Ok(challenge(None)),
                // Credentials on a public route are ignored rather than refused: a health
                // check must not fail because a proxy forwards a stale token.
                _ if public => Ok(Authenticated::anonymous()),
                Presented::Bad(why) => Err(Refusal {
                    error: BearerError::InvalidRequest,
                    description: why.into(),
                    scope: None,
                }),
                Presented::Bearer(t) => auth.bearer_session(&t).await,
                Presented::Basic(u, p) => auth.basic(&u, &p).await.map(|principal| Authenticated {
                    principal,
                    expires_at: None,
                    scopes: Vec::new(),
                    method: AuthMethod::Basic,
                }),
            };
            let who = match result {
                Ok(who) => who,
                Err(r) => {
                    debug!(error = r.error.as_str(), reason = %r.description, "http authentication refused");
                    return Ok(challenge(Some(r)));
                }
            };
            if let Some(authz) = authz.as_ref().filter(|_| !public) {
                let method = req.method().clone();
                let path = req.uri().path().to_owned();
                if who.method == AuthMethod::Bearer
                    && let Some(scope) = authz.policy.scope(&method, &path)
                    && !who.scopes.contains(&scope)
                {
                    debug!(principal = %who.principal, scope, "http request lacks scope");
                    return Ok(challenge(Some(Refusal {
                        error: BearerError::InsufficientScope,
                        description: format!("the token lacks required scope {scope:?}"),
                        scope: Some(scope),
                    })));
                }
                let host = peer_host(&req);
                req.extensions_mut().insert(Permissions::new(
                    authz.authorizer.clone(),
                    who.principal.clone(),
                    host.clone(),
                ));
                for check in authz.policy.checks(&method, &path) {
                    let decision = authz.authorizer.authorize(
                        &who.principal,
                        &host,
                        check.operation,
                        check.resource_type,
                        &check.name,
                    );
                    if !decision.is_allowed() {
                        return Ok(authz.policy.denied(&who.principal, &check));
                    }
                }
            }
            if let Some(name) = &options.principal_header {
                req.headers_mut().remove(name);
                if let Ok(v) = HeaderValue::from_str(who.principal.name()) {
                    req.headers_mut().insert(name.clone(), v);
                }
            }
            req.extensions_mut().insert(who.principal.clone());
            req.extensions_mut().insert(who);
            inner.call(req).await
        })
    }
}

/// Whether the request came from a loopback address (`ConnectInfo`; unknown → no).
fn is_loopback_peer<B>(req: &Request<B>) -> bool {
    req.extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .is_some_and(|c| c.0.ip().to_canonical().is_loopback())
}

/// The caller's IP for ACL host matching: axum's `ConnectInfo` when the server provides it,
/// else `*` (then only ACLs for any host apply).
fn peer_host<B>(req: &Request<B>) -> String {
    req.extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or_else(|| WILDCARD.to_owned(), |c| c.0.ip().to_string())
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
