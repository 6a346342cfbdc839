//! Shared by the outbox test binaries (`#[path = "outbox_support/mod.rs"]`): fresh databases on PostgreSQL,
//! MariaDB and SQLite, a weft serve with `[[outbox.sources]]`, status polling over HTTP, a
//! consumer that reads a whole topic, and writers that commit events with random delays.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use weft_outbox::{Context, OutboxEvent};
use weft_store::sqlx::{self, AnyPool, Row};

pub(crate) use crate::common::http_get as get;
use crate::common::{SAFETY, Server};

/// Where tests find MariaDB/MySQL: root over TCP (no password) on the test machine.
pub(crate) const MYSQL_URL_VAR: &str = "WEFT_TEST_MYSQL_URL";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Postgres,
    MariaDb,
    Sqlite,
}

/// A fresh database, dropped (or removed) with the value.
pub(crate) struct Db {
    pub(crate) url: String,
    pub(crate) kind: Kind,
    _pg: Option<weft_store::testing::TestDb>,
    mysql: Option<(String, String)>,
}

fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

impl Db {
    pub(crate) async fn new(kind: Kind) -> Db {
        match kind {
            Kind::Postgres | Kind::Sqlite => {
                let backend = if kind == Kind::Postgres {
                    weft_store::Backend::Postgres
                } else {
                    weft_store::Backend::Sqlite
                };
                let db = weft_store::testing::TestDb::new(backend).await;
                Db {
                    url: db.url.clone(),
                    kind,
                    _pg: Some(db),
                    mysql: None,
                }
            }
            Kind::MariaDb => {
                let base = std::env::var(MYSQL_URL_VAR)
                    .ok()
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| "mysql://root@127.0.0.1:3306/mysql".to_owned());
                let (admin, _) = weft_outbox::table::connect(&base, 1)
                    .await
                    .unwrap_or_else(|e| {
                        panic!(
                            "MariaDB for tests is unreachable at {} ({e}); start it or set \
                             {MYSQL_URL_VAR} (cargo xtask test starts one)",
                            weft_outbox::redact(&base)
                        )
                    });
                let name = unique("weft_outbox_test");
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&admin)
                    .await
                    .expect("create MariaDB database");
                admin.close().await;
                let url = match base.rfind('/') {
                    Some(i) if i > "mysql://".len() => format!("{}/{name}", &base[..i]),
                    _ => format!("{base}/{name}"),
                };
                Db {
                    url,
                    kind,
                    _pg: None,
                    mysql: Some((base, name)),
                }
            }
        }
    }

    pub(crate) async fn pool(&self) -> AnyPool {
        weft_outbox::table::connect(&self.url, 8)
            .await
            .expect("connect to the test database")
            .0
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let Some((base, name)) = self.mysql.take() else {
            return;
        };
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok((admin, _)) = weft_outbox::table::connect(&base, 1).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
                        .execute(&admin)
                        .await;
                    admin.close().await;
                }
            });
        })
        .join();
    }
}

/// `weft outbox init --database URL` through the real CLI.
pub(crate) fn init_table(dir: &Path, url: &str) {
    let out = crate::common::weft(dir)
        .args(["outbox", "init", "--database", url])
        .output()
        .expect("run weft outbox init");
    assert!(
        out.status.success(),
        "weft outbox init failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("outbox table weft_outbox ready"),
        "{stdout}"
    );
}

/// Writes `weft.toml` with one outbox source (`extra` lines appended to it) and starts
/// weft serve with it; `args` go to weft serve too.
pub(crate) fn start_server(dir: &Path, url: &str, extra: &str, args: &[&str]) -> Server {
    let toml = format!(
        "[[outbox.sources]]\nname = \"app\"\ndatabase = {url:?}\npoll_interval_ms = 20\n\
         blocked_recheck_secs = 1\n{extra}\n"
    );
    std::fs::write(dir.join("weft.toml"), toml).expect("write weft.toml");
    let mut all = vec!["--config", "weft.toml"];
    if !args.contains(&"--kafka-bootstrap") && !args.contains(&"--kafka-listen") {
        all.extend(["--kafka-listen", "127.0.0.1:0"]);
    }
    all.extend_from_slice(args);
    Server::start_with(dir, &all)
}

