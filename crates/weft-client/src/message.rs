//! A consumed record, owned and cheap to clone (payloads are `Bytes`).

use bytes::Bytes;
use rdkafka::message::Headers;

use crate::context::{self, MessageContext};
use crate::{Error, Result};

/// One record handed to a handler.
#[derive(Debug, Clone)]
pub struct Message {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the epoch (create or log-append time), when the record has one.
    pub timestamp_ms: Option<i64>,
    pub key: Option<Bytes>,
    pub payload: Option<Bytes>,
    /// Headers in record order; a header without a value has an empty one.
    pub headers: Vec<(String, Bytes)>,
}

impl Message {
    pub(crate) fn from_kafka(m: &impl rdkafka::message::Message) -> Message {
        let headers = m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            Bytes::copy_from_slice(h.value.unwrap_or_default()),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Message {
            topic: m.topic().to_owned(),
            partition: m.partition(),
            offset: m.offset(),
            timestamp_ms: m.timestamp().to_millis(),
            key: m.key().map(Bytes::copy_from_slice),
            payload: m.payload().map(Bytes::copy_from_slice),
            headers,
        }
    }

    /// The last header named `name`, as bytes.
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        self.headers
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// The last header named `name`, when it is UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// `weft-message-id`, when the producer set one.
    pub fn message_id(&self) -> Option<&str> {
        self.header_str(context::MESSAGE_ID)
    }

    /// The key deduplication uses: `weft-message-id`, else `topic/partition/offset`.
    pub fn dedup_key(&self) -> String {
        match self.message_id() {
            Some(id) if !id.is_empty() => id.to_owned(),
            _ => format!("{}/{}/{}", self.topic, self.partition, self.offset),
        }
    }

    /// The context records produced while handling this message inherit.
    pub fn context(&self) -> MessageContext {
        let message_id = self.dedup_key();
        let correlation_id = self
            .header_str(context::CORRELATION_ID)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| message_id.clone());
        MessageContext {
            message_id,
            correlation_id,
            traceparent: self.header_str(context::TRACEPARENT).map(str::to_owned),
            tracestate: self.header_str(context::TRACESTATE).map(str::to_owned),
        }
    }

    /// The payload as JSON (plain JSON, or a JSON Schema payload in the Confluent wire
    /// format: a leading magic byte 0 and schema id are skipped).
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        let payload = self.payload.as_deref().unwrap_or_default();
        let body = match weft_schema::wire::split_prefix(payload) {
            Ok((_, rest)) if payload.first() == Some(&0) => rest,
            _ => payload,
        };
        serde_json::from_slice(body).map_err(|e| Error::Decode(e.to_string()))
    }
}
