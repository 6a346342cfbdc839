//! weft-client's failure handling against a real `weft serve`: blocking retries, the DLQ
//! envelope, retry topics that keep a partition flowing, and a circuit breaker over a local
//! HTTP downstream that pauses partitions while it is open.

mod client_common;
mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use client_common::{Events, broker, committed_offsets, consumer_config, create_topic, wait_until};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Headers, Message as _};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_client::resilience::dlq::{self, RetryTopics, TopicNaming};
use weft_client::resilience::{Breaker, BreakerConfig, BreakerState, Jitter, RetryPolicy};
use weft_client::{
    Consumer, HandlerError, Message, Producer, ProducerConfig, Record, RuntimeEvent,
};

/// A fast, bounded policy for tests (delays of a few milliseconds, jittered).
fn quick_policy(attempts: u32) -> RetryPolicy {
    RetryPolicy::default()
        .with_initial_delay(Duration::from_millis(5))
        .with_max_delay(Duration::from_millis(40))
        .with_max_attempts(attempts)
        .with_jitter(Jitter::Full)
}

/// A raw record read back from a topic.
#[derive(Debug, Clone)]
struct Raw {
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    headers: Vec<(String, String)>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Every record of `topic` (assign-only reader from the beginning, until `expected` are read).
fn read_all(bootstrap: &str, topic: &str, partitions: i32, expected: usize) -> Vec<Raw> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)
            .expect("offset");
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + common::SAFETY;
    while out.len() < expected {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {expected} records in {topic}",
            out.len()
        );
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.expect("record");
            out.push(Raw {
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().map(<[u8]>::to_vec),
                headers: m
                    .headers()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| {
                                (
                                    h.key.to_owned(),
                                    String::from_utf8_lossy(h.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            });
        }
    }
    out
}

fn high_watermark(bootstrap: &str, topic: &str, partition: i32) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("client");
    consumer
        .fetch_watermarks(topic, partition, Duration::from_secs(30))
        .expect("watermarks")
        .1
}

/// Each record fails twice with a retryable error, then succeeds: retried in place (3
/// attempts each), nothing reaches the DLQ, everything is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transient_failures_are_retried_and_nothing_is_dead_lettered() {
    let b = broker();
    create_topic(&b.bootstrap, "tr", 2).await;
    create_topic(&b.bootstrap, "tr.dlq", 2).await;
    let producer = Producer::new(&ProducerConfig::new(&b.bootstrap)).expect("producer");
    for i in 0..20 {
        producer
            .send(Record::new("tr").key(format!("k{i}")).payload("x"))
            .await
            .expect("send");
    }
    let attempts: Arc<Mutex<HashMap<(i32, i64), u32>>> = Arc::default();
    let mut config = consumer_config(&b.bootstrap, "g-tr", &["tr"]);
    config.retry(Some(quick_policy(5)));
    let events = Events::default();
    events.attach(&mut config);
    let consumer = Consumer::new(config).expect("consumer");
    let stop = consumer.shutdown_handle();
    let a = attempts.clone();
    let run = tokio::spawn(consumer.run(move |m: Message| {
        let a = a.clone();
        async move {
            let n = {
                let mut a = a.lock().expect("attempts");
                let n = a.entry((m.partition, m.offset)).or_default();
                *n += 1;
                *n
            };
            if n <= 2 {
                return Err(HandlerError::retryable(format!("downstream timeout #{n}")));
            }
            Ok(())
        }
    }));
    wait_until("all committed", || {
        committed_offsets(&b.bootstrap, "g-tr", "tr", 2)
            .iter()
            .sum::<i64>()
            == 20
    })
    .await;
    stop.shutdown();
    run.await.expect("join").expect("run");
    let attempts = attempts.lock().expect("attempts").clone();
    assert_eq!(attempts.len(), 20);
    assert!(attempts.values().all(|&n| n == 3), "{attempts:?}");
    assert_eq!(
        high_watermark(&b.bootstrap, "tr.dlq", 0) + high_watermark(&b.bootstrap, "tr.dlq", 1),
        0
    );
    assert!(
        !events
            .snapshot()
            .iter()
            .any(|e| matches!(e, RuntimeEvent::Forwarded { .. }))
    );
}

