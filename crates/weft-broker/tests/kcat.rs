//! Compatibility with `kcat` from Debian, which links Debian's (older) librdkafka: it turns on
//! compression and idempotence only from exact advertised versions, and consumes without a
//! group through the legacy simple-consumer API.
//!
//! `cargo xtask test` installs kcat; without it this test fails, naming the package.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::TestBroker;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

fn kcat() -> &'static str {
    let found = Command::new("kcat")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match found {
        Ok(s) if s.success() => "kcat",
        _ => panic!(
            "kcat not found: install the Debian package `kcat` (`cargo xtask test` installs it)"
        ),
    }
}

fn run(args: &[&str], stdin: Option<&[u8]>) -> String {
    let mut child = Command::new(kcat())
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kcat");
    if let Some(input) = stdin {
        let mut i = child.stdin.take().expect("stdin");
        i.write_all(input).expect("write stdin");
    }
    let out = child.wait_with_output().expect("kcat output");
    assert!(
        out.status.success(),
        "kcat {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

fn create_topic(b: &TestBroker, name: &str, partitions: i32) {
    let a: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", b.bootstrap())
        .create()
        .expect("admin");
    let t = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let r =
        b.rt.block_on(a.create_topics([&t], &AdminOptions::new()))
            .expect("create");
    r[0].as_ref().expect("created");
}

#[test]
fn kcat_produces_with_every_codec_and_consumes_without_a_group() {
    let b = TestBroker::start();
    let bootstrap = b.bootstrap();
    const N: usize = 20_000;
    const KEYS: usize = 53;
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("kcat-{codec}");
        create_topic(&b, &topic, 3);
        let input: String = (0..N)
            .map(|i| format!("k{}:{}\n", i % KEYS, i / KEYS))
            .collect();
        run(
            &[
                "-b",
                &bootstrap,
                "-P",
                "-t",
                &topic,
                "-K:",
                "-z",
                codec,
                "-X",
                "enable.idempotence=true",
                "-X",
                "linger.ms=5",
            ],
            Some(input.as_bytes()),
        );
        // Debian's librdkafka really compressed and used idempotence (it silently would not
        // if the advertised versions did not please it).
        let h = b.first_batch(&topic, 0);
        let want = ["none", "gzip", "snappy", "lz4", "zstd"]
            .iter()
            .position(|c| *c == codec);
        assert_eq!(
            Some(h.compression().expect("codec").id() as usize),
            want,
            "{codec}"
        );
        assert!(h.producer_id >= 0, "{codec}: not idempotent");
        let out = run(
            &[
                "-b",
                &bootstrap,
                "-C",
                "-t",
                &topic,
                "-o",
                "beginning",
                "-e",
                "-q",
                "-f",
                "%k:%s:%p\n",
            ],
            None,
        );
        let mut per_key: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        let mut partition_of: BTreeMap<usize, String> = BTreeMap::new();
        for line in out.lines() {
            let mut f = line.split(':');
            let key: usize = f.next().and_then(|k| k[1..].parse().ok()).expect("key");
            let seq: usize = f.next().and_then(|s| s.parse().ok()).expect("seq");
            let p = f.next().expect("partition").to_owned();
            assert_eq!(
                partition_of.entry(key).or_insert_with(|| p.clone()),
                &p,
                "key moved"
            );
            per_key.entry(key).or_default().push(seq);
        }
        assert_eq!(out.lines().count(), N, "{codec}: every record exactly once");
        for (key, seqs) in per_key {
            let expected = (N - key).div_ceil(KEYS);
            assert_eq!(
                seqs,
                (0..expected).collect::<Vec<_>>(),
                "{codec}: key {key} out of order"
            );
        }
    }
}

#[test]
fn kcat_queries_offsets_by_timestamp_and_reports_invalid_topics() {
    let b = TestBroker::start();
    let bootstrap = b.bootstrap();
    create_topic(&b, "kcat-times", 1);
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("producer");
    let base = 1_700_000_000_000i64;
    for i in 0..10i64 {
        p.send(
            BaseRecord::<[u8], [u8]>::to("kcat-times")
                .partition(0)
                .payload(&b"x"[..])
                .timestamp(base + i * 1000),
        )
        .map_err(|(e, _)| e)
        .expect("send");
    }
    p.flush(Duration::from_secs(30)).expect("flush");
    let q = |ts: i64| {
        run(
            &["-b", &bootstrap, "-Q", "-t", &format!("kcat-times:0:{ts}")],
            None,
        )
    };
    assert!(q(base + 2500).contains("offset 3"), "{}", q(base + 2500));
    assert!(q(base).contains("offset 0"), "{}", q(base));
    // -L on an invalid name shows the broker's error and creates nothing.
    let md = run(&["-b", &bootstrap, "-L", "-t", "bad name"], None);
    assert!(md.to_lowercase().contains("invalid"), "{md}");
    let all = run(&["-b", &bootstrap, "-L"], None);
    assert!(!all.contains("bad name"), "{all}");
}
