//! JSON Schema: parsing (with meta-schema validation), canonical form, payload validation
//! and the compatibility checker.
//!
//! A schema is parsed with serde_json, checked against the meta-schema of its draft
//! (`$schema` names it; draft-07 when absent or unknown, as Confluent's registry does) and
//! compiled once into a [`jsonschema::Validator`] kept in the struct: payload validation is
//! the hot path. External `$ref`s resolve only against the references the registry hands in
//! ([`NamedSchema`]); nothing is ever fetched. The same documents go into a
//! [`referencing::Registry`](jsonschema::Registry) that the compatibility checker (the
//! private `compat` module, behind [`can_read`]) walks.
//!
//! Parsing and compatibility checks are CPU work (meta-schema validation, compilation, a
//! structural walk bounded by `MAX_COMPARISONS`): async callers run them off the reactor.

mod compat;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use jsonschema::{Draft, Registry, Retrieve, Uri, ValidationError};
use serde_json::Value;

use crate::{Error, Incompatibility, NamedSchema, Result, SchemaType};

/// How many validation failures [`JsonSchema::validate`] names before summarising the rest.
const MAX_REPORTED_ERRORS: usize = 3;

/// Base URI of a root schema without `$id` (the `jsonschema` crate's own default, so that
/// both the validator and the compatibility registry resolve relative names alike).
const DEFAULT_BASE_URI: &str = "json-schema:///";

/// How deep a payload (and a schema) may nest: 127 arrays/objects. serde_json's default
/// recursion limit of 128 refuses anything deeper with "recursion limit exceeded" instead of
/// overflowing the stack (measured: 127 levels parse, 128 do not); [`JsonSchema::validate`]
/// relies on that limit and names it in its error, so the validator never recurses deeper.
pub const MAX_DEPTH: usize = 127;

/// A parsed JSON schema: its document, compiled validator and reference registry.
#[derive(Clone)]
pub struct JsonSchema {
    inner: Arc<Inner>,
}

struct Inner {
    /// The schema document as registered.
    root: Value,
    draft: Draft,
    /// The compiled validator (payload validation is hot: compiled once, here).
    validator: jsonschema::Validator,
    /// Root and referenced documents, for the compatibility checker's `$ref` resolution.
    registry: Registry<'static>,
    base_uri: Uri<String>,
    /// The referenced documents by the URIs they answer to (shared with the retriever).
    references: Arc<HashMap<String, Value>>,
}

impl fmt::Debug for JsonSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonSchema")
            .field("draft", &self.inner.draft)
            .field("schema", &self.canonical())
            .finish()
    }
}

fn invalid(message: impl Into<String>) -> Error {
    Error::Invalid {
        schema_type: SchemaType::Json,
        message: message.into(),
    }
}

fn unresolved(reference: impl Into<String>) -> Error {
    Error::UnresolvedReference {
        schema_type: SchemaType::Json,
        reference: reference.into(),
    }
}

/// The draft a document declares with `$schema`; `None` when it declares none or one we do
/// not know (both are treated as draft-07, Confluent's default).
fn declared_draft(document: &Value) -> Option<Draft> {
    let uri = document.get("$schema")?.as_str()?;
    match Draft::from_schema_uri(uri) {
        Draft::Unknown => None,
        draft => Some(draft),
    }
}

fn draft_name(draft: Draft) -> &'static str {
    match draft {
        Draft::Draft4 => "draft-04",
        Draft::Draft6 => "draft-06",
        Draft::Draft7 => "draft-07",
        Draft::Draft201909 => "draft 2019-09",
        Draft::Draft202012 => "draft 2020-12",
        _ => "unknown draft",
    }
}

/// Checks `document` against the meta-schema of `draft`.
fn meta_validate(document: &Value, draft: Draft) -> Result<(), String> {
    let result = match draft {
        Draft::Draft4 => jsonschema::draft4::meta::validate(document),
        Draft::Draft6 => jsonschema::draft6::meta::validate(document),
        Draft::Draft201909 => jsonschema::draft201909::meta::validate(document),
        Draft::Draft202012 => jsonschema::draft202012::meta::validate(document),
        _ => jsonschema::draft7::meta::validate(document),
    };
    result.map_err(|e| {
        format!(
            "does not conform to the {} meta-schema at {}: {e}",
            draft_name(draft),
            pointer_or_root(&e.instance_path().to_string())
        )
    })
}

