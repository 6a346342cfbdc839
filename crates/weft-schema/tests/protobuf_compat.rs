//! Protobuf schema evolution, one case per row: the old and new schema and the verdict
//! under BACKWARD (the new schema reads what the old one wrote) and FORWARD (the old one
//! reads what the new one writes). `OK` means compatible; otherwise the difference kind
//! that must be among the reasons.

use weft_schema::{
    CompatibilityLevel, Incompatibility, NamedSchema, ParsedSchema, SchemaType, check_compatibility,
};

const OK: &str = "";

struct Case {
    name: &'static str,
    old: &'static str,
    new: &'static str,
    backward: &'static str,
    forward: &'static str,
}

const fn case(
    name: &'static str,
    old: &'static str,
    new: &'static str,
    backward: &'static str,
    forward: &'static str,
) -> Case {
    Case {
        name,
        old,
        new,
        backward,
        forward,
    }
}

fn parse(text: &str, refs: &[(&str, &str)]) -> ParsedSchema {
    let refs: Vec<NamedSchema> = refs
        .iter()
        .map(|(name, text)| NamedSchema {
            name: (*name).to_owned(),
            text: (*text).to_owned(),
        })
        .collect();
    ParsedSchema::parse(SchemaType::Protobuf, text, &refs)
        .unwrap_or_else(|e| panic!("schema does not parse: {e}\n{text}"))
}

fn expect(
    name: &str,
    level: CompatibilityLevel,
    reasons: &[Incompatibility],
    expected: &str,
    failures: &mut Vec<String>,
) {
    let ok = if expected.is_empty() {
        reasons.is_empty()
    } else {
        reasons.iter().any(|r| r.kind == expected)
    };
    if !ok {
        let got: Vec<String> = reasons.iter().map(ToString::to_string).collect();
        failures.push(format!(
            "{name} under {level}: expected {}, got {got:#?}",
            if expected.is_empty() {
                "compatible"
            } else {
                expected
            }
        ));
    }
    // Every reason is readable and located.
    for r in reasons {
        assert!(!r.message.is_empty() && r.location.starts_with("#/"), "{r}");
        assert!(
            r.kind.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
            "{r}"
        );
    }
}

