//! Payload validation: datums encoded by apache-avro are accepted; truncated, padded,
//! malformed and hostile ones are refused quickly and without large allocations.

use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use weft_schema::{NamedSchema, ParsedSchema, SchemaType};

const ORDER: &str = r#"{"type":"record","name":"Order","namespace":"com.acme","fields":[
    {"name":"id","type":"long"},
    {"name":"customer","type":"string"},
    {"name":"paid","type":"boolean"},
    {"name":"total","type":"double"},
    {"name":"lines","type":{"type":"array","items":{"type":"record","name":"Line","fields":[
        {"name":"sku","type":"string"},{"name":"qty","type":"int"}]}}},
    {"name":"tags","type":{"type":"map","values":"string"}},
    {"name":"status","type":{"type":"enum","name":"Status","symbols":["NEW","PAID","SHIPPED"]}},
    {"name":"hash","type":{"type":"fixed","name":"Hash","size":4}},
    {"name":"note","type":["null","string"],"default":null}
]}"#;

fn schema(text: &str) -> ParsedSchema {
    match ParsedSchema::parse(SchemaType::Avro, text, &[]) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

fn encode(text: &str, value: Value) -> Vec<u8> {
    let schema = apache_avro::Schema::parse_str(text).expect("apache-avro parses the schema");
    GenericDatumWriter::builder(&schema)
        .build()
        .and_then(|w| w.write_value_to_vec(value))
        .expect("apache-avro encodes the value")
}

fn order_value(note: Option<&str>) -> Value {
    Value::Record(vec![
        ("id".into(), Value::Long(42)),
        ("customer".into(), Value::String("Ada".into())),
        ("paid".into(), Value::Boolean(true)),
        ("total".into(), Value::Double(12.5)),
        (
            "lines".into(),
            Value::Array(vec![
                Value::Record(vec![
                    ("sku".into(), Value::String("A-1".into())),
                    ("qty".into(), Value::Int(2)),
                ]),
                Value::Record(vec![
                    ("sku".into(), Value::String("B-2".into())),
                    ("qty".into(), Value::Int(-1)),
                ]),
            ]),
        ),
        (
            "tags".into(),
            Value::Map(
                [("channel".to_owned(), Value::String("web".into()))]
                    .into_iter()
                    .collect(),
            ),
        ),
        ("status".into(), Value::Enum(1, "PAID".into())),
        ("hash".into(), Value::Fixed(4, vec![1, 2, 3, 4])),
        (
            "note".into(),
            match note {
                Some(n) => Value::Union(1, Box::new(Value::String(n.into()))),
                None => Value::Union(0, Box::new(Value::Null)),
            },
        ),
    ])
}

#[test]
fn accepts_datums_encoded_by_apache_avro() {
    let s = schema(ORDER);
    for note in [None, Some("leave at the door"), Some("")] {
        let bytes = encode(ORDER, order_value(note));
        assert_eq!(s.validate(&bytes, &[]), Ok(()), "{bytes:?}");
    }
    for (text, value) in [
        (r#""null""#, Value::Null),
        (r#""int""#, Value::Int(i32::MIN)),
        (r#""long""#, Value::Long(i64::MAX)),
        (r#""string""#, Value::String("héllo".into())),
        (
            r#"{"type":"array","items":"null"}"#,
            Value::Array(vec![Value::Null; 1000]),
        ),
        (
            r#"{"type":"long","logicalType":"timestamp-millis"}"#,
            Value::TimestampMillis(1_700_000_000_000),
        ),
    ] {
        let bytes = encode(text, value);
        assert_eq!(schema(text).validate(&bytes, &[]), Ok(()), "{text}");
    }
}

#[test]
fn refuses_truncated_and_trailing_bytes() {
    let s = schema(ORDER);
    let bytes = encode(ORDER, order_value(Some("fragile")));
    // Every strict prefix is refused (a truncated string must not pass as null).
    for cut in 0..bytes.len() {
        assert!(
            s.validate(&bytes[..cut], &[]).is_err(),
            "prefix of {cut} bytes accepted"
        );
    }
    let mut padded = bytes.clone();
    padded.push(0);
    let err = s
        .validate(&padded, &[])
        .expect_err("trailing byte accepted");
    assert!(err.contains("trailing"), "{err}");
}

#[test]
fn refuses_malformed_datums_with_a_reason() {
    let cases: [(&str, &[u8], &str); 8] = [
        (r#""boolean""#, &[2], "neither 0 nor 1"),
        (
            r#""int""#,
            &[0xff, 0xff, 0xff, 0xff, 0x7f],
            "does not fit an int",
        ),
        (r#""long""#, &[0xff; 11], "varint"),
        (
            r#""string""#,
            &[4, 0xff],
            "claims 2 bytes but only 1 remain",
        ),
        (r#""string""#, &[4, 0xff], "string"),
        (r#"["null","int"]"#, &[4], "branch 2"),
        (
            r#"{"type":"enum","name":"E","symbols":["A","B"]}"#,
            &[4],
            "symbol index 2",
        ),
        (r#""string""#, &[2, 0xc3], "UTF-8"),
    ];
    for (text, payload, reason) in cases {
        let err = schema(text).validate(payload, &[]).expect_err(text);
        assert!(
            err.contains(reason),
            "{text}: {err:?} should say {reason:?}"
        );
    }
    // The reason says where in the datum: field, element, byte.
    let nested = r#"{"type":"record","name":"R","fields":[{"name":"id","type":"int"},{"name":"xs","type":{"type":"array","items":{"type":"enum","name":"E","symbols":["A"]}}}]}"#;
    let err = schema(nested)
        .validate(&[2, 4, 0, 2, 0], &[])
        .expect_err("bad symbol");
    assert!(err.contains("enum at /xs/1 (byte 3)"), "{err}");
    let err = schema(r#""string""#)
        .validate(&[4, 0xc3, 0x28], &[])
        .expect_err("bad utf-8");
    assert!(err.contains("UTF-8") || err.contains("claims"), "{err}");
    let err = schema(r#""string""#)
        .validate(&[4, 0xc3, 0x28, 0x41], &[])
        .expect_err("bad utf-8");
    assert!(err.contains("UTF-8"), "{err}");
    let err = schema(r#"{"type":"fixed","name":"F","size":4}"#)
        .validate(&[1, 2, 3], &[])
        .expect_err("short");
    assert!(err.contains("fixed"), "{err}");
}

/// Zigzag varint of a long.
fn varint(n: i64) -> Vec<u8> {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    let mut out = Vec::new();
    loop {
        if z < 0x80 {
            out.push(z as u8);
            return out;
        }
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
}

#[test]
fn hostile_lengths_are_refused_before_allocating() {
    // Claims of 2^31 and 2^62 elements or bytes in a handful of bytes.
    for claim in [1i64 << 31, 1i64 << 62, i64::MAX] {
        let mut payload = varint(claim);
        payload.push(0);
        for text in [
            r#""string""#,
            r#""bytes""#,
            r#"{"type":"array","items":"long"}"#,
            r#"{"type":"array","items":"null"}"#,
            r#"{"type":"map","values":"null"}"#,
        ] {
            let err = schema(text).validate(&payload, &[]).expect_err(text);
            assert!(
                err.contains("claims") || err.contains("more than this payload"),
                "{text}: {err}"
            );
        }
    }
    // Many small blocks of zero-size items add up: 1000 blocks of 1000 nulls.
    let mut payload = Vec::new();
    for _ in 0..1000 {
        payload.extend(varint(1000));
    }
    payload.push(0);
    let err = schema(r#"{"type":"array","items":"null"}"#)
        .validate(&payload, &[])
        .expect_err("1M nulls");
    assert!(err.contains("more than this payload"), "{err}");
    // Negative block count with a negative byte size.
    let mut payload = varint(-2);
    payload.extend(varint(-5));
    let err = schema(r#"{"type":"array","items":"int"}"#)
        .validate(&payload, &[])
        .expect_err("negative size");
    assert!(err.contains("negative block size"), "{err}");
    // A schema whose datums never end, and one nested too deeply.
    let endless = r#"{"type":"record","name":"A","fields":[{"name":"a","type":"A"}]}"#;
    let err = schema(endless).validate(&[], &[]).expect_err("endless");
    assert!(err.contains("nested deeper"), "{err}");
    let list = r#"{"type":"record","name":"L","fields":[{"name":"next","type":["null","L"]}]}"#;
    let mut deep = vec![2u8; 10_000];
    deep.push(0);
    let err = schema(list).validate(&deep, &[]).expect_err("deep");
    assert!(err.contains("nested deeper"), "{err}");
    let mut shallow = vec![2u8; 50];
    shallow.push(0);
    assert_eq!(schema(list).validate(&shallow, &[]), Ok(()));
}

#[test]
fn validates_with_types_from_references() {
    let address = r#"{"type":"record","name":"Address","namespace":"com.acme","fields":[{"name":"city","type":"string"}]}"#;
    let customer = r#"{"type":"record","name":"Customer","namespace":"com.acme","fields":[{"name":"home","type":"Address"}]}"#;
    let refs = [NamedSchema {
        name: "com.acme.Address".to_owned(),
        text: address.to_owned(),
    }];
    let s = match ParsedSchema::parse(SchemaType::Avro, customer, &refs) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    // {home: {city: "Paris"}}
    let payload = [10, b'P', b'a', b'r', b'i', b's'];
    assert_eq!(s.validate(&payload, &[]), Ok(()));
    assert!(s.validate(&payload[..5], &[]).is_err());
}

/// Differential check against apache-avro's decoder: mutate valid datums at random and
/// compare. Whatever our validation accepts, apache-avro must decode in full (we are never
/// more lenient); what apache-avro decodes in full we accept too, except where apache-avro
/// reads a string cut short by the end of the data as `null` (it does, we do not).
#[test]
fn agrees_with_apache_avro_on_mutated_datums() {
    let s = schema(ORDER);
    let decoder = apache_avro::Schema::parse_str(ORDER).expect("apache-avro parses ORDER");
    let seeds = [
        encode(ORDER, order_value(None)),
        encode(ORDER, order_value(Some("x"))),
    ];
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let (mut accepted, mut refused) = (0, 0);
    for round in 0..3000 {
        let mut bytes = seeds[round % 2].clone();
        for _ in 0..=(next() % 3) {
            let at = (next() as usize) % bytes.len().max(1);
            match next() % 4 {
                0 if !bytes.is_empty() => bytes[at] = next() as u8,
                1 if !bytes.is_empty() => bytes[at] ^= 1 << (next() % 8),
                2 => bytes.insert(at.min(bytes.len()), next() as u8),
                _ if !bytes.is_empty() => {
                    bytes.remove(at);
                }
                _ => {}
            }
        }
        let ours = s.validate(&bytes, &[]);
        let mut rest = &bytes[..];
        let theirs = apache_avro::reader::datum::GenericDatumReader::builder(&decoder)
            .build()
            .and_then(|r| r.read_value(&mut rest))
            .map(|_| rest.is_empty());
        match (&ours, &theirs) {
            (Ok(()), Ok(true)) => accepted += 1,
            (Ok(()), _) => panic!("we accept {bytes:?} but apache-avro says {theirs:?}"),
            (Err(_), Ok(true)) => {
                // Only apache-avro's lenient end of data may explain this.
                let err = ours.as_ref().err().cloned().unwrap_or_default();
                assert!(
                    err.contains("claims") || err.contains("ends inside"),
                    "{bytes:?}: {err}"
                );
                refused += 1;
            }
            (Err(_), _) => refused += 1,
        }
    }
    // The mutations must exercise both outcomes for the comparison to mean anything.
    assert!(
        accepted > 100 && refused > 100,
        "accepted {accepted}, refused {refused}"
    );
}
