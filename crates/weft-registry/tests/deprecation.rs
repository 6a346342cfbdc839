//! Deprecation of versions over real HTTP, on SQLite and PostgreSQL: the endpoints, the
//! `Deprecation`/`Sunset` headers and body field, which answers carry them, bad input.

mod common;

use common::{Api, BACKENDS, avro_record, field, field_default};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
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

/// A GET answer with its deprecation headers.
struct Got {
    status: u16,
    deprecation: Option<String>,
    sunset: Option<String>,
    body: Value,
}

async fn get(api: &Api, path: &str) -> Got {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = Request::builder()
        .method(Method::GET)
        .uri(format!("http://{}{path}", api.addr))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let res = client.request(req).await.expect("http");
    let header = |n: &str| {
        res.headers()
            .get(n)
            .map(|v| v.to_str().expect("ascii header").to_owned())
    };
    let (status, deprecation, sunset) = (
        res.status().as_u16(),
        header("deprecation"),
        header("sunset"),
    );
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Got {
        status,
        deprecation,
        sunset,
        body,
    }
}

async fn register(api: &Api, subject: &str, schema: &str) -> i64 {
    let a = api
        .post(
            &format!("/subjects/{subject}/versions"),
            json!({ "schema": schema }),
        )
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    a.body["id"].as_i64().expect("id")
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

#[tokio::test]
async fn deprecated_versions_carry_headers_and_fields() {
    on_both(async |api| {
        let id1 = register(api, "orders-value", &v1()).await;
        let id2 = register(api, "orders-value", &v2()).await;

        // Not deprecated: no headers, no field.
        let g = get(api, "/subjects/orders-value/versions/1").await;
        assert_eq!(g.status, 200);
        assert_eq!(
            (g.deprecation.as_deref(), g.sunset.as_deref()),
            (None, None)
        );
        assert!(g.body.get("deprecation").is_none(), "{}", g.body);
        assert_eq!(
            get(api, "/subjects/orders-value/versions/1/deprecation")
                .await
                .status,
            404
        );

        let a = api
            .put(
                "/subjects/orders-value/versions/1/deprecation",
                json!({ "sunset": "2027-01-31", "note": "use version 2" }),
            )
            .await;
        assert_eq!(a.status, 200, "{a:?}");
        assert_eq!(a.body["version"], 1);
        assert_eq!(a.body["sunset"], "2027-01-31");

        for path in [
            "/subjects/orders-value/versions/1",
            "/subjects/orders-value/versions/1/schema",
            "/subjects/orders-value/versions/1/deprecation",
        ] {
            let g = get(api, path).await;
            assert_eq!(g.status, 200, "{path}");
            assert_eq!(
                g.sunset.as_deref(),
                Some("Sun, 31 Jan 2027 00:00:00 GMT"),
                "{path}"
            );
            let dep = g
                .deprecation
                .unwrap_or_else(|| panic!("{path}: no Deprecation"));
            let secs: i64 = dep
                .strip_prefix('@')
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("{path}: Deprecation {dep:?} is not @<seconds>"));
            assert!(secs > 1_700_000_000, "{path}: {secs}");
        }
        let g = get(api, "/subjects/orders-value/versions/1").await;
        assert_eq!(g.body["deprecation"]["sunset"], "2027-01-31");
        assert_eq!(g.body["deprecation"]["note"], "use version 2");
        assert_eq!(g.body["id"], id1, "the rest of the answer is untouched");

        // Version 2 and `latest` are not deprecated.
        for path in [
            "/subjects/orders-value/versions/2",
            "/subjects/orders-value/versions/latest",
        ] {
            let g = get(api, path).await;
            assert_eq!((g.deprecation, g.sunset), (None, None), "{path}");
        }
        // By id: id1 is used only by the deprecated version.
        let g = get(api, &format!("/schemas/ids/{id1}")).await;
        assert_eq!(g.sunset.as_deref(), Some("Sun, 31 Jan 2027 00:00:00 GMT"));
        assert_eq!(g.body["deprecation"]["note"], "use version 2");
        let g = get(api, &format!("/schemas/ids/{id2}")).await;
        assert_eq!((g.deprecation, g.sunset), (None, None));

        // Undo.
        let a = api
            .delete("/subjects/orders-value/versions/1/deprecation")
            .await;
        assert_eq!((a.status, &a.body["removed"]), (200, &json!(true)), "{a:?}");
        let g = get(api, "/subjects/orders-value/versions/1").await;
        assert_eq!((g.deprecation, g.sunset), (None, None));
        let a = api
            .delete("/subjects/orders-value/versions/1/deprecation")
            .await;
        assert_eq!((a.status, &a.body["removed"]), (200, &json!(false)));
    })
    .await;
}

