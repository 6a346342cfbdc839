//! Payloads in the Confluent wire format through a schema registry (Weft's, or Confluent's:
//! the same REST API).
//!
//! [`SchemaSerializer`] turns a value into `0x00 | schema id (4 bytes BE) | body` — Avro
//! binary (apache-avro), JSON (validated against the JSON Schema first) or Protobuf (with
//! the message-index prefix) — registering the schema under its subject the first time (or
//! only looking it up, with `auto_register` off). Ids and parsed schemas are cached for the
//! life of the serializer: an id never changes meaning.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde_json::{Value, json};
use weft_schema::ParsedSchema;
pub use weft_schema::SchemaType;

use crate::{Error, Result};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The subject of a topic's values under the default TopicNameStrategy.
pub fn value_subject(topic: &str) -> String {
    format!("{topic}-value")
}

/// The subject of a topic's keys under the default TopicNameStrategy.
pub fn key_subject(topic: &str) -> String {
    format!("{topic}-key")
}

/// A small client of the registry's REST API (plain `http://`).
#[derive(Clone)]
pub struct RegistryClient {
    base: String,
    /// Sent as `Authorization` with every request (marked sensitive; never in `Debug`).
    authorization: Option<hyper::header::HeaderValue>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("base", &self.base)
            .finish()
    }
}

impl RegistryClient {
    pub fn new(base: &str) -> Result<RegistryClient> {
        let base = base.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") {
            return Err(Error::Config(format!(
                "registry URL {base}: expected http:// (https is not supported yet)"
            )));
        }
        Ok(RegistryClient {
            base,
            authorization: None,
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    /// Sends `Authorization: <value>` (e.g. `Bearer <token>`) with every request.
    pub fn with_authorization(mut self, value: &str) -> Result<RegistryClient> {
        let mut v = hyper::header::HeaderValue::from_str(value).map_err(|_| {
            Error::Config("registry authorization: not a valid header value".into())
        })?;
        v.set_sensitive(true);
        self.authorization = Some(v);
        Ok(self)
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut req = Request::builder()
            .method(method)
            .uri(&url)
            .header("content-type", "application/vnd.schemaregistry.v1+json")
            .header("accept", "application/vnd.schemaregistry.v1+json");
        if let Some(v) = &self.authorization {
            req = req.header(hyper::header::AUTHORIZATION, v.clone());
        }
        let req = req
            .body(Full::new(Bytes::from(
                body.map(|b| b.to_string()).unwrap_or_default(),
            )))
            .map_err(|e| Error::Registry(format!("bad request URL {url}: {e}")))?;
        let res = tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| Error::Registry(format!("no answer from {url} in time")))?
            .map_err(|e| Error::Registry(format!("no answer from {url}: {e}")))?;
        let status = res.status().as_u16();
        let raw = res
            .into_body()
            .collect()
            .await
            .map_err(|e| Error::Registry(format!("reading the answer from {url}: {e}")))?
            .to_bytes();
        let body: Value = serde_json::from_slice(&raw)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&raw).into_owned()));
        if status >= 400 {
            return Err(Error::Registry(format!(
                "{url} answered {status} (error_code {}): {}",
                body["error_code"],
                body["message"].as_str().unwrap_or_default()
            )));
        }
        Ok(body)
    }

    /// Registers `schema` under `subject` (idempotent: an already registered schema answers
    /// its existing id) and returns the id.
    pub async fn register(
        &self,
        subject: &str,
        schema_type: SchemaType,
        schema: &str,
    ) -> Result<u32> {
        let path = format!("/subjects/{}/versions", seg(subject));
        self.post_schema(&path, schema_type, schema).await
    }

    /// The id of `schema` already registered under `subject`.
    pub async fn lookup(
        &self,
        subject: &str,
        schema_type: SchemaType,
        schema: &str,
    ) -> Result<u32> {
        let path = format!("/subjects/{}", seg(subject));
        self.post_schema(&path, schema_type, schema).await
    }

    async fn post_schema(&self, path: &str, schema_type: SchemaType, schema: &str) -> Result<u32> {
        let body = json!({"schema": schema, "schemaType": schema_type.as_str()});
        let answer = self.call(Method::POST, path, Some(body)).await?;
        id_of(&answer)
    }

    /// The schema registered with `id`: its type and text.
    pub async fn schema_by_id(&self, id: u32) -> Result<(SchemaType, String)> {
        let answer = self
            .call(Method::GET, &format!("/schemas/ids/{id}"), None)
            .await?;
        schema_of(&answer, &format!("schema {id}"))
    }

    /// The schema of `subject` at `version` (a number or `latest`): its type and text.
    pub async fn schema_by_version(
        &self,
        subject: &str,
        version: &str,
    ) -> Result<(SchemaType, String)> {
        let path = format!("/subjects/{}/versions/{}", seg(subject), seg(version));
        let answer = self.call(Method::GET, &path, None).await?;
        schema_of(&answer, &format!("{subject} version {version}"))
    }
}

