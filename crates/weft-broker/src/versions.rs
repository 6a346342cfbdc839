//! The API versions this broker advertises.
//!
//! Minimum versions are deliberately low: librdkafka before 2.11.1 turns features on only when
//! exact versions lie inside the advertised range (MsgVer2 needs Produce 3 and Fetch 4,
//! compression needs Produce 0 in the range, idempotence InitProducerId 0, offsets by time
//! ListOffsets 1, LZ4 FindCoordinator 0). Versions in the range that we do not implement are listed in
//! [`refused`] and answered with UNSUPPORTED_VERSION.

use kafka_protocol::messages::ApiKey;

/// (api, min advertised, max advertised)
const ADVERTISED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 0, 11),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::DescribeTopicPartitions, 0, 0),
    // Groups are coordinated by this broker; transaction lookups answer
    // COORDINATOR_NOT_AVAILABLE. v0 stays: librdkafka before 2.11.1 enables LZ4 only when
    // FindCoordinator v0 is in range.
    (ApiKey::FindCoordinator, 0, 4),
    // The classic group protocol (`group`). librdkafka's balanced consumer needs
    // JoinGroup/SyncGroup/Heartbeat/LeaveGroup v0, OffsetCommit and OffsetFetch v1 in range
    // (OffsetCommit v1 overlaps: its feature check is a range intersection).
    (ApiKey::JoinGroup, 0, 8),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    // v9: the member epoch of consumer-protocol (KIP-848) groups in place of the generation.
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    // v5: the group type (classic or consumer) and its filter.
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    // The consumer group protocol (KIP-848, `group.protocol=consumer`); librdkafka 2.12
    // needs ConsumerGroupHeartbeat v1 (client-chosen member ids, KIP-1082).
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
    // ACLs and SCRAM credentials (`handlers/acls.rs`); ACL v0 is gone from Kafka 4 and the
    // codec, v1 is what kafka-python and librdkafka use.
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    // SASL (`server`/`security`, not `handlers`: they change the connection's session).
    // Handshake v0 is followed by raw SASL frames; v1 by SaslAuthenticate (v1+: KIP-368).
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
];

/// Every advertised API with its (min, max) version, as sent in ApiVersions.
pub fn advertised_versions() -> Vec<(i16, i16, i16)> {
    ADVERTISED
        .iter()
        .map(|(k, min, max)| (*k as i16, *min, *max))
        .collect()
}

/// The advertised range of an API key; `None` when the API is not served.
pub(crate) fn range(api_key: i16) -> Option<(ApiKey, i16, i16)> {
    ADVERTISED
        .iter()
        .find(|(k, _, _)| *k as i16 == api_key)
        .copied()
}

/// Versions inside the advertised range that are answered with UNSUPPORTED_VERSION: Produce
/// v0–v2 carry message formats v0/v1 only, which the log does not store.
pub(crate) fn refused(api: ApiKey, version: i16) -> bool {
    matches!(api, ApiKey::Produce) && version < 3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_versions_are_decodable_by_the_codec_except_refused_ones() {
        for (api, min, max) in ADVERTISED {
            let codec = api.valid_versions();
            assert!(*max <= codec.max, "{api:?} max {max} > codec {}", codec.max);
            for v in *min..=*max {
                assert!(
                    v >= codec.min || refused(*api, v),
                    "{api:?} v{v} neither decodable nor refused"
                );
            }
        }
    }
}
