//! Payload validation without building a message: a walk over the wire format guided by a
//! [`Plan`] compiled from the descriptors once per schema, allocating nothing per record.
//!
//! It accepts exactly what `DynamicMessage::decode` (prost-reflect over prost) accepts —
//! `tests/protobuf_validate.rs` checks that on mutated payloads — with one deliberate
//! exception: a `map<…>` field must arrive length-delimited (prost-reflect reads a length
//! whatever the wire type says). Rules mirrored: keys are varints ≤ `u32::MAX` with a
//! non-zero field number and wire type 0–5; varints are at most 10 bytes; lengths must fit
//! the bytes left; a known field must carry its kind's wire type (numeric `repeated` fields
//! may also be packed); strings must be UTF-8; groups must end with their own number;
//! nesting (messages and groups) stops at prost's recursion limit of 100. Unknown fields are
//! skipped. proto2 required fields are not this walk's business: schemas that have any go
//! through the full decode (see `ProtobufSchema::validate`).

use std::collections::HashMap;

use prost_reflect::{DescriptorPool, Kind};

/// prost's recursion limit: how many messages or groups may nest inside the top-level one.
const RECURSION_LIMIT: u32 = 100;

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const FIXED32: u8 = 5;

/// Why a payload does not decode: the innermost `Message.field` first, then its parents.
pub(super) struct ScanError {
    path: Vec<String>,
    reason: &'static str,
}

impl ScanError {
    fn new(reason: &'static str) -> Self {
        ScanError {
            path: Vec::new(),
            reason,
        }
    }

    fn at(mut self, message: &str, field: &str) -> Self {
        self.path.push(format!("{message}.{field}"));
        self
    }

    /// `Order.lines: Line.sku: invalid string (not UTF-8)`.
    pub(super) fn render(&self) -> String {
        let mut out = String::new();
        for step in self.path.iter().rev() {
            out.push_str(step);
            out.push_str(": ");
        }
        out.push_str(self.reason);
        out
    }
}

type Result<T> = std::result::Result<T, ScanError>;

/// Every message of a pool as plain data: what the walk needs, without descriptor lookups.
#[derive(Debug)]
pub(super) struct Plan {
    messages: Vec<MessagePlan>,
    by_name: HashMap<String, usize>,
}

#[derive(Debug)]
struct MessagePlan {
    name: String,
    /// Fields and extensions, sorted by number.
    fields: Vec<FieldPlan>,
    is_map_entry: bool,
}

#[derive(Debug)]
struct FieldPlan {
    number: u32,
    name: String,
    /// The wire type of one value (a group's is `START_GROUP`).
    wire_type: u8,
    /// `repeated` numeric: may also come packed.
    packable_list: bool,
    is_map: bool,
    is_string: bool,
    /// The message (or group, or map entry) plan, for message-typed fields.
    message: Option<usize>,
}

impl Plan {
    pub(super) fn new(pool: &DescriptorPool) -> Plan {
        let by_name: HashMap<String, usize> = pool
            .all_messages()
            .enumerate()
            .map(|(i, m)| (m.full_name().to_owned(), i))
            .collect();
        let target = |kind: &Kind| {
            kind.as_message()
                .and_then(|m| by_name.get(m.full_name()).copied())
        };
        let messages = pool
            .all_messages()
            .map(|m| {
                let mut fields: Vec<FieldPlan> = m
                    .fields()
                    .map(|f| {
                        let kind = f.kind();
                        FieldPlan {
                            number: f.number(),
                            name: f.name().to_owned(),
                            wire_type: kind_wire_type(&kind, f.is_group()),
                            packable_list: f.is_list() && packable(&kind),
                            is_map: f.is_map(),
                            is_string: matches!(kind, Kind::String),
                            message: target(&kind),
                        }
                    })
                    .collect();
                fields.extend(m.extensions().map(|e| {
                    let kind = e.kind();
                    FieldPlan {
                        number: e.number(),
                        name: format!("({})", e.full_name()),
                        wire_type: kind_wire_type(&kind, e.is_group()),
                        packable_list: e.is_list() && packable(&kind),
                        is_map: e.is_map(),
                        is_string: matches!(kind, Kind::String),
                        message: target(&kind),
                    }
                }));
                fields.sort_by_key(|f| f.number);
                MessagePlan {
                    name: m.name().to_owned(),
                    fields,
                    is_map_entry: m.is_map_entry(),
                }
            })
            .collect();
        Plan { messages, by_name }
    }

