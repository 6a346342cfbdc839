//! The refusal of Produce v0–v2, written by hand because the codec cannot.
//!
//! Produce v0–v2 stay in the advertised range because librdkafka before 2.11.1 turns on
//! compression only when Produce v0 is in it. Those versions carry message formats v0/v1,
//! which the log does not store, and `kafka-protocol` (0.18) neither decodes their requests
//! nor encodes their responses. So this module reads just the topic and partition names of
//! such a request and answers every partition with one error code, in the v0–v2 layout of
//! the Kafka protocol guide (all fields big-endian, strings as INT16 length + UTF-8):
//!
//! ```text
//! Produce Request (v0–v2), after the request header v1:
//!   acks INT16, timeout_ms INT32,
//!   [topic_data]   INT32 count, each: name STRING,
//!     [partition_data] INT32 count, each: index INT32, records BYTES (INT32 length, -1 null)
//!
//! Produce Response v0:  [responses] throttle_time_ms (v1+)
//!   responses:   name STRING, [partition_responses]
//!   partition_responses: index INT32, error_code INT16, base_offset INT64,
//!                        log_append_time_ms INT64 (v2+)
//!   throttle_time_ms INT32 (v1+, after the responses)
//! ```
//!
//! The response header is v0 (correlation id only). acks=0 gets no response, as for any
//! produce. Nothing is appended. Parsing is bounded by the frame: counts are never used to
//! preallocate, and a count that runs past the frame is an error (the connection closes).

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// A Produce v0–v2 request reduced to what its refusal needs.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct LegacyProduce {
    pub(crate) acks: i16,
    /// Topic names with their partition indexes, in request order.
    pub(crate) topics: Vec<(Bytes, Vec<i32>)>,
}

fn need(b: &Bytes, n: usize, what: &str) -> Result<(), String> {
    if b.remaining() < n {
        return Err(format!(
            "produce v0-v2 request truncated in {what} ({} bytes left, {n} needed)",
            b.remaining()
        ));
    }
    Ok(())
}

fn count(b: &mut Bytes, what: &str) -> Result<usize, String> {
    need(b, 4, what)?;
    let n = b.get_i32();
    // -1 is a null array; treat it as empty as Kafka's parser does for a null topic list.
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Parses the body of a Produce v0–v2 request (the bytes after its request header).
pub(crate) fn parse(mut b: Bytes) -> Result<LegacyProduce, String> {
    need(&b, 6, "acks/timeout")?;
    let acks = b.get_i16();
    let _timeout_ms = b.get_i32();
    let topic_count = count(&mut b, "topic count")?;
    let mut topics = Vec::new();
    for _ in 0..topic_count {
        need(&b, 2, "topic name length")?;
        let len = b.get_i16();
        let len = usize::try_from(len).map_err(|_| "null topic name".to_owned())?;
        need(&b, len, "topic name")?;
        let name = b.split_to(len);
        let partition_count = count(&mut b, "partition count")?;
        let mut partitions = Vec::new();
        for _ in 0..partition_count {
            need(&b, 8, "partition index/records length")?;
            let index = b.get_i32();
            let records = b.get_i32();
            if let Ok(records) = usize::try_from(records) {
                need(&b, records, "records")?;
                b.advance(records);
            }
            partitions.push(index);
        }
        topics.push((name, partitions));
    }
    Ok(LegacyProduce { acks, topics })
}

/// Encodes a whole response frame (length prefix, header v0, body in the `version` layout)
/// answering every partition of `req` with `error_code`, base offset -1 and (v2) log append
/// time -1.
pub(crate) fn encode_error(
    version: i16,
    correlation_id: i32,
    req: &LegacyProduce,
    error_code: i16,
) -> BytesMut {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i32(0);
    buf.put_i32(correlation_id);
    buf.put_i32(req.topics.len() as i32);
    for (name, partitions) in &req.topics {
        buf.put_i16(name.len() as i16);
        buf.put_slice(name);
        buf.put_i32(partitions.len() as i32);
        for p in partitions {
            buf.put_i32(*p);
            buf.put_i16(error_code);
            buf.put_i64(-1);
            if version >= 2 {
                buf.put_i64(-1);
            }
        }
    }
    if version >= 1 {
        buf.put_i32(0);
    }
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (partition index, records bytes)
    type Part<'a> = (i32, &'a [u8]);

    fn request(acks: i16, topics: &[(&str, &[Part<'_>])]) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i16(acks);
        b.put_i32(1000);
        b.put_i32(topics.len() as i32);
        for (name, parts) in topics {
            b.put_i16(name.len() as i16);
            b.put_slice(name.as_bytes());
            b.put_i32(parts.len() as i32);
            for (i, records) in *parts {
                b.put_i32(*i);
                b.put_i32(records.len() as i32);
                b.put_slice(records);
            }
        }
        b.freeze()
    }

    #[test]
    fn parses_topics_and_partitions_in_order() {
        let r = parse(request(
            1,
            &[("a", &[(0, b"xyz"), (2, b"")]), ("bb", &[(1, b"1234")])],
        ))
        .expect("valid");
        assert_eq!(r.acks, 1);
        assert_eq!(
            r.topics,
            vec![
                (Bytes::from_static(b"a"), vec![0, 2]),
                (Bytes::from_static(b"bb"), vec![1]),
            ]
        );
    }

    #[test]
    fn truncated_or_lying_counts_are_errors_not_allocations() {
        let full = request(1, &[("a", &[(0, b"xyz")])]);
        for cut in 0..full.len() {
            assert!(parse(full.slice(..cut)).is_err(), "cut at {cut}");
        }
        // A topic count of i32::MAX with nothing behind it.
        let mut b = BytesMut::new();
        b.put_i16(1);
        b.put_i32(0);
        b.put_i32(i32::MAX);
        assert!(parse(b.freeze()).is_err());
    }

    #[test]
    fn error_response_layout_per_version() {
        let req = LegacyProduce {
            acks: 1,
            topics: vec![(Bytes::from_static(b"t"), vec![3])],
        };
        // v0: len, correlation, [1 topic: "t", [1 partition: 3, error 35, base -1]]
        let v0 = encode_error(0, 7, &req, 35);
        let mut want = vec![];
        want.extend_from_slice(&7i32.to_be_bytes());
        want.extend_from_slice(&1i32.to_be_bytes());
        want.extend_from_slice(&1i16.to_be_bytes());
        want.extend_from_slice(b"t");
        want.extend_from_slice(&1i32.to_be_bytes());
        want.extend_from_slice(&3i32.to_be_bytes());
        want.extend_from_slice(&35i16.to_be_bytes());
        want.extend_from_slice(&(-1i64).to_be_bytes());
        assert_eq!(&v0[4..], &want[..]);
        assert_eq!(
            i32::from_be_bytes([v0[0], v0[1], v0[2], v0[3]]) as usize,
            want.len()
        );
        // v1 adds throttle_time_ms at the end.
        let v1 = encode_error(1, 7, &req, 35);
        let mut want1 = want.clone();
        want1.extend_from_slice(&0i32.to_be_bytes());
        assert_eq!(&v1[4..], &want1[..]);
        // v2 adds log_append_time_ms after base_offset.
        let v2 = encode_error(2, 7, &req, 35);
        let mut want2 = want.clone();
        want2.extend_from_slice(&(-1i64).to_be_bytes());
        want2.extend_from_slice(&0i32.to_be_bytes());
        assert_eq!(&v2[4..], &want2[..]);
    }
}
