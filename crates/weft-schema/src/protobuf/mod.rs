//! Protobuf schemas: `.proto` source or a base64 `FileDescriptorProto`, compiled with
//! protox into a prost-reflect [`DescriptorPool`].
//!
//! - `resolve`: references, bundled files and base64 descriptors → pool.
//! - `print`: descriptor → canonical / normalized `.proto` text.
//! - `diff`: the wire-compatibility checker behind [`can_read`].
//!
//! Message indexes (the Confluent wire format's path to the record's message type) count
//! the file's top-level messages, then a message's nested messages, in declaration order,
//! leaving out the entries protoc synthesizes for `map<…>` fields — as Confluent's Java
//! serializer counts them.

mod bundled;
mod diff;
mod print;
mod resolve;
mod scan;

use std::sync::Arc;

use base64::Engine;
use prost_reflect::{
    DescriptorPool, DynamicMessage, FileDescriptor, MessageDescriptor, ReflectMessage, Value,
};

use crate::{Incompatibility, NamedSchema, Result};

/// How deep [`ProtobufSchema::validate`] follows nested messages looking for missing
/// required fields; decoding itself stops at prost's recursion limit (100) first.
const MAX_REQUIRED_CHECK_DEPTH: usize = 128;

/// A parsed Protobuf schema: the compiled file and everything it imports.
#[derive(Debug, Clone)]
pub struct ProtobufSchema {
    pool: DescriptorPool,
    file: FileDescriptor,
    canonical: String,
    normalized: String,
    /// Some message in the pool has a proto2 `required` field: payloads are then decoded in
    /// full to check presence; otherwise the allocation-free `scan` suffices.
    has_required: bool,
    /// The schema's messages compiled for `scan`; shared by clones.
    plan: Arc<scan::Plan>,
}

impl ProtobufSchema {
    /// Parses `text` — `.proto` source, or the standard base64 of a serialized
    /// `FileDescriptorProto` as Confluent's Python serializer registers it — resolving its
    /// imports against `references` (named by import path; each may be source or base64
    /// too). `google/protobuf/*.proto`, `google/type/*.proto` and Confluent's
    /// `confluent/meta.proto`, `confluent/type/decimal.proto` and
    /// `confluent/type/variant.proto` resolve without a reference, as Confluent's clients
    /// never send them as references; a reference of the same name takes precedence.
    pub fn parse(text: &str, references: &[NamedSchema]) -> Result<Self> {
        let (pool, file) = resolve::compile(text, references)?;
        let canonical = print::print_file(&file, false);
        let normalized = print::print_file(&file, true);
        let plan = Arc::new(scan::Plan::new(&pool));
        let has_required = pool
            .all_messages()
            .any(|m| m.fields().any(|f| f.is_required()));
        Ok(ProtobufSchema {
            pool,
            file,
            canonical,
            normalized,
            has_required,
            plan,
        })
    }

    /// `.proto` text printed from the compiled descriptor: equal for equal schemas however
    /// they were written (whitespace, comments, relative type names, text or base64).
    pub fn canonical(&self) -> String {
        self.canonical.clone()
    }

    /// The canonical text with imports sorted by path and options sorted by name.
    pub fn normalized(&self) -> String {
        self.normalized.clone()
    }

    /// Decodes `payload` (what follows the wire-format prefix and message indexes) as the
    /// message `message_indexes` selects, and checks proto2 required fields are present.
    pub fn validate(&self, payload: &[u8], message_indexes: &[i32]) -> Result<(), String> {
        let message = self.message_at(message_indexes)?;
        if !self.has_required {
            return self.plan.scan(message.full_name(), payload).map_err(|e| {
                format!(
                    "payload does not decode as {}: {}",
                    message.full_name(),
                    e.render()
                )
            });
        }
        let decoded = DynamicMessage::decode(message.clone(), payload)
            .map_err(|e| format!("payload does not decode as {}: {e}", message.full_name()))?;
        if let Some(missing) = missing_required(&decoded, 0) {
            return Err(format!(
                "payload decodes as {} but lacks required field {missing}",
                message.full_name()
            ));
        }
        Ok(())
    }

