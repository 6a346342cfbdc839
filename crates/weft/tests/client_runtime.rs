//! weft-client's consumer runtime against a real `weft serve`: order per key with
//! concurrency, commits only of finished prefixes, pause/resume under backpressure, and no
//! commit for a partition after it was revoked.

mod client_common;
mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use client_common::{Events, broker, committed_offsets, consumer_config, create_topic, wait_until};
use weft_client::{
    Consumer, HandlerError, Message, Producer, ProducerConfig, Record, RuntimeEvent,
};

/// `per_key` records for each of `keys` keys; per key in sequence order (one round of
/// keys is in flight at a time).
async fn produce_keyed(bootstrap: &str, topic: &str, keys: usize, per_key: usize) {
    let producer = Producer::new(&ProducerConfig::new(bootstrap)).expect("producer");
    for seq in 0..per_key {
        let mut round = tokio::task::JoinSet::new();
        for k in 0..keys {
            let p = producer.clone();
            let record = Record::new(topic)
                .key(format!("key-{k}"))
                .payload(seq.to_string());
            round.spawn(async move { p.send(record).await.expect("send") });
        }
        while let Some(r) = round.join_next().await {
            r.expect("send task");
        }
    }
}

/// 4 partitions, 12 keys × 25 records, 8 lanes, handlers that yield: every record handled,
/// per key in production order, and the committed offsets reach the end of every partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn order_per_key_and_commits_reach_the_end() {
    let b = broker();
    create_topic(&b.bootstrap, "t", 4).await;
    produce_keyed(&b.bootstrap, "t", 12, 25).await;

    let seen: Arc<Mutex<Vec<(String, usize)>>> = Arc::default();
    let mut config = consumer_config(&b.bootstrap, "g-order", &["t"]);
    config.lanes = 8;
    let events = Events::default();
    events.attach(&mut config);
    let consumer = Consumer::new(config).expect("consumer");
    let stop = consumer.shutdown_handle();
    let s = seen.clone();
    let run = tokio::spawn(consumer.run(move |m: Message| {
        let s = s.clone();
        async move {
            tokio::task::yield_now().await;
            let key = String::from_utf8(m.key.clone().expect("key").to_vec()).expect("utf8");
            let seq: usize = m.json().expect("seq");
            s.lock().expect("seen").push((key, seq));
            Ok::<(), HandlerError>(())
        }
    }));
    wait_until("300 records handled", || {
        seen.lock().expect("seen").len() >= 300
    })
    .await;
    stop.shutdown();
    run.await.expect("join").expect("run");

    let seen = seen.lock().expect("seen").clone();
    assert_eq!(seen.len(), 300, "each record once in a clean run");
    let mut per_key: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (k, s) in seen {
        per_key.entry(k).or_default().push(s);
    }
    assert_eq!(per_key.len(), 12);
    for (k, seqs) in per_key {
        assert_eq!(seqs, (0..25).collect::<Vec<_>>(), "order of {k}");
    }
    // The group's committed offsets (read back from the broker) are the partitions' ends.
    let committed = committed_offsets(&b.bootstrap, "g-order", "t", 4);
    assert_eq!(committed.iter().sum::<i64>(), 300, "{committed:?}");
}

