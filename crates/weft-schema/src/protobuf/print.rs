//! Descriptor → `.proto` text: the canonical and normalized forms.
//!
//! Printing from the compiled descriptor (rather than reformatting the source) is what makes
//! `.proto` text, a base64 `FileDescriptorProto`, and texts differing in whitespace, comments
//! or in how they spell type names print the same. Rules:
//! - `syntax` is always printed (`proto2` when the source left it out), then `package`,
//!   imports, file options, then messages, enums, services and `extend` blocks in
//!   declaration order (message order is part of the schema: message indexes count it).
//! - Type names are fully qualified with a leading dot (`.shop.Order`), as protoc prints
//!   descriptors, so no scope rule can read them differently.
//! - Inside a message: options, reserved ranges and names, fields in declaration order (a
//!   oneof printed where its first field is), extension ranges, nested messages, enums and
//!   extensions. Map entries, groups' messages and proto3 `optional`'s synthetic oneofs are
//!   printed as the `map<…>`, `group` and `optional` syntax that made them.
//! - Options are printed from the decoded option messages in field-number order, custom
//!   (extension) options included (those whose extension no file declares cannot be
//!   named and are left out); `json_name` only when it differs from the default, and
//!   `default` for proto2 fields that have one.
//! - Normalized additionally sorts imports by path and options by name.

use std::fmt::Write;

use prost_reflect::{
    DynamicMessage, EnumDescriptor, ExtensionDescriptor, FieldDescriptor, FileDescriptor, Kind,
    MapKey, MessageDescriptor, ServiceDescriptor, Value,
};
use prost_types::field_descriptor_proto::{Label, Type};

const INDENT: &str = "  ";
/// Field numbers end at 2^29 - 1; a range ending there prints as `max`.
const MAX_FIELD_NUMBER_EXCLUSIVE: u32 = 536_870_912;

pub(super) fn print_file(file: &FileDescriptor, normalize: bool) -> String {
    let p = Printer { normalize };
    let mut out = String::new();
    let proto = file.file_descriptor_proto();
    let syntax = match proto.syntax() {
        "" => "proto2",
        s => s,
    };
    let _ = writeln!(out, "syntax = {};", quote(syntax));
    if !proto.package().is_empty() {
        let _ = writeln!(out, "package {};", proto.package());
    }

    let mut imports: Vec<String> = proto
        .dependency
        .iter()
        .enumerate()
        .map(|(i, dep)| {
            let i = i as i32;
            let modifier = if proto.public_dependency.contains(&i) {
                "public "
            } else if proto.weak_dependency.contains(&i) {
                "weak "
            } else {
                ""
            };
            format!("import {modifier}{};", quote(dep))
        })
        .collect();
    if normalize {
        imports.sort_by(|a, b| import_path(a).cmp(import_path(b)));
    }
    if !imports.is_empty() {
        out.push('\n');
        for import in imports {
            out.push_str(&import);
            out.push('\n');
        }
    }

    let options = p.options(&file.options());
    if !options.is_empty() {
        out.push('\n');
        for (name, value) in options {
            let _ = writeln!(out, "option {name} = {value};");
        }
    }

    for message in file.messages() {
        out.push('\n');
        p.message(&mut out, &message, 0);
    }
    for enum_ in file.enums() {
        out.push('\n');
        p.enum_(&mut out, &enum_, 0);
    }
    for service in file.services() {
        out.push('\n');
        p.service(&mut out, &service);
    }
    p.extends(&mut out, file.extensions().collect(), 0);
    out
}

fn import_path(line: &str) -> &str {
    line.rsplit(' ').next().unwrap_or(line)
}

struct Printer {
    normalize: bool,
}

impl Printer {
    fn message(&self, out: &mut String, message: &MessageDescriptor, depth: usize) {
        let pad = INDENT.repeat(depth);
        let _ = writeln!(out, "{pad}message {} {{", message.name());
        self.message_body(out, message, depth + 1);
        let _ = writeln!(out, "{pad}}}");
    }