/// A non-retryable failure goes to the DLQ at once, a retryable one after the policy's last
/// attempt; each dead letter has the same key and value, the original headers, and every
/// envelope header. The partition is committed past them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn permanent_failures_land_in_the_dlq_with_every_header() {
    let b = broker();
    create_topic(&b.bootstrap, "pf", 1).await;
    create_topic(&b.bootstrap, "pf.dlq", 1).await;
    let producer = Producer::new(&ProducerConfig::new(&b.bootstrap)).expect("producer");
    let mut ids = HashMap::new();
    for key in ["ok-1", "bad", "ok-2", "flaky", "ok-3"] {
        let d = producer
            .send(
                Record::new("pf")
                    .key(key)
                    .payload(format!("body-{key}"))
                    .header("app-header", key),
            )
            .await
            .expect("send");
        ids.insert(key, (d.offset, d.message_id));
    }
    let mut config = consumer_config(&b.bootstrap, "g-pf", &["pf"]);
    config.retry(Some(quick_policy(3)));
    let consumer = Consumer::new(config).expect("consumer");
    let stop = consumer.shutdown_handle();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let run = tokio::spawn(consumer.run(move |m: Message| {
        let c = c.clone();
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            match m.key.as_deref() {
                Some(b"bad") => Err(HandlerError::permanent("amount must be positive")),
                Some(b"flaky") => Err(HandlerError::retryable("payment gateway 503")),
                _ => Ok(()),
            }
        }
    }));
    wait_until("all committed", || {
        committed_offsets(&b.bootstrap, "g-pf", "pf", 1) == vec![5]
    })
    .await;
    stop.shutdown();
    run.await.expect("join").expect("run");
    // 3 successes, 1 attempt for the permanent failure, 3 for the retryable one.
    assert_eq!(calls.load(Ordering::SeqCst), 3 + 1 + 3);

    let letters = read_all(&b.bootstrap, "pf.dlq", 1, 2);
    assert_eq!(letters.len(), 2);
    for (key, class, message, attempts) in [
        ("bad", "non-retryable", "amount must be positive", "1"),
        ("flaky", "retryable", "payment gateway 503", "3"),
    ] {
        let l = letters
            .iter()
            .find(|l| l.key.as_deref() == Some(key.as_bytes()))
            .unwrap_or_else(|| panic!("no dead letter for {key}: {letters:?}"));
        let (offset, message_id) = &ids[key];
        assert_eq!(l.payload.as_deref(), Some(format!("body-{key}").as_bytes()));
        assert_eq!(l.header("app-header"), Some(key), "original headers kept");
        assert_eq!(l.header("weft-message-id"), Some(message_id.as_str()));
        assert_eq!(l.header(dlq::VERSION), Some("1"));
        assert_eq!(l.header(dlq::ORIGINAL_TOPIC), Some("pf"));
        assert_eq!(l.header(dlq::ORIGINAL_PARTITION), Some("0"));
        assert_eq!(
            l.header(dlq::ORIGINAL_OFFSET),
            Some(offset.to_string().as_str())
        );
        assert!(
            l.header(dlq::ORIGINAL_TIMESTAMP)
                .is_some_and(|t| t.parse::<i64>().expect("ms") > 0)
        );
        assert_eq!(l.header(dlq::CONSUMER_GROUP), Some("g-pf"));
        assert_eq!(l.header(dlq::SOURCE), Some("consumer"));
        assert_eq!(l.header(dlq::ERROR_CLASS), Some(class));
        assert_eq!(l.header(dlq::ERROR_MESSAGE), Some(message));
        assert_eq!(l.header(dlq::ATTEMPTS), Some(attempts));
        let first: i64 = l
            .header(dlq::FIRST_FAILURE)
            .expect("first")
            .parse()
            .expect("ms");
        let last: i64 = l
            .header(dlq::LAST_FAILURE)
            .expect("last")
            .parse()
            .expect("ms");
        assert!(first > 0 && first <= last, "{first} {last}");
        // The envelope parses with the shared parser (what `weft dlq` reads).
        let headers: Vec<dlq::Header> = l
            .headers
            .iter()
            .map(|(k, v)| dlq::Header::new(k.clone(), v.clone()))
            .collect();
        let parsed = dlq::DeadLetter::parse(&headers).expect("envelope");
        assert_eq!(parsed.original_offset, *offset);
    }
}

