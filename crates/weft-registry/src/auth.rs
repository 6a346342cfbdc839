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
//! | `GET /`, `/subjects`, `/schemas/…`, `/contexts`, `/proposals…` | authenticated only |
//!
//! The last row is a known gap: Confluent's authoriser filters the subject list and checks
//! READ on a subject holding a schema id; here any authenticated principal may list subject
//! names and read schemas by id.

use axum::body::Body;
use axum::http::{Method, Response, StatusCode, header};
use serde_json::json;
use weft_auth::acl::CLUSTER_NAME;
use weft_auth::http::{Check, HttpPolicy};
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

    #[test]
    fn percent_decoding_edges() {
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%41%42"), "AB");
        assert_eq!(percent_decode("%"), "%");
    }
}
