//! The REVIEW mode's proposals over real HTTP, on SQLite and PostgreSQL.

mod common;

use common::{Answer, Api, BACKENDS, avro_record, field, field_default};
use hyper::Method;
use serde_json::{Value, json};
use weft_store::testing::TestDb;

async fn on_both(test: impl AsyncFn(&Api)) {
    for backend in BACKENDS {
        eprintln!("--- backend {backend:?}");
        let db = TestDb::new(backend).await;
        let api = Api::start(&db).await;
        test(&api).await;
        api.stop().await;
    }
}

/// A JSON request acting as `who` (no header when empty).
async fn act(api: &Api, method: Method, path: &str, who: &str, body: Value) -> Answer {
    let bytes = serde_json::to_vec(&body).expect("encode");
    let mut headers = vec![("content-type", "application/vnd.schemaregistry.v1+json")];
    if !who.is_empty() {
        headers.push(("x-weft-principal", who));
    }
    api.send(method, path, &headers, Some(bytes)).await
}

async fn propose(api: &Api, subject: &str, schema: &str, who: &str) -> Answer {
    act(
        api,
        Method::POST,
        &format!("/subjects/{subject}/versions"),
        who,
        json!({ "schema": schema }),
    )
    .await
}

async fn approve(api: &Api, id: i64, who: &str) -> Answer {
    act(
        api,
        Method::POST,
        &format!("/proposals/{id}/approve"),
        who,
        json!({ "comment": format!("ok from {who}") }),
    )
    .await
}

fn v1() -> String {
    avro_record("Order", &[field("id", "long")])
}

fn v2() -> String {
    avro_record(
        "Order",
        &[
            field("id", "long"),
            field_default("note", "string", json!("")),
        ],
    )
}

fn actions(p: &Value) -> Vec<(String, String)> {
    p["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|e| {
            (
                e["action"].as_str().expect("action").to_owned(),
                e["principal"].as_str().expect("principal").to_owned(),
            )
        })
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

#[tokio::test]
async fn a_proposal_becomes_a_version_after_two_distinct_approvals() {
    on_both(async |api| {
        assert_eq!(
            api.put("/mode/orders-value", json!({ "mode": "REVIEW" }))
                .await
                .status,
            200
        );
        // Who proposes must be named.
        let a = propose(api, "orders-value", &v1(), "").await;
        assert_eq!((a.status, a.code()), (401, 40101), "{a:?}");
        assert_eq!(api.get("/proposals").await.body, json!([]));
        let a = propose(api, "orders-value", &v1(), "alice").await;
        assert_eq!(a.status, 202, "{a:?}");
        let p = &a.body["proposal"];
        let id = p["id"].as_i64().expect("proposal id");
        assert_eq!(p["status"], "PENDING");
        assert_eq!(p["approvalsRequired"], 2);
        assert_eq!(p["compatibility"]["level"], "BACKWARD");
        // Nothing registered yet.
        assert_eq!(
            api.get("/subjects/orders-value/versions").await.code(),
            40401
        );

        // Self-approval, missing principal, unknown proposal.
        let a = approve(api, id, "alice").await;
        assert_eq!(a.code(), 42205, "{a:?}");
        let a = approve(api, id, "").await;
        assert_eq!((a.status, a.code()), (401, 40101), "{a:?}");
        assert_eq!(approve(api, 999, "bob").await.code(), 40410);

        let a = approve(api, id, "bob").await;
        assert_eq!(a.status, 200, "{a:?}");
        assert_eq!(a.body["status"], "PENDING");
        assert_eq!(a.body["approvals"], json!(["bob"]));
        // The same approver twice does not count twice.
        let a = approve(api, id, "bob").await;
        assert_eq!(a.code(), 42205, "{a:?}");
        assert_eq!(
            api.get("/subjects/orders-value/versions").await.code(),
            40401
        );

        let a = approve(api, id, "carol").await;
        assert_eq!(a.status, 200, "{a:?}");
        assert_eq!(a.body["status"], "APPROVED");
        assert_eq!(a.body["version"], 1);
        let schema_id = a.body["schemaId"].as_i64().expect("schema id");
        let v = api.get("/subjects/orders-value/versions/1").await;
        assert_eq!(v.body["id"], schema_id);
        assert_eq!(
            actions(&a.body),
            pairs(&[
                ("PROPOSED", "alice"),
                ("APPROVED", "bob"),
                ("APPROVED", "carol"),
                ("REGISTERED", "carol"),
            ])
        );
        // Closed: no more approvals.
        assert_eq!(approve(api, id, "dave").await.code(), 42205);
        // Listing and filtering.
        let all = api
            .get("/proposals?subject=orders-value&status=APPROVED")
            .await;
        assert_eq!(all.body.as_array().map(Vec::len), Some(1), "{all:?}");
        assert_eq!(api.get("/proposals?status=PENDING").await.body, json!([]));
        assert_eq!(api.get("/proposals?status=MAYBE").await.status, 422);

        // The schema the subject already has answers its id at once.
        let a = propose(api, "orders-value", &v1(), "erin").await;
        assert_eq!((a.status, &a.body["id"]), (200, &json!(schema_id)), "{a:?}");
    })
    .await;
}

