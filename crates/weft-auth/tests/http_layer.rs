//! `AuthLayer` in front of a tiny axum router: bearer, basic, query token, anonymous, and the
//! RFC 6750 challenges on refusal.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::Extension;
use axum::http::{Request, StatusCode, header};
use axum::routing::get;
use base64::Engine as _;
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;
use weft_auth::Principal;
use weft_auth::http::{AuthLayer, AuthOptions, BearerError, HttpAuthenticator, Refusal};

/// Accepts the bearer token "good" (alice), refuses "noscope" for a missing scope; Basic
/// bob:pw.
struct Fixed;

#[async_trait::async_trait]
impl HttpAuthenticator for Fixed {
    async fn bearer(&self, token: &str) -> Result<Principal, Refusal> {
        match token {
            "good" => Ok(Principal::user("alice")),
            "noscope" => Err(Refusal {
                error: BearerError::InsufficientScope,
                description: "the token lacks required scope \"registry:write\"".into(),
                scope: Some("registry:write".into()),
            }),
            _ => Err(Refusal {
                error: BearerError::InvalidToken,
                description: "the token expired".into(),
                scope: None,
            }),
        }
    }

    async fn basic(&self, user: &str, password: &str) -> Result<Principal, Refusal> {
        if user == "bob" && password == "pw" {
            Ok(Principal::user("bob"))
        } else {
            Err(Refusal {
                error: BearerError::InvalidToken,
                description: "invalid user name or password".into(),
                scope: None,
            })
        }
    }
}

fn app(options: AuthOptions) -> Router {
    Router::new()
        .route(
            "/whoami",
            get(|Extension(p): Extension<Principal>| async move { p.to_string() }),
        )
        .layer(AuthLayer::new(Arc::new(Fixed), options))
}

/// Sends one request; returns status, WWW-Authenticate and body.
async fn call(app: &Router, uri: &str, auth: Option<&str>) -> (StatusCode, Option<String>, String) {
    let mut req = Request::builder().uri(uri);
    if let Some(a) = auth {
        req = req.header(header::AUTHORIZATION, a);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let status = resp.status();
    let challenge = resp
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().expect("ascii").to_owned());
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        challenge,
        String::from_utf8(body.to_vec()).expect("utf8"),
    )
}

/// Like [`call`] with extra headers and no Authorization.
async fn call_with(
    app: &Router,
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, Option<String>, String) {
    let mut req = Request::builder().uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let status = resp.status();
    let challenge = resp
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().expect("ascii").to_owned());
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        challenge,
        String::from_utf8(body.to_vec()).expect("utf8"),
    )
}

fn basic(user_pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_pass)
    )
}

