//! Request decoding that cannot be made to allocate without bound.
//!
//! `kafka-protocol` 0.18 reads an array's length from the wire and calls
//! `Vec::with_capacity(length)` before decoding any element (strings and bytes likewise
//! allocate their length up front). A frame of a few bytes declaring 2³¹ elements asks for
//! ~150 GB; the allocation fails and Rust aborts the whole process. See `FINDINGS.md`.
//!
//! [`Guarded`] is the buffer the decoder reads from. A length can never exceed the bytes
//! left after it (every element takes at least one byte), so wherever an `INT32` or an
//! unsigned varint (compact lengths are `n + 1`) claims more than that, the guard hands the
//! decoder "remaining + 1" instead: the allocation is bounded by the frame size and the
//! decode then fails on the missing bytes, as it must. The guard cannot tell lengths from
//! other integers, so a scalar that is legitimately larger than the rest of the frame (a
//! Fetch `max_bytes` of 50 MB, a long timeout) is clamped too; the decode then succeeds
//! with a wrong value, which [`decode_request`] detects (`clamped`) and answers by decoding
//! again from the plain bytes. That second decode is safe: it reads the same lengths the
//! first one accepted.
//!
//! The codec stays `kafka-protocol`'s; this only bounds what it is told.

use bytes::{Buf, Bytes, TryGetError};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Decodable;
use kafka_protocol::protocol::buf::ByteBuf;

pub(crate) struct Guarded {
    buf: Bytes,
    /// Bytes of a clamped varint still to hand out, last first.
    pending: Vec<u8>,
    /// Bytes of the current varint read so far (0: the next `u8` starts one). The decoder
    /// reads varints byte by byte, so only a varint's first byte may trigger the check.
    varint_pos: u8,
    /// Whether any value was clamped.
    clamped: bool,
}

impl Guarded {
    fn new(buf: Bytes) -> Guarded {
        Guarded {
            buf,
            pending: Vec::new(),
            varint_pos: 0,
            clamped: false,
        }
    }

    /// The varint starting at the cursor as the decoder computes it (`u32`, at most five
    /// bytes), and its length; `None` when it is not complete in the buffer.
    fn peek_varint(&self) -> Option<(u32, usize)> {
        let mut value = 0u32;
        for (i, b) in self.buf.chunk().iter().take(5).enumerate() {
            value |= u32::from(b & 0x7f).wrapping_shl(7 * i as u32);
            if *b < 0x80 || i == 4 {
                return Some((value, i + 1));
            }
        }
        None
    }
}

/// `value` as a varint of exactly `len` bytes (non-minimal when needed). `value` must fit.
fn varint_of_len(value: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            let group = (value >> (7 * i)) as u8 & 0x7f;
            if i + 1 < len { group | 0x80 } else { group }
        })
        .collect()
}

impl Buf for Guarded {
    fn remaining(&self) -> usize {
        self.buf.remaining()
    }

    fn chunk(&self) -> &[u8] {
        self.buf.chunk()
    }

    fn advance(&mut self, cnt: usize) {
        self.pending.clear();
        self.varint_pos = 0;
        self.buf.advance(cnt);
    }

    fn try_get_i32(&mut self) -> Result<i32, TryGetError> {
        self.pending.clear();
        self.varint_pos = 0;
        let v = self.buf.try_get_i32()?;
        let limit = i32::try_from(self.buf.remaining()).unwrap_or(i32::MAX - 1) + 1;
        if v > limit {
            self.clamped = true;
            return Ok(limit);
        }
        Ok(v)
    }

    fn try_get_u8(&mut self) -> Result<u8, TryGetError> {
        if self.varint_pos == 0 && self.pending.is_empty() {
            self.check_varint_start();
        }
        let b = match self.pending.pop() {
            Some(b) => {
                self.buf.try_get_u8()?;
                b
            }
            None => self.buf.try_get_u8()?,
        };
        // The decoder stops after a byte without the continuation bit, or after five.
        if b >= 0x80 && self.varint_pos < 4 {
            self.varint_pos += 1;
        } else {
            self.varint_pos = 0;
        }
        Ok(b)
    }
}