fn pointer_or_root(pointer: &str) -> String {
    if pointer.is_empty() {
        "the root".to_owned()
    } else {
        format!("{pointer:?}")
    }
}

/// A document the validator must see without a `$schema` it cannot resolve: an unknown
/// meta-schema URI is treated as draft-07 (Confluent does the same) instead of being fetched.
fn without_unknown_dialect(document: &Value) -> Option<Value> {
    let object = document.as_object()?;
    let uri = object.get("$schema")?;
    if uri.as_str().map(Draft::from_schema_uri) == Some(Draft::Unknown) || !uri.is_string() {
        let mut copy = object.clone();
        copy.remove("$schema");
        Some(Value::Object(copy))
    } else {
        None
    }
}

/// Serves `$ref`s from the references the registry resolved, and nothing else.
#[derive(Clone)]
struct ReferenceRetriever {
    documents: Arc<HashMap<String, Value>>,
}

#[derive(Debug)]
struct NotAReference(String);

impl fmt::Display for NotAReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is not among the schema's references", self.0)
    }
}

impl std::error::Error for NotAReference {}

impl Retrieve for ReferenceRetriever {
    fn retrieve(
        &self,
        uri: &Uri<String>,
    ) -> std::result::Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let key = uri.as_str().trim_end_matches('#');
        match self.documents.get(key) {
            Some(document) => {
                Ok(without_unknown_dialect(document).unwrap_or_else(|| document.clone()))
            }
            None => Err(Box::new(NotAReference(key.to_owned()))),
        }
    }
}

fn resolve_against(base: &Uri<String>, reference: &str) -> Option<String> {
    jsonschema::uri::resolve_against(&base.borrow(), reference)
        .ok()
        .map(|u| u.as_str().trim_end_matches('#').to_owned())
}

/// The URI the root document is based at: its `$id` (`id` in draft-04), resolved against the
/// default base.
fn root_base_uri(document: &Value, draft: Draft) -> Result<Uri<String>> {
    let default = jsonschema::uri::from_str(DEFAULT_BASE_URI)
        .map_err(|e| invalid(format!("internal base URI: {e}")))?;
    let id_keyword = if draft == Draft::Draft4 { "id" } else { "$id" };
    let Some(id) = document.get(id_keyword).and_then(Value::as_str) else {
        return Ok(default);
    };
    let resolved = jsonschema::uri::resolve_against(&default.borrow(), id.trim_end_matches('#'))
        .map_err(|e| invalid(format!("{id_keyword} {id:?} is not a URI reference: {e}")))?;
    Ok(resolved)
}

/// Maps every URI under which a `$ref` may name a reference to the reference's document:
/// its name resolved against the root's base (how Confluent registers them), its name
/// against the default base (refs from inside another reference), and its own `$id`.
fn reference_documents(
    base: &Uri<String>,
    references: &[NamedSchema],
) -> Result<HashMap<String, Value>> {
    let default = jsonschema::uri::from_str(DEFAULT_BASE_URI)
        .map_err(|e| invalid(format!("internal base URI: {e}")))?;
    let mut documents = HashMap::new();
    for reference in references {
        let document: Value = serde_json::from_str(&reference.text)
            .map_err(|e| invalid(format!("reference {:?} is not JSON: {e}", reference.name)))?;
        let draft = declared_draft(&document).unwrap_or(Draft::Draft7);
        meta_validate(&document, draft)
            .map_err(|e| invalid(format!("reference {:?} {e}", reference.name)))?;
        let mut keys = Vec::new();
        keys.extend(resolve_against(base, &reference.name));
        keys.extend(resolve_against(&default, &reference.name));
        let id_keyword = if draft == Draft::Draft4 { "id" } else { "$id" };
        if let Some(id) = document.get(id_keyword).and_then(Value::as_str)
            && let Some(first) = keys.first().and_then(|k| jsonschema::uri::from_str(k).ok())
        {
            keys.extend(resolve_against(&first, id));
        }
        if keys.is_empty() {
            return Err(invalid(format!(
                "reference name {:?} is not a URI reference",
                reference.name
            )));
        }
        for key in keys {
            documents.entry(key).or_insert_with(|| document.clone());
        }
    }
    Ok(documents)
}

