//! Compatibility with aiokafka (asyncio; its own protocol implementation, not librdkafka's):
//! `tests/compat/aiokafka_compat.py` runs admin calls, idempotent produce with every codec,
//! per-key order, offsets by time, DeleteRecords, configs, invalid names and a consumer
//! group's commit and resume against a real broker.
//!
//! `cargo xtask test` installs aiokafka; without it (or the codec modules) this test fails
//! naming what to install.

mod common;

#[test]
fn aiokafka_admin_codecs_offsets_configs_groups() {
    common::python_compat(
        "aiokafka_compat.py",
        "aiokafka, snappy, lz4.frame, zstandard",
        "pip install aiokafka python-snappy lz4 zstandard",
        &[
            "codec None: 20000 records ok",
            "codec gzip: 20000 records ok",
            "codec snappy: 20000 records ok",
            "codec lz4: 20000 records ok",
            "codec zstd: 20000 records ok",
            "group subscribe, commit and resume ok",
        ],
    );
}
