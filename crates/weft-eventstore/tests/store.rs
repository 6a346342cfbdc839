//! Appends, reads, metadata, deletes, scavenging and refused input, on SQLite and PostgreSQL.

mod common;

use common::{BACKENDS, ev, open};
use serde_json::json;
use weft_eventstore::{
    Direction, Error, EventData, ExpectedVersion, Filter, StreamAppend, StreamMetadata,
    StreamState, TypeDeclaration, Visibility,
};

fn ns(events: &[weft_eventstore::RecordedEvent]) -> Vec<i64> {
    events
        .iter()
        .map(|e| e.data["n"].as_i64().expect("n"))
        .collect()
}

#[tokio::test]
async fn append_and_read_streams() {
    for backend in BACKENDS {
        let (_db, es) = open(backend).await;
        let w = es
            .append(
                "order-1",
                ExpectedVersion::NoStream,
                vec![ev("Placed", 0), ev("Paid", 1)],
            )
            .await
            .expect("append");
        assert_eq!((w.next_expected, w.first_position, w.position), (1, 1, 2));
        es.append("order-2", ExpectedVersion::Any, vec![ev("Placed", 10)])
            .await
            .expect("append");
        es.append("order-1", ExpectedVersion::Exact(1), vec![ev("Shipped", 2)])
            .await
            .expect("append");
        let fwd = es
            .read_stream("order-1", 0, Direction::Forwards, 100)
            .await
            .expect("read");
        assert_eq!(ns(&fwd), [0, 1, 2], "{backend:?}");
        assert_eq!(
            fwd.iter().map(|e| e.revision).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert_eq!(
            fwd.iter().map(|e| e.position).collect::<Vec<_>>(),
            [1, 2, 4]
        );
        let back = es
            .read_stream("order-1", u64::MAX, Direction::Backwards, 2)
            .await
            .expect("read");
        assert_eq!(ns(&back), [2, 1]);
        let from1 = es
            .read_stream("order-1", 1, Direction::Forwards, 1)
            .await
            .expect("read");
        assert_eq!(ns(&from1), [1]);
        let all = es
            .read_all(1, Direction::Forwards, 100, &Filter::all())
            .await
            .expect("all");
        assert_eq!(ns(&all), [0, 1, 10, 2]);
        let page = es
            .read_all(2, Direction::Forwards, 2, &Filter::all())
            .await
            .expect("page");
        assert_eq!(ns(&page), [1, 10]);
        let placed = es
            .read_all(1, Direction::Forwards, 100, &Filter::event_type("Placed"))
            .await
            .expect("by type");
        assert_eq!(ns(&placed), [0, 10]);
        assert!(
            es.read_stream("order-99", 0, Direction::Forwards, 10)
                .await
                .expect("missing stream")
                .is_empty()
        );
        assert_eq!(es.head().await.expect("head"), 4);
    }
}

#[tokio::test]
async fn categories_prefixes_and_stream_lists() {
    for backend in BACKENDS {
        let (_db, es) = open(backend).await;
        es.append("order-1", ExpectedVersion::Any, vec![ev("A", 1)])
            .await
            .expect("a");
        es.append("customer-1", ExpectedVersion::Any, vec![ev("A", 2)])
            .await
            .expect("a");
        es.append("order-2", ExpectedVersion::Any, vec![ev("B", 3)])
            .await
            .expect("a");
        // `_` must not act as a LIKE wildcard.
        es.append("orderx-1", ExpectedVersion::Any, vec![ev("B", 4)])
            .await
            .expect("a");
        es.append("order_y-1", ExpectedVersion::Any, vec![ev("B", 5)])
            .await
            .expect("a");
        let cat = es
            .read_all(1, Direction::Forwards, 100, &Filter::category("order"))
            .await
            .expect("category");
        assert_eq!(ns(&cat), [1, 3], "{backend:?}");
        let prefix = es
            .read_all(1, Direction::Forwards, 100, &Filter::prefix("order_"))
            .await
            .expect("prefix");
        assert_eq!(ns(&prefix), [5]);
        let both = Filter {
            category: Some("order".into()),
            event_types: vec!["B".into()],
            ..Filter::default()
        };
        let r = es
            .read_all(1, Direction::Forwards, 100, &both)
            .await
            .expect("both");
        assert_eq!(ns(&r), [3]);
        let streams = es
            .list_streams(Some("order"), None, 10)
            .await
            .expect("list");
        let names: Vec<_> = streams.iter().map(|s| s.stream.as_str()).collect();
        assert_eq!(names, ["order-1", "order-2"]);
        let after = es
            .list_streams(None, Some("order-1"), 10)
            .await
            .expect("list");
        assert_eq!(after[0].stream, "order-2");
    }
}

#[tokio::test]
async fn expected_versions_are_enforced() {
    for backend in BACKENDS {
        let (_db, es) = open(backend).await;
        let wrong = es
            .append("order-1", ExpectedVersion::StreamExists, vec![ev("A", 0)])
            .await
            .expect_err("no stream yet");
        assert!(
            matches!(wrong, Error::WrongExpectedVersion { actual: None, .. }),
            "{wrong}"
        );
        assert!(
            es.append("order-1", ExpectedVersion::Exact(0), vec![ev("A", 0)])
                .await
                .is_err()
        );
        es.append(
            "order-1",
            ExpectedVersion::NoStream,
            vec![ev("A", 0), ev("A", 1)],
        )
        .await
        .expect("first");
        let cases = [
            (ExpectedVersion::NoStream, false),
            (ExpectedVersion::Exact(0), false),
            (ExpectedVersion::Exact(5), false),
            (ExpectedVersion::Exact(1), true),
        ];
        for (expected, ok) in cases {
            let r = es.append("order-1", expected, vec![ev("A", 9)]).await;
            match (r, ok) {
                (Ok(_), true) => {}
                (Err(Error::WrongExpectedVersion { actual, .. }), false) => {
                    assert_eq!(actual, Some(1), "{expected} names the actual revision")
                }
                (r, _) => panic!("{backend:?} {expected}: unexpected {r:?}"),
            }
        }
        let msg = es
            .append("order-1", ExpectedVersion::Exact(0), vec![ev("A", 9)])
            .await
            .expect_err("stale")
            .to_string();
        assert!(msg.contains("actual revision 2"), "{msg}");
        es.append("order-1", ExpectedVersion::StreamExists, vec![ev("A", 3)])
            .await
            .expect("exists");
        es.append("order-1", ExpectedVersion::Any, vec![ev("A", 4)])
            .await
            .expect("any");
        assert_eq!(
            es.stream_info("order-1")
                .await
                .expect("info")
                .expect("exists")
                .last_revision,
            Some(4)
        );
    }
}

#[tokio::test]
async fn retried_appends_are_idempotent() {
    for backend in BACKENDS {
        let (_db, es) = open(backend).await;
        let batch = vec![ev("A", 1).with_id("e1"), ev("A", 2).with_id("e2")];
        let first = es
            .append("order-1", ExpectedVersion::NoStream, batch.clone())
            .await
            .expect("first");
        // The retry carries the same expected version, now stale: still the same answer.
        let again = es
            .append("order-1", ExpectedVersion::NoStream, batch.clone())
            .await
            .expect("retry");
        assert!(again.duplicate);
        assert_eq!(
            (again.first_position, again.position, again.next_expected),
            (first.first_position, first.position, first.next_expected)
        );
        let single = es
            .append(
                "order-1",
                ExpectedVersion::Any,
                vec![ev("A", 1).with_id("e1")],
            )
            .await
            .expect("subset in order");
        assert!(single.duplicate);
        let partial = es
            .append(
                "order-1",
                ExpectedVersion::Any,
                vec![ev("A", 2).with_id("e2"), ev("A", 3).with_id("e3")],
            )
            .await
            .expect_err("partly written");
        assert!(
            matches!(partial, Error::PartialDuplicate { .. }),
            "{partial}"
        );
        // The same id in another stream is another event.
        es.append(
            "order-2",
            ExpectedVersion::Any,
            vec![ev("A", 1).with_id("e1")],
        )
        .await
        .expect("other stream");
        assert_eq!(es.head().await.expect("head"), 3, "{backend:?}");
    }
}

#[tokio::test]
async fn multi_stream_appends_are_atomic() {
    for backend in BACKENDS {
        let (_db, es) = open(backend).await;
        es.append("account-b", ExpectedVersion::Any, vec![ev("Opened", 0)])
            .await
            .expect("open b");
        let transfer = |b_expected| {
            vec![
                StreamAppend {
                    stream: "account-a".into(),
                    expected: ExpectedVersion::Any,
                    events: vec![ev("Debited", 1)],
                },
                StreamAppend {
                    stream: "account-b".into(),
                    expected: b_expected,
                    events: vec![ev("Credited", 1)],
                },
            ]
        };
        let err = es
            .append_multi(transfer(ExpectedVersion::Exact(7)))
            .await
            .expect_err("b is at 0");
        assert!(matches!(err, Error::WrongExpectedVersion { .. }));
        assert!(
            es.stream_info("account-a").await.expect("info").is_none(),
            "{backend:?}: nothing of a failed multi-append is stored"
        );
        assert_eq!(es.head().await.expect("head"), 1);
        let done = es
            .append_multi(transfer(ExpectedVersion::Exact(0)))
            .await
            .expect("transfer");
        assert_eq!(done.len(), 2);
        assert_eq!((done[0].position, done[1].position), (2, 3));
    }
}

#[tokio::test]
async fn metadata_deletes_and_scavenging() {
    for backend in BACKENDS {
        let (_db, es) = open(backend).await;
        let five = |base: i64| (0..5i64).map(|i| ev("A", base + i)).collect::<Vec<_>>();
        es.append("log-count", ExpectedVersion::Any, five(0))
            .await
            .expect("a");
        es.append("log-trunc", ExpectedVersion::Any, five(10))
            .await
            .expect("a");
        es.append("log-age", ExpectedVersion::Any, five(20))
            .await
            .expect("a");
        es.append("log-soft", ExpectedVersion::Any, five(30))
            .await
            .expect("a");
        es.append("log-hard", ExpectedVersion::Any, five(40))
            .await
            .expect("a");
        let read = |s: &'static str| {
            let es = es.clone();
            async move {
                ns(&es
                    .read_stream(s, 0, Direction::Forwards, 100)
                    .await
                    .expect("read"))
            }
        };
        es.set_stream_metadata(
            "log-count",
            StreamMetadata {
                max_count: Some(2),
                ..Default::default()
            },
        )
        .await
        .expect("meta");
        assert_eq!(read("log-count").await, [3, 4], "{backend:?}");
        es.set_stream_metadata(
            "log-trunc",
            StreamMetadata {
                truncate_before: Some(3),
                ..Default::default()
            },
        )
        .await
        .expect("meta");
        assert_eq!(read("log-trunc").await, [13, 14]);
        // Everything is older than 1 ms once the clock has moved past the last record by
        // more than that (polled, not slept).
        let newest = es
            .read_stream("log-age", u64::MAX, Direction::Backwards, 1)
            .await
            .expect("newest")[0]
            .recorded_ms;
        while weft_store::now_ms() <= newest + 1 {
            tokio::task::yield_now().await;
        }
        es.set_stream_metadata(
            "log-age",
            StreamMetadata {
                max_age_ms: Some(1),
                ..Default::default()
            },
        )
        .await
        .expect("meta");
        assert!(read("log-age").await.is_empty());

        es.delete_stream("log-soft", ExpectedVersion::Exact(3), false)
            .await
            .expect_err("stale delete refused");
        es.delete_stream("log-soft", ExpectedVersion::Exact(4), false)
            .await
            .expect("soft delete");
        assert!(read("log-soft").await.is_empty());
        let info = es
            .stream_info("log-soft")
            .await
            .expect("info")
            .expect("row");
        assert_eq!(info.state, StreamState::SoftDeleted);
        // Appending again continues the revisions; the old events stay hidden.
        let w = es
            .append("log-soft", ExpectedVersion::NoStream, vec![ev("A", 35)])
            .await
            .expect("recreate");
        assert_eq!(w.next_expected, 5);
        assert_eq!(read("log-soft").await, [35]);

        es.delete_stream("log-hard", ExpectedVersion::Any, true)
            .await
            .expect("tombstone");
        assert!(matches!(
            es.read_stream("log-hard", 0, Direction::Forwards, 10).await,
            Err(Error::StreamDeleted(_))
        ));
        assert!(matches!(
            es.append("log-hard", ExpectedVersion::Any, vec![ev("A", 0)])
                .await,
            Err(Error::StreamDeleted(_))
        ));
        // $all hides them too.
        let all = ns(&es
            .read_all(1, Direction::Forwards, 1000, &Filter::all())
            .await
            .expect("all"));
        assert_eq!(all, [3, 4, 13, 14, 35]);

        let before = es.head().await.expect("head");
        let report = es.scavenge(3).await.expect("scavenge");
        // 3 (count) + 3 (trunc) + 5 (age) + 5 (soft) + 5 (hard).
        assert_eq!(report.events_deleted, 21, "{backend:?}");
        assert!(report.batches >= 7, "small batches: {report:?}");
        assert_eq!(
            ns(&es
                .read_all(1, Direction::Forwards, 1000, &Filter::all())
                .await
                .expect("all")),
            all,
            "scavenging changes nothing a reader sees"
        );
        assert_eq!(es.head().await.expect("head"), before);
        assert_eq!(es.scavenge(3).await.expect("again").events_deleted, 0);
    }
}

