//! Consumer groups under churn against a real `weft serve` process (issue 4's end-to-end
//! tests).
//!
//! Every consumer is a separate process, so a SIGKILL is a real crash: librdkafka members
//! are this test binary re-executed with `CHURN_MEMBER` set (see [`member`]), kafka-python
//! and kafkajs members are `tests/compat/churn_member.py` and `churn_member.js`. A member
//! appends one line per event to its own file, written before the next record is polled:
//!
//! ```text
//! S <µs>                              started
//! A <µs> <p,p,…|->                    partitions assigned (incremental when cooperative)
//! V <µs> <p,p,…|->                    partitions revoked
//! L <µs> <p,p,…|->                    partitions lost (session expired on the member's side)
//! R <µs> <p> <offset> <key> <seq>     record processed
//! C <µs> <p> <offset>                 offset committed (synchronous commits only)
//! E <µs>                              closed cleanly
//! ```
//!
//! Times are wall-clock microseconds (all processes share the machine's clock), so events of
//! different members can be ordered. A member stops cleanly when its stdin closes, which also
//! means no member outlives a failed test.
//!
//! Which client gets what: librdkafka runs cooperative-sticky and range (eager); kafka-python
//! (3.x) runs cooperative-sticky and range; kafkajs has no cooperative protocol (KIP-429) and
//! runs its default eager round-robin assignor.
//!
//! Timeouts are safety limits against hangs, never assertions about speed.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use common::{SAFETY, Server};

const TOPIC: &str = "churn";
const PARTITIONS: i32 = 6;
const KEYS: u64 = 24;
/// Short, so a crashed member is noticed quickly (weft's minimum is Kafka's, 6 s).
const SESSION_MS: u32 = 6000;

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

// ---------------------------------------------------------------------------------------
// The librdkafka member process.

/// Set (to anything) in a child that should run [`member`] instead of the test.
const MEMBER_ENV: &str = "CHURN_MEMBER";

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Events written as lines to the member's file.
struct Events {
    out: Mutex<File>,
}

impl Events {
    fn line(&self, line: &str) {
        let mut out = self.out.lock().expect("events lock");
        out.write_all(format!("{line}\n").as_bytes())
            .expect("write event");
    }

    fn partitions(&self, kind: char, tpl: &TopicPartitionList) {
        let ps: Vec<String> = tpl
            .elements()
            .iter()
            .map(|e| e.partition().to_string())
            .collect();
        let list = if ps.is_empty() {
            "-".to_owned()
        } else {
            ps.join(",")
        };
        self.line(&format!("{kind} {} {list}", now_us()));
    }
}

impl ClientContext for Events {}

impl ConsumerContext for Events {
    fn pre_rebalance(&self, c: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = r {
            let kind = if c.assignment_lost() { 'L' } else { 'V' };
            self.partitions(kind, tpl);
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = r {
            self.partitions('A', tpl);
        }
    }
}

/// A librdkafka group member: consumes `TOPIC` until stdin closes, logging every event.
/// Commits either by storing each processed offset for auto-commit (`CHURN_COMMIT=store`)
/// or synchronously after each record (`sync`, logged as `C`).
fn member() {
    let bootstrap = env("CHURN_BOOTSTRAP").expect("CHURN_BOOTSTRAP");
    let out = env("CHURN_OUT").expect("CHURN_OUT");
    let sync_commits = env("CHURN_COMMIT").as_deref() == Some("sync");
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&out)
        .expect("open events file");
    let events = Events {
        out: Mutex::new(file),
    };
    events.line(&format!("S {}", now_us()));
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", env("CHURN_GROUP").expect("CHURN_GROUP"))
        .set("client.id", env("CHURN_CLIENT").expect("CHURN_CLIENT"))
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("enable.auto.offset.store", "false")
        .set(
            "enable.auto.commit",
            if sync_commits { "false" } else { "true" },
        )
        .set("auto.commit.interval.ms", "200")
        .set("reconnect.backoff.ms", "50")
        .set("reconnect.backoff.max.ms", "500");
    if env("CHURN_PROTOCOL").as_deref() == Some("consumer") {
        config.set("group.protocol", "consumer");
    } else {
        config
            .set(
                "partition.assignment.strategy",
                env("CHURN_STRATEGY").expect("CHURN_STRATEGY"),
            )
            .set(
                "session.timeout.ms",
                env("CHURN_SESSION_MS").unwrap_or_else(|| SESSION_MS.to_string()),
            )
            .set("heartbeat.interval.ms", "500");
    }
    if let Some(instance) = env("CHURN_INSTANCE") {
        config.set("group.instance.id", instance);
    }
    let consumer: BaseConsumer<Events> = config.create_with_context(events).expect("consumer");
    consumer.subscribe(&[TOPIC]).expect("subscribe");
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
            stop.store(true, Ordering::SeqCst);
        });
    }
    while !stop.load(Ordering::SeqCst) {
        let Some(m) = consumer.poll(Duration::from_millis(50)) else {
            continue;
        };
        let m = match m {
            Ok(m) => m,
            // Transient errors (a broker restart) are the client's to retry.
            Err(e) => {
                eprintln!("member: consume error: {e}");
                continue;
            }
        };
        let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
        let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
        let seq = value.rsplit(':').next().unwrap_or("?").to_owned();
        let ctx = consumer.context();
        ctx.line(&format!(
            "R {} {} {} {key} {seq}",
            now_us(),
            m.partition(),
            m.offset()
        ));
        if sync_commits {
            if consumer.commit_message(&m, CommitMode::Sync).is_ok() {
                ctx.line(&format!(
                    "C {} {} {}",
                    now_us(),
                    m.partition(),
                    m.offset() + 1
                ));
            }
        } else {
            // Fails only for a partition revoked meanwhile; its next owner reprocesses.
            let _ = consumer.store_offset_from_message(&m);
        }
    }
    // A clean close: leave the group (dynamic members), serving the revoke callback.
    consumer.unsubscribe();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline
        && consumer
            .assignment()
            .map(|a| a.count() > 0)
            .unwrap_or(false)
    {
        consumer.poll(Duration::from_millis(50));
    }
    consumer.context().line(&format!("E {}", now_us()));
    drop(consumer);
}