/// With retry topics, a record that keeps failing moves through `rt.retry.1`, `rt.retry.2`
/// and lands in `rt.dlq`, while the records behind it in its partition are handled and
/// committed without waiting for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retry_topics_keep_the_partition_flowing() {
    let b = broker();
    for t in ["rt", "rt.retry.1", "rt.retry.2", "rt.dlq"] {
        create_topic(&b.bootstrap, t, 1).await;
    }
    let producer = Producer::new(&ProducerConfig::new(&b.bootstrap)).expect("producer");
    producer
        .send(Record::new("rt").key("poison").payload("p"))
        .await
        .expect("send");
    for i in 0..10 {
        producer
            .send(Record::new("rt").key(format!("k{i}")).payload("x"))
            .await
            .expect("send");
    }
    let gate = Arc::new(AtomicBool::new(false));
    let handled: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let mut config = consumer_config(&b.bootstrap, "g-rt", &["rt"]);
    config.retry_topics(
        RetryTopics::new(
            TopicNaming::default(),
            vec![Duration::from_millis(50), Duration::from_millis(100)],
        )
        .expect("retry topics"),
    );
    let events = Events::default();
    events.attach(&mut config);
    let consumer = Consumer::new(config).expect("consumer");
    let stop = consumer.shutdown_handle();
    let (g, h) = (gate.clone(), handled.clone());
    let run = tokio::spawn(consumer.run(move |m: Message| {
        let (g, h) = (g.clone(), h.clone());
        async move {
            let key = String::from_utf8_lossy(m.key.as_deref().unwrap_or_default()).into_owned();
            h.lock()
                .expect("handled")
                .push((m.topic.clone(), key.clone()));
            if key == "poison" {
                // Fails on the main topic only once the other ten are through, so the test
                // can see them pass it; then on every retry level.
                while !g.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                return Err(HandlerError::retryable("still broken"));
            }
            Ok(())
        }
    }));
    wait_until("the ten records behind the poison handled", || {
        handled
            .lock()
            .expect("handled")
            .iter()
            .filter(|(t, k)| t == "rt" && k != "poison")
            .count()
            == 10
    })
    .await;
    gate.store(true, Ordering::SeqCst);
    wait_until("main partition committed to the end", || {
        committed_offsets(&b.bootstrap, "g-rt", "rt", 1) == vec![11]
    })
    .await;
    let letters = read_all(&b.bootstrap, "rt.dlq", 1, 1);
    stop.shutdown();
    run.await.expect("join").expect("run");

    let handled = handled.lock().expect("handled").clone();
    let poison_topics: Vec<&str> = handled
        .iter()
        .filter(|(_, k)| k == "poison")
        .map(|(t, _)| t.as_str())
        .collect();
    assert_eq!(poison_topics, vec!["rt", "rt.retry.1", "rt.retry.2"]);
    let l = &letters[0];
    assert_eq!(l.key.as_deref(), Some(&b"poison"[..]));
    assert_eq!(l.header(dlq::ORIGINAL_TOPIC), Some("rt"));
    assert_eq!(l.header(dlq::ORIGINAL_OFFSET), Some("0"));
    assert_eq!(l.header(dlq::ATTEMPTS), Some("3"), "one per level");
    assert_eq!(l.header(dlq::ERROR_CLASS), Some("retryable"));
    assert_eq!(
        l.header(dlq::RETRY_LEVEL),
        None,
        "retry headers stripped in the DLQ"
    );
    let forwarded: Vec<String> = events
        .snapshot()
        .into_iter()
        .filter_map(|e| match e {
            RuntimeEvent::Forwarded { to, .. } => Some(to),
            _ => None,
        })
        .collect();
    assert_eq!(forwarded, vec!["rt.retry.1", "rt.retry.2", "rt.dlq"]);
}