    /// The message a wire-format index path selects (`[]` and `[0]` select the first).
    fn message_at(&self, message_indexes: &[i32]) -> Result<MessageDescriptor, String> {
        let indexes: &[i32] = if message_indexes.is_empty() {
            &[0]
        } else {
            message_indexes
        };
        let mut found: Option<MessageDescriptor> = None;
        for (depth, &index) in indexes.iter().enumerate() {
            let position = usize::try_from(index).ok();
            let chosen = match &found {
                None => position.and_then(|i| self.file.messages().nth(i)),
                Some(parent) => position.and_then(|i| nested_messages(parent).nth(i)),
            };
            found = Some(chosen.ok_or_else(|| match &found {
                None => format!(
                    "message index {index} is out of range: the schema has {} top-level \
                     message(s) (indexes {indexes:?})",
                    self.file.messages().len()
                ),
                Some(parent) => format!(
                    "message index {index} at depth {depth} is out of range: {} has {} \
                     nested message(s) (indexes {indexes:?})",
                    parent.full_name(),
                    nested_messages(parent).count()
                ),
            })?);
        }
        found.ok_or_else(|| "the schema declares no message".to_owned())
    }

    /// The full name of the message at `message_indexes` (`shop.Order`).
    pub fn message_name_at(&self, message_indexes: &[i32]) -> Result<String, String> {
        self.message_at(message_indexes)
            .map(|m| m.full_name().to_owned())
    }

    /// The wire-format index path of the message named `full_name` (`shop.Order.Line`), or
    /// `None` if this file does not declare it.
    pub fn message_index_of(&self, full_name: &str) -> Option<Vec<i32>> {
        let message = self.pool.get_message_by_name(full_name)?;
        if message.parent_file().name() != self.file.name() || message.is_map_entry() {
            return None;
        }
        let mut path = Vec::new();
        let mut current = message;
        loop {
            let siblings = match current.parent_message() {
                Some(parent) => nested_messages(&parent).collect(),
                None => self.file.messages().collect::<Vec<_>>(),
            };
            let index = siblings
                .iter()
                .position(|m| m.full_name() == current.full_name())?;
            path.push(i32::try_from(index).ok()?);
            match current.parent_message() {
                Some(parent) => current = parent,
                None => break,
            }
        }
        path.reverse();
        Some(path)
    }

    /// Full names of the messages this file declares, top-level and nested, in
    /// message-index order (map entries left out).
    pub fn message_names(&self) -> Vec<String> {
        fn walk(m: MessageDescriptor, out: &mut Vec<String>) {
            out.push(m.full_name().to_owned());
            for child in nested_messages(&m) {
                walk(child, out);
            }
        }
        let mut out = Vec::new();
        for m in self.file.messages() {
            walk(m, &mut out);
        }
        out
    }

    /// The import paths this schema names, in declaration order.
    pub fn dependencies(&self) -> Vec<String> {
        self.file.file_descriptor_proto().dependency.clone()
    }

    /// The schema as the standard base64 of its serialized `FileDescriptorProto`, what
    /// Confluent's `GET /schemas/ids/{id}?format=serialized` returns. Custom options are
    /// kept; the file name is the registry-internal one, as a client only needs the
    /// content.
    pub fn to_descriptor_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.file.encode_to_vec())
    }

    /// The package the schema declares (empty when none).
    pub fn package(&self) -> &str {
        self.file.package_name()
    }
}

/// The source Weft uses for an import served without a reference (`google/type/date.proto`,
/// `confluent/meta.proto`, …; not the `google/protobuf/*.proto` protox bundles), if any.
pub fn builtin_source(import_path: &str) -> Option<&'static str> {
    bundled::FILES
        .iter()
        .find(|(name, _)| *name == import_path)
        .map(|(_, source)| *source)
}

/// A message's nested messages as message indexes count them.
fn nested_messages(message: &MessageDescriptor) -> impl Iterator<Item = MessageDescriptor> + '_ {
    message.child_messages().filter(|m| !m.is_map_entry())
}

/// The path (`Order.customer.id`) of the first required field missing in `message`.
fn missing_required(message: &DynamicMessage, depth: usize) -> Option<String> {
    if depth > MAX_REQUIRED_CHECK_DEPTH {
        return None;
    }
    let descriptor = message.descriptor();
    for field in descriptor.fields() {
        if field.is_required() && !message.has_field(&field) {
            return Some(format!("{}.{}", descriptor.name(), field.name()));
        }
    }
    for (field, value) in message.fields() {
        let nested: Vec<&DynamicMessage> = match value {
            Value::Message(m) => vec![m],
            Value::List(items) => items.iter().filter_map(Value::as_message).collect(),
            Value::Map(map) => map.values().filter_map(Value::as_message).collect(),
            _ => Vec::new(),
        };
        for m in nested {
            if let Some(path) = missing_required(m, depth + 1) {
                return Some(format!("{}.{}", field.name(), path));
            }
        }
    }
    None
}

/// Why `reader` cannot read what `writer` wrote; empty when it can.
pub fn can_read(reader: &ProtobufSchema, writer: &ProtobufSchema) -> Vec<Incompatibility> {
    diff::can_read(&reader.file, &writer.file)
}