// ---------------------------------------------------------------------------------------
// Events files, parsed.

#[derive(Debug, Clone, PartialEq)]
enum Event {
    Start,
    Assign(Vec<i32>),
    Revoke(Vec<i32>),
    Lost(Vec<i32>),
    Record {
        partition: i32,
        offset: i64,
        key: String,
        seq: u64,
    },
    Commit {
        partition: i32,
        offset: i64,
    },
    End,
}

fn parse_list(s: &str) -> Vec<i32> {
    if s == "-" {
        return Vec::new();
    }
    s.split(',')
        .map(|p| p.parse().expect("partition number"))
        .collect()
}

/// (time µs, event) of every complete line of `path` (a killed member may leave half a
/// line at the end; that record was never processed).
fn read_events(path: &Path) -> Vec<(u64, Event)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    complete
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let ts: u64 = f[1].parse().unwrap_or_else(|_| panic!("bad line {l:?}"));
            let e = match (f[0], f.len()) {
                ("S", 2) => Event::Start,
                ("E", 2) => Event::End,
                ("A", 3) => Event::Assign(parse_list(f[2])),
                ("V", 3) => Event::Revoke(parse_list(f[2])),
                ("L", 3) => Event::Lost(parse_list(f[2])),
                ("R", 6) => Event::Record {
                    partition: f[2].parse().expect("partition"),
                    offset: f[3].parse().expect("offset"),
                    key: f[4].to_owned(),
                    seq: f[5].parse().expect("seq"),
                },
                ("C", 4) => Event::Commit {
                    partition: f[2].parse().expect("partition"),
                    offset: f[3].parse().expect("offset"),
                },
                _ => panic!("bad event line {l:?} in {}", path.display()),
            };
            (ts, e)
        })
        .collect()
}

/// The partitions a member holds after `events`, given how its client reports assignments
/// (incremental for cooperative protocols, whole for eager ones).
fn holding(events: &[(u64, Event)], incremental: bool) -> BTreeSet<i32> {
    let mut held = BTreeSet::new();
    for (_, e) in events {
        match e {
            Event::Assign(ps) => {
                if !incremental {
                    held.clear();
                }
                held.extend(ps);
            }
            Event::Revoke(ps) | Event::Lost(ps) => {
                for p in ps {
                    held.remove(p);
                }
            }
            _ => {}
        }
    }
    held
}

/// Whether the member processed a record after its last assignment event.
fn flowing(events: &[(u64, Event)]) -> bool {
    let last_assign = events
        .iter()
        .rposition(|(_, e)| matches!(e, Event::Assign(_)));
    last_assign.is_some_and(|i| {
        events[i..]
            .iter()
            .any(|(_, e)| matches!(e, Event::Record { .. }))
    })
}

// ---------------------------------------------------------------------------------------
// Checks over all members' files.

/// One member's events, named for messages.
struct Log {
    name: String,
    events: Vec<(u64, Event)>,
    /// Set for a member that was SIGKILLed: it held nothing after this time.
    killed_at: Option<u64>,
}

/// A record the producer had acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Acked {
    partition: i32,
    offset: i64,
    key: String,
    seq: u64,
}

/// Every acknowledged record was processed by some member, with the key and sequence number
/// it was written with. Returns a description of the first few missing ones.
fn lost_records(acked: &[Acked], logs: &[Log]) -> Vec<String> {
    let mut seen: HashMap<(i32, i64), (&str, u64)> = HashMap::new();
    for log in logs {
        for (_, e) in &log.events {
            if let Event::Record {
                partition,
                offset,
                key,
                seq,
            } = e
            {
                seen.insert((*partition, *offset), (key.as_str(), *seq));
            }
        }
    }
    acked
        .iter()
        .filter(|a| seen.get(&(a.partition, a.offset)) != Some(&(a.key.as_str(), a.seq)))
        .map(|a| format!("{a:?} (seen {:?})", seen.get(&(a.partition, a.offset))))
        .collect()
}

