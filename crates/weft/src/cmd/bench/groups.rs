//! `weft bench groups`: what consumer-group churn costs consumers, and what idle groups cost
//! the broker.
//!
//! **Pauses.** A producer writes at a fixed rate, spread evenly over the partitions; two
//! members (separate processes: `weft bench group-member`, so a crash is a real SIGKILL)
//! consume and report the wall-clock time and partition of every record they process. Then
//! a third member joins (scale-out 2 → 3), and later the first member — the group leader —
//! is killed (crash: detected only when its session times out). Around each event the bench
//! reports
//! - the *group stall*: the longest time in which no member processed any record, and
//! - the *partition pause*: the longest time one partition went without being processed,
//!
//! each next to the same measure in the seconds before the event (the baseline, set by the
//! send rate). An eager protocol stops every partition, so both are about the rebalance; a
//! cooperative one stops only the partitions that move, so the group keeps going. Pauses are
//! set by protocol timers (heartbeat interval, session timeout, rebalance round trips), not
//! by bandwidth: a loopback throughput ceiling does not bound them.
//!
//! **Idle cost.** With `--broker-pid`, the broker's resident memory and CPU time (from
//! `/proc/<pid>`) over a quiet window: before, with N groups of one member each that
//! heartbeats every 3 s and has committed one offset (the members speak the group protocol
//! directly over raw Kafka frames, so the cost is the groups' and not that of N fetching
//! librdkafka consumers), and after the members left (N empty groups with committed
//! offsets).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

use super::super::{ClientArgs, describe_error};

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct GroupsArgs {
    /// Group protocols to measure: range (eager), cooperative-sticky, consumer (KIP-848)
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "range,cooperative-sticky"
    )]
    protocols: Vec<String>,
    /// Partitions of the topic each protocol's run creates
    #[arg(long, default_value_t = 12)]
    partitions: i32,
    /// Records per second the producer writes during the pause measurements
    #[arg(long, default_value_t = 2000)]
    rate: u64,
    /// The members' session.timeout.ms (classic protocols)
    #[arg(long, default_value_t = 6000)]
    session_timeout_ms: u64,
    /// The members' heartbeat.interval.ms (classic protocols)
    #[arg(long, default_value_t = 1000)]
    heartbeat_interval_ms: u64,
    /// Skip the pause measurements
    #[arg(long)]
    no_pauses: bool,
    /// Number of groups for the idle-cost measurement (0 skips it)
    #[arg(long, default_value_t = 1000)]
    idle_groups: usize,
    /// PID of the broker process (e.g. `weft serve`) whose memory and CPU time the idle
    /// measurement reads from /proc; without it the idle measurement is skipped
    #[arg(long)]
    broker_pid: Option<u32>,
    /// Length of each quiet window of the idle measurement, in seconds
    #[arg(long, default_value_t = 30)]
    idle_seconds: u64,
}

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct MemberArgs {
    #[arg(long)]
    topic: String,
    #[arg(long)]
    group: String,
    /// range, cooperative-sticky, roundrobin, or consumer (KIP-848)
    #[arg(long)]
    protocol: String,
    #[arg(long)]
    session_timeout_ms: u64,
    #[arg(long)]
    heartbeat_interval_ms: u64,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Bound on waiting for a group to reach a state; a broken broker fails the bench instead
/// of hanging it.
const SETTLE_LIMIT: Duration = Duration::from_secs(180);
/// Measured time before each event (baseline) and after the group recovered.
const AROUND: Duration = Duration::from_secs(3);

// ---------------------------------------------------------------------------------------
// The member process.

/// Consumes until stdin closes, printing `<µs> <partition>` per record processed.
pub(crate) fn member(client: &ClientArgs, args: &MemberArgs) -> anyhow::Result<ExitCode> {
    let mut settings: Vec<(&str, String)> = vec![
        ("group.id", args.group.clone()),
        ("auto.offset.reset", "latest".to_owned()),
        ("enable.partition.eof", "false".to_owned()),
        ("enable.auto.commit", "true".to_owned()),
        ("auto.commit.interval.ms", "1000".to_owned()),
    ];
    if args.protocol == "consumer" {
        settings.push(("group.protocol", "consumer".to_owned()));
    } else {
        settings.push(("partition.assignment.strategy", args.protocol.clone()));
        settings.push(("session.timeout.ms", args.session_timeout_ms.to_string()));
        settings.push((
            "heartbeat.interval.ms",
            args.heartbeat_interval_ms.to_string(),
        ));
    }
    let borrowed: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let consumer: BaseConsumer = client
        .config(&borrowed)
        .create()
        .context("creating the member")?;
    consumer
        .subscribe(&[&args.topic])
        .map_err(|e| anyhow::anyhow!("subscribe: {}", describe_error(&e)))?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            stop.store(true, Ordering::SeqCst);
        });
    }
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut flushed = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        match consumer.poll(Duration::from_millis(20)) {
            Some(Ok(m)) => writeln!(out, "{} {}", now_us(), m.partition())?,
            Some(Err(e)) => eprintln!("member: {}", describe_error(&e)),
            None => {}
        }
        if flushed.elapsed() >= Duration::from_millis(10) {
            out.flush()?;
            flushed = Instant::now();
        }
    }
    out.flush()?;
    consumer.unsubscribe();
    Ok(ExitCode::SUCCESS)
}

