//! Registry figures on SQLite and PostgreSQL (`cargo bench -p weft-registry --bench registry`):
//! registration rate, look-up by id (the API's store read, and the in-process parsed-schema
//! look-up cached and uncached), and a FULL_TRANSITIVE compatibility check of a 200-field
//! Avro schema against 50 versions.
//!
//! PostgreSQL is found like the tests find it (`WEFT_TEST_POSTGRES_URL`, else
//! `postgres://127.0.0.1:5432/test`); each backend gets a fresh database.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use weft_registry::{Registry, SchemaInput};
use weft_schema::CompatibilityLevel;
use weft_store::Backend;
use weft_store::testing::TestDb;

fn avro(name: &str, fields: usize, extra_with_default: usize) -> String {
    let mut fs: Vec<serde_json::Value> = (0..fields)
        .map(|i| json!({ "name": format!("f{i}"), "type": "long" }))
        .collect();
    fs.extend(
        (0..extra_with_default)
            .map(|i| json!({ "name": format!("x{i}"), "type": "string", "default": "" })),
    );
    json!({ "type": "record", "name": name, "fields": fs }).to_string()
}

fn input(schema: String) -> SchemaInput {
    SchemaInput {
        schema,
        ..SchemaInput::default()
    }
}

fn bench_backend(c: &mut Criterion, backend: Backend) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let db = rt.block_on(TestDb::new(backend));
    let registry = rt.block_on(async {
        let store = db.open().await;
        Registry::open(store).await.expect("registry")
    });
    let name = backend.as_str();
    let mut g = c.benchmark_group(format!("registry/{name}"));
    g.sample_size(10).measurement_time(Duration::from_secs(5));

    // Each registration is a new schema in a new subject (one id, one version).
    let n = AtomicU64::new(0);
    g.bench_function("register", |b| {
        b.iter(|| {
            let i = n.fetch_add(1, Ordering::Relaxed);
            rt.block_on(registry.register(
                &format!("bench-{i}-value"),
                input(avro(&format!("R{i}"), 5, 0)),
                false,
            ))
            .expect("register")
        });
    });

    let id = rt
        .block_on(registry.register("lookup-value", input(avro("L", 20, 0)), false))
        .expect("register");
    g.bench_function("schema_by_id (store read, as GET /schemas/ids/{id})", |b| {
        b.iter(|| rt.block_on(registry.schema_by_id(id, None)).expect("by id"));
    });
    g.bench_function("parsed_schema cached (broker validation path)", |b| {
        b.iter(|| rt.block_on(registry.parsed_schema(id)).expect("parsed"));
    });
    g.bench_function("parsed_schema uncached (store read + parse)", |b| {
        b.iter(|| {
            registry.clear_cache();
            rt.block_on(registry.parsed_schema(id)).expect("parsed")
        });
    });

    // 50 versions of a 200-field record, each adding a field with a default (FULL
    // compatible), then a candidate checked against all of them.
    let subject = "compat-value";
    rt.block_on(async {
        registry
            .set_compatibility(
                Some(subject),
                Some(CompatibilityLevel::FullTransitive),
                None,
            )
            .await
            .expect("level");
        let started = Instant::now();
        for v in 0..50 {
            registry
                .register(subject, input(avro("Wide", 200, v)), false)
                .await
                .expect("version");
        }
        eprintln!(
            "{name}: 50 versions of a 200-field schema registered under FULL_TRANSITIVE in {:?}",
            started.elapsed()
        );
    });
    let candidate = avro("Wide", 200, 50);
    g.bench_function("compatibility 200 fields FULL_TRANSITIVE x50", |b| {
        b.iter(|| {
            let r = rt
                .block_on(registry.check_compatibility(
                    subject,
                    None,
                    input(candidate.clone()),
                    false,
                ))
                .expect("check");
            assert!(r.is_compatible, "{:?}", r.messages);
        });
    });
    g.finish();
    rt.block_on(registry.store().close());
    drop(db);
}

fn benches(c: &mut Criterion) {
    bench_backend(c, Backend::Sqlite);
    bench_backend(c, Backend::Postgres);
}

criterion_group!(registry, benches);
criterion_main!(registry);
