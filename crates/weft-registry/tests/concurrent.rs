//! Two registry processes sharing one PostgreSQL database register at the same time: the
//! same schema gets one id everywhere, ids are unique, versions have no gaps or duplicates.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use common::{Api, avro_record, field, field_default};
use serde_json::json;
use weft_store::Backend;
use weft_store::testing::TestDb;

/// Schema number `i` of a subject: each adds an optional field, so all are BACKWARD
/// compatible with each other.
fn schema(i: usize) -> String {
    let mut fields = vec![field("id", "long")];
    for k in 0..i {
        fields.push(field_default(&format!("f{k}"), "int", json!(0)));
    }
    avro_record("Evolving", &fields)
}

async fn run(backend: Backend) {
    let db = TestDb::new(backend).await;
    // Two stores, two registries, two HTTP servers: as two `weft serve` processes.
    let a = Arc::new(Api::start(&db).await);
    let b = Arc::new(Api::start(&db).await);
    const N: usize = 12;

    let register = |api: &Arc<Api>, subject: String, text: String| {
        let api = Arc::clone(api);
        async move {
            let path = format!("/subjects/{subject}/versions");
            let r = api.post(&path, json!({ "schema": text })).await;
            assert_eq!(r.status, 200, "{subject}: {r:?}");
            r.body["id"].as_i64().expect("id")
        }
    };
    // Both registries register the same schemas into the same subject, and into a subject
    // of their own, all at once.
    let mut tasks = Vec::new();
    for i in 0..N {
        tasks.push(register(&a, "shared".into(), schema(i)));
        tasks.push(register(&b, "shared".into(), schema(i)));
        tasks.push(register(&a, "only-a".into(), schema(i)));
        tasks.push(register(&b, "only-b".into(), schema(N - 1 - i)));
    }
    let ids = futures_join_all(tasks).await;

    // The same text has one id whichever registry and subject registered it.
    let mut by_schema: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for (k, id) in ids.iter().enumerate() {
        let i = k / 4;
        let text = if k % 4 == 3 {
            schema(N - 1 - i)
        } else {
            schema(i)
        };
        by_schema.entry(text).or_default().insert(*id);
    }
    for (text, ids) in &by_schema {
        assert_eq!(ids.len(), 1, "{backend:?}: {text} got ids {ids:?}");
    }
    let distinct: BTreeSet<i64> = by_schema.values().flatten().copied().collect();
    assert_eq!(distinct.len(), N, "{backend:?}: one id per distinct schema");

    // Each subject holds each schema once, versions 1..=N.
    for subject in ["shared", "only-a", "only-b"] {
        let versions = a.get(&format!("/subjects/{subject}/versions")).await.body;
        let expected: Vec<usize> = (1..=N).collect();
        assert_eq!(versions, json!(expected), "{backend:?} {subject}");
        let mut seen = BTreeSet::new();
        for v in 1..=N {
            let got = b
                .get(&format!("/subjects/{subject}/versions/{v}"))
                .await
                .body;
            seen.insert(got["id"].as_i64().expect("id"));
        }
        assert_eq!(seen, distinct, "{backend:?} {subject}");
    }
    for api in [a, b] {
        match Arc::try_unwrap(api) {
            Ok(api) => api.stop().await,
            Err(_) => panic!("api still shared"),
        }
    }
}

/// `join_all` without a futures dependency: spawn each and await in order.
async fn futures_join_all<F>(futures: Vec<F>) -> Vec<i64>
where
    F: std::future::Future<Output = i64> + Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_registries_on_one_postgres() {
    run(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_registries_on_one_sqlite_file() {
    // Not a deployment Weft supports (a data dir belongs to one process), but the same
    // races through two pools on one WAL file must end the same way.
    run(Backend::Sqlite).await;
}
