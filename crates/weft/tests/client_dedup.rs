//! Idempotent consumers against a real `weft serve` and both state-store backends: every
//! message is delivered at least three times — three copies in the log (a producer that
//! re-published), a consumer process SIGKILLed after side effects but before any offset
//! commit, and a rewind of the group — and its side effect happens exactly once.

mod client_common;
mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use client_common::{broker, committed_offsets, consumer_config, create_topic, rewind, wait_until};
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use weft_client::dedup::Dedup;
use weft_client::{Consumer, HandlerError, Message};
use weft_store::testing::TestDb;
use weft_store::{Backend, Store, Tx, sqlx};

const TOPIC: &str = "payments";
const GROUP: &str = "g-pay";
const MESSAGES: usize = 20;
const COPIES: usize = 3;
const CHILD_VAR: &str = "WEFT_CLIENT_DEDUP_CHILD";
/// Side effects the child commits before it is killed.
const CHILD_EFFECTS: usize = 5;

/// Each message `COPIES` times with the same `weft-message-id`, as a publisher that retried
/// without idempotence would leave them.
async fn produce_duplicates(bootstrap: &str) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("producer");
    for copy in 0..COPIES {
        for i in 0..MESSAGES {
            let id = format!("pay-{i}");
            let headers = OwnedHeaders::new().insert(Header {
                key: "weft-message-id",
                value: Some(id.as_bytes()),
            });
            let amount = (i * 10).to_string();
            producer
                .send(
                    FutureRecord::to(TOPIC)
                        .key(id.as_bytes())
                        .payload(amount.as_bytes())
                        .headers(headers),
                    Duration::from_secs(30),
                )
                .await
                .unwrap_or_else(|(e, _)| panic!("copy {copy} of {id}: {e}"));
        }
    }
}

/// The transactional handler: the side effect (a row in `effects`, which has no uniqueness
/// of its own, so a duplicate effect would show) in the transaction holding the dedup mark.
fn handler(
    calls: Arc<AtomicUsize>,
) -> impl Fn(Message, Tx) -> std::pin::Pin<Box<dyn Future<Output = Result<Tx, HandlerError>> + Send>>
+ Send
+ Sync
+ 'static {
    move |m: Message, mut tx: Tx| {
        let calls = calls.clone();
        Box::pin(async move {
            calls.fetch_add(1, Ordering::SeqCst);
            let amount: i64 = m.json().map_err(HandlerError::permanent)?;
            sqlx::query("INSERT INTO effects (message_id, amount) VALUES ($1, $2)")
                .bind(m.dedup_key())
                .bind(amount)
                .execute(&mut *tx)
                .await?;
            Ok(tx)
        })
    }
}

async fn effects(store: &Store) -> HashMap<String, i64> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT message_id, COUNT(*) FROM effects GROUP BY message_id")
            .fetch_all(store.pool())
            .await
            .expect("effects");
    rows.into_iter().collect()
}

/// The consumer process that gets killed: commits no offsets (commit interval of an hour),
/// so every record it handled is delivered again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_child() {
    let Ok(spec) = std::env::var(CHILD_VAR) else {
        return; // only meaningful as the child of exactly_once_effects_*
    };
    let (bootstrap, url) = spec.split_once(' ').expect("bootstrap and url");
    let store = Store::open(url).await.expect("store");
    let dedup = Dedup::new(store, GROUP, Duration::from_secs(3600))
        .await
        .expect("dedup");
    let mut config = consumer_config(bootstrap, GROUP, &[TOPIC]);
    config.commit_interval = Duration::from_secs(3600);
    // One lane: the hung sixth call (which holds its transaction open) cannot stand in the
    // way of the first five commits on SQLite's single writer.
    config.lanes = 1;
    // After CHILD_EFFECTS first deliveries the child hangs (as a process stuck before its
    // next commit would): the parent sees exactly that many effects and kills it.
    let started = Arc::new(AtomicUsize::new(0));
    let inner = handler(Arc::new(AtomicUsize::new(0)));
    let slow = move |m: Message, tx: Tx| {
        let n = started.fetch_add(1, Ordering::SeqCst);
        let fut = inner(m, tx);
        async move {
            if n >= CHILD_EFFECTS {
                std::future::pending::<()>().await;
            }
            fut.await
        }
    };
    Consumer::new(config)
        .expect("consumer")
        .run(dedup.transactional(slow))
        .await
        .expect("run");
}