/// Within each member's run of a partition (from the assignment that gave it the partition
/// to the revocation that took it), offsets and every key's sequence numbers only go up,
/// and every record processed belongs to a partition the member held at the time.
fn order_violations(logs: &[Log], incremental: bool) -> Vec<String> {
    let mut bad = Vec::new();
    for log in logs {
        let mut held: BTreeSet<i32> = BTreeSet::new();
        // Per partition of the current runs: last offset, and last seq of each key.
        let mut last_offset: HashMap<i32, i64> = HashMap::new();
        let mut last_seq: HashMap<(i32, String), u64> = HashMap::new();
        let mut key_partition: HashMap<String, i32> = HashMap::new();
        let end_run =
            |p: i32, offsets: &mut HashMap<i32, i64>, seqs: &mut HashMap<(i32, String), u64>| {
                offsets.remove(&p);
                seqs.retain(|(q, _), _| *q != p);
            };
        for (_, e) in &log.events {
            match e {
                Event::Assign(ps) => {
                    if !incremental {
                        for p in std::mem::take(&mut held) {
                            end_run(p, &mut last_offset, &mut last_seq);
                        }
                    }
                    for p in ps {
                        held.insert(*p);
                        end_run(*p, &mut last_offset, &mut last_seq);
                    }
                }
                Event::Revoke(ps) | Event::Lost(ps) => {
                    for p in ps {
                        held.remove(p);
                        end_run(*p, &mut last_offset, &mut last_seq);
                    }
                }
                Event::Record {
                    partition,
                    offset,
                    key,
                    seq,
                } => {
                    let name = &log.name;
                    if !held.contains(partition) {
                        bad.push(format!(
                            "{name}: processed {partition}@{offset} without holding the partition"
                        ));
                    }
                    if let Some(p) = key_partition.insert(key.clone(), *partition)
                        && p != *partition
                    {
                        bad.push(format!(
                            "{name}: key {key} in partitions {p} and {partition}"
                        ));
                    }
                    if let Some(prev) = last_offset.insert(*partition, *offset)
                        && prev >= *offset
                    {
                        bad.push(format!(
                            "{name}: partition {partition} offset {offset} after {prev} in one run"
                        ));
                    }
                    if let Some(prev) = last_seq.insert((*partition, key.clone()), *seq)
                        && prev >= *seq
                    {
                        bad.push(format!(
                            "{name}: key {key} seq {seq} after {prev} in one run of partition {partition}"
                        ));
                    }
                }
                _ => {}
            }
        }
    }
    bad
}

/// Revocations of partitions that then stayed with the member: a partition revoked by member
/// M whose next assignment (to anyone, by time) is to M again. Cooperative rebalancing never
/// does this; eager rebalancing does it at every rebalance.
fn needless_revokes(logs: &[Log]) -> Vec<String> {
    // (time, member, partition, assigned?) of every assignment change.
    let mut changes: Vec<(u64, usize, i32, bool)> = Vec::new();
    for (i, log) in logs.iter().enumerate() {
        for (ts, e) in &log.events {
            match e {
                Event::Assign(ps) => changes.extend(ps.iter().map(|p| (*ts, i, *p, true))),
                Event::Revoke(ps) | Event::Lost(ps) => {
                    changes.extend(ps.iter().map(|p| (*ts, i, *p, false)))
                }
                _ => {}
            }
        }
    }
    changes.sort();
    let mut bad = Vec::new();
    for (n, (ts, member, p, assigned)) in changes.iter().enumerate() {
        if *assigned {
            continue;
        }
        let next = changes[n + 1..].iter().find(|(_, _, q, a)| *a && q == p);
        if let Some((at, m, _, _)) = next
            && m == member
        {
            bad.push(format!(
                "{} revoked partition {p} at {ts} and got it back at {at}",
                logs[*member].name
            ));
        }
    }
    bad
}

/// No partition was held by two members at once (a killed member holds nothing after its
/// kill).
fn double_ownership(logs: &[Log], incremental: bool) -> Vec<String> {
    // Per partition: (from, to, member) intervals.
    let mut intervals: BTreeMap<i32, Vec<(u64, u64, usize)>> = BTreeMap::new();
    for (i, log) in logs.iter().enumerate() {
        let end = log
            .killed_at
            .or_else(|| log.events.last().map(|(ts, _)| *ts))
            .unwrap_or(0);
        let mut since: BTreeMap<i32, u64> = BTreeMap::new();
        for (ts, e) in &log.events {
            match e {
                Event::Assign(ps) => {
                    if !incremental {
                        for (p, from) in std::mem::take(&mut since) {
                            intervals.entry(p).or_default().push((from, *ts, i));
                        }
                    }
                    for p in ps {
                        since.entry(*p).or_insert(*ts);
                    }
                }
                Event::Revoke(ps) | Event::Lost(ps) => {
                    for p in ps {
                        if let Some(from) = since.remove(p) {
                            intervals.entry(*p).or_default().push((from, *ts, i));
                        }
                    }
                }
                _ => {}
            }
        }
        for (p, from) in since {
            intervals.entry(p).or_default().push((from, end, i));
        }
    }
    let mut bad = Vec::new();
    for (p, mut iv) in intervals {
        iv.sort();
        for w in iv.windows(2) {
            let ((_, to, a), (from, _, b)) = (w[0], w[1]);
            if a != b && from < to {
                bad.push(format!(
                    "partition {p} held by {} until {to} and by {} from {from}",
                    logs[a].name, logs[b].name
                ));
            }
        }
    }
    bad
}

// ---------------------------------------------------------------------------------------
// The producer: keyed records, a sequence number per key, the whole time.

