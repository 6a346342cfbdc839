//! Masking of secrets and personal data before anything leaves the process (log lines, span
//! attributes and events).
//!
//! A [`Masker`] judges a value twice: by the *name* of the field that carries it (a configured
//! list such as `password`, `authorization`; the whole value is replaced) and by *content*
//! (regexes for e-mail addresses, card numbers that pass the Luhn check, bearer/basic
//! credentials, SCRAM client proofs, SASL/PLAIN messages, `password=…` pairs and passwords in
//! URLs; only the match is replaced). Field names the schema registry classifies as sensitive
//! are added at run time with [`Masker::classify`], so a deployment does not need a restart.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use regex::Regex;

/// What a masked value or match is replaced with.
pub const MASK: &str = "***";

/// Field names masked whole unless configured otherwise (compared case-insensitively, with
/// `-` and `_` treated alike).
pub const DEFAULT_FIELDS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "secret",
    "client_secret",
    "token",
    "access_token",
    "refresh_token",
    "api_key",
    "apikey",
    "authorization",
    "proxy_authorization",
    "cookie",
    "set_cookie",
    "sasl_password",
    "sasl_plain",
    "credentials",
    "private_key",
];

/// A content rule: what it finds and how a match is rewritten.
struct Pattern {
    name: String,
    regex: Regex,
    rewrite: Rewrite,
}

enum Rewrite {
    /// The whole match becomes [`MASK`].
    Whole,
    /// Capture group 1 is kept, the rest of the match becomes [`MASK`] (e.g. `Bearer ***`).
    KeepPrefix,
    /// Digits that pass the Luhn check become [`MASK`]; other digit runs are kept.
    Card,
}

/// Errors building a [`Masker`] from configuration.
#[derive(Debug, thiserror::Error)]
pub enum MaskError {
    #[error("invalid masking pattern {name:?}: {error}")]
    Pattern { name: String, error: regex::Error },
}

/// The masking rules of one process. Cheap to clone (shared state).
#[derive(Clone)]
pub struct Masker(Arc<Inner>);

struct Inner {
    fields: RwLock<BTreeSet<String>>,
    patterns: Vec<Pattern>,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Masker")
            .field(
                "patterns",
                &self.0.patterns.iter().map(|p| &p.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn normalize(name: &str) -> String {
    name.trim().to_ascii_lowercase().replace('-', "_")
}

/// The built-in content rules. Every regex is a constant that compiles (tested).
fn builtin() -> Vec<(&'static str, &'static str, Rewrite)> {
    vec![
        // `Authorization: Bearer abc`, `bearer=abc`: keep the scheme, hide the credential.
        (
            "bearer",
            r"(?i)(\bbearer[\s=:]+)[A-Za-z0-9\-._~+/]+=*",
            Rewrite::KeepPrefix,
        ),
        (
            "basic",
            r"(?i)(\bbasic\s+)[A-Za-z0-9+/]{6,}=*",
            Rewrite::KeepPrefix,
        ),
        // SCRAM client-final-message: `c=biws,r=<nonce>,p=<proof>` (RFC 5802).
        (
            "scram_proof",
            r"((?:^|,)p=)[A-Za-z0-9+/]+=*",
            Rewrite::KeepPrefix,
        ),
        // SASL/PLAIN message: `[authzid] NUL authcid NUL passwd` (RFC 4616).
        (
            "sasl_plain",
            r"(\x00[^\x00]*\x00)[^\x00]+",
            Rewrite::KeepPrefix,
        ),
        // `password=hunter2`, `"secret": "x"`, `token: x` inside free text.
        (
            "key_value_secret",
            r#"(?i)(\b[a-z0-9_\-]*(?:password|passwd|pwd|secret|token|api[_-]?key)"?\s*[=:]\s*"?)[^\s",;&}]+"#,
            Rewrite::KeepPrefix,
        ),
        // `scheme://user:password@host`.
        (
            "url_password",
            r"(://[^/\s:@]+:)[^/\s@]+(@)",
            Rewrite::KeepPrefix,
        ),
        (
            "email",
            r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}",
            Rewrite::Whole,
        ),
        // 13–19 digits, optionally grouped by spaces or dashes; masked only if Luhn-valid.
        ("card", r"\b\d(?:[ -]?\d){12,18}\b", Rewrite::Card),
    ]
}

/// Passes the Luhn checksum (payment card numbers do; most random digit runs do not).
pub fn luhn_valid(digits: &str) -> bool {
    let mut sum = 0u32;
    let mut count = 0;
    for (i, d) in digits
        .chars()
        .rev()
        .filter(char::is_ascii_digit)
        .enumerate()
    {
        let mut v = d.to_digit(10).unwrap_or(0);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
        count += 1;
    }
    count >= 13 && sum.is_multiple_of(10)
}

impl Default for Masker {
    fn default() -> Self {
        Masker::new(
            DEFAULT_FIELDS.iter().copied(),
            std::iter::empty::<(&str, &str)>(),
        )
        .unwrap_or_else(|_| unreachable!("built-in rules compile (tested)"))
    }
}

impl Masker {
    /// The built-in content rules plus `fields` (masked whole) and extra `patterns`
    /// (`(name, regex)`, each match masked whole).
    pub fn new<'a>(
        fields: impl IntoIterator<Item = &'a str>,
        patterns: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Masker, MaskError> {
        let mut compiled = Vec::new();
        for (name, re, rewrite) in builtin() {
            let regex = Regex::new(re).map_err(|error| MaskError::Pattern {
                name: name.to_owned(),
                error,
            })?;
            compiled.push(Pattern {
                name: name.to_owned(),
                regex,
                rewrite,
            });
        }
        for (name, re) in patterns {
            let regex = Regex::new(re).map_err(|error| MaskError::Pattern {
                name: name.to_owned(),
                error,
            })?;
            compiled.push(Pattern {
                name: name.to_owned(),
                regex,
                rewrite: Rewrite::Whole,
            });
        }
        Ok(Masker(Arc::new(Inner {
            fields: RwLock::new(fields.into_iter().map(normalize).collect()),
            patterns: compiled,
        })))
    }

    /// Marks another field name as sensitive from now on (e.g. a field the registry
    /// classifies as PII).
    pub fn classify(&self, field: &str) {
        let mut fields = self
            .0
            .fields
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        fields.insert(normalize(field));
    }

    /// Whether a field of this name is masked whole.
    pub fn is_sensitive_field(&self, field: &str) -> bool {
        let fields = self
            .0
            .fields
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        fields.contains(&normalize(field))
    }

    /// The value of field `field` as it may leave the process.
    pub fn field<'v>(&self, field: &str, value: &'v str) -> std::borrow::Cow<'v, str> {
        if self.is_sensitive_field(field) {
            return std::borrow::Cow::Borrowed(MASK);
        }
        self.text(value)
    }