    fn message_body(&self, out: &mut String, message: &MessageDescriptor, depth: usize) {
        let pad = INDENT.repeat(depth);
        for (name, value) in self.options(&message.options()) {
            let _ = writeln!(out, "{pad}option {name} = {value};");
        }
        let reserved: Vec<String> = message
            .reserved_ranges()
            .map(|r| range(r.start, r.end - 1, r.end >= MAX_FIELD_NUMBER_EXCLUSIVE))
            .collect();
        if !reserved.is_empty() {
            let _ = writeln!(out, "{pad}reserved {};", reserved.join(", "));
        }
        let names: Vec<String> = message.reserved_names().map(quote).collect();
        if !names.is_empty() {
            let _ = writeln!(out, "{pad}reserved {};", names.join(", "));
        }

        let mut printed_oneofs = Vec::new();
        // Declaration order (`fields()` iterates by number).
        let declared = message.descriptor_proto().field.clone();
        for field in declared
            .iter()
            .filter_map(|f| message.get_field_by_name(f.name()))
        {
            match field.containing_oneof().filter(|o| !o.is_synthetic()) {
                Some(oneof) => {
                    if printed_oneofs.contains(&oneof.name().to_owned()) {
                        continue;
                    }
                    printed_oneofs.push(oneof.name().to_owned());
                    let _ = writeln!(out, "{pad}oneof {} {{", oneof.name());
                    let inner = INDENT.repeat(depth + 1);
                    for (name, value) in self.options(&oneof.options()) {
                        let _ = writeln!(out, "{inner}option {name} = {value};");
                    }
                    for member in oneof.fields() {
                        self.field(out, &member, depth + 1);
                    }
                    let _ = writeln!(out, "{pad}}}");
                }
                None => self.field(out, &field, depth),
            }
        }

        let ranges: Vec<String> = message
            .extension_ranges()
            .map(|r| range(r.start, r.end - 1, r.end >= MAX_FIELD_NUMBER_EXCLUSIVE))
            .collect();
        if !ranges.is_empty() {
            let _ = writeln!(out, "{pad}extensions {};", ranges.join(", "));
        }

        for child in message.child_messages() {
            if child.is_map_entry() || is_group_message(message, &child) {
                continue;
            }
            self.message(out, &child, depth);
        }
        for child in message.child_enums() {
            self.enum_(out, &child, depth);
        }
        self.extends(out, message.child_extensions().collect(), depth);
    }

    fn field(&self, out: &mut String, field: &FieldDescriptor, depth: usize) {
        let pad = INDENT.repeat(depth);
        let proto = field.field_descriptor_proto();
        let mut line = String::new();
        line.push_str(&label(
            field.parent_file().file_descriptor_proto().syntax(),
            proto,
            field.containing_oneof().is_some_and(|o| !o.is_synthetic()),
            field.is_map(),
        ));
        if field.is_map() {
            if let Some(entry) = field.kind().as_message() {
                let _ = write!(
                    line,
                    "map<{}, {}>",
                    type_name(&entry.map_entry_key_field()),
                    type_name(&entry.map_entry_value_field())
                );
            }
        } else if field.is_group() {
            line.push_str("group");
        } else {
            line.push_str(&type_name(field));
        }
        let name = match (field.is_group(), field.kind().as_message()) {
            (true, Some(group)) => group.name().to_owned(),
            _ => field.name().to_owned(),
        };
        let _ = write!(line, " {name} = {}", field.number());
        let mut pseudo = Vec::new();
        if let Some(default) = &proto.default_value {
            pseudo.push(("default".to_owned(), default_literal(field, default)));
        }
        if let Some(json) = proto
            .json_name
            .as_ref()
            .filter(|json| **json != default_json_name(field.name()))
        {
            pseudo.push(("json_name".to_owned(), quote(json)));
        }
        let mut options = pseudo;
        options.extend(self.options(&field.options()));
        if !options.is_empty() {
            let rendered: Vec<String> = options.iter().map(|(n, v)| format!("{n} = {v}")).collect();
            let _ = write!(line, " [{}]", rendered.join(", "));
        }
        match field.kind().as_message().filter(|_| field.is_group()) {
            Some(group) => {
                let _ = writeln!(out, "{pad}{line} {{");
                self.message_body(out, group, depth + 1);
                let _ = writeln!(out, "{pad}}}");
            }
            None => {
                let _ = writeln!(out, "{pad}{line};");
            }
        }
    }

    fn enum_(&self, out: &mut String, enum_: &EnumDescriptor, depth: usize) {
        let pad = INDENT.repeat(depth);
        let inner = INDENT.repeat(depth + 1);
        let _ = writeln!(out, "{pad}enum {} {{", enum_.name());
        for (name, value) in self.options(&enum_.options()) {
            let _ = writeln!(out, "{inner}option {name} = {value};");
        }
        let reserved: Vec<String> = enum_
            .reserved_ranges()
            .map(|r| {
                let (start, end) = (*r.start(), *r.end());
                if start == end {
                    start.to_string()
                } else if end == i32::MAX {
                    format!("{start} to max")
                } else {
                    format!("{start} to {end}")
                }
            })
            .collect();
        if !reserved.is_empty() {
            let _ = writeln!(out, "{inner}reserved {};", reserved.join(", "));
        }
        let names: Vec<String> = enum_.reserved_names().map(quote).collect();
        if !names.is_empty() {
            let _ = writeln!(out, "{inner}reserved {};", names.join(", "));
        }
        // Declaration order (`values()` iterates by number, aliases in no fixed order).
        let declared = enum_.enum_descriptor_proto().value.clone();
        for value in declared
            .iter()
            .filter_map(|v| enum_.get_value_by_name(v.name()))
        {
            let options = self.options(&value.options());
            let _ = write!(out, "{inner}{} = {}", value.name(), value.number());
            if !options.is_empty() {
                let rendered: Vec<String> =
                    options.iter().map(|(n, v)| format!("{n} = {v}")).collect();
                let _ = write!(out, " [{}]", rendered.join(", "));
            }
            out.push_str(";\n");
        }
        let _ = writeln!(out, "{pad}}}");
    }

