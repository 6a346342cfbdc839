//! Event types bound to a schema-registry subject: the registry is reached through
//! [`SchemaLookup`] (the store never touches the registry's tables), with
//! [`HttpSchemaLookup`] over the Confluent REST API and [`MemorySchemaLookup`] for tests and
//! embedding. Resolved schemas are cached: a pinned version for good, "latest" for
//! [`LATEST_TTL`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::types::SchemaRef;

/// How long a resolved "latest" version is trusted before the registry is asked again.
pub const LATEST_TTL: Duration = Duration::from_secs(5);

/// The registry subject (and version; `None` = the latest) a declared event type is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryBinding {
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
}

impl std::fmt::Display for RegistryBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.version {
            Some(v) => write!(f, "subject {} version {v}", self.subject),
            None => write!(f, "subject {} (latest version)", self.subject),
        }
    }
}

/// A schema as the registry holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrySchema {
    pub subject: String,
    pub version: i64,
    /// `JSON`, `AVRO` or `PROTOBUF` (the registry's `schemaType`).
    pub schema_type: String,
    pub schema: String,
}

/// Why a lookup failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("{0}")]
    NotFound(String),
    #[error("schema registry unavailable: {0}")]
    Unavailable(String),
}

/// Where registry schemas come from.
pub trait SchemaLookup: Send + Sync + 'static {
    /// The schema registered under `subject` at `version` (`None` = latest).
    fn schema<'a>(
        &'a self,
        subject: &'a str,
        version: Option<i64>,
    ) -> BoxFuture<'a, Result<RegistrySchema, LookupError>>;
}

/// A registry's Confluent-compatible REST API (`GET /subjects/{s}/versions/{v|latest}`).
pub struct HttpSchemaLookup {
    base: String,
    /// Sent as `Authorization` (`weft serve`'s internal credential when the registry
    /// requires authentication).
    authorization: Option<hyper::header::HeaderValue>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl HttpSchemaLookup {
    /// `base` like `http://127.0.0.1:8081`.
    pub fn new(base: &str) -> HttpSchemaLookup {
        HttpSchemaLookup {
            base: base.trim_end_matches('/').to_owned(),
            authorization: None,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Sends `Authorization: <value>` with every lookup (an invalid header value is
    /// ignored; the registry then answers 401, reported as unavailable).
    pub fn with_authorization(mut self, value: &str) -> HttpSchemaLookup {
        self.authorization = hyper::header::HeaderValue::from_str(value)
            .ok()
            .map(|mut v| {
                v.set_sensitive(true);
                v
            });
        self
    }

    /// The registry listening on `addr` (an unspecified address is reached on localhost).
    pub fn for_addr(addr: SocketAddr) -> HttpSchemaLookup {
        let addr = if addr.ip().is_unspecified() {
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
        } else {
            addr
        };
        HttpSchemaLookup::new(&format!("http://{addr}"))
    }
}

fn encode_segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl SchemaLookup for HttpSchemaLookup {
    fn schema<'a>(
        &'a self,
        subject: &'a str,
        version: Option<i64>,
    ) -> BoxFuture<'a, Result<RegistrySchema, LookupError>> {
        Box::pin(async move {
            let v = version.map_or_else(|| "latest".to_owned(), |v| v.to_string());
            let url = format!(
                "{}/subjects/{}/versions/{v}",
                self.base,
                encode_segment(subject)
            );
            let mut req = hyper::Request::get(&url)
                .header("accept", "application/vnd.schemaregistry.v1+json");
            if let Some(v) = &self.authorization {
                req = req.header(hyper::header::AUTHORIZATION, v.clone());
            }
            let req = req
                .body(Full::new(Bytes::new()))
                .map_err(|e| LookupError::Unavailable(format!("bad URL {url}: {e}")))?;
            let res = tokio::time::timeout(Duration::from_secs(10), self.client.request(req))
                .await
                .map_err(|_| LookupError::Unavailable(format!("no answer from {url} in time")))?
                .map_err(|e| LookupError::Unavailable(format!("no answer from {url}: {e}")))?;
            let status = res.status().as_u16();
            let raw = res
                .into_body()
                .collect()
                .await
                .map_err(|e| LookupError::Unavailable(format!("reading {url}: {e}")))?
                .to_bytes();
            let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
            if status == 404 {
                return Err(LookupError::NotFound(format!(
                    "the registry has no subject {subject} version {v}: {}",
                    body["message"].as_str().unwrap_or_default()
                )));
            }
            if status >= 400 {
                return Err(LookupError::Unavailable(format!(
                    "{url} answered {status}: {}",
                    body["message"].as_str().unwrap_or_default()
                )));
            }
            let (Some(version), Some(schema)) = (body["version"].as_i64(), body["schema"].as_str())
            else {
                return Err(LookupError::Unavailable(format!(
                    "{url} answered without version and schema"
                )));
            };
            Ok(RegistrySchema {
                subject: subject.to_owned(),
                version,
                schema_type: body["schemaType"].as_str().unwrap_or("AVRO").to_owned(),
                schema: schema.to_owned(),
            })
        })
    }
}

/// An in-process registry: subjects with versions 1, 2, … (tests, embedding).
#[derive(Default)]
pub struct MemorySchemaLookup {
    subjects: Mutex<HashMap<String, Vec<(String, String)>>>,
}

impl MemorySchemaLookup {
    pub fn new() -> MemorySchemaLookup {
        MemorySchemaLookup::default()
    }

    /// Adds a version of `subject`; returns its number.
    pub fn register(&self, subject: &str, schema_type: &str, schema: &str) -> i64 {
        let mut s = self.subjects.lock().unwrap_or_else(|p| p.into_inner());
        let versions = s.entry(subject.to_owned()).or_default();
        versions.push((schema_type.to_owned(), schema.to_owned()));
        versions.len() as i64
    }
}

impl SchemaLookup for MemorySchemaLookup {
    fn schema<'a>(
        &'a self,
        subject: &'a str,
        version: Option<i64>,
    ) -> BoxFuture<'a, Result<RegistrySchema, LookupError>> {
        let found = {
            let s = self.subjects.lock().unwrap_or_else(|p| p.into_inner());
            s.get(subject).and_then(|versions| {
                let v = version.unwrap_or(versions.len() as i64);
                let (t, schema) = versions.get(usize::try_from(v - 1).ok()?)?;
                Some(RegistrySchema {
                    subject: subject.to_owned(),
                    version: v,
                    schema_type: t.clone(),
                    schema: schema.clone(),
                })
            })
        };
        Box::pin(async move {
            found.ok_or_else(|| {
                LookupError::NotFound(format!(
                    "the registry has no subject {subject} version {}",
                    version.map_or_else(|| "latest".to_owned(), |v| v.to_string())
                ))
            })
        })
    }
}

