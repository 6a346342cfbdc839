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
    assert_eq!(
        call(&app, "/whoami?x=1&access_token=good", None).await.2,
        "User:alice"
    );
    assert_eq!(
        call(&app, "/whoami?access_token=bad", None).await.0,
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