#[tokio::test]
async fn rejections_close_proposals_and_are_audited() {
    on_both(async |api| {
        assert_eq!(
            api.put("/mode", json!({ "mode": "REVIEW" })).await.status,
            200
        );
        let id = propose(api, "s-value", &v1(), "alice").await.body["proposal"]["id"]
            .as_i64()
            .expect("id");
        // A rejection needs a comment.
        let a = act(
            api,
            Method::POST,
            &format!("/proposals/{id}/reject"),
            "bob",
            json!({}),
        )
        .await;
        assert_eq!(a.status, 422, "{a:?}");
        let a = act(
            api,
            Method::POST,
            &format!("/proposals/{id}/reject"),
            "bob",
            json!({ "comment": "name the field order_id" }),
        )
        .await;
        assert_eq!(a.status, 200, "{a:?}");
        assert_eq!(a.body["status"], "REJECTED");
        // Approval after rejection is refused; nothing is registered.
        assert_eq!(approve(api, id, "carol").await.code(), 42205);
        assert_eq!(approve(api, id, "dave").await.code(), 42205);
        assert_eq!(api.get("/subjects/s-value/versions").await.code(), 40401);
        let p = api.get(&format!("/proposals/{id}")).await.body;
        assert_eq!(
            actions(&p),
            pairs(&[("PROPOSED", "alice"), ("REJECTED", "bob")])
        );
        assert_eq!(p["history"][1]["comment"], "name the field order_id");
    })
    .await;
}

#[tokio::test]
async fn bad_proposals_are_refused_and_store_nothing() {
    on_both(async |api| {
        // v1 registered before the subject goes into review.
        let a = api
            .post("/subjects/b-value/versions", json!({ "schema": v1() }))
            .await;
        assert_eq!(a.status, 200);
        assert_eq!(
            api.put("/mode/b-value", json!({ "mode": "REVIEW" }))
                .await
                .status,
            200
        );
        // Incompatible (new field without default under BACKWARD): 409, no proposal.
        let breaking = avro_record("Order", &[field("id", "long"), field("total", "double")]);
        let a = propose(api, "b-value", &breaking, "alice").await;
        assert_eq!(a.code(), 409, "{a:?}");
        // Invalid: 42201, no proposal.
        let a = propose(api, "b-value", "{\"type\":\"record\"}", "alice").await;
        assert_eq!(a.code(), 42201, "{a:?}");
        assert_eq!(api.get("/proposals").await.body, json!([]));
        // approvals config: bounds checked.
        for bad in [0, 101, -1] {
            let a = api.put("/review/config", json!({ "approvals": bad })).await;
            assert_eq!(a.status, 422, "{bad}: {a:?}");
        }
        assert_eq!(
            api.get("/review/config").await.body,
            json!({ "approvals": 2 })
        );
    })
    .await;
}

#[tokio::test]
async fn compatibility_is_rechecked_on_the_last_approval() {
    on_both(async |api| {
        let a = api
            .post("/subjects/c-value/versions", json!({ "schema": v1() }))
            .await;
        assert_eq!(a.status, 200);
        assert_eq!(
            api.put("/review/config/c-value", json!({ "approvals": 1 }))
                .await
                .status,
            200
        );
        assert_eq!(api.get("/review/config/c-value").await.body["approvals"], 1);
        assert_eq!(
            api.put("/mode/c-value", json!({ "mode": "REVIEW" }))
                .await
                .status,
            200
        );
        // `note` as an int: fine after v1.
        let proposal = avro_record(
            "Order",
            &[field("id", "long"), field_default("note", "int", json!(0))],
        );
        let a = propose(api, "c-value", &proposal, "alice").await;
        assert_eq!(a.status, 202, "{a:?}");
        let id = a.body["proposal"]["id"].as_i64().expect("id");
        assert_eq!(a.body["proposal"]["approvalsRequired"], 1);

        // Meanwhile v2 (`note` as a string) is registered outside review.
        assert_eq!(
            api.put("/mode/c-value", json!({ "mode": "READWRITE" }))
                .await
                .status,
            200
        );
        let a = api
            .post("/subjects/c-value/versions", json!({ "schema": v2() }))
            .await;
        assert_eq!(a.status, 200, "{a:?}");
        assert_eq!(
            api.put("/mode/c-value", json!({ "mode": "REVIEW" }))
                .await
                .status,
            200
        );

        let a = approve(api, id, "bob").await;
        assert_eq!(a.code(), 409, "{a:?}");
        assert!(
            a.body["message"].as_str().unwrap_or("").contains("note"),
            "{a:?}"
        );
        let p = api.get(&format!("/proposals/{id}")).await.body;
        assert_eq!(p["status"], "FAILED");
        assert_eq!(
            actions(&p),
            pairs(&[
                ("PROPOSED", "alice"),
                ("APPROVED", "bob"),
                ("FAILED", "bob")
            ])
        );
        assert_eq!(
            api.get("/subjects/c-value/versions").await.body,
            json!([1, 2])
        );
    })
    .await;
}
