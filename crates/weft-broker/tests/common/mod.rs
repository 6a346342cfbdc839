//! The one harness: a real broker on a port-0 listener, on its own runtime, over a log in a
//! temporary directory.
#![allow(dead_code)] // each test binary uses a different subset

pub(crate) mod raw;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};

use tokio::sync::watch;
use weft_broker::BrokerConfig;
use weft_log::{Log, LogConfig};

pub(crate) struct TestBroker {
    pub(crate) rt: tokio::runtime::Runtime,
    pub(crate) addr: SocketAddr,
    pub(crate) dir: PathBuf,
    shutdown: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<weft_broker::Result<()>>>,
    log: Arc<Log>,
    _tmp: Option<tempfile::TempDir>,
}

pub(crate) fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new("weft_broker=info,weft_log=warn")
                }),
            )
            .with_test_writer()
            .try_init();
    });
}

impl TestBroker {
    pub(crate) fn start() -> TestBroker {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut b = TestBroker::start_in(&dir, |_| {});
        b._tmp = Some(tmp);
        b
    }

    /// Starts a broker on `dir` (log in `dir/log`, state in `dir/broker`).
    pub(crate) fn start_in(dir: &Path, tweak: impl FnOnce(&mut BrokerConfig)) -> TestBroker {
        init_tracing();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let log = Arc::new(Log::open(&dir.join("log"), LogConfig::default()).expect("open log"));
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut config = BrokerConfig::new(dir.join("broker"), "127.0.0.1", addr.port());
        tweak(&mut config);
        let (tx, rx) = watch::channel(false);
        let task = rt.spawn(weft_broker::run(config, Arc::clone(&log), listener, rx));
        TestBroker {
            rt,
            addr,
            dir: dir.to_path_buf(),
            shutdown: tx,
            task: Some(task),
            log,
            _tmp: None,
        }
    }

    /// The first batch header of `topic`-`partition` as stored, to check what clients sent.
    pub(crate) fn first_batch(&self, topic: &str, partition: i32) -> weft_log::batch::BatchHeader {
        let p = self
            .log
            .partition(&weft_log::TopicPartition::new(topic, partition))
            .expect("partition");
        let bytes = p.read_bytes(p.log_start_offset(), 1).expect("read");
        weft_log::batch::BatchHeader::parse(&bytes).expect("batch header")
    }

    pub(crate) fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// Stops the broker and closes the log (the directory stays).
    pub(crate) fn stop(mut self) -> Option<tempfile::TempDir> {
        self.shutdown_now();
        self._tmp.take()
    }

    fn shutdown_now(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let r = self.rt.block_on(task).expect("broker task");
            r.expect("broker run");
        }
        self.log.close().expect("close log");
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if self.task.is_some() {
            self.shutdown_now();
        }
    }
}

/// Lines every client's compatibility script prints when its part passes.
pub(crate) const SHARED_STEPS: &[&str] = &[
    "codec gzip",
    "codec snappy",
    "codec lz4",
    "codec zstd",
    "offsets by time and DeleteRecords ok",
    "configs ok",
    "invalid names ok",
];

/// Runs `program tests/compat/<script> <bootstrap>` against `b` and asserts that it exits 0
/// having printed every line of [`SHARED_STEPS`] and of `steps`.
pub(crate) fn run_compat(
    b: &TestBroker,
    mut program: std::process::Command,
    script: &str,
    steps: &[&str],
) {
    let path = format!("{}/tests/compat/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = program
        .arg(&path)
        .arg(b.bootstrap())
        .output()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    for step in SHARED_STEPS.iter().chain(steps) {
        assert!(stdout.contains(step), "missing step {step:?}:\n{stdout}");
    }
}

/// [`run_compat`] for a Python client script, against a fresh broker. `modules`
/// (comma-separated) are imported first: when one is missing the test fails naming
/// `install`.
pub(crate) fn python_compat(script: &str, modules: &str, install: &str, steps: &[&str]) {
    use std::process::Command;
    let probe = Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "a Python module is missing: `{install}` (`cargo xtask test` installs it)\n{}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("python3 not found ({e}): install the Debian package python3"),
    }
    let b = TestBroker::start();
    run_compat(&b, Command::new("python3"), script, steps);
}
