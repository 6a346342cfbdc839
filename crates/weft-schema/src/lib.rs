//! Schemas as Weft's registry understands them: parsing, a canonical form (so the same
//! schema gets the same id whatever its whitespace), compatibility rules and payload
//! validation, for Avro, Protobuf and JSON Schema.
//!
//! Sans io: nothing here stores, fetches or logs. The registry resolves a schema's
//! references to their texts and hands them in as [`NamedSchema`]s; the broker hands in
//! payload bytes.
//!
//! # Codemap
//! - [`avro`], [`protobuf`], [`json`]: one module per format, each with a parsed schema type
//!   and a `can_read(reader, writer)` checker returning readable [`Incompatibility`]s.
//! - `compat`: the compatibility levels (BACKWARD … FULL_TRANSITIVE) on top of `can_read`.
//! - [`wire`]: the Confluent wire format prefix (magic byte, schema id or GUID, Protobuf
//!   message indexes).

pub mod avro;
mod compat;
pub mod json;
pub mod protobuf;
pub mod wire;

use std::fmt;
use std::str::FromStr;

pub use compat::{CompatibilityLevel, check_compatibility};

/// Errors of parsing a schema. The registry maps every one of them to 42201.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The text is not a schema of its type; the message says where and why.
    #[error("invalid {schema_type} schema: {message}")]
    Invalid {
        schema_type: SchemaType,
        message: String,
    },
    /// A reference (Avro named type, Protobuf import, JSON `$ref`) does not resolve.
    #[error("invalid {schema_type} schema: reference {reference:?} does not resolve")]
    UnresolvedReference {
        schema_type: SchemaType,
        reference: String,
    },
    /// The schema type name is none of AVRO, PROTOBUF, JSON.
    #[error("unknown schema type {0:?}")]
    UnknownType(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The three schema formats, named as the Confluent API names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchemaType {
    Avro,
    Protobuf,
    Json,
}

impl SchemaType {
    pub const ALL: [SchemaType; 3] = [SchemaType::Avro, SchemaType::Protobuf, SchemaType::Json];

    /// `AVRO`, `PROTOBUF` or `JSON`.
    pub fn as_str(self) -> &'static str {
        match self {
            SchemaType::Avro => "AVRO",
            SchemaType::Protobuf => "PROTOBUF",
            SchemaType::Json => "JSON",
        }
    }
}

impl fmt::Display for SchemaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SchemaType {
    type Err = Error;

    /// Case-insensitive, as Confluent's registry accepts `avro` too.
    fn from_str(s: &str) -> Result<Self> {
        SchemaType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| Error::UnknownType(s.to_owned()))
    }
}

/// A referenced schema's text under the name the referencing schema uses for it: the
/// Avro full name, the Protobuf import path, or the JSON `$ref` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedSchema {
    pub name: String,
    pub text: String,
}

/// One reason why a reader schema cannot read what a writer schema wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incompatibility {
    /// Stable, machine-readable kind in SCREAMING_SNAKE_CASE, e.g.
    /// `READER_FIELD_MISSING_DEFAULT_VALUE`, `FIELD_NUMBER_TYPE_CHANGED`,
    /// `PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL`.
    pub kind: &'static str,
    /// Where, as a path into the schema (`/fields/2/type`, `Order.items`, `#/properties/id`).
    pub location: String,
    /// One readable sentence naming the element and what changed.
    pub message: String,
}

impl fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}: {}", self.kind, self.location, self.message)
    }
}

/// A parsed, valid schema of one of the three formats.
#[derive(Debug, Clone)]
pub enum ParsedSchema {
    Avro(avro::AvroSchema),
    Protobuf(protobuf::ProtobufSchema),
    Json(json::JsonSchema),
}

impl ParsedSchema {
    /// Parses `text` as a schema of `schema_type`, resolving its references against
    /// `references` (every schema it refers to, directly or transitively, dependencies
    /// first). Anything that does not resolve is an error, never a silent pass.
    pub fn parse(schema_type: SchemaType, text: &str, references: &[NamedSchema]) -> Result<Self> {
        Ok(match schema_type {
            SchemaType::Avro => ParsedSchema::Avro(avro::AvroSchema::parse(text, references)?),
            SchemaType::Protobuf => {
                ParsedSchema::Protobuf(protobuf::ProtobufSchema::parse(text, references)?)
            }
            SchemaType::Json => ParsedSchema::Json(json::JsonSchema::parse(text, references)?),
        })
    }

    pub fn schema_type(&self) -> SchemaType {
        match self {
            ParsedSchema::Avro(_) => SchemaType::Avro,
            ParsedSchema::Protobuf(_) => SchemaType::Protobuf,
            ParsedSchema::Json(_) => SchemaType::Json,
        }
    }

    /// The canonical text: two texts of the same schema (whitespace, key order where the
    /// format gives it no meaning) give the same string. The registry looks schemas up and
    /// shares ids by it.
    pub fn canonical(&self) -> String {
        match self {
            ParsedSchema::Avro(s) => s.canonical(),
            ParsedSchema::Protobuf(s) => s.canonical(),
            ParsedSchema::Json(s) => s.canonical(),
        }
    }

    /// The normalized text stored when a client registers with `normalize=true`.
    pub fn normalized(&self) -> String {
        match self {
            ParsedSchema::Avro(s) => s.normalized(),
            ParsedSchema::Protobuf(s) => s.normalized(),
            ParsedSchema::Json(s) => s.normalized(),
        }
    }

    /// Why a reader using `self` could not read data written with `writer`; empty when it
    /// can. Schemas of different types are never compatible.
    pub fn can_read(&self, writer: &ParsedSchema) -> Vec<Incompatibility> {
        match (self, writer) {
            (ParsedSchema::Avro(r), ParsedSchema::Avro(w)) => avro::can_read(r, w),
            (ParsedSchema::Protobuf(r), ParsedSchema::Protobuf(w)) => protobuf::can_read(r, w),
            (ParsedSchema::Json(r), ParsedSchema::Json(w)) => json::can_read(r, w),
            (r, w) => vec![Incompatibility {
                kind: "TYPE_MISMATCH",
                location: String::new(),
                message: format!(
                    "a {} schema cannot read data written with a {} schema",
                    r.schema_type(),
                    w.schema_type()
                ),
            }],
        }
    }

    /// Checks that `payload` (the bytes after the wire-format prefix) decodes with this
    /// schema. `message_indexes` selects the Protobuf message (empty means the first);
    /// other formats ignore it. The error says what does not decode.
    pub fn validate(&self, payload: &[u8], message_indexes: &[i32]) -> Result<(), String> {
        match self {
            ParsedSchema::Avro(s) => s.validate(payload),
            ParsedSchema::Protobuf(s) => s.validate(payload, message_indexes),
            ParsedSchema::Json(s) => s.validate(payload),
        }
    }
}