#[tokio::test]
async fn an_id_shared_with_a_live_version_is_not_reported_deprecated() {
    on_both(async |api| {
        let id = register(api, "a-value", &v1()).await;
        assert_eq!(register(api, "b-value", &v1()).await, id);
        let a = api
            .put(
                "/subjects/a-value/versions/latest/deprecation",
                json!({ "sunset": "2027-06-01T12:00:00+02:00" }),
            )
            .await;
        assert_eq!(a.status, 200, "{a:?}");
        assert_eq!(a.body["version"], 1);
        // b-value still uses it undeprecated.
        let g = get(api, &format!("/schemas/ids/{id}")).await;
        assert_eq!((g.deprecation, g.sunset), (None, None));
        // Within a-value it is deprecated.
        let g = get(api, &format!("/schemas/ids/{id}?subject=a-value")).await;
        assert_eq!(g.sunset.as_deref(), Some("Tue, 01 Jun 2027 10:00:00 GMT"));
        let g = get(api, &format!("/schemas/ids/{id}/schema?subject=a-value")).await;
        assert!(g.sunset.is_some());
        // Deprecating b-value too makes the id deprecated everywhere; the earliest sunset wins.
        let a = api
            .put(
                "/subjects/b-value/versions/1/deprecation",
                json!({ "sunset": "2027-03-01", "note": "b goes first" }),
            )
            .await;
        assert_eq!(a.status, 200);
        let g = get(api, &format!("/schemas/ids/{id}")).await;
        assert_eq!(g.sunset.as_deref(), Some("Mon, 01 Mar 2027 00:00:00 GMT"));
        assert_eq!(g.body["deprecation"]["note"], "b goes first");
    })
    .await;
}

#[tokio::test]
async fn bad_deprecations_are_refused_and_store_nothing() {
    on_both(async |api| {
        register(api, "orders-value", &v1()).await;
        let cases: &[(&str, Value, u16, i64)] = &[
            (
                "/subjects/orders-value/versions/1/deprecation",
                json!({}),
                422,
                422,
            ),
            (
                "/subjects/orders-value/versions/1/deprecation",
                json!({ "sunset": "next tuesday" }),
                422,
                422,
            ),
            (
                "/subjects/orders-value/versions/1/deprecation",
                json!({ "sunset": "2027-02-30" }),
                422,
                422,
            ),
            (
                "/subjects/orders-value/versions/1/deprecation",
                json!({ "sunset": "2027-02-01", "note": 5 }),
                422,
                422,
            ),
            (
                "/subjects/orders-value/versions/9/deprecation",
                json!({ "sunset": "2027-02-01" }),
                404,
                40402,
            ),
            (
                "/subjects/nobody/versions/1/deprecation",
                json!({ "sunset": "2027-02-01" }),
                404,
                40401,
            ),
            (
                "/subjects/orders-value/versions/0/deprecation",
                json!({ "sunset": "2027-02-01" }),
                422,
                42202,
            ),
        ];
        for (path, body, status, code) in cases {
            let a = api.put(path, body.clone()).await;
            assert_eq!(
                (a.status, a.code()),
                (*status, *code),
                "{path} {body}: {a:?}"
            );
        }
        let g = get(api, "/subjects/orders-value/versions/1").await;
        assert_eq!((g.deprecation, g.sunset), (None, None));

        // A soft-deleted version cannot be deprecated; a read-only subject refuses changes.
        register(api, "gone-value", &v1()).await;
        assert_eq!(
            api.delete("/subjects/gone-value/versions/1").await.status,
            200
        );
        let a = api
            .put(
                "/subjects/gone-value/versions/1/deprecation",
                json!({ "sunset": "2027-02-01" }),
            )
            .await;
        assert_eq!(a.status, 404, "{a:?}");
        assert_eq!(
            api.put("/mode/orders-value", json!({ "mode": "READONLY" }))
                .await
                .status,
            200
        );
        let a = api
            .put(
                "/subjects/orders-value/versions/1/deprecation",
                json!({ "sunset": "2027-02-01" }),
            )
            .await;
        assert_eq!(a.code(), 42205, "{a:?}");
    })
    .await;
}

#[tokio::test]
async fn a_version_number_reused_after_a_hard_delete_is_not_deprecated() {
    on_both(async |api| {
        register(api, "s-value", &v1()).await;
        let a = api
            .put(
                "/subjects/s-value/versions/1/deprecation",
                json!({ "sunset": "2027-02-01" }),
            )
            .await;
        assert_eq!(a.status, 200);
        assert_eq!(api.delete("/subjects/s-value/versions/1").await.status, 200);
        assert_eq!(
            api.delete("/subjects/s-value/versions/1?permanent=true")
                .await
                .status,
            200
        );
        // A different schema now takes version 1.
        register(api, "s-value", &avro_record("Other", &[field("x", "int")])).await;
        let g = get(api, "/subjects/s-value/versions/1").await;
        assert_eq!(g.status, 200, "{}", g.body);
        assert_eq!((g.deprecation, g.sunset), (None, None), "{}", g.body);
    })
    .await;
}
