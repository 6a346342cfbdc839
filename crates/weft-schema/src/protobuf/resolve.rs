//! Turning a schema text and its references into a [`DescriptorPool`].
//!
//! Every file (the schema itself and each reference) is either `.proto` source or the
//! standard base64 of a serialized `FileDescriptorProto`, the form Confluent's Python
//! serializer registers. protox compiles them all through [`MemoryResolver`], which serves
//! the references by import path, then the files clients import without references
//! (`bundled`: `confluent/…`, `google/type/…`), then the `google/protobuf/*.proto`
//! well-known files bundled with protox.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

use base64::Engine;
use prost::Message;
use prost_reflect::{DescriptorPool, FileDescriptor};
use prost_types::FileDescriptorProto;
use protox::file::{File, FileResolver, GoogleFileResolver};

use crate::{Error, NamedSchema, Result, SchemaType};

/// The file name the schema itself compiles under. Nothing imports it; the name only has to
/// differ from every import path a reference could have.
pub(super) const ROOT: &str = "<schema>.proto";

/// One file's content as handed in.
enum Source {
    Text(String),
    /// Encoded `FileDescriptorProto` bytes, already renamed to the name it is served under.
    Descriptor(Vec<u8>),
}

/// Serves the schema, its references and the bundled files to protox, remembering every
/// import it could not serve so that the caller can say which reference is missing.
struct MemoryResolver {
    files: HashMap<String, Source>,
    google: GoogleFileResolver,
    missing: Rc<RefCell<Vec<String>>>,
}

impl FileResolver for MemoryResolver {
    fn resolve_path(&self, path: &Path) -> Option<String> {
        // Only the root is opened by path; its "path" is its name.
        path.to_str().filter(|p| *p == ROOT).map(str::to_owned)
    }

    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        match self.files.get(name) {
            Some(Source::Text(text)) => File::from_source(name, text),
            Some(Source::Descriptor(bytes)) => File::decode_file_descriptor_proto(bytes.as_slice())
                .map_err(|e| protox::Error::new(format!("{name}: {e}"))),
            None => {
                if let Some((_, text)) = super::bundled::FILES.iter().find(|(n, _)| *n == name) {
                    return File::from_source(name, text);
                }
                self.google.open_file(name).inspect_err(|e| {
                    if e.is_file_not_found() {
                        self.missing.borrow_mut().push(name.to_owned());
                    }
                })
            }
        }
    }
}

fn invalid(message: impl Into<String>) -> Error {
    Error::Invalid {
        schema_type: SchemaType::Protobuf,
        message: message.into(),
    }
}

/// Compiles `text` with `references` into a pool; returns the pool and the root file.
pub(super) fn compile(
    text: &str,
    references: &[NamedSchema],
) -> Result<(DescriptorPool, FileDescriptor)> {
    let mut files = HashMap::new();
    for reference in references {
        if reference.name == ROOT {
            return Err(invalid(format!(
                "a reference may not be named {:?}",
                reference.name
            )));
        }
        let source = classify(&reference.name, &reference.text)?;
        files.insert(reference.name.clone(), source);
    }
    files.insert(ROOT.to_owned(), classify(ROOT, text)?);

    let missing = Rc::new(RefCell::new(Vec::new()));
    let resolver = MemoryResolver {
        files,
        google: GoogleFileResolver::new(),
        missing: Rc::clone(&missing),
    };
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler.include_imports(true).include_source_info(false);
    if let Err(e) = compiler.open_file(ROOT) {
        if let Some(name) = missing.borrow().first() {
            return Err(Error::UnresolvedReference {
                schema_type: SchemaType::Protobuf,
                reference: name.clone(),
            });
        }
        return Err(invalid(describe_error(&e)));
    }
    let pool = compiler.descriptor_pool();
    let root = pool
        .get_file_by_name(ROOT)
        .ok_or_else(|| invalid("the schema did not compile to a file"))?;
    Ok((pool, root))
}

