//! Crash test of the embedded Kafka broker: an idempotent producer with acks=all writes
//! while the real `weft serve` is killed with SIGKILL and restarted on the same data dir and
//! port. Afterwards every acknowledged record is present exactly once, and no record is
//! duplicated. Timeouts are safety limits against hangs, never assertions about speed.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use common::{SAFETY, Server};

#[derive(Default)]
struct Acks {
    acked: Mutex<Vec<u64>>,
    failed: AtomicUsize,
}
impl ClientContext for Acks {}
impl ProducerContext for Acks {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(m) => {
                let v: u64 = std::str::from_utf8(m.payload().unwrap_or_default())
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .expect("numeric payload");
                self.acked.lock().expect("lock").push(v);
            }
            Err(_) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[test]
fn sigkill_mid_stream_loses_no_acknowledged_record_and_duplicates_none() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start_with(tmp.path(), &["--kafka-listen", "127.0.0.1:0"]);
    let addr = server.kafka_addr();
    let bootstrap = addr.to_string();
    let producer: BaseProducer<Acks> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "120000")
        .set("reconnect.backoff.ms", "10")
        .set("reconnect.backoff.max.ms", "100")
        .create_with_context(Acks::default())
        .expect("producer");
    const N: u64 = 30_000;
    let mut killed = false;
    for i in 0..N {
        let v = i.to_string();
        let key = (i % 16).to_string();
        let mut record = BaseRecord::to("crash")
            .key(key.as_bytes())
            .payload(v.as_bytes());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(5));
                }
            }
        }
        producer.poll(Duration::ZERO);
        // Half sent and at least a quarter acknowledged: kill while the rest of the first
        // half may be in flight and the second half is still to come.
        if i == N / 2 {
            let deadline = Instant::now() + SAFETY;
            while (producer.context().acked.lock().expect("lock").len() as u64) < N / 4 {
                assert!(
                    Instant::now() < deadline,
                    "no acknowledgements before the kill"
                );
                producer.poll(Duration::from_millis(10));
            }
            server.kill().expect("SIGKILL");
            server.wait();
            killed = true;
            let again = Server::start_with(tmp.path(), &["--kafka-listen", &bootstrap]);
            assert_eq!(again.kafka_addr(), addr);
            server = again;
        }
    }
    producer.flush(SAFETY).expect("flush");
    assert!(killed, "the server was never killed");
    let acked = producer.context().acked.lock().expect("lock").clone();
    let failed = producer.context().failed.load(Ordering::Relaxed);
    assert_eq!(acked.len() + failed, N as usize);

    // Read everything back.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "kill9-assign-only")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let md = consumer
        .fetch_metadata(Some("crash"), SAFETY)
        .expect("metadata");
    let partitions = md.topics()[0].partitions().len() as i32;
    let mut tpl = TopicPartitionList::new();
    let mut end = 0;
    for p in 0..partitions {
        tpl.add_partition_offset("crash", p, Offset::Beginning)
            .expect("tpl");
        end += consumer
            .fetch_watermarks("crash", p, SAFETY)
            .expect("watermarks")
            .1;
    }
    consumer.assign(&tpl).expect("assign");
    let mut seen: HashMap<u64, usize> = HashMap::new();
    let mut n = 0i64;
    let deadline = Instant::now() + SAFETY;
    while n < end {
        assert!(Instant::now() < deadline, "consumed {n} of {end}");
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.expect("message");
            let v: u64 = std::str::from_utf8(m.payload().expect("payload"))
                .expect("utf8")
                .parse()
                .expect("number");
            *seen.entry(v).or_default() += 1;
            n += 1;
        }
    }
    println!(
        "acknowledged {}, failed {failed}, stored {end}",
        acked.len()
    );
    let duplicated: Vec<_> = seen
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(v, _)| *v)
        .collect();
    assert!(
        duplicated.is_empty(),
        "{} records duplicated, e.g. {:?}",
        duplicated.len(),
        &duplicated[..duplicated.len().min(5)]
    );
    let missing: Vec<_> = acked
        .iter()
        .filter(|v| !seen.contains_key(v))
        .copied()
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged records lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );

    // SIGTERM for a clean stop.
    let pid = server.pid().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let _ = server.wait();
}
