//! Per-item authorisation over real HTTP, on both backends: subject and schema lists filtered
//! to what the caller may see, schema ids readable only through a subject the caller may
//! read (Confluent's 40301 otherwise, 404 kept for unknown ids). Callers are HTTP Basic
//! users from the SCRAM store (what `basic.auth.user.info` clients send); the ACLs are in
//! the shared `Authorizer`, as `weft serve` wires it.

mod common;

use std::sync::Arc;

use common::{Api, BACKENDS, avro_record, field};
use hyper::Method;
use serde_json::{Value, json};
use weft_auth::http::{AuthLayer, AuthOptions, Authorization, StoreAuthenticator};
use weft_auth::sasl::scram::{ScramCredential, ScramMechanism};
use weft_auth::store::ScramStore;
use weft_auth::{
    AclBinding, Authorizer, AuthorizerConfig, Operation, Permission, Principal, ResourcePattern,
    ResourceType,
};
use weft_registry::Registry;
use weft_registry::auth::RegistryPolicy;
use weft_store::testing::TestDb;

/// `Authorization: Basic` values of `<user>:<user>-pw`.
const USERS: [(&str, &str); 4] = [
    ("alice", "Basic YWxpY2U6YWxpY2UtcHc="),
    ("bob", "Basic Ym9iOmJvYi1wdw=="),
    ("carol", "Basic Y2Fyb2w6Y2Fyb2wtcHc="),
    ("root", "Basic cm9vdDpyb290LXB3"),
];

fn basic(user: &str) -> &'static str {
    USERS
        .iter()
        .find(|(u, _)| *u == user)
        .map(|(_, b)| *b)
        .expect("known user")
}

/// alice: READ on prefix `a-`; bob: WRITE on `b-payments` only; carol: nothing; root: a
/// super-user.
fn acls() -> Vec<AclBinding> {
    let subject = ResourceType::Subject;
    vec![
        AclBinding::new(
            ResourcePattern::prefixed(subject, "a-"),
            "User:alice",
            Operation::Read,
            Permission::Allow,
        ),
        AclBinding::new(
            ResourcePattern::literal(subject, "b-payments"),
            "User:bob",
            Operation::Write,
            Permission::Allow,
        ),
    ]
}

/// A registry on `db` behind Basic authentication and `authorization` on or off.
async fn start(db: &TestDb, authorization: bool) -> Api {
    let store = db.open().await;
    weft_auth::store::migrate(&store)
        .await
        .expect("auth tables");
    let credentials = ScramStore::new(store.clone());
    for (user, _) in USERS {
        let cred = ScramCredential::generate(ScramMechanism::Sha256, &format!("{user}-pw"), 4096)
            .expect("credential");
        credentials
            .upsert(user, ScramMechanism::Sha256, &cred)
            .await
            .expect("user");
    }
    let authorizer = Authorizer::new(AuthorizerConfig {
        enabled: authorization,
        super_users: [Principal::user("root")].into_iter().collect(),
        allow_if_no_acls: false,
    });
    authorizer.add(acls());
    let layer = AuthLayer::new(
        Arc::new(StoreAuthenticator {
            jwt: None,
            credentials: Some(credentials),
        }),
        AuthOptions {
            basic: true,
            ..AuthOptions::default()
        },
    )
    .with_authorization(Authorization {
        authorizer: Arc::new(authorizer),
        policy: Arc::new(RegistryPolicy::default()),
    });
    let registry = Registry::open(store).await.expect("registry opens");
    Api::serve_with_auth(registry, Some(layer)).await
}

async fn get(api: &Api, user: &str, path: &str) -> common::Answer {
    api.send(Method::GET, path, &[("authorization", basic(user))], None)
        .await
}

/// Registers `schema` under `subject` as root; its id.
async fn register(api: &Api, subject: &str, schema: &str) -> i64 {
    let body = serde_json::to_vec(&json!({ "schema": schema })).expect("json");
    let a = api
        .send(
            Method::POST,
            &format!("/subjects/{subject}/versions"),
            &[
                ("authorization", basic("root")),
                ("content-type", "application/vnd.schemaregistry.v1+json"),
            ],
            Some(body),
        )
        .await;
    assert_eq!(a.status, 200, "register {subject}: {a:?}");
    a.body["id"].as_i64().expect("id")
}

fn record(name: &str) -> String {
    avro_record(name, &[field("id", "long")])
}

