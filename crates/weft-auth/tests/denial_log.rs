//! A denial is logged with principal, host, operation and resource; an allowed request is
//! not logged; nothing secret appears.

use std::io::Write;
use std::sync::{Arc, Mutex};

use weft_auth::Principal;
use weft_auth::acl::{Authorizer, AuthorizerConfig, Operation, ResourceType};

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn denials_are_logged_with_who_what_and_where() {
    let buf = Buffer::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let mut config = AuthorizerConfig {
        enabled: true,
        ..Default::default()
    };
    config.super_users.insert(Principal::user("admin"));
    let auth = Authorizer::new(config);
    tracing::subscriber::with_default(subscriber, || {
        auth.authorize(
            &Principal::user("admin"),
            "10.1.2.3",
            Operation::Alter,
            ResourceType::Cluster,
            "kafka-cluster",
        );
        auth.authorize(
            &Principal::user("alice"),
            "10.1.2.3",
            Operation::Write,
            ResourceType::Topic,
            "payments",
        );
    });
    let out = String::from_utf8(buf.0.lock().expect("lock").clone()).expect("utf8");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "only the denial is logged: {out}");
    for needle in [
        "authorization denied",
        "principal=User:alice",
        "host=\"10.1.2.3\"",
        "operation=\"write\"",
        "resource_type=\"topic\"",
        "resource=\"payments\"",
        "DeniedNoMatch",
    ] {
        assert!(lines[0].contains(needle), "{needle} missing in {out}");
    }
}

/// `authorize_quietly` (list filtering) decides exactly as `authorize` and logs nothing.
#[test]
fn quiet_decisions_match_and_are_not_logged() {
    use weft_auth::{AclBinding, Permission, ResourcePattern};
    let buf = Buffer::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let mut config = AuthorizerConfig {
        enabled: true,
        ..Default::default()
    };
    config.super_users.insert(Principal::user("admin"));
    let auth = Authorizer::new(config);
    auth.add([AclBinding::new(
        ResourcePattern::prefixed(ResourceType::Subject, "a-"),
        "User:alice",
        Operation::Read,
        Permission::Allow,
    )]);
    let cases = [
        ("alice", "a-1", true),
        ("alice", "b-1", false),
        ("bob", "a-1", false),
        ("admin", "b-1", true),
    ];
    let quiet: Vec<bool> = tracing::subscriber::with_default(subscriber, || {
        cases
            .iter()
            .map(|(who, subject, _)| {
                auth.authorize_quietly(
                    &Principal::user(*who),
                    "*",
                    Operation::Describe,
                    ResourceType::Subject,
                    subject,
                )
                .is_allowed()
            })
            .collect()
    });
    let want: Vec<bool> = cases.iter().map(|c| c.2).collect();
    assert_eq!(quiet, want);
    let loud: Vec<bool> = cases
        .iter()
        .map(|(who, subject, _)| {
            auth.authorize(
                &Principal::user(*who),
                "*",
                Operation::Describe,
                ResourceType::Subject,
                subject,
            )
            .is_allowed()
        })
        .collect();
    assert_eq!(loud, want);
    let out = String::from_utf8(buf.0.lock().expect("lock").clone()).expect("utf8");
    assert_eq!(out, "", "quiet decisions are not logged");
}