async fn exactly_once_effects(backend: Backend) {
    let b = broker();
    create_topic(&b.bootstrap, TOPIC, 2).await;
    produce_duplicates(&b.bootstrap).await;
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    sqlx::query("CREATE TABLE effects (message_id TEXT NOT NULL, amount BIGINT NOT NULL)")
        .execute(store.pool())
        .await
        .expect("effects table");

    // 1. A consumer process handles some records, then dies by SIGKILL before committing.
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["dedup_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_VAR, format!("{} {}", b.bootstrap, db.url))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let mut before_kill = 0;
    let deadline = std::time::Instant::now() + common::SAFETY;
    while before_kill < CHILD_EFFECTS {
        assert!(
            std::time::Instant::now() < deadline,
            "child made no progress"
        );
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "child exited early"
        );
        before_kill = effects(&store).await.len();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    assert_eq!(
        committed_offsets(&b.bootstrap, GROUP, TOPIC, 2),
        vec![-1, -1],
        "the child committed nothing"
    );

    // 2. The group's next member gets everything again; the dedup marks of the child's
    //    committed transactions make those records no-ops.
    let dedup = Dedup::new(store.clone(), GROUP, Duration::from_secs(3600))
        .await
        .expect("dedup");
    let total = (MESSAGES * COPIES) as i64;
    // Messages whose effect (and mark) the child committed before it died.
    let mut marked = effects(&store).await.len();
    assert_eq!(marked, CHILD_EFFECTS, "the child's committed effects");
    for pass in ["after the crash", "after a rewind"] {
        let calls = Arc::new(AtomicUsize::new(0));
        let consumer =
            Consumer::new(consumer_config(&b.bootstrap, GROUP, &[TOPIC])).expect("consumer");
        let stop = consumer.shutdown_handle();
        let run = tokio::spawn(consumer.run(dedup.clone().transactional(handler(calls.clone()))));
        wait_until(pass, || {
            committed_offsets(&b.bootstrap, GROUP, TOPIC, 2)
                .iter()
                .sum::<i64>()
                == total
        })
        .await;
        stop.shutdown();
        run.await.expect("join").expect("run");
        // Only first deliveries reach the handler body: duplicates are skipped before it.
        assert_eq!(
            calls.load(Ordering::SeqCst),
            MESSAGES - marked,
            "{pass}: the handler body ran once per message not yet marked"
        );
        let seen = effects(&store).await;
        assert_eq!(seen.len(), MESSAGES, "{pass}: every message has its effect");
        assert!(
            seen.values().all(|&n| n == 1),
            "{pass}: an effect happened twice: {seen:?}"
        );
        marked = seen.len();
        // 3. Rewind: deliver everything once more.
        rewind(&b.bootstrap, GROUP, TOPIC, 2, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_once_effects_sqlite() {
    exactly_once_effects(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_once_effects_postgres() {
    exactly_once_effects(Backend::Postgres).await;
}

/// The non-transactional wrapper skips duplicates; marks past the retention window are
/// purged (and a purged mark lets the record through again).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idempotent_wrapper_and_retention_purge() {
    let b = broker();
    create_topic(&b.bootstrap, TOPIC, 2).await;
    produce_duplicates(&b.bootstrap).await;
    let db = TestDb::new(Backend::Sqlite).await;
    let store = db.open().await;
    let dedup = Dedup::new(store.clone(), "g-idem", Duration::ZERO)
        .await
        .expect("dedup");
    let calls: Arc<std::sync::Mutex<HashMap<String, usize>>> = Arc::default();
    let consumer =
        Consumer::new(consumer_config(&b.bootstrap, "g-idem", &[TOPIC])).expect("consumer");
    let stop = consumer.shutdown_handle();
    let c = calls.clone();
    let run = tokio::spawn(consumer.run(dedup.clone().idempotent(move |m: Message| {
        let c = c.clone();
        async move {
            *c.lock().expect("calls").entry(m.dedup_key()).or_default() += 1;
            Ok(())
        }
    })));
    let total = (MESSAGES * COPIES) as i64;
    wait_until("all copies handled", || {
        committed_offsets(&b.bootstrap, "g-idem", TOPIC, 2)
            .iter()
            .sum::<i64>()
            == total
    })
    .await;
    stop.shutdown();
    run.await.expect("join").expect("run");
    let calls = calls.lock().expect("calls").clone();
    assert_eq!(calls.len(), MESSAGES);
    assert!(calls.values().all(|&n| n == 1), "{calls:?}");
    assert!(dedup.seen("pay-0").await.expect("seen"));
    // Retention zero: every mark is older than the window once the clock moved on.
    let mut purged = 0;
    wait_until("marks purged", || {
        purged += futures_lite_block(dedup.purge());
        purged >= MESSAGES as u64
    })
    .await;
    assert!(!dedup.seen("pay-0").await.expect("seen"));
}

/// Runs a purge from the synchronous `wait_until` condition.
fn futures_lite_block(f: impl Future<Output = weft_client::Result<u64>>) -> u64 {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f)).expect("purge")
}