/// A record that fails (retries and dead letters off) stops its partition's commits at it while later
/// records still run; a new run of the group gets it again (at-least-once).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_record_is_never_committed_past() {
    let b = broker();
    create_topic(&b.bootstrap, "f", 1).await;
    let producer = Producer::new(&ProducerConfig::new(&b.bootstrap)).expect("producer");
    for i in 0..10 {
        producer
            .send(Record::new("f").key(format!("k{i}")).payload(i.to_string()))
            .await
            .expect("send");
    }
    let handled: Arc<Mutex<HashSet<i64>>> = Arc::default();
    let mut config = consumer_config(&b.bootstrap, "g-fail", &["f"]);
    config.retry(None).dead_letters(false);
    let events = Events::default();
    events.attach(&mut config);
    let consumer = Consumer::new(config).expect("consumer");
    let stop = consumer.shutdown_handle();
    let h = handled.clone();
    let run = tokio::spawn(consumer.run(move |m: Message| {
        let h = h.clone();
        async move {
            if m.offset == 4 {
                return Err(HandlerError::permanent("poison"));
            }
            h.lock().expect("handled").insert(m.offset);
            Ok(())
        }
    }));
    wait_until("the other 9 records handled", || {
        handled.lock().expect("handled").len() == 9
    })
    .await;
    wait_until("offset 4 committed", || events.committed("f", 0) == Some(4)).await;
    stop.shutdown();
    run.await.expect("join").expect("run");
    assert_eq!(
        events.committed("f", 0),
        Some(4),
        "never past the failed record"
    );
    assert_eq!(committed_offsets(&b.bootstrap, "g-fail", "f", 1), vec![4]);

    // The next run of the group starts at the failed record.
    let again: Arc<Mutex<Vec<i64>>> = Arc::default();
    let consumer =
        Consumer::new(consumer_config(&b.bootstrap, "g-fail", &["f"])).expect("consumer");
    let stop = consumer.shutdown_handle();
    let a = again.clone();
    let run = tokio::spawn(consumer.run(move |m: Message| {
        let a = a.clone();
        async move {
            a.lock().expect("again").push(m.offset);
            Ok(())
        }
    }));
    wait_until("redelivery from offset 4", || {
        again.lock().expect("again").len() == 6
    })
    .await;
    stop.shutdown();
    run.await.expect("join").expect("run");
    // Different keys run concurrently: the set, not the order, is what is promised here.
    let mut again = again.lock().expect("again").clone();
    again.sort_unstable();
    assert_eq!(again, vec![4, 5, 6, 7, 8, 9]);
    assert_eq!(committed_offsets(&b.bootstrap, "g-fail", "f", 1), vec![10]);
}

/// Handlers blocked on a gate: with at most 3 outstanding records per partition the
/// partition is paused, never more than 3 handlers start, and it resumes when they finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backpressure_pauses_and_resumes_partitions() {
    let b = broker();
    create_topic(&b.bootstrap, "bp", 1).await;
    let producer = Producer::new(&ProducerConfig::new(&b.bootstrap)).expect("producer");
    for i in 0..20 {
        producer
            .send(Record::new("bp").key(format!("k{i}")).payload("x"))
            .await
            .expect("send");
    }
    let gate = Arc::new(AtomicBool::new(false));
    let started: Arc<Mutex<Vec<i64>>> = Arc::default();
    let mut config = consumer_config(&b.bootstrap, "g-bp", &["bp"]);
    config.lanes = 8;
    config.max_outstanding_per_partition = 3;
    let events = Events::default();
    events.attach(&mut config);
    let consumer = Consumer::new(config).expect("consumer");
    let stop = consumer.shutdown_handle();
    let (g, s) = (gate.clone(), started.clone());
    let run = tokio::spawn(consumer.run(move |m: Message| {
        let (g, s) = (g.clone(), s.clone());
        async move {
            s.lock().expect("started").push(m.offset);
            while !g.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok(())
        }
    }));
    let paused = || {
        events
            .snapshot()
            .iter()
            .any(|e| matches!(e, RuntimeEvent::Paused(l) if l.contains(&("bp".into(), 0))))
    };
    wait_until("partition paused", paused).await;
    wait_until("3 handlers started", || {
        started.lock().expect("started").len() == 3
    })
    .await;
    // While paused and blocked, nothing more starts (the bound is exact, not approximate).
    for _ in 0..20 {
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(started.lock().expect("started").len(), 3);
    gate.store(true, Ordering::SeqCst);
    wait_until("all 20 handled", || {
        started.lock().expect("started").len() == 20
    })
    .await;
    wait_until("everything committed", || {
        events.committed("bp", 0) == Some(20)
    })
    .await;
    stop.shutdown();
    run.await.expect("join").expect("run");
    assert!(
        events
            .snapshot()
            .iter()
            .any(|e| matches!(e, RuntimeEvent::Resumed(l) if l.contains(&("bp".into(), 0))))
    );
}

