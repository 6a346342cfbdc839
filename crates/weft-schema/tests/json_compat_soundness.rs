//! The compatibility checker against the validator: whenever `can_read(reader, writer)` finds
//! nothing, every generated document that the writer accepts must be accepted by the reader.
//!
//! Schemas come from a small grammar over the keywords the checker models. Two documented
//! exceptions are left out of it: `oneOf` exclusivity (not checked, as in Confluent; `anyOf`
//! stands in) and a required property with a `default` (allowed on purpose, as in Confluent).

use proptest::prelude::*;
use serde_json::{Value, json};
use weft_schema::json::{JsonSchema, can_read};

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(true)),
        Just(json!(false)),
        Just(json!({})),
        Just(json!({"type": "null"})),
        Just(json!({"type": "boolean"})),
        Just(json!({"type": ["string", "null"]})),
        (
            prop::option::of(0u64..4),
            prop::option::of(0u64..4),
            prop::option::of(prop::sample::select(vec!["^a", "b$", "^[ab]*$"]))
        )
            .prop_map(|(min, max, pattern)| {
                let mut s = json!({"type": "string"});
                if let Some(m) = min {
                    s["minLength"] = json!(m);
                }
                if let Some(m) = max {
                    s["maxLength"] = json!(m);
                }
                if let Some(p) = pattern {
                    s["pattern"] = json!(p);
                }
                s
            }),
        (
            prop::sample::select(vec!["integer", "number"]),
            prop::option::of(-3i64..3),
            prop::option::of(-3i64..3),
            any::<bool>(),
            prop::option::of(prop::sample::select(vec![1.0, 2.0, 3.0, 0.5])),
        )
            .prop_map(|(ty, min, max, exclusive, multiple)| {
                let mut s = json!({ "type": ty });
                if let Some(m) = min {
                    s[if exclusive {
                        "exclusiveMinimum"
                    } else {
                        "minimum"
                    }] = json!(m);
                }
                if let Some(m) = max {
                    s["maximum"] = json!(m);
                }
                if let Some(m) = multiple {
                    s["multipleOf"] = json!(m);
                }
                s
            }),
        prop::collection::vec(value_leaf(), 1..4).prop_map(|v| json!({ "enum": v })),
        value_leaf().prop_map(|v| json!({ "const": v })),
    ]
}

fn schema() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 3, |inner| {
        prop_oneof![
            (
                prop::collection::btree_map(
                    prop::sample::select(vec!["a", "b", "c"]),
                    inner.clone(),
                    0..3
                ),
                prop::collection::btree_set(prop::sample::select(vec!["a", "b", "c"]), 0..2),
                prop_oneof![
                    Just(None),
                    Just(Some(json!(false))),
                    Just(Some(json!(true))),
                    inner.clone().prop_map(Some)
                ],
                prop::option::of((
                    inner.clone(),
                    prop::sample::select(vec!["^c", "^cc", "c$", "^d"])
                )),
                any::<bool>(),
            )
                .prop_map(|(props, required, additional, pattern, typed)| {
                    let mut s = json!({ "properties": props });
                    if typed {
                        s["type"] = json!("object");
                    }
                    if !required.is_empty() {
                        s["required"] = json!(required);
                    }
                    if let Some(a) = additional {
                        s["additionalProperties"] = a;
                    }
                    if let Some((p, key)) = pattern {
                        s["patternProperties"] = json!({ key: p });
                    }
                    s
                }),
            (
                inner.clone(),
                prop::option::of(0u64..3),
                prop::option::of(0u64..3),
                any::<bool>()
            )
                .prop_map(|(items, min, max, unique)| {
                    let mut s = json!({"type": "array", "items": items});
                    if let Some(m) = min {
                        s["minItems"] = json!(m);
                    }
                    if let Some(m) = max {
                        s["maxItems"] = json!(m);
                    }
                    if unique {
                        s["uniqueItems"] = json!(true);
                    }
                    s
                }),
            (
                prop::collection::vec(inner.clone(), 0..3),
                prop_oneof![
                    Just(None),
                    Just(Some(json!(false))),
                    inner.clone().prop_map(Some)
                ]
            )
                .prop_map(|(items, additional)| {
                    let mut s = json!({"type": "array", "items": items});
                    if let Some(a) = additional {
                        s["additionalItems"] = a;
                    }
                    s
                }),
            prop::collection::vec(inner.clone(), 1..3).prop_map(|v| json!({ "anyOf": v })),
            prop::collection::vec(inner.clone(), 1..3).prop_map(|v| json!({ "allOf": v })),
            inner.clone().prop_map(|v| json!({ "not": v })),
            (inner.clone(), inner.clone()).prop_map(|(c, t)| json!({"if": c, "then": t})),
            (
                prop::option::of(0u64..3),
                prop::option::of(0u64..3),
                any::<bool>(),
                any::<bool>(),
                prop::option::of(inner.clone()),
            )
                .prop_map(|(min, max, dependency, names, contains)| {
                    let mut s = json!({});
                    if let Some(m) = min {
                        s["minProperties"] = json!(m);
                    }
                    if let Some(m) = max {
                        s["maxProperties"] = json!(m);
                    }
                    if dependency {
                        s["dependencies"] = json!({"a": ["b"]});
                    }
                    if names {
                        s["propertyNames"] = json!({"maxLength": 1});
                    }
                    if let Some(c) = contains {
                        s["contains"] = c;
                    }
                    s
                }),
            (inner.clone(), inner).prop_map(|(a, b)| {
                json!({"type": "object", "properties": {"a": a}, "allOf": [b]})
            }),
        ]
    })
}

