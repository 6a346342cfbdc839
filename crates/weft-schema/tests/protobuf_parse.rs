//! Parsing Protobuf schemas: `.proto` text and the base64 descriptors Confluent's Python
//! client registers, references, bundled imports, the canonical and normalized texts, the
//! message-index API, and every kind of bad input.
//!
//! `protobuf_fixtures/*.b64` and `builtins.txt` are what the Python client
//! (confluent-kafka's ProtobufSerializer, protoc-generated descriptors) sends; `gen.py`
//! there regenerates them.

use weft_schema::protobuf::{ProtobufSchema, builtin_source};
use weft_schema::{Error, NamedSchema, ParsedSchema, SchemaType};

const COMMON: &str = include_str!("protobuf_fixtures/common.proto");
const COMMON_B64: &str = include_str!("protobuf_fixtures/common.b64");
const SHOP: &str = include_str!("protobuf_fixtures/shop.proto");
const SHOP_B64: &str = include_str!("protobuf_fixtures/shop.b64");
const LEGACY: &str = include_str!("protobuf_fixtures/legacy.proto");
const LEGACY_B64: &str = include_str!("protobuf_fixtures/legacy.b64");
const BUILTINS: &str = include_str!("protobuf_fixtures/builtins.txt");

fn named(name: &str, text: &str) -> NamedSchema {
    NamedSchema {
        name: name.to_owned(),
        text: text.to_owned(),
    }
}

