//! Zero-copy Fetch responses: the response encoded around its records, which go from the
//! segment files to the socket with `sendfile(2)`.
//!
//! A Fetch response's records are the last regular field of each partition entry, a
//! length-prefixed byte string (`BYTES` before v12, `COMPACT_RECORDS` from v12, followed by
//! that entry's tagged fields). So the response can be sent as bytes encoded by the codec,
//! then a file range, then more encoded bytes, and so on, in the exact order the codec would
//! write it. This module cuts the codec's own encodings at those points: every structure is
//! encoded by `kafka-protocol` with its records (or its list of children) left empty, and
//! only the framing around them (array lengths, the records length, the empty tagged-field
//! section) is written here. Each cut checks that the bytes it removes are the ones it
//! expects; if a future codec lays something out differently the cut fails and the caller
//! falls back to the copying encoder, which is also what TLS connections will use.
//!
//! Tested against the codec itself: for every served version, parts + file bytes equal the
//! codec's encoding of the same response with the records in memory.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, FetchResponse, ResponseHeader};
use kafka_protocol::protocol::Encodable;
use weft_log::FileRegion;

/// Records of one partition to be sent from a file: (index of the topic in
/// `FetchResponse::responses`, index of the partition in its `partitions`, the range).
pub(crate) type Region = (usize, usize, FileRegion);

/// A piece of a response on the wire.
pub(crate) enum Part {
    Bytes(Bytes),
    File(FileRegion),
}

/// Fetch is flexible (compact strings and arrays, tagged fields) from this version.
const FIRST_FLEXIBLE: i16 = 12;

fn put_uvarint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

fn put_array_len(buf: &mut BytesMut, flexible: bool, n: usize) {
    if flexible {
        put_uvarint(buf, n as u64 + 1);
    } else {
        buf.put_i32(n as i32);
    }
}

/// `encoded` ends with `suffix`: returns what comes before it.
fn cut<'a>(encoded: &'a [u8], suffix: &[u8], what: &str) -> Result<&'a [u8], String> {
    encoded
        .strip_suffix(suffix)
        .ok_or_else(|| format!("unexpected encoding of {what}: cannot cut it for zero-copy"))
}

fn encode_to_vec<T: Encodable>(v: &T, version: i16, what: &str) -> Result<BytesMut, String> {
    let mut b = BytesMut::new();
    v.encode(&mut b, version)
        .map_err(|e| format!("cannot encode {what}: {e}"))?;
    Ok(b)
}

/// Encodes the whole response frame (length prefix, header, body) as parts. `regions` name
/// partitions whose `records` are `None` in `resp` and are to be sent from a file; sorted by
/// (topic, partition) index. `Err` when the codec's layout is not the one expected (the
/// caller then encodes with the records in memory).
pub(crate) fn encode(
    version: i16,
    correlation_id: i32,
    mut resp: FetchResponse,
    regions: &[Region],
) -> Result<Vec<Part>, String> {
    let flexible = version >= FIRST_FLEXIBLE;
    // The tail of a structure encoded with an empty child array: the array's length, then
    // (flexible) an empty tagged-field section.
    let empty_array_tail: &[u8] = if flexible { &[1, 0] } else { &[0, 0, 0, 0] };
    // A partition encoded with null records: the null length, then (flexible) its empty
    // tagged-field section.
    let null_records_tail: &[u8] = if flexible { &[0, 0] } else { &[0xff; 4] };

    let mut parts: Vec<Part> = Vec::with_capacity(2 * regions.len() + 1);
    let mut cur = BytesMut::with_capacity(1024);
    cur.put_i32(0); // frame length, set at the end
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut cur, ApiKey::Fetch.response_header_version(version))
        .map_err(|e| format!("cannot encode the response header: {e}"))?;

    let topics = std::mem::take(&mut resp.responses);
    let top = encode_to_vec(&resp, version, "the fetch response")?;
    cur.put_slice(cut(&top, empty_array_tail, "the fetch response")?);
    put_array_len(&mut cur, flexible, topics.len());

    let mut next = regions.iter().peekable();
    let mut file_bytes = 0usize;
    for (ti, mut topic) in topics.into_iter().enumerate() {
        let partitions = std::mem::take(&mut topic.partitions);
        let t = encode_to_vec(&topic, version, "a fetch topic")?;
        cur.put_slice(cut(&t, empty_array_tail, "a fetch topic")?);
        put_array_len(&mut cur, flexible, partitions.len());
        for (pi, p) in partitions.into_iter().enumerate() {
            match next.peek() {
                Some((t, i, region)) if (*t, *i) == (ti, pi) => {
                    next.next();
                    if p.records.is_some() {
                        return Err("a partition sent from a file also has records".into());
                    }
                    let e = encode_to_vec(&p, version, "a fetch partition")?;
                    cur.put_slice(cut(&e, null_records_tail, "a fetch partition")?);
                    if flexible {
                        put_uvarint(&mut cur, region.len as u64 + 1);
                    } else {
                        cur.put_i32(i32::try_from(region.len).map_err(|_| "records over 2 GiB")?);
                    }
                    parts.push(Part::Bytes(cur.split().freeze()));
                    parts.push(Part::File(region.clone()));
                    file_bytes += region.len;
                    if flexible {
                        cur.put_u8(0); // the partition's tagged fields: none
                    }
                }
                _ => p
                    .encode(&mut cur, version)
                    .map_err(|e| format!("cannot encode a fetch partition: {e}"))?,
            }
        }
        if flexible {
            cur.put_u8(0); // the topic's tagged fields: none (checked by the cut above)
        }
    }
    if next.next().is_some() {
        return Err("a region names no partition of the response".into());
    }
    if flexible {
        cur.put_u8(0); // the response's tagged fields: none (checked by the cut above)
    }
    parts.push(Part::Bytes(cur.freeze()));
    let total: usize = parts
        .iter()
        .map(|p| match p {
            Part::Bytes(b) => b.len(),
            Part::File(_) => 0,
        })
        .sum::<usize>()
        + file_bytes
        - 4;
    let len = i32::try_from(total).map_err(|_| "response over 2 GiB")?;
    if let Some(Part::Bytes(first)) = parts.first_mut() {
        let mut b = BytesMut::from(&first[..]);
        b[0..4].copy_from_slice(&len.to_be_bytes());
        *first = b.freeze();
    }
    Ok(parts)
}

