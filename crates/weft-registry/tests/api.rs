//! The Confluent REST API over real HTTP, every test on SQLite and on PostgreSQL.

mod common;

use common::{Api, BACKENDS, avro_record, field, field_default};
use serde_json::{Value, json};
use weft_store::testing::TestDb;

/// Runs `test` against a fresh registry on each backend.
async fn on_both(test: impl AsyncFn(&Api)) {
    for backend in BACKENDS {
        eprintln!("--- backend {backend:?}");
        let db = TestDb::new(backend).await;
        let api = Api::start(&db).await;
        test(&api).await;
        api.stop().await;
    }
}

fn v1() -> String {
    avro_record("Order", &[field("id", "long")])
}

/// v1 plus a field with a default: BACKWARD and FORWARD compatible.
fn v2() -> String {
    avro_record(
        "Order",
        &[
            field("id", "long"),
            field_default("note", "string", json!("")),
        ],
    )
}

/// v1 plus a field without a default: a new reader cannot read old data (not BACKWARD).
fn v1_plus_required() -> String {
    avro_record("Order", &[field("id", "long"), field("total", "double")])
}

async fn register(api: &Api, subject: &str, schema: &str) -> i64 {
    let a = api
        .post(
            &format!("/subjects/{subject}/versions"),
            json!({ "schema": schema }),
        )
        .await;
    assert_eq!(a.status, 200, "register in {subject}: {a:?}");
    a.body["id"].as_i64().expect("id")
}

/// What must be unchanged after a refused request.
async fn snapshot(api: &Api) -> Value {
    let subjects = api.get("/subjects?deleted=true").await.body;
    let mut versions = Vec::new();
    for s in subjects.as_array().expect("subjects") {
        let s = s.as_str().expect("subject");
        versions.push(
            api.get(&format!("/subjects/{s}/versions?deleted=true"))
                .await
                .body,
        );
    }
    json!({ "subjects": subjects, "versions": versions })
}