/// Member A starts one record per partition and holds them until it has lost partitions to
/// member B, so at the revocation A has running handlers that outlive the revoke timeout and
/// finish afterwards. For every partition, A's event log shows no commit after its
/// revocation; every record is handled at least once by A or B; the group ends fully
/// committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_commit_for_a_partition_after_it_was_revoked() {
    let b = broker();
    create_topic(&b.bootstrap, "rb", 4).await;
    let producer = Producer::new(&ProducerConfig::new(&b.bootstrap)).expect("producer");
    for i in 0..200 {
        producer
            .send(
                Record::new("rb")
                    .key(format!("k{}", i % 40))
                    .payload(i.to_string()),
            )
            .await
            .expect("send");
    }
    let handled: Arc<Mutex<HashSet<(i32, i64)>>> = Arc::default();
    let started_a: Arc<Mutex<HashSet<i32>>> = Arc::default();
    let revoked_a = Arc::new(AtomicBool::new(false));

    let mut config_a = consumer_config(&b.bootstrap, "g-rb", &["rb"]);
    // Lanes are a stable FNV-1a hash of (topic, partition, key): with 8 lanes the first
    // records of the four partitions (keys k3, k0, k8, k14) run on distinct lanes (3, 1, 4,
    // 0), so A can hold one record of every partition at once.
    config_a.lanes = 8;
    // One outstanding record per partition, held by its handler until the revocation is over
    // (10 ms revoke timeout): a runtime that still applied its result would commit for a
    // partition it no longer owns.
    config_a.max_outstanding_per_partition = 1;
    config_a.revoke_timeout = Duration::from_millis(10);
    let events_a = Events::default();
    events_a.attach(&mut config_a);
    {
        let (log, flag) = (events_a.0.clone(), revoked_a.clone());
        config_a.on_event(move |e| {
            log.lock().expect("event log").push(e.clone());
            if matches!(e, RuntimeEvent::Revoked(_)) {
                flag.store(true, Ordering::SeqCst);
            }
        });
    }
    let a = Consumer::new(config_a).expect("consumer a");
    let stop_a = a.shutdown_handle();
    let (h, st, rv) = (handled.clone(), started_a.clone(), revoked_a.clone());
    let run_a = tokio::spawn(a.run(move |m: Message| {
        let (h, st, rv) = (h.clone(), st.clone(), rv.clone());
        async move {
            st.lock().expect("started").insert(m.partition);
            while !rv.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            h.lock().expect("handled").insert((m.partition, m.offset));
            Ok::<(), HandlerError>(())
        }
    }));
    wait_until("A holds a record of every partition", || {
        started_a.lock().expect("started").len() == 4
    })
    .await;

    let mut config_b = consumer_config(&b.bootstrap, "g-rb", &["rb"]);
    let events_b = Events::default();
    events_b.attach(&mut config_b);
    let bm = Consumer::new(config_b).expect("consumer b");
    let stop_b = bm.shutdown_handle();
    let hb = handled.clone();
    let run_b = tokio::spawn(bm.run(move |m: Message| {
        let hb = hb.clone();
        async move {
            hb.lock().expect("handled").insert((m.partition, m.offset));
            Ok::<(), HandlerError>(())
        }
    }));
    wait_until("all 200 handled", || {
        handled.lock().expect("handled").len() == 200
    })
    .await;
    wait_until("group fully committed", || {
        committed_offsets(&b.bootstrap, "g-rb", "rb", 4)
            .iter()
            .sum::<i64>()
            == 200
    })
    .await;
    stop_a.shutdown();
    stop_b.shutdown();
    run_a.await.expect("join").expect("run a");
    run_b.await.expect("join").expect("run b");

    // Replay A's log: a partition is owned from Assigned to Revoked; commits only while owned.
    let mut owned: HashSet<(String, i32)> = HashSet::new();
    let mut revoked_with_work = 0;
    for e in events_a.snapshot() {
        match e {
            RuntimeEvent::Assigned(l) => owned.extend(l),
            RuntimeEvent::Revoked(l) => {
                for tp in l {
                    owned.remove(&tp);
                    revoked_with_work += 1;
                }
            }
            RuntimeEvent::Committed(l) => {
                for (tp, o) in l {
                    assert!(
                        owned.contains(&tp),
                        "A committed {tp:?}@{o} without owning it"
                    );
                }
            }
            _ => {}
        }
    }
    assert!(revoked_with_work >= 1, "A lost no partition");
    assert!(!events_b.snapshot().is_empty(), "B took part in the group");
}

