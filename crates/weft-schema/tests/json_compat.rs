//! JSON Schema evolution: a table of (old, new) pairs with the expected verdict under
//! BACKWARD (the new schema reads what the old one wrote) and FORWARD (the old schema reads
//! what the new one writes), checked through `weft_schema::check_compatibility`.

use weft_schema::{
    CompatibilityLevel, Incompatibility, NamedSchema, ParsedSchema, SchemaType, check_compatibility,
};

/// `None`: compatible. `Some(kind)`: incompatible, and `kind` is among the reasons.
type Verdict = Option<&'static str>;
const OK: Verdict = None;

struct Case {
    name: &'static str,
    old: &'static str,
    new: &'static str,
    backward: Verdict,
    forward: Verdict,
}

fn json(text: &str) -> ParsedSchema {
    json_with(text, &[])
}

fn json_with(text: &str, references: &[NamedSchema]) -> ParsedSchema {
    match ParsedSchema::parse(SchemaType::Json, text, references) {
        Ok(s) => s,
        Err(e) => panic!("{text} should parse: {e}"),
    }
}

fn describe(reasons: &[Incompatibility]) -> String {
    reasons
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n  ")
}

fn check_verdict(
    case: &str,
    level: CompatibilityLevel,
    reasons: &[Incompatibility],
    expected: Verdict,
) {
    match expected {
        None => assert!(
            reasons.is_empty(),
            "{case}: expected {level} compatible, got:\n  {}",
            describe(reasons)
        ),
        Some(kind) => {
            assert!(
                reasons.iter().any(|r| r.kind == kind),
                "{case}: expected {level} to fail with {kind}, got:\n  {}",
                describe(reasons)
            );
            for r in reasons {
                assert!(
                    r.location.starts_with("#/"),
                    "{case}: location {:?}",
                    r.location
                );
                assert!(!r.message.is_empty(), "{case}: empty message");
                assert!(
                    r.kind.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
                    "{case}: kind {}",
                    r.kind
                );
            }
        }
    }
}

fn check(case: &Case) {
    let old = json(case.old);
    let new = json(case.new);
    let backward = check_compatibility(CompatibilityLevel::Backward, &new, &[&old]);
    check_verdict(
        case.name,
        CompatibilityLevel::Backward,
        &backward,
        case.backward,
    );
    let forward = check_compatibility(CompatibilityLevel::Forward, &new, &[&old]);
    check_verdict(
        case.name,
        CompatibilityLevel::Forward,
        &forward,
        case.forward,
    );
    let full = check_compatibility(CompatibilityLevel::Full, &new, &[&old]);
    assert_eq!(
        full.is_empty(),
        case.backward.is_none() && case.forward.is_none(),
        "{}: FULL is BACKWARD and FORWARD",
        case.name
    );
    assert!(
        check_compatibility(CompatibilityLevel::None, &new, &[&old]).is_empty(),
        "{}: NONE accepts everything",
        case.name
    );
}

const OBJ_A: &str = r#"{"type": "object", "properties": {"a": {"type": "string"}}}"#;
const OBJ_AB: &str =
    r#"{"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}}"#;
const CLOSED_A: &str =
    r#"{"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false}"#;
const CLOSED_AB: &str = r#"{"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}, "additionalProperties": false}"#;

