//! The outbox relay inside a real `weft serve`, against real PostgreSQL, MariaDB and SQLite:
//! end-to-end publish with headers and per-aggregate order, concurrent writers with random
//! commit delays and rollbacks (nothing skipped, nothing invented), bad rows under both
//! policies, status over HTTP and `weft outbox status`.

mod common;
#[path = "outbox_support/mod.rs"]
mod support;

use serde_json::Value;
use support::{Db, Kind, check_delivered, consume, start_server, wait_status};
use weft_outbox::{Context, OutboxEvent};
use weft_store::sqlx::{self, Row};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

async fn end_to_end(kind: Kind) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::new(kind).await;
    support::init_table(dir.path(), &db.url);
    let pool = db.pool().await;
    // Three aggregates, five events each, one transaction per event.
    let mut ids = Vec::new();
    for n in 0..5 {
        for agg in ["o1", "o2", "o3"] {
            let mut tx = pool.begin().await.expect("begin");
            let event =
                OutboxEvent::json("order", agg, "OrderChanged", &serde_json::json!({"n": n}))
                    .expect("event")
                    .with_header("tenant", "acme")
                    .with_context(Context {
                        correlation_id: Some("corr-1".into()),
                        causation_id: Some(format!("cmd-{n}")),
                        traceparent: Some(TRACEPARENT.into()),
                        tracestate: None,
                    });
            let id = weft_outbox::insert(&mut tx, &event).await.expect("insert");
            tx.commit().await.expect("commit");
            ids.push((agg, n, id.to_string()));
        }
    }
    let server = start_server(dir.path(), &db.url, "", &[]);
    let s = wait_status(&server, "15 rows published", |s| s["published_total"] == 15);
    assert_eq!(s["state"], "running", "{s}");
    let msgs = consume(&server.kafka_addr().to_string(), "outbox.event.order", 15);
    assert_eq!(msgs.len(), 15, "each row once");
    for agg in ["o1", "o2", "o3"] {
        let ns: Vec<i64> = msgs
            .iter()
            .filter(|m| m.key == agg)
            .map(|m| m.json()["n"].as_i64().expect("n"))
            .collect();
        assert_eq!(ns, vec![0, 1, 2, 3, 4], "order of aggregate {agg}");
    }
    for m in &msgs {
        let n = m.json()["n"].as_i64().expect("n");
        let (_, _, id) = ids
            .iter()
            .find(|(a, k, _)| *a == m.key && *k == n)
            .expect("a committed event");
        assert_eq!(m.id(), id, "weft-message-id is the row id");
        assert_eq!(m.headers["weft-correlation-id"], "corr-1");
        assert_eq!(m.headers["weft-causation-id"], format!("cmd-{n}"));
        assert_eq!(m.headers["traceparent"], TRACEPARENT);
        assert_eq!(m.headers["tenant"], "acme");
        assert_eq!(m.headers["weft-event-type"], "OrderChanged");
    }
    // cleanup = delete (default): the table is empty once acknowledged.
    let left: i64 = sqlx::query("SELECT COUNT(*) AS n FROM weft_outbox")
        .fetch_one(&pool)
        .await
        .expect("count")
        .try_get("n")
        .expect("n");
    assert_eq!(left, 0);
    let s = wait_status(&server, "pending counted", |s| s["pending_rows"] == 0);
    assert!(s["oldest_unpublished_age_seconds"].is_null(), "{s}");
    // The CLI shows the same source.
    let out = common::weft(dir.path())
        .args(["outbox", "status", "--http", &server.http_addr.to_string()])
        .output()
        .expect("weft outbox status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("app") && text.contains("running"), "{text}");
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn end_to_end_postgres() {
    end_to_end(Kind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn end_to_end_mariadb() {
    end_to_end(Kind::MariaDb).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn end_to_end_sqlite() {
    end_to_end(Kind::Sqlite).await;
}

/// Writers commit while the relay runs; late commits (random delays after a higher `seq`
/// was taken) and rollbacks must neither be skipped nor published.
async fn concurrent(kind: Kind, cleanup: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::new(kind).await;
    support::init_table(dir.path(), &db.url);
    let pool = db.pool().await;
    support::create_aggregates(&pool, 8).await;
    let server = start_server(
        dir.path(),
        &db.url,
        &format!("cleanup = {cleanup:?}\nbatch_size = 50"),
        &[],
    );
    let (writers, per_writer) = match kind {
        Kind::Sqlite => (4, 60),
        _ => (8, 60),
    };
    let committed = support::concurrent_writers(&pool, kind, writers, per_writer, 8, 15).await;
    let n = committed.len();
    assert!(n > 0);
    wait_status(&server, "every committed row published", |s| {
        s["published_total"].as_u64() == Some(n as u64)
    });
    let msgs = consume(&server.kafka_addr().to_string(), "outbox.event.account", n);
    check_delivered(&committed, &msgs, false);
    let pending: i64 =
        sqlx::query("SELECT COUNT(*) AS n FROM weft_outbox WHERE published_at IS NULL")
            .fetch_one(&pool)
            .await
            .expect("count")
            .try_get("n")
            .expect("n");
    assert_eq!(pending, 0);
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writers_postgres() {
    concurrent(Kind::Postgres, "delete").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writers_mariadb() {
    concurrent(Kind::MariaDb, "mark").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writers_sqlite() {
    concurrent(Kind::Sqlite, "delete").await;
}

async fn insert(pool: &sqlx::AnyPool, agg: &str, payload: &[u8], n: i64) -> String {
    let mut tx = pool.begin().await.expect("begin");
    let event = OutboxEvent::new("order", agg, "OrderChanged", payload.to_vec())
        .with_header("n", n.to_string());
    let id = weft_outbox::insert(&mut tx, &event).await.expect("insert");
    tx.commit().await.expect("commit");
    id.to_string()
}

/// `on_bad_row = "stop"` (default): a row that is not JSON (payload = "json") stops its
/// aggregate — later rows of it wait — while other aggregates go on; the status names it;
/// once the row is fixed the aggregate resumes in order.
#[tokio::test(flavor = "multi_thread")]
async fn bad_row_stops_its_aggregate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::new(Kind::Postgres).await;
    support::init_table(dir.path(), &db.url);
    let pool = db.pool().await;
    insert(&pool, "A", br#"{"n":1}"#, 1).await;
    let bad = insert(&pool, "A", b"not json", 2).await;
    insert(&pool, "A", br#"{"n":3}"#, 3).await;
    insert(&pool, "B", br#"{"n":1}"#, 1).await;
    let server = start_server(dir.path(), &db.url, "payload = \"json\"", &[]);
    let s = wait_status(&server, "A stopped, B published", |s| {
        s["published_total"] == 2 && s["blocked"].as_array().is_some_and(|b| b.len() == 1)
    });
    let blocked = &s["blocked"][0];
    assert_eq!(blocked["aggregateid"], "A");
    assert_eq!(blocked["id"], bad.as_str());
    assert!(
        blocked["reason"]
            .as_str()
            .is_some_and(|r| r.contains("not JSON")),
        "{s}"
    );
    assert!(
        s["last_error"].as_str().is_some_and(|e| e.contains(&bad)),
        "{s}"
    );
    let out = common::weft(dir.path())
        .args(["outbox", "status", "--http", &server.http_addr.to_string()])
        .output()
        .expect("weft outbox status");
    assert_eq!(
        out.status.code(),
        Some(3),
        "a stopped aggregate is not healthy"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("stopped aggregate order/A"));
    // Still stopped a while later (several re-checks): the third row of A must not pass.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(support::status(&server)["published_total"], 2);

    sqlx::query("UPDATE weft_outbox SET payload = $1 WHERE id = CAST($2 AS UUID)")
        .bind(br#"{"n":2}"#.to_vec())
        .bind(&bad)
        .execute(&pool)
        .await
        .expect("fix the row");
    wait_status(&server, "A resumed", |s| {
        s["published_total"] == 4 && s["blocked"].as_array().is_some_and(Vec::is_empty)
    });
    let msgs = consume(&server.kafka_addr().to_string(), "outbox.event.order", 4);
    let a: Vec<i64> = msgs
        .iter()
        .filter(|m| m.key == "A")
        .map(|m| m.json()["n"].as_i64().expect("n"))
        .collect();
    assert_eq!(a, vec![1, 2, 3], "A in order after the fix");
    pool.close().await;
}

/// `on_bad_row = "dlq"`: a too-large row and a non-JSON row go to the DLQ topic with the
/// envelope headers (payload cut to fit), and their aggregate's later rows go on.
#[tokio::test(flavor = "multi_thread")]
async fn bad_rows_to_the_dlq() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::new(Kind::Sqlite).await;
    support::init_table(dir.path(), &db.url);
    let pool = db.pool().await;
    insert(&pool, "A", br#"{"n":1}"#, 1).await;
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(5000));
    let too_large = insert(&pool, "A", big.as_bytes(), 2).await;
    let not_json = insert(&pool, "A", b"{oops", 3).await;
    insert(&pool, "A", br#"{"n":4}"#, 4).await;
    let server = start_server(
        dir.path(),
        &db.url,
        "payload = \"json\"\non_bad_row = \"dlq\"\ndlq_topic = \"app.dlq\"\nmax_message_bytes = 2000",
        &[],
    );
    let s = wait_status(&server, "2 published, 2 dead-lettered", |s| {
        s["published_total"] == 2 && s["dead_lettered_total"] == 2
    });
    assert!(s["blocked"].as_array().is_some_and(Vec::is_empty), "{s}");
    let bootstrap = server.kafka_addr().to_string();
    let ok = consume(&bootstrap, "outbox.event.order", 2);
    let ns: Vec<Value> = ok.iter().map(|m| m.json()["n"].clone()).collect();
    assert_eq!(ns, vec![Value::from(1), Value::from(4)]);
    let dlq = consume(&bootstrap, "app.dlq", 2);
    assert_eq!(dlq.len(), 2);
    assert_eq!(dlq[0].id(), too_large);
    let h = &dlq[0].headers;
    assert!(
        h["weft-dlq-error-message"].contains("exceeds max_message_bytes"),
        "{h:?}"
    );
    assert_eq!(h["weft-dlq-error-class"], "non-retryable");
    assert_eq!(h["weft-dlq-truncated"], "true");
    assert_eq!(h["weft-dlq-original-topic"], "outbox.event.order");
    assert_eq!(h["weft-dlq-original-partition"], "-1");
    assert_eq!(h["weft-dlq-source"], "outbox");
    assert_eq!(h["weft-outbox-source"], "app");
    assert_eq!(dlq[0].key, "A");
    assert!(dlq[0].payload.as_ref().is_some_and(|p| p.len() < 2000));
    assert_eq!(dlq[1].id(), not_json);
    assert!(dlq[1].headers["weft-dlq-error-message"].contains("not JSON"));
    assert_eq!(dlq[1].payload.as_deref(), Some(&b"{oops"[..]));
    assert_eq!(
        dlq[1].headers["n"], "3",
        "the row's own headers travel along"
    );
    pool.close().await;
}

/// Unknown source → 404 with a JSON problem; a bad `[outbox]` table stops weft serve at
/// start with a message naming it.
#[tokio::test(flavor = "multi_thread")]
async fn status_and_config_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::new(Kind::Sqlite).await;
    let server = start_server(dir.path(), &db.url, "", &[]);
    let (code, body) = support::get(server.http_addr, "/v1/outbox/nope");
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("no outbox source named"), "{body}");
    let (code, body) = support::get(server.http_addr, "/v1/outbox");
    assert_eq!(code, 200);
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["sources"][0]["name"], "app");
    drop(server);

    std::fs::write(
        dir.path().join("weft.toml"),
        "[[outbox.sources]]\ndatabase = \"sqlite:x.db\"\nmode = \"logical\"\n",
    )
    .expect("write");
    let out = common::weft(dir.path())
        .args(["serve", "--config", "weft.toml", "--data-dir", "d2"])
        .args([
            "--kafka-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .args(["--registry-listen", "127.0.0.1:0"])
        .output()
        .expect("weft serve");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[outbox]") && err.contains("needs a PostgreSQL"),
        "{err}"
    );

    // init refuses an unsupported URL without touching anything.
    let out = common::weft(dir.path())
        .args(["outbox", "init", "--database", "redis://u:secret@h/0"])
        .output()
        .expect("weft outbox init");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unsupported database URL") && !err.contains("secret"),
        "{err}"
    );
}