/// The status of source `app`.
pub(crate) fn status(server: &Server) -> Value {
    let (code, body) = get(server.http_addr, "/v1/outbox/app");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("status is JSON")
}

/// Polls the status until `pred` holds; panics with the last status after the safety limit.
pub(crate) fn wait_status(server: &Server, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + SAFETY;
    loop {
        let s = status(server);
        if pred(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {s}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One consumed record.
#[derive(Debug, Clone)]
pub(crate) struct Msg {
    pub(crate) offset: i64,
    pub(crate) key: String,
    pub(crate) payload: Option<Vec<u8>>,
    pub(crate) headers: BTreeMap<String, String>,
}

impl Msg {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(self.payload.as_deref().unwrap_or(b"null")).expect("JSON payload")
    }
    pub(crate) fn id(&self) -> &str {
        &self.headers["weft-message-id"]
    }
}

/// Every record of partition 0 of `topic`, reading until at least `at_least` were seen and
/// the end of the partition is reached.
pub(crate) fn consume(bootstrap: &str, topic: &str, at_least: usize) -> Vec<Msg> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("outbox-test"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("partition");
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + SAFETY;
    loop {
        assert!(
            Instant::now() < deadline,
            "timed out reading {topic}: {} of at least {at_least} records",
            out.len()
        );
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Ok(m)) => {
                let mut headers = BTreeMap::new();
                if let Some(hs) = m.headers() {
                    for h in hs.iter() {
                        headers.insert(
                            h.key.to_owned(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        );
                    }
                }
                out.push(Msg {
                    offset: m.offset(),
                    key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                    payload: m.payload().map(<[u8]>::to_vec),
                    headers,
                });
            }
            Some(Err(KafkaError::PartitionEOF(_))) if out.len() >= at_least => return out,
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            // Unknown topic while the relay has not created it yet, and the like.
            Some(Err(_)) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// A small deterministic random source (xorshift), seeded per test.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// The business table the writers lock per aggregate.
pub(crate) async fn create_aggregates(pool: &AnyPool, aggregates: usize) {
    sqlx::query("CREATE TABLE aggregates (id VARCHAR(64) PRIMARY KEY, n BIGINT NOT NULL)")
        .execute(pool)
        .await
        .expect("create aggregates");
    for a in 0..aggregates {
        sqlx::query(&format!(
            "INSERT INTO aggregates (id, n) VALUES ('a{a}', 0)"
        ))
        .execute(pool)
        .await
        .expect("insert aggregate");
    }
}

/// A committed event: aggregate, its counter, message id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Committed {
    pub(crate) aggregate: String,
    pub(crate) n: i64,
    pub(crate) id: String,
}

/// `writers` tasks, each running `per_writer` transactions: lock an aggregate (UPDATE),
/// insert its event, wait 0–`max_delay_ms` before committing, roll back one in ten. Returns
/// what was committed.
pub(crate) async fn concurrent_writers(
    pool: &AnyPool,
    kind: Kind,
    writers: usize,
    per_writer: usize,
    aggregates: usize,
    max_delay_ms: u64,
) -> Vec<Committed> {
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..writers {
        let pool = pool.clone();
        tasks.spawn(async move {
            let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15 ^ ((w as u64 + 1) * 7919));
            let mut done = Vec::new();
            let mut i = 0;
            while i < per_writer {
                let agg = format!("a{}", rng.below(aggregates as u64));
                let delay = rng.below(max_delay_ms + 1);
                let rollback = rng.below(10) == 0;
                match one_transaction(&pool, kind, &agg, delay, rollback).await {
                    Ok(Some(c)) => done.push(c),
                    Ok(None) => {}
                    // Deadlock/busy: the whole transaction is retried.
                    Err(e) if weft_store::is_retryable(&e) || is_deadlock(&e) => continue,
                    Err(e) => panic!("writer {w}: {e}"),
                }
                i += 1;
            }
            done
        });
    }
    let mut all = Vec::new();
    while let Some(r) = tasks.join_next().await {
        all.extend(r.expect("writer task"));
    }
    all
}

fn is_deadlock(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40001" | "1213" | "1205")))
}

async fn one_transaction(
    pool: &AnyPool,
    kind: Kind,
    agg: &str,
    delay_ms: u64,
    rollback: bool,
) -> Result<Option<Committed>, sqlx::Error> {
    let p = |n: usize| {
        if kind == Kind::MariaDb {
            "?".to_owned()
        } else {
            format!("${n}")
        }
    };
    let mut tx = pool.begin().await?;
    sqlx::query(&format!(
        "UPDATE aggregates SET n = n + 1 WHERE id = {}",
        p(1)
    ))
    .bind(agg)
    .execute(&mut *tx)
    .await?;
    let n: i64 = sqlx::query(&format!("SELECT n FROM aggregates WHERE id = {}", p(1)))
        .bind(agg)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
    let event = OutboxEvent::json(
        "account",
        agg,
        "Incremented",
        &serde_json::json!({ "agg": agg, "n": n }),
    )
    .expect("event")
    .with_context(Context {
        causation_id: Some(format!("cmd-{agg}-{n}")),
        ..Context::default()
    });
    let id = match weft_outbox::insert(&mut tx, &event).await {
        Ok(id) => id,
        Err(weft_outbox::InsertError::Sql(e)) => return Err(e),
        Err(e) => panic!("{e}"),
    };
    if delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    }
    if rollback {
        tx.rollback().await?;
        return Ok(None);
    }
    tx.commit().await?;
    Ok(Some(Committed {
        aggregate: agg.to_owned(),
        n,
        id: id.to_string(),
    }))
}

/// Checks the topic against what was committed: every committed event exactly once (or at
/// least once with `allow_duplicates`), nothing else, and per aggregate the counters in
/// increasing order (the first delivery of each id).
pub(crate) fn check_delivered(committed: &[Committed], msgs: &[Msg], allow_duplicates: bool) {
    let want: BTreeMap<&str, &Committed> = committed.iter().map(|c| (c.id.as_str(), c)).collect();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut last_n: BTreeMap<String, i64> = BTreeMap::new();
    for m in msgs {
        let id = m.id().to_owned();
        let c = want
            .get(id.as_str())
            .unwrap_or_else(|| panic!("record {id} was never committed (rolled back?): {m:?}"));
        let count = seen.entry(id.clone()).or_default();
        *count += 1;
        if *count > 1 {
            assert!(allow_duplicates, "record {id} delivered twice");
            continue;
        }
        assert_eq!(m.key, c.aggregate, "key is the aggregate id");
        let v = m.json();
        assert_eq!(v["n"].as_i64(), Some(c.n));
        let prev = last_n.insert(c.aggregate.clone(), c.n);
        assert!(
            prev.is_none_or(|p| p < c.n),
            "aggregate {} out of order: {prev:?} then {}",
            c.aggregate,
            c.n
        );
    }
    let missing: Vec<_> = want.keys().filter(|id| !seen.contains_key(**id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} committed events never published, e.g. {:?}",
        missing.len(),
        want.len(),
        missing.first()
    );
}

/// A PostgreSQL with `wal_level = logical`: `$WEFT_TEST_LOGICAL_POSTGRES_URL`, else the test
/// PostgreSQL when it already is logical, else a throwaway cluster (initdb/pg_ctl from
/// Debian's /usr/lib/postgresql/*/bin) on a spare port, stopped and removed on drop.
pub(crate) struct LogicalPostgres {
    pub(crate) url: String,
    cluster: Option<(std::path::PathBuf, tempfile::TempDir)>,
    _db: Option<Db>,
}

impl LogicalPostgres {
    pub(crate) async fn start() -> LogicalPostgres {
        if let Some(url) = std::env::var("WEFT_TEST_LOGICAL_POSTGRES_URL")
            .ok()
            .filter(|v| !v.is_empty())
        {
            return LogicalPostgres {
                url,
                cluster: None,
                _db: None,
            };
        }
        let db = Db::new(Kind::Postgres).await;
        let pool = db.pool().await;
        let level: String = sqlx::query("SELECT current_setting('wal_level') AS l")
            .fetch_one(&pool)
            .await
            .expect("wal_level")
            .try_get("l")
            .expect("l");
        pool.close().await;
        drop(db);
        if level == "logical" {
            let db = Db::new(Kind::Postgres).await;
            return LogicalPostgres {
                url: db.url.clone(),
                cluster: None,
                _db: Some(db),
            };
        }
        let bin = postgres_bin().expect(
            "PostgreSQL with wal_level=logical is needed and no initdb was found under \
             /usr/lib/postgresql/*/bin (install postgresql or set WEFT_TEST_LOGICAL_POSTGRES_URL)",
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("spare port")
            .port();
        let root = running_as_root();
        if root {
            let ok = std::process::Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(ok.success());
        }
        let tool = |name: &str| {
            let program = bin.join(name);
            if root {
                let mut c = std::process::Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(program);
                c
            } else {
                std::process::Command::new(program)
            }
        };
        let data = dir.path().join("data");
        let out = tool("initdb")
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(&data)
            .output()
            .expect("initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -c wal_level=logical -c max_replication_slots=8 -k {}",
            dir.path().display()
        );
        let out = tool("pg_ctl")
            .args(["-w", "-D"])
            .arg(&data)
            .args(["-o", &options, "-l"])
            .arg(dir.path().join("server.log"))
            .arg("start")
            .output()
            .expect("pg_ctl start");
        assert!(
            out.status.success(),
            "pg_ctl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        LogicalPostgres {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            cluster: Some((bin, dir)),
            _db: None,
        }
    }
}

impl Drop for LogicalPostgres {
    fn drop(&mut self) {
        let Some((bin, dir)) = self.cluster.take() else {
            return;
        };
        let program = bin.join("pg_ctl");
        let mut c = if running_as_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            std::process::Command::new(program)
        };
        let _ = c
            .args(["-m", "immediate", "-D"])
            .arg(dir.path().join("data"))
            .arg("stop")
            .output();
    }
}

fn running_as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn postgres_bin() -> Option<std::path::PathBuf> {
    let mut versions: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// Inserts `n` events (aggregates `a0..a7`, counter per aggregate) in transactions of 100.
pub(crate) async fn insert_many(pool: &AnyPool, n: usize, first: usize) -> Vec<Committed> {
    let mut out = Vec::new();
    let mut i = first;
    while i < first + n {
        let mut tx = pool.begin().await.expect("begin");
        for _ in 0..100.min(first + n - i) {
            let agg = format!("a{}", i % 8);
            let k = (i / 8) as i64;
            let event = OutboxEvent::json(
                "account",
                &agg,
                "Incremented",
                &serde_json::json!({"agg": agg, "n": k}),
            )
            .expect("event");
            let id = weft_outbox::insert(&mut tx, &event).await.expect("insert");
            out.push(Committed {
                aggregate: agg,
                n: k,
                id: id.to_string(),
            });
            i += 1;
        }
        tx.commit().await.expect("commit");
    }
    out
}

/// The end offset of partition 0 of `topic` (0 when it does not exist).
pub(crate) fn end_offset(bootstrap: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("outbox-test"))
        .create()
        .expect("consumer");
    match consumer.fetch_watermarks(topic, 0, SAFETY) {
        Ok((_, high)) => high,
        Err(_) => 0,
    }
}