#[tokio::test]
async fn bearer_basic_and_challenges() {
    let app = app(AuthOptions {
        basic: true,
        ..AuthOptions::default()
    });
    let ok = |who: &str| (StatusCode::OK, None, who.to_owned());
    assert_eq!(
        call(&app, "/whoami", Some("Bearer good")).await,
        ok("User:alice")
    );
    assert_eq!(
        call(&app, "/whoami", Some("bearer good")).await,
        ok("User:alice")
    );
    assert_eq!(
        call(&app, "/whoami", Some(&basic("bob:pw"))).await,
        ok("User:bob")
    );

    let challenge =
        |status: StatusCode, value: &str| (status, Some(value.to_owned()), String::new());
    // Missing: 401 with the bare challenge (no error code).
    assert_eq!(
        call(&app, "/whoami", None).await,
        challenge(StatusCode::UNAUTHORIZED, r#"Bearer realm="weft""#)
    );
    assert_eq!(
        call(&app, "/whoami", Some("Bearer expired")).await,
        challenge(
            StatusCode::UNAUTHORIZED,
            r#"Bearer realm="weft", error="invalid_token", error_description="the token expired""#
        )
    );
    assert_eq!(
        call(&app, "/whoami", Some("Bearer noscope")).await,
        challenge(
            StatusCode::FORBIDDEN,
            r#"Bearer realm="weft", error="insufficient_scope", error_description="the token lacks required scope registry:write", scope="registry:write""#
        )
    );
    assert_eq!(
        call(&app, "/whoami", Some(&basic("bob:nope"))).await.0,
        StatusCode::UNAUTHORIZED
    );
    for bad in [
        "Bearer",
        "Bearer a b",
        "Basic !!!",
        &basic("nocolon"),
        "Digest x",
    ] {
        let (status, c, _) = call(&app, "/whoami", Some(bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(
            c.expect("challenge").contains(r#"error="invalid_request""#),
            "{bad}"
        );
    }
    // The query token is off unless enabled.
    assert_eq!(
        call(&app, "/whoami?access_token=good", None).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn basic_off_query_token_and_anonymous() {
    let app = app(AuthOptions {
        query_token: true,
        allow_anonymous: true,
        ..AuthOptions::default()
    });
    assert_eq!(call(&app, "/whoami", None).await.2, "User:ANONYMOUS");
    // Only stream requests (EventSource, WebSocket upgrade) may carry the token in the query.
    let sse = [("accept", "text/event-stream")];
    let ws = [("upgrade", "websocket"), ("connection", "upgrade")];
    assert_eq!(
        call_with(&app, "/whoami?x=1&access_token=good", &sse)
            .await
            .2,
        "User:alice"
    );
    assert_eq!(
        call_with(&app, "/whoami?access_token=good", &ws).await.2,
        "User:alice"
    );
    assert_eq!(
        call(&app, "/whoami?x=1&access_token=good", None).await.2,
        "User:ANONYMOUS"
    );
    assert_eq!(
        call_with(&app, "/whoami?access_token=bad", &sse).await.0,
        StatusCode::UNAUTHORIZED
    );
    // Basic is refused when not enabled, even with right credentials.
    let (status, c, _) = call(&app, "/whoami", Some(&basic("bob:pw"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        c.expect("challenge")
            .contains("unsupported authorization scheme")
    );
}

/// Scopes per route, ACL checks per route, 403 in the listener's format; public paths,
/// the principal header and the `Authenticated` extension.
#[tokio::test]
async fn policy_scopes_acls_public_paths_and_principal_header() {
    use axum::http::{HeaderMap, Method, Response};
    use weft_auth::http::{Authenticated, Authorization, Check, HttpPolicy};
    use weft_auth::{
        AclBinding, Authorizer, AuthorizerConfig, Operation, Permission, ResourcePattern,
        ResourceType,
    };

    /// GET needs scope "read" and READ on the topic named by the path; POST "write"/WRITE.
    struct Topics;
    impl HttpPolicy for Topics {
        fn scope(&self, method: &Method, _path: &str) -> Option<String> {
            Some(
                if method == Method::GET {
                    "read"
                } else {
                    "write"
                }
                .to_owned(),
            )
        }
        fn checks(&self, method: &Method, path: &str) -> Vec<Check> {
            let op = if method == Method::GET {
                Operation::Read
            } else {
                Operation::Write
            };
            path.strip_prefix("/t/")
                .map(|t| vec![Check::new(op, ResourceType::Topic, t)])
                .unwrap_or_default()
        }
        fn denied(&self, principal: &Principal, check: &Check) -> Response<Body> {
            let mut r = Response::new(Body::from(format!(
                "{principal} may not {} {}",
                check.operation, check.name
            )));
            *r.status_mut() = StatusCode::FORBIDDEN;
            r
        }
    }
    /// Bearer "r" = alice with scope read, "rw" = alice with read and write; Basic bob:pw.
    struct Scoped;
    #[async_trait::async_trait]
    impl HttpAuthenticator for Scoped {
        async fn bearer(&self, _t: &str) -> Result<Principal, Refusal> {
            unreachable!("bearer_session is used")
        }
        async fn bearer_session(&self, t: &str) -> Result<Authenticated, Refusal> {
            let scopes: &[&str] = match t {
                "r" => &["read"],
                "rw" => &["read", "write"],
                _ => &[],
            };
            Ok(Authenticated {
                principal: Principal::user("alice"),
                expires_at: Some(1_900_000_000),
                scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
                method: weft_auth::http::AuthMethod::Bearer,
            })
        }
        async fn basic(&self, u: &str, _p: &str) -> Result<Principal, Refusal> {
            Ok(Principal::user(u))
        }
    }
    let authorizer = Arc::new(Authorizer::new(AuthorizerConfig {
        enabled: true,
        ..AuthorizerConfig::default()
    }));
    authorizer.add([
        AclBinding::new(
            ResourcePattern::literal(ResourceType::Topic, "orders"),
            "User:alice",
            Operation::All,
            Permission::Allow,
        ),
        AclBinding::new(
            ResourcePattern::literal(ResourceType::Topic, "orders"),
            "User:bob",
            Operation::Read,
            Permission::Allow,
        ),
        AclBinding::new(
            ResourcePattern::prefixed(ResourceType::Topic, "pay"),
            "User:alice",
            Operation::Read,
            Permission::Allow,
        ),
    ]);
    let app = Router::new()
        .route(
            "/t/{topic}",
            get(
                |Extension(a): Extension<Authenticated>, h: HeaderMap| async move {
                    format!(
                        "{} {:?} {:?}",
                        a.principal,
                        a.expires_at,
                        h.get("x-weft-principal")
                    )
                },
            )
            .post(|| async { "written" }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .layer(
            AuthLayer::new(
                Arc::new(Scoped),
                AuthOptions {
                    basic: true,
                    public_paths: vec!["/healthz".into()],
                    principal_header: Some(axum::http::HeaderName::from_static("x-weft-principal")),
                    ..AuthOptions::default()
                },
            )
            .with_authorization(Authorization {
                authorizer,
                policy: Arc::new(Topics),
            }),
        );
    assert_eq!(
        call(&app, "/healthz", None).await,
        (StatusCode::OK, None, "ok".into())
    );
    assert_eq!(
        call(&app, "/healthz", Some("Bearer whatever")).await.0,
        StatusCode::OK
    );
    // The header a client sends is replaced by the authenticated name.
    let mut req = Request::builder()
        .uri("/t/orders")
        .header("x-weft-principal", "admin")
        .header(header::AUTHORIZATION, "Bearer r");
    req = req.header("accept", "*/*");
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).expect("req"))
        .await
        .expect("infallible");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(&body[..], b"User:alice Some(1900000000) Some(\"alice\")");
    // Missing scope: 403 insufficient_scope naming it.
    let (status, c, _) = call_post(&app, "/t/orders", "Bearer r").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        c.as_deref(),
        Some(
            r#"Bearer realm="weft", error="insufficient_scope", error_description="the token lacks required scope write", scope="write""#
        )
    );
    assert_eq!(call_post(&app, "/t/orders", "Bearer rw").await.2, "written");
    // ACLs: prefixed read allows pay*, denies writes there; bob reads orders, may not write.
    assert_eq!(
        call(&app, "/t/payments", Some("Bearer r")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call_post(&app, "/t/payments", "Bearer rw").await,
        (
            StatusCode::FORBIDDEN,
            None,
            "User:alice may not write payments".into()
        )
    );
    assert_eq!(
        call(&app, "/t/other", Some("Bearer r")).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(&app, "/t/orders", Some(&basic("bob:pw"))).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call_post(&app, "/t/orders", &basic("bob:pw")).await.0,
        StatusCode::FORBIDDEN
    );
}

async fn call_post(app: &Router, uri: &str, auth: &str) -> (StatusCode, Option<String>, String) {
    let req = Request::builder()
        .method("POST")
        .uri(uri)
        .header(header::AUTHORIZATION, auth);
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let status = resp.status();
    let challenge = resp
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().expect("ascii").to_owned());
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        challenge,
        String::from_utf8(body.to_vec()).expect("utf8"),
    )
}
