//! One Kafka request frame (without its 4-byte length prefix), decoded as a connection
//! does: header checks, version table, `kafka-protocol` decoding, immediate answers.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = weft_broker::decode_request_frame(data);
});
