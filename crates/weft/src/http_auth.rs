//! HTTP authentication and authorisation for `weft serve` (`[security.http]`): the
//! [`AuthLayer`]s of the HTTP listener (gateway, event store, dashboard, metrics) and of the
//! registry listener, built from `[security]`, plus the JWKS fetcher and the ACL reloader.
//!
//! Off (`require_auth = false`, the default) nothing is layered and every route behaves as
//! before. On: every route needs a valid bearer token (or HTTP Basic on the registry when
//! `basic = true`) except `/healthz` and `/readyz` (and `/metrics` with `metrics_public`);
//! bearer tokens need the route group's scope; with `authorization = true` the ACLs decide
//! (403). Route → resource tables: [`GatewayPolicy`] here, `weft_registry::auth` there.
//!
//! Besides tokens and passwords, both listeners accept `weft serve`'s internal credential
//! (`Authorization: Bearer <secret>` from a loopback peer: `User:weft-internal`, a
//! super-user; its own registry clients send it) and, under `[security.http] tls` with
//! client certificates, a verified certificate without `Authorization` (`User:<CN>`, the
//! Kafka SSL listeners' mapping). ACL host checks see the peer's IP.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::body::Body;
use axum::http::{HeaderName, Method, Response, StatusCode, header};
use tracing::{debug, warn};
use weft_auth::acl::CLUSTER_NAME;
use weft_auth::http::{
    AuthLayer, AuthOptions, Authorization, Check, HttpPolicy, StoreAuthenticator,
};
use weft_auth::store::{AclStore, ScramStore};
use weft_auth::{Authorizer, Operation, Principal, ResourceType, SecurityConfig, SystemClock};

/// The header the gateway and the registry's review mode read their caller from; with
/// authentication on it carries the authenticated name, whatever the client sent.
const PRINCIPAL_HEADER: HeaderName = HeaderName::from_static("x-weft-principal");

/// How often the HTTP authoriser looks for ACL changes in the state store.
const ACL_RELOAD: Duration = Duration::from_secs(2);

/// The layers for both listeners (`None`: authentication off).
pub(crate) struct HttpSecurity {
    pub(crate) http: Option<AuthLayer>,
    pub(crate) registry: Option<AuthLayer>,
    /// Set when ACLs must be reloaded from the store ([`run_acl_reloader`]).
    pub(crate) reload: Option<(AclStore, Arc<Authorizer>)>,
}

/// Builds the layers from `[security]`. `authorizer`: the one shared with the Kafka
/// listener when it has one; otherwise one is built here and reloaded from the store.
/// `internal`: the process's own credential (its principal must be among `security`'s
/// super-users for it to be allowed anything under authorisation).
pub(crate) async fn build(
    security: &SecurityConfig,
    store: &weft_store::Store,
    authorizer: Option<Arc<Authorizer>>,
    internal: &weft_auth::InternalCredential,
) -> anyhow::Result<HttpSecurity> {
    security.validate()?;
    let http = &security.http;
    if !http.require_auth {
        return Ok(HttpSecurity {
            http: None,
            registry: None,
            reload: None,
        });
    }
    weft_auth::store::migrate(store)
        .await
        .context("cannot prepare the ACL and credential tables")?;
    let jwt = match &security.jwt {
        Some(section) => {
            let fetcher = crate::jwks::fetcher(section)?;
            Some(Arc::new(section.validator(fetcher, Arc::new(SystemClock))?))
        }
        None => None,
    };
    let (authorizer, reload) = match authorizer {
        Some(a) => (a, None),
        None => {
            let a = Arc::new(Authorizer::new(security.authorizer_config()?));
            let acls = AclStore::new(store.clone());
            if security.authorization {
                acls.reload_if_changed(&a)
                    .await
                    .context("cannot load the ACLs")?;
            }
            let reload = security.authorization.then(|| (acls, a.clone()));
            (a, reload)
        }
    };
    let options = |basic: bool, public_paths: Vec<String>, query_token: bool| AuthOptions {
        realm: http.realm.clone(),
        allow_anonymous: false,
        basic,
        query_token,
        public_paths,
        principal_header: Some(PRINCIPAL_HEADER),
        internal: Some(internal.clone()),
    };
    let mut public = vec!["/healthz".to_owned(), "/readyz".to_owned()];
    if http.metrics_public {
        public.push("/metrics".to_owned());
    }
    let bearer_only = Arc::new(StoreAuthenticator {
        jwt: jwt.clone(),
        credentials: None,
    });
    let with_basic = Arc::new(StoreAuthenticator {
        jwt,
        credentials: http.basic.then(|| ScramStore::new(store.clone())),
    });
    let scopes = &http.scopes;
    let http_layer = AuthLayer::new(bearer_only, options(false, public, http.query_token))
        .with_authorization(Authorization {
            authorizer: authorizer.clone(),
            policy: Arc::new(GatewayPolicy {
                read: scopes.gateway_read.clone(),
                write: scopes.gateway_write.clone(),
                admin: scopes.admin.clone(),
            }),
        });
    let registry_layer = AuthLayer::new(with_basic, options(http.basic, Vec::new(), false))
        .with_authorization(Authorization {
            authorizer,
            policy: Arc::new(weft_registry::auth::RegistryPolicy {
                read_scope: scopes.registry_read.clone(),
                write_scope: scopes.registry_write.clone(),
            }),
        });
    Ok(HttpSecurity {
        http: Some(http_layer),
        registry: Some(registry_layer),
        reload,
    })
}