/// A local HTTP downstream answering 503 while `down`. The handler calls it through a
/// breaker; the breaker opens, every partition pauses, the test brings the downstream back,
/// the breaker half-opens, its probe succeeds, it closes, partitions resume and every record
/// is handled successfully — nothing lost, nothing dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn open_breaker_pauses_partitions_and_recovers_without_loss() {
    let b = broker();
    create_topic(&b.bootstrap, "br", 2).await;
    create_topic(&b.bootstrap, "br.dlq", 2).await;
    let down = Arc::new(AtomicBool::new(true));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let requests = Arc::new(AtomicUsize::new(0));
    {
        let (down, requests) = (down.clone(), requests.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let (down, requests) = (down.clone(), requests.clone());
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = sock.read(&mut buf).await;
                    requests.fetch_add(1, Ordering::SeqCst);
                    let status = if down.load(Ordering::SeqCst) {
                        "503 Service Unavailable"
                    } else {
                        "200 OK"
                    };
                    let _ = sock
                        .write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes())
                        .await;
                });
            }
        });
    }
    let producer = Producer::new(&ProducerConfig::new(&b.bootstrap)).expect("producer");
    for i in 0..30 {
        producer
            .send(Record::new("br").key(format!("k{i}")).payload("x"))
            .await
            .expect("send");
    }
    let mut bc = BreakerConfig::new("payments-downstream");
    bc.window_size = 4;
    bc.minimum_calls = 4;
    bc.failure_rate_threshold = 0.5;
    bc.wait_in_open = Duration::from_millis(300);
    bc.permitted_calls_in_half_open = 1;
    let breaker = Breaker::new(bc);
    let mut states = breaker.subscribe();
    let seen_states: Arc<Mutex<Vec<BreakerState>>> = Arc::default();
    {
        let seen = seen_states.clone();
        tokio::spawn(async move {
            while states.changed().await.is_ok() {
                let s = *states.borrow_and_update();
                seen.lock().expect("states").push(s);
            }
        });
    }
    let mut config = consumer_config(&b.bootstrap, "g-br", &["br"]);
    // One lane: the first record fails 4 times in a row, which opens the breaker (the 4th
    // failure is then not counted). With 5 attempts allowed, a runtime that kept counting
    // the breaker's refusals would dead-letter it; this one waits instead.
    config
        .retry(Some(quick_policy(5)))
        .pause_while_open(&breaker);
    config.lanes = 1;
    let events = Events::default();
    events.attach(&mut config);
    let consumer = Consumer::new(config).expect("consumer");
    let stop = consumer.shutdown_handle();
    let succeeded: Arc<Mutex<Vec<(i32, i64)>>> = Arc::default();
    let (s, br) = (succeeded.clone(), breaker.clone());
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let run = tokio::spawn(consumer.run(move |m: Message| {
        let (s, br, client) = (s.clone(), br.clone(), client.clone());
        async move {
            let permit = br.try_acquire().map_err(HandlerError::retryable)?;
            let uri: hyper::Uri = format!("http://{addr}/pay").parse().expect("uri");
            let ok = matches!(client.get(uri).await, Ok(r) if r.status().is_success());
            let _ = permit.record(!ok);
            if !ok {
                return Err(HandlerError::retryable("downstream 503"));
            }
            s.lock().expect("succeeded").push((m.partition, m.offset));
            Ok(())
        }
    }));
    let all_paused = || {
        let ev = events.snapshot();
        [0, 1].iter().all(|p| {
            ev.iter()
                .any(|e| matches!(e, RuntimeEvent::Paused(l) if l.contains(&("br".into(), *p))))
        })
    };
    wait_until("breaker open and both partitions paused", || {
        breaker.state() == BreakerState::Open && all_paused()
    })
    .await;
    down.store(false, Ordering::SeqCst);
    wait_until("every record handled", || {
        succeeded.lock().expect("succeeded").len() >= 30
    })
    .await;
    wait_until("all committed", || {
        committed_offsets(&b.bootstrap, "g-br", "br", 2)
            .iter()
            .sum::<i64>()
            == 30
    })
    .await;
    stop.shutdown();
    run.await.expect("join").expect("run");

    let succeeded = succeeded.lock().expect("succeeded").clone();
    let unique: std::collections::HashSet<_> = succeeded.iter().collect();
    assert_eq!(unique.len(), 30, "no record lost");
    let states = seen_states.lock().expect("states").clone();
    assert!(states.contains(&BreakerState::Open), "{states:?}");
    assert!(states.contains(&BreakerState::HalfOpen), "{states:?}");
    assert_eq!(states.last(), Some(&BreakerState::Closed), "{states:?}");
    assert!(
        events
            .snapshot()
            .iter()
            .any(|e| matches!(e, RuntimeEvent::Resumed(_)))
    );
    assert_eq!(
        high_watermark(&b.bootstrap, "br.dlq", 0) + high_watermark(&b.bootstrap, "br.dlq", 1),
        0,
        "nothing dead-lettered: no attempts burnt while open"
    );
    assert!(requests.load(Ordering::SeqCst) >= 30 + 4);
}

