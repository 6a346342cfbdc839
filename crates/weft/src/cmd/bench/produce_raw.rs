//! `weft bench produce-raw`: the broker's side of produce throughput, with a client that
//! costs almost nothing per byte.
//!
//! librdkafka spends CPU on every record (queueing, batching, its own CRC, a copy into the
//! batch), and on a small machine the client and the broker share the cores. To see what
//! the broker alone reaches, this mode builds one v2 record batch per partition once
//! (records of `--record-size` bytes, CreateTime, no key, no producer id) and sends the
//! same Produce request (v3, a batch for every partition) over and over on one
//! connection, keeping `--in-flight` requests outstanding. The broker still does all of
//! its work for every request (decode, CRC check, offsets, write, fsync policy): a batch
//! without a producer id is never deduplicated.
//!
//! The request is encoded here by hand (Produce v3 is five fields) so the bench depends on
//! nothing the broker uses. It talks to the bootstrap address only, so every partition must
//! be led by that broker (true of `weft serve`, a single node).
//!
//! Besides throughput it prints the CPU time (user + system, from `/proc`) of this process
//! and, with `--broker-pid`, of the broker over the run: CPU nanoseconds per payload byte,
//! which a busy shared machine distorts much less than wall-clock rates.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use weft_log::batch::{BuildOptions, Record, build};

use super::super::ClientArgs;

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct RawArgs {
    /// Topic (default: a new topic `weft-bench-<ms>` with --partitions partitions)
    #[arg(long)]
    topic: Option<String>,
    /// Number of records (rounded up to whole requests)
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Payload size in bytes
    #[arg(long, default_value_t = 1024)]
    record_size: usize,
    /// Partitions of the topic; every request carries one batch for each
    #[arg(long, default_value_t = 1)]
    partitions: i32,
    /// Bytes of payload per batch (librdkafka's default batch.size is 1000000)
    #[arg(long, default_value_t = 1_000_000)]
    batch_bytes: usize,
    /// Acknowledgements: all (-1) or 1
    #[arg(long, default_value = "1", value_parser = ["all", "-1", "1"])]
    acks: String,
    /// Requests outstanding on the connection (librdkafka allows up to 5 with idempotence)
    #[arg(long, default_value_t = 5)]
    in_flight: usize,
    /// The broker's process id, to report its CPU time over the run (Linux /proc)
    #[arg(long)]
    broker_pid: Option<u32>,
}

pub(crate) fn bench_produce_raw(client: &ClientArgs, args: &RawArgs) -> anyhow::Result<ExitCode> {
    if args.record_size == 0 || args.in_flight == 0 || args.partitions < 1 {
        bail!("--record-size, --in-flight and --partitions must be at least 1");
    }
    let load = super::Load::for_topic(args.topic.clone(), args.partitions);
    let topic = super::ensure_topic(client, &load)?;
    let acks: i16 = if args.acks == "1" { 1 } else { -1 };
    let per_batch = (args.batch_bytes / args.record_size).max(1);
    let batch = one_batch(per_batch, args.record_size)?;
    let mut frame = produce_frame(&topic, args.partitions, acks, &batch);
    let per_request = per_batch as u64 * args.partitions as u64;
    let requests = args.records.div_ceil(per_request);
    println!(
        "bench produce-raw: {requests} requests of {} partition batches × {per_batch} records of {} B to {topic} (acks={}, {} in flight, {} B per request)",
        args.partitions,
        args.record_size,
        args.acks,
        args.in_flight,
        frame.len()
    );
    let addr = client
        .bootstrap
        .split(',')
        .next()
        .context("no bootstrap server")?;
    let mut conn = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    conn.set_nodelay(true)?;
    conn.set_read_timeout(Some(Duration::from_secs(60)))?;
    let cpu = super::cpu::CpuMeter::start(args.broker_pid)?;
    let start = Instant::now();
    let (mut sent, mut answered) = (0u64, 0u64);
    let mut response = Vec::new();
    while answered < requests {
        while sent < requests && sent - answered < args.in_flight as u64 {
            // The correlation id is the request number, checked on the way back.
            frame[8..12].copy_from_slice(&(sent as i32).to_be_bytes());
            conn.write_all(&frame)
                .context("sending a produce request")?;
            sent += 1;
        }
        read_response(&mut conn, &mut response)?;
        check_response(&response, answered as i32, args.partitions)
            .with_context(|| format!("response to request {answered}"))?;
        answered += 1;
    }
    let elapsed = start.elapsed();
    let records = requests * per_request;
    let bytes = records * args.record_size as u64;
    super::print_throughput("produce-raw", records, bytes, elapsed);
    cpu.report(bytes, elapsed)?;
    Ok(ExitCode::SUCCESS)
}