    /// Checks that `payload` is a valid encoding of the message named `full_name`.
    pub(super) fn scan(&self, full_name: &str, payload: &[u8]) -> Result<()> {
        let Some(&message) = self.by_name.get(full_name) else {
            return Err(ScanError::new("message type not in the schema"));
        };
        let mut buf = payload;
        self.scan_message(message, &mut buf, RECURSION_LIMIT, None)
    }

    /// Walks the fields in `buf` until it is empty, or — for a group — until the group's
    /// end. `depth` is what is left of the recursion limit.
    fn scan_message(
        &self,
        message: usize,
        buf: &mut &[u8],
        depth: u32,
        group: Option<u32>,
    ) -> Result<()> {
        let plan = &self.messages[message];
        loop {
            if buf.is_empty() {
                return match group {
                    None => Ok(()),
                    Some(_) => Err(ScanError::new("group is not terminated")),
                };
            }
            let (number, wire_type) = read_key(buf)?;
            if wire_type == END_GROUP {
                return match group {
                    Some(open) if open == number => Ok(()),
                    _ => Err(ScanError::new("unexpected end-group tag")),
                };
            }
            match plan.fields.binary_search_by_key(&number, |f| f.number) {
                Ok(i) => {
                    let field = &plan.fields[i];
                    self.scan_field(field, wire_type, buf, depth)
                        .map_err(|e| e.at(&plan.name, &field.name))?;
                }
                // prost skips a map entry's unknown fields with `skip_field`, which checks
                // the recursion limit first.
                Err(_) => skip_unknown(number, wire_type, buf, depth, plan.is_map_entry)?,
            }
        }
    }

    fn scan_field(
        &self,
        field: &FieldPlan,
        wire_type: u8,
        buf: &mut &[u8],
        depth: u32,
    ) -> Result<()> {
        if field.is_map {
            expect_wire_type(LEN, wire_type)?;
            let mut entry = read_len(buf)?;
            let Some(entry_plan) = field.message else {
                return Err(ScanError::new("map field without an entry type"));
            };
            // prost-reflect decodes map entries in the field's own recursion context.
            return self.scan_message(entry_plan, &mut entry, depth, None);
        }
        if field.packable_list && wire_type == LEN {
            let mut packed = read_len(buf)?;
            while !packed.is_empty() {
                scan_scalar(field.wire_type, &mut packed)?;
            }
            return Ok(());
        }
        expect_wire_type(field.wire_type, wire_type)?;
        match (field.message, field.wire_type) {
            (Some(message), START_GROUP) => {
                if depth == 0 {
                    return Err(ScanError::new("recursion limit reached"));
                }
                self.scan_message(message, buf, depth - 1, Some(field.number))
            }
            (Some(message), _) => {
                if depth == 0 {
                    return Err(ScanError::new("recursion limit reached"));
                }
                let mut bytes = read_len(buf)?;
                self.scan_message(message, &mut bytes, depth - 1, None)
            }
            (None, _) if field.is_string => {
                let bytes = read_len(buf)?;
                std::str::from_utf8(bytes)
                    .map(|_| ())
                    .map_err(|_| ScanError::new("invalid string value: data is not UTF-8 encoded"))
            }
            (None, wire_type) => scan_scalar(wire_type, buf),
        }
    }
}

