//! Process metrics from `/proc/self` (Linux), recorded at scrape time under the names every
//! Prometheus client library uses (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_open_fds`, …) so existing dashboards and alerts work unchanged. Elsewhere the
//! readers return `None` and nothing is recorded.

use std::sync::OnceLock;

/// `/proc/<pid>/stat` reports CPU times in USER_HZ, which Linux fixes at 100 on every
/// architecture it exposes to user space (`sysconf(_SC_CLK_TCK)`; reading it needs `unsafe`).
const USER_HZ: f64 = 100.0;

/// One reading of the process's resources.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub threads: u64,
    pub open_fds: u64,
    pub max_fds: Option<u64>,
    pub start_time_seconds: Option<f64>,
}

/// Reads `/proc/self`; `None` where there is no procfs.
pub fn read() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let mut s = parse_stat(&stat)?;
    s.resident_bytes = status_kib(&status, "VmRSS:").unwrap_or(0) * 1024;
    s.virtual_bytes = status_kib(&status, "VmSize:").unwrap_or(0) * 1024;
    s.open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    s.max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| parse_max_fds(&l));
    s.start_time_seconds = start_time();
    Some(s)
}

/// Records a reading as gauges.
pub(crate) fn record() {
    let Some(s) = read() else { return };
    metrics::gauge!("process_cpu_seconds_total").set(s.cpu_seconds);
    metrics::gauge!("process_resident_memory_bytes").set(s.resident_bytes as f64);
    metrics::gauge!("process_virtual_memory_bytes").set(s.virtual_bytes as f64);
    metrics::gauge!("process_threads").set(s.threads as f64);
    metrics::gauge!("process_open_fds").set(s.open_fds as f64);
    if let Some(max) = s.max_fds {
        metrics::gauge!("process_max_fds").set(max as f64);
    }
    if let Some(start) = s.start_time_seconds {
        metrics::gauge!("process_start_time_seconds").set(start);
    }
}

/// utime + stime and the thread count from `/proc/self/stat`. The command name (field 2)
/// may contain spaces and parentheses, so fields are counted after the last `)`.
fn parse_stat(stat: &str) -> Option<ProcessStats> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After `)`: field 3 (state) is index 0; utime is field 14, stime 15, num_threads 20.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let threads: u64 = fields.get(17)?.parse().ok()?;
    Some(ProcessStats {
        cpu_seconds: (utime + stime) / USER_HZ,
        threads,
        ..ProcessStats::default()
    })
}

fn status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

fn parse_max_fds(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The first reading's wall-clock time is close enough to the process start for dashboards
/// (`/proc/self/stat`'s start time is in ticks since boot and needs the boot time too).
fn start_time() -> Option<f64> {
    static START: OnceLock<Option<f64>> = OnceLock::new();
    *START.get_or_init(|| {
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok())?;
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let rest = &stat[stat.rfind(')')? + 1..];
        let ticks: f64 = rest.split_whitespace().nth(19)?.parse().ok()?;
        Some(boot + ticks / USER_HZ)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let stat = "4242 (we ft) (x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 130 0 0 20 0 7 0 \
                    123456 1000000 500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let s = parse_stat(stat).expect("parses");
        assert_eq!(s.cpu_seconds, 3.8);
        assert_eq!(s.threads, 7);
    }

    #[test]
    fn parses_status_and_limits() {
        assert_eq!(
            status_kib("Name:\tweft\nVmRSS:\t  2048 kB\n", "VmRSS:"),
            Some(2048)
        );
        let limits = "Limit Soft Limit Hard Limit Units\nMax open files            1024                 524288               files\n";
        assert_eq!(parse_max_fds(limits), Some(1024));
    }

    #[test]
    fn reads_this_process() {
        let s = read().expect("procfs is mounted on the test machine");
        assert!(s.resident_bytes > 0);
        assert!(s.open_fds >= 3, "{s:?}");
        assert!(s.threads >= 1);
        assert!(s.start_time_seconds.expect("btime") > 1.0e9);
    }
}
