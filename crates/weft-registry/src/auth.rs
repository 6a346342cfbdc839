//! Who may do what on the registry, Confluent's way: an [`HttpPolicy`] mapping each route to
//! the scope a bearer token needs (reads and writes) and the ACL checks on the subject (or on
//! the cluster for global settings), with Confluent's 403 body (`error_code` 40301).
//!
//! | route | operation |
//! |---|---|
//! | `GET /subjects/{s}/versions…`, `POST /subjects/{s}` (lookup), `POST /compatibility/subjects/{s}/…` | READ subject |
//! | `POST /subjects/{s}/versions` (register) | WRITE subject |
//! | `DELETE /subjects/{s}…` | DELETE subject |
//! | `PUT/DELETE …/deprecation` | ALTER subject |
//! | `GET /config/{s}`, `/mode/{s}`, `/review/config/{s}` | DESCRIBE_CONFIGS subject |
//! | `PUT/DELETE /config/{s}`, `/mode/{s}`, `/review/config/{s}` | ALTER_CONFIGS subject |
//! | `GET /config`, `/mode`, `/review/config` | DESCRIBE_CONFIGS cluster |
//! | `PUT/DELETE /config`, `/mode`, `/review/config` | ALTER_CONFIGS cluster |
//! | `POST /proposals/{id}/approve|reject` | ALTER cluster |
//! | `GET /`, `/schemas/types`, `/contexts` | authenticated only |
//!
//! Routes whose answer spans several subjects are decided inside the handlers, per item,
//! with the [`Permissions`] the auth layer puts in the request (Confluent's authoriser does
//! the same: lists are filtered, not refused):
//!
//! | route | decision |
//! |---|---|
//! | `GET /subjects` (`deleted`, `deletedOnly`, `subjectPrefix`) | only subjects the caller may DESCRIBE (implied by READ, WRITE, DELETE, ALTER) |
//! | `GET /schemas` | only versions of subjects the caller may READ |
//! | `GET /schemas/ids/{id}`, `…/schema`, `…/subjects`, `…/versions` | READ on at least one subject holding the id (soft-deleted ones count), else 403 40301; unknown ids stay 404; `subjects`/`versions` list only subjects the caller may DESCRIBE |
//! | `GET /proposals` | only proposals for subjects the caller may READ |
//! | `GET /proposals/{id}` | READ on the proposal's subject, else 403 40301 |
//!
//! `GET /contexts` lists only the default context `.`, which every caller has: nothing to
//! filter until contexts exist. Super-users see everything; with authorisation off (no
//! [`Permissions`], or an authoriser that is disabled) nothing is filtered.

use axum::body::Body;
use axum::http::{Method, Response, StatusCode, header};
use serde_json::json;
use weft_auth::acl::{CLUSTER_NAME, WILDCARD};
use weft_auth::http::{Check, HttpPolicy, Permissions};
use weft_auth::{Operation, Principal, ResourceType};

/// The registry's [`HttpPolicy`]; `read_scope`/`write_scope` from `[security.http.scopes]`.
#[derive(Debug, Clone, Default)]
pub struct RegistryPolicy {
    pub read_scope: Option<String>,
    pub write_scope: Option<String>,
}

impl HttpPolicy for RegistryPolicy {
    fn scope(&self, method: &Method, _path: &str) -> Option<String> {
        if is_read(method) {
            self.read_scope.clone()
        } else {
            self.write_scope.clone()
        }
    }

    fn checks(&self, method: &Method, path: &str) -> Vec<Check> {
        checks(method, path).into_iter().collect()
    }

    fn denied(&self, principal: &Principal, check: &Check) -> Response<Body> {
        let body = json!({
            "error_code": 40301,
            "message": format!(
                "{principal} is denied operation {} on {}: {}",
                check.operation, check.resource_type, check.name
            ),
        });
        let mut r = Response::new(Body::from(body.to_string()));
        *r.status_mut() = StatusCode::FORBIDDEN;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/vnd.schemaregistry.v1+json"),
        );
        r
    }
}