/// Skips a field the schema does not know, as prost-reflect keeps it as an unknown field.
fn skip_unknown(
    number: u32,
    wire_type: u8,
    buf: &mut &[u8],
    depth: u32,
    in_map_entry: bool,
) -> Result<()> {
    if in_map_entry && depth == 0 {
        return Err(ScanError::new("recursion limit reached"));
    }
    match wire_type {
        START_GROUP => {
            if depth == 0 {
                return Err(ScanError::new("recursion limit reached"));
            }
            loop {
                let (inner, inner_type) = read_key(buf)?;
                if inner_type == END_GROUP {
                    if inner != number {
                        return Err(ScanError::new("unexpected end-group tag"));
                    }
                    return Ok(());
                }
                skip_unknown(inner, inner_type, buf, depth - 1, in_map_entry)?;
            }
        }
        END_GROUP => Err(ScanError::new("unexpected end-group tag")),
        other => scan_scalar(other, buf),
    }
}

/// Consumes one value of a non-group wire type.
fn scan_scalar(wire_type: u8, buf: &mut &[u8]) -> Result<()> {
    match wire_type {
        VARINT => read_varint(buf).map(|_| ()),
        FIXED64 => take(buf, 8).map(|_| ()),
        FIXED32 => take(buf, 4).map(|_| ()),
        LEN => read_len(buf).map(|_| ()),
        _ => Err(ScanError::new("invalid wire type")),
    }
}

fn expect_wire_type(expected: u8, actual: u8) -> Result<()> {
    if expected == actual {
        Ok(())
    } else {
        Err(ScanError::new(match expected {
            VARINT => "invalid wire type (expected varint)",
            FIXED64 => "invalid wire type (expected 64-bit)",
            LEN => "invalid wire type (expected length-delimited)",
            START_GROUP => "invalid wire type (expected group)",
            _ => "invalid wire type (expected 32-bit)",
        }))
    }
}

fn kind_wire_type(kind: &Kind, is_group: bool) -> u8 {
    match kind {
        Kind::Int32
        | Kind::Int64
        | Kind::Uint32
        | Kind::Uint64
        | Kind::Sint32
        | Kind::Sint64
        | Kind::Bool
        | Kind::Enum(_) => VARINT,
        Kind::Fixed64 | Kind::Sfixed64 | Kind::Double => FIXED64,
        Kind::Fixed32 | Kind::Sfixed32 | Kind::Float => FIXED32,
        Kind::Message(_) if is_group => START_GROUP,
        Kind::String | Kind::Bytes | Kind::Message(_) => LEN,
    }
}

fn packable(kind: &Kind) -> bool {
    !matches!(kind, Kind::String | Kind::Bytes | Kind::Message(_))
}

fn read_key(buf: &mut &[u8]) -> Result<(u32, u8)> {
    let key = read_varint(buf)?;
    let key = u32::try_from(key).map_err(|_| ScanError::new("invalid key value"))?;
    let wire_type = (key & 7) as u8;
    if wire_type > FIXED32 {
        return Err(ScanError::new("invalid wire type value"));
    }
    let number = key >> 3;
    if number == 0 {
        return Err(ScanError::new("invalid tag value: 0"));
    }
    Ok((number, wire_type))
}

fn read_varint(buf: &mut &[u8]) -> Result<u64> {
    let mut value = 0u64;
    for i in 0..10 {
        let Some((&byte, rest)) = buf.split_first() else {
            return Err(ScanError::new("invalid varint"));
        };
        *buf = rest;
        // The tenth byte may only hold the 64th bit.
        if i == 9 && byte > 1 {
            return Err(ScanError::new("invalid varint"));
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Ok(value);
        }
    }
    Err(ScanError::new("invalid varint"))
}

/// A length-delimited value's bytes; the length must fit what is left.
fn read_len<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8]> {
    let len = read_varint(buf)?;
    let len = usize::try_from(len).map_err(|_| ScanError::new("buffer underflow"))?;
    take(buf, len)
}

fn take<'a>(buf: &mut &'a [u8], len: usize) -> Result<&'a [u8]> {
    if len > buf.len() {
        return Err(ScanError::new("buffer underflow"));
    }
    let (head, tail) = buf.split_at(len);
    *buf = tail;
    Ok(head)
}