/// Shutdown with a handler that never finishes: `run` returns once the shutdown deadline
/// passed, having committed the finished prefix (up to the hung record) and left the group;
/// the next member starts at the hung record.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_commits_the_finished_prefix_within_its_deadline() {
    let b = broker();
    create_topic(&b.bootstrap, "sd", 1).await;
    let producer = Producer::new(&ProducerConfig::new(&b.bootstrap)).expect("producer");
    for i in 0..6 {
        producer
            .send(
                Record::new("sd")
                    .key(format!("k{i}"))
                    .payload(i.to_string()),
            )
            .await
            .expect("send");
    }
    let finished: Arc<Mutex<HashSet<i64>>> = Arc::default();
    let mut config = consumer_config(&b.bootstrap, "g-sd", &["sd"]);
    // Never commit on the interval: what is committed is the shutdown's doing.
    config.commit_interval = Duration::from_secs(3600);
    config.shutdown_timeout = Duration::from_millis(300);
    let consumer = Consumer::new(config).expect("consumer");
    let stop = consumer.shutdown_handle();
    let f = finished.clone();
    let run = tokio::spawn(consumer.run(move |m: Message| {
        let f = f.clone();
        async move {
            if m.offset == 3 {
                std::future::pending::<()>().await;
            }
            f.lock().expect("finished").insert(m.offset);
            Ok::<(), HandlerError>(())
        }
    }));
    wait_until("the other five finished", || {
        finished.lock().expect("finished").len() == 5
    })
    .await;
    assert_eq!(committed_offsets(&b.bootstrap, "g-sd", "sd", 1), vec![-1]);
    stop.shutdown();
    run.await
        .expect("join")
        .expect("run returns despite the hung handler");
    assert_eq!(committed_offsets(&b.bootstrap, "g-sd", "sd", 1), vec![3]);

    let again: Arc<Mutex<Vec<i64>>> = Arc::default();
    let consumer = Consumer::new(consumer_config(&b.bootstrap, "g-sd", &["sd"])).expect("consumer");
    let stop = consumer.shutdown_handle();
    let a = again.clone();
    let run = tokio::spawn(consumer.run(move |m: Message| {
        let a = a.clone();
        async move {
            a.lock().expect("again").push(m.offset);
            Ok::<(), HandlerError>(())
        }
    }));
    wait_until("the next member handles 3..5", || {
        again.lock().expect("again").len() == 3
    })
    .await;
    stop.shutdown();
    run.await.expect("join").expect("run");
    let mut again = again.lock().expect("again").clone();
    again.sort_unstable();
    assert_eq!(again, vec![3, 4, 5]);
    assert_eq!(committed_offsets(&b.bootstrap, "g-sd", "sd", 1), vec![6]);
}

/// The same runtime over a KIP-848 group (`group.protocol=consumer`, broker-side
/// assignment): every record handled once, the group committed to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kip848_group() {
    let b = broker();
    create_topic(&b.bootstrap, "k848", 2).await;
    produce_keyed(&b.bootstrap, "k848", 4, 10).await;
    let seen: Arc<Mutex<Vec<(i32, i64)>>> = Arc::default();
    let mut config = consumer_config(&b.bootstrap, "g-k848", &["k848"]);
    config.kip848();
    let consumer = Consumer::new(config).expect("consumer");
    let stop = consumer.shutdown_handle();
    let s = seen.clone();
    let run = tokio::spawn(consumer.run(move |m: Message| {
        let s = s.clone();
        async move {
            s.lock().expect("seen").push((m.partition, m.offset));
            Ok::<(), HandlerError>(())
        }
    }));
    wait_until("group committed to the end", || {
        committed_offsets(&b.bootstrap, "g-k848", "k848", 2)
            .iter()
            .sum::<i64>()
            == 40
    })
    .await;
    stop.shutdown();
    run.await.expect("join").expect("run");
    let seen = seen.lock().expect("seen").clone();
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!((seen.len(), unique.len()), (40, 40));
}