/// One uncompressed v2 batch of `n` keyless records of `size` bytes.
fn one_batch(n: usize, size: usize) -> anyhow::Result<Vec<u8>> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let records: Vec<Record> = (0..n as u64)
        .map(|offset| Record {
            offset,
            timestamp: now,
            key: None,
            value: Some(vec![0xA5u8; size].into()),
            headers: Vec::new(),
        })
        .collect();
    build(BuildOptions::default(), &records).context("building the record batch")
}

/// A complete Produce v3 request frame (length prefix included), correlation id 0.
fn produce_frame(topic: &str, partitions: i32, acks: i16, batch: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(64 + topic.len() + partitions as usize * (8 + batch.len()));
    b.extend_from_slice(&[0; 4]); // length, filled below
    b.extend_from_slice(&0i16.to_be_bytes()); // api key: Produce
    b.extend_from_slice(&3i16.to_be_bytes()); // version
    b.extend_from_slice(&0i32.to_be_bytes()); // correlation id
    put_str(&mut b, "weft-bench-raw"); // client id
    b.extend_from_slice(&(-1i16).to_be_bytes()); // transactional id: null
    b.extend_from_slice(&acks.to_be_bytes());
    b.extend_from_slice(&30_000i32.to_be_bytes()); // timeout ms
    b.extend_from_slice(&1i32.to_be_bytes()); // one topic
    put_str(&mut b, topic);
    b.extend_from_slice(&partitions.to_be_bytes());
    for p in 0..partitions {
        b.extend_from_slice(&p.to_be_bytes());
        b.extend_from_slice(&(batch.len() as i32).to_be_bytes());
        b.extend_from_slice(batch);
    }
    let len = (b.len() - 4) as i32;
    b[..4].copy_from_slice(&len.to_be_bytes());
    b
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(&(s.len() as i16).to_be_bytes());
    b.extend_from_slice(s.as_bytes());
}

fn read_response(conn: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<()> {
    let mut len = [0u8; 4];
    conn.read_exact(&mut len).context("reading a response")?;
    let len = i32::from_be_bytes(len);
    let len = usize::try_from(len).context("negative response length")?;
    buf.resize(len, 0);
    conn.read_exact(buf).context("reading a response")?;
    Ok(())
}

/// Checks a Produce v3 response: correlation id, then every partition's error code.
fn check_response(r: &[u8], correlation: i32, partitions: i32) -> anyhow::Result<()> {
    let mut r = Reader { b: r, at: 0 };
    let got = r.i32()?;
    if got != correlation {
        bail!("correlation id {got}, expected {correlation}");
    }
    let mut seen = 0;
    for _ in 0..r.i32()?.max(0) {
        let name_len = r.i16()?;
        r.take(name_len.max(0) as usize)?;
        for _ in 0..r.i32()?.max(0) {
            let index = r.i32()?;
            let code = r.i16()?;
            r.take(16)?; // base offset, log append time
            if code != 0 {
                bail!("partition {index}: error code {code}");
            }
            seen += 1;
        }
    }
    if seen != partitions {
        bail!("{seen} partitions answered, {partitions} sent");
    }
    Ok(())
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> anyhow::Result<&'a [u8]> {
        let s = self
            .b
            .get(self.at..self.at + n)
            .context("response too short")?;
        self.at += n;
        Ok(s)
    }
    fn i16(&mut self) -> anyhow::Result<i16> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into()?))
    }
    fn i32(&mut self) -> anyhow::Result<i32> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into()?))
    }
}
