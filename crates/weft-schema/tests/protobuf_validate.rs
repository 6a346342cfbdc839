//! Payload validation against Protobuf schemas. Good payloads are encoded with
//! prost-reflect's `DynamicMessage` from an independently compiled copy of the schema; bad
//! ones are garbage, truncated, of another message, or hostile.

use std::process::Command;

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MapKey, Value};
use weft_schema::protobuf::ProtobufSchema;

const SHOP: &str = r#"syntax = "proto3";
package shop;
message Order {
  string id = 1;
  repeated Line lines = 2;
  map<string, int64> totals = 3;
  oneof payment { string card = 4; bytes token = 5; }
  repeated sint32 deltas = 6;
  Order parent = 7;
  message Line { string sku = 1; uint32 qty = 2; }
}
message Cancelled { string order_id = 1; fixed64 at = 2; }
"#;

const LEGACY: &str = r#"syntax = "proto2";
package legacy;
message Event {
  required string id = 1;
  optional Detail detail = 2;
  message Detail { required int32 code = 1; optional string text = 2; }
}
"#;

/// The same schema compiled on its own, to encode payloads with.
fn pool(name: &str, text: &str) -> DescriptorPool {
    let file = protox::file::File::from_source(name, text).expect("parses");
    let mut pool = DescriptorPool::new();
    pool.add_file_descriptor_proto(file.file_descriptor_proto().clone())
        .expect("compiles");
    pool
}

fn order_payload() -> Vec<u8> {
    let pool = pool("shop.proto", SHOP);
    let order = pool.get_message_by_name("shop.Order").expect("Order");
    let line = pool.get_message_by_name("shop.Order.Line").expect("Line");
    let mut msg = DynamicMessage::new(order.clone());
    msg.set_field_by_name("id", Value::String("o-1".into()));
    let mut l = DynamicMessage::new(line);
    l.set_field_by_name("sku", Value::String("sku-9".into()));
    l.set_field_by_name("qty", Value::U32(3));
    msg.set_field_by_name("lines", Value::List(vec![Value::Message(l)]));
    msg.set_field_by_name(
        "totals",
        Value::Map([(MapKey::String("eur".into()), Value::I64(1250))].into()),
    );
    msg.set_field_by_name("token", Value::Bytes(vec![1, 2, 3].into()));
    msg.set_field_by_name("deltas", Value::List(vec![Value::I32(-5), Value::I32(7)]));
    let mut parent = DynamicMessage::new(order);
    parent.set_field_by_name("id", Value::String("o-0".into()));
    msg.set_field_by_name("parent", Value::Message(parent));
    msg.encode_to_vec()
}

#[test]
fn accepts_what_the_schema_encodes() {
    let schema = ProtobufSchema::parse(SHOP, &[]).expect("parses");
    let payload = order_payload();
    assert!(payload.len() > 20);
    assert_eq!(schema.validate(&payload, &[]), Ok(()));
    assert_eq!(schema.validate(&payload, &[0]), Ok(()));
    // The empty message is a valid message of every proto3 type.
    assert_eq!(schema.validate(&[], &[0]), Ok(()));
}

#[test]
fn message_indexes_select_the_message() {
    let schema = ProtobufSchema::parse(SHOP, &[]).expect("parses");
    let pool = pool("shop.proto", SHOP);

    let mut cancelled = DynamicMessage::new(
        pool.get_message_by_name("shop.Cancelled")
            .expect("Cancelled"),
    );
    cancelled.set_field_by_name("order_id", Value::String("o-1".into()));
    cancelled.set_field_by_name("at", Value::U64(1_700_000_000_000));
    let payload = cancelled.encode_to_vec();
    assert_eq!(schema.validate(&payload, &[1]), Ok(()));
    // Read as an Order, field 2 is a fixed64 where `lines` is length-delimited.
    let err = schema.validate(&payload, &[0]).expect_err("refused");
    assert!(err.contains("shop.Order"), "{err}");

    // Nested: [0, 0] is Order.Line (the map entry for `totals` does not count).
    let mut line = DynamicMessage::new(pool.get_message_by_name("shop.Order.Line").expect("Line"));
    line.set_field_by_name("qty", Value::U32(2));
    let payload = line.encode_to_vec();
    assert_eq!(schema.validate(&payload, &[0, 0]), Ok(()));

    for bad in [vec![2], vec![0, 1], vec![1, 0], vec![0, 0, 0]] {
        let err = schema.validate(&payload, &bad).expect_err("refused");
        assert!(err.contains("out of range"), "{bad:?}: {err}");
    }
}

