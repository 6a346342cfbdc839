//! The outbox relay under failure, and PostgreSQL logical decoding: kill -9 of `weft serve`
//! while it relays (no loss; a duplicate only of a row whose acknowledgement was not yet
//! committed), the Kafka broker killed and restarted while the relay runs (backoff, then
//! resume), and `mode = "logical"` with concurrent writers and the slot heartbeat.

mod common;
#[path = "outbox_support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use support::{Db, Kind, check_delivered, consume, start_server, wait_status};
use weft_store::sqlx::{self, AnyPool, Row};

async fn published_ids(pool: &AnyPool) -> BTreeSet<String> {
    sqlx::query("SELECT CAST(id AS TEXT) AS id FROM weft_outbox WHERE published_at IS NOT NULL")
        .fetch_all(pool)
        .await
        .expect("published ids")
        .iter()
        .map(|r| r.try_get("id").expect("id"))
        .collect()
}

async fn pending(pool: &AnyPool) -> i64 {
    sqlx::query("SELECT COUNT(*) AS n FROM weft_outbox WHERE published_at IS NULL")
        .fetch_one(pool)
        .await
        .expect("count")
        .try_get("n")
        .expect("n")
}

/// Three SIGKILLs of weft serve while it relays 3,000 rows (cleanup = mark, so what was
/// acknowledged is visible). Afterwards every row is in the topic, and no row whose mark was
/// committed before kill k appears after the offset where the topic ended at kill k: only
/// rows whose acknowledgement was not committed are delivered again; a consumer using the
/// SDK's transactional dedup applies each event once.
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_loses_nothing_and_duplicates_only_unacknowledged_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::new(Kind::Postgres).await;
    support::init_table(dir.path(), &db.url);
    let pool = db.pool().await;
    let committed = support::insert_many(&pool, 3000, 0).await;
    let extra = "cleanup = \"mark\"\nbatch_size = 50";
    let topic = "outbox.event.account";
    // (end offset of the topic after kill k, rows marked at kill k)
    let mut kills: Vec<(i64, BTreeSet<String>)> = Vec::new();
    for round in 1..=3 {
        let mut server = start_server(dir.path(), &db.url, extra, &[]);
        let before = published_ids(&pool).await.len();
        // Kill once this run published a few batches, at whatever point of a batch it is.
        let deadline = Instant::now() + common::SAFETY;
        while published_ids(&pool).await.len() < before + 300 * round {
            assert!(Instant::now() < deadline, "relay made no progress");
            if pending(&pool).await == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        server.kill().expect("SIGKILL");
        let _ = server.wait();
        let marked = published_ids(&pool).await;
        // Where the topic ends now: a broker-only server on the same data dir tells.
        std::fs::rename(dir.path().join("weft.toml"), dir.path().join("outbox.toml"))
            .expect("park weft.toml");
        let mut plain = common::Server::start(dir.path());
        let end = support::end_offset(&plain.kafka_addr().to_string(), topic);
        plain.kill().expect("kill");
        let _ = plain.wait();
        kills.push((end, marked));
    }
    // A last run finishes the job.
    let server = start_server(dir.path(), &db.url, extra, &[]);
    let deadline = Instant::now() + common::SAFETY;
    while pending(&pool).await > 0 {
        assert!(Instant::now() < deadline, "rows left unpublished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let msgs = consume(&server.kafka_addr().to_string(), topic, 3000);
    check_delivered(&committed, &msgs, true);
    for (k, (end, marked)) in kills.iter().enumerate() {
        assert!(
            !marked.is_empty() || k == 0,
            "kill {k} came before any mark"
        );
        for m in msgs.iter().filter(|m| m.offset >= *end) {
            assert!(
                !marked.contains(m.id()),
                "row {} was acknowledged before kill {k} but published again at offset {}",
                m.id(),
                m.offset
            );
        }
    }
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for m in &msgs {
        *count.entry(m.id()).or_default() += 1;
    }
    let duplicated = count.values().filter(|n| **n > 1).count();
    // A consumer in the SDK's transactional idempotent mode applies each event once: its
    // effect (a row in `applied`) and the dedup mark commit together.
    let store = weft_store::Store::open(&db.url).await.expect("store");
    let dedup =
        weft_client::dedup::Dedup::new(store.clone(), "outbox-kill", Duration::from_secs(3600))
            .await
            .expect("dedup table");
    sqlx::query("CREATE TABLE applied (id TEXT NOT NULL)")
        .execute(store.pool())
        .await
        .expect("applied table");
    for m in &msgs {
        let mut tx = store.begin().await.expect("begin");
        if dedup.mark(&mut tx, m.id()).await.expect("mark") {
            sqlx::query("INSERT INTO applied (id) VALUES ($1)")
                .bind(m.id())
                .execute(&mut *tx)
                .await
                .expect("apply");
        }
        tx.commit().await.expect("commit");
    }
    let row = sqlx::query("SELECT COUNT(*) AS n, COUNT(DISTINCT id) AS d FROM applied")
        .fetch_one(store.pool())
        .await
        .expect("count");
    let (n, d): (i64, i64) = (row.try_get("n").expect("n"), row.try_get("d").expect("d"));
    assert_eq!((n, d), (3000, 3000), "each event applied exactly once");
    store.close().await;
    eprintln!(
        "kill -9: {} records for 3000 rows, {duplicated} rows delivered twice (unacknowledged at a kill)",
        msgs.len()
    );
    pool.close().await;
}

/// The relay's weft serve uses an external broker (another weft serve) that is killed while
/// rows keep coming: the source backs off and says why; once the broker is back on the same
/// address every row arrives, in order per aggregate.
#[tokio::test(flavor = "multi_thread")]
async fn broker_restart_during_relay() {
    let broker_dir = tempfile::tempdir().expect("tempdir");
    let mut broker = common::Server::start(broker_dir.path());
    let kafka = broker.kafka_addr().to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::new(Kind::Sqlite).await;
    support::init_table(dir.path(), &db.url);
    let pool = db.pool().await;
    let relay = start_server(
        dir.path(),
        &db.url,
        "delivery_timeout_ms = 1500",
        &["--kafka-bootstrap", &kafka],
    );
    let mut committed = support::insert_many(&pool, 200, 0).await;
    wait_status(&relay, "first 200 published", |s| {
        s["published_total"] == 200
    });

    broker.kill().expect("SIGKILL broker");
    let _ = broker.wait();
    committed.extend(support::insert_many(&pool, 200, 200).await);
    let s = wait_status(&relay, "the relay backing off", |s| {
        s["state"] == "backing_off" && s["last_error"].is_string()
    });
    assert!(s["published_total"].as_u64() < Some(400), "{s}");

    let broker = common::Server::start_with(broker_dir.path(), &["--kafka-listen", &kafka]);
    wait_status(&relay, "all 400 published", |s| {
        s["published_total"] == 400 && s["state"] == "running"
    });
    let msgs = consume(
        &broker.kafka_addr().to_string(),
        "outbox.event.account",
        400,
    );
    check_delivered(&committed, &msgs, true);
    pool.close().await;
}

/// `mode = "logical"`: rows committed before the slot existed are drained, rows committed
/// later come through the pgoutput slot in commit order, each exactly once; the status
/// shows the slot lag; WAL written by other tables does not stay retained by the slot
/// (heartbeat advance).
#[tokio::test(flavor = "multi_thread")]
async fn logical_decoding_mode() {
    let pg = support::LogicalPostgres::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    support::init_table(dir.path(), &pg.url);
    let (pool, _) = weft_outbox::table::connect(&pg.url, 8)
        .await
        .expect("connect to the logical PostgreSQL");
    support::create_aggregates(&pool, 8).await;
    // Before the slot exists.
    let mut committed = support::concurrent_writers(&pool, Kind::Postgres, 2, 20, 8, 2).await;
    let server = start_server(
        dir.path(),
        &pg.url,
        "mode = \"logical\"\nslot = \"weft_test_slot\"\nbatch_size = 50",
        &[],
    );
    committed.extend(support::concurrent_writers(&pool, Kind::Postgres, 8, 50, 8, 15).await);
    let n = committed.len() as u64;
    let s = wait_status(&server, "every committed row published", |s| {
        s["published_total"].as_u64() == Some(n) && s["slot_lag_bytes"].is_i64()
    });
    assert_eq!(s["mode"], "logical");
    let msgs = consume(
        &server.kafka_addr().to_string(),
        "outbox.event.account",
        committed.len(),
    );
    check_delivered(&committed, &msgs, false);

    // Heartbeat: WAL from another table, nothing for the outbox; the slot still moves past it.
    sqlx::query("CREATE TABLE noise (x TEXT)")
        .execute(&pool)
        .await
        .expect("noise table");
    sqlx::query("INSERT INTO noise SELECT repeat('x', 1000) FROM generate_series(1, 5000)")
        .execute(&pool)
        .await
        .expect("noise");
    let after_noise: String = sqlx::query("SELECT CAST(pg_current_wal_lsn() AS TEXT) AS l")
        .fetch_one(&pool)
        .await
        .expect("lsn")
        .try_get("l")
        .expect("l");
    let deadline = Instant::now() + common::SAFETY;
    loop {
        let passed: bool = sqlx::query(
            "SELECT confirmed_flush_lsn >= CAST($1 AS pg_lsn) AS ok FROM pg_replication_slots \
             WHERE slot_name = 'weft_test_slot'",
        )
        .bind(&after_noise)
        .fetch_one(&pool)
        .await
        .expect("slot")
        .try_get("ok")
        .expect("ok");
        if passed {
            break;
        }
        assert!(Instant::now() < deadline, "slot stuck behind {after_noise}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(server);
    // The killed relay's backend may still be finishing a peek: wait until the slot is free.
    let deadline = Instant::now() + common::SAFETY;
    while let Err(e) = sqlx::query("SELECT pg_drop_replication_slot('weft_test_slot')")
        .execute(&pool)
        .await
    {
        assert!(Instant::now() < deadline, "cannot drop the slot: {e}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pool.close().await;
}

/// Two weft serve relays configured with the same source (PostgreSQL: advisory lock;
/// MariaDB: GET_LOCK) and one broker: one
/// takes the table's relay lock and publishes, the other stands by (publishing nothing);
/// kill -9 of the publisher and the standby takes over: every row arrives.
#[tokio::test(flavor = "multi_thread")]
async fn second_relay_stands_by_and_takes_over_postgres() {
    standby_and_takeover(Kind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn second_relay_stands_by_and_takes_over_mariadb() {
    standby_and_takeover(Kind::MariaDb).await;
}

async fn standby_and_takeover(kind: Kind) {
    let broker_dir = tempfile::tempdir().expect("tempdir");
    let broker = common::Server::start(broker_dir.path());
    let kafka = broker.kafka_addr().to_string();
    let db = Db::new(kind).await;
    let (dir1, dir2) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    support::init_table(dir1.path(), &db.url);
    let pool = db.pool().await;
    let mut first = start_server(dir1.path(), &db.url, "", &["--kafka-bootstrap", &kafka]);
    wait_status(&first, "first relay running", |s| s["state"] == "running");
    let second = start_server(dir2.path(), &db.url, "", &["--kafka-bootstrap", &kafka]);
    wait_status(&second, "second relay standing by", |s| {
        s["state"] == "standby"
    });
    let mut committed = support::insert_many(&pool, 200, 0).await;
    wait_status(&first, "200 published by the first", |s| {
        s["published_total"] == 200
    });
    assert_eq!(support::status(&second)["published_total"], 0);

    first.kill().expect("SIGKILL");
    let _ = first.wait();
    committed.extend(support::insert_many(&pool, 200, 200).await);
    wait_status(&second, "the second took over", |s| {
        s["published_total"] == 200 && s["state"] == "running"
    });
    let msgs = consume(&kafka, "outbox.event.account", 400);
    check_delivered(&committed, &msgs, true);
    pool.close().await;
}
