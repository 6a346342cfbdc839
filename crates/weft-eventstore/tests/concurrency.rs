//! Gap-free, commit-ordered global positions under concurrent writers: a reader tailing
//! `$all` while 8 writers (each with its own connection pool, like 8 processes) append must
//! see positions 1, 2, 3, … with no hole ever — a hole that fills later is exactly the bug
//! of sequence-allocated positions — and every event exactly once.

mod common;

use std::collections::HashSet;

use common::{BACKENDS, reopen, within};
use serde_json::json;
use weft_eventstore::{Direction, EventData, ExpectedVersion, Filter};
use weft_store::Backend;
use weft_store::testing::TestDb;

const WRITERS: usize = 8;
const APPENDS_PER_WRITER: usize = 60;

/// `shared`: the writers share one `EventStore` (their appends are group-committed) instead
/// of one each (like separate processes).
async fn tail_while_writing(backend: Backend, shared: bool) {
    let db = TestDb::new(backend).await;
    let reader = reopen(&db).await;
    let one = reopen(&db).await;
    let mut writers = Vec::new();
    let mut expected_ids = HashSet::new();
    for w in 0..WRITERS {
        let es = if shared {
            one.clone()
        } else {
            reopen(&db).await
        };
        let mut ids = Vec::new();
        for i in 0..APPENDS_PER_WRITER {
            // Batches of 1 to 3 events, over a few streams per writer.
            let batch: Vec<EventData> = (0..1 + i % 3)
                .map(|k| EventData::new("Tick", json!({"w": w, "i": i, "k": k})))
                .collect();
            ids.push(batch.iter().map(|e| e.id.clone()).collect::<Vec<_>>());
            expected_ids.extend(batch.iter().map(|e| e.id.clone()));
        }
        writers.push(tokio::spawn(async move {
            for (i, ids) in ids.into_iter().enumerate() {
                let batch = ids
                    .into_iter()
                    .map(|id| EventData::new("Tick", json!({"w": w, "i": i})).with_id(id))
                    .collect();
                es.append(&format!("load-{w}x{}", i % 4), ExpectedVersion::Any, batch)
                    .await
                    .expect("append");
            }
        }));
    }
    let total = expected_ids.len();
    let mut seen = HashSet::new();
    let mut last = 0u64;
    let mut reads = 0u64;
    within(async {
        while seen.len() < total {
            let page = reader
                .read_all(last + 1, Direction::Forwards, 50, &Filter::all())
                .await
                .expect("read");
            reads += 1;
            for e in page {
                assert_eq!(
                    e.position,
                    last + 1,
                    "{backend:?}: position {} seen right after {last}: a hole that a later \
                     commit could fill",
                    e.position
                );
                last = e.position;
                assert!(seen.insert(e.id.clone()), "event {} seen twice", e.id);
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    for w in writers {
        w.await.expect("writer");
    }
    assert_eq!(seen, expected_ids, "every event seen exactly once");
    assert_eq!(reader.head().await.expect("head"), total as u64);
    assert!(reads > 1, "the reader tailed while writers wrote");
    // Nothing arrives below what was seen.
    let after = reader
        .read_all(1, Direction::Forwards, 4096, &Filter::all())
        .await
        .expect("all");
    assert_eq!(after.len(), total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn positions_are_gap_free_under_8_writers_postgres() {
    tail_while_writing(Backend::Postgres, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn positions_are_gap_free_under_8_group_committed_writers_postgres() {
    tail_while_writing(Backend::Postgres, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn positions_are_gap_free_under_8_writers_sqlite() {
    tail_while_writing(Backend::Sqlite, false).await;
    tail_while_writing(Backend::Sqlite, true).await;
}

/// Concurrent appends through one `EventStore` share a transaction; a refused one (wrong
/// version, duplicate-in-part) must not take the others with it, nor leave anything behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_commit_isolates_refused_appends() {
    for backend in BACKENDS {
        let db = TestDb::new(backend).await;
        let es = reopen(&db).await;
        es.append(
            "grp-x",
            ExpectedVersion::NoStream,
            vec![EventData::new("A", json!({})).with_id("dup")],
        )
        .await
        .expect("seed");
        let mut tasks = Vec::new();
        for i in 0..96 {
            let es = es.clone();
            tasks.push(tokio::spawn(async move {
                let r = match i % 3 {
                    0 => {
                        es.append(
                            &format!("grp-{i}"),
                            ExpectedVersion::NoStream,
                            vec![
                                EventData::new("A", json!({"i": i})),
                                EventData::new("A", json!({"i": i})),
                            ],
                        )
                        .await
                    }
                    1 => {
                        es.append(
                            "grp-x",
                            ExpectedVersion::Exact(999),
                            vec![EventData::new("B", json!({"i": i}))],
                        )
                        .await
                    }
                    _ => {
                        es.append(
                            "grp-x",
                            ExpectedVersion::Any,
                            vec![
                                EventData::new("A", json!({})).with_id("dup"),
                                EventData::new("C", json!({"i": i})),
                            ],
                        )
                        .await
                    }
                };
                (i, r)
            }));
        }
        for t in tasks {
            let (i, r) = within(t).await.expect("task");
            match (i % 3, r) {
                (0, Ok(w)) => assert_eq!(w.position, w.first_position + 1),
                (1, Err(weft_eventstore::Error::WrongExpectedVersion { actual, .. })) => {
                    assert_eq!(actual, Some(0))
                }
                (2, Err(weft_eventstore::Error::PartialDuplicate { .. })) => {}
                (k, r) => panic!("{backend:?}: append {i} (kind {k}): {r:?}"),
            }
        }
        let all = es
            .read_all(1, Direction::Forwards, 4096, &Filter::all())
            .await
            .expect("all");
        assert_eq!(
            all.len(),
            1 + 32 * 2,
            "{backend:?}: only the accepted appends are stored"
        );
        assert!(
            all.iter()
                .enumerate()
                .all(|(k, e)| e.position == k as u64 + 1),
            "contiguous"
        );
        assert_eq!(es.head().await.expect("head"), all.len() as u64);
        assert_eq!(
            es.read_stream("grp-x", 0, Direction::Forwards, 10)
                .await
                .expect("x")
                .len(),
            1
        );
    }
}

/// Optimistic concurrency: 8 writers append to one stream with exact expected versions,
/// retrying on conflict; each lands exactly once and revisions are 0..n without holes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn optimistic_conflicts_on_one_stream() {
    for backend in BACKENDS {
        let db = TestDb::new(backend).await;
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let es = reopen(&db).await;
            tasks.push(tokio::spawn(async move {
                let mut conflicts = 0;
                for i in 0..10 {
                    let id = format!("w{w}-{i}");
                    loop {
                        let last = es
                            .stream_info("counter-1")
                            .await
                            .expect("info")
                            .and_then(|s| s.last_revision);
                        let expected =
                            last.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
                        let e = EventData::new("Inc", json!({"w": w})).with_id(id.clone());
                        match es.append("counter-1", expected, vec![e]).await {
                            Ok(_) => break,
                            Err(weft_eventstore::Error::WrongExpectedVersion { .. }) => {
                                conflicts += 1
                            }
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
                conflicts
            }));
        }
        let mut conflicts = 0;
        for t in tasks {
            conflicts += within(t).await.expect("writer");
        }
        let es = reopen(&db).await;
        let events = es
            .read_stream("counter-1", 0, Direction::Forwards, 1000)
            .await
            .expect("read");
        assert_eq!(events.len(), WRITERS * 10, "{backend:?}");
        assert!(
            events
                .iter()
                .enumerate()
                .all(|(i, e)| e.revision == i as u64)
        );
        let ids: HashSet<_> = events.iter().map(|e| e.id.clone()).collect();
        assert_eq!(ids.len(), WRITERS * 10);
        eprintln!("{backend:?}: {conflicts} conflicts refused and retried");
    }
}
