//! JSON Schema parsing, canonical form and payload validation.

use weft_schema::json::JsonSchema;
use weft_schema::{Error, NamedSchema, ParsedSchema, SchemaType};

fn parse(text: &str) -> JsonSchema {
    match JsonSchema::parse(text, &[]) {
        Ok(s) => s,
        Err(e) => panic!("{text} should parse: {e}"),
    }
}

fn named(name: &str, text: &str) -> NamedSchema {
    NamedSchema {
        name: name.to_owned(),
        text: text.to_owned(),
    }
}

fn invalid_message(text: &str, references: &[NamedSchema]) -> String {
    match JsonSchema::parse(text, references) {
        Err(Error::Invalid {
            schema_type: SchemaType::Json,
            message,
        }) => message,
        other => panic!("{text} should be invalid, got {other:?}"),
    }
}

fn unresolved(text: &str, references: &[NamedSchema]) -> String {
    match JsonSchema::parse(text, references) {
        Err(Error::UnresolvedReference {
            schema_type: SchemaType::Json,
            reference,
        }) => reference,
        other => panic!("{text} should have an unresolved reference, got {other:?}"),
    }
}

#[test]
fn malformed_json_is_invalid() {
    let message = invalid_message(r#"{"type": "object""#, &[]);
    assert!(message.contains("not JSON"), "{message}");
    let message = invalid_message("", &[]);
    assert!(message.contains("not JSON"), "{message}");
}

#[test]
fn schema_breaking_its_meta_schema_is_invalid() {
    for (text, pointer) in [
        (r#"{"type": 5}"#, "/type"),
        (r#"{"type": "strung"}"#, "/type"),
        (
            r#"{"properties": {"a": {"minLength": -1}}}"#,
            "/properties/a/minLength",
        ),
        (
            r#"{"$schema": "http://json-schema.org/draft-04/schema#", "exclusiveMaximum": 5}"#,
            "/exclusiveMaximum",
        ),
        (
            r#"{"$schema": "https://json-schema.org/draft/2020-12/schema", "required": "a"}"#,
            "/required",
        ),
    ] {
        let message = invalid_message(text, &[]);
        assert!(message.contains("meta-schema"), "{text}: {message}");
        assert!(message.contains(pointer), "{text}: {message}");
    }
    // A JSON value that is not a schema at all.
    let message = invalid_message("[1, 2]", &[]);
    assert!(message.contains("object or a boolean"), "{message}");
}

#[test]
fn every_supported_draft_parses() {
    for uri in [
        "http://json-schema.org/draft-04/schema#",
        "http://json-schema.org/draft-06/schema#",
        "http://json-schema.org/draft-07/schema#",
        "https://json-schema.org/draft/2019-09/schema",
        "https://json-schema.org/draft/2020-12/schema",
    ] {
        let schema = parse(&format!(
            r#"{{"$schema": "{uri}", "type": "object", "properties": {{"n": {{"type": "integer"}}}}}}"#
        ));
        assert!(schema.validate(br#"{"n": 1}"#).is_ok(), "{uri}");
        assert!(schema.validate(br#"{"n": "x"}"#).is_err(), "{uri}");
    }
}

#[test]
fn draft_specific_keywords_follow_the_declared_draft() {
    // Draft-04 boolean exclusiveMaximum.
    let d4 = parse(
        r#"{"$schema": "http://json-schema.org/draft-04/schema#", "maximum": 10, "exclusiveMaximum": true}"#,
    );
    assert!(d4.validate(b"9").is_ok());
    assert!(d4.validate(b"10").is_err());
    // 2020-12 prefixItems with items as the rest.
    let d2020 = parse(
        r#"{"$schema": "https://json-schema.org/draft/2020-12/schema", "prefixItems": [{"type": "string"}], "items": {"type": "integer"}}"#,
    );
    assert!(d2020.validate(br#"["a", 1, 2]"#).is_ok());
    assert!(d2020.validate(br#"["a", "b"]"#).is_err());
    // From 2019-09 on, format is an annotation (the compatibility checker agrees).
    let d2019 = parse(
        r#"{"$schema": "https://json-schema.org/draft/2019-09/schema", "type": "string", "format": "date"}"#,
    );
    assert!(d2019.validate(br#""yesterday""#).is_ok());
    // Without $schema it is draft-07: format is asserted.
    let d7 = parse(r#"{"type": "string", "format": "date"}"#);
    assert!(d7.validate(br#""2024-02-29""#).is_ok());
    assert!(d7.validate(br#""yesterday""#).is_err());
}

#[test]
fn unknown_meta_schema_is_read_as_draft_07() {
    let schema = parse(
        r#"{"$schema": "https://example.com/my-dialect", "type": "object", "required": ["a"]}"#,
    );
    assert!(schema.validate(br#"{"a": 1}"#).is_ok());
    assert!(schema.validate(br#"{}"#).is_err());
    // The $schema stays part of the stored text.
    assert!(schema.canonical().contains("my-dialect"));
}

#[test]
fn boolean_schemas() {
    let anything = parse("true");
    assert!(anything.validate(br#"{"x": [1, null]}"#).is_ok());
    let nothing = parse("false");
    assert!(nothing.validate(b"1").is_err());
}

#[test]
fn unresolvable_refs_are_refused() {
    let reference = unresolved(r#"{"$ref": "customer.json"}"#, &[]);
    assert!(reference.contains("customer.json"), "{reference}");
    let reference = unresolved(
        r#"{"properties": {"a": {"$ref": "https://example.com/schemas/a.json"}}}"#,
        &[],
    );
    assert!(
        reference.contains("https://example.com/schemas/a.json"),
        "{reference}"
    );
    // Internal refs must resolve too.
    let reference = unresolved(
        r##"{"properties": {"a": {"$ref": "#/definitions/missing"}}, "definitions": {}}"##,
        &[],
    );
    assert_eq!(reference, "#/definitions/missing");
    // A reference under another name does not satisfy it.
    unresolved(
        r#"{"$ref": "customer.json"}"#,
        &[named("client.json", r#"{"type": "object"}"#)],
    );
}

#[test]
fn references_resolve_across_schemas() {
    let customer = named(
        "customer.json",
        r#"{"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}"#,
    );
    let order = JsonSchema::parse(
        r#"{"type": "object", "properties": {"customer": {"$ref": "customer.json"}}}"#,
        std::slice::from_ref(&customer),
    )
    .expect("order with its customer reference");
    assert!(order.validate(br#"{"customer": {"id": 7}}"#).is_ok());
    let error = order
        .validate(br#"{"customer": {"id": "seven"}}"#)
        .expect_err("id must be an integer");
    assert!(error.contains("/customer/id"), "{error}");

    // Relative names resolve against the root's $id, as Confluent registers them.
    let with_id = JsonSchema::parse(
        r#"{"$id": "https://example.com/order.json", "properties": {"customer": {"$ref": "customer.json"}}}"#,
        std::slice::from_ref(&customer),
    )
    .expect("relative reference under an $id");
    assert!(with_id.validate(br#"{"customer": {}}"#).is_err());

    // A fragment into a referenced document, and a reference of a reference.
    let defs = named(
        "defs.json",
        r##"{"definitions": {"id": {"$ref": "ids.json"}}}"##,
    );
    let ids = named("ids.json", r#"{"type": "string", "pattern": "^[a-z]+$"}"#);
    let schema = JsonSchema::parse(
        r##"{"properties": {"id": {"$ref": "defs.json#/definitions/id"}}}"##,
        &[ids, defs],
    )
    .expect("fragment reference");
    assert!(schema.validate(br#"{"id": "abc"}"#).is_ok());
    assert!(schema.validate(br#"{"id": "ABC"}"#).is_err());
}

#[test]
fn bad_references_are_invalid() {
    let message = invalid_message(r#"{"$ref": "a.json"}"#, &[named("a.json", "{not json")]);
    assert!(
        message.contains("a.json") && message.contains("not JSON"),
        "{message}"
    );
    let message = invalid_message(
        r#"{"$ref": "a.json"}"#,
        &[named("a.json", r#"{"type": 5}"#)],
    );
    assert!(
        message.contains("a.json") && message.contains("meta-schema"),
        "{message}"
    );
}

#[test]
fn canonical_form_ignores_formatting_and_key_order() {
    let cases = [
        (
            r#"{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"integer"}}}"#,
            "{\n  \"properties\": {\n    \"b\": {\"type\": \"integer\"},\n    \"a\": {\"type\": \"string\"}\n  },\n  \"type\": \"object\"\n}",
        ),
        (
            r#"{"enum":[1,2,3],"title":"x"}"#,
            r#"  {"title" : "x" , "enum" : [ 1 , 2 , 3 ] }  "#,
        ),
        ("true", " true "),
    ];
    for (a, b) in cases {
        assert_eq!(parse(a).canonical(), parse(b).canonical(), "{a} vs {b}");
    }
    assert_eq!(
        parse(r#"{"type": "object", "additionalProperties": false}"#).canonical(),
        r#"{"additionalProperties":false,"type":"object"}"#
    );
    // Array order is meaningful and kept.
    assert_ne!(
        parse(r#"{"enum": ["a", "b"]}"#).canonical(),
        parse(r#"{"enum": ["b", "a"]}"#).canonical()
    );
    assert_ne!(
        parse(r#"{"type": "string"}"#).canonical(),
        parse(r#"{"type": "string", "maxLength": 3}"#).canonical()
    );
}

#[test]
fn normalized_form_sorts_sets_in_schema_positions_only() {
    let a = parse(
        r#"{"type": ["string", "null"], "required": ["b", "a"], "properties": {"x": {"required": ["z", "y"]}}}"#,
    );
    let b = parse(
        r#"{"required": ["a", "b"], "type": ["null", "string"], "properties": {"x": {"required": ["y", "z"]}}}"#,
    );
    assert_ne!(a.canonical(), b.canonical());
    assert_eq!(a.normalized(), b.normalized());
    // Data positions keep their order.
    let c = parse(r#"{"const": {"required": ["b", "a"]}, "enum": [{"required": ["b", "a"]}]}"#);
    assert!(
        c.normalized().contains(r#"["b","a"]"#),
        "{}",
        c.normalized()
    );
    assert_eq!(
        parse(r#"{"enum": ["b", "a"]}"#).normalized(),
        r#"{"enum":["b","a"]}"#
    );
}

#[test]
fn validate_accepts_and_refuses_with_readable_errors() {
    let schema = parse(
        r#"{"type": "object",
            "properties": {"id": {"type": "integer"}, "name": {"type": "string", "maxLength": 3},
                           "tags": {"type": "array", "items": {"type": "string"}}},
            "required": ["id"], "additionalProperties": false}"#,
    );
    assert!(
        schema
            .validate(br#"{"id": 1, "name": "abc", "tags": ["x"]}"#)
            .is_ok()
    );

    let error = schema
        .validate(br#"{"name": "abcd"}"#)
        .expect_err("two errors");
    assert!(error.contains("\"id\" is a required property"), "{error}");
    assert!(error.contains("\"/name\""), "{error}");

    let error = schema
        .validate(br#"{"id": 1, "tags": [1, 2, 3, 4, 5], "extra": true}"#)
        .expect_err("many errors");
    assert!(error.contains("/tags/0"), "{error}");
    assert!(error.contains("more"), "{error}");

    let error = schema.validate(b"{\"id\": 1").expect_err("not JSON");
    assert!(error.contains("not JSON"), "{error}");
    let error = schema.validate(b"\xff").expect_err("not UTF-8 JSON");
    assert!(error.contains("not JSON"), "{error}");
    let error = schema.validate(b"[]").expect_err("wrong type at the root");
    assert!(error.contains("the root"), "{error}");
}

#[test]
fn deeply_nested_payloads_are_refused_not_overflowing() {
    let schema = parse(r##"{"items": {"$ref": "#"}}"##);
    let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    assert!(schema.validate(nested(100).as_bytes()).is_ok());
    assert!(
        schema
            .validate(nested(weft_schema::json::MAX_DEPTH).as_bytes())
            .is_ok()
    );
    let error = schema
        .validate(nested(weft_schema::json::MAX_DEPTH + 1).as_bytes())
        .expect_err("too deep");
    assert!(error.contains("nested deeper than 127"), "{error}");
    assert!(schema.validate(nested(100_000).as_bytes()).is_err());
}

#[test]
fn parsed_schema_dispatches_to_json() {
    let schema =
        ParsedSchema::parse(SchemaType::Json, r#"{"type": "integer"}"#, &[]).expect("json schema");
    assert_eq!(schema.schema_type(), SchemaType::Json);
    assert_eq!(schema.canonical(), r#"{"type":"integer"}"#);
    assert!(schema.validate(b"42", &[]).is_ok());
    assert!(schema.validate(b"4.2", &[]).is_err());
}

#[test]
fn refs_in_unused_definitions_must_resolve_too() {
    unresolved(
        r#"{"type": "string", "definitions": {"unused": {"$ref": "elsewhere.json"}}}"#,
        &[],
    );
}

#[test]
fn schemas_are_shared_across_threads() {
    fn shared<T: Send + Sync + Clone + 'static>() {}
    shared::<JsonSchema>();
    shared::<ParsedSchema>();
    let schema = parse(r#"{"type": "integer"}"#);
    let copy = schema.clone();
    let handle = std::thread::spawn(move || copy.validate(b"1").is_ok());
    assert!(handle.join().expect("validation thread"));
    assert!(schema.validate(b"\"1\"").is_err());
}