fn run(cases: &[Case], old_refs: &[(&str, &str)], new_refs: &[(&str, &str)]) {
    let mut failures = Vec::new();
    for c in cases {
        let old = parse(c.old, old_refs);
        let new = parse(c.new, new_refs);
        let backward = check_compatibility(CompatibilityLevel::Backward, &new, &[&old]);
        expect(
            c.name,
            CompatibilityLevel::Backward,
            &backward,
            c.backward,
            &mut failures,
        );
        let forward = check_compatibility(CompatibilityLevel::Forward, &new, &[&old]);
        expect(
            c.name,
            CompatibilityLevel::Forward,
            &forward,
            c.forward,
            &mut failures,
        );
        // FULL is both directions.
        let full = check_compatibility(CompatibilityLevel::Full, &new, &[&old]);
        assert_eq!(
            full.is_empty(),
            backward.is_empty() && forward.is_empty(),
            "{}: FULL disagrees with BACKWARD + FORWARD",
            c.name
        );
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

const SCALAR: &str = "FIELD_SCALAR_KIND_CHANGED";
const KIND: &str = "FIELD_KIND_CHANGED";
const NAMED: &str = "FIELD_NAMED_TYPE_CHANGED";
const LABEL: &str = "FIELD_NUMERIC_LABEL_CHANGED";

#[rustfmt::skip]
const PROTO3: &[Case] = &[
    case("identical",
        r#"syntax = "proto3"; package t; message M { string a = 1; }"#,
        r#"syntax = "proto3"; package t; message M { string a = 1; }"#, OK, OK),
    case("field added",
        r#"syntax = "proto3"; package t; message M { string a = 1; }"#,
        r#"syntax = "proto3"; package t; message M { string a = 1; int32 b = 2; }"#, OK, OK),
    case("field removed",
        r#"syntax = "proto3"; package t; message M { string a = 1; int32 b = 2; }"#,
        r#"syntax = "proto3"; package t; message M { string a = 1; }"#, OK, OK),
    case("field renamed",
        r#"syntax = "proto3"; package t; message M { string a = 1; }"#,
        r#"syntax = "proto3"; package t; message M { string renamed = 1; }"#, OK, OK),
    case("field renumbered is a removal plus an addition",
        r#"syntax = "proto3"; package t; message M { string a = 1; }"#,
        r#"syntax = "proto3"; package t; message M { string a = 2; }"#, OK, OK),
    case("int32 to int64",
        r#"syntax = "proto3"; package t; message M { int32 a = 1; }"#,
        r#"syntax = "proto3"; package t; message M { int64 a = 1; }"#, OK, OK),
    case("int32 to uint64",
        r#"syntax = "proto3"; package t; message M { int32 a = 1; }"#,
        r#"syntax = "proto3"; package t; message M { uint64 a = 1; }"#, OK, OK),
    case("uint32 to bool",
        r#"syntax = "proto3"; package t; message M { uint32 a = 1; }"#,
        r#"syntax = "proto3"; package t; message M { bool a = 1; }"#, OK, OK),
    case("int32 to enum",
        r#"syntax = "proto3"; package t; message M { int32 a = 1; }"#,
        r#"syntax = "proto3"; package t; message M { E a = 1; } enum E { Z = 0; }"#, OK, OK),
    case("enum to string",
        r#"syntax = "proto3"; package t; message M { E a = 1; } enum E { Z = 0; }"#,
        r#"syntax = "proto3"; package t; message M { string a = 1; } enum E { Z = 0; }"#, SCALAR, SCALAR),
    case("int32 to sint32 (zigzag)",
        r#"syntax = "proto3"; package t; message M { int32 a = 1; }"#,
        r#"syntax = "proto3"; package t; message M { sint32 a = 1; }"#, SCALAR, SCALAR),
    case("sint32 to sint64",
        r#"syntax = "proto3"; package t; message M { sint32 a = 1; }"#,
        r#"syntax = "proto3"; package t; message M { sint64 a = 1; }"#, OK, OK),
    case("fixed32 to sfixed32",
        r#"syntax = "proto3"; package t; message M { fixed32 a = 1; }"#,
        r#"syntax = "proto3"; package t; message M { sfixed32 a = 1; }"#, OK, OK),
    case("fixed64 to sfixed64",
        r#"syntax = "proto3"; package t; message M { fixed64 a = 1; }"#,
        r#"syntax = "proto3"; package t; message M { sfixed64 a = 1; }"#, OK, OK),
    case("fixed32 to fixed64",
        r#"syntax = "proto3"; package t; message M { fixed32 a = 1; }"#,
        r#"syntax = "proto3"; package t; message M { fixed64 a = 1; }"#, SCALAR, SCALAR),
    case("int32 to fixed32",
        r#"syntax = "proto3"; package t; message M { int32 a = 1; }"#,
        r#"syntax = "proto3"; package t; message M { fixed32 a = 1; }"#, SCALAR, SCALAR),
    case("float to double",
        r#"syntax = "proto3"; package t; message M { float a = 1; }"#,
        r#"syntax = "proto3"; package t; message M { double a = 1; }"#, SCALAR, SCALAR),
    case("double to fixed64",
        r#"syntax = "proto3"; package t; message M { double a = 1; }"#,
        r#"syntax = "proto3"; package t; message M { fixed64 a = 1; }"#, SCALAR, SCALAR),
    case("string to bytes",
        r#"syntax = "proto3"; package t; message M { string a = 1; }"#,
        r#"syntax = "proto3"; package t; message M { bytes a = 1; }"#, OK, OK),
    case("string to int32",
        r#"syntax = "proto3"; package t; message M { string a = 1; }"#,
        r#"syntax = "proto3"; package t; message M { int32 a = 1; }"#, SCALAR, SCALAR),
    case("string to message",
        r#"syntax = "proto3"; package t; message M { string a = 1; } message N { string x = 1; }"#,
        r#"syntax = "proto3"; package t; message M { N a = 1; } message N { string x = 1; }"#, KIND, KIND),
    case("bytes to message",
        r#"syntax = "proto3"; package t; message M { bytes a = 1; } message N { string x = 1; }"#,
        r#"syntax = "proto3"; package t; message M { N a = 1; } message N { string x = 1; }"#, KIND, KIND),
    case("message to map",
        r#"syntax = "proto3"; package t; message M { N a = 1; } message N { string x = 1; }"#,
        r#"syntax = "proto3"; package t; message M { map<string, string> a = 1; } message N { string x = 1; }"#, KIND, KIND),
    case("map value int32 to int64",
        r#"syntax = "proto3"; package t; message M { map<string, int32> a = 1; }"#,
        r#"syntax = "proto3"; package t; message M { map<string, int64> a = 1; }"#, OK, OK),
    case("map value int32 to string",
        r#"syntax = "proto3"; package t; message M { map<string, int32> a = 1; }"#,
        r#"syntax = "proto3"; package t; message M { map<string, string> a = 1; }"#, SCALAR, SCALAR),
    case("map key string to int32",
        r#"syntax = "proto3"; package t; message M { map<string, int32> a = 1; }"#,
        r#"syntax = "proto3"; package t; message M { map<int32, int32> a = 1; }"#, SCALAR, SCALAR),
    case("map value message changed inside",
        r#"syntax = "proto3"; package t; message M { map<string, L> a = 1; } message L { string s = 1; }"#,
        r#"syntax = "proto3"; package t; message M { map<string, L> a = 1; } message L { int64 s = 1; }"#, SCALAR, SCALAR),
    case("field type switched to another message",
        r#"syntax = "proto3"; package t; message M { A f = 1; } message A { string s = 1; } message B { string s = 1; }"#,
        r#"syntax = "proto3"; package t; message M { B f = 1; } message A { string s = 1; } message B { string s = 1; }"#, NAMED, NAMED),
    case("message renamed",
        r#"syntax = "proto3"; package t; message M { string a = 1; }"#,
        r#"syntax = "proto3"; package t; message Renamed { string a = 1; }"#, "MESSAGE_REMOVED", "MESSAGE_REMOVED"),
    case("message removed",
        r#"syntax = "proto3"; package t; message M { string a = 1; } message Other { int32 b = 1; }"#,
        r#"syntax = "proto3"; package t; message M { string a = 1; }"#, "MESSAGE_REMOVED", OK),
    case("message added: old readers cannot read records of the new type",
        r#"syntax = "proto3"; package t; message M { string a = 1; }"#,
        r#"syntax = "proto3"; package t; message M { string a = 1; } message Other { int32 b = 1; }"#, OK, "MESSAGE_REMOVED"),
    case("messages reordered",
        r#"syntax = "proto3"; package t; message A { string a = 1; } message B { string b = 1; }"#,
        r#"syntax = "proto3"; package t; message B { string b = 1; } message A { string a = 1; }"#, OK, OK),
    case("nested message removed",
        r#"syntax = "proto3"; package t; message M { string a = 1; message In { int32 x = 1; } }"#,
        r#"syntax = "proto3"; package t; message M { string a = 1; }"#, "MESSAGE_REMOVED", OK),
    case("nested message field changed",
        r#"syntax = "proto3"; package t; message M { repeated In items = 1; message In { string sku = 1; int32 q = 2; } }"#,
        r#"syntax = "proto3"; package t; message M { repeated In items = 1; message In { string sku = 1; string q = 2; } }"#, SCALAR, SCALAR),
    case("nested field change also marks the referring field",
        r#"syntax = "proto3"; package t; message M { In item = 1; message In { int32 q = 2; } }"#,
        r#"syntax = "proto3"; package t; message M { In item = 1; message In { double q = 2; } }"#, NAMED, NAMED),
    case("message moved from top level into another message",
        r#"syntax = "proto3"; package t; message M { L l = 1; } message L { string s = 1; }"#,
        r#"syntax = "proto3"; package t; message M { L l = 1; message L { string s = 1; } }"#, NAMED, NAMED),
    case("recursive message changed",
        r#"syntax = "proto3"; package t; message Node { repeated Node kids = 1; string v = 2; }"#,
        r#"syntax = "proto3"; package t; message Node { repeated Node kids = 1; int32 v = 2; }"#, SCALAR, SCALAR),
    case("recursive message unchanged",
        r#"syntax = "proto3"; package t; message Node { repeated Node kids = 1; string v = 2; }"#,
        r#"syntax = "proto3"; package t; message Node { repeated Node kids = 1; string v = 2; int32 w = 3; }"#, OK, OK),
    case("package changed",
        r#"syntax = "proto3"; package t; message M { string a = 1; }"#,
        r#"syntax = "proto3"; package u; message M { string a = 1; }"#, "PACKAGE_CHANGED", "PACKAGE_CHANGED"),
    case("enum value added",
        r#"syntax = "proto3"; package t; message M { E e = 1; } enum E { Z = 0; A = 1; }"#,
        r#"syntax = "proto3"; package t; message M { E e = 1; } enum E { Z = 0; A = 1; B = 2; }"#, OK, OK),
    case("enum value removed",
        r#"syntax = "proto3"; package t; message M { E e = 1; } enum E { Z = 0; A = 1; B = 2; }"#,
        r#"syntax = "proto3"; package t; message M { E e = 1; } enum E { Z = 0; A = 1; }"#, OK, OK),
    case("enum value renumbered",
        r#"syntax = "proto3"; package t; message M { E e = 1; } enum E { Z = 0; A = 1; }"#,
        r#"syntax = "proto3"; package t; message M { E e = 1; } enum E { Z = 0; A = 2; }"#, OK, OK),
    case("enum renamed",
        r#"syntax = "proto3"; package t; message M { E e = 1; } enum E { Z = 0; }"#,
        r#"syntax = "proto3"; package t; message M { F e = 1; } enum F { Z = 0; }"#, OK, OK),
    case("nested enum removed",
        r#"syntax = "proto3"; package t; message M { int32 e = 1; enum E { Z = 0; } }"#,
        r#"syntax = "proto3"; package t; message M { int32 e = 1; }"#, OK, OK),
    case("singular to proto3 optional",
        r#"syntax = "proto3"; package t; message M { int32 a = 1; }"#,
        r#"syntax = "proto3"; package t; message M { optional int32 a = 1; }"#, OK, OK),
    case("int32 to repeated int32 (packed)",
        r#"syntax = "proto3"; package t; message M { int32 a = 1; }"#,
        r#"syntax = "proto3"; package t; message M { repeated int32 a = 1; }"#, LABEL, LABEL),
    case("repeated double to double",
        r#"syntax = "proto3"; package t; message M { repeated double a = 1; }"#,
        r#"syntax = "proto3"; package t; message M { double a = 1; }"#, LABEL, LABEL),
    case("string to repeated string",
        r#"syntax = "proto3"; package t; message M { string a = 1; }"#,
        r#"syntax = "proto3"; package t; message M { repeated string a = 1; }"#, OK, OK),
    case("bytes to repeated bytes",
        r#"syntax = "proto3"; package t; message M { bytes a = 1; }"#,
        r#"syntax = "proto3"; package t; message M { repeated bytes a = 1; }"#, OK, OK),
    case("message to repeated message",
        r#"syntax = "proto3"; package t; message M { N a = 1; } message N { string x = 1; }"#,
        r#"syntax = "proto3"; package t; message M { repeated N a = 1; } message N { string x = 1; }"#, OK, OK),
    case("one field moved into a new oneof",
        r#"syntax = "proto3"; package t; message M { string a = 1; int32 b = 2; }"#,
        r#"syntax = "proto3"; package t; message M { oneof o { string a = 1; } int32 b = 2; }"#, OK, OK),
    case("one field moved into a new oneof with new members",
        r#"syntax = "proto3"; package t; message M { string a = 1; }"#,
        r#"syntax = "proto3"; package t; message M { oneof o { string a = 1; int64 c = 3; } }"#, OK, OK),
    case("two existing fields moved into a new oneof",
        r#"syntax = "proto3"; package t; message M { string a = 1; int32 b = 2; }"#,
        r#"syntax = "proto3"; package t; message M { oneof o { string a = 1; int32 b = 2; } }"#, "MULTIPLE_FIELDS_MOVED_TO_ONEOF", OK),
    case("field moved into an existing oneof",
        r#"syntax = "proto3"; package t; message M { oneof o { string a = 1; } int32 b = 2; }"#,
        r#"syntax = "proto3"; package t; message M { oneof o { string a = 1; int32 b = 2; } }"#, "FIELD_MOVED_TO_EXISTING_ONEOF", OK),
    case("field moved out of a oneof",
        r#"syntax = "proto3"; package t; message M { oneof o { string a = 1; int32 b = 2; } }"#,
        r#"syntax = "proto3"; package t; message M { oneof o { string a = 1; } int32 b = 2; }"#, OK, "FIELD_MOVED_TO_EXISTING_ONEOF"),
    case("oneof field removed",
        r#"syntax = "proto3"; package t; message M { oneof o { string a = 1; int32 b = 2; } }"#,
        r#"syntax = "proto3"; package t; message M { oneof o { string a = 1; } }"#, "ONEOF_FIELD_REMOVED", OK),
    case("oneof renamed",
        r#"syntax = "proto3"; package t; message M { oneof o { string a = 1; int32 b = 2; } }"#,
        r#"syntax = "proto3"; package t; message M { oneof p { string a = 1; int32 b = 2; } }"#, OK, OK),
    case("oneof renamed and a member's type changed",
        r#"syntax = "proto3"; package t; message M { oneof o { string a = 1; int32 b = 2; } }"#,
        r#"syntax = "proto3"; package t; message M { oneof p { string a = 1; fixed32 b = 2; } }"#, SCALAR, SCALAR),
    case("new oneof of new fields",
        r#"syntax = "proto3"; package t; message M { string a = 1; }"#,
        r#"syntax = "proto3"; package t; message M { string a = 1; oneof o { int32 x = 5; string y = 6; } }"#, OK, OK),
    case("whole oneof removed",
        r#"syntax = "proto3"; package t; message M { string a = 1; oneof o { int32 x = 5; string y = 6; } }"#,
        r#"syntax = "proto3"; package t; message M { string a = 1; }"#, OK, OK),
    case("oneof member type changed",
        r#"syntax = "proto3"; package t; message M { oneof o { int32 x = 5; string y = 6; } }"#,
        r#"syntax = "proto3"; package t; message M { oneof o { int32 x = 5; float y = 6; } }"#, SCALAR, SCALAR),
    case("field moved into a oneof with a changed type",
        r#"syntax = "proto3"; package t; message M { string a = 1; }"#,
        r#"syntax = "proto3"; package t; message M { oneof o { int32 a = 1; } }"#, SCALAR, SCALAR),
    case("field removed and its number reserved",
        r#"syntax = "proto3"; package t; message M { string a = 1; int32 b = 2; }"#,
        r#"syntax = "proto3"; package t; message M { reserved 2; reserved "b"; string a = 1; }"#, OK, OK),
    case("json_name changed",
        r#"syntax = "proto3"; package t; message M { string a = 1; }"#,
        r#"syntax = "proto3"; package t; message M { string a = 1 [json_name = "A"]; }"#, OK, OK),
    case("well-known type swapped",
        r#"syntax = "proto3"; package t; import "google/protobuf/timestamp.proto"; message M { google.protobuf.Timestamp at = 1; }"#,
        r#"syntax = "proto3"; package t; import "google/protobuf/duration.proto"; message M { google.protobuf.Duration at = 1; }"#, NAMED, NAMED),
    case("well-known wrapper kept",
        r#"syntax = "proto3"; package t; import "google/protobuf/wrappers.proto"; message M { google.protobuf.Int32Value v = 1; }"#,
        r#"syntax = "proto3"; package t; import "google/protobuf/wrappers.proto"; message M { google.protobuf.Int32Value v = 1; string w = 2; }"#, OK, OK),
    case("whitespace and comments only",
        r#"syntax = "proto3"; package t; message M { string a = 1; }"#,
        "// a comment\nsyntax = \"proto3\";\npackage t;\n/* block */\nmessage M {\n  string a = 1; // trailing\n}\n", OK, OK),
];

#[rustfmt::skip]
const PROTO2: &[Case] = &[
    case("proto2 optional field added",
        r#"syntax = "proto2"; package t; message M { optional string a = 1; }"#,
        r#"syntax = "proto2"; package t; message M { optional string a = 1; optional int32 b = 2; }"#, OK, OK),
    case("proto2 optional field removed",
        r#"syntax = "proto2"; package t; message M { optional string a = 1; optional int32 b = 2; }"#,
        r#"syntax = "proto2"; package t; message M { optional string a = 1; }"#, OK, OK),
    case("proto2 required field added",
        r#"syntax = "proto2"; package t; message M { optional string a = 1; }"#,
        r#"syntax = "proto2"; package t; message M { optional string a = 1; required int32 b = 2; }"#, "REQUIRED_FIELD_ADDED", "REQUIRED_FIELD_REMOVED"),
    case("proto2 required field removed",
        r#"syntax = "proto2"; package t; message M { optional string a = 1; required int32 b = 2; }"#,
        r#"syntax = "proto2"; package t; message M { optional string a = 1; }"#, "REQUIRED_FIELD_REMOVED", "REQUIRED_FIELD_ADDED"),
    case("proto2 optional made required",
        r#"syntax = "proto2"; package t; message M { optional int32 a = 1; }"#,
        r#"syntax = "proto2"; package t; message M { required int32 a = 1; }"#, "REQUIRED_FIELD_ADDED", OK),
    case("proto2 required made optional",
        r#"syntax = "proto2"; package t; message M { required int32 a = 1; }"#,
        r#"syntax = "proto2"; package t; message M { optional int32 a = 1; }"#, OK, "REQUIRED_FIELD_ADDED"),
    case("proto2 optional int32 to repeated",
        r#"syntax = "proto2"; package t; message M { optional int32 a = 1; }"#,
        r#"syntax = "proto2"; package t; message M { repeated int32 a = 1; }"#, LABEL, LABEL),
    case("proto2 optional string to repeated",
        r#"syntax = "proto2"; package t; message M { optional string a = 1; }"#,
        r#"syntax = "proto2"; package t; message M { repeated string a = 1; }"#, OK, OK),
    case("proto2 default value changed",
        r#"syntax = "proto2"; package t; message M { optional int32 a = 1 [default = 1]; }"#,
        r#"syntax = "proto2"; package t; message M { optional int32 a = 1 [default = 7]; }"#, OK, OK),
    case("proto2 int64 to sfixed64",
        r#"syntax = "proto2"; package t; message M { optional int64 a = 1; }"#,
        r#"syntax = "proto2"; package t; message M { optional sfixed64 a = 1; }"#, SCALAR, SCALAR),
    case("proto2 nested required field added",
        r#"syntax = "proto2"; package t; message M { optional In i = 1; message In { optional int32 x = 1; } }"#,
        r#"syntax = "proto2"; package t; message M { optional In i = 1; message In { optional int32 x = 1; required string y = 2; } }"#, "REQUIRED_FIELD_ADDED", "REQUIRED_FIELD_REMOVED"),
    case("proto2 enum value removed (closed enum: unknown values are kept as unknown fields)",
        r#"syntax = "proto2"; package t; message M { optional E e = 1; } enum E { A = 1; B = 2; }"#,
        r#"syntax = "proto2"; package t; message M { optional E e = 1; } enum E { A = 1; }"#, OK, OK),
    case("proto2 group changed inside",
        r#"syntax = "proto2"; package t; message M { optional group G = 1 { optional int32 x = 2; } }"#,
        r#"syntax = "proto2"; package t; message M { optional group G = 1 { optional string x = 2; } }"#, SCALAR, SCALAR),
    case("proto2 to proto3, same fields",
        r#"syntax = "proto2"; package t; message M { optional string a = 1; repeated int32 b = 2; }"#,
        r#"syntax = "proto3"; package t; message M { optional string a = 1; repeated int32 b = 2; }"#, OK, OK),
    case("proto3 to proto2, same fields",
        r#"syntax = "proto3"; package t; message M { string a = 1; repeated int64 b = 2; }"#,
        r#"syntax = "proto2"; package t; message M { optional string a = 1; repeated int64 b = 2; }"#, OK, OK),
    case("proto3 to proto2 with a required field",
        r#"syntax = "proto3"; package t; message M { string a = 1; }"#,
        r#"syntax = "proto2"; package t; message M { required string a = 1; }"#, "REQUIRED_FIELD_ADDED", OK),
    case("proto2 with no syntax statement equals explicit proto2",
        r#"package t; message M { optional string a = 1; }"#,
        r#"syntax = "proto2"; package t; message M { optional string a = 1; }"#, OK, OK),
];

#[test]
fn proto3_evolution() {
    run(PROTO3, &[], &[]);
}

#[test]
fn proto2_evolution() {
    run(PROTO2, &[], &[]);
}

const COMMON_V1: &str =
    r#"syntax = "proto3"; package common; message Money { int64 units = 1; string currency = 2; }"#;
const COMMON_V2_OK: &str = r#"syntax = "proto3"; package common; message Money { int64 units = 1; string currency = 2; int32 nanos = 3; }"#;
const COMMON_V2_BAD: &str = r#"syntax = "proto3"; package common; message Money { double units = 1; string currency = 2; }"#;
const OTHER_MONEY: &str =
    r#"syntax = "proto3"; package other; message Money { int64 units = 1; string currency = 2; }"#;
const ORDER: &str = r#"syntax = "proto3"; package shop; import "common.proto"; message Order { string id = 1; common.Money total = 2; }"#;
const ORDER_OTHER: &str = r#"syntax = "proto3"; package shop; import "other.proto"; message Order { string id = 1; other.Money total = 2; }"#;

#[test]
fn imported_type_changed_compatibly() {
    run(
        &[case(
            "imported message gained a field",
            ORDER,
            ORDER,
            OK,
            OK,
        )],
        &[("common.proto", COMMON_V1)],
        &[("common.proto", COMMON_V2_OK)],
    );
}

#[test]
fn imported_type_changed_incompatibly() {
    run(
        &[case(
            "imported message field int64 to double",
            ORDER,
            ORDER,
            SCALAR,
            SCALAR,
        )],
        &[("common.proto", COMMON_V1)],
        &[("common.proto", COMMON_V2_BAD)],
    );
    run(
        &[case(
            "imported change marks the referring field",
            ORDER,
            ORDER,
            NAMED,
            NAMED,
        )],
        &[("common.proto", COMMON_V1)],
        &[("common.proto", COMMON_V2_BAD)],
    );
}

#[test]
fn imported_type_from_another_package_with_the_same_shape() {
    // Confluent compares message types by their name within their package, then by
    // structure: `common.Money` and `other.Money` are the same on the wire.
    let old = parse(ORDER, &[("common.proto", COMMON_V1)]);
    let new = parse(ORDER_OTHER, &[("other.proto", OTHER_MONEY)]);
    for level in [CompatibilityLevel::Backward, CompatibilityLevel::Forward] {
        let reasons = check_compatibility(level, &new, &[&old]);
        assert!(reasons.is_empty(), "{level}: {reasons:?}");
    }
}

#[test]
fn locations_and_messages_name_the_field() {
    let old = parse(
        r#"syntax = "proto3"; package shop; message Order { message Line { string sku = 1; int32 qty = 3; } }"#,
        &[],
    );
    let new = parse(
        r#"syntax = "proto3"; package shop; message Order { message Line { string sku = 1; string qty = 3; } }"#,
        &[],
    );
    let reasons = check_compatibility(CompatibilityLevel::Backward, &new, &[&old]);
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    let r = &reasons[0];
    assert_eq!(r.kind, SCALAR);
    assert_eq!(r.location, "#/Order/Line/3");
    assert!(r.message.contains("shop.Order.Line"), "{}", r.message);
    assert!(r.message.contains("int32 `qty`"), "{}", r.message);
    assert!(r.message.contains("string `qty`"), "{}", r.message);
}

/// A reserved number reused with another type is compatible with the version that
/// reserved it (that one never writes the number), so pairwise levels pass; the
/// transitive levels compare with the version that used it and refuse.
#[test]
fn reserved_number_reused_is_caught_transitively() {
    let v1 = parse(
        r#"syntax = "proto3"; package t; message M { string a = 1; string b = 2; }"#,
        &[],
    );
    let v2 = parse(
        r#"syntax = "proto3"; package t; message M { reserved 2; string a = 1; }"#,
        &[],
    );
    let v3 = parse(
        r#"syntax = "proto3"; package t; message M { string a = 1; int64 b = 2; }"#,
        &[],
    );
    assert!(check_compatibility(CompatibilityLevel::Backward, &v2, &[&v1]).is_empty());
    assert!(check_compatibility(CompatibilityLevel::Backward, &v3, &[&v1, &v2]).is_empty());
    let reasons = check_compatibility(CompatibilityLevel::BackwardTransitive, &v3, &[&v1, &v2]);
    assert!(reasons.iter().any(|r| r.kind == SCALAR), "{reasons:?}");
    let reasons = check_compatibility(CompatibilityLevel::FullTransitive, &v3, &[&v1, &v2]);
    assert!(reasons.iter().any(|r| r.kind == SCALAR), "{reasons:?}");
}

#[test]
fn at_least_sixty_cases() {
    assert!(
        PROTO3.len() + PROTO2.len() + 3 >= 60,
        "{}",
        PROTO3.len() + PROTO2.len()
    );
}

/// A schema chaining thousands of message types through their fields is compared without
/// exhausting the stack, and a change at the end of the chain is still found.
#[test]
fn long_chains_of_message_types_are_bounded() {
    fn chain(n: usize, last: &str) -> String {
        let mut text = String::from("syntax = \"proto3\"; package c;\n");
        for i in 0..n {
            text.push_str(&format!("message M{i} {{ M{} next = 1; }}\n", i + 1));
        }
        text.push_str(&format!("message M{n} {{ {last} v = 1; }}\n"));
        text
    }
    let n = 5000;
    let old = parse(&chain(n, "string"), &[]);
    let same = parse(&chain(n, "bytes"), &[]);
    let changed = parse(&chain(n, "int64"), &[]);
    // 2 MiB: the stack of tokio's blocking threads, where the registry runs checks.
    let handle = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || {
            let ok = check_compatibility(CompatibilityLevel::Full, &same, &[&old]);
            let bad = check_compatibility(CompatibilityLevel::Backward, &changed, &[&old]);
            (ok, bad)
        })
        .expect("thread starts");
    let (ok, bad) = handle.join().expect("no stack overflow");
    assert!(ok.is_empty(), "{ok:?}");
    assert!(
        bad.iter()
            .any(|r| r.kind == SCALAR && r.location == format!("#/M{n}/1")),
        "{bad:?}"
    );
}