fn referencing_error(error: &jsonschema::ReferencingError) -> Error {
    match error {
        jsonschema::ReferencingError::Unretrievable { uri, .. } => unresolved(uri.clone()),
        jsonschema::ReferencingError::PointerToNowhere { pointer } => {
            unresolved(if pointer.starts_with('/') {
                format!("#{pointer}")
            } else {
                pointer.clone()
            })
        }
        jsonschema::ReferencingError::NoSuchAnchor { anchor } => unresolved(format!("#{anchor}")),
        other => invalid(other.to_string()),
    }
}

fn build_error(error: &ValidationError<'_>) -> Error {
    match error.kind() {
        jsonschema::error::ValidationErrorKind::Referencing(e) => referencing_error(e),
        _ => invalid(format!(
            "at {}: {error}",
            pointer_or_root(&error.schema_path().to_string())
        )),
    }
}

impl JsonSchema {
    /// Parses `text` as a JSON schema whose `$ref`s to other documents resolve against
    /// `references` (by the name used in the `$ref`). Malformed JSON, a document that breaks
    /// its draft's meta-schema, and a `$ref` that resolves nowhere are errors.
    pub fn parse(text: &str, references: &[NamedSchema]) -> Result<Self> {
        let root: Value =
            serde_json::from_str(text).map_err(|e| invalid(format!("not JSON: {e}")))?;
        if !root.is_object() && !root.is_boolean() {
            return Err(invalid("a schema is a JSON object or a boolean"));
        }
        let draft = declared_draft(&root).unwrap_or(Draft::Draft7);
        meta_validate(&root, draft).map_err(invalid)?;

        let base_uri = root_base_uri(&root, draft)?;
        let documents = Arc::new(reference_documents(&base_uri, references)?);
        let retriever = ReferenceRetriever {
            documents: Arc::clone(&documents),
        };
        let compiled_root = without_unknown_dialect(&root);
        let validator = jsonschema::options()
            .with_draft(draft)
            .with_retriever(retriever.clone())
            .build(compiled_root.as_ref().unwrap_or(&root))
            .map_err(|e| build_error(&e))?;

        let registry = Registry::new()
            .retriever(retriever)
            .draft(draft)
            .retrieve_known_draft_meta_schemas(false)
            .add(base_uri.as_str(), draft.create_resource(root.clone()))
            .and_then(|builder| builder.prepare())
            .map_err(|e| referencing_error(&e))?;
        Ok(JsonSchema {
            inner: Arc::new(Inner {
                root,
                draft,
                validator,
                registry,
                base_uri,
                references: documents,
            }),
        })
    }

    /// The document re-serialised with object keys sorted and no whitespace; arrays keep
    /// their order (it is meaningful in `items`, `enum`, `allOf`…).
    pub fn canonical(&self) -> String {
        // Sorted explicitly: serde_json's map order depends on whether some crate in the
        // build enables its `preserve_order` feature.
        let mut out = String::new();
        write_sorted(&self.inner.root, &mut out);
        out
    }

    /// The canonical form, with the arrays that JSON Schema defines as sets (`required`,
    /// `type`, `dependentRequired`/`dependencies` property lists) sorted, inside schema
    /// positions only: `{"required":["b","a"]}` and `{"required":["a","b"]}` accept exactly
    /// the same documents and normalize alike. `enum` keeps its order (code generators give it
    /// meaning) and data positions (`const`, `default`, `examples`) are never touched.
    pub fn normalized(&self) -> String {
        let mut root = self.inner.root.clone();
        normalize_schema(&mut root, 0);
        let mut out = String::new();
        write_sorted(&root, &mut out);
        out
    }