#[derive(Default, Clone)]
struct Deliveries {
    acked: Arc<Mutex<Vec<Acked>>>,
    failed: Arc<Mutex<Vec<String>>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(m) => {
                let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                let seq = value
                    .rsplit(':')
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("value <key>:<seq>");
                self.acked.lock().expect("lock").push(Acked {
                    partition: m.partition(),
                    offset: m.offset(),
                    key,
                    seq,
                });
            }
            Err((e, _)) => self.failed.lock().expect("lock").push(e.to_string()),
        }
    }
}

/// Writes `key:seq` records to `TOPIC` at about `rate` per second until stopped; an
/// idempotent producer with acks=all, so each key's records are in the log in `seq` order.
struct Load {
    stop: Arc<AtomicBool>,
    /// Pauses sending while set (deliveries still complete).
    paused: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
    deliveries: Deliveries,
}

impl Load {
    fn start(bootstrap: &str, rate: u64) -> Load {
        let deliveries = Deliveries::default();
        let producer: BaseProducer<Deliveries> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "120000")
            .set("reconnect.backoff.ms", "50")
            .set("reconnect.backoff.max.ms", "500")
            .create_with_context(deliveries.clone())
            .expect("producer");
        let stop = Arc::new(AtomicBool::new(false));
        let paused = Arc::new(AtomicBool::new(false));
        let thread = {
            let (stop, paused) = (Arc::clone(&stop), Arc::clone(&paused));
            thread::spawn(move || {
                let mut seq = vec![0u64; KEYS as usize];
                let mut start = Instant::now();
                let mut sent = 0u64;
                let mut sent_at_start = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    producer.poll(Duration::ZERO);
                    if paused.load(Ordering::SeqCst) {
                        thread::sleep(Duration::from_millis(10));
                        start = Instant::now();
                        sent_at_start = sent;
                        continue;
                    }
                    let n = sent - sent_at_start;
                    let due = start + Duration::from_secs_f64(n as f64 / rate as f64);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        thread::sleep(wait.min(Duration::from_millis(10)));
                        continue;
                    }
                    let k = (sent % KEYS) as usize;
                    let key = format!("k{k:02}");
                    let value = format!("{key}:{}", seq[k]);
                    let record = BaseRecord::to(TOPIC).key(&key).payload(&value);
                    match producer.send(record) {
                        Ok(()) => {
                            seq[k] += 1;
                            sent += 1;
                        }
                        Err(_) => {
                            producer.poll(Duration::from_millis(10));
                        }
                    }
                }
                producer.flush(SAFETY).expect("flush the producer");
            })
        };
        Load {
            stop,
            paused,
            thread: Some(thread),
            deliveries,
        }
    }

    /// The records acknowledged so far.
    fn acked(&self) -> Vec<Acked> {
        self.deliveries.acked.lock().expect("lock").clone()
    }

    /// Stops sending, waits for every outstanding delivery; returns the acknowledged records.
    fn finish(&mut self) -> Vec<Acked> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("producer thread");
        }
        let failed = self.deliveries.failed.lock().expect("lock").clone();
        assert!(failed.is_empty(), "deliveries failed: {failed:?}");
        let mut acked = self.acked();
        acked.sort();
        acked
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------------------
// Members as processes.

#[derive(Debug, Clone, Copy, PartialEq)]
enum Client {
    Librdkafka,
    KafkaPython,
    Kafkajs,
}

/// How a member is configured.
#[derive(Debug, Clone)]
struct Spec {
    client: Client,
    /// `range`, `cooperative-sticky`, `roundrobin`; `consumer` for KIP-848 (librdkafka).
    strategy: String,
    group: String,
    commit_sync: bool,
    instance: Option<String>,
    session_ms: u32,
}

impl Spec {
    fn new(client: Client, strategy: &str, group: &str) -> Spec {
        Spec {
            client,
            strategy: strategy.to_owned(),
            group: group.to_owned(),
            commit_sync: false,
            instance: None,
            session_ms: SESSION_MS,
        }
    }

    /// Whether the client reports assignments incrementally.
    fn incremental(&self) -> bool {
        matches!(self.strategy.as_str(), "cooperative-sticky" | "consumer")
    }
}

fn compat_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/compat")
        .join(name)
}

fn node_path() -> PathBuf {
    match std::env::var_os("NODE_PATH") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../target/npm/node_modules"
        )),
    }
}

/// Fails with what to install when a client's runtime or library is missing.
fn require(client: Client) {
    let probe = match client {
        Client::Librdkafka => return,
        Client::KafkaPython => Command::new("python3")
            .args(["-c", "import kafka"])
            .output(),
        Client::Kafkajs => Command::new("node")
            .args(["-e", "require('kafkajs')"])
            .env("NODE_PATH", node_path())
            .output(),
    };
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "{client:?} is missing: `cargo xtask test` installs it (pip kafka-python / npm kafkajs under target/npm)\n{}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("{client:?}: runtime not found ({e})"),
    }
}

/// One member process and its events file.
struct Member {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    file: PathBuf,
    killed_at: Option<u64>,
    spec: Spec,
}

