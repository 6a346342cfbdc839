//! Helpers shared by the weft-client tests (`client_*.rs`): a `weft serve`, topics, raw
//! records, polling for a condition, and the runtime's event log.

#![allow(dead_code)] // each client_* test binary uses a different subset

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::{Offset, TopicPartitionList};
use weft_client::{ConsumerConfig, RuntimeEvent};

use crate::common::{SAFETY, Server};

/// A `weft serve` in a temporary directory.
pub(crate) struct Broker {
    pub(crate) server: Server,
    pub(crate) bootstrap: String,
    _dir: tempfile::TempDir,
}

pub(crate) fn broker() -> Broker {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let bootstrap = server.kafka_addr().to_string();
    Broker {
        server,
        bootstrap,
        _dir: dir,
    }
}

pub(crate) async fn create_topic(bootstrap: &str, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let results = admin
        .create_topics(
            [&NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .expect("create_topics answered");
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("cannot create topic {t}: {e:?}"));
    }
}

/// Polls `cond` until it holds; panics naming `what` after the safety limit (a hang guard,
/// not a speed assertion).
pub(crate) async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + SAFETY;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The runtime's events, recorded through `ConsumerConfig::on_event`.
#[derive(Clone, Default)]
pub(crate) struct Events(pub(crate) Arc<Mutex<Vec<RuntimeEvent>>>);

impl Events {
    pub(crate) fn attach(&self, config: &mut ConsumerConfig) {
        let log = self.0.clone();
        config.on_event(move |e| log.lock().expect("event log").push(e.clone()));
    }

    pub(crate) fn snapshot(&self) -> Vec<RuntimeEvent> {
        self.0.lock().expect("event log").clone()
    }

    /// The last committed offset per partition.
    pub(crate) fn committed(&self, topic: &str, partition: i32) -> Option<i64> {
        self.snapshot().iter().rev().find_map(|e| match e {
            RuntimeEvent::Committed(list) => list
                .iter()
                .find(|((t, p), _)| t == topic && *p == partition)
                .map(|(_, o)| *o),
            _ => None,
        })
    }
}

/// A consumer config with a short commit interval for tests.
pub(crate) fn consumer_config(bootstrap: &str, group: &str, topics: &[&str]) -> ConsumerConfig {
    let mut c = ConsumerConfig::new(bootstrap, group, topics);
    c.commit_interval = Duration::from_millis(100);
    c.set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "500")
        .set("topic.metadata.refresh.interval.ms", "1000");
    c
}

/// The offsets `group` committed for `topic`'s partitions `0..partitions` (-1: none), read
/// from the broker.
pub(crate) fn committed_offsets(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = consumer
        .committed_offsets(tpl, Duration::from_secs(30))
        .expect("committed offsets");
    (0..partitions)
        .map(|p| match got.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => -1,
        })
        .collect()
}

/// Commits `offset` for every partition of `topic` on behalf of `group` (which must have no
/// live members): a rewind, to deliver everything again.
pub(crate) fn rewind(bootstrap: &str, group: &str, topic: &str, partitions: i32, offset: i64) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Offset(offset))
            .expect("offset");
    }
    consumer
        .commit(&tpl, rdkafka::consumer::CommitMode::Sync)
        .expect("rewind commit");
}