impl Guarded {
    /// At the first byte of a varint: when its value is more than a length could be, queue
    /// a same-length encoding of "one more than possible" to hand out instead.
    fn check_varint_start(&mut self) {
        let Some((value, len)) = self.peek_varint().filter(|(_, len)| *len > 1) else {
            return;
        };
        // As a compact length, `value - 1` bytes or elements must follow.
        let limit = self.buf.remaining() - len + 1;
        if value as usize <= limit {
            return;
        }
        let clamped = u32::try_from(limit + 1).unwrap_or(u32::MAX);
        if u64::from(clamped) < 1u64 << (7 * len as u64).min(32) {
            self.clamped = true;
            self.pending = varint_of_len(clamped, len);
            self.pending.reverse();
        }
    }
}

impl ByteBuf for Guarded {
    fn peek_bytes(&mut self, r: std::ops::Range<usize>) -> Bytes {
        let len = self.buf.len();
        self.buf.slice(r.start.min(len)..r.end.min(len))
    }

    fn get_bytes(&mut self, size: usize) -> Bytes {
        self.pending.clear();
        self.varint_pos = 0;
        self.buf.split_to(size.min(self.buf.len()))
    }
}

fn decode_as<T: Decodable>(
    buf: &mut Guarded,
    plain: &Bytes,
    version: i16,
    wrap: fn(T) -> RequestKind,
) -> Result<RequestKind, String> {
    let first = T::decode(buf, version).map_err(|e| e.to_string())?;
    if !buf.clamped {
        return Ok(wrap(first));
    }
    // A scalar larger than the rest of the frame was clamped: decode the plain bytes.
    let mut plain = plain.clone();
    T::decode(&mut plain, version)
        .map(wrap)
        .map_err(|e| e.to_string())
}

