//! The schema registry, reached by URL through its Confluent API (so the gateway works
//! with any Confluent-compatible registry), and encoding of produced values with a schema.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use weft_schema::{ParsedSchema, SchemaType};

use crate::problem::ApiError;

/// A schema as loaded by id.
pub(crate) struct Loaded {
    pub(crate) id: i32,
    pub(crate) schema_type: SchemaType,
    pub(crate) text: String,
    pub(crate) parsed: ParsedSchema,
}

#[derive(Clone)]
pub(crate) struct RegistryClient {
    base: String,
    /// Sent as `Authorization` on every request (`weft serve`'s internal credential).
    authorization: Option<hyper::header::HeaderValue>,
    client: Client<HttpConnector, Empty<Bytes>>,
    cache: Arc<Mutex<HashMap<i32, Arc<Loaded>>>>,
}

#[derive(Deserialize)]
struct SchemaById {
    schema: String,
    #[serde(rename = "schemaType")]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<serde_json::Value>,
}

impl RegistryClient {
    pub(crate) fn new(base: &str) -> RegistryClient {
        RegistryClient {
            base: base.trim_end_matches('/').to_owned(),
            authorization: None,
            client: Client::builder(TokioExecutor::new()).build_http(),
            cache: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Adds `Authorization: <value>` to every request (a value that is not a valid header
    /// is ignored; the registry then answers 401, which is reported).
    pub(crate) fn with_authorization(mut self, value: Option<&String>) -> RegistryClient {
        self.authorization = value.and_then(|v| {
            let mut v = hyper::header::HeaderValue::from_str(v).ok()?;
            v.set_sensitive(true);
            Some(v)
        });
        self
    }

    pub(crate) async fn get_json(&self, path: &str) -> Result<(u16, serde_json::Value), ApiError> {
        let uri: hyper::Uri = format!("{}{path}", self.base)
            .parse()
            .map_err(|e| ApiError::Registry(format!("registry url: {e}")))?;
        let mut request = hyper::Request::get(uri);
        if let Some(v) = &self.authorization {
            request = request.header(hyper::header::AUTHORIZATION, v.clone());
        }
        let request = request
            .body(Empty::new())
            .map_err(|e| ApiError::Registry(format!("registry request: {e}")))?;
        let response = tokio::time::timeout(Duration::from_secs(10), self.client.request(request))
            .await
            .map_err(|_| ApiError::Registry("registry did not answer within 10 s".into()))?
            .map_err(|e| ApiError::Registry(format!("registry unreachable: {e}")))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| ApiError::Registry(format!("registry body: {e}")))?
            .to_bytes();
        let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        Ok((status, json))
    }

    /// The schema with `id`, parsed; cached forever (ids never change meaning).
    pub(crate) async fn schema(&self, id: i32) -> Result<Arc<Loaded>, ApiError> {
        if let Some(l) = self.cache.lock().ok().and_then(|c| c.get(&id).cloned()) {
            return Ok(l);
        }
        let (status, json) = self.get_json(&format!("/schemas/ids/{id}")).await?;
        if status == 404 {
            return Err(ApiError::Unprocessable {
                message: format!("schema id {id} is not registered"),
                details: None,
            });
        }
        if status != 200 {
            return Err(ApiError::Registry(format!(
                "registry answered {status} for schema id {id}: {json}"
            )));
        }
        let s: SchemaById = serde_json::from_value(json)
            .map_err(|e| ApiError::Registry(format!("schema id {id}: {e}")))?;
        if !s.references.is_empty() {
            return Err(ApiError::Unprocessable {
                message: format!(
                    "schema id {id} has references, which the gateway does not resolve yet"
                ),
                details: None,
            });
        }
        let schema_type: SchemaType = s
            .schema_type
            .as_deref()
            .unwrap_or("AVRO")
            .parse()
            .map_err(|e: weft_schema::Error| ApiError::Registry(e.to_string()))?;
        let text = s.schema.clone();
        let parsed =
            tokio::task::spawn_blocking(move || ParsedSchema::parse(schema_type, &text, &[]))
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?
                .map_err(|e| ApiError::Registry(format!("schema id {id}: {e}")))?;
        let loaded = Arc::new(Loaded {
            id,
            schema_type,
            text: s.schema,
            parsed,
        });
        if let Ok(mut c) = self.cache.lock() {
            c.insert(id, Arc::clone(&loaded));
        }
        Ok(loaded)
    }
}

/// Encodes `value` with `schema` in the Confluent wire format (magic byte, id, [message
/// indexes], payload) and validates the result. Avro and JSON Schema values are JSON;
/// a Protobuf value is the base64 of the serialized message (first message of the schema).
pub(crate) fn encode(schema: &Loaded, value: &serde_json::Value) -> Result<Vec<u8>, String> {
    let mut out = vec![0u8];
    out.extend_from_slice(&schema.id.to_be_bytes());
    let (payload, indexes): (Vec<u8>, Vec<i32>) = match schema.schema_type {
        SchemaType::Avro => {
            let avro = apache_avro::Schema::parse_str(&schema.text)
                .map_err(|e| format!("avro schema: {e}"))?;
            let v = avro_value(value)
                .resolve(&avro)
                .map_err(|e| format!("value does not match the Avro schema: {e}"))?;
            // The one-call datum writer; its builder-based successor adds nothing here.
            #[allow(deprecated)]
            let bytes = apache_avro::to_avro_datum(&avro, v)
                .map_err(|e| format!("value does not match the Avro schema: {e}"))?;
            (bytes, Vec::new())
        }
        SchemaType::Json => (value.to_string().into_bytes(), Vec::new()),
        SchemaType::Protobuf => {
            use base64::Engine;
            let s = value
                .as_str()
                .ok_or("a Protobuf value is the base64 of the serialized message")?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| format!("value is not base64: {e}"))?;
            (bytes, vec![0])
        }
    };
    if schema.schema_type == SchemaType::Protobuf {
        // Confluent writes the common [0] path as a single zero byte.
        weft_schema::wire::write_message_indexes(&indexes, &mut out);
    }
    schema
        .parsed
        .validate(&payload, &indexes)
        .map_err(|e| format!("value does not match schema {}: {e}", schema.id))?;
    out.extend_from_slice(&payload);
    Ok(out)
}

/// JSON as an Avro value before schema resolution: integers as `long` (resolution narrows
/// them to `int` where the schema says so), objects as maps (resolved into records).
fn avro_value(v: &serde_json::Value) -> apache_avro::types::Value {
    use apache_avro::types::Value as A;
    match v {
        serde_json::Value::Null => A::Null,
        serde_json::Value::Bool(b) => A::Boolean(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => A::Long(i),
            None => A::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => A::String(s.clone()),
        serde_json::Value::Array(a) => A::Array(a.iter().map(avro_value).collect()),
        serde_json::Value::Object(o) => {
            A::Map(o.iter().map(|(k, v)| (k.clone(), avro_value(v))).collect())
        }
    }
}
