//! The SDK side (aggregates, repository, snapshots) and projections: exactly-once under
//! kill -9 of a child process between apply and checkpoint, rebuild with swap, status.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{BACKENDS, ev, open, reopen, within};
use serde::{Deserialize, Serialize};
use weft_eventstore::aggregate::{Aggregate, Repository, RepositoryError};
use weft_eventstore::projection::{Projection, Projector};
use weft_eventstore::{EventMetadata, EventStore, ExpectedVersion, Filter, RecordedEvent};
use weft_store::sqlx::{self, Row};
use weft_store::testing::TestDb;
use weft_store::{Backend, Tx};

#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
struct Cart {
    items: Vec<String>,
    checked_out: bool,
}

#[derive(Debug, Serialize, Deserialize)]
enum CartEvent {
    ItemAdded { sku: String },
    CheckedOut,
}

enum CartCommand {
    Add(String),
    CheckOut,
}

impl Aggregate for Cart {
    const CATEGORY: &'static str = "cart";
    type Event = CartEvent;
    type Command = CartCommand;
    type Error = String;

    fn apply(&mut self, event: &CartEvent) {
        match event {
            CartEvent::ItemAdded { sku } => self.items.push(sku.clone()),
            CartEvent::CheckedOut => self.checked_out = true,
        }
    }

    fn handle(&self, command: &CartCommand) -> Result<Vec<CartEvent>, String> {
        if self.checked_out {
            return Err("cart is checked out".into());
        }
        Ok(match command {
            CartCommand::Add(sku) => vec![CartEvent::ItemAdded { sku: sku.clone() }],
            CartCommand::CheckOut if self.items.is_empty() => return Err("empty cart".into()),
            CartCommand::CheckOut => vec![CartEvent::CheckedOut],
        })
    }
}

