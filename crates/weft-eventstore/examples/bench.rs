//! Append throughput of the event store, with the database's raw insert rate measured in the
//! same run as the ceiling.
//!
//! ```text
//! cargo run --release -p weft-eventstore --example bench -- [sqlite|postgres] [seconds-per-case]
//! ```
//!
//! PostgreSQL comes from `$WEFT_TEST_POSTGRES_URL` (default `postgres://127.0.0.1:5432/test`):
//! a fresh database is created and dropped. SQLite is a temporary file.
//!
//! Cases: 1 and 8 writers × batches of 1 and 10 events. Each writer appends to its own
//! streams with `ExpectedVersion::Any`. The ceiling is the same shape of work as plain SQL:
//! one transaction per batch inserting 1 or 10 rows of the same size into a table with a
//! primary key, with the same number of writers — what the database does without the event
//! store's bookkeeping (allocation row, stream row, idempotency check, indexes) and without
//! its serialisation of commits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use weft_eventstore::{EventData, EventStore, ExpectedVersion};
use weft_store::testing::TestDb;
use weft_store::{Backend, Store};

async fn run_for<F, Fut>(writers: usize, secs: f64, f: F) -> f64
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = u64> + Send,
{
    let f = Arc::new(f);
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (f, stop, count) = (Arc::clone(&f), Arc::clone(&stop), Arc::clone(&count));
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let n = f(w, i).await;
                count.fetch_add(n, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn payload() -> serde_json::Value {
    json!({"order_id": "o-123456", "customer": "c-42", "total": 99.5, "currency": "EUR",
           "lines": [{"sku": "A-1", "qty": 2}, {"sku": "B-7", "qty": 1}]})
}

async fn raw(store: Store, writers: usize, batch: usize, secs: f64, round: usize) -> f64 {
    let table = format!("bench_raw_{round}_{writers}_{batch}");
    weft_store::sqlx::raw_sql(&format!(
        "CREATE TABLE {table} (id TEXT PRIMARY KEY, stream TEXT NOT NULL, data TEXT NOT NULL)"
    ))
    .execute(store.pool())
    .await
    .expect("create");
    let data = payload().to_string();
    run_for(writers, secs, move |w, i| {
        let (store, table, data) = (store.clone(), table.clone(), data.clone());
        async move {
            let mut tx = store.begin().await.expect("begin");
            let mut sql = format!("INSERT INTO {table} (id, stream, data) VALUES ");
            for k in 0..batch {
                if k > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("('{w}-{i}-{k}', 'bench-{w}', $1)"));
            }
            weft_store::sqlx::query(&sql)
                .bind(&data)
                .execute(&mut *tx)
                .await
                .expect("insert");
            tx.commit().await.expect("commit");
            batch as u64
        }
    })
    .await
}

async fn appends(es: EventStore, writers: usize, batch: usize, secs: f64, round: usize) -> f64 {
    run_for(writers, secs, move |w, i| {
        let es = es.clone();
        async move {
            let events = (0..batch)
                .map(|_| EventData::new("OrderPlaced", payload()))
                .collect();
            es.append(
                &format!("bench{round}-{w}x{}", i % 16),
                ExpectedVersion::Any,
                events,
            )
            .await
            .expect("append");
            batch as u64
        }
    })
    .await
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let backend = match args.next().as_deref() {
        Some("postgres") => Backend::Postgres,
        Some("sqlite") | None => Backend::Sqlite,
        Some(other) => panic!("unknown backend {other}: sqlite or postgres"),
    };
    let secs: f64 = args.next().map_or(3.0, |s| s.parse().expect("seconds"));
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    let es = EventStore::open(store.clone()).await.expect("open");
    println!("| backend | writers | batch | raw inserts/s (ceiling) | appended events/s | ratio |");
    println!("|---|---|---|---|---|---|");
    let mut round = 0;
    for writers in [1, 8] {
        for batch in [1, 10] {
            round += 1;
            let ceiling = raw(store.clone(), writers, batch, secs, round).await;
            let got = appends(es.clone(), writers, batch, secs, round).await;
            println!(
                "| {} | {writers} | {batch} | {ceiling:.0} | {got:.0} | {:.2} |",
                backend.as_str(),
                got / ceiling
            );
        }
    }
    // Reads, catch-up and projection over what the append cases wrote.
    let total = es.head().await.expect("head");
    let start = Instant::now();
    let mut from = 1;
    let mut read = 0u64;
    loop {
        let page = es
            .read_all(
                from,
                weft_eventstore::Direction::Forwards,
                1000,
                &weft_eventstore::Filter::all(),
            )
            .await
            .expect("read");
        let Some(last) = page.last() else { break };
        from = last.position + 1;
        read += page.len() as u64;
    }
    let read_rate = read as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    let mut sub = es.subscribe(weft_eventstore::Filter::all(), 0);
    let mut seen = 0u64;
    while seen < total {
        match sub.next().await.expect("open").expect("event") {
            weft_eventstore::subscription::Message::Event(_) => seen += 1,
            weft_eventstore::subscription::Message::CaughtUp { .. } => {}
        }
    }
    let catch_up_rate = seen as f64 / start.elapsed().as_secs_f64();
    drop(sub);
    let start = Instant::now();
    let mut p = weft_eventstore::projection::Projector::new(es.clone(), CountByStream);
    p.batch = 500;
    let projected = p.run_until_caught_up().await.expect("project");
    let projection_rate = projected as f64 / start.elapsed().as_secs_f64();
    println!();
    println!("| backend | events | $all read events/s | catch-up events/s | projection events/s |");
    println!("|---|---|---|---|---|");
    println!(
        "| {} | {total} | {read_rate:.0} | {catch_up_rate:.0} | {projection_rate:.0} |",
        backend.as_str()
    );
    store.close().await;
}

/// A read model of one upsert per event (events per stream).
struct CountByStream;

impl weft_eventstore::projection::Projection for CountByStream {
    fn name(&self) -> &str {
        "bench-count"
    }
    fn table(&self) -> &str {
        "bench_count"
    }
    fn create_sql(&self, table: &str) -> String {
        format!("CREATE TABLE {table} (stream TEXT PRIMARY KEY, n BIGINT NOT NULL)")
    }
    async fn apply(
        &mut self,
        e: &weft_eventstore::RecordedEvent,
        tx: &mut weft_store::Tx,
        table: &str,
    ) -> weft_eventstore::Result<()> {
        weft_store::sqlx::query(&format!(
            "INSERT INTO {table} (stream, n) VALUES ($1, 1)
             ON CONFLICT (stream) DO UPDATE SET n = {table}.n + 1"
        ))
        .bind(&e.stream)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}
