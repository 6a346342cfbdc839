//! The store on both backends: migrations, transactions, start-up errors.

use weft_store::sqlx::{self, Row};
use weft_store::testing::TestDb;
use weft_store::{Backend, Error, Migration, Store};

const V1: Migration = Migration::both(
    1,
    "items",
    "CREATE TABLE t_items (id BIGINT PRIMARY KEY, name TEXT NOT NULL UNIQUE)",
);
const V2: Migration = Migration::both(2, "items note", "ALTER TABLE t_items ADD COLUMN note TEXT");

async fn tables_both(test: impl AsyncFn(Backend)) {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        test(backend).await;
    }
}

async fn count(store: &Store, sql: &str) -> i64 {
    sqlx::query(sql)
        .fetch_one(store.pool())
        .await
        .expect("query")
        .try_get::<i64, _>(0)
        .expect("count")
}

#[tokio::test]
async fn migrations_apply_once_in_order() {
    tables_both(async |backend| {
        let db = TestDb::new(backend).await;
        let store = db.open().await;
        store.migrate("items", &[V1]).await.expect("v1");
        // Again: nothing to do, and the table is still there.
        store.migrate("items", &[V1]).await.expect("v1 again");
        store.migrate("items", &[V1, V2]).await.expect("v2");
        sqlx::query("INSERT INTO t_items (id, name, note) VALUES ($1, $2, $3)")
            .bind(1_i64)
            .bind("a")
            .bind("n")
            .execute(store.pool())
            .await
            .expect("insert uses v2's column");
        let applied = count(
            &store,
            "SELECT COUNT(*) FROM weft_migrations WHERE component = 'items'",
        )
        .await;
        assert_eq!(applied, 2, "{backend:?}");
        // Another component's list is independent.
        store
            .migrate(
                "other",
                &[Migration::both(1, "o", "CREATE TABLE t_other (x BIGINT)")],
            )
            .await
            .expect("other component");
        // A store opened later sees the same state.
        drop(store);
        let again = db.open().await;
        again.migrate("items", &[V1, V2]).await.expect("reopen");
        assert_eq!(count(&again, "SELECT COUNT(*) FROM t_items").await, 1);
        again.close().await;
    })
    .await;
}

#[tokio::test]
async fn changed_migration_is_refused() {
    tables_both(async |backend| {
        let db = TestDb::new(backend).await;
        let store = db.open().await;
        store.migrate("items", &[V1]).await.expect("v1");
        let edited = Migration::both(
            1,
            "items",
            "CREATE TABLE t_items (id BIGINT PRIMARY KEY, name TEXT)",
        );
        let err = store
            .migrate("items", &[edited])
            .await
            .expect_err("edited v1");
        assert!(
            matches!(err, Error::ChecksumMismatch { version: 1, .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains("was changed after it was applied"),
            "{err}"
        );
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn newer_database_is_refused() {
    tables_both(async |backend| {
        let db = TestDb::new(backend).await;
        let store = db.open().await;
        store.migrate("items", &[V1, V2]).await.expect("v2");
        let err = store
            .migrate("items", &[V1])
            .await
            .expect_err("older binary");
        assert!(
            matches!(
                err,
                Error::DatabaseTooNew {
                    version: 2,
                    known: 1,
                    ..
                }
            ),
            "{err}"
        );
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn failed_migration_applies_nothing() {
    tables_both(async |backend| {
        let db = TestDb::new(backend).await;
        let store = db.open().await;
        let broken = Migration::both(2, "broken", "CREATE TABLE t_x (a BIGINT); THIS IS NOT SQL");
        let err = store
            .migrate("items", &[V1, broken])
            .await
            .expect_err("broken v2");
        assert!(matches!(err, Error::Migration { version: 2, .. }), "{err}");
        // v1 and v2's first statement were in the same transaction: rolled back too.
        for table in ["t_items", "t_x"] {
            let gone = sqlx::query(&format!("SELECT COUNT(*) FROM {table}"))
                .fetch_one(store.pool())
                .await;
            assert!(gone.is_err(), "{backend:?}: {table} exists");
        }
        store
            .migrate("items", &[V1])
            .await
            .expect("v1 alone still applies");
        let applied = count(&store, "SELECT COUNT(*) FROM weft_migrations").await;
        assert_eq!(applied, 1, "{backend:?}");
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn transactions_commit_or_roll_back() {
    tables_both(async |backend| {
        let db = TestDb::new(backend).await;
        let store = db.open().await;
        store.migrate("items", &[V1]).await.expect("v1");
        let insert = "INSERT INTO t_items (id, name) VALUES ($1, $2)";
        let mut tx = store.begin().await.expect("begin");
        sqlx::query(insert)
            .bind(1_i64)
            .bind("a")
            .execute(&mut *tx)
            .await
            .expect("insert");
        drop(tx); // no commit: rolled back
        assert_eq!(count(&store, "SELECT COUNT(*) FROM t_items").await, 0);

        let mut tx = store.begin().await.expect("begin");
        sqlx::query(insert)
            .bind(1_i64)
            .bind("a")
            .execute(&mut *tx)
            .await
            .expect("insert");
        tx.commit().await.expect("commit");
        assert_eq!(count(&store, "SELECT COUNT(*) FROM t_items").await, 1);

        // A unique violation is recognised as retryable.
        let err = sqlx::query(insert)
            .bind(2_i64)
            .bind("a")
            .execute(store.pool())
            .await
            .expect_err("duplicate name");
        assert!(weft_store::is_unique_violation(&err), "{err}");
        assert!(weft_store::is_retryable(&err), "{err}");
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn two_stores_migrate_one_postgres_concurrently() {
    let db = TestDb::new(Backend::Postgres).await;
    let (a, b) = (db.open().await, db.open().await);
    let (ra, rb) = tokio::join!(a.migrate("items", &[V1, V2]), b.migrate("items", &[V1, V2]));
    ra.expect("first");
    rb.expect("second");
    assert_eq!(count(&a, "SELECT COUNT(*) FROM weft_migrations").await, 2);
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn sqlite_is_in_wal_mode() {
    let db = TestDb::new(Backend::Sqlite).await;
    let store = db.open().await;
    let mode: String = sqlx::query("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .expect("pragma")
        .try_get(0)
        .expect("text");
    assert_eq!(mode, "wal");
    let busy: i64 = sqlx::query("PRAGMA busy_timeout")
        .fetch_one(store.pool())
        .await
        .expect("pragma")
        .try_get(0)
        .expect("int");
    assert!(busy > 0, "busy timeout {busy}");
    store.close().await;
}

#[tokio::test]
async fn unreachable_database_names_the_url_without_password() {
    let err = Store::open("postgres://nobody:secret@127.0.0.1:1/x")
        .await
        .expect_err("nothing listens on port 1");
    let text = err.to_string();
    assert!(
        text.contains("postgres://nobody:***@127.0.0.1:1/x"),
        "{text}"
    );
    assert!(!text.contains("secret"), "{text}");

    let err = Store::open("mysql://u:pw@h/db")
        .await
        .expect_err("unsupported");
    assert!(matches!(err, Error::UnsupportedUrl { .. }), "{err}");
    assert!(!err.to_string().contains("pw"), "{err}");

    // A SQLite file in a directory that does not exist.
    let err = Store::open("sqlite:///nonexistent-dir-weft/x/state.db")
        .await
        .expect_err("no such directory");
    assert!(
        err.to_string().contains("/nonexistent-dir-weft/x/state.db"),
        "{err}"
    );
}