#[tokio::test]
async fn register_read_and_share_ids() {
    on_both(async |api| {
        let id = register(api, "orders-value", &v1()).await;
        // The same schema written differently: same id, no new version.
        let spaced = v1().replace(',', " ,\n  ");
        assert_eq!(register(api, "orders-value", &spaced).await, id);
        assert_eq!(
            api.get("/subjects/orders-value/versions").await.body,
            json!([1])
        );
        // Under another subject: same id, that subject's version 1.
        assert_eq!(register(api, "audit-value", &v1()).await, id);
        let id2 = register(api, "orders-value", &v2()).await;
        assert_ne!(id2, id);

        assert_eq!(
            api.get("/subjects").await.body,
            json!(["audit-value", "orders-value"])
        );
        assert_eq!(
            api.get("/subjects?subjectPrefix=ord").await.body,
            json!(["orders-value"])
        );
        assert_eq!(
            api.get("/subjects/orders-value/versions").await.body,
            json!([1, 2])
        );

        let latest = api.get("/subjects/orders-value/versions/latest").await;
        assert_eq!(latest.status, 200);
        assert_eq!(latest.body["subject"], "orders-value");
        assert_eq!(latest.body["version"], 2);
        assert_eq!(latest.body["id"], id2);
        // AVRO: no schemaType, no empty references, as Confluent.
        assert!(latest.body.get("schemaType").is_none(), "{:?}", latest.body);
        assert!(latest.body.get("references").is_none(), "{:?}", latest.body);
        let stored: Value =
            serde_json::from_str(latest.body["schema"].as_str().expect("text")).expect("json");
        let sent: Value = serde_json::from_str(&v2()).expect("json");
        assert_eq!(stored, sent);
        assert_eq!(
            api.get("/subjects/orders-value/versions/-1").await.body,
            latest.body
        );
        let first = api.get("/subjects/orders-value/versions/1").await.body;
        assert_eq!(first["id"], id);

        let text = api.get("/subjects/orders-value/versions/1/schema").await;
        assert_eq!(text.status, 200);
        assert_eq!(
            text.body,
            serde_json::from_str::<Value>(first["schema"].as_str().expect("text")).expect("json")
        );

        let by_id = api.get(&format!("/schemas/ids/{id}")).await;
        assert_eq!(by_id.status, 200);
        assert_eq!(by_id.body, json!({ "schema": first["schema"] }));
        let with_max = api.get(&format!("/schemas/ids/{id}?fetchMaxId=true")).await;
        assert_eq!(with_max.body["maxId"], id2, "{with_max:?}");
        let raw = api.get(&format!("/schemas/ids/{id}/schema")).await;
        assert_eq!(raw.body, text.body);
        assert_eq!(
            api.get(&format!("/schemas/ids/{id}/subjects")).await.body,
            json!(["audit-value", "orders-value"])
        );
        assert_eq!(
            api.get(&format!("/schemas/ids/{id}/versions")).await.body,
            json!([
                { "subject": "audit-value", "version": 1 },
                { "subject": "orders-value", "version": 1 }
            ])
        );
        // `subject` only selects the (default) context: any subject finds the id, as a
        // deserializer's derived subject need not be the writer's.
        for subject in ["orders-value", "audit-value", "elsewhere"] {
            let a = api
                .get(&format!("/schemas/ids/{id2}?subject={subject}"))
                .await;
            assert_eq!(a.body["schema"], latest.body["schema"], "{subject}: {a:?}");
        }

        // Lookup: which version of a subject holds this schema.
        let found = api
            .post("/subjects/orders-value", json!({ "schema": v1() }))
            .await;
        assert_eq!(found.status, 200, "{found:?}");
        assert_eq!(found.body["version"], 1);
        assert_eq!(found.body["id"], id);
        assert_eq!(found.body["subject"], "orders-value");
        let missing = api
            .post("/subjects/audit-value", json!({ "schema": v2() }))
            .await;
        assert_eq!((missing.status, missing.code()), (404, 40403));
        let nosubject = api.post("/subjects/nope", json!({ "schema": v1() })).await;
        assert_eq!((nosubject.status, nosubject.code()), (404, 40401));

        assert_eq!(
            api.get("/schemas/types").await.body,
            json!(["JSON", "PROTOBUF", "AVRO"])
        );
        assert_eq!(api.get("/contexts").await.body, json!(["."]));
    })
    .await;
}

