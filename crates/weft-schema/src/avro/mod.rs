//! Avro schemas: parsing with reference resolution, the canonical and normalized texts,
//! payload validation and the schema resolution (compatibility) rules.
//!
//! - `model`: our own parse of the JSON text into an arena of named types, checking what the
//!   specification requires (names, duplicate fields and symbols, union rules, field
//!   defaults against their types) with errors that say where.
//! - `writer`: the canonical and normalized JSON texts.
//! - `compat`: [`can_read`], the resolution rules returning readable reasons.
//! - `datum`: payload validation, a bounded, allocation-free walk over one datum.
//!
//! apache-avro parses every schema too, a second opinion: what it refuses is refused, except
//! for field defaults, which `model` judges by the specification.

mod compat;
mod datum;
mod model;
mod writer;

use std::collections::HashSet;
use std::sync::Arc;

use crate::{Error, Incompatibility, NamedSchema, Result, SchemaType};

use model::{Model, ParseError};
use writer::Form;

/// A parsed, valid Avro schema.
#[derive(Debug, Clone)]
pub struct AvroSchema {
    model: Arc<Model>,
    canonical: String,
    normalized: String,
}

impl AvroSchema {
    /// Parses `text`, whose named types may be those defined by `references` (their texts;
    /// dependencies first, though any order resolves). A name that resolves nowhere is
    /// [`Error::UnresolvedReference`]; anything else the specification forbids is
    /// [`Error::Invalid`] with a message saying where.
    pub fn parse(text: &str, references: &[NamedSchema]) -> Result<Self> {
        // A text given twice (a type two references both depend on) counts once.
        let mut seen = HashSet::new();
        let kept: Vec<usize> = (0..references.len())
            .filter(|&i| seen.insert(references[i].text.as_str()))
            .collect();
        let texts: Vec<&str> = kept.iter().map(|&i| references[i].text.as_str()).collect();
        let model = Model::parse(text, &texts).map_err(|(which, e)| {
            let whose = match which {
                Some(i) => format!("in reference {:?}: ", references[kept[i]].name),
                None => String::new(),
            };
            match e {
                ParseError::Unresolved { at, name } => match which {
                    None => Error::UnresolvedReference {
                        schema_type: SchemaType::Avro,
                        reference: name,
                    },
                    Some(_) => invalid(format!(
                        "{whose}at {}: name {name:?} is not defined",
                        at_or_root(&at)
                    )),
                },
                ParseError::Invalid { at, message } => {
                    invalid(format!("{whose}at {}: {message}", at_or_root(&at)))
                }
            }
        })?;

        // apache-avro's own parse, a second opinion on the text and its references. Its
        // verdict on field defaults is not taken: `model` checks them by the specification,
        // while apache-avro refuses valid ones (a `duration` fixed's string default, any
        // `big-decimal` default) and accepts invalid ones (a union default of a later branch).
        let second = if texts.is_empty() {
            apache_avro::Schema::parse_str(text).map(drop)
        } else {
            apache_avro::Schema::parse_str_with_list(text, &texts).map(drop)
        };
        if let Err(e) = second {
            use apache_avro::error::Details;
            let about_defaults = matches!(
                e.details(),
                Details::GetDefaultRecordField(..)
                    | Details::GetDefaultUnion(..)
                    | Details::JsonNumberTooLarge(..)
            );
            if !about_defaults {
                return Err(invalid(format!("refused by the Avro parser: {e}")));
            }
        }

        Ok(AvroSchema {
            canonical: writer::write(&model, Form::Canonical),
            normalized: writer::write(&model, Form::Normalized),
            model: Arc::new(model),
        })
    }

    /// Compact JSON as Java's `Schema.toString()` writes it (Confluent's canonical string),
    /// custom properties sorted by key: whitespace and key order do not change it; field
    /// order, defaults, docs, aliases, logical types and custom properties do.
    pub fn canonical(&self) -> String {
        self.canonical.clone()
    }

    /// The canonical text with every name in full, aliases sorted and implicit values
    /// (`"order": "ascending"`, empty docs, `{"type": "int"}`) dropped; see `writer`.
    pub fn normalized(&self) -> String {
        self.normalized.clone()
    }

    /// Checks that `payload` is exactly one datum of this schema in Avro's binary encoding,
    /// as Java's `GenericDatumReader` reads it. The walk allocates nothing, so a payload
    /// claiming a 2^31-element array costs nothing; see `datum` for the limits, and for why
    /// apache-avro's decoder is not used here.
    pub fn validate(&self, payload: &[u8]) -> Result<(), String> {
        datum::walk(&self.model, payload).map_err(|e| format!("invalid Avro datum: {e}"))
    }
}

/// Why `reader` cannot read what `writer` wrote, by the Avro specification's schema
/// resolution rules as Confluent's registry applies them; empty when it can.
pub fn can_read(reader: &AvroSchema, writer: &AvroSchema) -> Vec<Incompatibility> {
    compat::can_read(&reader.model, &writer.model)
}

fn invalid(message: String) -> Error {
    Error::Invalid {
        schema_type: SchemaType::Avro,
        message,
    }
}

fn at_or_root(at: &str) -> &str {
    if at.is_empty() { "/" } else { at }
}
