//! `weft_outbox::insert` through each typed sqlx driver a service would use (PgPool,
//! MySqlPool, SqlitePool), inside the caller's transaction: the row commits with the
//! transaction, vanishes with a rollback, and a refused event writes nothing.
//!
//! PostgreSQL: `$WEFT_TEST_POSTGRES_URL` or postgres://127.0.0.1:5432/test; MariaDB:
//! `$WEFT_TEST_MYSQL_URL` or mysql://root@127.0.0.1:3306/mysql. Unreachable → the test fails
//! naming the service.

use sqlx::Row;
use weft_outbox::{Context, OutboxEvent, Table};

fn env_or(var: &str, default: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

fn unique_table() -> Table {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    Table::new(&format!("outbox_t{}_{nanos}", std::process::id())).expect("valid name")
}

fn event() -> OutboxEvent {
    OutboxEvent::json(
        "order",
        "o-1",
        "OrderPaid",
        &serde_json::json!({"amount": 5}),
    )
    .expect("event")
    .with_context(Context {
        causation_id: Some("cmd-1".into()),
        ..Context::default()
    })
}

/// Creates the table through `weft_outbox::table`; returns an `Any` pool for checking.
async fn prepare(url: &str, service: &str, table: &Table) -> sqlx::AnyPool {
    let (pool, dialect) = weft_outbox::table::connect(url, 1)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{service} for tests is unreachable at {}: {e}",
                weft_outbox::redact(url)
            )
        });
    weft_outbox::table::apply(&pool, dialect, table)
        .await
        .expect("create table");
    pool
}

async fn count(pool: &sqlx::AnyPool, table: &Table) -> i64 {
    sqlx::query(&format!("SELECT COUNT(*) AS n FROM {}", table.name()))
        .fetch_one(pool)
        .await
        .expect("count")
        .try_get("n")
        .expect("n")
}

async fn drop_table(pool: &sqlx::AnyPool, table: &Table) {
    sqlx::query(&format!("DROP TABLE {}", table.name()))
        .execute(pool)
        .await
        .expect("drop");
}

#[tokio::test]
async fn typed_postgres() {
    let url = env_or("WEFT_TEST_POSTGRES_URL", "postgres://127.0.0.1:5432/test");
    let table = unique_table();
    let any = prepare(&url, "PostgreSQL", &table).await;
    let pool = sqlx::PgPool::connect(&url).await.expect("PgPool");
    let mut tx = pool.begin().await.expect("begin");
    let id = weft_outbox::insert_into(&mut tx, &table, &event())
        .await
        .expect("insert");
    tx.commit().await.expect("commit");
    let row = sqlx::query(&format!(
        "SELECT CAST(id AS TEXT) AS id, headers FROM {}",
        table.name()
    ))
    .fetch_one(&any)
    .await
    .expect("row");
    assert_eq!(row.try_get::<String, _>("id").expect("id"), id.to_string());
    let headers: String = row.try_get("headers").expect("headers");
    assert!(
        headers.contains("\"weft-causation-id\":\"cmd-1\""),
        "{headers}"
    );
    // Rolled back: nothing.
    let mut tx = pool.begin().await.expect("begin");
    weft_outbox::insert_into(&mut *tx, &table, &event())
        .await
        .expect("insert");
    tx.rollback().await.expect("rollback");
    assert_eq!(count(&any, &table).await, 1);
    pool.close().await;
    drop_table(&any, &table).await;
}

#[tokio::test]
async fn typed_mysql() {
    let url = env_or("WEFT_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/mysql");
    let (any, _) = weft_outbox::table::connect(&url, 1)
        .await
        .unwrap_or_else(|e| panic!("MariaDB for tests is unreachable: {e}"));
    let db = format!("outbox_insert_{}", std::process::id());
    sqlx::query(&format!("CREATE DATABASE IF NOT EXISTS {db}"))
        .execute(&any)
        .await
        .expect("create database");
    let table = Table::new(&format!("{db}.weft_outbox")).expect("name");
    weft_outbox::table::apply(&any, weft_outbox::Dialect::MySql, &table)
        .await
        .expect("create table");
    let pool = sqlx::MySqlPool::connect(&url).await.expect("MySqlPool");
    let mut tx = pool.begin().await.expect("begin");
    weft_outbox::insert_into(&mut tx, &table, &event())
        .await
        .expect("insert");
    tx.commit().await.expect("commit");
    let mut tx = pool.begin().await.expect("begin");
    weft_outbox::insert_into(&mut tx, &table, &event())
        .await
        .expect("insert");
    tx.rollback().await.expect("rollback");
    assert_eq!(count(&any, &table).await, 1);
    pool.close().await;
    sqlx::query(&format!("DROP DATABASE {db}"))
        .execute(&any)
        .await
        .expect("drop");
}

#[tokio::test]
async fn typed_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("app.db").display());
    let table = Table::default();
    let any = prepare(&url, "SQLite", &table).await;
    let pool = sqlx::SqlitePool::connect(&url).await.expect("SqlitePool");
    let mut tx = pool.begin().await.expect("begin");
    weft_outbox::insert(&mut tx, &event())
        .await
        .expect("insert");
    // A refused event inserts nothing (the transaction stays usable).
    let bad = OutboxEvent::new("", "x", "T", Vec::new());
    assert!(weft_outbox::insert(&mut tx, &bad).await.is_err());
    tx.commit().await.expect("commit");
    assert_eq!(count(&any, &table).await, 1);
    pool.close().await;
}