fn value_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(null)),
        any::<bool>().prop_map(Value::from),
        (-4i64..5).prop_map(Value::from),
        prop::sample::select(vec![0.5, 2.5, -1.5]).prop_map(Value::from),
        prop::sample::select(vec!["", "a", "b", "ab", "ba", "abc", "aab"]).prop_map(Value::from),
    ]
}

fn document() -> impl Strategy<Value = Value> {
    value_leaf().prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(
                prop::sample::select(vec!["a", "b", "c", "cc", "d"]).prop_map(String::from),
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A (reader, writer) pair: unrelated schemas are mostly incompatible, so most pairs are a
/// writer and a near variant of it (a keyword dropped, a subschema replaced, a branch added).
fn pair() -> impl Strategy<Value = (Value, Value)> {
    (schema(), schema(), 0usize..8, any::<prop::sample::Index>()).prop_map(|(w, x, how, index)| {
        let mut r = w.clone();
        match (how, r.as_object_mut()) {
            (0, Some(map)) if !map.is_empty() => {
                let key = map.keys().nth(index.index(map.len())).cloned();
                if let Some(key) = key {
                    map.remove(&key);
                }
            }
            (1, _) => r = json!({"anyOf": [w.clone(), x]}),
            (2, Some(map)) => {
                if let Some(Value::Object(props)) = map.get_mut("properties") {
                    if !props.is_empty() {
                        let key = props.keys().nth(index.index(props.len())).cloned();
                        if let Some(key) = key {
                            props.insert(key, x);
                        }
                    }
                } else if map.contains_key("items") {
                    map.insert("items".to_owned(), x);
                } else {
                    map.insert("not".to_owned(), x);
                }
            }
            (3, _) => return (w.clone(), json!({"anyOf": [w, x]})),
            (4, Some(map)) => {
                map.insert("allOf".to_owned(), json!([x]));
            }
            (5, _) => r = json!({"allOf": [w.clone()]}),
            (6, _) => r = json!({"$ref": "#/definitions/w", "definitions": {"w": w.clone()}}),
            _ => r = x,
        }
        (r, w)
    })
}

fn parse(schema: &Value) -> Option<JsonSchema> {
    JsonSchema::parse(&schema.to_string(), &[]).ok()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn compatible_means_the_reader_accepts_what_the_writer_accepts(
        (reader, writer) in pair(),
        documents in prop::collection::vec(document(), 24),
    ) {
        let (Some(r), Some(w)) = (parse(&reader), parse(&writer)) else {
            return Ok(());
        };
        if !can_read(&r, &w).is_empty() {
            return Ok(());
        }
        for doc in &documents {
            let bytes = doc.to_string();
            if w.validate(bytes.as_bytes()).is_ok() {
                prop_assert!(
                    r.validate(bytes.as_bytes()).is_ok(),
                    "reader {reader} was found compatible with writer {writer}, yet refuses {doc}"
                );
            }
        }
    }

    #[test]
    fn every_schema_reads_an_equivalent_of_itself(schema in schema()) {
        // Wrapped in a one-element allOf so the checker walks it (an identical document is
        // recognised without a walk).
        let wrapped = json!({"allOf": [schema.clone()]});
        if let (Some(s), Some(w)) = (parse(&schema), parse(&wrapped)) {
            let reasons = can_read(&s, &w);
            prop_assert!(reasons.is_empty(), "{schema} reading its wrapper: {reasons:?}");
            let reasons = can_read(&w, &s);
            prop_assert!(reasons.is_empty(), "its wrapper reading {schema}: {reasons:?}");
        }
    }
}

/// Rewrites a draft-07 schema of the grammar into 2020-12 (`prefixItems`/`items`).
fn to_2020(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("items", Value::Array(items)) => {
                        out.insert(
                            "prefixItems".to_owned(),
                            items.iter().map(to_2020).collect(),
                        );
                    }
                    ("additionalItems", v) => {
                        if map.get("items").is_some_and(Value::is_array) {
                            out.insert("items".to_owned(), to_2020(v));
                        }
                    }
                    ("properties" | "patternProperties" | "dependencies", Value::Object(m)) => {
                        out.insert(
                            key.clone(),
                            Value::Object(m.iter().map(|(k, v)| (k.clone(), to_2020(v))).collect()),
                        );
                    }
                    ("enum" | "const" | "required", v) => {
                        out.insert(key.clone(), v.clone());
                    }
                    (_, Value::Array(items)) => {
                        out.insert(key.clone(), items.iter().map(to_2020).collect());
                    }
                    (_, v) => {
                        out.insert(key.clone(), to_2020(v));
                    }
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// Closes a schema the 2019-09/2020-12 way, through `unevaluated*`.
fn close(value: Value, how: u8) -> Value {
    let mut s = match how {
        0 => return value,
        1 => json!({"allOf": [value], "unevaluatedProperties": false}),
        2 => json!({"allOf": [value], "unevaluatedItems": false}),
        _ => json!({"anyOf": [value], "unevaluatedProperties": {"type": "string"}}),
    };
    s["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn compatible_means_accepted_in_2020_12_with_unevaluated_keywords(
        (reader, writer) in pair(),
        close_reader in 0u8..4,
        close_writer in 0u8..4,
        documents in prop::collection::vec(document(), 24),
    ) {
        let dialect = |v: Value| {
            let mut v = to_2020(&v);
            if let Some(map) = v.as_object_mut() {
                map.insert("$schema".to_owned(), json!("https://json-schema.org/draft/2020-12/schema"));
            }
            v
        };
        let reader = close(dialect(reader), close_reader);
        let writer = close(dialect(writer), close_writer);
        let (Some(r), Some(w)) = (parse(&reader), parse(&writer)) else {
            return Ok(());
        };
        if !can_read(&r, &w).is_empty() {
            return Ok(());
        }
        for doc in &documents {
            let bytes = doc.to_string();
            if w.validate(bytes.as_bytes()).is_ok() {
                prop_assert!(
                    r.validate(bytes.as_bytes()).is_ok(),
                    "reader {reader} was found compatible with writer {writer}, yet refuses {doc}"
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// The same grammar under other declared drafts, reader and writer independently: the
    /// keywords a draft does not know must constrain nothing for the checker either.
    #[test]
    fn compatible_means_accepted_across_drafts(
        (reader, writer) in pair(),
        reader_draft in prop::sample::select(DRAFTS.to_vec()),
        writer_draft in prop::sample::select(DRAFTS.to_vec()),
        documents in prop::collection::vec(document(), 24),
    ) {
        let declare = |mut v: Value, uri: &str| {
            if let Some(map) = v.as_object_mut() {
                map.insert("$schema".to_owned(), json!(uri));
            }
            v
        };
        let reader = declare(reader, reader_draft);
        let writer = declare(writer, writer_draft);
        let (Some(r), Some(w)) = (parse(&reader), parse(&writer)) else {
            return Ok(());
        };
        if !can_read(&r, &w).is_empty() {
            return Ok(());
        }
        for doc in &documents {
            let bytes = doc.to_string();
            if w.validate(bytes.as_bytes()).is_ok() {
                prop_assert!(
                    r.validate(bytes.as_bytes()).is_ok(),
                    "reader {reader} was found compatible with writer {writer}, yet refuses {doc}"
                );
            }
        }
    }
}

const DRAFTS: [&str; 4] = [
    "http://json-schema.org/draft-04/schema#",
    "http://json-schema.org/draft-06/schema#",
    "http://json-schema.org/draft-07/schema#",
    "https://json-schema.org/draft/2019-09/schema",
];