/// A resolved, compiled registry schema.
pub(crate) struct Resolved {
    pub(crate) schema_ref: SchemaRef,
    validator: jsonschema::Validator,
}

impl Resolved {
    /// `Err(reason)` naming the subject/version and the violation.
    pub(crate) fn check(&self, data: &Value) -> Result<(), String> {
        self.validator.validate(data).map_err(|e| {
            let at = e.instance_path().to_string();
            format!(
                "registry subject {} version {}: {e}{}",
                self.schema_ref.subject,
                self.schema_ref.version,
                if at.is_empty() {
                    String::new()
                } else {
                    format!(" at {at}")
                }
            )
        })
    }
}

type Entries = HashMap<(String, Option<i64>), (Instant, Arc<Resolved>)>;

/// Lookups with their compiled schemas cached.
pub(crate) struct RegistryCache {
    lookup: Arc<dyn SchemaLookup>,
    entries: Mutex<Entries>,
}

impl RegistryCache {
    pub(crate) fn new(lookup: Arc<dyn SchemaLookup>) -> RegistryCache {
        RegistryCache {
            lookup,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The compiled schema of `subject`/`version`; `Err` is a sentence for the caller.
    pub(crate) async fn resolve(
        &self,
        subject: &str,
        version: Option<i64>,
    ) -> Result<Arc<Resolved>, LookupError> {
        let key = (subject.to_owned(), version);
        {
            let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, r)) = entries.get(&key)
                && (version.is_some() || at.elapsed() < LATEST_TTL)
            {
                return Ok(Arc::clone(r));
            }
        }
        let found = self.lookup.schema(subject, version).await?;
        let what = format!("registry subject {subject} version {}", found.version);
        if !found.schema_type.eq_ignore_ascii_case("JSON") {
            return Err(LookupError::NotFound(format!(
                "{what} is a {} schema: event data is JSON and can only be validated against \
                 a JSON Schema",
                found.schema_type
            )));
        }
        let schema: Value = serde_json::from_str(&found.schema)
            .map_err(|e| LookupError::NotFound(format!("{what} is not valid JSON: {e}")))?;
        let validator = jsonschema::validator_for(&schema).map_err(|e| {
            LookupError::NotFound(format!("{what} is not a valid JSON Schema: {e}"))
        })?;
        let resolved = Arc::new(Resolved {
            schema_ref: SchemaRef {
                subject: subject.to_owned(),
                version: found.version,
            },
            validator,
        });
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, (Instant::now(), Arc::clone(&resolved)));
        Ok(resolved)
    }
}