/// Keeps the HTTP authoriser's ACLs in step with the state store until `stop` resolves;
/// a failed reload keeps the previous ACLs and is retried.
pub(crate) async fn run_acl_reloader(
    acls: AclStore,
    authorizer: Arc<Authorizer>,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return Ok(()),
            () = tokio::time::sleep(ACL_RELOAD) => {}
        }
        match acls.reload_if_changed(&authorizer).await {
            Ok(true) => debug!("http acls reloaded"),
            Ok(false) => {}
            Err(e) => warn!(error = %e, "http acl reload failed; keeping the previous acls"),
        }
    }
}

/// A validator for `[security.jwt]` (JWKS over http(s), or static keys) for the Kafka
/// listener's SASL OAUTHBEARER (`kafka_listeners`); `None` without the table. Its JWKS cache
/// is its own (same rate limits as the HTTP one).
pub(crate) fn jwt_validator(
    security: &SecurityConfig,
) -> anyhow::Result<Option<Arc<weft_auth::jwt::JwtValidator>>> {
    let Some(section) = &security.jwt else {
        return Ok(None);
    };
    let fetcher = crate::jwks::fetcher(section)?;
    Ok(Some(Arc::new(
        section.validator(fetcher, Arc::new(SystemClock))?,
    )))
}

/// The HTTP listener's routes → scopes and ACL checks.
///
/// | route | scope | check |
/// |---|---|---|
/// | `POST /v1|v2/topics/{t}/records` | gateway write | WRITE topic |
/// | `GET /v1|v2/topics/{t}/…` (records, events, ws) | gateway read | READ topic |
/// | `GET /v1|v2/topics/{t}` | gateway read | DESCRIBE topic |
/// | `/v1/consumers/{g}…` | gateway read/write | READ group |
/// | `GET /v1/groups/{g}` | admin | DESCRIBE group |
/// | `/ui…`, `/metrics`, `/v1/outbox…` | admin | DESCRIBE cluster |
/// | `/v1/webhooks…` reads / writes | gateway read/write | DESCRIBE / ALTER cluster |
/// | other writes (`/v1/scavenge`…) | by group | ALTER cluster |
/// | `/v1/streams…`, `/v1/event-types…`, `GET /v1/topics`, `GET /v1/groups` | by group | none |
struct GatewayPolicy {
    read: Option<String>,
    write: Option<String>,
    admin: Option<String>,
}

fn is_read(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD || method == Method::OPTIONS
}

fn segments(path: &str) -> Vec<String> {
    path.trim_matches('/')
        .split('/')
        .map(|s| {
            // Topic and group names are plain ASCII in practice; `%XX` is decoded anyway.
            let b = s.as_bytes();
            let mut out = Vec::with_capacity(b.len());
            let mut i = 0;
            while i < b.len() {
                let hex = (b[i] == b'%' && i + 2 < b.len())
                    .then(|| std::str::from_utf8(&b[i + 1..i + 3]).ok())
                    .flatten()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b[i]);
                        i += 1;
                    }
                }
            }
            String::from_utf8_lossy(&out).into_owned()
        })
        .collect()
}

impl HttpPolicy for GatewayPolicy {
    fn scope(&self, method: &Method, path: &str) -> Option<String> {
        let seg = segments(path);
        let admin = matches!(seg.first().map(String::as_str), Some("ui" | "metrics"))
            || matches!(
                seg.get(..2),
                Some([v, g]) if v == "v1" && matches!(g.as_str(), "groups" | "outbox" | "scavenge")
            );
        if admin {
            self.admin.clone()
        } else if is_read(method) {
            self.read.clone()
        } else {
            self.write.clone()
        }
    }

