//! A real embedded broker on a port-0 listener, over a log in a temporary directory, and
//! librdkafka helpers to give it groups with committed offsets. Shared by the integration
//! tests and the unit tests of `offsets` (included there by path).
#![allow(dead_code)] // each user takes a different subset

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;
use weft_log::{Log, LogConfig};

pub(crate) struct TestBroker {
    pub(crate) rt: tokio::runtime::Runtime,
    pub(crate) addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    _tmp: tempfile::TempDir,
}

impl TestBroker {
    pub(crate) fn start() -> TestBroker {
        let tmp = tempfile::tempdir().expect("tempdir");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let log = Arc::new(Log::open(&tmp.path().join("log"), LogConfig::default()).expect("log"));
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let config =
            weft_broker::BrokerConfig::new(tmp.path().join("broker"), "127.0.0.1", addr.port());
        let (tx, rx) = watch::channel(false);
        rt.spawn(weft_broker::run(config, log, listener, rx));
        TestBroker {
            rt,
            addr,
            shutdown: tx,
            _tmp: tmp,
        }
    }

    pub(crate) fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// Writes `count` records to partition 0 of `topic` (created on first use).
    pub(crate) fn produce(&self, topic: &str, count: usize) {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("linger.ms", "0")
            .create()
            .expect("producer");
        for i in 0..count {
            let payload = format!("record {i}");
            producer
                .send(
                    BaseRecord::<(), _>::to(topic)
                        .partition(0)
                        .payload(&payload),
                )
                .expect("send");
        }
        producer.flush(Duration::from_secs(30)).expect("flush");
    }

    /// Commits `offsets` (topic, partition, offset) for `group` from a client that never
    /// joins it, as admin tools do.
    pub(crate) fn commit(&self, group: &str, offsets: &[(&str, i32, i64)]) {
        let client: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("group client");
        let mut tpl = TopicPartitionList::new();
        for (t, p, o) in offsets {
            tpl.add_partition_offset(t, *p, Offset::Offset(*o))
                .expect("offset");
        }
        client.commit(&tpl, CommitMode::Sync).expect("commit");
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}
