//! Compatibility with kafkajs (a pure-JavaScript client): `tests/compat/kafkajs_compat.js`
//! runs admin calls, idempotent produce and a group consumer (kafkajs consumes only through
//! consumer groups) against a real broker, then this side also consumes every codec's
//! topic with librdkafka and checks the stored batches.
//!
//! `cargo xtask test` installs kafkajs under `target/npm` and sets `NODE_PATH`; without it
//! this test fails naming what to install.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::TestBroker;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

fn node_path() -> PathBuf {
    match std::env::var_os("NODE_PATH") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../target/npm/node_modules"
        )),
    }
}

fn require_kafkajs() {
    let probe = Command::new("node")
        .args([
            "-e",
            "for (const m of ['kafkajs', 'kafkajs-snappy', 'lz4js', 'zstd-codec']) require(m)",
        ])
        .env("NODE_PATH", node_path())
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "kafkajs or a codec package not found in NODE_PATH={}: `cargo xtask test` installs them (npm install --prefix target/npm kafkajs@2 kafkajs-snappy@1 lz4js@0.2 zstd-codec@0.1)\n{}",
            node_path().display(),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("node not found ({e}): install the Debian package nodejs"),
    }
}

#[test]
fn kafkajs_admin_and_idempotent_produce() {
    require_kafkajs();
    let b = TestBroker::start();
    let mut node = Command::new("node");
    node.env("NODE_PATH", node_path());
    common::run_compat(
        &b,
        node,
        "kafkajs_compat.js",
        &[
            "group consumer js-none: 20000 records ok",
            "group consumer js-lz4: 20000 records ok",
            "group consumer js-zstd: 20000 records ok",
        ],
    );
    // Every record kafkajs produced, exactly once, in order per key.
    const N: usize = 20_000;
    const KEYS: usize = 59;
    for (codec, id) in [
        ("none", 0),
        ("gzip", 1),
        ("snappy", 2),
        ("lz4", 3),
        ("zstd", 4),
    ] {
        let topic = format!("js-{codec}");
        let h = b.first_batch(&topic, 0);
        assert!(h.producer_id >= 0, "{codec}: not idempotent");
        assert_eq!(
            h.compression().expect("codec").id(),
            id,
            "{codec}: stored batches keep the producer's codec"
        );
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", b.bootstrap())
            .set("group.id", "weft-test-assign-only")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..3 {
            tpl.add_partition_offset(&topic, p, Offset::Beginning)
                .expect("tpl");
        }
        c.assign(&tpl).expect("assign");
        let mut per_key: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        let mut n = 0;
        let start = Instant::now();
        while n < N {
            assert!(
                start.elapsed() < Duration::from_secs(180),
                "{codec}: consumed {n} of {N}"
            );
            if let Some(m) = c.poll(Duration::from_millis(200)) {
                let m = m.expect("message");
                let key: usize = std::str::from_utf8(m.key().expect("key")).expect("utf8")[1..]
                    .parse()
                    .expect("key");
                let seq: usize = std::str::from_utf8(m.payload().expect("value"))
                    .expect("utf8")
                    .parse()
                    .expect("seq");
                per_key.entry(key).or_default().push(seq);
                n += 1;
            }
        }
        assert!(
            c.poll(Duration::from_millis(300)).is_none(),
            "{codec}: extra records"
        );
        for (key, seqs) in per_key {
            let expected = (N - key).div_ceil(KEYS);
            assert_eq!(
                seqs,
                (0..expected).collect::<Vec<_>>(),
                "{codec}: key {key}"
            );
        }
    }
}
