//! `value_schema`: a row's JSON payload published in the Confluent wire format with a schema
//! from a Confluent-API registry.
//!
//! The subject's version (`latest` or a number) is fetched once per subject and cached for
//! the life of the relay task; encoding, validation, schema-id lookup and their caches are
//! `weft_client::schema::SchemaSerializer`'s (lookup only: the relay never registers).

use std::collections::HashMap;

use weft_client::schema::{RegistryClient, SchemaSerializer, SchemaType};

use crate::config::ValueSchema;

/// Why a payload could not be encoded.
#[derive(Debug)]
pub(crate) enum EncodeError {
    /// The row is at fault (not JSON, refused by the schema): a bad row.
    Bad(String),
    /// The registry is unreachable, or the subject/version is missing: back off and retry.
    Registry(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Avro,
    Json,
}

/// Encodes payloads for one source.
pub(crate) struct Encoder {
    cfg: ValueSchema,
    registry: RegistryClient,
    serializer: SchemaSerializer,
    /// subject → (kind, schema text) of the configured version.
    schemas: HashMap<String, (Kind, String)>,
}

impl Encoder {
    pub(crate) fn new(cfg: ValueSchema) -> Result<Encoder, String> {
        let mut registry = RegistryClient::new(&cfg.registry_url).map_err(|e| e.to_string())?;
        if let Some(authorization) = &cfg.authorization {
            registry = registry
                .with_authorization(&authorization.0)
                .map_err(|e| e.to_string())?;
        }
        Ok(Encoder {
            cfg,
            serializer: SchemaSerializer::new(registry.clone()).lookup_only(),
            registry,
            schemas: HashMap::new(),
        })
    }

    /// `payload` (JSON) for `topic` as `0x00 | schema id | body`.
    pub(crate) async fn encode(
        &mut self,
        topic: &str,
        payload: &[u8],
    ) -> Result<Vec<u8>, EncodeError> {
        let value: serde_json::Value = serde_json::from_slice(payload)
            .map_err(|e| EncodeError::Bad(format!("payload is not JSON: {e}")))?;
        let subject = self.cfg.subject_for(topic);
        let (kind, text) = match self.schemas.get(&subject) {
            Some(s) => s.clone(),
            None => {
                let s = self.fetch(&subject).await?;
                self.schemas.insert(subject.clone(), s.clone());
                s
            }
        };
        let out = match kind {
            Kind::Avro => {
                self.serializer
                    .avro(&subject, &text, &AvroJson(&value))
                    .await
            }
            Kind::Json => self.serializer.json_schema(&subject, &text, &value).await,
        };
        match out {
            Ok(bytes) => Ok(bytes.to_vec()),
            Err(weft_client::Error::Encode(m)) => Err(EncodeError::Bad(format!(
                "payload refused by schema {subject:?} version {}: {m}",
                self.cfg.version.path()
            ))),
            Err(e) => Err(EncodeError::Registry(e.to_string())),
        }
    }

    /// The configured version of `subject`: its type and text.
    async fn fetch(&self, subject: &str) -> Result<(Kind, String), EncodeError> {
        let version = self.cfg.version.path();
        let (t, text) = self
            .registry
            .schema_by_version(subject, &version)
            .await
            .map_err(|e| EncodeError::Registry(e.to_string()))?;
        let kind = match t {
            SchemaType::Avro => Kind::Avro,
            SchemaType::Json => Kind::Json,
            SchemaType::Protobuf => {
                return Err(EncodeError::Registry(format!(
                    "{subject} version {version}: schema type PROTOBUF cannot encode a JSON \
                     payload (AVRO or JSON only)"
                )));
            }
        };
        Ok((kind, text))
    }
}

/// JSON as the Avro serializer should see it: integers as `i64` (serde_json gives
/// non-negative ones as `u64`, which apache-avro maps to `fixed(8)`, not `long`).
struct AvroJson<'a>(&'a serde_json::Value);

impl serde::Serialize for AvroJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        use serde_json::Value;
        match self.0 {
            Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => s.serialize_i64(i),
                (None, Some(f)) => s.serialize_f64(f),
                (None, None) => n.serialize(s),
            },
            Value::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&AvroJson(item))?;
                }
                seq.end()
            }
            Value::Object(map) => {
                let mut m = s.serialize_map(Some(map.len()))?;
                for (k, v) in map {
                    m.serialize_entry(k, &AvroJson(v))?;
                }
                m.end()
            }
            other => other.serialize(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::AvroJson;

    #[test]
    fn json_maps_onto_avro_schemas() {
        let schema = apache_avro::Schema::parse_str(
            r#"{"type":"record","name":"R","fields":[
                {"name":"i","type":"int"},{"name":"l","type":"long"},
                {"name":"d","type":"double"},{"name":"s","type":["null","string"]},
                {"name":"xs","type":{"type":"array","items":"long"}},
                {"name":"m","type":{"type":"map","values":"boolean"}},
                {"name":"r","type":{"type":"record","name":"In","fields":[{"name":"n","type":"long"}]}}
            ]}"#,
        )
        .expect("schema");
        let ok = serde_json::json!({
            "i": 7, "l": -3, "d": 1.5, "s": "x", "xs": [1, 2], "m": {"a": true}, "r": {"n": 9}
        });
        let v = apache_avro::to_value(AvroJson(&ok)).expect("to_value");
        v.resolve(&schema).expect("plain JSON resolves");
        let null = serde_json::json!({
            "i": 0, "l": 0, "d": 2, "s": null, "xs": [], "m": {}, "r": {"n": 0}
        });
        let v = apache_avro::to_value(AvroJson(&null)).expect("to_value");
        v.resolve(&schema).expect("null branch, integer as double");
        for bad in [
            serde_json::json!({"i": "x", "l": 0, "d": 0, "s": null, "xs": [], "m": {}, "r": {"n": 0}}),
            serde_json::json!({"i": 0, "d": 0, "s": null, "xs": [], "m": {}, "r": {"n": 0}}),
            serde_json::json!([1]),
        ] {
            let v = apache_avro::to_value(AvroJson(&bad)).expect("to_value");
            assert!(v.resolve(&schema).is_err(), "{bad}");
        }
    }
}