    /// `text` with every content-rule match masked.
    pub fn text<'v>(&self, text: &'v str) -> std::borrow::Cow<'v, str> {
        let mut out = std::borrow::Cow::Borrowed(text);
        for p in &self.0.patterns {
            if !p.regex.is_match(&out) {
                continue;
            }
            let replaced = match p.rewrite {
                Rewrite::Whole => p.regex.replace_all(&out, MASK).into_owned(),
                Rewrite::KeepPrefix => p
                    .regex
                    .replace_all(&out, |c: &regex::Captures<'_>| {
                        let mut s = c.get(1).map_or("", |m| m.as_str()).to_owned();
                        s.push_str(MASK);
                        if let Some(m) = c.get(2) {
                            s.push_str(m.as_str());
                        }
                        s
                    })
                    .into_owned(),
                Rewrite::Card => p
                    .regex
                    .replace_all(&out, |c: &regex::Captures<'_>| {
                        let m = c.get(0).map_or("", |m| m.as_str());
                        if luhn_valid(m) {
                            MASK.to_owned()
                        } else {
                            m.to_owned()
                        }
                    })
                    .into_owned(),
            };
            out = std::borrow::Cow::Owned(replaced);
        }
        out
    }
}

/// Data-contract tags that make a field sensitive (Confluent's `confluent:tags`; compared
/// case-insensitively).
pub const SENSITIVE_TAGS: &[&str] = &["PII", "SENSITIVE", "PHI", "PCI", "SECRET", "CONFIDENTIAL"];

/// The names of the fields a schema text tags as sensitive: an Avro field or a JSON Schema
/// property whose `confluent:tags` holds one of [`SENSITIVE_TAGS`], at any depth (nested
/// records, arrays, `definitions`). Protobuf schemas (not JSON) and texts that do not parse
/// give none.
pub fn classified_fields(schema_text: &str) -> Vec<String> {
    let Ok(json) = serde_json::from_str::<serde_json::Value>(schema_text) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    walk(&json, None, &mut out);
    out.sort();
    out.dedup();
    out
}

fn is_sensitive_tagged(object: &serde_json::Map<String, serde_json::Value>) -> bool {
    object
        .get("confluent:tags")
        .and_then(serde_json::Value::as_array)
        .is_some_and(|tags| {
            tags.iter().filter_map(serde_json::Value::as_str).any(|t| {
                SENSITIVE_TAGS
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(t.trim()))
            })
        })
}

/// `name`: the JSON Schema property this value is the schema of, if it is one.
fn walk(value: &serde_json::Value, name: Option<&str>, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(o) => {
            if is_sensitive_tagged(o) {
                // An Avro field names itself; a JSON Schema property is named by its key.
                let field = if o.contains_key("type")
                    && o.get("name").is_some_and(|n| n.is_string())
                    && name.is_none()
                {
                    o.get("name").and_then(serde_json::Value::as_str)
                } else {
                    name
                };
                if let Some(f) = field {
                    out.push(f.to_owned());
                }
            }
            for (k, v) in o {
                let child = match k.as_str() {
                    "properties" | "patternProperties" => {
                        if let serde_json::Value::Object(props) = v {
                            for (prop, schema) in props {
                                walk(schema, Some(prop), out);
                            }
                        }
                        continue;
                    }
                    _ => None,
                };
                walk(v, child, out);
            }
        }
        serde_json::Value::Array(items) => {
            for v in items {
                walk(v, None, out);
            }
        }
        _ => {}
    }
}

