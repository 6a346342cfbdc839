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

/// One member, scale to three, SIGKILL the first (the leader; its session times out), stop
/// another cleanly, drain with the last one, while a producer writes keyed records the whole time. Returns
/// the members' logs and the acknowledged records, after checking that nothing was lost
/// and per-key order held within every run.
fn churn(spec: &Spec) -> Vec<Log> {
    require(spec.client);
    let tmp = tempfile::tempdir().expect("tempdir");
    if spec.strategy == "consumer" {
        // KIP-848 sessions are the broker's (`group.consumer.session.timeout.ms`, 45 s by
        // default): as short as the classic members' here, so the crash is noticed as soon.
        std::fs::write(
            tmp.path().join("weft.toml"),
            format!(
                "[broker]\ngroup_consumer_session_timeout_ms = {SESSION_MS}\n\
                 group_consumer_heartbeat_interval_ms = 500\n"
            ),
        )
        .expect("weft.toml");
    }
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
    // A crash of the first member (the group leader): no LeaveGroup, so the group notices
    // only when m1's session times out, and a new leader assigns.
    m1.kill();
    wait_for(
        "m2 and m3 took over m1's partitions",
        &[&m1, &m2, &m3],
        || settled(&[&m2, &m3]),
    );
    m3.stop();
    wait_for("m2 holds every partition", &[&m2, &m3], || settled(&[&m2]));
    let acked = load.finish();
    let want: BTreeSet<(i32, i64)> = acked.iter().map(|a| (a.partition, a.offset)).collect();
    wait_for("m2 drained the topic", &[&m2], || {
        let seen = processed(&[&m1, &m2, &m3]);
        want.is_subset(&seen)
    });
    m2.stop();
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

/// KIP-848 (`group.protocol=consumer`): the broker assigns, members reconcile
/// incrementally. The crash takes the broker's `group.consumer.session.timeout.ms` (not
/// settable per client; `weft.toml` sets it to the classic members' 6 s here) to notice.
#[test]
fn librdkafka_consumer_protocol_churn_loses_nothing_and_never_revokes_what_stays() {
    let logs = churn(&Spec::new(Client::Librdkafka, "consumer", "kip848"));
    let needless = needless_revokes(&logs);
    assert!(
        needless.is_empty(),
        "KIP-848 revoked partitions that stayed: {needless:?}"
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

/// The last committed offset of every partition, from the members' `C` events.
fn commits_seen(ms: &[&Member]) -> BTreeMap<i32, i64> {
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
}

/// Whether `m` processed a record after `since` (µs).
fn consumed_after(m: &Member, since: u64) -> bool {
    m.events()
        .iter()
        .any(|(ts, e)| *ts > since && matches!(e, Event::Record { .. }))
}

/// The broker is SIGKILLed and restarted on the same data directory and port while two
/// groups are stable and caught up (synchronous commits after every record): a classic
/// group (librdkafka, cooperative-sticky) and a KIP-848 group (`group.protocol=consumer`).
/// Group membership is in `__consumer_offsets`, so the members carry on: no assignment,
/// revocation or loss on any member after the restart (no rebalance), the committed offsets
/// are the ones committed before, each partition resumes exactly at its committed offset
/// and no record is processed twice — nothing skipped, nothing reprocessed.
#[test]
fn a_broker_restart_keeps_groups_and_commits_and_members_carry_on_without_rebalance() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    // A short KIP-848 heartbeat so members notice the restarted broker quickly; sessions
    // longer than the restart (librdkafka's classic session is timed on the client too).
    std::fs::write(
        dir.join("weft.toml"),
        "[broker]\ngroup_consumer_session_timeout_ms = 30000\n\
         group_consumer_heartbeat_interval_ms = 500\ngroup_initial_rebalance_delay_ms = 0\n",
    )
    .expect("weft.toml");
    let (mut server, bootstrap) = start_server(dir);
    let mut load = Load::start(&bootstrap, 200);
    let classic = Spec {
        commit_sync: true,
        session_ms: 30_000,
        ..Spec::new(Client::Librdkafka, "cooperative-sticky", "restart")
    };
    let kip848 = Spec {
        commit_sync: true,
        ..Spec::new(Client::Librdkafka, "consumer", "restart-848")
    };
    let mut m1 = Member::spawn(dir, &bootstrap, &classic, "m1");
    let mut m2 = Member::spawn(dir, &bootstrap, &classic, "m2");
    let mut k1 = Member::spawn(dir, &bootstrap, &kip848, "k1");
    let mut k2 = Member::spawn(dir, &bootstrap, &kip848, "k2");
    let all = [&m1, &m2, &k1, &k2];
    wait_for("both groups share the partitions", &all, || {
        settled(&[&m1, &m2]) && settled(&[&k1, &k2])
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
    wait_for(
        "every record processed and committed by both groups",
        &all,
        || commits_seen(&[&m1, &m2]) == ends && commits_seen(&[&k1, &k2]) == ends,
    );
    let before = committed(&bootstrap, "restart");
    assert_eq!(
        before, ends,
        "the broker has the commits the members saw succeed"
    );
    assert_eq!(committed(&bootstrap, "restart-848"), ends);

    server.kill().expect("SIGKILL weft serve");
    server.wait();
    let restarted = now_us();
    server = Server::start_with(dir, &["--kafka-listen", &bootstrap]);
    assert_eq!(
        committed(&bootstrap, "restart"),
        before,
        "committed offsets survive the restart"
    );
    assert_eq!(committed(&bootstrap, "restart-848"), before);
    load.paused.store(false, Ordering::SeqCst);
    wait_for("every member consumes again", &all, || {
        all.iter().all(|m| consumed_after(m, restarted))
    });
    let acked = load.finish();
    let want: BTreeSet<(i32, i64)> = acked.iter().map(|r| (r.partition, r.offset)).collect();
    wait_for("both groups drained the topic", &all, || {
        want.is_subset(&processed(&[&m1, &m2])) && want.is_subset(&processed(&[&k1, &k2]))
    });
    for m in [&m1, &m2, &k1, &k2] {
        let changes = changes_after(m, restarted);
        assert!(
            changes.is_empty(),
            "{} ({}) saw a rebalance after the broker restart: {changes:?}",
            m.name,
            m.spec.strategy
        );
    }
    for m in [&mut m1, &mut m2, &mut k1, &mut k2] {
        m.stop();
    }
    drop(server);

    for (group, members) in [("classic", [&m1, &m2]), ("KIP-848", [&k1, &k2])] {
        let logs: Vec<Log> = members.iter().map(|m| m.log()).collect();
        let lost = lost_records(&acked, &logs);
        assert!(
            lost.is_empty(),
            "{group}: lost {:?}",
            &lost[..lost.len().min(5)]
        );
        // Nothing processed after the restart was processed before it or twice after it
        // (no rebalance, no rewind; the members' first joins may legitimately repeat a few
        // records, at least once), and the first record each partition processed after the
        // restart is its committed offset.
        let mut before_restart = BTreeSet::new();
        let mut after_restart = BTreeSet::new();
        let mut twice = Vec::new();
        let mut first_after: BTreeMap<i32, i64> = BTreeMap::new();
        for log in &logs {
            for (ts, e) in &log.events {
                if let Event::Record {
                    partition, offset, ..
                } = e
                {
                    let po = (*partition, *offset);
                    if *ts <= restarted {
                        before_restart.insert(po);
                        continue;
                    }
                    if !after_restart.insert(po) {
                        twice.push(po);
                    }
                    let f = first_after.entry(*partition).or_insert(*offset);
                    *f = (*f).min(*offset);
                }
            }
        }
        twice.extend(after_restart.intersection(&before_restart));
        assert!(twice.is_empty(), "{group}: reprocessed {twice:?}");
        let resumed: BTreeMap<i32, i64> = first_after
            .keys()
            .map(|p| (*p, before.get(p).copied().unwrap_or(0)))
            .collect();
        assert_eq!(
            first_after.len(),
            PARTITIONS as usize,
            "{group}: every partition consumed after the restart"
        );
        assert_eq!(
            first_after, resumed,
            "{group}: resumed at the committed offsets"
        );
        println!("{group} restart: committed before {before:?}, resumed at {first_after:?}");
        for l in &logs {
            println!("  {}", summary(l));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Bad input on the wire. Requests are encoded by hand (non-flexible versions) so this crate
// needs no protocol library; each helper names the version it speaks.

/// Kafka error codes used below.
mod code {
    pub(super) const NONE: i16 = 0;
    pub(super) const OFFSET_METADATA_TOO_LARGE: i16 = 12;
    pub(super) const ILLEGAL_GENERATION: i16 = 22;
    pub(super) const INVALID_GROUP_ID: i16 = 24;
    pub(super) const UNKNOWN_MEMBER_ID: i16 = 25;
    pub(super) const INVALID_SESSION_TIMEOUT: i16 = 26;
    pub(super) const REBALANCE_IN_PROGRESS: i16 = 27;
    pub(super) const MEMBER_ID_REQUIRED: i16 = 79;
    pub(super) const FENCED_INSTANCE_ID: i16 = 82;
}

#[derive(Default)]
struct W(Vec<u8>);

impl W {
    fn i16(mut self, v: i16) -> W {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i32(mut self, v: i32) -> W {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i64(mut self, v: i64) -> W {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn str(self, s: &str) -> W {
        let mut w = self.i16(s.len() as i16);
        w.0.extend_from_slice(s.as_bytes());
        w
    }
    fn nstr(self, s: Option<&str>) -> W {
        match s {
            Some(s) => self.str(s),
            None => self.i16(-1),
        }
    }
    fn bytes(self, b: &[u8]) -> W {
        let mut w = self.i32(b.len() as i32);
        w.0.extend_from_slice(b);
        w
    }
}

struct Rd<'a>(&'a [u8]);

impl Rd<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
    fn i16(&mut self) -> i16 {
        i16::from_be_bytes(self.take(2).try_into().expect("2 bytes"))
    }
    fn i32(&mut self) -> i32 {
        i32::from_be_bytes(self.take(4).try_into().expect("4 bytes"))
    }
    fn i64(&mut self) -> i64 {
        i64::from_be_bytes(self.take(8).try_into().expect("8 bytes"))
    }
    fn nstr(&mut self) -> Option<String> {
        let n = self.i16();
        (n >= 0).then(|| String::from_utf8(self.take(n as usize).to_vec()).expect("utf8"))
    }
    fn str(&mut self) -> String {
        self.nstr().expect("non-null string")
    }
    fn bytes(&mut self) -> Vec<u8> {
        let n = self.i32();
        self.take(n.max(0) as usize).to_vec()
    }
}

/// One connection speaking raw Kafka frames (request header v1, response header v0).
struct Wire {
    s: std::net::TcpStream,
    correlation: i32,
}

/// A JoinGroup v5 answer: (error, generation, leader, member id, members listed).
type Joined = (i16, i32, String, String, usize);

impl Wire {
    fn connect(addr: &str) -> Wire {
        let s = std::net::TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(SAFETY)).expect("timeout");
        Wire { s, correlation: 0 }
    }

    fn call(&mut self, api: i16, version: i16, body: W) -> Vec<u8> {
        self.correlation += 1;
        let frame = W::default()
            .i16(api)
            .i16(version)
            .i32(self.correlation)
            .nstr(Some("churn-wire"));
        let mut frame = frame.0;
        frame.extend_from_slice(&body.0);
        let mut out = (frame.len() as i32).to_be_bytes().to_vec();
        out.extend_from_slice(&frame);
        self.s.write_all(&out).expect("send");
        let mut len = [0u8; 4];
        self.s.read_exact(&mut len).expect("response length");
        let mut resp = vec![0u8; i32::from_be_bytes(len) as usize];
        self.s.read_exact(&mut resp).expect("response");
        let correlation = i32::from_be_bytes(resp[..4].try_into().expect("4 bytes"));
        assert_eq!(correlation, self.correlation);
        resp[4..].to_vec()
    }

    /// JoinGroup v5 with protocol `range`.
    fn join(&mut self, group: &str, member: &str, instance: Option<&str>, session: i32) -> Joined {
        let body = W::default()
            .str(group)
            .i32(session)
            .i32(30_000)
            .str(member)
            .nstr(instance)
            .str("consumer")
            .i32(1)
            .str("range")
            .bytes(b"subscription");
        let r = self.call(11, 5, body);
        let mut r = Rd(&r);
        let _throttle = r.i32();
        let error = r.i16();
        let generation = r.i32();
        let _protocol = r.str();
        let leader = r.str();
        let member_id = r.str();
        let members = r.i32().max(0) as usize;
        (error, generation, leader, member_id, members)
    }

    /// A new member: MEMBER_ID_REQUIRED, then the join with the id handed out.
    fn join_new(&mut self, group: &str) -> Joined {
        let (error, _, _, id, _) = self.join(group, "", None, 10_000);
        assert_eq!(error, code::MEMBER_ID_REQUIRED);
        self.join(group, &id, None, 10_000)
    }

    /// SyncGroup v3: (error, assignment).
    fn sync(
        &mut self,
        group: &str,
        generation: i32,
        member: &str,
        instance: Option<&str>,
        assignments: &[(&str, &[u8])],
    ) -> (i16, Vec<u8>) {
        let mut body = W::default()
            .str(group)
            .i32(generation)
            .str(member)
            .nstr(instance)
            .i32(assignments.len() as i32);
        for (m, a) in assignments {
            body = body.str(m).bytes(a);
        }
        let r = self.call(14, 3, body);
        let mut r = Rd(&r);
        let _throttle = r.i32();
        (r.i16(), r.bytes())
    }

    /// Heartbeat v3.
    fn heartbeat(
        &mut self,
        group: &str,
        generation: i32,
        member: &str,
        instance: Option<&str>,
    ) -> i16 {
        let body = W::default()
            .str(group)
            .i32(generation)
            .str(member)
            .nstr(instance);
        let r = self.call(12, 3, body);
        let mut r = Rd(&r);
        let _throttle = r.i32();
        r.i16()
    }

    /// LeaveGroup v1.
    fn leave(&mut self, group: &str, member: &str) -> i16 {
        let r = self.call(13, 1, W::default().str(group).str(member));
        let mut r = Rd(&r);
        let _throttle = r.i32();
        r.i16()
    }

    /// OffsetCommit v7 of (partition, offset, metadata) in topic `t`: a code per partition.
    fn commit(
        &mut self,
        group: &str,
        generation: i32,
        member: &str,
        instance: Option<&str>,
        parts: &[(i32, i64, &str)],
    ) -> Vec<i16> {
        let mut body = W::default()
            .str(group)
            .i32(generation)
            .str(member)
            .nstr(instance)
            .i32(1)
            .str("t")
            .i32(parts.len() as i32);
        for (p, o, m) in parts {
            body = body.i32(*p).i64(*o).i32(-1).nstr(Some(m));
        }
        let r = self.call(8, 7, body);
        let mut r = Rd(&r);
        let _throttle = r.i32();
        assert_eq!(r.i32(), 1, "one topic");
        let _name = r.str();
        let n = r.i32();
        (0..n)
            .map(|_| {
                let _p = r.i32();
                r.i16()
            })
            .collect()
    }

    /// OffsetFetch v5 of partitions 0..3 of topic `t`: (offset, metadata) each.
    fn fetch(&mut self, group: &str) -> Vec<(i64, String)> {
        let body = W::default()
            .str(group)
            .i32(1)
            .str("t")
            .i32(3)
            .i32(0)
            .i32(1)
            .i32(2);
        let r = self.call(9, 5, body);
        let mut r = Rd(&r);
        let _throttle = r.i32();
        assert_eq!(r.i32(), 1, "one topic");
        let _name = r.str();
        let n = r.i32();
        let parts = (0..n)
            .map(|_| {
                let _p = r.i32();
                let offset = r.i64();
                let _epoch = r.i32();
                let metadata = r.nstr().unwrap_or_default();
                assert_eq!(r.i16(), code::NONE, "partition error");
                (offset, metadata)
            })
            .collect();
        assert_eq!(r.i16(), code::NONE, "OffsetFetch error");
        parts
    }

    /// DescribeGroups v0: the group's state.
    fn state(&mut self, group: &str) -> String {
        let r = self.call(15, 0, W::default().i32(1).str(group));
        let mut r = Rd(&r);
        assert_eq!(r.i32(), 1);
        let _error = r.i16();
        let _id = r.str();
        r.str()
    }
}

/// Bad group requests against the real server, beyond what `weft-broker/tests/groups.rs`
/// covers (there: a made-up older generation and a made-up member id): each gets its
/// protocol error, and nothing of them is stored, also not after a restart.
#[test]
fn bad_group_requests_get_protocol_errors_and_persist_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let mut server = Server::start(dir);
    let addr = server.kafka_addr().to_string();
    let mut c = Wire::connect(&addr);

    // SyncGroup and Heartbeat before any JoinGroup: no such member, and no group appears.
    assert_eq!(
        c.sync("fresh", 0, "m", None, &[]).0,
        code::UNKNOWN_MEMBER_ID
    );
    assert_eq!(c.sync("fresh", 1, "", None, &[]).0, code::UNKNOWN_MEMBER_ID);
    assert_eq!(c.heartbeat("fresh", 0, "m", None), code::UNKNOWN_MEMBER_ID);
    assert_eq!(c.state("fresh"), "Dead");
    // A session timeout below group.min.session.timeout.ms; no group appears either.
    assert_eq!(
        c.join("tiny", "", None, 1000).0,
        code::INVALID_SESSION_TIMEOUT
    );
    assert_eq!(c.state("tiny"), "Dead");

    // A stable group with member a; its good commit.
    let (e, g1, leader, a, _) = c.join_new("g");
    assert_eq!((e, &leader), (code::NONE, &a));
    // SyncGroup of a member id handed out with MEMBER_ID_REQUIRED but never joined.
    let (e, _, _, pending, _) = Wire::connect(&addr).join("g", "", None, 10_000);
    assert_eq!(e, code::MEMBER_ID_REQUIRED);
    assert_eq!(
        c.sync("g", g1, &pending, None, &[]).0,
        code::UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        c.sync("g", g1, &a, None, &[(&a, b"A")]),
        (code::NONE, b"A".to_vec())
    );
    assert_eq!(
        c.commit("g", g1, &a, None, &[(0, 10, "ok"), (1, 20, "ok")]),
        vec![0, 0]
    );

    // Metadata: 4096 bytes are accepted, 4097 refused for that partition only.
    let at_limit = "y".repeat(4096);
    let over = "x".repeat(4097);
    assert_eq!(
        c.commit("g", g1, &a, None, &[(0, 666, &over), (1, 21, &at_limit)]),
        vec![code::OFFSET_METADATA_TOO_LARGE, code::NONE]
    );
    // Empty group id.
    assert_eq!(
        c.commit("", g1, &a, None, &[(0, 666, "")]),
        vec![code::INVALID_GROUP_ID]
    );

    // Member b joins: a rebalance. b's join waits for a to rejoin, on its own connection.
    let b_join = {
        let addr = addr.clone();
        thread::spawn(move || {
            let mut w = Wire::connect(&addr);
            let joined = w.join_new("g");
            (w, joined)
        })
    };
    let deadline = Instant::now() + SAFETY;
    while c.heartbeat("g", g1, &a, None) != code::REBALANCE_IN_PROGRESS {
        assert!(Instant::now() < deadline, "no rebalance for b");
        thread::sleep(Duration::from_millis(20));
    }
    let (e, g2, _, _, members) = c.join("g", &a, None, 10_000);
    assert_eq!((e, members), (code::NONE, 2));
    let (mut bw, (e, g2b, _, b, _)) = b_join.join().expect("b joined");
    assert_eq!((e, g2b), (code::NONE, g2));
    // Between join and sync (CompletingRebalance): commits wait for the assignment.
    assert_eq!(
        c.commit("g", g2, &a, None, &[(0, 666, "")]),
        vec![code::REBALANCE_IN_PROGRESS]
    );
    // The generation before the rebalance is stale.
    assert_eq!(
        c.commit("g", g1, &a, None, &[(0, 666, "")]),
        vec![code::ILLEGAL_GENERATION]
    );
    assert_eq!(c.sync("g", g1, &a, None, &[]).0, code::ILLEGAL_GENERATION);
    // An outsider's commit (generation -1) while the group has members.
    assert_eq!(
        c.commit("g", -1, "", None, &[(0, 666, "")]),
        vec![code::UNKNOWN_MEMBER_ID]
    );
    let (e, _) = c.sync("g", g2, &a, None, &[(&a, b"A"), (&b, b"B")]);
    assert_eq!(e, code::NONE);
    assert_eq!(bw.sync("g", g2, &b, None, &[]), (code::NONE, b"B".to_vec()));
    // A member that left is unknown to the group.
    assert_eq!(bw.leave("g", &b), code::NONE);
    assert_eq!(
        bw.commit("g", g2, &b, None, &[(0, 666, "")]),
        vec![code::UNKNOWN_MEMBER_ID]
    );

    // A static member replaced by a restarted instance is fenced.
    let (e, s1, _, old, _) = c.join("s", "", Some("ia"), 10_000);
    assert_eq!(e, code::NONE);
    assert_eq!(
        c.sync("s", s1, &old, Some("ia"), &[(&old, b"S")]).0,
        code::NONE
    );
    assert_eq!(c.commit("s", s1, &old, Some("ia"), &[(0, 5, "s")]), vec![0]);
    let (e, s1b, _, new, _) = Wire::connect(&addr).join("s", "", Some("ia"), 10_000);
    assert_eq!(
        (e, s1b),
        (code::NONE, s1),
        "no rebalance for a static restart"
    );
    assert_ne!(new, old);
    assert_eq!(
        c.commit("s", s1, &old, Some("ia"), &[(0, 666, "")]),
        vec![code::FENCED_INSTANCE_ID]
    );
    assert_eq!(
        c.heartbeat("s", s1, &old, Some("ia")),
        code::FENCED_INSTANCE_ID
    );
    assert_eq!(
        c.sync("s", s1, &old, Some("ia"), &[]).0,
        code::FENCED_INSTANCE_ID
    );

    // What was accepted is there; what was refused is not, also after a crash.
    let want_g = vec![
        (10, "ok".to_owned()),
        (21, at_limit.clone()),
        (-1, String::new()),
    ];
    let want_s = vec![
        (5, "s".to_owned()),
        (-1, String::new()),
        (-1, String::new()),
    ];
    assert_eq!(c.fetch("g"), want_g);
    assert_eq!(c.fetch("s"), want_s);
    assert_eq!(c.fetch("fresh"), vec![(-1, String::new()); 3]);
    server.kill().expect("SIGKILL weft serve");
    server.wait();
    let server = Server::start_with(dir, &["--kafka-listen", &addr]);
    let mut c = Wire::connect(&addr);
    assert_eq!(c.fetch("g"), want_g, "after a restart");
    assert_eq!(c.fetch("s"), want_s, "after a restart");
    for g in ["fresh", "tiny"] {
        assert_eq!(c.state(g), "Dead", "{g}");
    }
    drop(server);
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