/// The type and text of a registry answer carrying a schema (`schemaType` absent = Avro).
fn schema_of(answer: &Value, what: &str) -> Result<(SchemaType, String)> {
    let text = answer["schema"]
        .as_str()
        .ok_or_else(|| Error::Registry(format!("{what}: answer without a schema")))?;
    let t = match answer["schemaType"].as_str().unwrap_or("AVRO") {
        "PROTOBUF" => SchemaType::Protobuf,
        "JSON" => SchemaType::Json,
        _ => SchemaType::Avro,
    };
    Ok((t, text.to_owned()))
}

fn id_of(answer: &Value) -> Result<u32> {
    answer["id"]
        .as_u64()
        .and_then(|id| u32::try_from(id).ok())
        .ok_or_else(|| Error::Registry(format!("answer without an id: {answer}")))
}

/// A path segment, percent-encoded.
fn seg(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Serializes values into the Confluent wire format, registering (or looking up) their
/// schemas once and caching ids and parsed schemas.
#[derive(Clone, Debug)]
pub struct SchemaSerializer {
    registry: RegistryClient,
    auto_register: bool,
    ids: Arc<Mutex<HashMap<(String, String), u32>>>,
    avro: Arc<Mutex<HashMap<u32, Arc<apache_avro::Schema>>>>,
    json: Arc<Mutex<HashMap<u32, Arc<ParsedSchema>>>>,
}

impl SchemaSerializer {
    /// Registers unknown schemas (like Confluent's serializers' `auto.register.schemas`).
    pub fn new(registry: RegistryClient) -> SchemaSerializer {
        SchemaSerializer {
            registry,
            auto_register: true,
            ids: Arc::default(),
            avro: Arc::default(),
            json: Arc::default(),
        }
    }

    /// Only looks schemas up; a schema not registered under the subject is an error.
    pub fn lookup_only(mut self) -> SchemaSerializer {
        self.auto_register = false;
        self
    }

    /// The id of `schema` under `subject`, from the cache or the registry.
    pub async fn schema_id(
        &self,
        subject: &str,
        schema_type: SchemaType,
        schema: &str,
    ) -> Result<u32> {
        let key = (subject.to_owned(), schema.to_owned());
        if let Some(id) = lock(&self.ids).get(&key) {
            return Ok(*id);
        }
        let id = if self.auto_register {
            self.registry.register(subject, schema_type, schema).await?
        } else {
            self.registry.lookup(subject, schema_type, schema).await?
        };
        lock(&self.ids).insert(key, id);
        Ok(id)
    }

    /// `value` as Avro binary against `schema` (the writer schema, as JSON text).
    pub async fn avro<T: Serialize>(
        &self,
        subject: &str,
        schema: &str,
        value: &T,
    ) -> Result<Bytes> {
        let id = self.schema_id(subject, SchemaType::Avro, schema).await?;
        let parsed = {
            let cached = lock(&self.avro).get(&id).cloned();
            match cached {
                Some(s) => s,
                None => {
                    let s = Arc::new(
                        apache_avro::Schema::parse_str(schema)
                            .map_err(|e| Error::Encode(format!("avro schema: {e}")))?,
                    );
                    lock(&self.avro).insert(id, s.clone());
                    s
                }
            }
        };
        let v = apache_avro::to_value(value).map_err(|e| Error::Encode(e.to_string()))?;
        let v = v
            .resolve(&parsed)
            .map_err(|e| Error::Encode(format!("value does not match the avro schema: {e}")))?;
        let body = apache_avro::writer::datum::GenericDatumWriter::builder(&parsed)
            .build()
            .and_then(|w| w.write_value_to_vec(v))
            .map_err(|e| Error::Encode(e.to_string()))?;
        Ok(framed(id, &[], &body, false))
    }

    /// `value` as JSON, validated against the JSON Schema `schema` before it is sent.
    pub async fn json_schema<T: Serialize>(
        &self,
        subject: &str,
        schema: &str,
        value: &T,
    ) -> Result<Bytes> {
        let id = self.schema_id(subject, SchemaType::Json, schema).await?;
        let parsed = {
            let cached = lock(&self.json).get(&id).cloned();
            match cached {
                Some(s) => s,
                None => {
                    let s = Arc::new(
                        ParsedSchema::parse(SchemaType::Json, schema, &[])
                            .map_err(|e| Error::Encode(format!("json schema: {e}")))?,
                    );
                    lock(&self.json).insert(id, s.clone());
                    s
                }
            }
        };
        let body = serde_json::to_vec(value).map_err(|e| Error::Encode(e.to_string()))?;
        parsed
            .validate(&body, &[])
            .map_err(|e| Error::Encode(format!("value does not match the json schema: {e}")))?;
        Ok(framed(id, &[], &body, false))
    }

    /// `message` as Protobuf; `message_indexes` name the message type in the schema (`[0]`:
    /// the first message).
    pub async fn protobuf<M: prost::Message>(
        &self,
        subject: &str,
        schema: &str,
        message_indexes: &[i32],
        message: &M,
    ) -> Result<Bytes> {
        self.protobuf_encoded(subject, schema, message_indexes, &message.encode_to_vec())
            .await
    }

    /// An already encoded Protobuf `body` (from any Protobuf library) framed with the schema
    /// id and `message_indexes`.
    pub async fn protobuf_encoded(
        &self,
        subject: &str,
        schema: &str,
        message_indexes: &[i32],
        body: &[u8],
    ) -> Result<Bytes> {
        let id = self
            .schema_id(subject, SchemaType::Protobuf, schema)
            .await?;
        Ok(framed(id, message_indexes, body, true))
    }
}

fn framed(id: u32, indexes: &[i32], body: &[u8], protobuf: bool) -> Bytes {
    let mut out = Vec::with_capacity(5 + body.len() + 4);
    out.push(0);
    out.extend_from_slice(&id.to_be_bytes());
    if protobuf {
        weft_schema::wire::write_message_indexes(indexes, &mut out);
    }
    out.extend_from_slice(body);
    Bytes::from(out)
}

/// A mutex whose poisoning (a panic while holding it) is not ours to propagate: the maps
/// hold only caches.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Decodes an Avro wire-format payload with its writer schema fetched by id.
pub async fn decode_avro<T: serde::de::DeserializeOwned>(
    registry: &RegistryClient,
    payload: &[u8],
) -> Result<T> {
    let (schema_ref, mut body) =
        weft_schema::wire::split_prefix(payload).map_err(|e| Error::Decode(e.to_string()))?;
    let weft_schema::wire::SchemaRef::Id(id) = schema_ref else {
        return Err(Error::Decode("schema GUIDs are not supported yet".into()));
    };
    let (_, text) = registry.schema_by_id(id).await?;
    let schema = apache_avro::Schema::parse_str(&text).map_err(|e| Error::Decode(e.to_string()))?;
    apache_avro::reader::datum::GenericDatumReader::builder(&schema)
        .build()
        .and_then(|r| r.read_deser(&mut body))
        .map_err(|e| Error::Decode(e.to_string()))
}

/// Decodes a Protobuf wire-format payload (schema id, message indexes, body) into `M`;
/// returns the schema id and message indexes with it. The caller's `M` must be the message
/// the indexes name (check them when a topic carries several types).
pub fn decode_protobuf<M: prost::Message + Default>(payload: &[u8]) -> Result<(u32, Vec<i32>, M)> {
    let (schema_ref, rest) =
        weft_schema::wire::split_prefix(payload).map_err(|e| Error::Decode(e.to_string()))?;
    let weft_schema::wire::SchemaRef::Id(id) = schema_ref else {
        return Err(Error::Decode("schema GUIDs are not supported yet".into()));
    };
    let (indexes, body) =
        weft_schema::wire::split_message_indexes(rest).map_err(|e| Error::Decode(e.to_string()))?;
    let message = M::decode(body).map_err(|e| Error::Decode(e.to_string()))?;
    Ok((id, indexes, message))
}

#[cfg(test)]
mod tests {
    #[derive(Clone, PartialEq, prost::Message)]
    struct Ping {
        #[prost(string, tag = "1")]
        name: String,
        #[prost(int64, tag = "2")]
        n: i64,
    }

    #[test]
    fn protobuf_round_trip_and_refusals() {
        use prost::Message as _;
        let ping = Ping {
            name: "a".into(),
            n: 7,
        };
        for indexes in [vec![0], vec![1, 2]] {
            let framed = super::framed(42, &indexes, &ping.encode_to_vec(), true);
            let (id, got_indexes, back) = super::decode_protobuf::<Ping>(&framed).expect("decodes");
            assert_eq!((id, got_indexes, back), (42, indexes, ping.clone()));
        }
        for bad in [
            &[][..],
            &[2, 0, 0, 0, 1][..],
            &[0, 0, 0][..],
            &[0, 0, 0, 0, 1, 0x7f][..],
        ] {
            assert!(super::decode_protobuf::<Ping>(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn frames() {
        let f = super::framed(258, &[0], b"x", true);
        assert_eq!(&f[..], &[0, 0, 0, 1, 2, 0, b'x']);
        let f = super::framed(7, &[], b"{}", false);
        assert_eq!(&f[..], &[0, 0, 0, 0, 7, b'{', b'}']);
        assert_eq!(super::seg("a b/c"), "a%20b%2Fc");
    }
}