#[tokio::test]
async fn bad_input_is_refused_and_nothing_is_stored() {
    for backend in BACKENDS {
        let (_db, es) = open(backend).await;
        es.declare_type(TypeDeclaration {
            event_type: "OrderPlaced".into(),
            visibility: Visibility::Private,
            json_schema: Some(json!({
                "type": "object",
                "required": ["order_id", "total"],
                "properties": {"order_id": {"type": "string"}, "total": {"type": "number", "minimum": 0}}
            })),
            registry: None,
            schema_ref: None,
            public: None,
        })
        .await
        .expect("declare");
        let good = || EventData::new("OrderPlaced", json!({"order_id": "o1", "total": 5}));
        let huge = EventData::new("Blob", json!({"x": "y".repeat(2 << 20)}));
        let cases: Vec<(&str, Vec<EventData>, &str)> = vec![
            ("order", vec![good()], "invalid stream name"),
            ("order-", vec![good()], "invalid stream name"),
            ("or der-1", vec![good()], "invalid stream name"),
            ("$all-1", vec![good()], "invalid stream name"),
            ("order-1", vec![huge], "bytes, more than the limit"),
            (
                "order-1",
                vec![
                    good(),
                    EventData::new("OrderPlaced", json!({"order_id": 7, "total": 5})),
                ],
                "does not match its declared schema",
            ),
            (
                "order-1",
                vec![EventData::new("OrderPlaced", json!({"order_id": "o2"}))],
                "does not match its declared schema",
            ),
            ("order-1", vec![EventData::new("", json!({}))], "event type"),
            ("order-1", vec![], "no events"),
            (
                "order-1",
                vec![good().with_id("same"), good().with_id("same")],
                "appears twice",
            ),
        ];
        for (stream, events, message) in cases {
            let err = es
                .append(stream, ExpectedVersion::Any, events)
                .await
                .expect_err(stream);
            assert!(
                err.to_string().contains(message),
                "{backend:?} {stream}: {err} should mention {message:?}"
            );
        }
        assert!(
            "sometimes".parse::<ExpectedVersion>().is_err(),
            "unknown expected-version form"
        );
        assert_eq!(es.head().await.expect("head"), 0, "nothing stored");
        assert!(
            es.list_streams(None, None, 10)
                .await
                .expect("list")
                .is_empty()
        );
        es.append("order-1", ExpectedVersion::Any, vec![good()])
            .await
            .expect("valid data passes");
        let bad_schema = es
            .declare_type(TypeDeclaration {
                event_type: "Broken".into(),
                visibility: Visibility::Private,
                json_schema: Some(json!({"type": "no-such-type"})),
                registry: None,
                schema_ref: None,
                public: None,
            })
            .await
            .expect_err("invalid JSON Schema");
        assert!(bad_schema.to_string().contains("invalid"), "{bad_schema}");
    }
}