#[test]
fn refuses_garbage_and_truncated_payloads() {
    let schema = ProtobufSchema::parse(SHOP, &[]).expect("parses");
    let payload = order_payload();
    let mut failures = Vec::new();
    // Every strict prefix that cuts a field short must be refused.
    let mut refused = 0;
    for cut in 1..payload.len() {
        if schema.validate(&payload[..cut], &[]).is_err() {
            refused += 1;
        }
    }
    // Cuts at a field boundary are valid (shorter) messages; most cuts are not.
    assert!(
        refused > payload.len() / 2,
        "{refused} of {}",
        payload.len()
    );
    let truncated = &payload[..payload.len() - 1];
    let err = schema.validate(truncated, &[]).expect_err("refused");
    assert!(err.contains("shop.Order"), "{err}");

    for garbage in [
        vec![0xff; 16],
        vec![0x0a, 0x05, b'a'],        // string claims 5 bytes, has 1
        vec![0x0f],                    // wire type 7 does not exist
        vec![0x00, 0x01],              // field number 0
        vec![0x0a, 0x02, 0xc3, 0x28],  // `id` is not UTF-8
        vec![0x12, 0x03, 0x08, 0x96],  // Line whose varint runs off its end
        b"{\"id\":\"json\"}".to_vec(), // JSON is not protobuf
    ] {
        match schema.validate(&garbage, &[]) {
            Err(e) if e.contains("shop.Order") => {}
            other => failures.push(format!("{garbage:02x?}: {other:?}")),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn proto2_required_fields_must_be_present() {
    let schema = ProtobufSchema::parse(LEGACY, &[]).expect("parses");
    let pool = pool("legacy.proto", LEGACY);
    let event = pool.get_message_by_name("legacy.Event").expect("Event");
    let detail = pool
        .get_message_by_name("legacy.Event.Detail")
        .expect("Detail");

    let mut ok = DynamicMessage::new(event.clone());
    ok.set_field_by_name("id", Value::String("e".into()));
    assert_eq!(schema.validate(&ok.encode_to_vec(), &[]), Ok(()));

    let missing_top = DynamicMessage::new(event.clone());
    let err = schema
        .validate(&missing_top.encode_to_vec(), &[])
        .expect_err("refused");
    assert!(err.contains("Event.id"), "{err}");

    let mut missing_nested = ok.clone();
    let mut d = DynamicMessage::new(detail);
    d.set_field_by_name("text", Value::String("no code".into()));
    missing_nested.set_field_by_name("detail", Value::Message(d));
    let err = schema
        .validate(&missing_nested.encode_to_vec(), &[])
        .expect_err("refused");
    assert!(err.contains("detail.Detail.code"), "{err}");
}

/// Payloads that claim far more than they carry, or nest without end.
fn hostile_payloads() -> Vec<(&'static str, Vec<u8>)> {
    // The same with every length a lie.
    let mut lying = Vec::new();
    for _ in 0..100_000 {
        lying.extend_from_slice(&[0x3a, 0xff, 0xff, 0x03]);
    }
    vec![
        // `id` (field 1, length-delimited) claiming 2 GiB, then 2^64 - 1 bytes.
        (
            "claims 2 GiB",
            vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x07, b'x'],
        ),
        (
            "claims 16 EiB",
            vec![
                0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, b'x',
            ],
        ),
        // Packed `deltas` (field 6) claiming 1 GiB.
        (
            "packed claims 1 GiB",
            vec![0x32, 0x80, 0x80, 0x80, 0x80, 0x04, 0x01],
        ),
        // `parent` (field 7) nested deeper than any decoder's recursion limit, well formed.
        ("well-formed 1000 deep", parent_chain(1000)),
        ("well-formed 100k deep", parent_chain(100_000)),
        ("100k levels claiming 64 KiB each", lying),
    ]
}

/// `depth` Orders each the `parent` of the next, built inside out in linear time.
fn parent_chain(depth: usize) -> Vec<u8> {
    let mut headers = Vec::with_capacity(depth);
    let mut inner = 0usize;
    for _ in 0..depth {
        let mut header = vec![0x3a];
        let mut len = inner;
        loop {
            let byte = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                header.push(byte);
                break;
            }
            header.push(byte | 0x80);
        }
        inner += header.len();
        headers.push(header);
    }
    headers.into_iter().rev().flatten().collect()
}

const CHILD_ENV: &str = "WEFT_PROTOBUF_HOSTILE_CHILD";

#[test]
fn hostile_payloads_are_refused_within_bounded_memory() {
    let schema = ProtobufSchema::parse(SHOP, &[]).expect("parses");
    for (what, payload) in hostile_payloads() {
        let result = schema.validate(&payload, &[]);
        assert!(result.is_err(), "{what}: accepted");
    }
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    // Again in a child whose address space is capped at 512 MiB: a decoder that trusted a
    // claimed length would abort there instead of failing gracefully.
    let exe = std::env::current_exe().expect("test binary");
    let status = Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 524288 && exec \"$0\" --exact hostile_payloads_are_refused_within_bounded_memory --test-threads=1 --nocapture")
        .arg(exe)
        .env(CHILD_ENV, "1")
        .status()
        .expect("sh runs");
    assert!(status.success(), "child under a 512 MiB cap: {status}");
}

#[test]
fn full_wire_format_round_trip() {
    use weft_schema::wire::{
        SchemaRef, split_message_indexes, split_prefix, write_message_indexes,
    };
    let schema = ProtobufSchema::parse(SHOP, &[]).expect("parses");
    let pool = pool("shop.proto", SHOP);
    let mut cancelled = DynamicMessage::new(
        pool.get_message_by_name("shop.Cancelled")
            .expect("Cancelled"),
    );
    cancelled.set_field_by_name("order_id", Value::String("o-7".into()));

    // What a Confluent serializer puts on the wire: magic, id, indexes, message.
    let indexes = schema.message_index_of("shop.Cancelled").expect("declared");
    let mut record = vec![0, 0, 0, 0, 42];
    write_message_indexes(&indexes, &mut record);
    record.extend(cancelled.encode_to_vec());

    let (id, rest) = split_prefix(&record).expect("prefix");
    assert_eq!(id, SchemaRef::Id(42));
    let (indexes, payload) = split_message_indexes(rest).expect("indexes");
    assert_eq!(
        schema.message_name_at(&indexes).as_deref(),
        Ok("shop.Cancelled")
    );
    assert_eq!(schema.validate(payload, &indexes), Ok(()));
}