fn parse(text: &str, refs: &[NamedSchema]) -> ProtobufSchema {
    ProtobufSchema::parse(text, refs).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn python_client_descriptors_equal_their_source() {
    let from_text = parse(SHOP, &[named("common.proto", COMMON)]);
    let forms = [
        (SHOP_B64, COMMON_B64),
        (SHOP_B64, COMMON),
        (SHOP, COMMON_B64),
    ];
    for (root, reference) in forms {
        let other = parse(root, &[named("common.proto", reference)]);
        assert_eq!(other.canonical(), from_text.canonical());
        assert_eq!(other.normalized(), from_text.normalized());
    }
    let legacy = parse(LEGACY, &[]);
    assert_eq!(parse(LEGACY_B64, &[]).canonical(), legacy.canonical());
}

#[test]
fn canonical_of_the_fixture() {
    // The printer's output in full, once: every construct the fixture uses.
    let shop = parse(SHOP, &[named("common.proto", COMMON)]);
    let expected = r#"syntax = "proto3";
package shop.v1;

import "common.proto";
import "google/protobuf/timestamp.proto";
import "confluent/meta.proto";

option java_package = "com.example.shop";
option java_multiple_files = true;

message Order {
  option (confluent.message_meta) = { doc:"an order",tags:["pii"] };
  reserved 4, 20 to 29;
  reserved "legacy_total";
  string id = 1 [json_name = "orderId", (confluent.field_meta) = { doc:"order id" }];
  repeated .shop.v1.Order.Line lines = 2;
  .common.Money total = 3;
  map<string, string> labels = 5;
  optional int32 priority = 6;
  oneof payment {
    string card_token = 7;
    .shop.v1.Order.Invoice invoice = 8;
  }
  .google.protobuf.Timestamp placed_at = 9;
  repeated int64 coupons = 10 [packed = false];
  .shop.v1.Order.Status status = 11;
  message Line {
    string sku = 1;
    uint32 quantity = 2;
    .common.Money price = 3;
  }
  message Invoice {
    string number = 1;
  }
  enum Status {
    STATUS_UNSPECIFIED = 0;
    PLACED = 1;
    SHIPPED = 2 [deprecated = true];
  }
}

message OrderCancelled {
  string order_id = 1;
  string reason = 2;
}
"#;
    assert_eq!(shop.canonical(), expected);

    let legacy = parse(LEGACY, &[]);
    let expected = r#"syntax = "proto2";
package legacy;

message Event {
  required string id = 1;
  optional int32 attempts = 2 [default = 3];
  optional string source = 3 [default = "unknown \"src\""];
  optional bytes tag = 4 [default = "\001\377"];
  repeated int32 codes = 5 [packed = true];
  optional group Detail = 6 {
    optional string text = 1;
  }
  optional .legacy.Event.Kind kind = 7 [default = B];
  extensions 100 to 199;
  enum Kind {
    A = 1;
    B = 2;
  }
}

extend .legacy.Event {
  optional string note = 100;
}
"#;
    assert_eq!(legacy.canonical(), expected);
}

#[test]
fn canonical_text_parses_back_to_itself() {
    for (text, refs) in [
        (SHOP, vec![named("common.proto", COMMON)]),
        (LEGACY, vec![]),
        (COMMON, vec![]),
    ] {
        let first = parse(text, &refs);
        let again = parse(&first.canonical(), &refs);
        assert_eq!(again.canonical(), first.canonical());
        let normalized = parse(&first.normalized(), &refs);
        assert_eq!(normalized.normalized(), first.normalized());
    }
}

#[test]
fn canonical_ignores_whitespace_comments_and_how_names_are_spelled() {
    let variants = [
        r#"syntax = "proto3"; package p.q; message A { B b = 1; repeated A.In ins = 2; message In { int32 x = 1; } } message B { string s = 1; }"#,
        "// leading comment\nsyntax=\"proto3\";\n\npackage p.q;\n/* block\n comment */\nmessage A {\n    .p.q.B b = 1;   // trailing\n    repeated In ins = 2;\n    message In {\n        int32 x = 1;\n    }\n}\nmessage B {\n    string s = 1;\n}\n",
        r#"syntax = 'proto3'; package p.q; message A { q.B b = 1; repeated p.q.A.In ins = 2; message In { int32 x = 1 [json_name = "x"]; } } message B { string s = 1; }"#,
    ];
    let canonical: Vec<String> = variants.iter().map(|v| parse(v, &[]).canonical()).collect();
    assert!(canonical.windows(2).all(|w| w[0] == w[1]), "{canonical:#?}");

    // A real difference is not normalized away.
    let different = parse(
        r#"syntax = "proto3"; package p.q; message A { B b = 1; repeated A.In ins = 3; message In { int32 x = 1; } } message B { string s = 1; }"#,
        &[],
    );
    assert_ne!(different.canonical(), canonical[0]);
}

#[test]
fn normalized_sorts_imports_and_options() {
    let a = parse(
        r#"syntax = "proto3"; package n; import "google/type/date.proto"; import "confluent/meta.proto";
        option java_package = "x"; option go_package = "y";
        message M { string s = 1 [deprecated = true, (confluent.field_meta).doc = "d"]; google.type.Date d = 2; }"#,
        &[],
    );
    let b = parse(
        r#"syntax = "proto3"; package n; import "confluent/meta.proto"; import "google/type/date.proto";
        option go_package = "y"; option java_package = "x";
        message M { string s = 1 [(confluent.field_meta).doc = "d", deprecated = true]; google.type.Date d = 2; }"#,
        &[],
    );
    assert_eq!(a.normalized(), b.normalized());
    // Canonical keeps the declared import order: those two are different texts there.
    assert_ne!(a.canonical(), b.canonical());
    let normalized = a.normalized();
    let meta = normalized.find("import \"confluent/meta.proto\"");
    let date = normalized.find("import \"google/type/date.proto\"");
    assert!(meta < date, "{normalized}");
    let go = normalized.find("option go_package");
    let java = normalized.find("option java_package");
    assert!(go < java, "{normalized}");
}

#[test]
fn builtin_imports_match_what_clients_carry() {
    let mut checked = 0;
    for line in BUILTINS.lines() {
        let (name, b64) = line.split_once(' ').expect("name and base64");
        let source = builtin_source(name).unwrap_or_else(|| panic!("{name} is not bundled"));
        // File options (java_package, go_package, …) are for code generators; the bundled
        // copies leave them out.
        let strip = |s: String| -> String {
            s.lines()
                .filter(|l| !l.starts_with("option ") && !l.is_empty())
                .collect::<Vec<_>>()
                .join("\n")
        };
        let client = parse(b64, &[]);
        let ours = parse(source, &[]);
        assert_eq!(strip(ours.canonical()), strip(client.canonical()), "{name}");
        checked += 1;
    }
    assert_eq!(checked, 17);
}

#[test]
fn builtin_imports_resolve_without_references() {
    let schema = parse(
        r#"syntax = "proto3"; package b;
        import "google/protobuf/timestamp.proto"; import "google/protobuf/struct.proto";
        import "google/type/money.proto"; import "confluent/type/decimal.proto";
        import "confluent/types/decimal.proto"; import "confluent/meta.proto";
        message M {
          google.protobuf.Timestamp at = 1; google.protobuf.Struct extra = 2;
          google.type.Money price = 3 [(confluent.field_meta) = { doc: "the price" }];
          confluent.type.Decimal amount = 4;
        }"#,
        &[],
    );
    assert_eq!(
        schema.dependencies(),
        vec![
            "google/protobuf/timestamp.proto",
            "google/protobuf/struct.proto",
            "google/type/money.proto",
            "confluent/type/decimal.proto",
            "confluent/types/decimal.proto",
            "confluent/meta.proto",
        ]
    );
}

#[test]
fn a_reference_takes_precedence_over_a_bundled_file() {
    let own_date = named(
        "google/type/date.proto",
        r#"syntax = "proto3"; package google.type; message Date { string iso = 1; }"#,
    );
    let text = r#"syntax = "proto3"; import "google/type/date.proto"; message M { google.type.Date d = 1; }"#;
    let with_ref = parse(text, &[own_date]);
    let without = parse(text, &[]);
    // Same text, but the reference's Date is what a payload is checked against.
    let mut payload = vec![0x0a, 0x05, 0x0a, 0x03];
    payload.extend_from_slice(b"abc");
    assert!(with_ref.validate(&payload, &[]).is_ok());
    assert!(without.validate(&payload, &[]).is_err());
}

#[test]
fn references_may_chain_and_be_base64() {
    let base = named(
        "base.proto",
        r#"syntax = "proto3"; package base; message Id { string v = 1; }"#,
    );
    let mid = named(
        "dir/mid.proto",
        r#"syntax = "proto3"; package mid; import "base.proto"; message Ref { base.Id id = 1; }"#,
    );
    let root =
        r#"syntax = "proto3"; package top; import "dir/mid.proto"; message Top { mid.Ref r = 1; }"#;
    let schema = parse(root, &[base.clone(), mid]);
    assert_eq!(schema.dependencies(), vec!["dir/mid.proto"]);
    assert_eq!(schema.message_names(), vec!["top.Top"]);

    // A reference that is itself a Python-client descriptor.
    let schema = parse(
        r#"syntax = "proto3"; import "common.proto"; message P { common.Money m = 1; }"#,
        &[named("common.proto", COMMON_B64)],
    );
    assert!(schema.canonical().contains(".common.Money m = 1;"));
}

#[test]
fn message_index_api() {
    let schema = parse(
        r#"syntax = "proto3"; package x;
        message A {
          map<string, int32> counts = 1;
          message B { message C { int32 z = 1; } }
          message D { }
        }
        enum E { Z = 0; }
        message F { }"#,
        &[],
    );
    assert_eq!(
        schema.message_names(),
        vec!["x.A", "x.A.B", "x.A.B.C", "x.A.D", "x.F"]
    );
    // Map entries do not count (as Confluent's Java serializer counts).
    for (name, indexes) in [
        ("x.A", vec![0]),
        ("x.A.B", vec![0, 0]),
        ("x.A.B.C", vec![0, 0, 0]),
        ("x.A.D", vec![0, 1]),
        ("x.F", vec![1]),
    ] {
        assert_eq!(
            schema.message_index_of(name),
            Some(indexes.clone()),
            "{name}"
        );
        assert_eq!(schema.message_name_at(&indexes).as_deref(), Ok(name));
    }
    assert_eq!(schema.message_name_at(&[]).as_deref(), Ok("x.A"));
    assert_eq!(schema.message_index_of("x.E"), None);
    assert_eq!(schema.message_index_of("x.A.CountsEntry"), None);
    assert_eq!(schema.message_index_of("nope"), None);
    for bad in [vec![2], vec![0, 2], vec![0, 0, 0, 0], vec![-1]] {
        let err = schema.message_name_at(&bad).expect_err("refused");
        assert!(err.contains("out of range"), "{bad:?}: {err}");
    }
    assert_eq!(schema.package(), "x");
}

#[test]
fn descriptor_base64_round_trips_with_custom_options() {
    let shop = parse(SHOP, &[named("common.proto", COMMON)]);
    let serialized = shop.to_descriptor_base64();
    let back = parse(&serialized, &[named("common.proto", COMMON)]);
    assert_eq!(back.canonical(), shop.canonical());
    assert!(
        back.canonical()
            .contains("(confluent.field_meta) = { doc:\"order id\" }")
    );
}

#[test]
fn parsed_schema_dispatches_to_protobuf() {
    let parsed = ParsedSchema::parse(SchemaType::Protobuf, COMMON, &[]).expect("parses");
    assert_eq!(parsed.schema_type(), SchemaType::Protobuf);
    assert_eq!(parsed.canonical(), parse(COMMON, &[]).canonical());
    assert!(parsed.validate(&[0x08, 0x01], &[0]).is_ok());
}

fn invalid_message(result: weft_schema::Result<ProtobufSchema>) -> String {
    match result {
        Err(Error::Invalid {
            schema_type: SchemaType::Protobuf,
            message,
        }) => message,
        other => panic!("expected Error::Invalid, got {other:?}"),
    }
}

#[test]
fn bad_schemas_are_invalid_with_a_location() {
    let cases: &[(&str, &[NamedSchema], &str)] = &[
        (
            "syntax = \"proto3\";\nmessage A {\n  int32 a = 1\n}\n",
            &[],
            "line 4, column 1",
        ),
        ("syntax = \"proto4\"; message A {}", &[], "proto4"),
        (
            "syntax = \"proto3\";\nmessage A {\n  Missing m = 1;\n}",
            &[],
            "'Missing' is not defined",
        ),
        (
            r#"syntax = "proto3"; message A { int32 a = 1; string b = 1; }"#,
            &[],
            "number",
        ),
        (
            r#"syntax = "proto3"; message A { reserved 2; int32 a = 2; }"#,
            &[],
            "reserved",
        ),
        (
            r#"syntax = "proto3"; message A { required int32 a = 1; }"#,
            &[],
            "required",
        ),
        (r#"syntax = "proto3"; enum E { A = 1; }"#, &[], "must be 0"),
        ("", &[], "empty"),
        ("   \n\t ", &[], "empty"),
        ("AAAA", &[], "base64"),
        ("!!!not proto!!!", &[], "line 1, column 1"),
    ];
    for (text, refs, needle) in cases {
        let message = invalid_message(ProtobufSchema::parse(text, refs));
        assert!(
            message.to_lowercase().contains(&needle.to_lowercase()),
            "{text:?}: {message}"
        );
    }
}

#[test]
fn bad_references_are_invalid_and_named() {
    let broken = named("broken.proto", "syntax = \"proto3\";\nmessage B {\n");
    let message = invalid_message(ProtobufSchema::parse(
        r#"syntax = "proto3"; import "broken.proto"; message A {}"#,
        &[broken],
    ));
    assert!(message.contains("broken.proto"), "{message}");

    let a = named(
        "a.proto",
        r#"syntax = "proto3"; import "b.proto"; message A {}"#,
    );
    let b = named(
        "b.proto",
        r#"syntax = "proto3"; import "a.proto"; message B {}"#,
    );
    let message = invalid_message(ProtobufSchema::parse(
        r#"syntax = "proto3"; import "a.proto"; message R {}"#,
        &[a, b],
    ));
    assert!(message.contains("cycle"), "{message}");

    let message = invalid_message(ProtobufSchema::parse(
        r#"syntax = "proto3"; import "x.proto"; message R {}"#,
        &[named("x.proto", "QUJD")],
    ));
    assert!(message.contains("reference \"x.proto\""), "{message}");

    let message = invalid_message(ProtobufSchema::parse(
        "message R {}",
        &[named("<schema>.proto", "message X {}")],
    ));
    assert!(message.contains("may not be named"), "{message}");
}

#[test]
fn unresolved_imports_name_the_missing_file() {
    let direct = ProtobufSchema::parse(
        r#"syntax = "proto3"; import "missing.proto"; message A {}"#,
        &[],
    );
    assert_eq!(
        direct.expect_err("refused"),
        Error::UnresolvedReference {
            schema_type: SchemaType::Protobuf,
            reference: "missing.proto".to_owned()
        }
    );
    // Missing one level down, in a reference.
    let nested = ProtobufSchema::parse(
        r#"syntax = "proto3"; import "mid.proto"; message A {}"#,
        &[named(
            "mid.proto",
            r#"syntax = "proto3"; import "deeper.proto"; message M {}"#,
        )],
    );
    assert_eq!(
        nested.expect_err("refused"),
        Error::UnresolvedReference {
            schema_type: SchemaType::Protobuf,
            reference: "deeper.proto".to_owned()
        }
    );
    // A base64 schema whose dependency is not handed in.
    let b64 = ProtobufSchema::parse(SHOP_B64, &[]);
    assert_eq!(
        b64.expect_err("refused"),
        Error::UnresolvedReference {
            schema_type: SchemaType::Protobuf,
            reference: "common.proto".to_owned()
        }
    );
}

#[test]
fn editions_descriptors_are_refused_clearly() {
    use base64::Engine;
    use prost::Message;
    let descriptor = prost_types::FileDescriptorProto {
        name: Some("e.proto".into()),
        syntax: Some("editions".into()),
        message_type: vec![prost_types::DescriptorProto {
            name: Some("E".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    let b64 = base64::engine::general_purpose::STANDARD.encode(descriptor.encode_to_vec());
    let message = invalid_message(ProtobufSchema::parse(&b64, &[]));
    assert!(message.contains("editions"), "{message}");
    // The same descriptor as proto3 is fine.
    let descriptor = prost_types::FileDescriptorProto {
        syntax: Some("proto3".into()),
        ..descriptor
    };
    let b64 = base64::engine::general_purpose::STANDARD.encode(descriptor.encode_to_vec());
    assert_eq!(parse(&b64, &[]).message_names(), vec!["E"]);
}

#[test]
fn schemas_are_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<ProtobufSchema>();
    let shop = parse(SHOP, &[named("common.proto", COMMON)]);
    let copy = shop.clone();
    let handle = std::thread::spawn(move || copy.canonical());
    assert_eq!(handle.join().expect("joins"), shop.canonical());
}
