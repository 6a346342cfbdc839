//! The producer: librdkafka with safe defaults, context headers on every record, and a
//! `send` that resolves once the broker acknowledged the record.
//!
//! Defaults (each can be overridden through [`ProducerConfig::set`]):
//! - `enable.idempotence=true`, `acks=all`: no duplicates or reordering from retries, and a
//!   record counts as sent only when every in-sync replica has it (on Weft's broker: when it
//!   is durable);
//! - `max.in.flight.requests.per.connection=5`: bounded in-flight, the most idempotence
//!   allows while keeping order;
//! - `partitioner=murmur2_random`: a keyed record lands on the partition the Java client's
//!   default partitioner picks (`murmur2(key) & 0x7fffffff % partitions`), records without
//!   a key on a random one;
//! - `message.timeout.ms=120000`: a record that cannot be delivered fails its future after
//!   two minutes instead of waiting forever.

use std::time::Duration;

use bytes::Bytes;
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use serde::Serialize;

use crate::context::{self, MessageContext};
use crate::message::Message;
use crate::{Error, Result};

/// How a [`Producer`] connects, with librdkafka overrides.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    settings: Vec<(String, String)>,
}

impl ProducerConfig {
    /// Safe defaults for `bootstrap` (`host:port[,host:port…]`).
    pub fn new(bootstrap: &str) -> ProducerConfig {
        let mut c = ProducerConfig {
            settings: Vec::new(),
        };
        c.set("bootstrap.servers", bootstrap)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("max.in.flight.requests.per.connection", "5")
            .set("partitioner", "murmur2_random")
            .set("message.timeout.ms", "120000")
            .set("linger.ms", "5");
        c
    }

    /// Sets (or replaces) a librdkafka property.
    pub fn set(&mut self, key: &str, value: &str) -> &mut ProducerConfig {
        self.settings.retain(|(k, _)| k != key);
        self.settings.push((key.to_owned(), value.to_owned()));
        self
    }

    pub(crate) fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        for (k, v) in &self.settings {
            c.set(k, v);
        }
        c
    }
}

/// A record to send. Context headers are added by [`Producer::send`].
#[derive(Debug, Clone)]
pub struct Record {
    pub topic: String,
    pub key: Option<Bytes>,
    pub payload: Option<Bytes>,
    /// Headers of the caller's own, sent before the context headers; a context header set
    /// here (e.g. a stable `weft-message-id`) replaces the generated one.
    pub headers: Vec<(String, Bytes)>,
    /// A fixed partition instead of the partitioner's choice.
    pub partition: Option<i32>,
    parent: Option<MessageContext>,
}

impl Record {
    pub fn new(topic: impl Into<String>) -> Record {
        Record {
            topic: topic.into(),
            key: None,
            payload: None,
            headers: Vec::new(),
            partition: None,
            parent: None,
        }
    }

    pub fn key(mut self, key: impl Into<Bytes>) -> Record {
        self.key = Some(key.into());
        self
    }

    pub fn payload(mut self, payload: impl Into<Bytes>) -> Record {
        self.payload = Some(payload.into());
        self
    }

    /// `value` as plain JSON (no schema id).
    pub fn json<T: Serialize + ?Sized>(self, value: &T) -> Result<Record> {
        let body = serde_json::to_vec(value).map_err(|e| Error::Encode(e.to_string()))?;
        Ok(self.payload(body))
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Record {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn partition(mut self, partition: i32) -> Record {
        self.partition = Some(partition);
        self
    }

    /// Takes correlation and causation ids from `message` explicitly (inside a handler the
    /// runtime's current message is used without this).
    pub fn caused_by(mut self, message: &Message) -> Record {
        self.parent = Some(message.context());
        self
    }
}

/// Where the broker stored a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
    /// The `weft-message-id` it was sent with.
    pub message_id: String,
}

/// A producer; cheap to clone (one librdkafka handle shared).
#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer").finish_non_exhaustive()
    }
}

/// How long `send` waits for room in librdkafka's local queue before failing.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(30);

impl Producer {
    pub fn new(config: &ProducerConfig) -> Result<Producer> {
        let inner = config
            .client_config()
            .create()
            .map_err(|e| Error::Config(format!("cannot create producer: {e}")))?;
        Ok(Producer { inner })
    }

    /// Sends `record` with context headers (`weft-message-id`, correlation and causation
    /// ids, `traceparent`/`tracestate`) and resolves once the broker acknowledged it.
    pub async fn send(&self, record: Record) -> Result<Delivered> {
        let context = context::outgoing_headers(record.parent.as_ref());
        // A context header the caller set wins (an outbox relay re-publishing an event keeps
        // its original `weft-message-id`, so consumers deduplicate the re-publication).
        let mut headers = record.headers;
        for (name, value) in context {
            if !headers.iter().any(|(k, _)| k == name) {
                headers.push((name.to_owned(), Bytes::from(value)));
            }
        }
        let message_id = headers
            .iter()
            .rev()
            .find(|(k, _)| k == context::MESSAGE_ID)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        let (partition, offset) = self
            .send_raw(
                &record.topic,
                record.partition,
                record.key.as_deref(),
                record.payload.as_deref(),
                &headers,
            )
            .await?;
        Ok(Delivered {
            partition,
            offset,
            message_id,
        })
    }

    /// Sends exactly these headers (no context added): how the runtime forwards a record to a
    /// retry topic or the dead-letter queue with its original headers.
    pub(crate) async fn send_raw(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: &[(String, Bytes)],
    ) -> Result<(i32, i64)> {
        let mut owned = OwnedHeaders::new_with_capacity(headers.len());
        for (k, v) in headers {
            owned = owned.insert(Header {
                key: k.as_str(),
                value: Some(v.as_ref()),
            });
        }
        let mut fr: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(owned);
        if let Some(k) = key {
            fr = fr.key(k);
        }
        if let Some(p) = payload {
            fr = fr.payload(p);
        }
        if let Some(p) = partition {
            fr = fr.partition(p);
        }
        match self.inner.send(fr, QUEUE_TIMEOUT).await {
            Ok(d) => Ok((d.partition, d.offset)),
            Err((e, _)) => Err(Error::Produce {
                topic: topic.to_owned(),
                message: e.to_string(),
            }),
        }
    }

    /// Waits until every queued record was delivered (or failed).
    pub async fn flush(&self, timeout: Duration) -> Result<()> {
        let p = self.inner.clone();
        tokio::task::spawn_blocking(move || p.flush(timeout))
            .await
            .map_err(|e| Error::Produce {
                topic: String::new(),
                message: e.to_string(),
            })?
            .map_err(|e| Error::Produce {
                topic: String::new(),
                message: e.to_string(),
            })
    }
}