/// Records processed by the group: (µs, partition, member).
type Processed = Arc<Mutex<Vec<(u64, i32, usize)>>>;

struct Member {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Member {
    fn spawn(
        client: &ClientArgs,
        args: &GroupsArgs,
        topic: &str,
        group: &str,
        protocol: &str,
        index: usize,
        processed: &Processed,
    ) -> anyhow::Result<Member> {
        let exe = std::env::current_exe().context("locating the weft binary")?;
        let mut cmd = Command::new(exe);
        cmd.args(["bench", "--bootstrap", &client.bootstrap]);
        for (k, v) in &client.properties {
            cmd.args(["-X", &format!("{k}={v}")]);
        }
        cmd.args(["group-member", "--topic", topic, "--group", group])
            .args(["--protocol", protocol])
            .args(["--session-timeout-ms", &args.session_timeout_ms.to_string()])
            .args([
                "--heartbeat-interval-ms",
                &args.heartbeat_interval_ms.to_string(),
            ]);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting a group member")?;
        let stdout = child.stdout.take().context("member stdout")?;
        let processed = Arc::clone(processed);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut f = line.split(' ');
                if let (Some(Ok(us)), Some(Ok(p))) =
                    (f.next().map(str::parse), f.next().map(str::parse))
                    && let Ok(mut v) = processed.lock()
                {
                    v.push((us, p, index));
                }
            }
        });
        let stdin = child.stdin.take();
        Ok(Member { child, stdin })
    }

    fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill().context("killing a member")?;
        self.child.wait().context("waiting for a killed member")?;
        Ok(())
    }

    fn stop(&mut self) {
        self.stdin.take();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `rate` records/s round-robin over the partitions until dropped.
struct Load {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl Load {
    fn start(client: &ClientArgs, topic: &str, partitions: i32, rate: u64) -> anyhow::Result<Load> {
        let producer: ThreadedProducer<DefaultProducerContext> = client
            .config(&[("linger.ms", "1"), ("acks", "1")])
            .create()
            .context("creating the producer")?;
        let stop = Arc::new(AtomicBool::new(false));
        let topic = topic.to_owned();
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || -> anyhow::Result<()> {
                let start = Instant::now();
                let payload = [0x5Au8; 100];
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let due = start + Duration::from_secs_f64(i as f64 / rate.max(1) as f64);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait.min(Duration::from_millis(10)));
                        continue;
                    }
                    let partition = (i % partitions as u64) as i32;
                    let record = BaseRecord::<[u8], [u8]>::to(&topic)
                        .partition(partition)
                        .payload(&payload);
                    match producer.send(record) {
                        Ok(()) => i += 1,
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        Err((e, _)) => bail!("producing: {}", describe_error(&e)),
                    }
                }
                producer
                    .flush(Duration::from_secs(30))
                    .map_err(|e| anyhow::anyhow!("flush: {}", describe_error(&e)))
            })
        };
        Ok(Load {
            stop,
            thread: Some(thread),
        })
    }

    fn finish(mut self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| anyhow::anyhow!("producer thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Waits until `done` holds over the records processed so far.
fn wait_until(
    what: &str,
    processed: &Processed,
    mut done: impl FnMut(&[(u64, i32, usize)]) -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + SETTLE_LIMIT;
    loop {
        {
            let v = processed
                .lock()
                .map_err(|_| anyhow::anyhow!("lock poisoned"))?;
            if done(&v) {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("gave up after {SETTLE_LIMIT:?} waiting until {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every partition processed a record after `since`, and so did each of `members`.
fn flowing(v: &[(u64, i32, usize)], since: u64, partitions: i32, members: &[usize]) -> bool {
    let mut ps = std::collections::BTreeSet::new();
    let mut ms = std::collections::BTreeSet::new();
    for (us, p, m) in v.iter().rev() {
        if *us <= since {
            break;
        }
        ps.insert(*p);
        ms.insert(*m);
    }
    ps.len() == partitions as usize && members.iter().all(|m| ms.contains(m))
}

/// (group stall, longest partition pause) in ms over records in `[from, to]`, each gap
/// counted from the last record before `from`.
fn gaps(v: &[(u64, i32, usize)], from: u64, to: u64) -> (f64, f64) {
    let mut sorted: Vec<(u64, i32)> = v.iter().map(|(us, p, _)| (*us, *p)).collect();
    sorted.sort_unstable();
    let mut stall = 0u64;
    let mut last_any: Option<u64> = None;
    let mut last: BTreeMap<i32, u64> = BTreeMap::new();
    let mut pause = 0u64;
    for (us, p) in sorted {
        if us > to {
            break;
        }
        if us >= from {
            if let Some(l) = last_any {
                stall = stall.max(us - l);
            }
            if let Some(l) = last.get(&p) {
                pause = pause.max(us - l);
            }
        }
        last_any = Some(us);
        last.insert(p, us);
    }
    (stall as f64 / 1000.0, pause as f64 / 1000.0)
}

fn report(protocol: &str, event: &str, v: &[(u64, i32, usize)], at: u64, end: u64) {
    let before = at.saturating_sub(AROUND.as_micros() as u64);
    let (base_stall, base_pause) = gaps(v, before, at);
    let (stall, pause) = gaps(v, at, end);
    println!(
        "groups {protocol}: {event}: group stall {stall:.0} ms, longest partition pause {pause:.0} ms (before the event: {base_stall:.0} ms / {base_pause:.0} ms)"
    );
}

fn measure_pauses(client: &ClientArgs, args: &GroupsArgs, protocol: &str) -> anyhow::Result<()> {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let topic = format!("weft-bench-groups-{protocol}-{ms}");
    let group = format!("weft-bench-groups-{protocol}-{ms}");
    let load_args = super::Load {
        topic: Some(topic.clone()),
        records: 0,
        record_size: 100,
        partitions: args.partitions,
        acks: "1".to_owned(),
        rate: None,
        batch_size: None,
        batch_messages: None,
        linger_ms: None,
        compression: "none".to_owned(),
        idempotence: false,
        broker_pid: None,
    };
    super::ensure_topic(client, &load_args)?;
    let load = Load::start(client, &topic, args.partitions, args.rate)?;
    let processed: Processed = Arc::default();
    let spawn = |i: usize| Member::spawn(client, args, &topic, &group, protocol, i, &processed);
    let mut m0 = spawn(0)?;
    let mut m1 = spawn(1)?;
    let started = now_us();
    wait_until("two members consume every partition", &processed, |v| {
        flowing(v, started, args.partitions, &[0, 1])
    })?;
    // Steady state before the first event.
    std::thread::sleep(AROUND + Duration::from_secs(2));

    let scale_at = now_us();
    let mut m2 = spawn(2)?;
    wait_until("the third member consumes", &processed, |v| {
        flowing(v, scale_at, args.partitions, &[0, 1, 2])
    })?;
    std::thread::sleep(AROUND);
    let scale_end = now_us();
    std::thread::sleep(Duration::from_secs(2));

    let crash_at = now_us();
    m0.kill()?;
    wait_until(
        "the killed member's partitions are consumed again",
        &processed,
        |v| {
            // Only members 1 and 2 can process anything after the kill.
            flowing(v, crash_at, args.partitions, &[1, 2])
        },
    )?;
    std::thread::sleep(AROUND);
    let crash_end = now_us();

    m1.stop();
    m2.stop();
    load.finish()?;
    let v = processed
        .lock()
        .map_err(|_| anyhow::anyhow!("lock poisoned"))?;
    report(protocol, "scale-out 2→3", &v, scale_at, scale_end);
    report(
        protocol,
        "crash of the leader (SIGKILL)",
        &v,
        crash_at,
        crash_end,
    );
    Ok(())
}

pub(crate) fn bench_groups(client: &ClientArgs, args: &GroupsArgs) -> anyhow::Result<ExitCode> {
    if !args.no_pauses {
        println!(
            "bench groups: pauses with {} partitions at {} records/s, session.timeout.ms={}, heartbeat.interval.ms={} (classic protocols)",
            args.partitions, args.rate, args.session_timeout_ms, args.heartbeat_interval_ms
        );
        for protocol in &args.protocols {
            measure_pauses(client, args, protocol)
                .with_context(|| format!("measuring protocol {protocol}"))?;
        }
    }
    match (args.idle_groups, args.broker_pid) {
        (0, _) => {}
        (_, None) => println!("bench groups: idle cost skipped (needs --broker-pid)"),
        (n, Some(pid)) => idle_cost(client, args, n, pid)?,
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------
// Idle cost: raw group members.

/// A request body, Kafka's big-endian encoding (non-flexible versions only).
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
    fn bytes(self, b: &[u8]) -> W {
        let mut w = self.i32(b.len() as i32);
        w.0.extend_from_slice(b);
        w
    }
}

/// A response body being read.
struct Rd<'a>(&'a [u8]);

impl Rd<'_> {
    fn take(&mut self, n: usize) -> anyhow::Result<&[u8]> {
        if self.0.len() < n {
            bail!("response too short");
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn i16(&mut self) -> anyhow::Result<i16> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into()?))
    }
    fn i32(&mut self) -> anyhow::Result<i32> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into()?))
    }
    fn str(&mut self) -> anyhow::Result<String> {
        let n = self.i16()?;
        Ok(String::from_utf8_lossy(self.take(n.max(0) as usize)?).into_owned())
    }
}

/// One raw member: its connection, group, member id and generation.
struct RawMember {
    s: TcpStream,
    correlation: i32,
    group: String,
    member: String,
    generation: i32,
}

impl RawMember {
    fn send(&mut self, api: i16, version: i16, body: W) -> anyhow::Result<()> {
        self.correlation += 1;
        let mut frame = W::default()
            .i16(api)
            .i16(version)
            .i32(self.correlation)
            .str("weft-bench-idle")
            .0;
        frame.extend_from_slice(&body.0);
        let mut out = (frame.len() as i32).to_be_bytes().to_vec();
        out.extend_from_slice(&frame);
        self.s.write_all(&out).context("sending a request")
    }

    fn receive(&mut self) -> anyhow::Result<Vec<u8>> {
        let mut len = [0u8; 4];
        self.s.read_exact(&mut len).context("reading a response")?;
        let mut resp = vec![0u8; i32::from_be_bytes(len).max(0) as usize];
        self.s.read_exact(&mut resp).context("reading a response")?;
        if resp.len() < 4 {
            bail!("response without header");
        }
        Ok(resp.split_off(4))
    }

    fn call(&mut self, api: i16, version: i16, body: W) -> anyhow::Result<Vec<u8>> {
        self.send(api, version, body)?;
        self.receive()
    }

    /// JoinGroup v3 (no MEMBER_ID_REQUIRED round trip), sent only.
    fn send_join(&mut self) -> anyhow::Result<()> {
        // ConsumerProtocolSubscription v0 of one topic, no user data.
        let subscription = W::default().i16(0).i32(1).str("weft-bench-idle").i32(-1).0;
        let body = W::default()
            .str(&self.group.clone())
            .i32(10_000)
            .i32(30_000)
            .str("")
            .str("consumer")
            .i32(1)
            .str("range")
            .bytes(&subscription);
        self.send(11, 3, body)
    }

    fn receive_join(&mut self) -> anyhow::Result<()> {
        let r = self.receive()?;
        let mut r = Rd(&r);
        let _throttle = r.i32()?;
        let error = r.i16()?;
        if error != 0 {
            bail!("JoinGroup of {}: error {error}", self.group);
        }
        self.generation = r.i32()?;
        let _protocol = r.str()?;
        let _leader = r.str()?;
        self.member = r.str()?;
        Ok(())
    }

    fn expect_ok(what: &str, error: i16) -> anyhow::Result<()> {
        if error != 0 {
            bail!("{what}: error {error}");
        }
        Ok(())
    }

    /// SyncGroup v2 with an empty assignment for itself.
    fn sync(&mut self) -> anyhow::Result<()> {
        let assignment = W::default().i16(0).i32(0).i32(-1).0;
        let body = W::default()
            .str(&self.group.clone())
            .i32(self.generation)
            .str(&self.member.clone())
            .i32(1)
            .str(&self.member.clone())
            .bytes(&assignment);
        let r = self.call(14, 2, body)?;
        let mut r = Rd(&r);
        let _throttle = r.i32()?;
        Self::expect_ok("SyncGroup", r.i16()?)
    }

    /// OffsetCommit v5 of one partition.
    fn commit(&mut self) -> anyhow::Result<()> {
        let body = W::default()
            .str(&self.group.clone())
            .i32(self.generation)
            .str(&self.member.clone())
            .i32(1)
            .str("weft-bench-idle")
            .i32(1)
            .i32(0)
            .i64(42)
            .str("");
        let r = self.call(8, 5, body)?;
        let mut r = Rd(&r);
        let _throttle = r.i32()?;
        let _topics = r.i32()?;
        let _name = r.str()?;
        let _partitions = r.i32()?;
        let _index = r.i32()?;
        Self::expect_ok("OffsetCommit", r.i16()?)
    }

    /// Heartbeat v2.
    fn heartbeat(&mut self) -> anyhow::Result<()> {
        let body = W::default()
            .str(&self.group.clone())
            .i32(self.generation)
            .str(&self.member.clone());
        let r = self.call(12, 2, body)?;
        let mut r = Rd(&r);
        let _throttle = r.i32()?;
        Self::expect_ok("Heartbeat", r.i16()?)
    }

    /// LeaveGroup v1.
    fn leave(&mut self) -> anyhow::Result<()> {
        let body = W::default()
            .str(&self.group.clone())
            .str(&self.member.clone());
        let r = self.call(13, 1, body)?;
        let mut r = Rd(&r);
        let _throttle = r.i32()?;
        Self::expect_ok("LeaveGroup", r.i16()?)
    }
}

/// Resident memory (KiB) and CPU time (user + system, seconds) of a process.
fn sample(pid: u32) -> anyhow::Result<(u64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status (is --broker-pid right?)"))?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS")?;
    Ok((rss, super::cpu::cpu_seconds(&pid.to_string())?))
}

/// Broker CPU (% of one core) over a window of `secs` seconds while `during` runs.
fn cpu_over(
    pid: u32,
    secs: u64,
    mut during: impl FnMut(Instant) -> anyhow::Result<()>,
) -> anyhow::Result<(u64, f64)> {
    let (_, cpu0) = sample(pid)?;
    let start = Instant::now();
    during(start + Duration::from_secs(secs))?;
    let (rss, cpu1) = sample(pid)?;
    let percent = (cpu1 - cpu0) / start.elapsed().as_secs_f64() * 100.0;
    Ok((rss, percent))
}

fn idle_cost(client: &ClientArgs, args: &GroupsArgs, n: usize, pid: u32) -> anyhow::Result<()> {
    let addr = client
        .bootstrap
        .split(',')
        .next()
        .context("no bootstrap server")?
        .to_owned();
    let secs = args.idle_seconds;
    let sleep_until = |end: Instant| {
        std::thread::sleep(end.saturating_duration_since(Instant::now()));
        Ok(())
    };
    println!("bench groups: idle cost of {n} groups, broker pid {pid}, {secs} s windows");
    let (rss0, cpu0) = cpu_over(pid, secs, sleep_until)?;
    println!(
        "idle: before: rss {:.1} MiB, cpu {cpu0:.2}%",
        rss0 as f64 / 1024.0
    );

    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut members = Vec::with_capacity(n);
    for i in 0..n {
        let s = TcpStream::connect(&addr).with_context(|| format!("connecting to {addr}"))?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        s.set_nodelay(true)?;
        members.push(RawMember {
            s,
            correlation: 0,
            group: format!("weft-bench-idle-{ms}-{i}"),
            member: String::new(),
            generation: -1,
        });
    }
    // Joins complete after the broker's initial rebalance delay: send all, then read all.
    for m in &mut members {
        m.send_join()?;
    }
    for m in &mut members {
        m.receive_join()?;
        m.sync()?;
        m.commit()?;
    }
    let heartbeat_all = |members: &mut Vec<RawMember>, end: Instant| -> anyhow::Result<()> {
        while Instant::now() < end {
            let round = Instant::now();
            for m in members.iter_mut() {
                m.heartbeat()?;
            }
            std::thread::sleep(
                (round + Duration::from_secs(3)).saturating_duration_since(Instant::now()),
            );
        }
        Ok(())
    };
    // Let allocations settle for one heartbeat round before the window.
    heartbeat_all(&mut members, Instant::now() + Duration::from_secs(3))?;
    let (rss1, cpu1) = cpu_over(pid, secs, |end| heartbeat_all(&mut members, end))?;
    println!(
        "idle: {n} groups, one member each heartbeating every 3 s, one committed offset each: rss {:.1} MiB ({:+.1} MiB, {:.1} KiB per group), cpu {cpu1:.2}%",
        rss1 as f64 / 1024.0,
        (rss1 as f64 - rss0 as f64) / 1024.0,
        (rss1 as f64 - rss0 as f64) / n as f64
    );
    for m in &mut members {
        m.leave()?;
    }
    drop(members);
    let (rss2, cpu2) = cpu_over(pid, secs, sleep_until)?;
    println!(
        "idle: {n} empty groups with committed offsets (members left): rss {:.1} MiB ({:+.1} MiB), cpu {cpu2:.2}%",
        rss2 as f64 / 1024.0,
        (rss2 as f64 - rss0 as f64) / 1024.0
    );
    Ok(())
}