    /// Checks that `payload` is JSON valid under this schema. The error names the first few
    /// failing instance locations (JSON pointers) and why.
    pub fn validate(&self, payload: &[u8]) -> Result<(), String> {
        let instance: Value = serde_json::from_slice(payload).map_err(|e| {
            if e.to_string().contains("recursion limit") {
                format!("payload is nested deeper than {MAX_DEPTH} levels: {e}")
            } else {
                format!("payload is not JSON: {e}")
            }
        })?;
        // The common case, valid, without collecting errors.
        if self.inner.validator.is_valid(&instance) {
            return Ok(());
        }
        let mut errors = self.inner.validator.iter_errors(&instance);
        let mut reported = Vec::new();
        let mut more = 0usize;
        for error in errors.by_ref() {
            if reported.len() < MAX_REPORTED_ERRORS {
                reported.push(format!(
                    "at {}: {error}",
                    pointer_or_root(&error.instance_path().to_string())
                ));
            } else {
                more += 1;
                // Counting every error of a huge invalid payload is wasted work.
                if more >= 100 {
                    break;
                }
            }
        }
        if reported.is_empty() {
            return Ok(());
        }
        let mut message = format!("payload does not match the schema: {}", reported.join("; "));
        if more > 0 {
            message.push_str(&format!(
                " (and {more}{} more)",
                if more >= 100 { "+" } else { "" }
            ));
        }
        Err(message)
    }

    pub(crate) fn root(&self) -> &Value {
        &self.inner.root
    }

    pub(crate) fn draft(&self) -> Draft {
        self.inner.draft
    }

    pub(crate) fn registry(&self) -> &Registry<'static> {
        &self.inner.registry
    }

    pub(crate) fn base_uri(&self) -> &Uri<String> {
        &self.inner.base_uri
    }

    /// Same document and same references: the same schema, whatever else is compared.
    pub(crate) fn is_same(&self, other: &JsonSchema) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
            || (self.inner.root == other.inner.root
                && self.inner.references == other.inner.references)
    }
}

/// Why `reader` cannot read what `writer` wrote: the documents valid under `writer` that
/// `reader` may refuse, named with Confluent's difference kinds.
pub fn can_read(reader: &JsonSchema, writer: &JsonSchema) -> Vec<Incompatibility> {
    compat::can_read(reader, writer)
}

/// Compact JSON with object keys in sorted (byte) order.
fn write_sorted(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(key) {
                    write_sorted(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_sorted(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Keywords whose value is a schema.
const SCHEMA_KEYWORDS: &[&str] = &[
    "additionalItems",
    "additionalProperties",
    "contains",
    "contentSchema",
    "else",
    "if",
    "items",
    "not",
    "propertyNames",
    "then",
    "unevaluatedItems",
    "unevaluatedProperties",
];
/// Keywords whose value is an array of schemas.
const SCHEMA_ARRAY_KEYWORDS: &[&str] = &["allOf", "anyOf", "oneOf", "prefixItems", "items"];
/// Keywords whose value maps names to schemas.
const SCHEMA_MAP_KEYWORDS: &[&str] = &[
    "$defs",
    "definitions",
    "dependentSchemas",
    "patternProperties",
    "properties",
    "dependencies",
];

fn sort_string_set(value: &mut Value) {
    if let Value::Array(items) = value
        && items.iter().all(Value::is_string)
    {
        items.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
    }
}

fn normalize_schema(schema: &mut Value, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    let Value::Object(map) = schema else { return };
    for (key, value) in map.iter_mut() {
        match key.as_str() {
            "required" | "type" => sort_string_set(value),
            "dependentRequired" => {
                if let Value::Object(deps) = value {
                    deps.values_mut().for_each(sort_string_set);
                }
            }
            "dependencies" => {
                if let Value::Object(deps) = value {
                    for dep in deps.values_mut() {
                        if dep.is_array() {
                            sort_string_set(dep);
                        } else {
                            normalize_schema(dep, depth + 1);
                        }
                    }
                }
            }
            k if SCHEMA_MAP_KEYWORDS.contains(&k) => {
                if let Value::Object(children) = value {
                    children
                        .values_mut()
                        .for_each(|c| normalize_schema(c, depth + 1));
                }
            }
            k if SCHEMA_ARRAY_KEYWORDS.contains(&k) && value.is_array() => {
                if let Value::Array(children) = value {
                    children
                        .iter_mut()
                        .for_each(|c| normalize_schema(c, depth + 1));
                }
            }
            k if SCHEMA_KEYWORDS.contains(&k) => normalize_schema(value, depth + 1),
            _ => {}
        }
    }
}