/// A schema text as the test client reads a `…/schema` answer (it parses JSON bodies).
fn text(schema: &str) -> Value {
    serde_json::from_str(schema).expect("schema is JSON")
}

/// The ids the tables refer to.
struct Ids {
    a_only: i64,
    b_only: i64,
    shared: i64,
    a_gone: i64,
}

/// a-orders (A), a-shared and b-shared (S, one id), b-payments (B), a-gone (G) and b-gone
/// (H) soft-deleted.
async fn populate(api: &Api) -> Ids {
    let a_only = register(api, "a-orders", &record("A")).await;
    let shared = register(api, "a-shared", &record("S")).await;
    assert_eq!(register(api, "b-shared", &record("S")).await, shared);
    let b_only = register(api, "b-payments", &record("B")).await;
    let a_gone = register(api, "a-gone", &record("G")).await;
    register(api, "b-gone", &record("H")).await;
    for s in ["a-gone", "b-gone"] {
        let a = api
            .send(
                Method::DELETE,
                &format!("/subjects/{s}"),
                &[("authorization", basic("root"))],
                None,
            )
            .await;
        assert_eq!(a.status, 200, "soft delete {s}: {a:?}");
    }
    Ids {
        a_only,
        b_only,
        shared,
        a_gone,
    }
}

/// What a case expects: a 200 body, or an error status and Confluent code.
enum Want {
    Body(Value),
    /// A schema-by-id body whose `schema` text is this JSON (key order aside).
    Schema(Value),
    Error(u16, i64),
}

fn check(cases: &[(&str, String, Want)], answers: &[common::Answer]) {
    for ((who, path, want), got) in cases.iter().zip(answers) {
        match want {
            Want::Body(body) => {
                assert_eq!(
                    (got.status, &got.body),
                    (200, body),
                    "{who} GET {path}: {got:?}"
                );
            }
            Want::Schema(schema) => {
                let text = got.body["schema"].as_str().unwrap_or("");
                assert_eq!(
                    (
                        got.status,
                        serde_json::from_str::<Value>(text).ok().as_ref()
                    ),
                    (200, Some(schema)),
                    "{who} GET {path}: {got:?}"
                );
            }
            Want::Error(status, code) => {
                assert_eq!(
                    (got.status, got.code()),
                    (*status, *code),
                    "{who} GET {path}: {got:?}"
                );
            }
        }
    }
}

async fn answers(api: &Api, cases: &[(&str, String, Want)]) -> Vec<common::Answer> {
    let mut out = Vec::new();
    for (who, path, _) in cases {
        out.push(get(api, who, path).await);
    }
    out
}

fn subjects_of(schemas: &Value) -> Vec<(String, i64)> {
    schemas
        .as_array()
        .expect("array")
        .iter()
        .map(|s| {
            (
                s["subject"].as_str().expect("subject").to_owned(),
                s["version"].as_i64().expect("version"),
            )
        })
        .collect()
}

