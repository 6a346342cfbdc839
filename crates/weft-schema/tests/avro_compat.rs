//! Avro schema evolution as the registry judges it: a table of (old, new) schema pairs with
//! the verdict Confluent's registry gives under BACKWARD (new reads old) and FORWARD (old
//! reads new), plus transitive levels, FULL and NONE.

use weft_schema::{
    CompatibilityLevel, Incompatibility, ParsedSchema, SchemaType, check_compatibility,
};

/// The expected verdict: compatible, or incompatible with (at least) this reason kind.
#[derive(Debug, Clone, Copy)]
enum V {
    Ok,
    No(&'static str),
}
use V::{No, Ok};

struct Case {
    name: &'static str,
    old: String,
    new: String,
    backward: V,
    forward: V,
    /// A text every reason's message must contain (usually the field's name).
    mentions: &'static str,
}

fn parse(text: &str) -> ParsedSchema {
    match ParsedSchema::parse(SchemaType::Avro, text, &[]) {
        Result::Ok(s) => s,
        Err(e) => panic!("schema does not parse: {e}\n{text}"),
    }
}

/// A record `com.acme.R` with these fields.
fn rec(fields: &str) -> String {
    format!(r#"{{"type":"record","name":"R","namespace":"com.acme","fields":[{fields}]}}"#)
}

/// A record `com.acme.R` with one field `a` of this type (and optional extra field JSON).
fn field(ty: &str) -> String {
    rec(&format!(r#"{{"name":"a","type":{ty}}}"#))
}

fn case(
    name: &'static str,
    old: String,
    new: String,
    backward: V,
    forward: V,
    mentions: &'static str,
) -> Case {
    Case {
        name,
        old,
        new,
        backward,
        forward,
        mentions,
    }
}

const SUIT: &str = r#"{"type":"enum","name":"Suit","symbols":["HEARTS","SPADES"]}"#;
const SUIT3: &str = r#"{"type":"enum","name":"Suit","symbols":["HEARTS","SPADES","CLUBS"]}"#;
const LIST: &str = r#"{"type":"record","name":"LongList","fields":[{"name":"value","type":"long"},{"name":"next","type":["null","LongList"],"default":null}]}"#;

fn cases() -> Vec<Case> {
    let str_f1 = r#"{"name":"f1","type":"string"}"#;
    let nested = |inner_fields: &str| {
        rec(&format!(
            r#"{{"name":"addr","type":{{"type":"record","name":"Address","fields":[{inner_fields}]}}}}"#
        ))
    };
    let point = |name: &str, fields: &str| {
        format!(r#"{{"type":"record","name":"{name}","fields":[{fields}]}}"#)
    };
    vec![
        // Fields
        case("add field with default", rec(str_f1), rec(&format!(r#"{str_f1},{{"name":"f2","type":"string","default":"foo"}}"#)), Ok, Ok, ""),
        case("add field without default", rec(str_f1), rec(&format!(r#"{str_f1},{{"name":"f2","type":"string"}}"#)), No("READER_FIELD_MISSING_DEFAULT_VALUE"), Ok, "f2"),
        case("remove field with default", rec(&format!(r#"{str_f1},{{"name":"f2","type":"string","default":"x"}}"#)), rec(str_f1), Ok, Ok, ""),
        case("remove field without default", rec(&format!(r#"{str_f1},{{"name":"f2","type":"string"}}"#)), rec(str_f1), Ok, No("READER_FIELD_MISSING_DEFAULT_VALUE"), "f2"),
        case("rename field with alias", rec(str_f1), rec(r#"{"name":"f1_new","type":"string","aliases":["f1"]}"#), Ok, No("READER_FIELD_MISSING_DEFAULT_VALUE"), "f1"),
        case("rename field without alias", rec(str_f1), rec(r#"{"name":"f9","type":"string"}"#), No("READER_FIELD_MISSING_DEFAULT_VALUE"), No("READER_FIELD_MISSING_DEFAULT_VALUE"), "f"),
        case("reorder fields", rec(r#"{"name":"x","type":"int"},{"name":"y","type":"string"}"#), rec(r#"{"name":"y","type":"string"},{"name":"x","type":"int"}"#), Ok, Ok, ""),
        case("change field doc", rec(r#"{"name":"x","type":"int","doc":"old"}"#), rec(r#"{"name":"x","type":"int","doc":"new"}"#), Ok, Ok, ""),
        case("change field default", rec(r#"{"name":"x","type":"int","default":1}"#), rec(r#"{"name":"x","type":"int","default":2}"#), Ok, Ok, ""),
        case("add default to existing field", rec(r#"{"name":"x","type":"int"}"#), rec(r#"{"name":"x","type":"int","default":0}"#), Ok, Ok, ""),
        // Primitive promotions
        case("int to long", field(r#""int""#), field(r#""long""#), Ok, No("TYPE_MISMATCH"), "'com.acme.R.a'"),
        case("int to float", field(r#""int""#), field(r#""float""#), Ok, No("TYPE_MISMATCH"), "a"),
        case("int to double", field(r#""int""#), field(r#""double""#), Ok, No("TYPE_MISMATCH"), "a"),
        case("long to float", field(r#""long""#), field(r#""float""#), Ok, No("TYPE_MISMATCH"), "a"),
        case("long to double", field(r#""long""#), field(r#""double""#), Ok, No("TYPE_MISMATCH"), "a"),
        case("float to double", field(r#""float""#), field(r#""double""#), Ok, No("TYPE_MISMATCH"), "a"),
        case("long to int", field(r#""long""#), field(r#""int""#), No("TYPE_MISMATCH"), Ok, "a"),
        case("float to int", field(r#""float""#), field(r#""int""#), No("TYPE_MISMATCH"), Ok, "a"),
        case("string to bytes", field(r#""string""#), field(r#""bytes""#), Ok, Ok, ""),
        case("bytes to string", field(r#""bytes""#), field(r#""string""#), Ok, Ok, ""),
        case("int to string", field(r#""int""#), field(r#""string""#), No("TYPE_MISMATCH"), No("TYPE_MISMATCH"), "a"),
        case("boolean to int", field(r#""boolean""#), field(r#""int""#), No("TYPE_MISMATCH"), No("TYPE_MISMATCH"), "a"),
        case("null to string", field(r#""null""#), field(r#""string""#), No("TYPE_MISMATCH"), No("TYPE_MISMATCH"), "a"),
        case("top-level int to long", r#""int""#.to_owned(), r#""long""#.to_owned(), Ok, No("TYPE_MISMATCH"), "int"),
        case("top-level string to bytes", r#""string""#.to_owned(), r#"{"type":"bytes"}"#.to_owned(), Ok, Ok, ""),
        case("record to string", field(r#""string""#), r#""string""#.to_owned(), No("TYPE_MISMATCH"), No("TYPE_MISMATCH"), "record"),
        // Unions
        case("type to nullable union", field(r#""string""#), field(r#"["null","string"]"#), Ok, No("TYPE_MISMATCH"), "a"),
        case("nullable union to type", field(r#"["null","string"]"#), field(r#""string""#), No("TYPE_MISMATCH"), Ok, "a"),
        case("add union branch", field(r#"["null","string"]"#), field(r#"["null","string","int"]"#), Ok, No("MISSING_UNION_BRANCH"), "a"),
        case("remove union branch", field(r#"["null","string","int"]"#), field(r#"["null","string"]"#), No("MISSING_UNION_BRANCH"), Ok, "a"),
        case("reorder union branches", field(r#"["null","string"]"#), field(r#"["string","null"]"#), Ok, Ok, ""),
        case("union branch promoted", field(r#"["int","string"]"#), field(r#"["long","string"]"#), Ok, No("MISSING_UNION_BRANCH"), "a"),
        case("type to union with promoted branch", field(r#""int""#), field(r#"["null","long"]"#), Ok, No("TYPE_MISMATCH"), "a"),
        case("union narrowed to a type reading every branch", field(r#"["int","long"]"#), field(r#""long""#), Ok, Ok, ""),
        case("union narrowed to a type missing a branch", field(r#"["int","string"]"#), field(r#""long""#), No("TYPE_MISMATCH"), No("MISSING_UNION_BRANCH"), "a"),
        case("null to nullable union", field(r#""null""#), field(r#"["null","string"]"#), Ok, No("TYPE_MISMATCH"), "a"),
        // Enums
        case("add enum symbol", field(SUIT), field(SUIT3), Ok, No("MISSING_ENUM_SYMBOLS"), "CLUBS"),
        case("remove enum symbol", field(SUIT3), field(SUIT), No("MISSING_ENUM_SYMBOLS"), Ok, "CLUBS"),
        case(
            "add enum symbol, reader has enum default",
            field(r#"{"type":"enum","name":"Suit","symbols":["HEARTS","SPADES"],"default":"HEARTS"}"#),
            field(r#"{"type":"enum","name":"Suit","symbols":["HEARTS","SPADES","CLUBS"],"default":"HEARTS"}"#),
            Ok,
            Ok,
            "",
        ),
        case("rename enum", field(SUIT), field(r#"{"type":"enum","name":"Suit2","symbols":["HEARTS","SPADES"]}"#), No("NAME_MISMATCH"), No("NAME_MISMATCH"), "Suit"),
        case(
            "rename enum with alias",
            field(SUIT),
            field(r#"{"type":"enum","name":"Suit2","aliases":["Suit"],"symbols":["HEARTS","SPADES"]}"#),
            Ok,
            No("NAME_MISMATCH"),
            "Suit",
        ),
        case("reorder enum symbols", field(SUIT), field(r#"{"type":"enum","name":"Suit","symbols":["SPADES","HEARTS"]}"#), Ok, Ok, ""),
        case("map of enums gains a symbol", field(&format!(r#"{{"type":"map","values":{SUIT}}}"#)), field(&format!(r#"{{"type":"map","values":{SUIT3}}}"#)), Ok, No("MISSING_ENUM_SYMBOLS"), "values of field 'com.acme.R.a'"),
        // Fixed
        case("same fixed", field(r#"{"type":"fixed","name":"Hash","size":16}"#), field(r#"{"type":"fixed","name":"Hash","size":16}"#), Ok, Ok, ""),
        case("fixed size change", field(r#"{"type":"fixed","name":"Hash","size":16}"#), field(r#"{"type":"fixed","name":"Hash","size":32}"#), No("FIXED_SIZE_MISMATCH"), No("FIXED_SIZE_MISMATCH"), "Hash"),
        case("fixed rename", field(r#"{"type":"fixed","name":"Hash","size":16}"#), field(r#"{"type":"fixed","name":"Digest","size":16}"#), No("NAME_MISMATCH"), No("NAME_MISMATCH"), "Hash"),
        case("bytes to fixed", field(r#""bytes""#), field(r#"{"type":"fixed","name":"Hash","size":16}"#), No("TYPE_MISMATCH"), No("TYPE_MISMATCH"), "a"),
        // Arrays and maps
        case("array items int to long", field(r#"{"type":"array","items":"int"}"#), field(r#"{"type":"array","items":"long"}"#), Ok, No("TYPE_MISMATCH"), "items of field 'com.acme.R.a'"),
        case("map values string to int", field(r#"{"type":"map","values":"string"}"#), field(r#"{"type":"map","values":"int"}"#), No("TYPE_MISMATCH"), No("TYPE_MISMATCH"), "values of field"),
        case("array to map", field(r#"{"type":"array","items":"string"}"#), field(r#"{"type":"map","values":"string"}"#), No("TYPE_MISMATCH"), No("TYPE_MISMATCH"), "a"),
        case(
            "array of records gains a defaulted field",
            field(&format!(r#"{{"type":"array","items":{}}}"#, point("P", r#"{"name":"x","type":"int"}"#))),
            field(&format!(r#"{{"type":"array","items":{}}}"#, point("P", r#"{"name":"x","type":"int"},{"name":"y","type":"int","default":0}"#))),
            Ok,
            Ok,
            "",
        ),
        // Nested records, names, namespaces
        case("nested record gains defaulted field", nested(r#"{"name":"city","type":"string"}"#), nested(r#"{"name":"city","type":"string"},{"name":"zip","type":"string","default":""}"#), Ok, Ok, ""),
        case("nested record gains required field", nested(r#"{"name":"city","type":"string"}"#), nested(r#"{"name":"city","type":"string"},{"name":"zip","type":"string"}"#), No("READER_FIELD_MISSING_DEFAULT_VALUE"), Ok, "Address.zip"),
        case("nested record field type change", nested(r#"{"name":"city","type":"string"}"#), nested(r#"{"name":"city","type":"int"}"#), No("TYPE_MISMATCH"), No("TYPE_MISMATCH"), "Address.city"),
        case(
            "nested record renamed",
            nested(r#"{"name":"city","type":"string"}"#),
            rec(r#"{"name":"addr","type":{"type":"record","name":"Location","fields":[{"name":"city","type":"string"}]}}"#),
            No("NAME_MISMATCH"),
            No("NAME_MISMATCH"),
            "Address",
        ),
        case(
            "record renamed with alias",
            rec(str_f1),
            r#"{"type":"record","name":"R2","namespace":"com.acme","aliases":["R"],"fields":[{"name":"f1","type":"string"}]}"#.to_owned(),
            Ok,
            No("NAME_MISMATCH"),
            "R",
        ),
        case(
            "record alias given in full in another namespace",
            rec(str_f1),
            r#"{"type":"record","name":"R2","namespace":"org.other","aliases":["com.acme.R"],"fields":[{"name":"f1","type":"string"}]}"#.to_owned(),
            Ok,
            No("NAME_MISMATCH"),
            "R",
        ),
        case(
            "namespace change only (unqualified names match)",
            rec(str_f1),
            r#"{"type":"record","name":"R","namespace":"org.other","fields":[{"name":"f1","type":"string"}]}"#.to_owned(),
            Ok,
            Ok,
            "",
        ),
        case(
            "nested type moves with parent namespace",
            nested(r#"{"name":"city","type":"string"}"#),
            nested(r#"{"name":"city","type":"string"}"#).replace("com.acme", "com.other"),
            Ok,
            Ok,
            "",
        ),
        // Recursive types
        case("recursive list unchanged", LIST.to_owned(), LIST.to_owned(), Ok, Ok, ""),
        case(
            "recursive list gains defaulted field",
            LIST.to_owned(),
            LIST.replace(r#""default":null}"#, r#""default":null},{"name":"tag","type":"string","default":""}"#),
            Ok,
            Ok,
            "",
        ),
        case(
            "recursive list gains required field",
            LIST.to_owned(),
            LIST.replace(r#""default":null}"#, r#""default":null},{"name":"tag","type":"string"}"#),
            No("READER_FIELD_MISSING_DEFAULT_VALUE"),
            Ok,
            "tag",
        ),
        case("recursive list value long to int", LIST.to_owned(), LIST.replace(r#""type":"long""#, r#""type":"int""#), No("TYPE_MISMATCH"), Ok, "value"),
        case(
            "mutually recursive records",
            r#"{"type":"record","name":"A","fields":[{"name":"b","type":["null",{"type":"record","name":"B","fields":[{"name":"a","type":["null","A"]}]}]}]}"#.to_owned(),
            r#"{"type":"record","name":"A","fields":[{"name":"b","type":["null",{"type":"record","name":"B","fields":[{"name":"a","type":["null","A"]},{"name":"n","type":"int","default":0}]}]}]}"#.to_owned(),
            Ok,
            Ok,
            "",
        ),
        // Defaults of complex types
        case("new record-typed field with object default", rec(str_f1), rec(&format!(r#"{str_f1},{{"name":"p","type":{},"default":{{"x":1}}}}"#, point("P", r#"{"name":"x","type":"int"}"#))), Ok, Ok, ""),
        case("new array field with default", rec(str_f1), rec(&format!(r#"{str_f1},{{"name":"tags","type":{{"type":"array","items":"string"}},"default":[]}}"#)), Ok, Ok, ""),
        case("new map field with default", rec(str_f1), rec(&format!(r#"{str_f1},{{"name":"attrs","type":{{"type":"map","values":"long"}},"default":{{"a":1}}}}"#)), Ok, Ok, ""),
        case("new enum field with default", rec(str_f1), rec(&format!(r#"{str_f1},{{"name":"suit","type":{SUIT},"default":"SPADES"}}"#)), Ok, Ok, ""),
        case(
            "new enum field with enum default but no field default",
            rec(str_f1),
            rec(&format!(r#"{str_f1},{{"name":"suit","type":{{"type":"enum","name":"Suit","symbols":["A","B"],"default":"A"}}}}"#)),
            No("READER_FIELD_MISSING_DEFAULT_VALUE"),
            Ok,
            "suit",
        ),
        case("new optional record field", rec(str_f1), rec(&format!(r#"{str_f1},{{"name":"p","type":["null",{}],"default":null}}"#, point("P", r#"{"name":"x","type":"int"}"#))), Ok, Ok, ""),
        // Logical types follow their underlying types
        case("long gains timestamp-millis", field(r#""long""#), field(r#"{"type":"long","logicalType":"timestamp-millis"}"#), Ok, Ok, ""),
        case(
            "decimal precision change",
            field(r#"{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}"#),
            field(r#"{"type":"bytes","logicalType":"decimal","precision":12,"scale":4}"#),
            Ok,
            Ok,
            "",
        ),
        case("date to timestamp-millis", field(r#"{"type":"int","logicalType":"date"}"#), field(r#"{"type":"long","logicalType":"timestamp-millis"}"#), Ok, No("TYPE_MISMATCH"), "a"),
        case("uuid to plain string", field(r#"{"type":"string","logicalType":"uuid"}"#), field(r#""string""#), Ok, Ok, ""),
        case("timestamp-millis to int", field(r#"{"type":"long","logicalType":"timestamp-millis"}"#), field(r#""int""#), No("TYPE_MISMATCH"), Ok, "a"),
        // Unions of records
        case(
            "union of records gains a record",
            field(&format!("[{},{}]", point("A", r#"{"name":"x","type":"int"}"#), point("B", r#"{"name":"y","type":"int"}"#))),
            field(&format!("[{},{},{}]", point("A", r#"{"name":"x","type":"int"}"#), point("B", r#"{"name":"y","type":"int"}"#), point("C", r#"{"name":"z","type":"int"}"#))),
            Ok,
            No("MISSING_UNION_BRANCH"),
            "C",
        ),
        case(
            "union of records loses a record",
            field(&format!("[{},{}]", point("A", r#"{"name":"x","type":"int"}"#), point("B", r#"{"name":"y","type":"int"}"#))),
            field(&format!("[{}]", point("A", r#"{"name":"x","type":"int"}"#))),
            No("MISSING_UNION_BRANCH"),
            Ok,
            "B",
        ),
        case(
            "record in union gains required field",
            field(&format!(r#"["null",{}]"#, point("A", r#"{"name":"x","type":"int"}"#))),
            field(&format!(r#"["null",{}]"#, point("A", r#"{"name":"x","type":"int"},{"name":"y","type":"int"}"#))),
            No("MISSING_UNION_BRANCH"),
            Ok,
            "com.acme.A",
        ),
        case(
            "record in union renamed",
            field(&format!(r#"["null",{}]"#, point("A", r#"{"name":"x","type":"int"}"#))),
            field(&format!(r#"["null",{}]"#, point("A2", r#"{"name":"x","type":"int"}"#))),
            No("MISSING_UNION_BRANCH"),
            No("MISSING_UNION_BRANCH"),
            "A",
        ),
    ]
}

fn check_verdict(c: &Case, direction: &str, expected: V, reasons: &[Incompatibility]) {
    match expected {
        Ok => assert!(
            reasons.is_empty(),
            "{}: {direction} should be compatible, got {reasons:#?}",
            c.name
        ),
        No(kind) => {
            assert!(
                reasons.iter().any(|r| r.kind == kind),
                "{}: {direction} should fail with {kind}, got {reasons:#?}",
                c.name
            );
            for r in reasons {
                assert!(
                    r.message.contains(c.mentions),
                    "{}: {direction} reason should mention {:?}: {r}",
                    c.name,
                    c.mentions
                );
                assert!(
                    r.location.starts_with('/'),
                    "{}: location {:?}",
                    c.name,
                    r.location
                );
            }
        }
    }
}

#[test]
fn evolution_table() {
    let cases = cases();
    assert!(cases.len() >= 60, "only {} cases", cases.len());
    for c in &cases {
        let (old, new) = (parse(&c.old), parse(&c.new));
        let backward = check_compatibility(CompatibilityLevel::Backward, &new, &[&old]);
        check_verdict(c, "BACKWARD", c.backward, &backward);
        let forward = check_compatibility(CompatibilityLevel::Forward, &new, &[&old]);
        check_verdict(c, "FORWARD", c.forward, &forward);
        // FULL is both, NONE is nothing.
        let full = check_compatibility(CompatibilityLevel::Full, &new, &[&old]);
        assert_eq!(
            full.is_empty(),
            backward.is_empty() && forward.is_empty(),
            "{}: FULL {full:#?}",
            c.name
        );
        assert!(check_compatibility(CompatibilityLevel::None, &new, &[&old]).is_empty());
    }
}

#[test]
fn locations_point_into_the_schema() {
    let old = parse(&rec(r#"{"name":"f1","type":"string"}"#));
    let new = parse(&rec(
        r#"{"name":"f1","type":"string"},{"name":"f2","type":"int"}"#,
    ));
    let reasons = check_compatibility(CompatibilityLevel::Backward, &new, &[&old]);
    assert_eq!(reasons.len(), 1, "{reasons:#?}");
    assert_eq!(reasons[0].kind, "READER_FIELD_MISSING_DEFAULT_VALUE");
    assert_eq!(reasons[0].location, "/fields/1");
    assert!(
        reasons[0].message.contains("'com.acme.R.f2'"),
        "{}",
        reasons[0]
    );

    let old = parse(&field(r#"{"type":"array","items":["int","string"]}"#));
    let new = parse(&field(r#"{"type":"array","items":["int"]}"#));
    let reasons = check_compatibility(CompatibilityLevel::Backward, &new, &[&old]);
    assert_eq!(reasons.len(), 1, "{reasons:#?}");
    assert_eq!(reasons[0].kind, "MISSING_UNION_BRANCH");
    assert_eq!(reasons[0].location, "/fields/0/type/items/1");

    let old = parse(&field(r#"{"type":"fixed","name":"H","size":4}"#));
    let new = parse(&field(r#"{"type":"fixed","name":"H","size":8}"#));
    let reasons = check_compatibility(CompatibilityLevel::Backward, &new, &[&old]);
    assert_eq!(reasons[0].location, "/fields/0/type/size");
    let new = parse(&field(SUIT));
    let old = parse(&field(SUIT3));
    let reasons = check_compatibility(CompatibilityLevel::Backward, &new, &[&old]);
    assert_eq!(reasons[0].kind, "MISSING_ENUM_SYMBOLS");
    assert_eq!(reasons[0].location, "/fields/0/type/symbols");

    // One enum used by two fields: each reason names its own field.
    let two = |suit: &str| {
        rec(&format!(
            r#"{{"name":"a","type":{suit}}},{{"name":"b","type":"Suit"}}"#
        ))
    };
    let reasons = check_compatibility(
        CompatibilityLevel::Backward,
        &parse(&two(SUIT)),
        &[&parse(&two(SUIT3))],
    );
    assert_eq!(reasons.len(), 2, "{reasons:#?}");
    assert!(
        reasons[0].message.contains("'com.acme.R.a'")
            && reasons[0].location == "/fields/0/type/symbols"
    );
    assert!(
        reasons[1].message.contains("'com.acme.R.b'")
            && reasons[1].location == "/fields/1/type/symbols"
    );
}

/// v1 {f1}, v2 {f1, f2 = "foo"}, v3 {f1, f2 without default}: v3 reads v2's data (v2 always
/// wrote f2) but not v1's.
#[test]
fn transitive_levels_check_every_version() {
    let v1 = parse(&rec(r#"{"name":"f1","type":"string"}"#));
    let v2 = parse(&rec(
        r#"{"name":"f1","type":"string"},{"name":"f2","type":"string","default":"foo"}"#,
    ));
    let v3 = parse(&rec(
        r#"{"name":"f1","type":"string"},{"name":"f2","type":"string"}"#,
    ));
    use CompatibilityLevel::*;
    assert!(check_compatibility(Backward, &v3, &[&v1, &v2]).is_empty());
    let reasons = check_compatibility(BackwardTransitive, &v3, &[&v1, &v2]);
    assert_eq!(reasons.len(), 1, "{reasons:#?}");
    assert_eq!(reasons[0].kind, "READER_FIELD_MISSING_DEFAULT_VALUE");
    assert!(check_compatibility(BackwardTransitive, &v2, &[&v1]).is_empty());

    // Going back down: v1 after v3, v2. Old readers v2 (has a default) are fine, v3 is not.
    assert!(check_compatibility(Forward, &v1, &[&v3, &v2]).is_empty());
    assert!(!check_compatibility(ForwardTransitive, &v1, &[&v3, &v2]).is_empty());
    assert!(check_compatibility(ForwardTransitive, &v1, &[&v2]).is_empty());

    // FULL checks the latest only; FULL_TRANSITIVE all of them.
    assert!(check_compatibility(Full, &v3, &[&v1, &v2]).is_empty());
    assert!(!check_compatibility(FullTransitive, &v3, &[&v1, &v2]).is_empty());
    let v4 = parse(&rec(
        r#"{"name":"f1","type":"string"},{"name":"f2","type":"string","default":"foo"},{"name":"f3","type":"int","default":0}"#,
    ));
    assert!(check_compatibility(FullTransitive, &v4, &[&v1, &v2]).is_empty());
    assert!(check_compatibility(None, &v1, &[&v3, &v4]).is_empty());
    // A different schema type altogether is never compatible (but NONE allows it).
    assert!(!check_compatibility(Backward, &v4, &[&parse(r#""string""#)]).is_empty());
}

#[test]
fn recursion_terminates_on_deep_mutual_recursion() {
    // A tree whose nodes hold a list of children of the same type, and a changed leaf deep in it.
    let tree = |leaf: &str| {
        format!(
            r#"{{"type":"record","name":"Tree","fields":[{{"name":"label","type":"{leaf}"}},{{"name":"children","type":{{"type":"array","items":"Tree"}}}},{{"name":"index","type":{{"type":"map","values":["null","Tree"]}}}}]}}"#
        )
    };
    let old = parse(&tree("int"));
    let new = parse(&tree("long"));
    assert!(check_compatibility(CompatibilityLevel::Backward, &new, &[&old]).is_empty());
    let reasons = check_compatibility(CompatibilityLevel::Forward, &new, &[&old]);
    assert!(
        reasons
            .iter()
            .any(|r| r.kind == "TYPE_MISMATCH" && r.message.contains("Tree.label")),
        "{reasons:#?}"
    );
}

/// Every schema of the table: its canonical and normalized texts are fixpoints, it reads
/// itself, and the schema reparsed from either text judges like the original.
#[test]
fn canonical_and_normalized_texts_round_trip() {
    for c in cases() {
        for text in [&c.old, &c.new] {
            let s = parse(text);
            let canonical = parse(&s.canonical());
            let normalized = parse(&s.normalized());
            assert_eq!(canonical.canonical(), s.canonical(), "{text}");
            assert_eq!(normalized.normalized(), s.normalized(), "{text}");
            assert_eq!(canonical.normalized(), s.normalized(), "{text}");
            for other in [&s, &canonical, &normalized] {
                assert!(s.can_read(other).is_empty(), "{}: {text}", c.name);
                assert!(other.can_read(&s).is_empty(), "{}: {text}", c.name);
            }
        }
        // Judging the reparsed texts gives the same verdicts.
        let (old, new) = (parse(&c.old), parse(&c.new));
        let (old_n, new_n) = (parse(&old.normalized()), parse(&new.normalized()));
        assert_eq!(
            new.can_read(&old).is_empty(),
            new_n.can_read(&old_n).is_empty(),
            "{}",
            c.name
        );
        assert_eq!(
            old.can_read(&new).is_empty(),
            old_n.can_read(&new_n).is_empty(),
            "{}",
            c.name
        );
    }
}
