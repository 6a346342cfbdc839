//! CPU accounting for the throughput benches: this process's CPU time, the broker's (given
//! its process id) and the whole machine's busy time over a run, read from Linux `/proc`.
//!
//! On a small machine where client and broker share the cores, CPU nanoseconds per payload
//! byte say more than wall-clock rates, and the machine's busy share says whether a run was
//! bound by the cores (≈ all busy) or by something else (fsync, a pipeline stall).

use std::time::Duration;

use anyhow::Context as _;

/// USER_HZ, the unit of `/proc` CPU times: `sysconf(_SC_CLK_TCK)` through getconf (no libc
/// binding here), read once; Linux's usual 100 if that fails.
fn ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// CPU time (user + system, seconds) of `/proc/<pid>` (`self` for this process).
pub(super) fn cpu_seconds(pid: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name (which may contain spaces) start at state, field 3.
    let after = stat.rsplit_once(") ").map(|(_, a)| a).context("bad stat")?;
    let f: Vec<&str> = after.split_whitespace().collect();
    let user: u64 = f.get(11).and_then(|v| v.parse().ok()).context("no utime")?;
    let system: u64 = f.get(12).and_then(|v| v.parse().ok()).context("no stime")?;
    Ok((user + system) as f64 / ticks_per_second())
}

/// The machine's (busy, all) CPU seconds since boot, summed over its cores, from the first
/// line of `/proc/stat`: idle and iowait count as not busy; steal is left out of both.
fn machine_seconds() -> anyhow::Result<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().context("bad /proc/stat"))
        .collect::<anyhow::Result<_>>()?;
    // user nice system idle iowait irq softirq steal …
    let field = |i: usize| f.get(i).copied().unwrap_or(0);
    let idle = field(3) + field(4);
    let busy = field(0) + field(1) + field(2) + field(5) + field(6);
    Ok((
        busy as f64 / ticks_per_second(),
        (busy + idle) as f64 / ticks_per_second(),
    ))
}

/// CPU readings taken when a run starts, reported per payload byte when it ends.
pub(super) struct CpuMeter {
    own: f64,
    broker: Option<(u32, f64)>,
    machine: Option<(f64, f64)>,
}

impl CpuMeter {
    /// Starts the meter; `broker_pid` adds the broker's CPU time to the report.
    pub(super) fn start(broker_pid: Option<u32>) -> anyhow::Result<CpuMeter> {
        Ok(CpuMeter {
            own: cpu_seconds("self")?,
            broker: broker_pid
                .map(|p| cpu_seconds(&p.to_string()).map(|s| (p, s)))
                .transpose()?,
            // Informative only: a machine without /proc/stat still runs the bench.
            machine: machine_seconds().ok(),
        })
    }

    /// Prints the client's (this process's, every library thread included) and the
    /// broker's CPU per payload byte, and how many of the machine's cores were busy.
    pub(super) fn report(&self, payload_bytes: u64, elapsed: Duration) -> anyhow::Result<()> {
        let per_byte = |s: f64| s * 1e9 / payload_bytes.max(1) as f64;
        let secs = elapsed.as_secs_f64().max(1e-9);
        let own = cpu_seconds("self")? - self.own;
        println!(
            "client CPU: {own:.2} s ({:.3} ns per payload byte)",
            per_byte(own)
        );
        if let Some((pid, b0)) = self.broker {
            let b = cpu_seconds(&pid.to_string())? - b0;
            println!(
                "broker CPU: {b:.2} s ({:.3} ns per payload byte, {:.0} % of one core)",
                per_byte(b),
                b / secs * 100.0
            );
        }
        if let (Some((busy0, all0)), Ok((busy1, all1))) = (self.machine, machine_seconds()) {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let all = (all1 - all0).max(1e-9);
            println!(
                "machine CPU: {:.2} of {cores} cores busy over the run ({:.0} %, every process and the kernel)",
                (busy1 - busy0) / secs,
                (busy1 - busy0) / all * 100.0
            );
        }
        Ok(())
    }
}

/// librdkafka allocates every message on the producing thread and frees it on the thread
/// that serves delivery reports, and its ~1 MB request buffers come and go with every
/// request. Under glibc's starting thresholds (128 KiB mmap, 128 KiB trim) the heap is
/// trimmed and grown again all the time and each request buffer is a fresh mmap: a
/// quarter of the client's CPU went to page faults and zeroing fresh pages (`perf`,
/// docs/benchmarks.md). glibc raises both thresholds on its own when a block it mmapped is
/// freed (mallopt(3), "dynamic mmap threshold"); one 32 MiB block, allocated and freed
/// untouched, raises them at once to what a busy producer reaches anyway, as the Java
/// producer's buffer pool keeps its memory. The bench's own process only: the broker is
/// untouched. No effect under other allocators.
pub(super) fn keep_heap() {
    // Just under glibc's 32 MiB cap for the dynamic threshold (DEFAULT_MMAP_THRESHOLD_MAX).
    let block: Vec<u8> = Vec::with_capacity((32 << 20) - (64 << 10));
    drop(std::hint::black_box(block));
}