impl Member {
    fn spawn(dir: &Path, bootstrap: &str, spec: &Spec, name: &str) -> Member {
        let file = dir.join(format!("{name}.events"));
        let mut cmd = match spec.client {
            Client::Librdkafka => {
                let mut c = Command::new(std::env::current_exe().expect("test exe"));
                c.args([
                    "--exact",
                    "checks_catch_lost_records_reordering_and_needless_revokes",
                    "--nocapture",
                    "--test-threads=1",
                ]);
                c
            }
            Client::KafkaPython => {
                let mut c = Command::new("python3");
                c.arg(compat_script("churn_member.py"));
                c
            }
            Client::Kafkajs => {
                let mut c = Command::new("node");
                c.arg(compat_script("churn_member.js"))
                    .env("NODE_PATH", node_path());
                c
            }
        };
        cmd.env(MEMBER_ENV, "1")
            .env("CHURN_BOOTSTRAP", bootstrap)
            .env("CHURN_GROUP", &spec.group)
            .env("CHURN_CLIENT", name)
            .env("CHURN_OUT", &file)
            .env("CHURN_TOPIC", TOPIC)
            .env("CHURN_SESSION_MS", spec.session_ms.to_string())
            .env(
                "CHURN_COMMIT",
                if spec.commit_sync { "sync" } else { "store" },
            )
            .env("CHURN_INSTANCE", spec.instance.clone().unwrap_or_default());
        if spec.strategy == "consumer" {
            cmd.env("CHURN_PROTOCOL", "consumer");
        } else {
            cmd.env("CHURN_STRATEGY", &spec.strategy);
        }
        let stderr = File::create(dir.join(format!("{name}.stderr"))).expect("stderr file");
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn member");
        let stdin = child.stdin.take();
        Member {
            name: name.to_owned(),
            child,
            stdin,
            file,
            killed_at: None,
            spec: spec.clone(),
        }
    }

    fn events(&self) -> Vec<(u64, Event)> {
        read_events(&self.file)
    }