/// Decodes a request body of one of the served APIs (others are refused before this).
pub(crate) fn decode_request(
    api: ApiKey,
    body: Bytes,
    version: i16,
) -> Result<RequestKind, String> {
    let mut g = Guarded::new(body.clone());
    let b = &body;
    match api {
        ApiKey::Produce => decode_as::<ProduceRequest>(&mut g, b, version, RequestKind::Produce),
        ApiKey::Fetch => decode_as::<FetchRequest>(&mut g, b, version, RequestKind::Fetch),
        ApiKey::ListOffsets => {
            decode_as::<ListOffsetsRequest>(&mut g, b, version, RequestKind::ListOffsets)
        }
        ApiKey::Metadata => decode_as::<MetadataRequest>(&mut g, b, version, RequestKind::Metadata),
        ApiKey::ApiVersions => {
            decode_as::<ApiVersionsRequest>(&mut g, b, version, RequestKind::ApiVersions)
        }
        ApiKey::CreateTopics => {
            decode_as::<CreateTopicsRequest>(&mut g, b, version, RequestKind::CreateTopics)
        }
        ApiKey::DeleteTopics => {
            decode_as::<DeleteTopicsRequest>(&mut g, b, version, RequestKind::DeleteTopics)
        }
        ApiKey::DeleteRecords => {
            decode_as::<DeleteRecordsRequest>(&mut g, b, version, RequestKind::DeleteRecords)
        }
        ApiKey::InitProducerId => {
            decode_as::<InitProducerIdRequest>(&mut g, b, version, RequestKind::InitProducerId)
        }
        ApiKey::DescribeConfigs => {
            decode_as::<DescribeConfigsRequest>(&mut g, b, version, RequestKind::DescribeConfigs)
        }
        ApiKey::AlterConfigs => {
            decode_as::<AlterConfigsRequest>(&mut g, b, version, RequestKind::AlterConfigs)
        }
        ApiKey::DescribeLogDirs => {
            decode_as::<DescribeLogDirsRequest>(&mut g, b, version, RequestKind::DescribeLogDirs)
        }
        ApiKey::CreatePartitions => {
            decode_as::<CreatePartitionsRequest>(&mut g, b, version, RequestKind::CreatePartitions)
        }
        ApiKey::IncrementalAlterConfigs => decode_as::<IncrementalAlterConfigsRequest>(
            &mut g,
            b,
            version,
            RequestKind::IncrementalAlterConfigs,
        ),
        ApiKey::DescribeCluster => {
            decode_as::<DescribeClusterRequest>(&mut g, b, version, RequestKind::DescribeCluster)
        }
        ApiKey::DescribeTopicPartitions => decode_as::<DescribeTopicPartitionsRequest>(
            &mut g,
            b,
            version,
            RequestKind::DescribeTopicPartitions,
        ),
        ApiKey::FindCoordinator => {
            decode_as::<FindCoordinatorRequest>(&mut g, b, version, RequestKind::FindCoordinator)
        }
        ApiKey::JoinGroup => {
            decode_as::<JoinGroupRequest>(&mut g, b, version, RequestKind::JoinGroup)
        }
        ApiKey::SyncGroup => {
            decode_as::<SyncGroupRequest>(&mut g, b, version, RequestKind::SyncGroup)
        }
        ApiKey::Heartbeat => {
            decode_as::<HeartbeatRequest>(&mut g, b, version, RequestKind::Heartbeat)
        }
        ApiKey::LeaveGroup => {
            decode_as::<LeaveGroupRequest>(&mut g, b, version, RequestKind::LeaveGroup)
        }
        ApiKey::OffsetCommit => {
            decode_as::<OffsetCommitRequest>(&mut g, b, version, RequestKind::OffsetCommit)
        }
        ApiKey::OffsetFetch => {
            decode_as::<OffsetFetchRequest>(&mut g, b, version, RequestKind::OffsetFetch)
        }
        ApiKey::ListGroups => {
            decode_as::<ListGroupsRequest>(&mut g, b, version, RequestKind::ListGroups)
        }
        ApiKey::DescribeGroups => {
            decode_as::<DescribeGroupsRequest>(&mut g, b, version, RequestKind::DescribeGroups)
        }
        ApiKey::DeleteGroups => {
            decode_as::<DeleteGroupsRequest>(&mut g, b, version, RequestKind::DeleteGroups)
        }
        ApiKey::OffsetDelete => {
            decode_as::<OffsetDeleteRequest>(&mut g, b, version, RequestKind::OffsetDelete)
        }
        ApiKey::ConsumerGroupHeartbeat => decode_as::<ConsumerGroupHeartbeatRequest>(
            &mut g,
            b,
            version,
            RequestKind::ConsumerGroupHeartbeat,
        ),
        ApiKey::ConsumerGroupDescribe => decode_as::<ConsumerGroupDescribeRequest>(
            &mut g,
            b,
            version,
            RequestKind::ConsumerGroupDescribe,
        ),
        // ACL and SCRAM credential administration (handlers/acls.rs).
        ApiKey::CreateAcls => {
            decode_as::<CreateAclsRequest>(&mut g, b, version, RequestKind::CreateAcls)
        }
        ApiKey::DescribeAcls => {
            decode_as::<DescribeAclsRequest>(&mut g, b, version, RequestKind::DescribeAcls)
        }
        ApiKey::DeleteAcls => {
            decode_as::<DeleteAclsRequest>(&mut g, b, version, RequestKind::DeleteAcls)
        }
        ApiKey::DescribeUserScramCredentials => decode_as::<DescribeUserScramCredentialsRequest>(
            &mut g,
            b,
            version,
            RequestKind::DescribeUserScramCredentials,
        ),
        ApiKey::AlterUserScramCredentials => decode_as::<AlterUserScramCredentialsRequest>(
            &mut g,
            b,
            version,
            RequestKind::AlterUserScramCredentials,
        ),
        other => Err(format!("{other:?} is not served")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use kafka_protocol::protocol::Encodable;

    fn body(bytes: &[u8]) -> Bytes {
        Bytes::copy_from_slice(bytes)
    }

    #[test]
    fn impossible_lengths_fail_without_huge_allocations() {
        // Each of these made kafka-protocol ask for gigabytes (and abort) before the guard.
        let cases: &[(ApiKey, i16, &[u8])] = &[
            (ApiKey::Metadata, 0, &[0x10, 0, 0, 3]),
            (ApiKey::Metadata, 1, &[0x7f, 0xff, 0xff, 0xff]),
            // flexible: compact array length varint 0xffffffff
            (ApiKey::Metadata, 12, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
            (
                ApiKey::Produce,
                9,
                &[
                    0, 0, 0xff, 0xff, 0, 0, 0x75, 0x30, 0xff, 0xff, 0xff, 0xff, 0x0f,
                ],
            ),
            (
                ApiKey::Produce,
                3,
                &[0xff, 0xff, 0, 1, 0, 0, 0x75, 0x30, 0x7f, 0, 0, 0],
            ),
            (
                ApiKey::Fetch,
                4,
                &[
                    0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0x7f, 0xff,
                    0xff, 0xff,
                ],
            ),
            // found by the fuzzer (Produce v11 body): a length varint starting mid-run
            (
                ApiKey::Produce,
                11,
                &[
                    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
                    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0xda, 0xda, 0xda, 0xda, 0xda, 0xda, 0xda,
                    0xda, 0xda, 0xda, 0xda, 0xda, 0xda, 0xda, 0xda, 0xda, 0xda, 0xda, 0xda, 0xda,
                    0xda, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
                    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 0x00, 0xe1, 0x00, 0x19,
                    0x00, 0x00, 0x00, 0x00,
                ],
            ),
            // a string (compact) claiming 4 GB
            (
                ApiKey::CreateTopics,
                7,
                &[0x02, 0xff, 0xff, 0xff, 0xff, 0x0f],
            ),
            // a bytes field (records) claiming 2 GB
            (
                ApiKey::Produce,
                3,
                &[
                    0xff, 0xff, 0, 1, 0, 0, 0x75, 0x30, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 1, 0, 0,
                    0, 0, 0x7f, 0xff, 0xff, 0xff,
                ],
            ),
        ];
        for (api, version, bytes) in cases {
            assert!(
                decode_request(*api, body(bytes), *version).is_err(),
                "{api:?} v{version}"
            );
        }
    }

    #[test]
    fn legit_requests_decode_exactly_even_with_large_scalars() {
        use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
        use kafka_protocol::protocol::StrBytes;
        // max_bytes and max_wait far above the frame size: clamped in the guarded pass,
        // exact after the second.
        let req = FetchRequest::default()
            .with_max_wait_ms(i32::MAX)
            .with_min_bytes(1)
            .with_max_bytes(52_428_800)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_static_str("t")))
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_fetch_offset(7)
                            .with_partition_max_bytes(1 << 30),
                    ]),
            ]);
        for version in [4i16, 7, 11, 12] {
            let mut b = bytes::BytesMut::new();
            req.encode(&mut b, version).expect("encode");
            let got = decode_request(ApiKey::Fetch, b.freeze(), version).expect("decode");
            let RequestKind::Fetch(got) = got else {
                panic!("not a fetch")
            };
            assert_eq!(got.max_bytes, 52_428_800, "v{version}");
            assert_eq!(got.max_wait_ms, i32::MAX, "v{version}");
            assert_eq!(
                got.topics[0].partitions[0].partition_max_bytes,
                1 << 30,
                "v{version}"
            );
        }
        // Records as large as the frame allows are left alone.
        let mut records = bytes::BytesMut::new();
        records.put_bytes(7, 300_000);
        let req = ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![
                produce_request::TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_static_str("t")))
                    .with_partition_data(vec![
                        produce_request::PartitionProduceData::default()
                            .with_records(Some(records.freeze())),
                    ]),
            ]);
        for version in [3i16, 9, 11] {
            let mut b = bytes::BytesMut::new();
            req.encode(&mut b, version).expect("encode");
            let RequestKind::Produce(got) =
                decode_request(ApiKey::Produce, b.freeze(), version).expect("decode")
            else {
                panic!("not a produce")
            };
            assert_eq!(got, req, "v{version}");
        }
    }

    #[test]
    fn varints_are_rewritten_with_their_length() {
        assert_eq!(varint_of_len(5, 1), vec![5]);
        assert_eq!(varint_of_len(5, 3), vec![0x85, 0x80, 0x00]);
        assert_eq!(varint_of_len(300, 2), vec![0xac, 0x02]);
    }
}
