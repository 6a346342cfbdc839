//! Compatibility with kafka-python (a pure-Python client): the script in
//! `tests/compat/kafka_python_compat.py` runs against a real broker.
//!
//! `cargo xtask test` installs kafka-python; without it (or the codec modules `snappy`,
//! `lz4`, `zstandard`) this test fails naming what to install.

mod common;

#[test]
fn kafka_python_admin_codecs_offsets_configs() {
    common::python_compat(
        "kafka_python_compat.py",
        "kafka, snappy, lz4.frame, zstandard",
        "pip install kafka-python python-snappy lz4 zstandard",
        &[
            "codec None",
            "group subscribe, commit and resume ok",
            "legacy produce refused ok",
        ],
    );
}