    fn holding(&self) -> BTreeSet<i32> {
        holding(&self.events(), self.spec.incremental())
    }

    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL member");
        self.child.wait().expect("wait for killed member");
        self.killed_at = Some(now_us());
    }

    /// Closes stdin (a clean stop) and waits for the process.
    fn stop(&mut self) {
        self.stdin.take();
        let status = common::wait_with_limit(&mut self.child, &self.name);
        let stderr =
            std::fs::read_to_string(self.file.with_extension("stderr")).unwrap_or_default();
        assert!(
            status.success(),
            "{} exited with {status}:\n{stderr}",
            self.name
        );
        assert!(
            matches!(self.events().last(), Some((_, Event::End))),
            "{} did not close cleanly:\n{stderr}",
            self.name
        );
    }

    fn log(&self) -> Log {
        Log {
            name: self.name.clone(),
            events: self.events(),
            killed_at: self.killed_at,
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `done` holds, failing with `what` (and the members' stderr) after the
/// safety limit.
fn wait_for(what: &str, members: &[&Member], mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + SAFETY;
    while !done() {
        if Instant::now() > deadline {
            let mut report = String::new();
            for m in members {
                let stderr =
                    std::fs::read_to_string(m.file.with_extension("stderr")).unwrap_or_default();
                let tail: Vec<String> = m
                    .events()
                    .iter()
                    .rev()
                    .filter(|(_, e)| !matches!(e, Event::Record { .. }))
                    .take(10)
                    .map(|e| format!("{e:?}"))
                    .collect();
                report.push_str(&format!(
                    "\n--- {}: holding {:?}, last events {tail:?}\n{stderr}",
                    m.name,
                    m.holding()
                ));
            }
            panic!("timed out waiting until {what}{report}");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// The members share every partition between them, each holds some, and each processed a
/// record since its last assignment.
fn settled(members: &[&Member]) -> bool {
    let mut all = BTreeSet::new();
    let mut total = 0;
    for m in members {
        let events = m.events();
        let held = holding(&events, m.spec.incremental());
        if held.is_empty() || !flowing(&events) {
            return false;
        }
        total += held.len();
        all.extend(held);
    }
    total == PARTITIONS as usize && all.len() == PARTITIONS as usize
}

/// `name: 3 assignments, 2 revocations, 0 lost, 1234 records` for test output.
fn summary(log: &Log) -> String {
    let count = |f: fn(&Event) -> bool| log.events.iter().filter(|(_, e)| f(e)).count();
    format!(
        "{}: {} assignments, {} revocations, {} lost, {} records{}",
        log.name,
        count(|e| matches!(e, Event::Assign(_))),
        count(|e| matches!(e, Event::Revoke(_))),
        count(|e| matches!(e, Event::Lost(_))),
        count(|e| matches!(e, Event::Record { .. })),
        if log.killed_at.is_some() {
            " (killed)"
        } else {
            ""
        }
    )
}

fn processed(members: &[&Member]) -> BTreeSet<(i32, i64)> {
    members
        .iter()
        .flat_map(|m| m.events())
        .filter_map(|(_, e)| match e {
            Event::Record {
                partition, offset, ..
            } => Some((partition, offset)),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The broker.

fn start_server(dir: &Path) -> (Server, String) {
    let server = Server::start(dir);
    let bootstrap = server.kafka_addr().to_string();
    create_topic(dir, &bootstrap);
    (server, bootstrap)
}

fn create_topic(dir: &Path, bootstrap: &str) {
    let out = common::weft(dir)
        .args(["topic", "create", TOPIC, "--bootstrap", bootstrap])
        .args(["--partitions", &PARTITIONS.to_string()])
        .output()
        .expect("weft topic create");
    assert!(
        out.status.success(),
        "topic create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------
// The churn scenario.

/// One member, scale to three, SIGKILL one (its session times out), stop another cleanly,
/// drain with the last one, while a producer writes keyed records the whole time. Returns
/// the members' logs and the acknowledged records, after checking that nothing was lost
/// and per-key order held within every run.
fn churn(spec: &Spec) -> Vec<Log> {
    require(spec.client);
    let tmp = tempfile::tempdir().expect("tempdir");
    let (server, bootstrap) = start_server(tmp.path());
    let dir = tmp.path();
    let mut load = Load::start(&bootstrap, 300);

    let mut m1 = Member::spawn(dir, &bootstrap, spec, "m1");
    wait_for("m1 holds every partition and consumes", &[&m1], || {
        settled(&[&m1])
    });
    let mut m2 = Member::spawn(dir, &bootstrap, spec, "m2");
    let mut m3 = Member::spawn(dir, &bootstrap, spec, "m3");
    wait_for(
        "three members share the partitions",
        &[&m1, &m2, &m3],
        || settled(&[&m1, &m2, &m3]),
    );
    // A crash: no LeaveGroup, so the group notices only when m2's session times out.
    m2.kill();
    wait_for(
        "m1 and m3 took over m2's partitions",
        &[&m1, &m2, &m3],
        || settled(&[&m1, &m3]),
    );
    m3.stop();
    wait_for("m1 holds every partition again", &[&m1, &m3], || {
        settled(&[&m1])
    });
    let acked = load.finish();
    let want: BTreeSet<(i32, i64)> = acked.iter().map(|a| (a.partition, a.offset)).collect();
    wait_for("m1 drained the topic", &[&m1], || {
        let seen = processed(&[&m1, &m2, &m3]);
        want.is_subset(&seen)
    });
    m1.stop();
    drop(server);

    let logs: Vec<Log> = [&m1, &m2, &m3].iter().map(|m| m.log()).collect();
    let incremental = spec.incremental();
    let lost = lost_records(&acked, &logs);
    assert!(
        lost.is_empty(),
        "{spec:?}: {} of {} acknowledged records never processed, e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
    let order = order_violations(&logs, incremental);
    assert!(
        order.is_empty(),
        "{spec:?}: {:?}",
        &order[..order.len().min(10)]
    );
    let double = double_ownership(&logs, incremental);
    assert!(double.is_empty(), "{spec:?}: {double:?}");
    println!("{spec:?}: {} records acknowledged", acked.len());
    for l in &logs {
        println!("  {}", summary(l));
    }
    logs
}

#[test]
fn librdkafka_cooperative_sticky_churn_loses_nothing_and_never_revokes_what_stays() {
    let logs = churn(&Spec::new(Client::Librdkafka, "cooperative-sticky", "coop"));
    let needless = needless_revokes(&logs);
    assert!(
        needless.is_empty(),
        "cooperative revoked partitions that stayed: {needless:?}"
    );
}

#[test]
fn librdkafka_range_churn_loses_nothing() {
    let logs = churn(&Spec::new(Client::Librdkafka, "range", "eager"));
    // Eager rebalancing revokes everything at every rebalance: the cooperative check above
    // must see that here, or it could not fail.
    assert!(
        !needless_revokes(&logs).is_empty(),
        "eager rebalancing should revoke partitions that stay"
    );
}

#[test]
fn kafka_python_cooperative_sticky_churn_loses_nothing_and_never_revokes_what_stays() {
    let logs = churn(&Spec::new(
        Client::KafkaPython,
        "cooperative-sticky",
        "py-coop",
    ));
    let needless = needless_revokes(&logs);
    assert!(
        needless.is_empty(),
        "cooperative revoked partitions that stayed: {needless:?}"
    );
}

#[test]
fn kafka_python_range_churn_loses_nothing() {
    churn(&Spec::new(Client::KafkaPython, "range", "py-eager"));
}

#[test]
fn kafkajs_churn_loses_nothing() {
    // kafkajs has no cooperative protocol; its default assignor is round-robin (eager).
    churn(&Spec::new(Client::Kafkajs, "roundrobin", "js-eager"));
}

/// Assignment changes (assign, revoke, lost) of `m` after `since` (µs).
fn changes_after(m: &Member, since: u64) -> Vec<(u64, Event)> {
    m.events()
        .into_iter()
        .filter(|(ts, e)| {
            *ts > since && matches!(e, Event::Assign(_) | Event::Revoke(_) | Event::Lost(_))
        })
        .collect()
}

/// librdkafka with `group.instance.id`: a static member SIGKILLed and restarted within its
/// session timeout gets its partitions back, and the others (eager range, where any
/// rebalance revokes everything) see no revocation or assignment — also not once the killed
/// process's session would have run out.
#[test]
fn a_static_member_restarted_within_its_session_causes_no_rebalance() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let (server, bootstrap) = start_server(dir);
    let mut load = Load::start(&bootstrap, 200);
    let session_ms = 10_000;
    let spec = |instance: Option<&str>| Spec {
        instance: instance.map(str::to_owned),
        session_ms,
        ..Spec::new(Client::Librdkafka, "range", "static")
    };
    let mut a = Member::spawn(dir, &bootstrap, &spec(Some("instance-a")), "a");
    let mut b = Member::spawn(dir, &bootstrap, &spec(Some("instance-b")), "b");
    let mut c = Member::spawn(dir, &bootstrap, &spec(None), "c");
    wait_for("three members share the partitions", &[&a, &b, &c], || {
        settled(&[&a, &b, &c])
    });
    let before = a.holding();
    a.kill();
    let killed = a.killed_at.expect("killed");
    let mut a2 = Member::spawn(dir, &bootstrap, &spec(Some("instance-a")), "a2");
    wait_for(
        "the restarted member consumes again",
        &[&a2, &b, &c],
        || !a2.holding().is_empty() && flowing(&a2.events()),
    );
    assert_eq!(
        a2.holding(),
        before,
        "the restarted member got its partitions back"
    );
    // Past the point where the killed process's session would have expired: a rebalance
    // triggered by it would have happened by now.
    let quiet_until = killed + u64::from(session_ms) * 1000 + 3_000_000;
    wait_for("the killed session's expiry passed", &[&a2, &b, &c], || {
        now_us() > quiet_until && flowing(&b.events()) && flowing(&c.events())
    });
    for m in [&b, &c, &a2] {
        let changes = changes_after(m, killed);
        let allowed = if m.name == "a2" { 1 } else { 0 };
        assert_eq!(
            changes.len(),
            allowed,
            "{} saw a rebalance after the static member's restart: {changes:?}",
            m.name
        );
    }
    let acked = load.finish();
    let want: BTreeSet<(i32, i64)> = acked.iter().map(|r| (r.partition, r.offset)).collect();
    wait_for("the group drained the topic", &[&a2, &b, &c], || {
        want.is_subset(&processed(&[&a, &a2, &b, &c]))
    });
    for m in [&mut a2, &mut b, &mut c] {
        m.stop();
    }
    drop(server);
    let logs: Vec<Log> = [&a, &a2, &b, &c].iter().map(|m| m.log()).collect();
    let lost = lost_records(&acked, &logs);
    assert!(lost.is_empty(), "lost: {:?}", &lost[..lost.len().min(5)]);
    let order = order_violations(&logs, false);
    assert!(order.is_empty(), "{:?}", &order[..order.len().min(10)]);
}

/// Committed offsets of `group` for every partition of `TOPIC` (an OffsetFetch; the
/// consumer never joins).
fn committed(bootstrap: &str, group: &str) -> BTreeMap<i32, i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(TOPIC, p);
    }
    c.committed_offsets(tpl, SAFETY)
        .expect("committed offsets")
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

/// The broker is SIGKILLed and restarted on the same data directory and port while a group
/// (synchronous commits after every record) is stable and caught up: the members rejoin,
/// the committed offsets are the ones committed before, and each partition resumes exactly
/// at its committed offset — nothing skipped, nothing reprocessed.
#[test]
fn a_broker_restart_keeps_commits_and_members_resume_exactly_there() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let (mut server, bootstrap) = start_server(dir);
    let mut load = Load::start(&bootstrap, 200);
    let spec = Spec {
        commit_sync: true,
        ..Spec::new(Client::Librdkafka, "cooperative-sticky", "restart")
    };
    let mut m1 = Member::spawn(dir, &bootstrap, &spec, "m1");
    let mut m2 = Member::spawn(dir, &bootstrap, &spec, "m2");
    wait_for("two members share the partitions", &[&m1, &m2], || {
        settled(&[&m1, &m2])
    });
    // Quiesce: no new records, wait until everything sent is processed and committed.
    load.paused.store(true, Ordering::SeqCst);
    thread::sleep(Duration::from_millis(200));
    let sent = load.acked();
    let ends: BTreeMap<i32, i64> = sent.iter().fold(BTreeMap::new(), |mut m, r| {
        let e = m.entry(r.partition).or_insert(0);
        *e = (*e).max(r.offset + 1);
        m
    });
    let commits = |ms: &[&Member]| -> BTreeMap<i32, i64> {
        let mut last = BTreeMap::new();
        for m in ms {
            for (_, e) in m.events() {
                if let Event::Commit { partition, offset } = e {
                    let o = last.entry(partition).or_insert(0);
                    *o = offset.max(*o);
                }
            }
        }
        last
    };
    wait_for("every record processed and committed", &[&m1, &m2], || {
        commits(&[&m1, &m2]) == ends
    });
    let before = committed(&bootstrap, "restart");
    assert_eq!(
        before, ends,
        "the broker has the commits the members saw succeed"
    );

    server.kill().expect("SIGKILL weft serve");
    server.wait();
    let restarted = now_us();
    server = Server::start_with(dir, &["--kafka-listen", &bootstrap]);
    assert_eq!(
        committed(&bootstrap, "restart"),
        before,
        "committed offsets survive the restart"
    );
    load.paused.store(false, Ordering::SeqCst);
    wait_for("both members rejoined and consume", &[&m1, &m2], || {
        [&m1, &m2]
            .iter()
            .all(|m| !changes_after(m, restarted).is_empty() && flowing(&m.events()))
            && settled(&[&m1, &m2])
    });
    let acked = load.finish();
    let want: BTreeSet<(i32, i64)> = acked.iter().map(|r| (r.partition, r.offset)).collect();
    wait_for("the group drained the topic", &[&m1, &m2], || {
        want.is_subset(&processed(&[&m1, &m2]))
    });
    m1.stop();
    m2.stop();
    drop(server);

    let logs: Vec<Log> = [&m1, &m2].iter().map(|m| m.log()).collect();
    let lost = lost_records(&acked, &logs);
    assert!(lost.is_empty(), "lost: {:?}", &lost[..lost.len().min(5)]);
    // The first record each partition processed after the restart is its committed offset.
    let mut first_after: BTreeMap<i32, i64> = BTreeMap::new();
    for log in &logs {
        for (ts, e) in &log.events {
            if let Event::Record {
                partition, offset, ..
            } = e
                && *ts > restarted
            {
                let f = first_after.entry(*partition).or_insert(*offset);
                *f = (*f).min(*offset);
            }
        }
    }
    let resumed: BTreeMap<i32, i64> = first_after
        .keys()
        .map(|p| (*p, before.get(p).copied().unwrap_or(0)))
        .collect();
    assert!(
        !first_after.is_empty(),
        "nothing consumed after the restart"
    );
    assert_eq!(
        first_after, resumed,
        "resumed exactly at the committed offsets"
    );
    println!("restart: committed before {before:?}, resumed at {first_after:?}");
    for l in &logs {
        println!("  {}", summary(l));
    }
}

// ---------------------------------------------------------------------------------------
// The checks themselves, on made-up logs (and the librdkafka member's entry point).

fn log(name: &str, events: Vec<(u64, Event)>) -> Log {
    Log {
        name: name.to_owned(),
        events,
        killed_at: None,
    }
}

fn rec(partition: i32, offset: i64, key: &str, seq: u64) -> Event {
    Event::Record {
        partition,
        offset,
        key: key.to_owned(),
        seq,
    }
}

/// Run alone: the checks above catch what they claim to. Run with `CHURN_MEMBER` set (by
/// [`Member::spawn`]): a librdkafka group member process.
#[test]
fn checks_catch_lost_records_reordering_and_needless_revokes() {
    if std::env::var_os(MEMBER_ENV).is_some() {
        member();
        return;
    }
    let acked = vec![
        Acked {
            partition: 0,
            offset: 0,
            key: "a".into(),
            seq: 0,
        },
        Acked {
            partition: 0,
            offset: 1,
            key: "a".into(),
            seq: 1,
        },
    ];
    let good = log(
        "m",
        vec![
            (1, Event::Assign(vec![0])),
            (2, rec(0, 0, "a", 0)),
            (3, rec(0, 1, "a", 1)),
        ],
    );
    assert!(lost_records(&acked, &[good]).is_empty());
    let missing = log(
        "m",
        vec![(1, Event::Assign(vec![0])), (2, rec(0, 0, "a", 0))],
    );
    assert_eq!(lost_records(&acked, &[missing]).len(), 1);
    let wrong_seq = log(
        "m",
        vec![
            (1, Event::Assign(vec![0])),
            (2, rec(0, 0, "a", 0)),
            (3, rec(0, 1, "a", 7)),
        ],
    );
    assert_eq!(lost_records(&acked, &[wrong_seq]).len(), 1);

    // Order: a rewind inside one run is caught; after a revoke and a new assignment
    // (reprocessing from the last commit) it is fine.
    let rewind = log(
        "m",
        vec![
            (1, Event::Assign(vec![0])),
            (2, rec(0, 0, "a", 0)),
            (3, rec(0, 1, "a", 1)),
            (4, rec(0, 0, "a", 0)),
        ],
    );
    assert_eq!(order_violations(&[rewind], true).len(), 2);
    let rerun = log(
        "m",
        vec![
            (1, Event::Assign(vec![0])),
            (2, rec(0, 0, "a", 0)),
            (3, rec(0, 1, "a", 1)),
            (4, Event::Revoke(vec![0])),
            (5, Event::Assign(vec![0])),
            (6, rec(0, 1, "a", 1)),
        ],
    );
    assert!(order_violations(&[rerun], true).is_empty());
    let unheld = log(
        "m",
        vec![(1, Event::Assign(vec![1])), (2, rec(0, 0, "a", 0))],
    );
    assert_eq!(order_violations(&[unheld], false).len(), 1);

    // Revocations: moving a partition is fine, getting it back at once is not.
    let moved = [
        log(
            "x",
            vec![(1, Event::Assign(vec![0, 1])), (5, Event::Revoke(vec![1]))],
        ),
        log("y", vec![(7, Event::Assign(vec![1]))]),
    ];
    assert!(needless_revokes(&moved).is_empty());
    assert!(double_ownership(&moved, true).is_empty());
    let eager = [
        log(
            "x",
            vec![
                (1, Event::Assign(vec![0, 1])),
                (5, Event::Revoke(vec![0, 1])),
                (8, Event::Assign(vec![0])),
            ],
        ),
        log("y", vec![(7, Event::Assign(vec![1]))]),
    ];
    assert_eq!(needless_revokes(&eager).len(), 1);
    assert!(double_ownership(&eager, false).is_empty());
    let overlap = [
        log(
            "x",
            vec![(1, Event::Assign(vec![0])), (9, Event::Revoke(vec![0]))],
        ),
        log("y", vec![(7, Event::Assign(vec![0]))]),
    ];
    assert_eq!(double_ownership(&overlap, true).len(), 1);
}