#[tokio::test]
async fn lists_are_filtered_and_ids_need_read_on_a_holder() {
    for backend in BACKENDS {
        eprintln!("--- backend {backend:?}");
        let db = TestDb::new(backend).await;
        let api = start(&db, true).await;
        let ids = populate(&api).await;
        let all_live = json!(["a-orders", "a-shared", "b-payments", "b-shared"]);
        let id = |id: i64, rest: &str| format!("/schemas/ids/{id}{rest}");
        let forbidden = || Want::Error(403, 40301);
        let cases: Vec<(&str, String, Want)> = vec![
            // GET /subjects: what the caller may DESCRIBE (READ and WRITE imply it).
            (
                "alice",
                "/subjects".into(),
                Want::Body(json!(["a-orders", "a-shared"])),
            ),
            (
                "alice",
                "/subjects?deleted=true".into(),
                Want::Body(json!(["a-gone", "a-orders", "a-shared"])),
            ),
            (
                "alice",
                "/subjects?deletedOnly=true".into(),
                Want::Body(json!(["a-gone"])),
            ),
            (
                "alice",
                "/subjects?subjectPrefix=b-".into(),
                Want::Body(json!([])),
            ),
            (
                "alice",
                "/subjects?offset=1&limit=1".into(),
                Want::Body(json!(["a-shared"])),
            ),
            ("bob", "/subjects".into(), Want::Body(json!(["b-payments"]))),
            ("carol", "/subjects".into(), Want::Body(json!([]))),
            ("root", "/subjects".into(), Want::Body(all_live.clone())),
            // Schema ids: READ on at least one subject holding the id.
            ("alice", id(ids.b_only, ""), forbidden()),
            ("alice", id(ids.b_only, "/schema"), forbidden()),
            ("alice", id(ids.b_only, "/subjects"), forbidden()),
            ("alice", id(ids.b_only, "/versions"), forbidden()),
            // WRITE does not imply READ.
            ("bob", id(ids.b_only, ""), forbidden()),
            ("carol", id(ids.a_only, ""), forbidden()),
            (
                "alice",
                id(ids.a_only, "/schema"),
                Want::Body(text(&record("A"))),
            ),
            (
                "alice",
                id(ids.shared, ""),
                Want::Schema(text(&record("S"))),
            ),
            (
                "alice",
                id(ids.shared, "/subjects"),
                Want::Body(json!(["a-shared"])),
            ),
            (
                "alice",
                id(ids.shared, "/versions"),
                Want::Body(json!([{ "subject": "a-shared", "version": 1 }])),
            ),
            (
                "root",
                id(ids.shared, "/subjects"),
                Want::Body(json!(["a-shared", "b-shared"])),
            ),
            // A soft-deleted subject still makes its ids readable (as its schemas are).
            (
                "alice",
                id(ids.a_gone, "/schema"),
                Want::Body(text(&record("G"))),
            ),
            ("alice", id(ids.a_gone, "/subjects"), Want::Body(json!([]))),
            (
                "alice",
                id(ids.a_gone, "/subjects?deleted=true"),
                Want::Body(json!(["a-gone"])),
            ),
            // Unknown ids stay 404 for everyone.
            ("alice", id(9999, ""), Want::Error(404, 40403)),
            ("carol", id(9999, "/subjects"), Want::Error(404, 40403)),
            // Subject routes keep their per-route check.
            (
                "alice",
                "/subjects/b-payments/versions".into(),
                Want::Error(403, 40301),
            ),
            ("alice", "/contexts".into(), Want::Body(json!(["."]))),
        ];
        let got = answers(&api, &cases).await;
        check(&cases, &got);

        // GET /schemas: versions of subjects the caller may READ, paged after filtering.
        let schemas = |who: &'static str, q: &'static str| {
            let api = &api;
            async move {
                let a = get(api, who, &format!("/schemas{q}")).await;
                assert_eq!(a.status, 200, "{who} /schemas{q}: {a:?}");
                subjects_of(&a.body)
            }
        };
        let pair = |s: &str, v: i64| (s.to_owned(), v);
        assert_eq!(
            schemas("alice", "").await,
            [pair("a-orders", 1), pair("a-shared", 1)]
        );
        assert_eq!(
            schemas("alice", "?deleted=true").await,
            [pair("a-gone", 1), pair("a-orders", 1), pair("a-shared", 1)]
        );
        assert_eq!(schemas("alice", "?offset=1").await, [pair("a-shared", 1)]);
        assert_eq!(schemas("bob", "").await, []);
        assert_eq!(schemas("root", "").await.len(), 4);
        let mut one = get(&api, "alice", "/schemas?subjectPrefix=a-o").await.body;
        let schema = one[0]["schema"].take();
        assert_eq!(
            one,
            json!([{ "subject": "a-orders", "version": 1, "id": ids.a_only, "schema": null }])
        );
        assert_eq!(
            serde_json::from_str::<Value>(schema.as_str().unwrap_or("")).ok(),
            Some(text(&record("A")))
        );
        api.stop().await;
    }
}

/// With the authoriser off (authentication only) nothing is filtered or refused.
#[tokio::test]
async fn authorization_off_filters_nothing() {
    let db = TestDb::new(weft_store::Backend::Sqlite).await;
    let api = start(&db, false).await;
    let ids = populate(&api).await;
    let cases: Vec<(&str, String, Want)> = vec![
        (
            "carol",
            "/subjects".into(),
            Want::Body(json!(["a-orders", "a-shared", "b-payments", "b-shared"])),
        ),
        (
            "carol",
            format!("/schemas/ids/{}/subjects", ids.shared),
            Want::Body(json!(["a-shared", "b-shared"])),
        ),
        (
            "carol",
            format!("/schemas/ids/{}/schema", ids.b_only),
            Want::Body(text(&record("B"))),
        ),
    ];
    let got = answers(&api, &cases).await;
    check(&cases, &got);
    api.stop().await;
}