    fn service(&self, out: &mut String, service: &ServiceDescriptor) {
        let _ = writeln!(out, "service {} {{", service.name());
        for (name, value) in self.options(&service.options()) {
            let _ = writeln!(out, "{INDENT}option {name} = {value};");
        }
        for method in service.methods() {
            let stream = |yes: bool| if yes { "stream " } else { "" };
            let _ = write!(
                out,
                "{INDENT}rpc {}({}.{}) returns ({}.{})",
                method.name(),
                stream(method.is_client_streaming()),
                method.input().full_name(),
                stream(method.is_server_streaming()),
                method.output().full_name()
            );
            let options = self.options(&method.options());
            if options.is_empty() {
                out.push_str(";\n");
            } else {
                out.push_str(" {\n");
                for (name, value) in options {
                    let _ = writeln!(out, "{INDENT}{INDENT}option {name} = {value};");
                }
                let _ = writeln!(out, "{INDENT}}}");
            }
        }
        out.push_str("}\n");
    }

    /// `extend` blocks, one per extendee in order of first appearance.
    fn extends(&self, out: &mut String, extensions: Vec<ExtensionDescriptor>, depth: usize) {
        let pad = INDENT.repeat(depth);
        let mut extendees: Vec<String> = Vec::new();
        for ext in &extensions {
            let name = ext.containing_message().full_name().to_owned();
            if !extendees.contains(&name) {
                extendees.push(name);
            }
        }
        for extendee in extendees {
            if depth == 0 {
                out.push('\n');
            }
            let _ = writeln!(out, "{pad}extend .{extendee} {{");
            for ext in extensions
                .iter()
                .filter(|e| e.containing_message().full_name() == extendee)
            {
                let proto = ext.field_descriptor_proto();
                let syntax = ext
                    .parent_file()
                    .file_descriptor_proto()
                    .syntax()
                    .to_owned();
                let mut line = label(&syntax, proto, false, false);
                line.push_str(&kind_name(&ext.kind(), proto.r#type()));
                let _ = write!(line, " {} = {}", ext.name(), ext.number());
                let mut options = Vec::new();
                if let Some(default) = &proto.default_value {
                    options.push(format!(
                        "default = {}",
                        default_literal_kind(&ext.kind(), default)
                    ));
                }
                options.extend(
                    self.options(&ext.options())
                        .into_iter()
                        .map(|(n, v)| format!("{n} = {v}")),
                );
                if !options.is_empty() {
                    let _ = write!(line, " [{}]", options.join(", "));
                }
                let _ = writeln!(out, "{pad}{INDENT}{line};");
            }
            let _ = writeln!(out, "{pad}}}");
        }
    }

    /// The set options of an options message as `(name, value)` pairs: plain options by
    /// name, custom ones as `(full.name)`. Repeated options repeat the pair.
    fn options(&self, options: &DynamicMessage) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (field, value) in options.fields() {
            // `map_entry` is implied by the `map<…>` syntax that printed the entry.
            if field.name() == "map_entry"
                && field.parent_message().full_name() == "google.protobuf.MessageOptions"
            {
                continue;
            }
            push_values(&mut out, field.name().to_owned(), &field.kind(), value);
        }
        for (ext, value) in options.extensions() {
            push_values(
                &mut out,
                format!("({})", ext.full_name()),
                &ext.kind(),
                value,
            );
        }
        // Options whose extension no imported file declares (only possible in a base64
        // descriptor) cannot be named in `.proto` text; they are left out.
        if self.normalize {
            out.sort();
        }
        out
    }
}

fn push_values(out: &mut Vec<(String, String)>, name: String, kind: &Kind, value: &Value) {
    match value {
        Value::List(items) => {
            for item in items {
                out.push((name.clone(), value_literal(kind, item)));
            }
        }
        other => out.push((name, value_literal(kind, other))),
    }
}

fn value_literal(kind: &Kind, value: &Value) -> String {
    match value {
        Value::Bool(b) => b.to_string(),
        Value::I32(v) => v.to_string(),
        Value::I64(v) => v.to_string(),
        Value::U32(v) => v.to_string(),
        Value::U64(v) => v.to_string(),
        Value::F32(v) => float_literal(f64::from(*v)),
        Value::F64(v) => float_literal(*v),
        Value::String(s) => quote(s),
        Value::Bytes(b) => quote_bytes(b),
        Value::EnumNumber(n) => kind
            .as_enum()
            .and_then(|e| e.get_value(*n))
            .map(|v| v.name().to_owned())
            .unwrap_or_else(|| n.to_string()),
        Value::Message(m) => format!("{{ {} }}", m.to_text_format()),
        Value::List(items) => {
            let parts: Vec<String> = items.iter().map(|i| value_literal(kind, i)).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::Map(map) => {
            let mut parts: Vec<String> = map
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{{ key: {} value: {} }}",
                        map_key(k),
                        value_literal(kind, v)
                    )
                })
                .collect();
            parts.sort();
            format!("[{}]", parts.join(", "))
        }
    }
}