/// Whether a list shows `subject` to a caller who needs `operation` on it. Decided quietly:
/// a hidden item is not a refused request, so it is not logged as a denial (Kafka's
/// `logIfDenied = false`).
pub(crate) fn listed(p: Option<&Permissions>, operation: Operation, subject: &str) -> bool {
    p.is_none_or(|p| p.allows_quietly(operation, ResourceType::Subject, subject))
}

/// Whether the caller may see `subject` in a list (DESCRIBE, which READ, WRITE, DELETE and
/// ALTER imply).
pub(crate) fn may_see(p: Option<&Permissions>, subject: &str) -> bool {
    listed(p, Operation::Describe, subject)
}

/// Whether the caller may read `subject`'s schemas (a denial is logged).
pub(crate) fn may_read(p: Option<&Permissions>, subject: &str) -> bool {
    Permissions::allows_in(p, Operation::Read, ResourceType::Subject, subject)
}

/// `subjects` without those the caller may not see (order kept).
pub(crate) fn visible(p: Option<&Permissions>, mut subjects: Vec<String>) -> Vec<String> {
    if p.is_some() {
        subjects.retain(|s| may_see(p, s));
    }
    subjects
}

/// Whether the caller may read a schema held by `holders`: READ on at least one of them.
/// A schema no subject holds any more (every version using it permanently deleted) needs
/// READ on every subject: the literal `*` ACL, a super-user, or no authorisation. Holders
/// are tried quietly; a refusal is logged once, as a denial on the first of them.
pub(crate) fn may_read_any<'a>(
    p: Option<&Permissions>,
    holders: impl IntoIterator<Item = &'a str>,
) -> bool {
    let Some(p) = p else { return true };
    let holders: Vec<&str> = holders.into_iter().collect();
    match holders.first() {
        None => may_read(Some(p), WILDCARD),
        Some(first) => {
            holders.iter().any(|s| listed(Some(p), Operation::Read, s)) || may_read(Some(p), first)
        }
    }
}

/// Confluent's 403 for a schema id none of whose subjects the caller may read.
pub(crate) fn schema_denied(p: Option<&Permissions>, id: i64) -> crate::Error {
    let who = p.map_or_else(|| "the caller".to_owned(), |p| p.principal().to_string());
    crate::Error::Forbidden(format!(
        "{who} is denied operation read on every subject holding schema id {id}"
    ))
}

/// Confluent's 403 for a subject the caller may not read.
pub(crate) fn subject_denied(p: Option<&Permissions>, subject: &str) -> crate::Error {
    let who = p.map_or_else(|| "the caller".to_owned(), |p| p.principal().to_string());
    crate::Error::Forbidden(format!(
        "{who} is denied operation read on subject: {subject}"
    ))
}

fn is_read(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD || method == Method::OPTIONS
}

/// The one check a route needs, if any (see the module table).
fn checks(method: &Method, path: &str) -> Option<Check> {
    use Operation as O;
    let segments: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    let read = is_read(method);
    let subject = |op, s: &str| Some(Check::new(op, ResourceType::Subject, s));
    let cluster = |op| Some(Check::new(op, ResourceType::Cluster, CLUSTER_NAME));
    let configs = if read {
        O::DescribeConfigs
    } else {
        O::AlterConfigs
    };
    match seg.as_slice() {
        ["subjects", s] if *method == Method::POST => subject(O::Read, s),
        ["subjects", s, "versions"] if *method == Method::POST => subject(O::Write, s),
        ["subjects", s, "versions", _, "deprecation"] if !read => subject(O::Alter, s),
        ["subjects", s, ..] if *method == Method::DELETE => subject(O::Delete, s),
        ["subjects", s, ..] => subject(O::Read, s),
        ["compatibility", "subjects", s, ..] => subject(O::Read, s),
        ["config" | "mode", s] => subject(configs, s),
        ["review", "config", s] => subject(configs, s),
        ["config" | "mode"] | ["review", "config"] => cluster(configs),
        ["proposals", _, "approve" | "reject"] => cluster(O::Alter),
        // Unknown writes need the most: no route slips through unchecked by being new.
        _ if !read => cluster(O::Alter),
        _ => None,
    }
}