#[tokio::test]
async fn declared_types_survive_a_restart() {
    let (db, es) = open(weft_store::Backend::Sqlite).await;
    es.declare_type(TypeDeclaration {
        event_type: "T".into(),
        visibility: Visibility::Private,
        json_schema: Some(json!({"type": "object", "required": ["a"]})),
        registry: None,
        schema_ref: Some(weft_eventstore::SchemaRef {
            subject: "t-value".into(),
            version: 3,
        }),
        public: None,
    })
    .await
    .expect("declare");
    drop(es);
    let es = common::reopen(&db).await;
    assert!(
        es.append(
            "x-1",
            ExpectedVersion::Any,
            vec![EventData::new("T", json!({}))]
        )
        .await
        .is_err()
    );
    es.append(
        "x-1",
        ExpectedVersion::Any,
        vec![EventData::new("T", json!({"a": 1}))],
    )
    .await
    .expect("valid");
    let e = &es
        .read_stream("x-1", 0, Direction::Forwards, 1)
        .await
        .expect("read")[0];
    assert_eq!(
        e.schema.as_ref().map(|s| (s.subject.as_str(), s.version)),
        Some(("t-value", 3)),
        "the declared schema reference is recorded on the event"
    );
}

#[tokio::test]
async fn the_scavenger_loop_reclaims_and_stops() {
    let (_db, es) = open(weft_store::Backend::Sqlite).await;
    es.append("log-1", ExpectedVersion::Any, vec![ev("A", 1), ev("A", 2)])
        .await
        .expect("append");
    es.delete_stream("log-1", ExpectedVersion::Any, true)
        .await
        .expect("tombstone");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let loop_es = es.clone();
    let task = tokio::spawn(async move {
        loop_es
            .run_scavenger(std::time::Duration::from_millis(10), 100, async move {
                let _ = stopped.await;
            })
            .await
    });
    common::within(async {
        loop {
            let left = weft_store::sqlx::query("SELECT COUNT(*) AS n FROM es_events")
                .fetch_one(es.store().pool())
                .await
                .expect("count");
            if weft_store::sqlx::Row::try_get::<i64, _>(&left, "n").expect("n") == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;
    stop.send(()).expect("stop");
    common::within(task)
        .await
        .expect("task")
        .expect("clean stop");
}