/// The copying path: `resp` with each region's bytes read into its partition's records.
pub(crate) fn fill(mut resp: FetchResponse, regions: &[Region]) -> std::io::Result<FetchResponse> {
    for (t, p, region) in regions {
        if let Some(pd) = resp
            .responses
            .get_mut(*t)
            .and_then(|topic| topic.partitions.get_mut(*p))
        {
            pd.records = Some(region.read_to_bytes()?);
        }
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::messages::fetch_response::{
        AbortedTransaction, FetchableTopicResponse, PartitionData,
    };
    use kafka_protocol::protocol::StrBytes;
    use std::io::Write;
    use std::sync::Arc;

    fn records(seed: u8, n: usize) -> Bytes {
        Bytes::from(
            (0..n)
                .map(|i| seed.wrapping_add(i as u8))
                .collect::<Vec<_>>(),
        )
    }

    /// The response with records in memory, and the same response with some partitions'
    /// records in a file (as regions).
    fn response(
        version: i16,
        file: &Arc<std::fs::File>,
    ) -> (FetchResponse, FetchResponse, Vec<Region>) {
        let mut with = Vec::new();
        let mut without = Vec::new();
        let mut regions = Vec::new();
        let mut position = 0u64;
        let mut f = file.as_ref();
        for t in 0..3usize {
            let mut pw = Vec::new();
            let mut pn = Vec::new();
            for p in 0..4usize {
                let mut pd = PartitionData::default()
                    .with_partition_index(p as i32)
                    .with_high_watermark(1000 + p as i64)
                    .with_last_stable_offset(900)
                    .with_log_start_offset(if version >= 5 { 3 } else { -1 });
                if p == 3 {
                    pd = pd.with_error_code(1);
                }
                if t == 1 && p == 0 {
                    pd = pd.with_aborted_transactions(Some(vec![
                        AbortedTransaction::default()
                            .with_producer_id(7.into())
                            .with_first_offset(8),
                    ]));
                }
                // Partitions 0 and 2 from a file (sizes crossing varint boundaries), 1 in
                // memory, 3 empty.
                let len = match p {
                    0 => 126 + t * 300,
                    1 => 10,
                    2 => 20_000 + t,
                    _ => 0,
                };
                let data = records((t * 4 + p) as u8, len);
                pw.push(pd.clone().with_records(Some(data.clone())));
                if p == 0 || p == 2 {
                    f.write_all(&data).expect("write");
                    regions.push((
                        t,
                        p,
                        FileRegion {
                            file: Arc::clone(file),
                            position,
                            len,
                            next_offset: 0,
                        },
                    ));
                    position += len as u64;
                    pn.push(pd.with_records(None));
                } else {
                    pn.push(pd.with_records(Some(data)));
                }
            }
            let name = TopicName(StrBytes::from_string(format!("topic-{t}")));
            with.push(
                FetchableTopicResponse::default()
                    .with_topic(name.clone())
                    .with_partitions(pw),
            );
            without.push(
                FetchableTopicResponse::default()
                    .with_topic(name)
                    .with_partitions(pn),
            );
        }
        let top = FetchResponse::default()
            .with_throttle_time_ms(5)
            .with_error_code(0)
            .with_session_id(if version >= 7 { 42 } else { 0 });
        (
            top.clone().with_responses(with),
            top.with_responses(without),
            regions,
        )
    }

    #[test]
    fn parts_and_files_equal_the_codecs_encoding_for_every_served_version() {
        for version in 4..=12i16 {
            let file = Arc::new(tempfile::tempfile().expect("tempfile"));
            let (with, without, regions) = response(version, &file);
            let mut want = BytesMut::new();
            want.put_i32(0);
            ResponseHeader::default()
                .with_correlation_id(99)
                .encode(&mut want, ApiKey::Fetch.response_header_version(version))
                .expect("header");
            with.encode(&mut want, version).expect("body");
            let len = (want.len() - 4) as i32;
            want[0..4].copy_from_slice(&len.to_be_bytes());

            let parts = encode(version, 99, without, &regions).expect("cut");
            let mut got = Vec::new();
            for p in &parts {
                match p {
                    Part::Bytes(b) => got.extend_from_slice(b),
                    Part::File(r) => got.extend_from_slice(&r.read_to_bytes().expect("read")),
                }
            }
            assert_eq!(got, &want[..], "v{version}");
            assert_eq!(
                parts.iter().filter(|p| matches!(p, Part::File(_))).count(),
                regions.len()
            );
        }
    }

    #[test]
    fn a_region_without_its_partition_is_refused() {
        let file = Arc::new(tempfile::tempfile().expect("tempfile"));
        let (_, without, mut regions) = response(12, &file);
        regions.push((9, 0, regions[0].2.clone()));
        assert!(encode(12, 1, without, &regions).is_err());
    }
}
