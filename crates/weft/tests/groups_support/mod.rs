//! What the consumer-group tests (`group_lag`, `group_cli`) share on top of `common`: a
//! server in its own directory, JSON over HTTP, the `weft` CLI as a subprocess, and
//! librdkafka clients for producing, committing and reading committed offsets — so every
//! check of the server goes through the Kafka protocol or the HTTP API, never its files.

// Each test binary uses a different subset.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

pub(crate) use crate::common::Run;
use crate::common::{SAFETY, Server, run_weft};

/// A running `weft serve` in its own temporary directory.
pub(crate) struct Cluster {
    // Declared first so the server is stopped before its directory is removed.
    pub(crate) server: Server,
    pub(crate) dir: tempfile::TempDir,
}

impl Cluster {
    /// A server sampling lag every 200 ms over windows of 4 samples.
    pub(crate) fn start() -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = Server::start_with(
            dir.path(),
            &[
                "--kafka-listen",
                "127.0.0.1:0",
                "--registry-listen",
                "127.0.0.1:0",
                "--lag-interval-ms",
                "200",
                "--lag-window",
                "4",
            ],
        );
        Cluster { server, dir }
    }

    pub(crate) fn bootstrap(&self) -> String {
        self.server.kafka_addr().to_string()
    }

    /// `GET path` on the HTTP listener: (status code, JSON body).
    pub(crate) fn get(&self, path: &str) -> (u16, Value) {
        let addr = self.server.http_addr;
        let mut stream = TcpStream::connect_timeout(&addr, SAFETY).expect("connect");
        stream.set_read_timeout(Some(SAFETY)).expect("timeout");
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .expect("write request");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read response");
        let code = response
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("bad response: {response}"));
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or_default();
        let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
        (code, json)
    }

    /// Polls `/v1/groups/{group}` until `done` holds for the answer (200 only), within the
    /// safety limit; returns that answer. Every status seen is kept for the failure message.
    pub(crate) fn wait_group(
        &self,
        group: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + SAFETY;
        let mut seen: Vec<String> = Vec::new();
        loop {
            let (code, json) = self.get(&format!("/v1/groups/{group}"));
            if code == 200 {
                if done(&json) {
                    return json;
                }
                let s = format!("{}/lag {}", json["status"], json["total_lag"]);
                if seen.last() != Some(&s) {
                    seen.push(s);
                }
            }
            assert!(
                Instant::now() < deadline,
                "{group}: never {what}; statuses seen: {seen:?}; last answer {code} {json}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `weft <args>` against this server.
    pub(crate) fn cli(&self, args: &[&str]) -> Run {
        run_weft(self.dir.path(), &self.bootstrap(), args, None)
    }

    /// Like [`Cluster::cli`], and asserts exit code 0.
    pub(crate) fn ok(&self, args: &[&str]) -> Run {
        let run = self.cli(args);
        assert_eq!(run.code, Some(0), "weft {args:?} failed: {}", run.stderr);
        run
    }

    pub(crate) fn producer(&self) -> BaseProducer {
        ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("linger.ms", "0")
            .create()
            .expect("producer")
    }

    /// Writes `count` records to `topic`/`partition` with the given timestamps (`None`: the
    /// producer's clock) and waits until all are acknowledged.
    pub(crate) fn produce(&self, topic: &str, partition: i32, timestamps: &[Option<i64>]) {
        let producer = self.producer();
        produce_with(&producer, topic, partition, timestamps);
    }

    /// A client carrying `group`'s id that never subscribes: OffsetFetch and OffsetCommit
    /// outside the group's generations, as admin tools do.
    pub(crate) fn group_client(&self, group: &str) -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("group client")
    }

    /// Commits `offsets` (topic, partition, offset) for `group` from outside the group.
    pub(crate) fn commit(&self, group: &str, offsets: &[(&str, i32, i64)]) {
        let client = self.group_client(group);
        let mut tpl = TopicPartitionList::new();
        for (t, p, o) in offsets {
            tpl.add_partition_offset(t, *p, Offset::Offset(*o))
                .expect("offset");
        }
        client.commit(&tpl, CommitMode::Sync).expect("commit");
    }

    /// The committed offsets of `group` on `partitions` of `topic`, read with OffsetFetch
    /// (`None`: nothing committed).
    pub(crate) fn committed(
        &self,
        group: &str,
        topic: &str,
        partitions: &[i32],
    ) -> Vec<Option<i64>> {
        let client = self.group_client(group);
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            tpl.add_partition(topic, *p);
        }
        let tpl = client.committed_offsets(tpl, SAFETY).expect("committed");
        partitions
            .iter()
            .map(|p| {
                match tpl
                    .find_partition(topic, *p)
                    .map(|e| e.offset())
                    .expect("partition in answer")
                {
                    Offset::Offset(n) => Some(n),
                    _ => None,
                }
            })
            .collect()
    }

    /// A subscribed member of `group` on `topic` that polls on its own thread (so it stays
    /// in the group) and never commits unless told; see [`Member`].
    pub(crate) fn member(&self, group: &str, topic: &str) -> Member {
        Member::start(&self.bootstrap(), group, topic)
    }
}