impl Masker {
    /// Marks the fields `schema_text` tags as sensitive ([`classified_fields`]); returns those
    /// that were not masked before.
    pub fn classify_schema(&self, schema_text: &str) -> Vec<String> {
        let new: Vec<String> = classified_fields(schema_text)
            .into_iter()
            .filter(|f| {
                let new = !self.is_sensitive_field(f);
                self.classify(f);
                new
            })
            .collect();
        if !new.is_empty() {
            metrics::counter!("weft_mask_classified_fields_total").increment(new.len() as u64);
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: &str) {
        let m = Masker::default();
        assert_eq!(m.text(input), expected, "input {input:?}");
    }

    #[test]
    fn content_rules() {
        let cases = [
            ("no secrets here", "no secrets here"),
            (
                "Authorization: Bearer eyJhbGciOi.J9.abc-_",
                "Authorization: Bearer ***",
            ),
            ("basic dXNlcjpwYXNz", "basic ***"),
            (
                "c=biws,r=fyko+d2lbbFgONRv9qkxdawL,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
                "c=biws,r=fyko+d2lbbFgONRv9qkxdawL,p=***",
            ),
            ("\0alice\0hunter2", "\0alice\0***"),
            ("login password=hunter2 ok", "login password=*** ok"),
            (
                "GET /x?access_token=abc123&y=1",
                "GET /x?access_token=***&y=1",
            ),
            ("sasl.password: pw", "sasl.password: ***"),
            (r#"{"secret": "s3cr3t"}"#, r#"{"secret": "***"}"#),
            (
                "postgres://weft:pa55@db:5432/x",
                "postgres://weft:***@db:5432/x",
            ),
            ("mail jane.doe+x@example.co.uk now", "mail *** now"),
            ("card 4111 1111 1111 1111 paid", "card *** paid"),
            ("card 4111-1111-1111-1111", "card ***"),
            // Not Luhn-valid: an offset, kept.
            ("offset 4111111111111112", "offset 4111111111111112"),
            ("partition 3 offset 12", "partition 3 offset 12"),
        ];
        for (input, expected) in cases {
            check(input, expected);
        }
    }

    #[test]
    fn fields_by_name_and_classification() {
        let m = Masker::default();
        assert_eq!(m.field("Password", "x"), MASK);
        assert_eq!(m.field("set-cookie", "a=b"), MASK);
        assert_eq!(m.field("topic", "orders"), "orders");
        assert_eq!(m.field("ssn", "123"), "123");
        m.classify("ssn");
        assert_eq!(m.field("SSN", "123"), MASK);
    }

    #[test]
    fn extra_patterns_and_errors() {
        let m = Masker::new(["x"], [("order", r"ORD-\d+")]).expect("valid");
        assert_eq!(m.text("see ORD-42"), "see ***");
        let err = Masker::new(["x"], [("bad", "(")]).expect_err("invalid regex");
        assert!(err.to_string().contains("\"bad\""), "{err}");
    }

    #[test]
    fn fields_classified_by_schema_tags() {
        let avro = r#"{"type":"record","name":"Customer","fields":[
            {"name":"id","type":"long"},
            {"name":"email","type":"string","confluent:tags":["PII"]},
            {"name":"address","type":{"type":"record","name":"Address","fields":[
                {"name":"street","type":"string","confluent:tags":["pii","GDPR"]},
                {"name":"city","type":"string","confluent:tags":["PUBLIC"]}]}}]}"#;
        let json_schema = r#"{"type":"object","properties":{
            "ssn":{"type":"string","confluent:tags":["SENSITIVE"]},
            "name":{"type":"string"},
            "cards":{"type":"array","items":{"type":"object","properties":{
                "pan":{"type":"string","confluent:tags":["PCI"]}}}}}}"#;
        let cases: [(&str, &[&str]); 4] = [
            (avro, &["email", "street"]),
            (json_schema, &["pan", "ssn"]),
            ("syntax = \"proto3\"; message M { string email = 1; }", &[]),
            (r#"{"type":"string"}"#, &[]),
        ];
        for (text, expected) in cases {
            assert_eq!(classified_fields(text), expected, "{text}");
        }
        let m = Masker::default();
        assert_eq!(m.field("street", "1 Main St"), "1 Main St");
        assert_eq!(m.classify_schema(avro), ["email", "street"]);
        assert_eq!(
            m.classify_schema(avro),
            Vec::<String>::new(),
            "already masked"
        );
        assert_eq!(m.field("street", "1 Main St"), MASK);
        assert_eq!(m.field("city", "Paris"), "Paris");
    }

    #[test]
    fn luhn() {
        assert!(luhn_valid("4111111111111111"));
        assert!(luhn_valid("5500 0000 0000 0004"));
        assert!(!luhn_valid("4111111111111112"));
        assert!(!luhn_valid("0"));
    }
}