    fn checks(&self, method: &Method, path: &str) -> Vec<Check> {
        use Operation as O;
        let seg = segments(path);
        let seg: Vec<&str> = seg.iter().map(String::as_str).collect();
        let read = is_read(method);
        let topic = |op, t: &str| vec![Check::new(op, ResourceType::Topic, t)];
        let group = |op, g: &str| vec![Check::new(op, ResourceType::Group, g)];
        let cluster = |op| vec![Check::new(op, ResourceType::Cluster, CLUSTER_NAME)];
        match seg.as_slice() {
            ["v1" | "v2", "topics", t, "records"] if *method == Method::POST => topic(O::Write, t),
            ["v1" | "v2", "topics", t] if read => topic(O::Describe, t),
            ["v1" | "v2", "topics", t, ..] if read => topic(O::Read, t),
            ["v1", "consumers", g, ..] => group(O::Read, g),
            ["v1", "groups", g] if read => group(O::Describe, g),
            ["ui", ..] | ["metrics"] | ["v1", "outbox", ..] if read => cluster(O::Describe),
            ["v1", "webhooks", ..] if read => cluster(O::Describe),
            [
                "v1",
                "streams" | "event-types" | "projections" | "subscriptions",
                ..,
            ] => Vec::new(),
            _ if !read => cluster(O::Alter),
            _ => Vec::new(),
        }
    }

    fn denied(&self, principal: &Principal, check: &Check) -> Response<Body> {
        let body = serde_json::json!({
            "type": "about:blank",
            "title": "Forbidden",
            "status": 403,
            "code": "forbidden",
            "detail": format!(
                "{principal} is denied operation {} on {} {}",
                check.operation, check.resource_type, check.name
            ),
        });
        let mut r = Response::new(Body::from(body.to_string()));
        *r.status_mut() = StatusCode::FORBIDDEN;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/problem+json"),
        );
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_routes_to_scopes_and_checks() {
        use Operation as O;
        use ResourceType::{Cluster, Group, Topic};
        let p = GatewayPolicy {
            read: Some("gr".into()),
            write: Some("gw".into()),
            admin: Some("ad".into()),
        };
        /// (method, path, scope, the one check).
        type Case<'a> = (Method, &'a str, &'a str, Option<(O, ResourceType, &'a str)>);
        let cases: &[Case<'_>] = &[
            (
                Method::POST,
                "/v1/topics/orders/records",
                "gw",
                Some((O::Write, Topic, "orders")),
            ),
            (
                Method::GET,
                "/v1/topics/orders/events",
                "gr",
                Some((O::Read, Topic, "orders")),
            ),
            (
                Method::GET,
                "/v1/topics/orders/ws",
                "gr",
                Some((O::Read, Topic, "orders")),
            ),
            (
                Method::GET,
                "/v2/topics/orders/records",
                "gr",
                Some((O::Read, Topic, "orders")),
            ),
            (
                Method::GET,
                "/v1/topics/orders",
                "gr",
                Some((O::Describe, Topic, "orders")),
            ),
            (
                Method::POST,
                "/v1/consumers/g1",
                "gw",
                Some((O::Read, Group, "g1")),
            ),
            (
                Method::GET,
                "/v1/groups/g1",
                "ad",
                Some((O::Describe, Group, "g1")),
            ),
            (
                Method::GET,
                "/metrics",
                "ad",
                Some((O::Describe, Cluster, CLUSTER_NAME)),
            ),
            (
                Method::GET,
                "/ui/snapshot",
                "ad",
                Some((O::Describe, Cluster, CLUSTER_NAME)),
            ),
            (
                Method::POST,
                "/v1/webhooks",
                "gw",
                Some((O::Alter, Cluster, CLUSTER_NAME)),
            ),
            (
                Method::POST,
                "/v1/scavenge",
                "ad",
                Some((O::Alter, Cluster, CLUSTER_NAME)),
            ),
            (Method::POST, "/v1/streams/s1", "gw", None),
            (Method::GET, "/v1/topics", "gr", None),
            (
                Method::GET,
                "/v1/topics/a%2Eb/events",
                "gr",
                Some((O::Read, Topic, "a.b")),
            ),
        ];
        for (m, path, scope, check) in cases {
            assert_eq!(p.scope(m, path).as_deref(), Some(*scope), "{m} {path}");
            let got: Vec<_> = p
                .checks(m, path)
                .into_iter()
                .map(|c| (c.operation, c.resource_type, c.name))
                .collect();
            let want: Vec<_> = check
                .iter()
                .map(|(o, t, n)| (*o, *t, (*n).to_owned()))
                .collect();
            assert_eq!(got, want, "{m} {path}");
        }
    }
}
