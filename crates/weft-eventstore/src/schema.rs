//! Declared event types: a JSON Schema the data must follow, a visibility (private domain
//! event or public integration event) and, for private events that have a public face, the
//! mapping that builds the public event from the private one (only mapped fields cross).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::types::SchemaRef;
use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    /// A domain event of one bounded context: never published as is.
    #[default]
    Private,
    /// An integration event other contexts may see.
    Public,
}

/// One field of a public event: the value at `from` (a JSON pointer into the private
/// event's data, e.g. `/customer/id`) becomes field `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldMapping {
    pub from: String,
    pub to: String,
}

/// How a private event becomes a public integration event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicMapping {
    /// The public event's type.
    pub public_type: String,
    /// The registry subject the public event is bound to.
    pub subject: String,
    /// The fields that cross; everything else stays inside.
    pub fields: Vec<FieldMapping>,
    /// Add `{"source_stream", "source_revision", "source_position"}` to the payload.
    #[serde(default)]
    pub include_source: bool,
}

impl PublicMapping {
    /// The public payload of a private event's data: only the mapped fields. A missing source
    /// field is left out.
    pub fn map(&self, data: &Value) -> Value {
        let mut out = serde_json::Map::new();
        for f in &self.fields {
            if let Some(v) = data.pointer(&f.from) {
                out.insert(f.to.clone(), v.clone());
            }
        }
        Value::Object(out)
    }
}

/// A declared event type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TypeDeclaration {
    pub event_type: String,
    #[serde(default)]
    pub visibility: Visibility,
    /// A JSON Schema the event data must satisfy; refused appends store nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_schema: Option<Value>,
    /// The registry subject/version the schema is registered under, recorded on each event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_ref: Option<SchemaRef>,
    /// For a private event with a public face.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public: Option<PublicMapping>,
}

/// A declaration with its schema compiled.
pub(crate) struct CompiledType {
    pub(crate) decl: TypeDeclaration,
    validator: Option<jsonschema::Validator>,
}

impl CompiledType {
    pub(crate) fn compile(decl: TypeDeclaration) -> Result<CompiledType> {
        crate::types::validate_event_type(&decl.event_type)?;
        let validator = match &decl.json_schema {
            Some(schema) => Some(jsonschema::validator_for(schema).map_err(|e| {
                Error::Invalid(format!(
                    "the JSON Schema of event type {} is invalid: {e}",
                    decl.event_type
                ))
            })?),
            None => None,
        };
        if let Some(m) = &decl.public {
            if decl.visibility == Visibility::Public {
                return Err(Error::Invalid(format!(
                    "event type {} is public: only private events take a public mapping",
                    decl.event_type
                )));
            }
            for f in &m.fields {
                if !(f.from.is_empty() || f.from.starts_with('/')) || f.to.is_empty() {
                    return Err(Error::Invalid(format!(
                        "mapping of {}: {:?} → {:?} is not a JSON pointer → field name",
                        decl.event_type, f.from, f.to
                    )));
                }
            }
        }
        Ok(CompiledType { decl, validator })
    }

    /// Whether appends of this type write an integration event to the outbox.
    pub(crate) fn publishes(&self) -> bool {
        self.decl.visibility == Visibility::Public || self.decl.public.is_some()
    }

    /// `(public type, payload, registry subject)` of an event of this type, if it has a
    /// public face: a public event as is, a private one through its mapping (only mapped
    /// fields), a private one without a mapping never.
    pub(crate) fn public_event(
        &self,
        data: &Value,
        stream: &str,
        revision: u64,
        position: u64,
    ) -> Option<(String, Value, Option<String>)> {
        match (&self.decl.visibility, &self.decl.public) {
            (Visibility::Public, _) => Some((
                self.decl.event_type.clone(),
                data.clone(),
                self.decl.schema_ref.as_ref().map(|s| s.subject.clone()),
            )),
            (Visibility::Private, Some(m)) => {
                let mut payload = m.map(data);
                if m.include_source
                    && let Value::Object(o) = &mut payload
                {
                    o.insert("source_stream".into(), Value::from(stream));
                    o.insert("source_revision".into(), Value::from(revision));
                    o.insert("source_position".into(), Value::from(position));
                }
                Some((m.public_type.clone(), payload, Some(m.subject.clone())))
            }
            (Visibility::Private, None) => None,
        }
    }

    /// `Err(reason)` when `data` does not satisfy the schema.
    pub(crate) fn check(&self, data: &Value) -> std::result::Result<(), String> {
        match &self.validator {
            Some(v) => v.validate(data).map_err(|e| {
                let at = e.instance_path().to_string();
                if at.is_empty() {
                    e.to_string()
                } else {
                    format!("{e} at {at}")
                }
            }),
            None => Ok(()),
        }
    }
}
