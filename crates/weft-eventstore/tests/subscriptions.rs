//! Catch-up subscriptions (history → live, filters, resume after a restart) and persistent
//! subscription groups (round-robin, pinned, retry/park/replay, checkpoints across restarts).

mod common;

use std::collections::{HashMap, HashSet};

use common::{BACKENDS, ev, open, reopen, within};
use weft_eventstore::persistent::{GroupSettings, Nack, Strategy};
use weft_eventstore::subscription::Message;
use weft_eventstore::{ExpectedVersion, Filter};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_switches_from_history_to_live_without_gap() {
    for backend in BACKENDS {
        let (db, es) = open(backend).await;
        for i in 0..700 {
            // More than one page of history.
            let stream = if i % 2 == 0 { "order-1" } else { "customer-1" };
            es.append(stream, ExpectedVersion::Any, vec![ev("H", i)])
                .await
                .expect("history");
        }
        let mut sub = es.subscribe(Filter::category("order"), 0);
        // A writer in another "process" (own pool: only polling finds its events) appends
        // while the subscription is still reading history.
        let other = reopen(&db).await;
        let writer = tokio::spawn(async move {
            for i in 700..800 {
                let stream = if i % 2 == 0 { "order-2" } else { "customer-2" };
                other
                    .append(stream, ExpectedVersion::Any, vec![ev("L", i)])
                    .await
                    .expect("live");
            }
        });
        let mut got = Vec::new();
        let mut caught_up_at = None;
        within(async {
            while got.len() < 400 {
                match sub.next().await.expect("open").expect("no error") {
                    Message::Event(e) => {
                        assert_eq!(e.category(), "order");
                        got.push(e.data["n"].as_i64().expect("n"));
                    }
                    Message::CaughtUp { .. } => {
                        assert!(caught_up_at.is_none(), "caught up once");
                        caught_up_at = Some(got.len());
                    }
                }
            }
        })
        .await;
        writer.await.expect("writer");
        // In-process appends wake it at once.
        es.append("order-3", ExpectedVersion::Any, vec![ev("L", 1000)])
            .await
            .expect("append");
        let last = within(sub.next_event())
            .await
            .expect("open")
            .expect("event");
        got.push(last.data["n"].as_i64().expect("n"));
        let expected: Vec<i64> = (0..800).filter(|i| i % 2 == 0).chain([1000]).collect();
        assert_eq!(got, expected, "{backend:?}: every event once, in order");
        assert!(caught_up_at.is_some());
    }
}

