//! Compatibility with kafka-python (a pure-Python client): the script in
//! `tests/compat/kafka_python_compat.py` runs against a real broker.
//!
//! `cargo xtask test` installs kafka-python; without it (or the codec modules `snappy`,
//! `lz4`, `zstandard`) this test fails naming what to install.

mod common;

use std::process::Command;

use common::TestBroker;

fn require_python_modules() {
    let probe = Command::new("python3")
        .args(["-c", "import kafka, snappy, lz4.frame, zstandard"])
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "kafka-python or a codec module is missing: `pip install kafka-python python-snappy lz4 zstandard` (`cargo xtask test` installs them)\n{}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("python3 not found ({e}): install the Debian package python3"),
    }
}

#[test]
fn kafka_python_admin_codecs_offsets_configs() {
    require_python_modules();
    let b = TestBroker::start();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/compat/kafka_python_compat.py"
    );
    let out = Command::new("python3")
        .arg(script)
        .arg(b.bootstrap())
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "kafka-python compat failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    for step in [
        "codec None",
        "codec gzip",
        "codec snappy",
        "codec lz4",
        "codec zstd",
        "offsets by time and DeleteRecords ok",
        "configs ok",
        "invalid names ok",
        "group subscribe, commit and resume ok",
        "legacy produce refused ok",
    ] {
        assert!(stdout.contains(step), "missing step {step:?}:\n{stdout}");
    }
}
