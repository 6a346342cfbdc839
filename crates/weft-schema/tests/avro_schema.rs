//! Parsing Avro schemas: refused inputs with their reasons, the canonical and normalized
//! texts, and references to named types of other schemas.

use weft_schema::{Error, NamedSchema, ParsedSchema, SchemaType};

fn parse(text: &str) -> Result<ParsedSchema, Error> {
    ParsedSchema::parse(SchemaType::Avro, text, &[])
}

fn ok(text: &str) -> ParsedSchema {
    match parse(text) {
        Ok(s) => s,
        Err(e) => panic!("should parse: {e}\n{text}"),
    }
}

/// `text` is refused as invalid with a message containing every one of `words`.
fn refused(text: &str, words: &[&str]) {
    match parse(text) {
        Ok(s) => panic!("should be refused: {text}\nparsed as {}", s.canonical()),
        Err(Error::Invalid {
            schema_type,
            message,
        }) => {
            assert_eq!(schema_type, SchemaType::Avro);
            for w in words {
                assert!(
                    message.contains(w),
                    "message {message:?} should contain {w:?} (schema {text})"
                );
            }
        }
        Err(other) => panic!("expected Invalid for {text}, got {other:?}"),
    }
}

fn rec(fields: &str) -> String {
    format!(r#"{{"type":"record","name":"R","namespace":"com.acme","fields":[{fields}]}}"#)
}

#[test]
fn bad_inputs_are_refused_with_where_and_why() {
    let cases: Vec<(String, Vec<&str>)> = vec![
        // Not JSON, not a schema.
        (r#"{"type":"record","#.to_owned(), vec!["not JSON"]),
        ("".to_owned(), vec!["not JSON"]),
        ("42".to_owned(), vec!["a schema must be"]),
        (r#"{"name":"x"}"#.to_owned(), vec!["no \"type\""]),
        // Unknown types.
        (
            r#"{"type":"record","name":"E","fields":[]}"#.replace("record", "error"),
            vec!["error"],
        ),
        // Bad defaults.
        (
            rec(r#"{"name":"a","type":"int","default":"five"}"#),
            vec!["/fields/0/default", "\"a\"", "integer"],
        ),
        (
            rec(r#"{"name":"a","type":"int","default":3000000000}"#),
            vec!["\"a\""],
        ),
        (
            rec(r#"{"name":"a","type":"int","default":1.5}"#),
            vec!["\"a\""],
        ),
        (
            rec(r#"{"name":"a","type":"string","default":null}"#),
            vec!["\"a\"", "string"],
        ),
        (
            rec(r#"{"name":"a","type":"boolean","default":0}"#),
            vec!["\"a\"", "boolean"],
        ),
        (
            rec(r#"{"name":"a","type":["null","string"],"default":"x"}"#),
            vec!["\"a\"", "first branch"],
        ),
        (
            rec(r#"{"name":"a","type":["string","null"],"default":null}"#),
            vec!["\"a\"", "first branch"],
        ),
        (
            rec(r#"{"name":"a","type":{"type":"array","items":"int"},"default":["x"]}"#),
            vec!["\"a\""],
        ),
        (
            rec(r#"{"name":"a","type":{"type":"map","values":"int"},"default":[]}"#),
            vec!["\"a\"", "object"],
        ),
        (
            rec(r#"{"name":"a","type":{"type":"enum","name":"E","symbols":["A"]},"default":"B"}"#),
            vec!["\"a\"", "symbols"],
        ),
        (
            rec(r#"{"name":"a","type":{"type":"fixed","name":"F","size":2},"default":"abc"}"#),
            vec!["\"a\"", "2 bytes"],
        ),
        (
            rec(r#"{"name":"a","type":"bytes","default":"\u0100"}"#),
            vec!["\"a\""],
        ),
        (
            rec(
                r#"{"name":"a","type":{"type":"record","name":"P","fields":[{"name":"x","type":"int"}]},"default":{}}"#,
            ),
            vec!["\"a\"", "\"x\""],
        ),
        // A default holding a value of the record being defined is checked against all of it.
        (
            r#"{"type":"record","name":"N","fields":[{"name":"kids","type":{"type":"array","items":"N"},"default":[{"kids":[]}]},{"name":"x","type":"int"}]}"#.to_owned(),
            vec!["\"kids\"", "\"x\""],
        ),
        // Duplicates.
        (
            rec(r#"{"name":"a","type":"int"},{"name":"a","type":"string"}"#),
            vec!["two fields named \"a\"", "/fields/1"],
        ),
        (
            r#"{"type":"enum","name":"E","symbols":["A","A"]}"#.to_owned(),
            vec!["\"A\" twice"],
        ),
        (
            rec(r#"{"name":"a","type":["int","int"]}"#),
            vec!["duplicate int", "/fields/0/type/1"],
        ),
        (
            rec(r#"{"name":"a","type":["null",["int"]]}"#),
            vec!["union"],
        ),
        (
            rec(
                r#"{"name":"a","type":{"type":"fixed","name":"F","size":1}},{"name":"b","type":{"type":"fixed","name":"F","size":2}}"#,
            ),
            vec!["com.acme.F is defined twice"],
        ),
        // Invalid names.
        (
            r#"{"type":"record","name":"1R","fields":[]}"#.to_owned(),
            vec!["\"1R\""],
        ),
        (
            r#"{"type":"record","name":"R","namespace":"com..acme","fields":[]}"#.to_owned(),
            vec!["com..acme"],
        ),
        (
            rec(r#"{"name":"a-b","type":"int"}"#),
            vec!["\"a-b\"", "/fields/0"],
        ),
        (
            r#"{"type":"enum","name":"E","symbols":["ok","not ok"]}"#.to_owned(),
            vec!["not ok"],
        ),
        (
            r#"{"type":"fixed","name":"int","size":4}"#.to_owned(),
            vec!["primitive"],
        ),
        // Missing or malformed parts.
        (
            r#"{"type":"record","name":"R"}"#.to_owned(),
            vec!["no \"fields\""],
        ),
        (rec(r#""a""#), vec!["not an object"]),
        (rec(r#"{"name":"a"}"#), vec!["no \"type\""]),
        (r#"{"type":"array"}"#.to_owned(), vec!["items"]),
        (r#"{"type":"map"}"#.to_owned(), vec!["values"]),
        (r#"{"type":"fixed","name":"F"}"#.to_owned(), vec!["size"]),
        (
            r#"{"type":"fixed","name":"F","size":-1}"#.to_owned(),
            vec!["size"],
        ),
        (
            r#"{"type":"enum","name":"E","symbols":["A"],"default":"B"}"#.to_owned(),
            vec!["\"B\""],
        ),
        (
            rec(r#"{"name":"a","type":"int","order":"sideways"}"#),
            vec!["order"],
        ),
        (
            r#"{"type":"string","logicalType":7}"#.to_owned(),
            vec!["logicalType"],
        ),
    ];
    for (text, words) in &cases {
        refused(text, words);
    }
    // An unknown type name is a name that resolves nowhere.
    for (text, name) in [
        (r#""integer""#.to_owned(), "integer"),
        (rec(r#"{"name":"a","type":"strng"}"#), "com.acme.strng"),
        (
            rec(r#"{"name":"a","type":{"type":"Strng"}}"#),
            "com.acme.Strng",
        ),
    ] {
        match parse(&text) {
            Err(Error::UnresolvedReference { reference, .. }) => assert_eq!(reference, name),
            other => panic!("{text}: {other:?}"),
        }
    }
}

#[test]
fn valid_schemas_parse() {
    for text in [
        r#""string""#,
        r#"{"type":"int","logicalType":"date"}"#,
        r#"["null","string",{"type":"array","items":"int"},{"type":"map","values":"int"}]"#,
        // Union default matching the first branch; nested defaults may use any branch.
        &rec(r#"{"name":"a","type":["null","string"],"default":null}"#),
        &rec(r#"{"name":"a","type":["string","null"],"default":"x"}"#),
        &rec(r#"{"name":"a","type":{"type":"array","items":["null","int"]},"default":[null,1]}"#),
        // Defaults of every kind.
        &rec(
            r#"{"name":"b","type":"bytes","default":"\u00ff\u0000"},{"name":"f","type":{"type":"fixed","name":"F","size":2},"default":"ab"},{"name":"d","type":"double","default":1},{"name":"l","type":"long","default":9007199254740993}"#,
        ),
        &rec(
            r#"{"name":"p","type":{"type":"record","name":"P","fields":[{"name":"x","type":"int","default":1}]},"default":{}}"#,
        ),
        // Defaults of logical types are those of their underlying types.
        &rec(
            r#"{"name":"d","type":{"type":"fixed","name":"Du","size":12,"logicalType":"duration"},"default":"\u0000\u0000\u0000\u0000\u0000\u0000\u0000\u0000\u0000\u0000\u0000\u0000"}"#,
        ),
        &rec(
            r#"{"name":"b","type":{"type":"bytes","logicalType":"big-decimal"},"default":"\u0000"}"#,
        ),
        &rec(
            r#"{"name":"m","type":{"type":"bytes","logicalType":"decimal","precision":4,"scale":2},"default":"\u0000"}"#,
        ),
        &rec(r#"{"name":"t","type":{"type":"long","logicalType":"timestamp-millis"},"default":0}"#),
        &rec(
            r#"{"name":"u","type":{"type":"string","logicalType":"uuid"},"default":"not checked"}"#,
        ),
        r#"{"type":"record","name":"N","fields":[{"name":"kids","type":{"type":"array","items":"N"},"default":[{"kids":[],"x":1}]},{"name":"x","type":"int"}]}"#,
        // Invalid logical types are ignored, as Java does.
        r#"{"type":"bytes","logicalType":"decimal","precision":2,"scale":5}"#,
        r#"{"type":"string","logicalType":"no-such-thing","x-custom":[1,2]}"#,
        // A recursive type and a name in the null namespace used inside a namespace.
        r#"{"type":"record","name":"Node","fields":[{"name":"kids","type":{"type":"array","items":"Node"}}]}"#,
    ] {
        ok(text);
    }
}

#[test]
fn canonical_ignores_whitespace_and_key_order() {
    let a = ok(
        r#"{"type":"record","name":"Order","namespace":"com.acme","doc":"an order","fields":[
        {"name":"id","type":"long","doc":"key"},
        {"name":"lines","type":{"type":"array","items":{"type":"record","name":"Line","fields":[{"name":"sku","type":"string"}]}},"default":[]},
        {"name":"status","type":{"type":"enum","name":"Status","symbols":["NEW","DONE"],"default":"NEW"}},
        {"name":"ts","type":{"type":"long","logicalType":"timestamp-millis","x-b":1,"x-a":{"k2":1,"k1":2}}}
    ]}"#,
    );
    let b = ok(r#"{
        "fields" : [
            {"doc":"key", "type":"long", "name":"id"},
            {"default":[], "type":{"items":{"fields":[{"type":"string","name":"sku"}],"name":"Line","type":"record"},"type":"array"}, "name":"lines"},
            {"type":{"default":"NEW","symbols":["NEW","DONE"],"name":"Status","type":"enum"},"name":"status"},
            {"name":"ts","type":{"x-a":{"k1":2,"k2":1},"x-b":1,"logicalType":"timestamp-millis","type":"long"}}
        ],
        "doc" : "an order", "namespace":"com.acme", "name":"Order", "type":"record"
    }"#);
    assert_eq!(a.canonical(), b.canonical());
    assert_eq!(a.normalized(), b.normalized());
    // Java's key order, names relative to the enclosing namespace, props sorted.
    assert_eq!(
        a.canonical(),
        r#"{"type":"record","name":"Order","namespace":"com.acme","doc":"an order","fields":[{"name":"id","type":"long","doc":"key"},{"name":"lines","type":{"type":"array","items":{"type":"record","name":"Line","fields":[{"name":"sku","type":"string"}]}},"default":[]},{"name":"status","type":{"type":"enum","name":"Status","symbols":["NEW","DONE"],"default":"NEW"}},{"name":"ts","type":{"type":"long","logicalType":"timestamp-millis","x-a":{"k1":2,"k2":1},"x-b":1}}]}"#
    );
    // The canonical text is itself a schema that canonicalizes to itself.
    assert_eq!(ok(&a.canonical()).canonical(), a.canonical());
    assert_eq!(ok(&a.normalized()).normalized(), a.normalized());
}

#[test]
fn canonical_keeps_what_changes_meaning() {
    let base = rec(r#"{"name":"a","type":"int","default":1},{"name":"b","type":"string"}"#);
    let variants = [
        rec(r#"{"name":"b","type":"string"},{"name":"a","type":"int","default":1}"#), // field order
        rec(r#"{"name":"a","type":"int","default":2},{"name":"b","type":"string"}"#), // default
        rec(r#"{"name":"a","type":"int"},{"name":"b","type":"string"}"#),             // no default
        rec(r#"{"name":"a","type":"int","default":1,"doc":"d"},{"name":"b","type":"string"}"#), // doc
        rec(
            r#"{"name":"a","type":"int","default":1,"aliases":["x"]},{"name":"b","type":"string"}"#,
        ), // alias
        rec(
            r#"{"name":"a","type":"int","default":1,"order":"descending"},{"name":"b","type":"string"}"#,
        ), // order
        rec(
            r#"{"name":"a","type":{"type":"int","logicalType":"date"},"default":1},{"name":"b","type":"string"}"#,
        ), // logical
        rec(r#"{"name":"a","type":"int","default":1,"x-prop":true},{"name":"b","type":"string"}"#), // custom prop
        rec(r#"{"name":"a","type":"long","default":1},{"name":"b","type":"string"}"#), // type
        base.replace("com.acme", "com.other"),                                         // namespace
    ];
    let canonical = ok(&base).canonical();
    for v in &variants {
        assert_ne!(ok(v).canonical(), canonical, "{v}");
    }
}

#[test]
fn normalized_spells_names_one_way() {
    // Namespace inherited vs explicit vs full name; {"type":"int"} vs "int"; aliases order;
    // "order":"ascending" written or not.
    let a = ok(
        r#"{"type":"record","name":"R","namespace":"com.acme","aliases":["Old","Older"],"fields":[
        {"name":"e","type":{"type":"enum","name":"E","symbols":["X"]}},
        {"name":"e2","type":"E"},
        {"name":"i","type":"int","order":"ascending"}]}"#,
    );
    let b = ok(
        r#"{"type":"record","name":"com.acme.R","aliases":["com.acme.Older","com.acme.Old"],"fields":[
        {"name":"e","type":{"type":"enum","name":"E","namespace":"com.acme","symbols":["X"]}},
        {"name":"e2","type":"com.acme.E"},
        {"name":"i","type":{"type":"int"}}]}"#,
    );
    assert_ne!(a.canonical(), b.canonical());
    assert_eq!(a.normalized(), b.normalized());
    assert_eq!(
        a.normalized(),
        r#"{"name":"com.acme.R","type":"record","fields":[{"name":"e","type":{"name":"com.acme.E","type":"enum","symbols":["X"]}},{"name":"e2","type":"com.acme.E"},{"name":"i","type":"int"}],"aliases":["com.acme.Old","com.acme.Older"]}"#
    );
    // A type in the null namespace inside a namespaced record keeps its namespace.
    let c = ok(
        r#"{"type":"record","name":"R","namespace":"com.acme","fields":[
        {"name":"g","type":{"type":"fixed","name":"G","namespace":"","size":1}},
        {"name":"g2","type":".G"}]}"#,
    );
    let reparsed = ok(&c.normalized());
    assert_eq!(reparsed.normalized(), c.normalized());
    assert!(
        c.normalized().contains(r#""name":"G","namespace":"""#),
        "{}",
        c.normalized()
    );
    assert_eq!(ok(&c.canonical()).canonical(), c.canonical());
}

fn named(name: &str, text: &str) -> NamedSchema {
    NamedSchema {
        name: name.to_owned(),
        text: text.to_owned(),
    }
}

const ADDRESS: &str = r#"{"type":"record","name":"Address","namespace":"com.acme","fields":[{"name":"city","type":"string"},{"name":"country","type":"com.acme.Country"}]}"#;
const COUNTRY: &str =
    r#"{"type":"enum","name":"Country","namespace":"com.acme","symbols":["FR","DE"]}"#;
const CUSTOMER: &str = r#"{"type":"record","name":"Customer","namespace":"com.acme","fields":[{"name":"name","type":"string"},{"name":"home","type":"Address"},{"name":"work","type":["null","com.acme.Address"],"default":null}]}"#;

#[test]
fn references_resolve_named_types_of_other_schemas() {
    let refs = [
        named("com.acme.Country", COUNTRY),
        named("com.acme.Address", ADDRESS),
    ];
    let customer = match ParsedSchema::parse(SchemaType::Avro, CUSTOMER, &refs) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    // Referenced types stay references in the canonical text, as Confluent prints them.
    assert_eq!(
        customer.canonical(),
        r#"{"type":"record","name":"Customer","namespace":"com.acme","fields":[{"name":"name","type":"string"},{"name":"home","type":"Address"},{"name":"work","type":["null","Address"],"default":null}]}"#
    );
    assert!(
        customer
            .normalized()
            .contains(r#""type":"com.acme.Address""#),
        "{}",
        customer.normalized()
    );
    // Dependencies in the other order resolve too.
    let reversed = [
        named("com.acme.Address", ADDRESS),
        named("com.acme.Country", COUNTRY),
    ];
    let again = match ParsedSchema::parse(SchemaType::Avro, CUSTOMER, &reversed) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(again.canonical(), customer.canonical());
    // A dependency listed twice (two references share it) counts once.
    let twice = [
        named("com.acme.Country", COUNTRY),
        named("com.acme.Address", ADDRESS),
        named("com.acme.Country", COUNTRY),
    ];
    assert!(ParsedSchema::parse(SchemaType::Avro, CUSTOMER, &twice).is_ok());
    // Compatibility looks through references: a changed referenced enum is seen.
    let country2 = COUNTRY.replace(r#""DE""#, r#""DE","IT""#);
    let refs2 = [
        named("com.acme.Country", &country2),
        named("com.acme.Address", ADDRESS),
    ];
    let customer2 = match ParsedSchema::parse(SchemaType::Avro, CUSTOMER, &refs2) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    assert!(customer2.can_read(&customer).is_empty());
    let reasons = customer.can_read(&customer2);
    assert!(
        reasons
            .iter()
            .any(|r| r.kind == "MISSING_ENUM_SYMBOLS" && r.message.contains("IT")),
        "{reasons:#?}"
    );
}

#[test]
fn unresolved_names_are_errors() {
    // No references at all.
    assert_eq!(
        parse(CUSTOMER).err(),
        Some(Error::UnresolvedReference {
            schema_type: SchemaType::Avro,
            reference: "com.acme.Address".to_owned(),
        })
    );
    // Address given, but not the Country it needs.
    let err = ParsedSchema::parse(
        SchemaType::Avro,
        CUSTOMER,
        &[named("com.acme.Address", ADDRESS)],
    )
    .err();
    match err {
        Some(Error::Invalid { message, .. }) => {
            assert!(message.contains("com.acme.Country"), "{message}");
            assert!(message.contains("com.acme.Address"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // A reference that is itself invalid is reported as such, naming it.
    let err = ParsedSchema::parse(
        SchemaType::Avro,
        CUSTOMER,
        &[named("com.acme.Address", "{not json")],
    )
    .err();
    assert!(
        matches!(&err, Some(Error::Invalid { message, .. }) if message.contains("com.acme.Address")),
        "{err:?}"
    );
    // A name defined by the schema and again by a reference.
    let err = ParsedSchema::parse(
        SchemaType::Avro,
        COUNTRY,
        &[named("com.acme.Country", COUNTRY)],
    )
    .err();
    assert!(
        matches!(&err, Some(Error::Invalid { message, .. }) if message.contains("defined twice")),
        "{err:?}"
    );
    // A misspelt type in the schema itself.
    assert!(matches!(
        parse(&rec(r#"{"name":"a","type":"Adress"}"#)),
        Err(Error::UnresolvedReference { reference, .. }) if reference == "com.acme.Adress"
    ));
}

/// `R0 <- R1 <- … <- R{n-1}`, each record holding the previous one, as references; and a
/// schema using the last.
fn chain(n: usize) -> (String, Vec<NamedSchema>) {
    let mut refs = vec![named(
        "R0",
        r#"{"type":"record","name":"R0","fields":[{"name":"x","type":"int"}]}"#,
    )];
    for i in 1..n {
        let text = format!(
            r#"{{"type":"record","name":"R{i}","fields":[{{"name":"x","type":"R{}"}}]}}"#,
            i - 1
        );
        refs.push(named(&format!("R{i}"), &text));
    }
    let main = format!(
        r#"{{"type":"record","name":"Main","fields":[{{"name":"x","type":"R{}"}}]}}"#,
        n - 1
    );
    (main, refs)
}

#[test]
fn reference_chains_resolve_in_any_order_and_are_bounded_in_depth() {
    // Dependencies last: each reference waits for the one defining its name.
    let (main, mut refs) = chain(60);
    refs.reverse();
    let s = match ParsedSchema::parse(SchemaType::Avro, &main, &refs) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    assert!(s.can_read(&s).is_empty());
    // Too deep across references: refused before any recursive walk could overflow.
    let (main, refs) = chain(300);
    match ParsedSchema::parse(SchemaType::Avro, &main, &refs) {
        Err(Error::Invalid { message, .. }) => {
            assert!(message.contains("nest more than 64"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    // A missing link is reported as the reference that needs it.
    let (main, mut refs) = chain(10);
    refs.remove(4);
    match ParsedSchema::parse(SchemaType::Avro, &main, &refs) {
        Err(Error::Invalid { message, .. }) => {
            assert!(
                message.contains("\"R5\"") && message.contains("\"R4\""),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn parsed_schemas_are_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<weft_schema::avro::AvroSchema>();
}