#[tokio::test]
async fn subscriptions_resume_after_a_restart() {
    for backend in BACKENDS {
        let (db, es) = open(backend).await;
        for i in 0..10 {
            es.append("order-1", ExpectedVersion::Any, vec![ev("A", i)])
                .await
                .expect("append");
        }
        let mut sub = es.subscribe(Filter::stream("order-1"), 0);
        let mut last = 0;
        for _ in 0..4 {
            last = within(sub.next_event())
                .await
                .expect("open")
                .expect("event")
                .position;
        }
        drop(sub);
        drop(es);
        let es = reopen(&db).await;
        es.append("order-1", ExpectedVersion::Any, vec![ev("A", 10)])
            .await
            .expect("append");
        let mut sub = es.subscribe(Filter::stream("order-1"), last);
        let mut rest = Vec::new();
        while rest.len() < 7 {
            let e = within(sub.next_event())
                .await
                .expect("open")
                .expect("event");
            rest.push(e.data["n"].as_i64().expect("n"));
        }
        assert_eq!(rest, (4..=10).collect::<Vec<_>>(), "{backend:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_round_robin_and_pinned() {
    for backend in BACKENDS {
        let (_db, es) = open(backend).await;
        for strategy in [Strategy::RoundRobin, Strategy::Pinned] {
            let base = es.head().await.expect("head");
            let group = format!("g-{strategy:?}");
            es.create_group(
                &group,
                GroupSettings {
                    strategy,
                    start_after: base,
                    max_in_flight: 4,
                    ..GroupSettings::default()
                },
            )
            .await
            .expect("create");
            let mut a = es.connect_group(&group).await.expect("a");
            let mut b = es.connect_group(&group).await.expect("b");
            // Appended once both are connected: pinning holds while the set is unchanged.
            for i in 0..40 {
                es.append(
                    &format!("order-{}", i % 5),
                    ExpectedVersion::Any,
                    vec![ev("A", i)],
                )
                .await
                .expect("append");
            }
            let mut by_consumer: HashMap<u64, Vec<String>> = HashMap::new();
            let mut seen = HashSet::new();
            within(async {
                while seen.len() < 40 {
                    tokio::select! {
                        Some(d) = a.next() => {
                            by_consumer.entry(a.id()).or_default().push(d.event.stream.clone());
                            assert!(seen.insert(d.event.position));
                            a.ack(&d).await.expect("ack");
                        }
                        Some(d) = b.next() => {
                            by_consumer.entry(b.id()).or_default().push(d.event.stream.clone());
                            assert!(seen.insert(d.event.position));
                            b.ack(&d).await.expect("ack");
                        }
                    }
                }
            })
            .await;
            assert_eq!(
                by_consumer.len(),
                2,
                "{backend:?} {strategy:?}: both consumers got work"
            );
            if strategy == Strategy::Pinned {
                let a_streams: HashSet<_> = by_consumer[&a.id()].iter().collect();
                let b_streams: HashSet<_> = by_consumer[&b.id()].iter().collect();
                assert!(
                    a_streams.is_disjoint(&b_streams),
                    "pinned: a stream goes to one consumer ({a_streams:?} / {b_streams:?})"
                );
            }
            within(async {
                while es.group_status(&group).await.expect("status").checkpoint < base + 40 {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            })
            .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_retry_park_replay_and_restart() {
    for backend in BACKENDS {
        let (db, es) = open(backend).await;
        for i in 0..6 {
            es.append("order-1", ExpectedVersion::Any, vec![ev("A", i)])
                .await
                .expect("append");
        }
        es.create_group(
            "billing",
            GroupSettings {
                max_retries: 2,
                backoff_initial_ms: 5,
                backoff_max_ms: 20,
                ..GroupSettings::default()
            },
        )
        .await
        .expect("create");
        assert!(
            es.create_group("billing", GroupSettings::default())
                .await
                .is_err(),
            "a group is created once"
        );
        let mut c = es.connect_group("billing").await.expect("connect");
        // Event n=2 always fails: delivered 1 + 2 retries, then parked. n=4 is parked at once.
        let mut attempts_of_2 = Vec::new();
        let mut acked = HashSet::new();
        let mut parked_4 = false;
        within(async {
            while acked.len() < 4 || attempts_of_2.len() < 3 || !parked_4 {
                let d = c.next().await.expect("delivery");
                match d.event.data["n"].as_i64().expect("n") {
                    2 => {
                        attempts_of_2.push(d.attempt);
                        c.nack(&d, Nack::Retry, "card declined")
                            .await
                            .expect("nack");
                    }
                    4 => {
                        assert!(!parked_4, "a parked event is not redelivered");
                        parked_4 = true;
                        c.nack(&d, Nack::Park, "poison").await.expect("nack")
                    }
                    n => {
                        assert!(acked.insert(n), "acked once");
                        c.ack(&d).await.expect("ack");
                    }
                }
            }
            while es.parked("billing").await.expect("parked").len() < 2 {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        })
        .await;
        assert_eq!(
            attempts_of_2,
            [0, 1, 2],
            "{backend:?}: first delivery and two retries"
        );
        let parked = es.parked("billing").await.expect("parked");
        assert_eq!(parked.len(), 2);
        assert!(parked[0].1.contains("card declined"), "{parked:?}");
        within(async {
            while es.group_status("billing").await.expect("status").checkpoint < 6 {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        })
        .await;

        // Replay: the parked events come back; acking them clears the park.
        assert_eq!(es.replay_parked("billing").await.expect("replay"), 2);
        let mut replayed = Vec::new();
        within(async {
            while replayed.len() < 2 {
                let d = c.next().await.expect("delivery");
                assert!(d.replayed);
                replayed.push(d.event.data["n"].as_i64().expect("n"));
                c.ack(&d).await.expect("ack");
            }
            while !es.parked("billing").await.expect("parked").is_empty() {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        })
        .await;
        replayed.sort();
        assert_eq!(replayed, [2, 4]);

        // A restart resumes after the checkpoint: only new events are delivered.
        drop(c);
        drop(es);
        let es = reopen(&db).await;
        es.append("order-1", ExpectedVersion::Any, vec![ev("A", 6)])
            .await
            .expect("append");
        let mut c = es.connect_group("billing").await.expect("reconnect");
        let d = within(c.next()).await.expect("delivery");
        assert_eq!(
            d.event.data["n"], 6,
            "{backend:?}: resumed at the checkpoint"
        );
        c.ack(&d).await.expect("ack");
        assert!(es.connect_group("nobody").await.is_err());
    }
}

/// Two processes (two `EventStore`s, own pools) serving one group: only the lease holder
/// dispatches, so each event is delivered once overall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_group_is_served_by_one_process_at_a_time() {
    for backend in BACKENDS {
        let (db, one) = open(backend).await;
        let two = reopen(&db).await;
        one.create_group("shared", GroupSettings::default())
            .await
            .expect("create");
        let mut a = one.connect_group("shared").await.expect("a");
        let mut b = two.connect_group("shared").await.expect("b");
        for i in 0..30 {
            one.append("order-1", ExpectedVersion::Any, vec![ev("A", i)])
                .await
                .expect("append");
        }
        let mut from_a = 0;
        let mut from_b = 0;
        let mut seen = HashSet::new();
        within(async {
            while seen.len() < 30 {
                tokio::select! {
                    Some(d) = a.next() => {
                        from_a += 1;
                        assert!(seen.insert(d.event.position), "{backend:?}: delivered twice");
                        a.ack(&d).await.expect("ack");
                    }
                    Some(d) = b.next() => {
                        from_b += 1;
                        assert!(seen.insert(d.event.position), "{backend:?}: delivered twice");
                        b.ack(&d).await.expect("ack");
                    }
                }
            }
        })
        .await;
        // Nothing more arrives at either side.
        let extra = tokio::time::timeout(std::time::Duration::from_millis(300), async {
            tokio::select! {
                Some(d) = a.next() => d,
                Some(d) = b.next() => d,
            }
        })
        .await;
        assert!(
            extra.is_err(),
            "{backend:?}: a duplicate arrived: {extra:?}"
        );
        assert!(
            from_a == 0 || from_b == 0,
            "{backend:?}: both processes dispatched ({from_a} / {from_b})"
        );
        // Failover: the serving process's consumer leaves; the other process takes the lease
        // and goes on from the checkpoint with the new events only.
        let mut survivor = if from_a > 0 {
            drop(a);
            b
        } else {
            drop(b);
            a
        };
        for i in 30..40 {
            two.append("order-1", ExpectedVersion::Any, vec![ev("A", i)])
                .await
                .expect("append");
        }
        let mut after = Vec::new();
        within(async {
            while after.len() < 10 {
                let d = survivor.next().await.expect("delivery");
                after.push(d.event.data["n"].as_i64().expect("n"));
                survivor.ack(&d).await.expect("ack");
            }
        })
        .await;
        assert_eq!(after, (30..40).collect::<Vec<_>>(), "{backend:?}");
    }
}