/// `%XX` decoding of a path segment (subject names may hold `/`, `:` and spaces).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or(""), 16)
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(method: Method, path: &str, expected: Option<(Operation, ResourceType, &str)>) {
        let got = checks(&method, path).map(|c| (c.operation, c.resource_type, c.name));
        let want = expected.map(|(o, t, n)| (o, t, n.to_owned()));
        assert_eq!(got, want, "{method} {path}");
    }

    #[test]
    fn routes_to_checks() {
        use Operation as O;
        use ResourceType::{Cluster, Subject};
        let c = CLUSTER_NAME;
        let cases = [
            (
                Method::GET,
                "/subjects/orders-value/versions",
                Some((O::Read, Subject, "orders-value")),
            ),
            (
                Method::GET,
                "/subjects/orders-value/versions/latest/schema",
                Some((O::Read, Subject, "orders-value")),
            ),
            (
                Method::POST,
                "/subjects/orders-value/versions",
                Some((O::Write, Subject, "orders-value")),
            ),
            (
                Method::POST,
                "/subjects/orders-value",
                Some((O::Read, Subject, "orders-value")),
            ),
            (
                Method::DELETE,
                "/subjects/orders-value",
                Some((O::Delete, Subject, "orders-value")),
            ),
            (
                Method::DELETE,
                "/subjects/orders-value/versions/3",
                Some((O::Delete, Subject, "orders-value")),
            ),
            (
                Method::PUT,
                "/subjects/a/versions/1/deprecation",
                Some((O::Alter, Subject, "a")),
            ),
            (
                Method::POST,
                "/compatibility/subjects/a/versions/latest",
                Some((O::Read, Subject, "a")),
            ),
            (
                Method::GET,
                "/config/a",
                Some((O::DescribeConfigs, Subject, "a")),
            ),
            (
                Method::PUT,
                "/config/a",
                Some((O::AlterConfigs, Subject, "a")),
            ),
            (
                Method::PUT,
                "/mode/a",
                Some((O::AlterConfigs, Subject, "a")),
            ),
            (Method::PUT, "/config", Some((O::AlterConfigs, Cluster, c))),
            (Method::GET, "/mode", Some((O::DescribeConfigs, Cluster, c))),
            (
                Method::PUT,
                "/review/config/a",
                Some((O::AlterConfigs, Subject, "a")),
            ),
            (
                Method::POST,
                "/proposals/7/approve",
                Some((O::Alter, Cluster, c)),
            ),
            (Method::POST, "/something/new", Some((O::Alter, Cluster, c))),
            (Method::GET, "/subjects", None),
            (Method::GET, "/schemas/ids/1", None),
            (Method::GET, "/", None),
            // Encoded names are decoded (a context-qualified subject).
            (
                Method::POST,
                "/subjects/%3A.ctx%3Aorders/versions",
                Some((O::Write, Subject, ":.ctx:orders")),
            ),
            (
                Method::GET,
                "/subjects/a%2Fb/versions",
                Some((O::Read, Subject, "a/b")),
            ),
        ];
        for (m, p, e) in cases {
            check(m, p, e);
        }
    }

    use std::sync::Arc;
    use weft_auth::{AclBinding, Authorizer, AuthorizerConfig, Permission, ResourcePattern};

    /// alice: READ on prefix `a-` but not `a-secret` (a literal deny), WRITE on `w-only`;
    /// everyone: DESCRIBE on `public`; bob: READ on every subject (literal `*`); root is a
    /// super-user; carol has nothing of her own.
    fn authorizer(enabled: bool) -> Arc<Authorizer> {
        let a = Authorizer::new(AuthorizerConfig {
            enabled,
            super_users: [Principal::user("root")].into_iter().collect(),
            allow_if_no_acls: false,
        });
        let acl = |pattern, who: &str, op, perm| AclBinding::new(pattern, who, op, perm);
        use Operation as O;
        use Permission::{Allow, Deny};
        use ResourcePattern as R;
        use ResourceType::Subject as S;
        a.add([
            acl(R::prefixed(S, "a-"), "User:alice", O::Read, Allow),
            acl(R::literal(S, "a-secret"), "User:alice", O::Read, Deny),
            acl(R::literal(S, "w-only"), "User:alice", O::Write, Allow),
            acl(R::literal(S, "public"), "User:*", O::Describe, Allow),
            acl(R::literal(S, WILDCARD), "User:bob", O::Read, Allow),
        ]);
        Arc::new(a)
    }

    fn permissions(who: Option<&str>, enabled: bool) -> Option<Permissions> {
        who.map(|w| Permissions::new(authorizer(enabled), Principal::user(w), "127.0.0.1"))
    }

    const SUBJECTS: [&str; 5] = ["a-1", "a-secret", "b-1", "w-only", "public"];

    #[test]
    fn subject_lists_are_filtered_to_what_the_caller_may_describe() {
        // (caller, authorisation on, visible subjects); `None`: no authorisation layer.
        let cases: &[(Option<&str>, bool, &[&str])] = &[
            // A deny on READ leaves DESCRIBE (implied by the prefixed READ) alone, as in
            // Kafka: alice sees `a-secret` listed but cannot read it (next test).
            (
                Some("alice"),
                true,
                &["a-1", "a-secret", "w-only", "public"],
            ),
            (Some("bob"), true, &SUBJECTS),
            (Some("carol"), true, &["public"]),
            (Some("root"), true, &SUBJECTS),
            (Some("carol"), false, &SUBJECTS),
            (None, true, &SUBJECTS),
        ];
        for (who, enabled, want) in cases {
            let p = permissions(*who, *enabled);
            let got = visible(p.as_ref(), SUBJECTS.iter().map(|s| s.to_string()).collect());
            assert_eq!(got, *want, "{who:?} enabled={enabled}");
        }
    }

    #[test]
    fn schema_ids_need_read_on_one_holder() {
        // (caller, holders of the id, readable)
        let cases: &[(Option<&str>, &[&str], bool)] = &[
            (Some("alice"), &["a-1"], true),
            (Some("alice"), &["b-1"], false),
            (Some("alice"), &["b-1", "a-1"], true),
            (Some("alice"), &["a-secret"], false),
            // WRITE and DESCRIBE do not imply READ.
            (Some("alice"), &["w-only"], false),
            (Some("carol"), &["public"], false),
            // An id no subject holds any more: READ on every subject only.
            (Some("alice"), &[], false),
            (Some("bob"), &[], true),
            (Some("root"), &[], true),
            (Some("root"), &["b-1"], true),
            (Some("bob"), &["b-1"], true),
            (None, &[], true),
            (None, &["b-1"], true),
        ];
        for (who, holders, want) in cases {
            let p = permissions(*who, true);
            assert_eq!(
                may_read_any(p.as_ref(), holders.iter().copied()),
                *want,
                "{who:?} {holders:?}"
            );
        }
        let off = permissions(Some("carol"), false);
        assert!(may_read_any(off.as_ref(), ["b-1"]));
    }

    #[test]
    fn denials_carry_confluents_code_and_the_principal() {
        let p = permissions(Some("alice"), true);
        let e = schema_denied(p.as_ref(), 7);
        assert_eq!((e.http_status(), e.error_code()), (403, 40301));
        assert_eq!(
            e.to_string(),
            "User:alice is denied operation read on every subject holding schema id 7"
        );
        let e = subject_denied(p.as_ref(), "b-1");
        assert_eq!(e.error_code(), 40301);
        assert!(e.to_string().contains("subject: b-1"), "{e}");
    }

    #[test]
    fn percent_decoding_edges() {
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%41%42"), "AB");
        assert_eq!(percent_decode("%"), "%");
    }
}
