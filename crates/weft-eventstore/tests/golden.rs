//! Format version 1 of the stored rows still reads: `tests/golden/v1/rows.json` holds rows
//! as version 1 writes them (events with envelope `format` 1, a type declaration, a snapshot,
//! a persistent group); they are inserted raw into a freshly migrated database of each
//! backend and must read back as `expected.json`, and appends must go on after them.

mod common;

use common::{BACKENDS, reopen};
use serde_json::Value;
use weft_eventstore::{Direction, EventData, ExpectedVersion, Filter};
use weft_store::sqlx;
use weft_store::testing::TestDb;

const COLUMNS: &[(&str, &str)] = &[
    ("es_positions", "name, value"),
    (
        "es_streams",
        "stream, category, last_revision, truncate_before, max_count, max_age_ms, \
         user_truncate_before, soft_deleted, tombstone, created_ms, updated_ms",
    ),
    (
        "es_events",
        "position, stream, category, revision, event_id, event_type, schema_subject, \
         schema_version, data, metadata, format, recorded_ms",
    ),
    ("es_event_types", "event_type, declaration, updated_ms"),
    ("es_snapshots", "stream, revision, state, recorded_ms"),
    ("es_persistent", "grp, settings, checkpoint, updated_ms"),
];

#[tokio::test]
async fn version_1_rows_still_read() {
    let rows: Value = serde_json::from_str(include_str!("golden/v1/rows.json")).expect("rows.json");
    let expected: Value =
        serde_json::from_str(include_str!("golden/v1/expected.json")).expect("expected.json");
    assert_eq!(rows["format"], 1);
    for backend in BACKENDS {
        let db = TestDb::new(backend).await;
        drop(reopen(&db).await); // migrations only
        let store = db.open().await;
        sqlx::query("DELETE FROM es_positions")
            .execute(store.pool())
            .await
            .expect("clear");
        for (table, columns) in COLUMNS {
            for row in rows[*table].as_array().expect("rows") {
                let mut values = Vec::new();
                let mut binds = Vec::new();
                for v in row.as_array().expect("row") {
                    match v {
                        // A literal NULL: a typed bind would not fit every column type.
                        Value::Null => values.push("NULL".to_owned()),
                        v => {
                            binds.push(v.clone());
                            values.push(format!("${}", binds.len()));
                        }
                    }
                }
                let sql = format!(
                    "INSERT INTO {table} ({columns}) VALUES ({})",
                    values.join(", ")
                );
                let mut q = sqlx::query(&sql);
                for b in binds {
                    q = match b {
                        Value::Number(n) => q.bind(n.as_i64().expect("integer")),
                        Value::String(s) => q.bind(s),
                        other => panic!("unexpected value {other}"),
                    };
                }
                q.execute(store.pool()).await.expect("insert golden row");
            }
        }
        store.close().await;

        let es = reopen(&db).await;
        let all = es
            .read_all(1, Direction::Forwards, 100, &Filter::all())
            .await
            .expect("read");
        assert_eq!(
            serde_json::to_value(&all).expect("json"),
            expected,
            "{backend:?}"
        );
        let decl = es.declared_type("OrderPlaced").expect("declaration loads");
        assert_eq!(decl.public.expect("mapping").public_type, "OrderSubmitted");
        assert!(
            es.append(
                "order-9",
                ExpectedVersion::Any,
                vec![EventData::new("OrderPlaced", serde_json::json!({}))]
            )
            .await
            .is_err(),
            "the stored schema is enforced"
        );
        let w = es
            .append(
                "order-1",
                ExpectedVersion::Exact(1),
                vec![EventData::new("OrderShipped", serde_json::json!({}))],
            )
            .await
            .expect("append after golden rows");
        assert_eq!((w.position, w.next_expected), (4, 2));
        let (revision, state) = es
            .load_snapshot("order-1")
            .await
            .expect("snapshot")
            .expect("one");
        assert_eq!((revision, state["total"].as_f64()), (0, Some(12.5)));
        assert_eq!(
            es.group_status("billing").await.expect("group").checkpoint,
            1
        );
    }
}