pub(crate) fn produce_with(
    producer: &BaseProducer,
    topic: &str,
    partition: i32,
    timestamps: &[Option<i64>],
) {
    for (i, ts) in timestamps.iter().enumerate() {
        let payload = format!("v{i}");
        let mut record = BaseRecord::<(), String>::to(topic)
            .partition(partition)
            .payload(&payload);
        if let Some(ts) = ts {
            record = record.timestamp(*ts);
        }
        producer.send(record).map_err(|(e, _)| e).expect("send");
    }
    producer.flush(SAFETY).expect("flush");
}

pub(crate) fn now_ms() -> i64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(d.as_millis()).expect("ms fit")
}

/// What a [`Member`] does on each turn of its loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Poll only: stays in the group, commits nothing.
    Idle,
    /// Commit one offset further than the last commit every turn (a slow consumer).
    CommitOneMore,
    /// Commit the log end every turn (caught up).
    CommitEnd,
}

/// A consumer that joined a group through `subscribe`, run by a thread until dropped (it
/// then closes, leaving the group).
pub(crate) struct Member {
    mode: mpsc::Sender<Option<Mode>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Member {
    fn start(bootstrap: &str, group: &str, topic: &str) -> Member {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "500")
            .create()
            .expect("member");
        consumer.subscribe(&[topic]).expect("subscribe");
        let topic = topic.to_owned();
        let (tx, rx) = mpsc::channel::<Option<Mode>>();
        let thread = thread::spawn(move || {
            let mut mode = Mode::Idle;
            loop {
                match rx.try_recv() {
                    Ok(Some(m)) => mode = m,
                    Ok(None) | Err(mpsc::TryRecvError::Disconnected) => break,
                    Err(mpsc::TryRecvError::Empty) => {}
                }
                let _ = consumer.poll(Duration::from_millis(100));
                let Ok(assignment) = consumer.assignment() else {
                    continue;
                };
                let partitions: Vec<i32> = assignment
                    .elements()
                    .iter()
                    .map(|e| e.partition())
                    .collect();
                if partitions.is_empty() || mode == Mode::Idle {
                    continue;
                }
                let Ok(committed) = consumer.committed(SAFETY) else {
                    continue;
                };
                let mut tpl = TopicPartitionList::new();
                for p in partitions {
                    let Ok((_, high)) = consumer.fetch_watermarks(&topic, p, SAFETY) else {
                        continue;
                    };
                    let current = committed
                        .find_partition(&topic, p)
                        .and_then(|e| match e.offset() {
                            Offset::Offset(n) => Some(n),
                            _ => None,
                        })
                        .unwrap_or(0);
                    let next = match mode {
                        Mode::CommitOneMore => (current + 1).min(high),
                        _ => high,
                    };
                    tpl.add_partition_offset(&topic, p, Offset::Offset(next))
                        .expect("offset");
                }
                // A commit refused during a rebalance is retried next turn.
                let _ = consumer.commit(&tpl, CommitMode::Sync);
            }
            // Dropping the consumer closes it: LeaveGroup.
        });
        Member {
            mode: tx,
            thread: Some(thread),
        }
    }

    pub(crate) fn set(&self, mode: Mode) {
        let _ = self.mode.send(Some(mode));
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.mode.send(None);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