fn map_key(key: &MapKey) -> String {
    match key {
        MapKey::Bool(b) => b.to_string(),
        MapKey::I32(v) => v.to_string(),
        MapKey::I64(v) => v.to_string(),
        MapKey::U32(v) => v.to_string(),
        MapKey::U64(v) => v.to_string(),
        MapKey::String(s) => quote(s),
    }
}

fn float_literal(v: f64) -> String {
    if v.is_nan() {
        "nan".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 {
            "inf".to_owned()
        } else {
            "-inf".to_owned()
        }
    } else {
        format!("{v}")
    }
}

/// A message nested in `parent` that is the body of one of `parent`'s group fields.
fn is_group_message(parent: &MessageDescriptor, child: &MessageDescriptor) -> bool {
    parent.fields().any(|f| {
        f.is_group()
            && f.kind()
                .as_message()
                .is_some_and(|m| m.full_name() == child.full_name())
    })
}

fn label(
    syntax: &str,
    proto: &prost_types::FieldDescriptorProto,
    in_oneof: bool,
    is_map: bool,
) -> String {
    if in_oneof || is_map {
        return String::new();
    }
    match proto.label() {
        Label::Repeated => "repeated ".to_owned(),
        Label::Required => "required ".to_owned(),
        Label::Optional => {
            if syntax == "proto3" && !proto.proto3_optional() {
                String::new()
            } else {
                "optional ".to_owned()
            }
        }
    }
}

fn type_name(field: &FieldDescriptor) -> String {
    kind_name(&field.kind(), field.field_descriptor_proto().r#type())
}

fn kind_name(kind: &Kind, ty: Type) -> String {
    match kind {
        Kind::Double => "double".to_owned(),
        Kind::Float => "float".to_owned(),
        Kind::Int32 => "int32".to_owned(),
        Kind::Int64 => "int64".to_owned(),
        Kind::Uint32 => "uint32".to_owned(),
        Kind::Uint64 => "uint64".to_owned(),
        Kind::Sint32 => "sint32".to_owned(),
        Kind::Sint64 => "sint64".to_owned(),
        Kind::Fixed32 => "fixed32".to_owned(),
        Kind::Fixed64 => "fixed64".to_owned(),
        Kind::Sfixed32 => "sfixed32".to_owned(),
        Kind::Sfixed64 => "sfixed64".to_owned(),
        Kind::Bool => "bool".to_owned(),
        Kind::String => "string".to_owned(),
        Kind::Bytes => "bytes".to_owned(),
        Kind::Message(m) if ty == Type::Group => format!("group .{}", m.full_name()),
        Kind::Message(m) => format!(".{}", m.full_name()),
        Kind::Enum(e) => format!(".{}", e.full_name()),
    }
}

fn default_literal(field: &FieldDescriptor, raw: &str) -> String {
    default_literal_kind(&field.kind(), raw)
}

/// `default_value` in a descriptor is already text: C-escaped for bytes, plain for strings,
/// the value name for enums.
fn default_literal_kind(kind: &Kind, raw: &str) -> String {
    match kind {
        Kind::String => quote(raw),
        Kind::Bytes => format!("\"{raw}\""),
        _ => raw.to_owned(),
    }
}

/// protoc's default JSON name: underscores dropped, the letter after each one upper-cased.
pub(super) fn default_json_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn range(start: u32, end_inclusive: u32, to_max: bool) -> String {
    if to_max {
        format!("{start} to max")
    } else if start == end_inclusive {
        start.to_string()
    } else {
        format!("{start} to {end_inclusive}")
    }
}

fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\{:03o}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn quote_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\{b:03o}");
            }
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_names() {
        assert_eq!(default_json_name("foo_bar_baz"), "fooBarBaz");
        assert_eq!(default_json_name("_x"), "X");
        assert_eq!(default_json_name("a1_b"), "a1B");
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("a\"b\\\n"), "\"a\\\"b\\\\\\n\"");
        assert_eq!(quote_bytes(&[0, b'a', 255]), "\"\\000a\\377\"");
    }
}
