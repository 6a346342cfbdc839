//! Feeds arbitrary bytes to everything a produced batch goes through before it is stored:
//! validation, record framing, record decoding (all codecs) and `Partition::append`. Any
//! panic, abort or unbounded allocation is a finding; errors are expected.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use weft_log::{CleanupPolicy, LogConfig, Partition, SystemClock, batch};

fn partition() -> &'static Partition {
    static P: OnceLock<(tempfile::TempDir, Partition)> = OnceLock::new();
    &P.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = LogConfig { cleanup_policy: CleanupPolicy::Compact, ..LogConfig::default() };
        let p = Partition::open(dir.path(), config, Arc::new(SystemClock)).expect("open");
        (dir, p)
    })
    .1
}

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = batch::validate(data) {
        let _ = batch::check_uncompressed_framing(data, &h);
    }
    let _ = batch::records(data);
    // With a correct CRC, so that the decoder behind it is reached.
    if data.len() >= batch::HEADER_LEN {
        let mut b = data.to_vec();
        let crc = batch::compute_crc(&b);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        let _ = partition().append(&mut b);
    }
});