const CASES: &[Case] = &[
    // --- identity and trivial schemas ---
    Case {
        name: "identical",
        old: OBJ_AB,
        new: OBJ_AB,
        backward: OK,
        forward: OK,
    },
    Case {
        name: "reformatted",
        old: OBJ_AB,
        new: r#"{"properties":{"b":{"type":"string"},"a":{"type":"string"}},"type":"object"}"#,
        backward: OK,
        forward: OK,
    },
    Case {
        name: "anything to true",
        old: r#"{"type": "string"}"#,
        new: "true",
        backward: OK,
        forward: Some("TYPE_NARROWED"),
    },
    Case {
        name: "true to false",
        old: "true",
        new: "false",
        backward: Some("TYPE_CHANGED"),
        forward: OK,
    },
    Case {
        name: "empty schema to typed",
        old: "{}",
        new: r#"{"type": "object"}"#,
        backward: Some("TYPE_NARROWED"),
        forward: OK,
    },
    Case {
        name: "annotations only",
        old: r#"{"type": "string", "title": "a", "description": "x"}"#,
        new: r#"{"type": "string", "title": "b", "$comment": "y", "examples": ["z"]}"#,
        backward: OK,
        forward: OK,
    },
    // --- types ---
    Case {
        name: "type changed",
        old: r#"{"type": "string"}"#,
        new: r#"{"type": "integer"}"#,
        backward: Some("TYPE_CHANGED"),
        forward: Some("TYPE_CHANGED"),
    },
    Case {
        name: "integer widened to number",
        old: r#"{"type": "integer"}"#,
        new: r#"{"type": "number"}"#,
        backward: OK,
        forward: Some("TYPE_NARROWED"),
    },
    Case {
        name: "nullable added via type array",
        old: r#"{"type": ["string"]}"#,
        new: r#"{"type": ["string", "null"]}"#,
        backward: OK,
        forward: Some("TYPE_NARROWED"),
    },
    Case {
        name: "type array reordered",
        old: r#"{"type": ["string", "null"]}"#,
        new: r#"{"type": ["null", "string"]}"#,
        backward: OK,
        forward: OK,
    },
    Case {
        name: "object to array",
        old: r#"{"type": "object"}"#,
        new: r#"{"type": "array"}"#,
        backward: Some("TYPE_CHANGED"),
        forward: Some("TYPE_CHANGED"),
    },
    // --- open content model ---
    Case {
        name: "property added to open model",
        old: OBJ_A,
        new: OBJ_AB,
        backward: Some("PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL"),
        forward: OK,
    },
    Case {
        name: "property removed from open model",
        old: OBJ_AB,
        new: OBJ_A,
        backward: OK,
        forward: Some("PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL"),
    },
    Case {
        name: "empty-schema property added to open model",
        old: OBJ_A,
        new: r#"{"type": "object", "properties": {"a": {"type": "string"}, "b": {}}}"#,
        backward: OK,
        forward: OK,
    },
    Case {
        name: "property type changed",
        old: OBJ_A,
        new: r#"{"type": "object", "properties": {"a": {"type": "integer"}}}"#,
        backward: Some("TYPE_CHANGED"),
        forward: Some("TYPE_CHANGED"),
    },
    Case {
        name: "nested property type changed",
        old: r#"{"properties": {"addr": {"properties": {"zip": {"type": "string"}}}}}"#,
        new: r#"{"properties": {"addr": {"properties": {"zip": {"type": "integer"}}}}}"#,
        backward: Some("TYPE_CHANGED"),
        forward: Some("TYPE_CHANGED"),
    },
    // --- closed content model ---
    Case {
        name: "optional property added to closed model",
        old: CLOSED_A,
        new: CLOSED_AB,
        backward: OK,
        forward: Some("PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL"),
    },
    Case {
        name: "property removed from closed model",
        old: CLOSED_AB,
        new: CLOSED_A,
        backward: Some("PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL"),
        forward: OK,
    },
    Case {
        name: "required property added to closed model",
        old: CLOSED_A,
        new: r#"{"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}, "required": ["b"], "additionalProperties": false}"#,
        backward: Some("REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL"),
        forward: Some("PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL"),
    },
    Case {
        name: "required property with default added to closed model",
        old: CLOSED_A,
        new: r#"{"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string", "default": "x"}}, "required": ["b"], "additionalProperties": false}"#,
        backward: OK,
        forward: Some("PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL"),
    },
    Case {
        name: "false property removed from closed model",
        old: r#"{"properties": {"a": {"type": "string"}, "b": false}, "additionalProperties": false}"#,
        new: r#"{"properties": {"a": {"type": "string"}}, "additionalProperties": false}"#,
        backward: OK,
        forward: OK,
    },
    Case {
        name: "model closed",
        old: OBJ_A,
        new: CLOSED_A,
        backward: Some("ADDITIONAL_PROPERTIES_REMOVED"),
        forward: OK,
    },
    Case {
        name: "additionalProperties true to false",
        old: r#"{"additionalProperties": true}"#,
        new: r#"{"additionalProperties": false}"#,
        backward: Some("ADDITIONAL_PROPERTIES_REMOVED"),
        forward: OK,
    },
    Case {
        name: "additionalProperties narrowed to a schema",
        old: OBJ_A,
        new: r#"{"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "string"}}"#,
        backward: Some("ADDITIONAL_PROPERTIES_NARROWED"),
        forward: OK,
    },
    Case {
        name: "additionalProperties schema changed",
        old: r#"{"additionalProperties": {"type": "string"}}"#,
        new: r#"{"additionalProperties": {"type": "number"}}"#,
        backward: Some("TYPE_CHANGED"),
        forward: Some("TYPE_CHANGED"),
    },
    // --- partially open content model ---
    Case {
        name: "property added covered by additionalProperties",
        old: r#"{"properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "string"}}"#,
        new: r#"{"properties": {"a": {"type": "string"}, "b": {"type": "string"}}, "additionalProperties": {"type": "string"}}"#,
        backward: OK,
        forward: OK,
    },
    Case {
        name: "property added not covered by additionalProperties",
        old: r#"{"properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "string"}}"#,
        new: r#"{"properties": {"a": {"type": "string"}, "b": {"type": "number"}}, "additionalProperties": {"type": "string"}}"#,
        backward: Some("PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"),
        forward: Some("PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"),
    },
    Case {
        name: "property added covered by patternProperties",
        old: r#"{"properties": {"a": {"type": "string"}}, "patternProperties": {"^S_": {"type": "string"}, "^I_": {"type": "integer"}}, "additionalProperties": false}"#,
        new: r#"{"properties": {"a": {"type": "string"}, "I_123": {"type": "number"}}, "patternProperties": {"^S_": {"type": "string"}, "^I_": {"type": "integer"}}, "additionalProperties": false}"#,
        backward: OK,
        forward: OK,
    },
    Case {
        name: "property removed covered by patternProperties",
        old: r#"{"properties": {"a": {"type": "string"}, "I_1": {"type": "integer"}}, "additionalProperties": false}"#,
        new: r#"{"properties": {"a": {"type": "string"}}, "patternProperties": {"^I_": {"type": "number"}}, "additionalProperties": false}"#,
        backward: OK,
        forward: Some("PATTERN_PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL"),
    },
    Case {
        name: "pattern property schema changed",
        old: r#"{"patternProperties": {"^x": {"type": "string"}}}"#,
        new: r#"{"patternProperties": {"^x": {"type": "string", "maxLength": 2}}}"#,
        backward: Some("MAX_LENGTH_ADDED"),
        forward: OK,
    },
    Case {
        name: "pattern property added to open model",
        old: r#"{"type": "object"}"#,
        new: r#"{"type": "object", "patternProperties": {"^x": {"type": "string"}}}"#,
        backward: Some("PATTERN_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL"),
        forward: OK,
    },
    Case {
        name: "overlapping pattern spelled differently",
        old: r#"{"patternProperties": {"^x": {"type": "string"}}, "additionalProperties": false}"#,
        new: r#"{"patternProperties": {"^x": {"type": "string"}, "^xy": {"type": "string", "maxLength": 1}}, "additionalProperties": false}"#,
        backward: Some("PATTERN_PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"),
        forward: OK,
    },
    Case {
        name: "disjoint pattern added to closed model",
        old: r#"{"patternProperties": {"^S_": {"type": "string"}}, "additionalProperties": false}"#,
        new: r#"{"patternProperties": {"^S_": {"type": "string"}, "^I_": {"type": "integer"}}, "additionalProperties": false}"#,
        backward: OK,
        forward: Some("PATTERN_PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL"),
    },
    // --- required ---
    Case {
        name: "required added",
        old: OBJ_A,
        new: r#"{"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}"#,
        backward: Some("REQUIRED_ATTRIBUTE_ADDED"),
        forward: OK,
    },
    Case {
        name: "required removed",
        old: r#"{"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}"#,
        new: OBJ_A,
        backward: OK,
        forward: Some("REQUIRED_ATTRIBUTE_ADDED"),
    },
    Case {
        name: "required with default added",
        old: OBJ_A,
        new: r#"{"type": "object", "properties": {"a": {"type": "string", "default": "-"}}, "required": ["a"]}"#,
        backward: OK,
        forward: OK,
    },
    Case {
        name: "required reordered",
        old: r#"{"required": ["a", "b"]}"#,
        new: r#"{"required": ["b", "a"]}"#,
        backward: OK,
        forward: OK,
    },
    // --- strings ---
    Case {
        name: "maxLength decreased",
        old: r#"{"type": "string", "maxLength": 10}"#,
        new: r#"{"type": "string", "maxLength": 5}"#,
        backward: Some("MAX_LENGTH_DECREASED"),
        forward: OK,
    },
    Case {
        name: "maxLength added",
        old: r#"{"type": "string"}"#,
        new: r#"{"type": "string", "maxLength": 5}"#,
        backward: Some("MAX_LENGTH_ADDED"),
        forward: OK,
    },
    Case {
        name: "minLength increased",
        old: r#"{"type": "string", "minLength": 1}"#,
        new: r#"{"type": "string", "minLength": 3}"#,
        backward: Some("MIN_LENGTH_INCREASED"),
        forward: OK,
    },
    Case {
        name: "pattern added",
        old: r#"{"type": "string"}"#,
        new: r#"{"type": "string", "pattern": "^[a-z]+$"}"#,
        backward: Some("PATTERN_ADDED"),
        forward: OK,
    },
    Case {
        name: "pattern changed",
        old: r#"{"type": "string", "pattern": "^a"}"#,
        new: r#"{"type": "string", "pattern": "^b"}"#,
        backward: Some("PATTERN_CHANGED"),
        forward: Some("PATTERN_CHANGED"),
    },
    Case {
        name: "format added in draft-07",
        old: r#"{"type": "string"}"#,
        new: r#"{"type": "string", "format": "email"}"#,
        backward: Some("FORMAT_ADDED"),
        forward: OK,
    },
    Case {
        name: "format added in 2020-12 is an annotation",
        old: r#"{"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "string"}"#,
        new: r#"{"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "string", "format": "email"}"#,
        backward: OK,
        forward: OK,
    },
    Case {
        name: "format added to an enum",
        old: r#"{"enum": ["a@b.c", "x"]}"#,
        new: r#"{"enum": ["a@b.c", "x"], "format": "email"}"#,
        backward: Some("FORMAT_ADDED"),
        forward: OK,
    },
    Case {
        name: "contentEncoding added in draft-07",
        old: r#"{"type": "string"}"#,
        new: r#"{"type": "string", "contentEncoding": "base64"}"#,
        backward: Some("CONTENT_ENCODING_CHANGED"),
        forward: OK,
    },
    // --- numbers ---
    Case {
        name: "maximum decreased",
        old: r#"{"type": "number", "maximum": 100}"#,
        new: r#"{"type": "number", "maximum": 50}"#,
        backward: Some("MAXIMUM_DECREASED"),
        forward: OK,
    },
    Case {
        name: "minimum increased",
        old: r#"{"type": "number", "minimum": 0}"#,
        new: r#"{"type": "number", "minimum": 10}"#,
        backward: Some("MINIMUM_INCREASED"),
        forward: OK,
    },
    Case {
        name: "minimum added",
        old: r#"{"type": "number"}"#,
        new: r#"{"type": "number", "minimum": 0}"#,
        backward: Some("MINIMUM_ADDED"),
        forward: OK,
    },
    Case {
        name: "maximum made exclusive",
        old: r#"{"type": "number", "maximum": 10}"#,
        new: r#"{"type": "number", "exclusiveMaximum": 10}"#,
        backward: Some("EXCLUSIVE_MAXIMUM_DECREASED"),
        forward: OK,
    },
    Case {
        name: "exclusive and inclusive integer bounds agree",
        old: r#"{"type": "integer", "exclusiveMaximum": 10, "exclusiveMinimum": 0}"#,
        new: r#"{"type": "integer", "maximum": 9, "minimum": 1}"#,
        backward: OK,
        forward: OK,
    },
    Case {
        name: "draft-04 boolean exclusiveMaximum",
        old: r#"{"$schema": "http://json-schema.org/draft-04/schema#", "type": "number", "maximum": 10}"#,
        new: r#"{"$schema": "http://json-schema.org/draft-04/schema#", "type": "number", "maximum": 10, "exclusiveMaximum": true}"#,
        backward: Some("EXCLUSIVE_MAXIMUM_DECREASED"),
        forward: OK,
    },
    Case {
        name: "multipleOf reduced",
        old: r#"{"type": "number", "multipleOf": 10}"#,
        new: r#"{"type": "number", "multipleOf": 5}"#,
        backward: OK,
        forward: Some("MULTIPLE_OF_EXPANDED"),
    },
    Case {
        name: "multipleOf added",
        old: r#"{"type": "number"}"#,
        new: r#"{"type": "number", "multipleOf": 0.5}"#,
        backward: Some("MULTIPLE_OF_ADDED"),
        forward: OK,
    },
    Case {
        name: "multipleOf changed",
        old: r#"{"type": "number", "multipleOf": 10}"#,
        new: r#"{"type": "number", "multipleOf": 3}"#,
        backward: Some("MULTIPLE_OF_CHANGED"),
        forward: Some("MULTIPLE_OF_CHANGED"),
    },
    Case {
        name: "multipleOf 1 on integers",
        old: r#"{"type": "integer"}"#,
        new: r#"{"type": "integer", "multipleOf": 1}"#,
        backward: OK,
        forward: OK,
    },
    // --- enum and const ---
    Case {
        name: "enum extended",
        old: r#"{"enum": ["a", "b"]}"#,
        new: r#"{"enum": ["a", "b", "c"]}"#,
        backward: OK,
        forward: Some("ENUM_ARRAY_NARROWED"),
    },
    Case {
        name: "enum changed",
        old: r#"{"enum": ["a", "b"]}"#,
        new: r#"{"enum": ["a", "c"]}"#,
        backward: Some("ENUM_ARRAY_CHANGED"),
        forward: Some("ENUM_ARRAY_CHANGED"),
    },
    Case {
        name: "enum added",
        old: r#"{"type": "string"}"#,
        new: r#"{"type": "string", "enum": ["a"]}"#,
        backward: Some("ENUM_ARRAY_NARROWED"),
        forward: OK,
    },
    Case {
        name: "enum removed",
        old: r#"{"type": "string", "enum": ["a"]}"#,
        new: r#"{"type": "string"}"#,
        backward: OK,
        forward: Some("ENUM_ARRAY_NARROWED"),
    },
    Case {
        name: "const changed",
        old: r#"{"const": "a"}"#,
        new: r#"{"const": "b"}"#,
        backward: Some("CONST_CHANGED"),
        forward: Some("CONST_CHANGED"),
    },
    Case {
        name: "const widened to enum",
        old: r#"{"const": "a"}"#,
        new: r#"{"enum": ["a", "b"]}"#,
        backward: OK,
        forward: Some("CONST_CHANGED"),
    },
    Case {
        name: "constraints checked on enum values",
        old: r#"{"enum": ["ab", "abc"]}"#,
        new: r#"{"enum": ["ab", "abc"], "maxLength": 3}"#,
        backward: OK,
        forward: OK,
    },
    Case {
        name: "constraint an enum value breaks",
        old: r#"{"enum": ["ab", "abcd"]}"#,
        new: r#"{"enum": ["ab", "abcd"], "maxLength": 3}"#,
        backward: Some("MAX_LENGTH_DECREASED"),
        forward: OK,
    },
    Case {
        name: "integer enum values against number bounds",
        old: r#"{"type": "integer", "enum": [1, 2, 3]}"#,
        new: r#"{"type": "integer", "minimum": 1, "maximum": 3}"#,
        backward: OK,
        forward: Some("ENUM_ARRAY_NARROWED"),
    },
    // --- arrays ---
    Case {
        name: "items type changed",
        old: r#"{"type": "array", "items": {"type": "string"}}"#,
        new: r#"{"type": "array", "items": {"type": "integer"}}"#,
        backward: Some("TYPE_CHANGED"),
        forward: Some("TYPE_CHANGED"),
    },
    Case {
        name: "items schema added",
        old: r#"{"type": "array"}"#,
        new: r#"{"type": "array", "items": {"type": "string"}}"#,
        backward: Some("TYPE_NARROWED"),
        forward: OK,
    },
    Case {
        name: "minItems added",
        old: r#"{"type": "array"}"#,
        new: r#"{"type": "array", "minItems": 2}"#,
        backward: Some("MIN_ITEMS_ADDED"),
        forward: OK,
    },
    Case {
        name: "maxItems decreased",
        old: r#"{"type": "array", "maxItems": 5}"#,
        new: r#"{"type": "array", "maxItems": 3}"#,
        backward: Some("MAX_ITEMS_DECREASED"),
        forward: OK,
    },
    Case {
        name: "uniqueItems added",
        old: r#"{"type": "array"}"#,
        new: r#"{"type": "array", "uniqueItems": true}"#,
        backward: Some("UNIQUE_ITEMS_ADDED"),
        forward: OK,
    },
    Case {
        name: "item added to closed tuple",
        old: r#"{"type": "array", "items": [{"type": "string"}, {"type": "number"}], "additionalItems": false}"#,
        new: r#"{"type": "array", "items": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}], "additionalItems": false}"#,
        backward: OK,
        forward: Some("ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL"),
    },
    Case {
        name: "item added to open tuple",
        old: r#"{"type": "array", "items": [{"type": "string"}]}"#,
        new: r#"{"type": "array", "items": [{"type": "string"}, {"type": "number"}]}"#,
        backward: Some("ITEM_ADDED_TO_OPEN_CONTENT_MODEL"),
        forward: OK,
    },
    Case {
        name: "item added not covered by additionalItems",
        old: r#"{"type": "array", "items": [{"type": "string"}], "additionalItems": {"type": "string"}}"#,
        new: r#"{"type": "array", "items": [{"type": "string"}, {"type": "number"}], "additionalItems": {"type": "string"}}"#,
        backward: Some("ITEM_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"),
        forward: Some("ITEM_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"),
    },
    Case {
        name: "additionalItems narrowed",
        old: r#"{"type": "array", "items": [{"type": "string"}]}"#,
        new: r#"{"type": "array", "items": [{"type": "string"}], "additionalItems": {"type": "number"}}"#,
        backward: Some("ADDITIONAL_ITEMS_NARROWED"),
        forward: OK,
    },
    Case {
        name: "additionalItems closed",
        old: r#"{"type": "array", "items": [{"type": "string"}], "additionalItems": true}"#,
        new: r#"{"type": "array", "items": [{"type": "string"}], "additionalItems": false}"#,
        backward: Some("ADDITIONAL_ITEMS_REMOVED"),
        forward: OK,
    },
    Case {
        name: "prefixItems added to closed 2020-12 tuple",
        old: r#"{"$schema": "https://json-schema.org/draft/2020-12/schema", "prefixItems": [{"type": "string"}], "items": false}"#,
        new: r#"{"$schema": "https://json-schema.org/draft/2020-12/schema", "prefixItems": [{"type": "string"}, {"type": "integer"}], "items": false}"#,
        backward: OK,
        forward: Some("ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL"),
    },
    Case {
        name: "contains added",
        old: r#"{"type": "array"}"#,
        new: r#"{"type": "array", "contains": {"type": "string"}}"#,
        backward: Some("CONTAINS_ADDED"),
        forward: OK,
    },
    // --- other object keywords ---
    Case {
        name: "maxProperties decreased",
        old: r#"{"maxProperties": 5}"#,
        new: r#"{"maxProperties": 3}"#,
        backward: Some("MAX_PROPERTIES_DECREASED"),
        forward: OK,
    },
    Case {
        name: "minProperties added",
        old: r#"{"type": "object"}"#,
        new: r#"{"type": "object", "minProperties": 1}"#,
        backward: Some("MIN_PROPERTIES_ADDED"),
        forward: OK,
    },
    Case {
        name: "minProperties implied by required",
        old: r#"{"type": "object", "required": ["a", "b"]}"#,
        new: r#"{"type": "object", "required": ["a", "b"], "minProperties": 2}"#,
        backward: OK,
        forward: OK,
    },
    Case {
        name: "dependency array added",
        old: OBJ_AB,
        new: r#"{"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}, "dependencies": {"a": ["b"]}}"#,
        backward: Some("DEPENDENCY_ARRAY_ADDED"),
        forward: OK,
    },
    Case {
        name: "dependentRequired extended",
        old: r#"{"$schema": "https://json-schema.org/draft/2020-12/schema", "dependentRequired": {"a": ["b"]}}"#,
        new: r#"{"$schema": "https://json-schema.org/draft/2020-12/schema", "dependentRequired": {"a": ["b", "c"]}}"#,
        backward: Some("DEPENDENCY_ARRAY_EXTENDED"),
        forward: OK,
    },
    Case {
        name: "dependentSchemas added",
        old: r#"{"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object"}"#,
        new: r#"{"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object", "dependentSchemas": {"a": {"required": ["b"]}}}"#,
        backward: Some("DEPENDENCY_SCHEMA_ADDED"),
        forward: OK,
    },
    Case {
        name: "propertyNames added",
        old: r#"{"type": "object"}"#,
        new: r#"{"type": "object", "propertyNames": {"maxLength": 3}}"#,
        backward: Some("MAX_LENGTH_ADDED"),
        forward: OK,
    },
    Case {
        name: "unevaluatedProperties closed",
        old: r#"{"$schema": "https://json-schema.org/draft/2020-12/schema", "allOf": [{"properties": {"a": {"type": "string"}}}]}"#,
        new: r#"{"$schema": "https://json-schema.org/draft/2020-12/schema", "allOf": [{"properties": {"a": {"type": "string"}}}], "unevaluatedProperties": false}"#,
        backward: Some("UNEVALUATED_PROPERTIES_REMOVED"),
        forward: OK,
    },
    Case {
        name: "unevaluatedProperties: a property the writer declares falls to it",
        old: r#"{"$schema": "https://json-schema.org/draft/2020-12/schema", "properties": {"a": {"type": "string"}}, "additionalProperties": false}"#,
        new: r#"{"$schema": "https://json-schema.org/draft/2020-12/schema", "allOf": [{"properties": {"b": {"type": "string"}}}], "unevaluatedProperties": false}"#,
        backward: Some("UNEVALUATED_PROPERTIES_REMOVED"),
        forward: Some("PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL"),
    },
    Case {
        name: "unevaluatedProperties: property added through allOf",
        old: r#"{"$schema": "https://json-schema.org/draft/2020-12/schema", "allOf": [{"properties": {"a": {"type": "string"}}}], "unevaluatedProperties": false}"#,
        new: r#"{"$schema": "https://json-schema.org/draft/2020-12/schema", "allOf": [{"properties": {"a": {"type": "string"}}}, {"properties": {"b": {"type": "string"}}}], "unevaluatedProperties": false}"#,
        backward: OK,
        forward: Some("UNEVALUATED_PROPERTIES_REMOVED"),
    },
    Case {
        name: "unevaluatedItems closed",
        old: r#"{"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "array"}"#,
        new: r#"{"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "array", "allOf": [{"prefixItems": [{"type": "string"}]}], "unevaluatedItems": false}"#,
        backward: Some("UNEVALUATED_ITEMS_REMOVED"),
        forward: OK,
    },
    Case {
        name: "unevaluatedItems against a closed writer",
        old: r#"{"$schema": "https://json-schema.org/draft/2020-12/schema", "prefixItems": [{"type": "string"}], "items": false}"#,
        new: r#"{"$schema": "https://json-schema.org/draft/2020-12/schema", "allOf": [{"prefixItems": [{"type": "string"}]}], "unevaluatedItems": false}"#,
        backward: OK,
        forward: OK,
    },
    // Shrunk counterexamples the soundness property tests once found.
    Case {
        name: "writer enum value its own maxLength excludes",
        old: r#"{"allOf": [{"type": "string", "maxLength": 0}, {"enum": ["a"]}]}"#,
        new: r#"{"allOf": [{"allOf": [{"type": "string", "maxLength": 0}, {"enum": ["a"]}]}]}"#,
        backward: OK,
        forward: OK,
    },
    Case {
        name: "contains evaluates items for unevaluatedItems",
        old: r#"{"$schema": "https://json-schema.org/draft/2020-12/schema", "allOf": [{"anyOf": [{"contains": {}}]}], "unevaluatedItems": false}"#,
        new: r#"{"$schema": "https://json-schema.org/draft/2020-12/schema", "allOf": [{}], "unevaluatedItems": false}"#,
        backward: Some("UNEVALUATED_ITEMS_REMOVED"),
        forward: Some("COMBINED_TYPE_SUBSCHEMAS_CHANGED"),
    },
    Case {
        name: "nested additionalProperties evaluates everything",
        old: r#"{"$schema": "https://json-schema.org/draft/2020-12/schema", "allOf": [{"additionalProperties": true, "properties": {}}], "unevaluatedProperties": false}"#,
        new: r#"{"$schema": "https://json-schema.org/draft/2020-12/schema", "allOf": [{"properties": {}}], "unevaluatedProperties": false}"#,
        backward: Some("UNEVALUATED_PROPERTIES_REMOVED"),
        forward: OK,
    },
    // --- combined schemas ---
    Case {
        name: "oneOf branch added",
        old: r#"{"oneOf": [{"type": "string"}, {"type": "null"}]}"#,
        new: r#"{"oneOf": [{"type": "string"}, {"type": "null"}, {"type": "integer"}]}"#,
        backward: OK,
        forward: Some("SUM_TYPE_NARROWED"),
    },
    Case {
        name: "oneOf branch changed",
        old: r#"{"oneOf": [{"type": "string"}, {"type": "null"}]}"#,
        new: r#"{"oneOf": [{"type": "integer"}, {"type": "null"}]}"#,
        backward: Some("COMBINED_TYPE_SUBSCHEMAS_CHANGED"),
        forward: Some("COMBINED_TYPE_SUBSCHEMAS_CHANGED"),
    },
    Case {
        name: "oneOf branches reordered",
        old: r#"{"oneOf": [{"type": "string"}, {"type": "null"}]}"#,
        new: r#"{"oneOf": [{"type": "null"}, {"type": "string"}]}"#,
        backward: OK,
        forward: OK,
    },
    Case {
        name: "plain type to oneOf",
        old: r#"{"type": "string"}"#,
        new: r#"{"oneOf": [{"type": "string"}, {"type": "null"}]}"#,
        backward: OK,
        forward: Some("TYPE_CHANGED"),
    },
    Case {
        name: "oneOf to type array",
        old: r#"{"oneOf": [{"type": "string"}, {"type": "null"}]}"#,
        new: r#"{"type": ["string", "null"]}"#,
        backward: OK,
        forward: OK,
    },
    Case {
        name: "oneOf to anyOf",
        old: r#"{"oneOf": [{"type": "string"}, {"type": "integer"}]}"#,
        new: r#"{"anyOf": [{"type": "integer"}, {"type": "string"}]}"#,
        backward: OK,
        forward: OK,
    },
    Case {
        name: "anyOf branch narrowed inside",
        old: r#"{"anyOf": [{"type": "string", "maxLength": 10}, {"type": "null"}]}"#,
        new: r#"{"anyOf": [{"type": "string", "maxLength": 5}, {"type": "null"}]}"#,
        backward: Some("COMBINED_TYPE_SUBSCHEMAS_CHANGED"),
        forward: OK,
    },
    Case {
        name: "allOf constraint added",
        old: r#"{"allOf": [{"type": "object", "properties": {"a": {"type": "string"}}}]}"#,
        new: r#"{"allOf": [{"type": "object", "properties": {"a": {"type": "string"}}}, {"required": ["a"]}]}"#,
        backward: Some("REQUIRED_ATTRIBUTE_ADDED"),
        forward: OK,
    },
    Case {
        name: "allOf subschemas reordered",
        old: r#"{"allOf": [{"type": "string"}, {"enum": ["red"]}]}"#,
        new: r#"{"allOf": [{"enum": ["red", "blue"]}, {"type": "string"}]}"#,
        backward: OK,
        forward: Some("ENUM_ARRAY_NARROWED"),
    },
    Case {
        name: "not narrowed",
        old: r#"{"not": {"type": "number"}}"#,
        new: r#"{"not": {"type": "integer"}}"#,
        backward: OK,
        forward: Some("NOT_TYPE_EXTENDED"),
    },
    Case {
        name: "not added",
        old: r#"{"type": "integer"}"#,
        new: r#"{"type": "integer", "not": {"const": 0}}"#,
        backward: Some("NOT_TYPE_EXTENDED"),
        forward: OK,
    },
    Case {
        name: "not excluding other types",
        old: r#"{"type": "integer"}"#,
        new: r#"{"type": "integer", "not": {"type": "string"}}"#,
        backward: OK,
        forward: OK,
    },
    Case {
        name: "if/then added",
        old: r#"{"type": "object"}"#,
        new: r#"{"type": "object", "if": {"properties": {"kind": {"const": "a"}}}, "then": {"required": ["x"]}}"#,
        backward: Some("CONDITIONAL_SCHEMA_CHANGED"),
        forward: OK,
    },
    // --- combined schemas, as in Confluent's examples ---
    Case {
        name: "allOf duplicates collapse",
        old: r#"{"allOf": [{"type": "string"}, {"type": "string"}]}"#,
        new: r#"{"allOf": [{"type": "string"}]}"#,
        backward: OK,
        forward: OK,
    },
    Case {
        name: "allOf to anyOf with more branches",
        old: r#"{"allOf": [{"type": "string"}]}"#,
        new: r#"{"anyOf": [{"type": "number"}, {"type": "string"}]}"#,
        backward: OK,
        forward: Some("TYPE_CHANGED"),
    },
    Case {
        name: "anyOf narrowed to oneOf",
        old: r#"{"anyOf": [{"type": "number"}, {"type": "string"}]}"#,
        new: r#"{"oneOf": [{"type": "string"}]}"#,
        backward: Some("SUM_TYPE_NARROWED"),
        forward: OK,
    },
    Case {
        name: "allOf of contradictory types",
        old: r#"{"anyOf": [{"type": "string"}]}"#,
        new: r#"{"allOf": [{"type": "number"}, {"type": "string"}]}"#,
        backward: Some("TYPE_CHANGED"),
        forward: OK,
    },
    Case {
        name: "oneOf branch widened inside",
        old: r#"{"oneOf": [{"type": "string", "maxLength": 5}]}"#,
        new: r#"{"oneOf": [{"type": "boolean"}, {"type": "number"}, {"title": "s", "type": "string", "maxLength": 8}]}"#,
        backward: OK,
        forward: Some("SUM_TYPE_NARROWED"),
    },
    // Stricter than Confluent on purpose: without "type", the old schema accepted strings too.
    Case {
        name: "type object added to untyped object schema",
        old: r#"{"properties": {"a": {"type": "string"}}}"#,
        new: r#"{"type": "object", "properties": {"a": {"type": "string"}}}"#,
        backward: Some("TYPE_NARROWED"),
        forward: OK,
    },
    // Keywords a draft does not know constrain nothing, for the validator and the checker.
    Case {
        name: "const is no keyword in draft-04",
        old: r#"{"$schema": "http://json-schema.org/draft-04/schema#", "type": "integer"}"#,
        new: r#"{"$schema": "http://json-schema.org/draft-04/schema#", "type": "integer", "const": 1}"#,
        backward: OK,
        forward: OK,
    },
    Case {
        name: "if is no keyword in draft-06",
        old: r#"{"$schema": "http://json-schema.org/draft-06/schema#", "type": "object"}"#,
        new: r#"{"$schema": "http://json-schema.org/draft-06/schema#", "type": "object", "if": true, "then": {"required": ["a"]}}"#,
        backward: OK,
        forward: OK,
    },
    // As Confluent's Java serializer generates them: closed, nullable fields as oneOf.
    Case {
        name: "serializer schema gains a nullable field",
        old: r#"{"$schema": "http://json-schema.org/draft-07/schema#", "title": "User", "type": "object", "additionalProperties": false, "properties": {"name": {"oneOf": [{"type": "null", "title": "Not included"}, {"type": "string"}]}}}"#,
        new: r#"{"$schema": "http://json-schema.org/draft-07/schema#", "title": "User", "type": "object", "additionalProperties": false, "properties": {"name": {"oneOf": [{"type": "null", "title": "Not included"}, {"type": "string"}]}, "age": {"oneOf": [{"type": "null", "title": "Not included"}, {"type": "integer"}]}}}"#,
        backward: OK,
        forward: Some("PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL"),
    },
    Case {
        name: "serializer schema field made non-nullable",
        old: r#"{"type": "object", "additionalProperties": false, "properties": {"name": {"oneOf": [{"type": "null", "title": "Not included"}, {"type": "string"}]}}}"#,
        new: r#"{"type": "object", "additionalProperties": false, "properties": {"name": {"type": "string"}}}"#,
        backward: Some("TYPE_CHANGED"),
        forward: OK,
    },
    Case {
        name: "serializer schema field type widened",
        old: r#"{"type": "object", "additionalProperties": false, "properties": {"n": {"oneOf": [{"type": "null", "title": "Not included"}, {"type": "integer"}]}}}"#,
        new: r#"{"type": "object", "additionalProperties": false, "properties": {"n": {"oneOf": [{"type": "null", "title": "Not included"}, {"type": "number"}]}}}"#,
        backward: OK,
        forward: Some("COMBINED_TYPE_SUBSCHEMAS_CHANGED"),
    },
    // --- references ---
    Case {
        name: "referenced definition changed",
        old: r##"{"properties": {"a": {"$ref": "#/definitions/x"}}, "definitions": {"x": {"type": "string"}}}"##,
        new: r##"{"properties": {"a": {"$ref": "#/definitions/x"}}, "definitions": {"x": {"type": "integer"}}}"##,
        backward: Some("TYPE_CHANGED"),
        forward: Some("TYPE_CHANGED"),
    },
    Case {
        name: "inlined into a definition",
        old: r#"{"type": "string"}"#,
        new: r##"{"$ref": "#/definitions/s", "definitions": {"s": {"type": "string"}}}"##,
        backward: OK,
        forward: OK,
    },
    Case {
        name: "draft-07 ignores $ref siblings",
        old: r##"{"$ref": "#/definitions/s", "definitions": {"s": {"type": "string"}}}"##,
        new: r##"{"$ref": "#/definitions/s", "maxLength": 3, "definitions": {"s": {"type": "string"}}}"##,
        backward: OK,
        forward: OK,
    },
    Case {
        name: "2020-12 applies $ref siblings",
        old: r##"{"$schema": "https://json-schema.org/draft/2020-12/schema", "$ref": "#/$defs/base", "$defs": {"base": {"type": "object", "properties": {"a": {"type": "string"}}}}}"##,
        new: r##"{"$schema": "https://json-schema.org/draft/2020-12/schema", "$ref": "#/$defs/base", "required": ["a"], "$defs": {"base": {"type": "object", "properties": {"a": {"type": "string"}}}}}"##,
        backward: Some("REQUIRED_ATTRIBUTE_ADDED"),
        forward: OK,
    },
    Case {
        name: "recursive schema unchanged",
        old: r##"{"type": "object", "properties": {"value": {"type": "integer"}, "children": {"type": "array", "items": {"$ref": "#"}}}}"##,
        new: r##"{"type": "object", "properties": {"value": {"type": "integer"}, "children": {"type": "array", "items": {"$ref": "#"}}}}"##,
        backward: OK,
        forward: OK,
    },
    Case {
        name: "recursive schema widened",
        old: r##"{"type": "object", "properties": {"value": {"type": "integer"}, "children": {"type": "array", "items": {"$ref": "#"}}}}"##,
        new: r##"{"type": "object", "properties": {"value": {"type": "number"}, "children": {"type": "array", "items": {"$ref": "#"}}}}"##,
        backward: OK,
        forward: Some("TYPE_NARROWED"),
    },
    Case {
        name: "mutually recursive definitions",
        old: r##"{"$ref": "#/definitions/a", "definitions": {"a": {"properties": {"b": {"$ref": "#/definitions/b"}}}, "b": {"properties": {"a": {"$ref": "#/definitions/a"}, "n": {"type": "string"}}}}}"##,
        new: r##"{"$ref": "#/definitions/a", "definitions": {"a": {"properties": {"b": {"$ref": "#/definitions/b"}}}, "b": {"properties": {"a": {"$ref": "#/definitions/a"}, "n": {"type": "string", "maxLength": 4}}}}}"##,
        backward: Some("MAX_LENGTH_ADDED"),
        forward: OK,
    },
];