/// A hanging downstream behind a bulkhead (2 concurrent calls, no queue): of six records that
/// need it — on six different lanes, so all try at once — two hold the bulkhead's slots and
/// four fail fast and are parked in the DLQ (class `park`) instead of tying up four more
/// lanes, which stay free for records that do not need the downstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bulkhead_bounds_what_a_hanging_downstream_takes() {
    use weft_client::resilience::{Bulkhead, BulkheadConfig};

    let b = broker();
    create_topic(&b.bootstrap, "bh", 1).await;
    create_topic(&b.bootstrap, "bh.dlq", 1).await;
    let producer = Producer::new(&ProducerConfig::new(&b.bootstrap)).expect("producer");
    // Keys x-0..x-5 fall on lanes 0, 3, 6, 1, 4, 7 of 8 (stable FNV-1a lane hash).
    for i in 0..6 {
        producer
            .send(
                Record::new("bh")
                    .key(format!("x-{i}"))
                    .payload("needs-downstream"),
            )
            .await
            .expect("send");
    }
    for i in 0..10 {
        producer
            .send(Record::new("bh").key(format!("y-{i}")).payload("local"))
            .await
            .expect("send");
    }
    let mut bc = BulkheadConfig::new("hanging-downstream");
    bc.max_concurrent = 2;
    bc.max_queue = 0;
    let bulkhead = Bulkhead::new(bc);
    let gate = Arc::new(AtomicBool::new(false));
    let inside = Arc::new(AtomicUsize::new(0));
    let max_inside = Arc::new(AtomicUsize::new(0));
    let local_done = Arc::new(AtomicUsize::new(0));
    let mut config = consumer_config(&b.bootstrap, "g-bh", &["bh"]);
    config.lanes = 8;
    config.retry(None);
    let events = Events::default();
    events.attach(&mut config);
    let consumer = Consumer::new(config).expect("consumer");
    let stop = consumer.shutdown_handle();
    let (bh, g, ins, mx, ld) = (
        bulkhead.clone(),
        gate.clone(),
        inside.clone(),
        max_inside.clone(),
        local_done.clone(),
    );
    let run = tokio::spawn(consumer.run(move |m: Message| {
        let (bh, g, ins, mx, ld) = (bh.clone(), g.clone(), ins.clone(), mx.clone(), ld.clone());
        async move {
            if m.payload.as_deref() == Some(&b"local"[..]) {
                ld.fetch_add(1, Ordering::SeqCst);
                return Ok(());
            }
            let _permit = bh.acquire().await.map_err(HandlerError::park)?;
            let now = ins.fetch_add(1, Ordering::SeqCst) + 1;
            mx.fetch_max(now, Ordering::SeqCst);
            // The downstream hangs until the test lets it answer.
            while !g.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            ins.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        }
    }));
    let parked = || {
        events
            .snapshot()
            .iter()
            .filter(|e| matches!(e, RuntimeEvent::Forwarded { to, .. } if to == "bh.dlq"))
            .count()
    };
    wait_until("four records parked while two hang", || parked() == 4).await;
    assert_eq!(
        inside.load(Ordering::SeqCst),
        2,
        "two calls hang in the downstream"
    );
    gate.store(true, Ordering::SeqCst);
    wait_until("all committed", || {
        committed_offsets(&b.bootstrap, "g-bh", "bh", 1) == vec![16]
    })
    .await;
    stop.shutdown();
    run.await.expect("join").expect("run");
    assert_eq!(
        max_inside.load(Ordering::SeqCst),
        2,
        "never more than the bulkhead's share"
    );
    assert_eq!(local_done.load(Ordering::SeqCst), 10);
    let letters = read_all(&b.bootstrap, "bh.dlq", 1, 4);
    assert!(
        letters
            .iter()
            .all(|l| l.header(dlq::ERROR_CLASS) == Some("park")),
        "{letters:?}"
    );
}