#[tokio::test]
async fn not_found_and_invalid_codes() {
    on_both(async |api| {
        register(api, "s", &v1()).await;
        let cases: &[(&str, u16, i64)] = &[
            ("/subjects/nope/versions", 404, 40401),
            ("/subjects/nope/versions/1", 404, 40401),
            ("/subjects/s/versions/9", 404, 40402),
            ("/schemas/ids/999", 404, 40403),
            ("/schemas/ids/999/subjects", 404, 40403),
            ("/schemas/ids/x", 404, 40403),
            ("/subjects/s/versions/0", 422, 42202),
            ("/subjects/s/versions/abc", 422, 42202),
            ("/subjects/s/versions/-2", 422, 42202),
            ("/config/s", 404, 40408),
            ("/mode/s", 404, 40409),
            ("/no/such/route", 404, 404),
        ];
        for (path, status, code) in cases {
            let a = api.get(path).await;
            assert_eq!((a.status, a.code()), (*status, *code), "GET {path}: {a:?}");
            assert!(
                a.body["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{a:?}"
            );
        }
        let a = api
            .put("/config", json!({ "compatibility": "SIDEWAYS" }))
            .await;
        assert_eq!((a.status, a.code()), (422, 42203));
        let a = api.put("/config/s", json!({ "compatibility": "" })).await;
        assert_eq!((a.status, a.code()), (422, 42203));
        let a = api.put("/mode", json!({ "mode": "WRITEONLY" })).await;
        assert_eq!((a.status, a.code()), (422, 42204));
        let a = api.put("/mode/s", json!({})).await;
        assert_eq!((a.status, a.code()), (422, 42204));
        // Nothing of that changed the configuration.
        assert_eq!(
            api.get("/config").await.body,
            json!({ "compatibilityLevel": "BACKWARD" })
        );
        assert_eq!(api.get("/mode").await.body, json!({ "mode": "READWRITE" }));
        let a = api
            .post("/subjects/__GLOBAL/versions", json!({ "schema": v1() }))
            .await;
        assert_eq!((a.status, a.code()), (422, 42208));
    })
    .await;
}

#[tokio::test]
async fn bad_input_stores_nothing() {
    on_both(async |api| {
        register(api, "base", &v1()).await;
        let before = snapshot(api).await;
        let cases: Vec<(&str, Value, u16, i64)> = vec![
            ("malformed Avro", json!({ "schema": "{\"type\": \"record\"" }), 422, 42201),
            ("not a schema", json!({ "schema": "{\"type\": \"nosuchtype\"}" }), 422, 42201),
            ("empty schema", json!({ "schema": "" }), 422, 42201),
            ("no schema field", json!({ "schemaType": "AVRO" }), 422, 42201),
            ("unknown type", json!({ "schema": v1(), "schemaType": "XML" }), 422, 42201),
            (
                "unresolvable reference",
                json!({
                    "schema": avro_record("C", &[field("a", "com.acme.Address")]),
                    "references": [{ "name": "com.acme.Address", "subject": "address", "version": 1 }]
                }),
                422,
                42201,
            ),
            (
                "named type without reference",
                json!({ "schema": avro_record("C", &[field("a", "com.acme.Address")]) }),
                422,
                42201,
            ),
            (
                "reference to a missing version",
                json!({
                    "schema": v1(),
                    "references": [{ "name": "Order", "subject": "base", "version": 7 }]
                }),
                422,
                42201,
            ),
            ("schema of the wrong JSON type", json!({ "schema": 5 }), 422, 422),
            ("malformed protobuf", json!({ "schema": "message {", "schemaType": "PROTOBUF" }), 422, 42201),
            ("malformed JSON Schema", json!({ "schema": "{\"type\": 12}", "schemaType": "JSON" }), 422, 42201),
        ];
        for (what, body, status, code) in cases {
            for subject in ["base", "fresh"] {
                let a = api.post(&format!("/subjects/{subject}/versions"), body.clone()).await;
                assert_eq!((a.status, a.code()), (status, code), "{what} in {subject}: {a:?}");
            }
            assert_eq!(snapshot(api).await, before, "{what} stored something");
        }
        // Bodies that are not JSON, and an oversized one.
        let ct = [("content-type", "application/json")];
        let a = api
            .send(hyper::Method::POST, "/subjects/fresh/versions", &ct, Some(b"{not json".to_vec()))
            .await;
        assert_eq!((a.status, a.code()), (400, 400), "{a:?}");
        let huge = format!(
            "{{\"schema\": \"{}\"}}",
            "x".repeat(weft_registry::MAX_BODY_BYTES + 1)
        );
        let a = api
            .send(hyper::Method::POST, "/subjects/fresh/versions", &ct, Some(huge.into_bytes()))
            .await;
        assert_eq!((a.status, a.code()), (413, 413), "oversized: {:?}", a.body.to_string().chars().take(200).collect::<String>());
        let ct = [("content-type", "text/plain")];
        let a = api
            .send(hyper::Method::POST, "/subjects/fresh/versions", &ct, Some(serde_json::to_vec(&json!({ "schema": v1() })).expect("encode")))
            .await;
        assert_eq!((a.status, a.code()), (415, 415), "{a:?}");
        assert_eq!(snapshot(api).await, before);
    })
    .await;
}

#[tokio::test]
async fn compatibility_levels_and_checks() {
    on_both(async |api| {
        register(api, "s", &v1()).await;
        // BACKWARD by default: a new required field is refused with its reason.
        let a = api
            .post(
                "/subjects/s/versions",
                json!({ "schema": v1_plus_required() }),
            )
            .await;
        assert_eq!((a.status, a.code()), (409, 409), "{a:?}");
        let message = a.body["message"].as_str().expect("message");
        assert!(message.contains("incompatible"), "{message}");
        assert!(
            message.contains("total"),
            "reason names the field: {message}"
        );
        assert_eq!(api.get("/subjects/s/versions").await.body, json!([1]));

        // The check endpoint agrees, with reasons only when verbose.
        let c = api
            .post(
                "/compatibility/subjects/s/versions/latest",
                json!({ "schema": v1_plus_required() }),
            )
            .await;
        assert_eq!(c.body, json!({ "is_compatible": false }));
        let c = api
            .post(
                "/compatibility/subjects/s/versions/latest?verbose=true",
                json!({ "schema": v1_plus_required() }),
            )
            .await;
        assert_eq!(c.body["is_compatible"], false);
        let messages = c.body["messages"].as_array().expect("messages");
        assert!(
            messages
                .iter()
                .any(|m| m.as_str().unwrap_or("").contains("total")),
            "{messages:?}"
        );
        let c = api
            .post(
                "/compatibility/subjects/s/versions?verbose=true",
                json!({ "schema": v2() }),
            )
            .await;
        assert_eq!(c.body, json!({ "is_compatible": true, "messages": [] }));
        let c = api
            .post(
                "/compatibility/subjects/s/versions/1",
                json!({ "schema": v2() }),
            )
            .await;
        assert_eq!(c.body, json!({ "is_compatible": true }));
        let c = api
            .post(
                "/compatibility/subjects/s/versions/5",
                json!({ "schema": v2() }),
            )
            .await;
        assert_eq!(c.code(), 40402);
        let c = api
            .post(
                "/compatibility/subjects/nope/versions/1",
                json!({ "schema": v2() }),
            )
            .await;
        assert_eq!(c.code(), 40401);
        // No versions yet: anything is compatible.
        let c = api
            .post(
                "/compatibility/subjects/nope/versions",
                json!({ "schema": v2() }),
            )
            .await;
        assert_eq!(c.body, json!({ "is_compatible": true }));

        // Config: global and per subject.
        assert_eq!(
            api.get("/config").await.body,
            json!({ "compatibilityLevel": "BACKWARD" })
        );
        let a = api.put("/config", json!({ "compatibility": "full" })).await;
        assert_eq!(a.body, json!({ "compatibility": "FULL" }));
        assert_eq!(
            api.get("/config").await.body,
            json!({ "compatibilityLevel": "FULL" })
        );
        assert_eq!(api.get("/config/s").await.code(), 40408);
        assert_eq!(
            api.get("/config/s?defaultToGlobal=true").await.body,
            json!({ "compatibilityLevel": "FULL" })
        );
        let a = api
            .put("/config/s", json!({ "compatibility": "NONE" }))
            .await;
        assert_eq!(
            (a.status, a.body.clone()),
            (200, json!({ "compatibility": "NONE" }))
        );
        assert_eq!(
            api.get("/config/s").await.body,
            json!({ "compatibilityLevel": "NONE" })
        );
        // Under NONE the incompatible schema goes in.
        register(api, "s", &v1_plus_required()).await;
        assert_eq!(api.get("/subjects/s/versions").await.body, json!([1, 2]));
        let a = api.delete("/config/s").await;
        assert_eq!(a.body, json!({ "compatibilityLevel": "NONE" }));
        assert_eq!(api.get("/config/s").await.code(), 40408);
        assert_eq!(api.delete("/config/never-seen").await.code(), 40401);
        let a = api.delete("/config").await;
        assert_eq!(a.body, json!({ "compatibilityLevel": "FULL" }));
        assert_eq!(
            api.get("/config").await.body,
            json!({ "compatibilityLevel": "BACKWARD" })
        );

        // Transitive levels check every version, plain ones only the latest.
        let c3 = avro_record("Order", &[field("id", "long")]);
        let a = api
            .put("/config/s", json!({ "compatibility": "BACKWARD" }))
            .await;
        assert_eq!(a.status, 200);
        // c3 drops `total` — fine for a reader of v2's data (it ignores the field).
        let check = api
            .post(
                "/compatibility/subjects/s/versions?verbose=true",
                json!({ "schema": c3 }),
            )
            .await;
        assert_eq!(check.body["is_compatible"], true, "{check:?}");
    })
    .await;
}

#[tokio::test]
async fn modes_and_import() {
    on_both(async |api| {
        // IMPORT on an empty registry: ids and versions as given.
        let a = api.put("/mode", json!({ "mode": "IMPORT" })).await;
        assert_eq!(a.body, json!({ "mode": "IMPORT" }));
        let a = api
            .post("/subjects/imp/versions", json!({ "schema": v1(), "id": 100, "version": 5 }))
            .await;
        assert_eq!(a.body, json!({ "id": 100 }), "{a:?}");
        let v = api.get("/subjects/imp/versions/5").await;
        assert_eq!((v.body["id"].clone(), v.body["version"].clone()), (json!(100), json!(5)));
        // Same schema, same id again: idempotent. Another schema on a taken id: refused.
        let a = api
            .post("/subjects/imp/versions", json!({ "schema": v1(), "id": 100, "version": 5 }))
            .await;
        assert_eq!(a.body, json!({ "id": 100 }));
        let a = api
            .post("/subjects/other/versions", json!({ "schema": v2(), "id": 100, "version": 1 }))
            .await;
        assert_eq!((a.status, a.code()), (422, 42205), "{a:?}");
        // IMPORT skips compatibility checks.
        let a = api
            .post("/subjects/imp/versions", json!({ "schema": v1_plus_required(), "id": 7, "version": 6 }))
            .await;
        assert_eq!(a.body, json!({ "id": 7 }));

        // Back to READWRITE: new ids continue after the largest imported one.
        api.put("/mode", json!({ "mode": "READWRITE" })).await;
        let id = register(api, "fresh", &avro_record("Fresh", &[field("a", "int")])).await;
        assert!(id > 100, "id {id} reuses the imported range");
        // An id outside IMPORT mode is refused.
        let a = api
            .post("/subjects/fresh/versions", json!({ "schema": v2(), "id": 500 }))
            .await;
        assert_eq!((a.status, a.code()), (422, 42205));
        // IMPORT on a registry with subjects needs force.
        let a = api.put("/mode", json!({ "mode": "IMPORT" })).await;
        assert_eq!((a.status, a.code()), (422, 42205));
        let a = api.put("/mode?force=true", json!({ "mode": "IMPORT" })).await;
        assert_eq!(a.body, json!({ "mode": "IMPORT" }));
        api.put("/mode", json!({ "mode": "READWRITE" })).await;

        // READONLY on one subject: writes there refused, elsewhere fine.
        let a = api.put("/mode/fresh", json!({ "mode": "READONLY" })).await;
        assert_eq!(a.body, json!({ "mode": "READONLY" }));
        assert_eq!(api.get("/mode/fresh").await.body, json!({ "mode": "READONLY" }));
        assert_eq!(api.get("/mode/imp?defaultToGlobal=true").await.body, json!({ "mode": "READWRITE" }));
        let a = api
            .post("/subjects/fresh/versions", json!({ "schema": avro_record("Fresh", &[field("a", "int"), field_default("b", "int", json!(0))]) }))
            .await;
        assert_eq!((a.status, a.code()), (422, 42205), "{a:?}");
        assert_eq!(api.delete("/subjects/fresh/versions/1").await.code(), 42205);
        assert_eq!(api.get("/subjects/fresh/versions").await.body, json!([1]));
        register(api, "elsewhere", &v1()).await;
        let a = api.delete("/mode/fresh").await;
        assert_eq!(a.body, json!({ "mode": "READONLY" }));
        assert_eq!(api.get("/mode/fresh").await.code(), 40409);
    })
    .await;
}

#[tokio::test]
async fn soft_and_hard_delete_sequences() {
    on_both(async |api| {
        let id1 = register(api, "d", &v1()).await;
        let id2 = register(api, "d", &v2()).await;

        // Hard delete before soft: refused.
        let a = api.delete("/subjects/d/versions/2?permanent=true").await;
        assert_eq!((a.status, a.code()), (404, 40407));
        let a = api.delete("/subjects/d?permanent=true").await;
        assert_eq!((a.status, a.code()), (404, 40405));

        // Soft delete version 2: hidden from listings, still readable by id and with deleted.
        assert_eq!(api.delete("/subjects/d/versions/2").await.body, json!(2));
        assert_eq!(api.get("/subjects/d/versions").await.body, json!([1]));
        assert_eq!(
            api.get("/subjects/d/versions?deleted=true").await.body,
            json!([1, 2])
        );
        assert_eq!(api.get("/subjects/d/versions/2").await.code(), 40402);
        assert_eq!(
            api.get("/subjects/d/versions/2?deleted=true").await.body["id"],
            id2
        );
        assert_eq!(api.get(&format!("/schemas/ids/{id2}")).await.status, 200);
        assert_eq!(
            api.get("/subjects/d/versions/latest").await.body["version"],
            1
        );
        assert_eq!(api.delete("/subjects/d/versions/2").await.code(), 40406);
        // Re-registering a soft-deleted schema makes a new version.
        let again = register(api, "d", &v2()).await;
        assert_eq!(again, id2);
        assert_eq!(api.get("/subjects/d/versions").await.body, json!([1, 3]));

        // Then permanent: gone, also with deleted=true.
        assert_eq!(
            api.delete("/subjects/d/versions/2?permanent=true")
                .await
                .body,
            json!(2)
        );
        assert_eq!(
            api.get("/subjects/d/versions?deleted=true").await.body,
            json!([1, 3])
        );

        // The whole subject: soft, then soft again (40404), then permanent.
        assert_eq!(api.delete("/subjects/d").await.body, json!([1, 3]));
        assert_eq!(api.get("/subjects").await.body, json!([]));
        assert_eq!(api.get("/subjects?deleted=true").await.body, json!(["d"]));
        assert_eq!(api.get("/subjects/d/versions").await.code(), 40401);
        let a = api.delete("/subjects/d").await;
        assert_eq!((a.status, a.code()), (404, 40404));
        assert_eq!(
            api.get(&format!("/schemas/ids/{id1}")).await.status,
            200,
            "soft-deleted ids stay readable"
        );
        assert_eq!(
            api.delete("/subjects/d?permanent=true").await.body,
            json!([1, 3])
        );
        assert_eq!(api.get("/subjects?deleted=true").await.body, json!([]));
        assert_eq!(api.get(&format!("/schemas/ids/{id1}")).await.code(), 40403);
        assert_eq!(api.delete("/subjects/d").await.code(), 40401);

        // Ids are never reused: the same schema comes back under a new id.
        let id3 = register(api, "d", &v1()).await;
        assert!(id3 > id2, "id {id3} reused");
        assert_eq!(api.get("/subjects/d/versions").await.body, json!([1]));
    })
    .await;
}

#[tokio::test]
async fn references_across_subjects() {
    on_both(async |api| {
        let address = json!({
            "type": "record", "name": "Address", "namespace": "com.acme",
            "fields": [{ "name": "city", "type": "string" }]
        })
        .to_string();
        let address_id = register(api, "address", &address).await;
        let customer = json!({
            "type": "record", "name": "Customer", "namespace": "com.acme",
            "fields": [{ "name": "home", "type": "com.acme.Address" }]
        })
        .to_string();
        let refs = json!([{ "name": "com.acme.Address", "subject": "address", "version": 1 }]);
        let a = api
            .post(
                "/subjects/customer/versions",
                json!({ "schema": customer, "references": refs }),
            )
            .await;
        assert_eq!(a.status, 200, "{a:?}");
        let customer_id = a.body["id"].as_i64().expect("id");
        let v = api.get("/subjects/customer/versions/1").await;
        assert_eq!(v.body["references"], refs);
        assert_eq!(
            api.get(&format!("/schemas/ids/{customer_id}")).await.body["references"],
            refs
        );
        assert_eq!(
            api.get("/subjects/address/versions/1/referencedby")
                .await
                .body,
            json!([customer_id])
        );
        // Lookup with the same references finds it.
        let found = api
            .post(
                "/subjects/customer",
                json!({ "schema": customer, "references": refs }),
            )
            .await;
        assert_eq!(found.body["id"], customer_id);
        // A referenced version cannot be deleted.
        let a = api.delete("/subjects/address/versions/1").await;
        assert_eq!((a.status, a.code()), (422, 42206), "{a:?}");
        let a = api.delete("/subjects/address").await;
        assert_eq!(a.code(), 42206);
        // Transitive: an order referring to the customer also needs the address.
        let order = json!({
            "type": "record", "name": "Order", "namespace": "com.acme",
            "fields": [{ "name": "buyer", "type": "com.acme.Customer" }]
        })
        .to_string();
        let order_refs =
            json!([{ "name": "com.acme.Customer", "subject": "customer", "version": 1 }]);
        let a = api
            .post(
                "/subjects/order/versions",
                json!({ "schema": order, "references": order_refs }),
            )
            .await;
        assert_eq!(a.status, 200, "{a:?}");
        // Once the referrers are gone, the address can go.
        assert_eq!(api.delete("/subjects/order").await.status, 200);
        assert_eq!(api.delete("/subjects/customer").await.status, 200);
        assert_eq!(
            api.delete("/subjects/address/versions/1").await.body,
            json!(1)
        );
        // Still referenced by a soft-deleted schema: no permanent delete.
        assert_eq!(
            api.delete("/subjects/address/versions/1?permanent=true")
                .await
                .code(),
            42206
        );
        assert_eq!(
            api.delete("/subjects/order?permanent=true").await.status,
            200
        );
        assert_eq!(
            api.delete("/subjects/customer?permanent=true").await.status,
            200
        );
        assert_eq!(
            api.delete("/subjects/address/versions/1?permanent=true")
                .await
                .body,
            json!(1)
        );
        assert_eq!(
            api.get(&format!("/schemas/ids/{address_id}")).await.code(),
            40403
        );
    })
    .await;
}

#[tokio::test]
async fn media_types() {
    on_both(async |api| {
        let a = api.get("/subjects").await;
        assert_eq!(a.content_type, "application/vnd.schemaregistry.v1+json");
        for accept in [
            "application/json",
            "application/vnd.schemaregistry+json",
            "application/vnd.schemaregistry.v1+json",
        ] {
            let a = api
                .send(hyper::Method::GET, "/subjects", &[("accept", accept)], None)
                .await;
            assert_eq!((a.status, a.content_type.as_str()), (200, accept));
        }
        for ct in [
            "application/json",
            "application/vnd.schemaregistry+json; charset=utf-8",
        ] {
            let body = serde_json::to_vec(&json!({ "schema": v1() })).expect("encode");
            let a = api
                .send(
                    hyper::Method::POST,
                    "/subjects/m/versions",
                    &[("content-type", ct)],
                    Some(body),
                )
                .await;
            assert_eq!(a.status, 200, "{ct}: {a:?}");
        }
        // Errors come in the same media type.
        let a = api
            .send(
                hyper::Method::GET,
                "/subjects/nope/versions",
                &[("accept", "application/json")],
                None,
            )
            .await;
        assert_eq!(
            (a.content_type.as_str(), a.code()),
            ("application/json", 40401)
        );
    })
    .await;
}

#[tokio::test]
async fn state_survives_a_restart() {
    for backend in BACKENDS {
        let db = TestDb::new(backend).await;
        let api = Api::start(&db).await;
        let id1 = register(&api, "r", &v1()).await;
        api.put("/config/r", json!({ "compatibility": "FULL" }))
            .await;
        api.stop().await;

        let api = Api::start(&db).await;
        assert_eq!(api.get("/subjects/r/versions/1").await.body["id"], id1);
        assert_eq!(
            api.get("/config/r").await.body,
            json!({ "compatibilityLevel": "FULL" })
        );
        let id2 = register(&api, "r", &v2()).await;
        assert!(id2 > id1, "{backend:?}: ids go on after a restart");
        api.stop().await;
    }
}

#[tokio::test]
async fn protobuf_and_json_schema_with_references() {
    on_both(async |api| {
        // Protobuf: an import resolved through a reference to another subject.
        let money = "syntax = \"proto3\";\npackage acme;\nmessage Money { int64 units = 1; string currency = 2; }\n";
        let a = api
            .post("/subjects/money/versions", json!({ "schema": money, "schemaType": "PROTOBUF" }))
            .await;
        assert_eq!(a.status, 200, "{a:?}");
        let order = "syntax = \"proto3\";\npackage acme;\nimport \"acme/money.proto\";\nmessage Order { acme.Money total = 1; }\n";
        let unresolved = api
            .post("/subjects/order/versions", json!({ "schema": order, "schemaType": "PROTOBUF" }))
            .await;
        assert_eq!((unresolved.status, unresolved.code()), (422, 42201), "{unresolved:?}");
        assert_eq!(api.get("/subjects/order/versions").await.code(), 40401, "nothing stored");
        let refs = json!([{ "name": "acme/money.proto", "subject": "money", "version": 1 }]);
        let a = api
            .post(
                "/subjects/order/versions",
                json!({ "schema": order, "schemaType": "PROTOBUF", "references": refs }),
            )
            .await;
        assert_eq!(a.status, 200, "{a:?}");
        let id = a.body["id"].as_i64().expect("id");
        let v = api.get("/subjects/order/versions/1").await.body;
        assert_eq!(v["schemaType"], "PROTOBUF");
        assert_eq!(v["references"], refs);
        // Text by default; a base64 FileDescriptorProto with format=serialized.
        let text = api.get(&format!("/schemas/ids/{id}")).await.body["schema"].clone();
        assert!(text.as_str().expect("text").contains("message Order"), "{text}");
        let serialized = api.get(&format!("/schemas/ids/{id}?format=serialized")).await.body;
        let b64 = serialized["schema"].as_str().expect("base64");
        assert!(!b64.contains(' ') && !b64.contains("message"), "{b64}");
        // Registering the descriptor form gives the same id: one canonical schema.
        let again = api
            .post(
                "/subjects/order/versions",
                json!({ "schema": b64, "schemaType": "PROTOBUF", "references": refs }),
            )
            .await;
        assert_eq!(again.body, json!({ "id": id }), "{again:?}");

        // JSON Schema: a $ref to a schema registered under another subject.
        let address = json!({
            "$id": "https://acme.example/address.json",
            "type": "object",
            "properties": { "city": { "type": "string" } }
        })
        .to_string();
        let a = api
            .post("/subjects/address-json/versions", json!({ "schema": address, "schemaType": "JSON" }))
            .await;
        assert_eq!(a.status, 200, "{a:?}");
        let customer = json!({
            "type": "object",
            "properties": { "home": { "$ref": "https://acme.example/address.json" } }
        })
        .to_string();
        let refs = json!([{ "name": "https://acme.example/address.json", "subject": "address-json", "version": 1 }]);
        let a = api
            .post(
                "/subjects/customer-json/versions",
                json!({ "schema": customer, "schemaType": "JSON", "references": refs }),
            )
            .await;
        assert_eq!(a.status, 200, "{a:?}");
        let v = api.get("/subjects/customer-json/versions/latest").await.body;
        assert_eq!(v["schemaType"], "JSON");
        // JSON Schema keeps the client's text.
        assert_eq!(v["schema"], customer);
        assert_eq!(
            api.get("/subjects/address-json/versions/1/referencedby").await.body,
            json!([a.body["id"]])
        );
    })
    .await;
}

#[tokio::test]
async fn store_failure_is_50001() {
    on_both(async |api| {
        register(api, "s", &v1()).await;
        // The database goes away under the running registry.
        api.registry.store().close().await;
        let a = api.get("/subjects").await;
        assert_eq!((a.status, a.code()), (500, 50001), "{a:?}");
        let a = api
            .post("/subjects/s/versions", json!({ "schema": v2() }))
            .await;
        assert_eq!((a.status, a.code()), (500, 50001), "{a:?}");
        assert!(
            a.body["message"]
                .as_str()
                .is_some_and(|m| m.contains("data store")),
            "{a:?}"
        );
    })
    .await;
}