#[test]
fn evolution_table() {
    assert!(CASES.len() >= 60, "{} cases", CASES.len());
    for case in CASES {
        check(case);
    }
}

#[test]
fn incompatibilities_name_where_and_what() {
    let old =
        json(r#"{"type": "object", "properties": {"id": {"type": "string", "maxLength": 10}}}"#);
    let new =
        json(r#"{"type": "object", "properties": {"id": {"type": "string", "maxLength": 5}}}"#);
    let reasons = check_compatibility(CompatibilityLevel::Backward, &new, &[&old]);
    assert_eq!(reasons.len(), 1, "{}", describe(&reasons));
    assert_eq!(reasons[0].kind, "MAX_LENGTH_DECREASED");
    assert_eq!(reasons[0].location, "#/properties/id/maxLength");
    assert!(
        reasons[0].message.contains('5') && reasons[0].message.contains("10"),
        "{}",
        reasons[0].message
    );

    let old = json(CLOSED_AB);
    let new = json(CLOSED_A);
    let reasons = check_compatibility(CompatibilityLevel::Backward, &new, &[&old]);
    assert_eq!(reasons.len(), 1, "{}", describe(&reasons));
    assert_eq!(reasons[0].location, "#/properties/b");
    assert!(
        reasons[0].message.contains("\"b\""),
        "{}",
        reasons[0].message
    );

    let reasons = check_compatibility(
        CompatibilityLevel::Backward,
        &json(r#"{"type": "integer"}"#),
        &[&json(r#"{"type": "string"}"#)],
    );
    assert_eq!(reasons[0].location, "#/");
}

#[test]
fn references_are_compared_structurally() {
    let v1 = NamedSchema {
        name: "customer.json".into(),
        text: r#"{"type": "object", "properties": {"id": {"type": "string"}}}"#.into(),
    };
    let v2 = NamedSchema {
        name: "customer.json".into(),
        text: r#"{"type": "object", "properties": {"id": {"type": "integer"}}}"#.into(),
    };
    let order = r#"{"type": "object", "properties": {"customer": {"$ref": "customer.json"}}}"#;
    let old = json_with(order, std::slice::from_ref(&v1));
    let same = json_with(order, std::slice::from_ref(&v1));
    let new = json_with(order, std::slice::from_ref(&v2));
    assert!(check_compatibility(CompatibilityLevel::Full, &same, &[&old]).is_empty());
    let reasons = check_compatibility(CompatibilityLevel::Backward, &new, &[&old]);
    assert!(
        reasons.iter().any(
            |r| r.kind == "TYPE_CHANGED" && r.location == "#/properties/customer/properties/id"
        ),
        "{}",
        describe(&reasons)
    );
    // Inlining the referenced schema is no change.
    let inlined = json(
        r#"{"type": "object", "properties": {"customer": {"type": "object", "properties": {"id": {"type": "string"}}}}}"#,
    );
    assert!(check_compatibility(CompatibilityLevel::Full, &inlined, &[&old]).is_empty());
}

#[test]
fn transitive_levels_check_every_previous_version() {
    // v2 adds a required property with a default (compatible by Confluent's rule); v3 drops
    // the default, which v2's documents meet (v2 requires it) but v1's never do.
    let v1 = json(CLOSED_A);
    let v2 = json(
        r#"{"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string", "default": "x"}}, "required": ["b"], "additionalProperties": false}"#,
    );
    let v3 = json(
        r#"{"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}, "required": ["b"], "additionalProperties": false}"#,
    );
    assert!(check_compatibility(CompatibilityLevel::Backward, &v2, &[&v1]).is_empty());
    assert!(check_compatibility(CompatibilityLevel::Backward, &v3, &[&v1, &v2]).is_empty());
    let reasons = check_compatibility(CompatibilityLevel::BackwardTransitive, &v3, &[&v1, &v2]);
    assert!(
        reasons
            .iter()
            .any(|r| r.kind == "REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL"),
        "{}",
        describe(&reasons)
    );
    assert!(check_compatibility(CompatibilityLevel::None, &v3, &[&v1, &v2]).is_empty());

    // Forward transitive: each old version must read the newest. v2 gives the required `b`
    // a default, so v2 reads v3 (which makes `b` optional); v1 requires `b` without one.
    let r1 =
        json(r#"{"type": "object", "properties": {"b": {"type": "string"}}, "required": ["b"]}"#);
    let r2 = json(
        r#"{"type": "object", "properties": {"b": {"type": "string", "default": "x"}}, "required": ["b"]}"#,
    );
    let r3 = json(r#"{"type": "object", "properties": {"b": {"type": "string"}}}"#);
    assert!(check_compatibility(CompatibilityLevel::Forward, &r2, &[&r1]).is_empty());
    assert!(check_compatibility(CompatibilityLevel::Forward, &r3, &[&r1, &r2]).is_empty());
    let reasons = check_compatibility(CompatibilityLevel::ForwardTransitive, &r3, &[&r1, &r2]);
    assert!(
        reasons.iter().any(|r| r.kind == "REQUIRED_ATTRIBUTE_ADDED"),
        "{}",
        describe(&reasons)
    );

    // FULL_TRANSITIVE: an empty-schema property in an open model changes nothing, both ways.
    let f1 = json(OBJ_A);
    let f2 = json(r#"{"type": "object", "properties": {"a": {"type": "string"}, "note": {}}}"#);
    let f3 = json(
        r#"{"type": "object", "properties": {"a": {"type": "string"}, "note": true, "x": {}}}"#,
    );
    assert!(check_compatibility(CompatibilityLevel::FullTransitive, &f3, &[&f1, &f2]).is_empty());
    let f4 = json(OBJ_AB);
    assert!(
        !check_compatibility(CompatibilityLevel::FullTransitive, &f4, &[&f1, &f2, &f3]).is_empty()
    );
    assert!(!check_compatibility(CompatibilityLevel::Full, &f4, &[&f1, &f2, &f3]).is_empty());
}

#[test]
fn pathological_schemas_terminate() {
    // Many oneOfs multiply into many writer disjuncts; the cap keeps it bounded.
    let branches = r#"{"oneOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}, {"type": "boolean"}]}"#;
    let many = format!(
        r#"{{"allOf": [{b}, {b}, {b}, {b}, {b}, {b}, {b}, {b}]}}"#,
        b = branches
    );
    let s = json(&many);
    assert!(check_compatibility(CompatibilityLevel::Full, &s, &[&s]).is_empty());
    // A self-referencing definition chain.
    let looped = json(
        r##"{"$ref": "#/definitions/a", "definitions": {"a": {"$ref": "#/definitions/b"}, "b": {"anyOf": [{"$ref": "#/definitions/a"}, {"type": "string"}]}}}"##,
    );
    let _ = check_compatibility(CompatibilityLevel::Full, &looped, &[&looped]);
}

#[test]
fn long_reference_chains_are_bounded_not_overflowing() {
    // d0 -> d1 -> … -> d299 through properties: deeper than the checker follows.
    let mut definitions = Vec::new();
    for i in 0..300 {
        definitions.push(format!(
            r##""d{i}": {{"type": "object", "properties": {{"next": {{"$ref": "#/definitions/d{}"}}}}}}"##,
            i + 1
        ));
    }
    definitions.push(r#""d300": {"type": "string"}"#.to_owned());
    let text = format!(
        r##"{{"$ref": "#/definitions/d0", "definitions": {{{}}}}}"##,
        definitions.join(",")
    );
    let s = json(&text);
    // The same schema registered again is compatible without walking it.
    assert!(check_compatibility(CompatibilityLevel::Full, &json(&text), &[&s]).is_empty());
    // A copy that differs only in its last definition must be walked, and is cut off.
    let changed = json(&text.replace(
        r#""d300": {"type": "string"}"#,
        r#""d300": {"type": "integer"}"#,
    ));
    let reasons = check_compatibility(CompatibilityLevel::Backward, &changed, &[&s]);
    assert!(
        reasons.iter().all(|r| r.kind == "SCHEMA_TOO_COMPLEX"),
        "{}",
        describe(&reasons)
    );
    assert!(!reasons.is_empty());
}