#[tokio::test]
async fn repository_snapshots_and_time_travel() {
    for backend in BACKENDS {
        let (_db, es) = open(backend).await;
        let mut repo = Repository::<Cart>::new(es.clone());
        repo.snapshot_every = 5;
        let refused = repo
            .execute("1", &CartCommand::CheckOut, EventMetadata::default())
            .await;
        assert!(matches!(refused, Err(RepositoryError::Rejected(_))));
        assert_eq!(
            es.head().await.expect("head"),
            0,
            "a refused command stores nothing"
        );
        for i in 0..12 {
            repo.execute(
                "1",
                &CartCommand::Add(format!("sku{i}")),
                EventMetadata::default(),
            )
            .await
            .expect("add");
        }
        let loaded = repo.load("1").await.expect("load");
        assert_eq!(loaded.state.items.len(), 12, "{backend:?}");
        assert_eq!(loaded.revision, Some(11));
        assert!(loaded.from_snapshot);
        assert_eq!(loaded.replayed, 2, "snapshot at revision 9, then 2 events");
        let raw = es
            .read_stream("cart-1", 0, weft_eventstore::Direction::Forwards, 1)
            .await
            .expect("read");
        assert_eq!(raw[0].event_type, "ItemAdded");
        assert_eq!(raw[0].data["sku"], "sku0");

        let at3 = repo
            .load_until("1", Some(3), None)
            .await
            .expect("as of revision 3");
        assert_eq!(at3.state.items, ["sku0", "sku1", "sku2", "sku3"]);
        let t = raw[0].recorded_ms;
        let at_t = repo
            .load_until("1", None, Some(t))
            .await
            .expect("as of a time");
        assert!(!at_t.from_snapshot);
        assert!(!at_t.state.items.is_empty() && at_t.state.items.len() <= 12);

        repo.execute("1", &CartCommand::CheckOut, EventMetadata::default())
            .await
            .expect("checkout");
        assert!(
            repo.execute("1", &CartCommand::Add("x".into()), EventMetadata::default())
                .await
                .is_err()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repository_retries_conflicts() {
    for backend in BACKENDS {
        let db = TestDb::new(backend).await;
        let mut tasks = Vec::new();
        for w in 0..8 {
            let es = reopen(&db).await;
            tasks.push(tokio::spawn(async move {
                let mut repo = Repository::<Cart>::new(es);
                repo.max_attempts = 200;
                for i in 0..5 {
                    repo.execute(
                        "c",
                        &CartCommand::Add(format!("{w}-{i}")),
                        EventMetadata::default(),
                    )
                    .await
                    .expect("saved despite conflicts");
                }
            }));
        }
        for t in tasks {
            within(t).await.expect("task");
        }
        let es = reopen(&db).await;
        let cart = Repository::<Cart>::new(es).load("c").await.expect("load");
        assert_eq!(
            cart.state.items.len(),
            40,
            "{backend:?}: each command applied once"
        );
    }
}

/// Counts applications per position: exactly-once means every count is 1.
struct Counter {
    delay: Duration,
}

impl Projection for Counter {
    fn name(&self) -> &str {
        "counter"
    }
    fn table(&self) -> &str {
        "applied"
    }
    fn create_sql(&self, table: &str) -> String {
        format!("CREATE TABLE {table} (position BIGINT PRIMARY KEY, times BIGINT NOT NULL)")
    }
    async fn apply(
        &mut self,
        event: &RecordedEvent,
        tx: &mut Tx,
        table: &str,
    ) -> weft_eventstore::Result<()> {
        sqlx::query(&format!(
            "INSERT INTO {table} (position, times) VALUES ($1, 1)
             ON CONFLICT (position) DO UPDATE SET times = {table}.times + 1"
        ))
        .bind(event.position as i64)
        .execute(&mut **tx)
        .await?;
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        Ok(())
    }
}

const CHILD_URL: &str = "WEFT_ES_TEST_CHILD_URL";

/// The child process of `projection_is_exactly_once_under_kill_9` (it re-runs this test
/// binary with only this test and the database URL in the environment). Without the
/// variable it has nothing to do.
#[tokio::test]
async fn projection_child_process() {
    let Ok(url) = std::env::var(CHILD_URL) else {
        return;
    };
    let store = weft_store::Store::open(&url).await.expect("child opens");
    let es = EventStore::open(store).await.expect("child store");
    let mut p = Projector::new(
        es,
        Counter {
            delay: Duration::from_micros(300),
        },
    );
    p.batch = 10;
    p.run_until_caught_up().await.expect("child projects");
}

fn spawn_child(url: &str) -> std::process::Child {
    Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "projection_child_process",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_URL, url)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projection_is_exactly_once_under_kill_9() {
    const EVENTS: i64 = 1500;
    for backend in BACKENDS {
        let (db, es) = open(backend).await;
        for chunk in 0..(EVENTS / 100) {
            let events = (0..100).map(|i| ev("Tick", chunk * 100 + i)).collect();
            es.append(&format!("tick-{chunk}"), ExpectedVersion::Any, events)
                .await
                .expect("append");
        }
        let status = |es: EventStore| async move {
            es.projection_status("counter")
                .await
                .map(|s| s.position)
                .unwrap_or(0)
        };
        let mut kills = 0;
        let mut last = 0;
        // Kill the child three times while it is projecting, each time after it made
        // progress, then let a last one finish.
        while kills < 3 {
            let mut child = spawn_child(&db.url);
            let reached = within(async {
                loop {
                    let p = status(es.clone()).await;
                    if p >= last + 150 || p >= EVENTS as u64 {
                        return p;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
            .await;
            child.kill().expect("SIGKILL");
            child.wait().expect("reaped");
            kills += 1;
            eprintln!(
                "{backend:?}: child killed at checkpoint {}",
                status(es.clone()).await
            );
            last = reached;
            if reached >= EVENTS as u64 {
                break;
            }
        }
        let mut child = spawn_child(&db.url);
        let exit = within(async {
            loop {
                if let Some(s) = child.try_wait().expect("wait") {
                    return s;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(exit.success(), "{backend:?}: the last child finishes");
        let s = es.projection_status("counter").await.expect("status");
        assert_eq!(
            (s.position, s.lag_events),
            (EVENTS as u64, 0),
            "{backend:?}"
        );
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, MIN(times) AS lo, MAX(times) AS hi, MIN(position) AS first,
                    MAX(position) AS last FROM applied",
        )
        .fetch_one(es.store().pool())
        .await
        .expect("count");
        let get = |c: &str| row.try_get::<i64, _>(c).expect(c);
        assert_eq!(
            (get("n"), get("lo"), get("hi"), get("first"), get("last")),
            (EVENTS, 1, 1, 1, EVENTS),
            "{backend:?}: after {kills} kills every event applied exactly once"
        );
    }
}

/// Per-stream totals: what the order service's read model looks like.
struct Totals;

impl Projection for Totals {
    fn name(&self) -> &str {
        "totals"
    }
    fn table(&self) -> &str {
        "stream_totals"
    }
    fn filter(&self) -> Filter {
        Filter::category("order")
    }
    fn create_sql(&self, table: &str) -> String {
        format!("CREATE TABLE {table} (stream TEXT PRIMARY KEY, total BIGINT NOT NULL)")
    }
    async fn apply(
        &mut self,
        event: &RecordedEvent,
        tx: &mut Tx,
        table: &str,
    ) -> weft_eventstore::Result<()> {
        sqlx::query(&format!(
            "INSERT INTO {table} (stream, total) VALUES ($1, $2)
             ON CONFLICT (stream) DO UPDATE SET total = {table}.total + excluded.total"
        ))
        .bind(&event.stream)
        .bind(event.data["n"].as_i64().unwrap_or(0))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

async fn totals(es: &EventStore) -> Vec<(String, i64)> {
    sqlx::query("SELECT stream, total FROM stream_totals ORDER BY stream")
        .fetch_all(es.store().pool())
        .await
        .expect("query")
        .iter()
        .map(|r| {
            (
                r.try_get("stream").expect("s"),
                r.try_get("total").expect("t"),
            )
        })
        .collect()
}

#[tokio::test]
async fn projection_rebuild_swaps_a_shadow_table() {
    for backend in BACKENDS {
        let (_db, es) = open(backend).await;
        for i in 1..=20 {
            es.append(
                &format!("order-{}", i % 3),
                ExpectedVersion::Any,
                vec![ev("Added", i)],
            )
            .await
            .expect("append");
        }
        es.append("customer-1", ExpectedVersion::Any, vec![ev("Added", 1000)])
            .await
            .expect("ignored by the filter");
        let mut p = Projector::new(es.clone(), Totals);
        p.batch = 4;
        assert_eq!(p.run_until_caught_up().await.expect("run"), 20);
        let good = totals(&es).await;
        assert_eq!(good.iter().map(|(_, t)| t).sum::<i64>(), 210, "{backend:?}");
        // Damage the read model (a bug in an old version of the projection, say).
        sqlx::query("UPDATE stream_totals SET total = 0")
            .execute(es.store().pool())
            .await
            .expect("damage");
        es.append("order-1", ExpectedVersion::Any, vec![ev("Added", 5)])
            .await
            .expect("append");
        let report = p.rebuild().await.expect("rebuild");
        assert_eq!(report.events_applied, 21);
        assert_eq!(report.position, es.head().await.expect("head"));
        let rebuilt = totals(&es).await;
        let expected: Vec<(String, i64)> = good
            .into_iter()
            .map(|(s, t)| {
                let t = if s == "order-1" { t + 5 } else { t };
                (s, t)
            })
            .collect();
        assert_eq!(rebuilt, expected, "{backend:?}");
        let s = es.projection_status("totals").await.expect("status");
        assert_eq!(s.lag_events, 0);
        assert!(
            es.projection_status("totals#rebuild").await.is_err(),
            "rebuild checkpoint removed"
        );
        // The projector goes on from the swapped checkpoint.
        es.append("order-2", ExpectedVersion::Any, vec![ev("Added", 1)])
            .await
            .expect("append");
        es.append("customer-2", ExpectedVersion::Any, vec![ev("Added", 1)])
            .await
            .expect("not for this projection");
        let lagging = es.projection_status("totals").await.expect("status");
        assert_eq!(
            lagging.lag_events, 1,
            "lag counts only the events the projection wants"
        );
        assert!(lagging.lag_seconds >= 0.0);
        assert_eq!(p.run_until_caught_up().await.expect("run"), 1);
        // A second rebuild works too (shadow names do not collide).
        p.rebuild().await.expect("second rebuild");
    }
}

#[tokio::test]
async fn two_runners_never_apply_twice() {
    let db = TestDb::new(Backend::Postgres).await;
    let es = reopen(&db).await;
    for i in 0..300 {
        es.append("tick-1", ExpectedVersion::Any, vec![ev("T", i)])
            .await
            .expect("append");
    }
    let mut a = Projector::new(
        reopen(&db).await,
        Counter {
            delay: Duration::ZERO,
        },
    );
    let mut b = Projector::new(
        reopen(&db).await,
        Counter {
            delay: Duration::ZERO,
        },
    );
    a.batch = 7;
    b.batch = 5;
    a.ensure().await.expect("ensure");
    let (ra, rb) = tokio::join!(
        async {
            let mut n = 0;
            loop {
                match a.step().await {
                    Ok(0) => return n,
                    Ok(k) => n += k,
                    Err(_) => {} // lost a race: rolled back
                }
            }
        },
        async {
            let mut n = 0;
            loop {
                match b.step().await {
                    Ok(0) => return n,
                    Ok(k) => n += k,
                    Err(_) => {}
                }
            }
        }
    );
    assert_eq!(ra + rb, 300);
    let row = sqlx::query("SELECT COUNT(*) AS n, MAX(times) AS hi FROM applied")
        .fetch_one(es.store().pool())
        .await
        .expect("count");
    assert_eq!(row.try_get::<i64, _>("n").expect("n"), 300);
    assert_eq!(row.try_get::<i64, _>("hi").expect("hi"), 1);
}

/// Readers keep getting answers from the read model while it is rebuilt and swapped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_are_answered_during_a_rebuild() {
    for backend in BACKENDS {
        let (_db, es) = open(backend).await;
        for chunk in 0..10 {
            let events = (0..100).map(|i| ev("Added", i)).collect();
            es.append(&format!("order-{chunk}"), ExpectedVersion::Any, events)
                .await
                .expect("append");
        }
        let mut p = Projector::new(es.clone(), Totals);
        p.batch = 50;
        p.run_until_caught_up().await.expect("run");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (es, stop) = (es.clone(), stop.clone());
            tokio::spawn(async move {
                let mut reads = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let row = sqlx::query("SELECT COUNT(*) AS n FROM stream_totals")
                        .fetch_one(es.store().pool())
                        .await
                        .expect("the read model answers during the rebuild");
                    assert_eq!(row.try_get::<i64, _>("n").expect("n"), 10, "never empty");
                    reads += 1;
                    tokio::task::yield_now().await;
                }
                reads
            })
        };
        let report = p.rebuild().await.expect("rebuild");
        assert_eq!(report.events_applied, 1000);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let reads = within(reader).await.expect("reader");
        assert!(reads > 0, "{backend:?}");
        assert_eq!(totals(&es).await.len(), 10);
    }
}
