//! The one mapping table from storage errors to Kafka error codes.

use kafka_protocol::ResponseError;
use weft_log::{BatchError, Error};

/// The Kafka error a produce of a batch gets for a storage error.
pub(crate) fn produce_error(e: &Error) -> ResponseError {
    match e {
        Error::InvalidBatch(b) => match b {
            BatchError::UnsupportedMagic(_) => ResponseError::UnsupportedForMessageFormat,
            BatchError::InconsistentRecords(_) => ResponseError::InvalidRecord,
            BatchError::TooShort(_)
            | BatchError::LengthMismatch { .. }
            | BatchError::CrcMismatch { .. }
            | BatchError::UnknownCompression(_)
            | BatchError::Decompress(_) => ResponseError::CorruptMessage,
        },
        Error::MessageTooLarge { .. } => ResponseError::MessageTooLarge,
        Error::KeylessRecordInCompactedLog => ResponseError::InvalidRecord,
        Error::NotFound(_) | Error::Closed => ResponseError::UnknownTopicOrPartition,
        Error::OffsetBelowLogStart { .. } | Error::OffsetBeyondLogEnd { .. } => {
            ResponseError::OffsetOutOfRange
        }
        Error::Poisoned { .. } | Error::Io { .. } | Error::Corrupt { .. } => {
            ResponseError::KafkaStorageError
        }
        _ => ResponseError::UnknownServerError,
    }
}

/// The Kafka error for a storage error on the read side (fetch, list offsets, delete records).
pub(crate) fn read_error(e: &Error) -> ResponseError {
    match e {
        Error::OffsetBelowLogStart { .. } | Error::OffsetBeyondLogEnd { .. } => {
            ResponseError::OffsetOutOfRange
        }
        Error::NotFound(_) | Error::Closed => ResponseError::UnknownTopicOrPartition,
        _ => ResponseError::KafkaStorageError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn produce_errors_map_as_kafka_reports_them() {
        let cases: Vec<(Error, ResponseError)> = vec![
            (
                BatchError::CrcMismatch {
                    expected: 1,
                    actual: 2,
                }
                .into(),
                ResponseError::CorruptMessage,
            ),
            (
                BatchError::UnsupportedMagic(1).into(),
                ResponseError::UnsupportedForMessageFormat,
            ),
            (
                BatchError::InconsistentRecords("x".into()).into(),
                ResponseError::InvalidRecord,
            ),
            (
                Error::MessageTooLarge { size: 2, max: 1 },
                ResponseError::MessageTooLarge,
            ),
            (
                Error::KeylessRecordInCompactedLog,
                ResponseError::InvalidRecord,
            ),
            (
                Error::Poisoned {
                    operation: "fsync",
                    reason: "x".into(),
                },
                ResponseError::KafkaStorageError,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(produce_error(&e), want, "{e}");
        }
    }
}
