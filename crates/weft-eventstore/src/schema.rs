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

/// A field of the public event computed from the private one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComputedField {
    pub to: String,
    #[serde(flatten)]
    pub compute: Compute,
}

/// What a computed field is. Pointers are JSON pointers into the private event's data; a
/// missing or ill-typed input leaves the field out (never a partial or guessed value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Compute {
    /// A constant, e.g. a version or the context's name.
    Const { value: Value },
    /// The sum of the numbers at `from`.
    Sum { from: Vec<String> },
    /// The number at `from` times `factor` (e.g. euros to cents).
    Multiply { from: String, factor: f64 },
    /// The strings (or numbers) at `from` joined by `separator`.
    Concat {
        from: Vec<String>,
        separator: String,
    },
    /// The length of the array at `from`.
    Count { from: String },
}

impl Compute {
    fn pointers(&self) -> Vec<&str> {
        match self {
            Compute::Const { .. } => Vec::new(),
            Compute::Sum { from } | Compute::Concat { from, .. } => {
                from.iter().map(String::as_str).collect()
            }
            Compute::Multiply { from, .. } | Compute::Count { from } => vec![from.as_str()],
        }
    }

    fn eval(&self, data: &Value) -> Option<Value> {
        match self {
            Compute::Const { value } => Some(value.clone()),
            Compute::Sum { from } => {
                let values: Vec<&Value> = from
                    .iter()
                    .map(|p| data.pointer(p))
                    .collect::<Option<_>>()?;
                if values.iter().all(|v| v.is_i64()) {
                    values
                        .iter()
                        .try_fold(0i64, |acc, v| acc.checked_add(v.as_i64()?))
                        .map(Value::from)
                } else {
                    let sum = values.iter().map(|v| v.as_f64()).sum::<Option<f64>>()?;
                    serde_json::Number::from_f64(sum).map(Value::Number)
                }
            }
            Compute::Multiply { from, factor } => {
                let v = data.pointer(from)?;
                let product = v.as_f64()? * factor;
                if v.is_i64() && factor.fract() == 0.0 && product.abs() < 9.0e15 {
                    Some(Value::from(product as i64))
                } else {
                    serde_json::Number::from_f64(product).map(Value::Number)
                }
            }
            Compute::Concat { from, separator } => {
                let parts: Vec<String> = from
                    .iter()
                    .map(|p| match data.pointer(p)? {
                        Value::String(s) => Some(s.clone()),
                        Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    })
                    .collect::<Option<_>>()?;
                Some(Value::from(parts.join(separator)))
            }
            Compute::Count { from } => Some(Value::from(data.pointer(from)?.as_array()?.len())),
        }
    }
}

/// How a private event becomes a public integration event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublicMapping {
    /// The public event's type.
    pub public_type: String,
    /// The registry subject the public event is bound to.
    pub subject: String,
    /// The fields that cross; everything else stays inside.
    pub fields: Vec<FieldMapping>,
    /// Fields computed from the private event (after the mapped ones).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub computed: Vec<ComputedField>,
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
        for c in &self.computed {
            if let Some(v) = c.compute.eval(data) {
                out.insert(c.to.clone(), v);
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
    /// Bound to a registry subject: appends are validated against that registry schema (a
    /// JSON Schema) and record the resolved subject/version; needs a
    /// [`crate::SchemaLookup`] ([`crate::EventStore::set_schema_lookup`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<crate::registry::RegistryBinding>,
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
            for c in &m.computed {
                if c.to.is_empty()
                    || c.compute
                        .pointers()
                        .iter()
                        .any(|p| !(p.is_empty() || p.starts_with('/')))
                {
                    return Err(Error::Invalid(format!(
                        "mapping of {}: computed field {:?} needs a name and JSON pointers",
                        decl.event_type, c.to
                    )));
                }
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
                self.decl
                    .schema_ref
                    .as_ref()
                    .map(|s| s.subject.clone())
                    .or_else(|| self.decl.registry.as_ref().map(|r| r.subject.clone())),
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn public_payloads_carry_only_mapped_and_computed_fields() {
        let mapping: PublicMapping = serde_json::from_value(json!({
            "public_type": "OrderSubmitted",
            "subject": "s",
            "fields": [{"from": "/id", "to": "order_id"}, {"from": "/missing", "to": "gone"}],
            "computed": [
                {"to": "v", "op": "const", "value": 2},
                {"to": "gross", "op": "sum", "from": ["/net", "/tax"]},
                {"to": "gross_f", "op": "sum", "from": ["/net", "/rate"]},
                {"to": "cents", "op": "multiply", "from": "/net", "factor": 100.0},
                {"to": "name", "op": "concat", "from": ["/first", "/last"], "separator": " "},
                {"to": "lines", "op": "count", "from": "/lines"},
                {"to": "bad", "op": "sum", "from": ["/net", "/first"]},
                {"to": "none", "op": "count", "from": "/net"}
            ]
        }))
        .expect("mapping parses");
        let data = json!({"id": "o1", "net": 10, "tax": 2, "rate": 0.5, "first": "Ada",
                          "last": "Lovelace", "lines": [1, 2, 3], "card": "4111"});
        assert_eq!(
            mapping.map(&data),
            json!({"order_id": "o1", "v": 2, "gross": 12, "gross_f": 10.5, "cents": 1000,
                   "name": "Ada Lovelace", "lines": 3})
        );
        let bad = TypeDeclaration {
            event_type: "T".into(),
            visibility: Visibility::Private,
            json_schema: None,
            schema_ref: None,
            registry: None,
            public: Some(PublicMapping {
                computed: vec![ComputedField {
                    to: "x".into(),
                    compute: Compute::Count {
                        from: "no-slash".into(),
                    },
                }],
                ..mapping
            }),
        };
        assert!(CompiledType::compile(bad).is_err());
    }
}