/// Base64 of a `FileDescriptorProto` or `.proto` source? Text that is nothing but base64
/// alphabet (whitespace aside) and decodes is taken as a descriptor: `.proto` source always
/// holds a `;`, `{`, `"` or space, none of which base64 uses.
fn classify(name: &str, text: &str) -> Result<Source> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let looks_base64 = !compact.is_empty()
        && compact
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=');
    if !looks_base64 {
        if text.trim().is_empty() {
            return Err(invalid(if name == ROOT {
                "the schema is empty".to_owned()
            } else {
                format!("reference {name:?} is empty")
            }));
        }
        return Ok(Source::Text(text.to_owned()));
    }
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(compact.as_bytes()) else {
        return Ok(Source::Text(text.to_owned()));
    };
    let described = if name == ROOT {
        "the schema".to_owned()
    } else {
        format!("reference {name:?}")
    };
    let descriptor = FileDescriptorProto::decode(bytes.as_slice()).map_err(|e| {
        invalid(format!(
            "{described} is base64 but not a serialized FileDescriptorProto: {e}"
        ))
    })?;
    if descriptor.message_type.is_empty()
        && descriptor.enum_type.is_empty()
        && descriptor.dependency.is_empty()
        && descriptor.package.is_none()
        && descriptor.name.is_none()
    {
        return Err(invalid(format!(
            "{described} is base64 but does not decode to a FileDescriptorProto with content"
        )));
    }
    if descriptor.syntax() == "editions" {
        return Err(invalid(format!(
            "{described} uses Protobuf editions, which Weft does not support yet; use proto2 or \
             proto3"
        )));
    }
    Ok(Source::Descriptor(rename(&bytes, name)))
}

/// Re-encodes a serialized `FileDescriptorProto` under `name` (field 1) without decoding
/// the rest, so custom options held as unknown fields survive byte for byte.
fn rename(encoded: &[u8], name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded.len() + name.len() + 4);
    out.push(0x0a); // field 1, length-delimited
    push_varint(name.len() as u64, &mut out);
    out.extend_from_slice(name.as_bytes());
    let mut rest = encoded;
    while !rest.is_empty() {
        let Some((key, after_key)) = read_varint(rest) else {
            break;
        };
        let len = match key & 7 {
            0 => read_varint(after_key).map(|(_, r)| after_key.len() - r.len()),
            1 => Some(8),
            2 => read_varint(after_key).and_then(|(l, r)| {
                usize::try_from(l)
                    .ok()
                    .map(|l| l + (after_key.len() - r.len()))
            }),
            5 => Some(4),
            _ => None,
        };
        // The descriptor already decoded, so a malformed field cannot occur; stop copying if
        // it does rather than guess.
        let Some(len) = len.filter(|l| *l <= after_key.len()) else {
            break;
        };
        let field_len = rest.len() - after_key.len() + len;
        if key >> 3 != 1 {
            out.extend_from_slice(&rest[..field_len]);
        }
        rest = &rest[field_len..];
    }
    out
}

fn read_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
}

fn push_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// protox's errors print as `file:line:column: message` (or just the message when it has
/// no position); say which file in words and keep the position.
fn describe_error(e: &protox::Error) -> String {
    let text = format!("{e:?}");
    let file = e.file().unwrap_or(ROOT);
    let rest = text
        .strip_prefix(file)
        .and_then(|r| r.strip_prefix(':'))
        .unwrap_or(&text);
    let mut parts = rest.splitn(3, ':');
    let (position, message) = match (parts.next(), parts.next(), parts.next()) {
        (Some(line), Some(column), Some(message))
            if line.parse::<u32>().is_ok() && column.parse::<u32>().is_ok() =>
        {
            (
                Some(format!("line {line}, column {column}")),
                message.trim_start(),
            )
        }
        _ => (None, rest.trim_start()),
    };
    match (file == ROOT, position) {
        (true, Some(position)) => format!("{position}: {message}"),
        (true, None) => message.to_owned(),
        (false, Some(position)) => format!("in reference {file:?} at {position}: {message}"),
        (false, None) => format!("in reference {file:?}: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rename_replaces_only_the_name() {
        let fd = FileDescriptorProto {
            name: Some("old.proto".into()),
            package: Some("p".into()),
            dependency: vec!["x.proto".into()],
            ..Default::default()
        };
        let renamed =
            FileDescriptorProto::decode(rename(&fd.encode_to_vec(), "new.proto").as_slice())
                .expect("decodes");
        assert_eq!(renamed.name(), "new.proto");
        assert_eq!(renamed.package(), "p");
        assert_eq!(renamed.dependency, vec!["x.proto".to_owned()]);
    }
}
