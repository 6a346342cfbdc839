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
    // LEGACY has required fields, so it takes the full-decode path.
    let legacy = ProtobufSchema::parse(LEGACY, &[]).expect("parses");
    for (what, payload) in hostile_payloads() {
        assert!(schema.validate(&payload, &[]).is_err(), "{what}: accepted");
        assert!(
            legacy.validate(&payload, &[]).is_err(),
            "{what}: accepted (full decode)"
        );
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

/// Every kind of field, no maps and no required fields: the scan must agree exactly with
/// prost-reflect's full decode.
const RICH: &str = r#"syntax = "proto3";
package rich;
message R {
  int32 i32 = 1; int64 i64 = 2; uint32 u32 = 3; uint64 u64 = 4; sint32 s32 = 5;
  sint64 s64 = 6; fixed32 f32 = 7; fixed64 f64 = 8; sfixed32 sf32 = 9; sfixed64 sf64 = 10;
  float fl = 11; double db = 12; bool b = 13; string s = 14; bytes by = 15; E e = 16;
  repeated int32 ri = 17; repeated fixed64 rf = 18; repeated string rs = 19;
  repeated R kids = 20; R one = 21;
  oneof o { string os = 22; R om = 23; }
  repeated float rfl = 24 [packed = false];
  enum E { Z = 0; A = 1; }
}
"#;

const GROUPS: &str = r#"syntax = "proto2";
package groups;
message G {
  optional int32 a = 1;
  repeated group Item = 2 { optional string name = 3; optional G inner = 4; }
  optional G next = 5;
  extensions 100 to 200;
}
extend G { optional sint64 ext = 100; repeated string exts = 101; }
"#;

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Payloads around `seeds`: each mutated in one or two places, plus random bytes.
fn mutations(seeds: &[Vec<u8>], per_seed: usize, rng: &mut XorShift) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for seed in seeds {
        out.push(seed.clone());
        for _ in 0..per_seed {
            let mut p = seed.clone();
            for _ in 0..=rng.below(2) {
                let at = rng.below(p.len() + 1);
                let byte = [0x00, 0x01, 0x7f, 0x80, 0xff, 0x08, 0x0a, 0x0b, 0x0c, 0x12]
                    [rng.below(10)]
                    ^ if rng.below(3) == 0 {
                        rng.next() as u8
                    } else {
                        0
                    };
                match rng.below(5) {
                    0 if at < p.len() => p[at] = byte,
                    1 => p.insert(at, byte),
                    2 if at < p.len() => {
                        p.remove(at);
                    }
                    3 => p.truncate(at),
                    _ if at < p.len() => p[at] ^= 1 << rng.below(8),
                    _ => p.push(byte),
                }
            }
            out.push(p);
        }
    }
    for _ in 0..per_seed {
        let len = rng.below(24);
        out.push((0..len).map(|_| rng.next() as u8).collect());
    }
    out
}

fn rich_seeds(pool: &DescriptorPool) -> Vec<Vec<u8>> {
    let r = pool.get_message_by_name("rich.R").expect("R");
    let mut m = DynamicMessage::new(r.clone());
    for (name, value) in [
        ("i32", Value::I32(-7)),
        ("i64", Value::I64(1 << 40)),
        ("u32", Value::U32(300)),
        ("u64", Value::U64(u64::MAX)),
        ("s32", Value::I32(-300)),
        ("s64", Value::I64(-1)),
        ("f32", Value::U32(9)),
        ("f64", Value::U64(10)),
        ("sf32", Value::I32(-9)),
        ("sf64", Value::I64(-10)),
        ("fl", Value::F32(1.5)),
        ("db", Value::F64(-2.25)),
        ("b", Value::Bool(true)),
        ("s", Value::String("héllo".into())),
        ("by", Value::Bytes(vec![0, 255, 128].into())),
        ("e", Value::EnumNumber(1)),
        (
            "ri",
            Value::List(vec![Value::I32(1), Value::I32(-1), Value::I32(300)]),
        ),
        ("rf", Value::List(vec![Value::U64(1), Value::U64(2)])),
        (
            "rs",
            Value::List(vec![Value::String("a".into()), Value::String("".into())]),
        ),
        ("os", Value::String("oneof".into())),
        ("rfl", Value::List(vec![Value::F32(0.5), Value::F32(2.0)])),
    ] {
        m.set_field_by_name(name, value);
    }
    let mut kid = DynamicMessage::new(r.clone());
    kid.set_field_by_name("s", Value::String("kid".into()));
    kid.set_field_by_name("ri", Value::List(vec![Value::I32(5)]));
    m.set_field_by_name("kids", Value::List(vec![Value::Message(kid.clone())]));
    m.set_field_by_name("one", Value::Message(kid));
    vec![m.encode_to_vec(), Vec::new()]
}

fn groups_seeds(pool: &DescriptorPool) -> Vec<Vec<u8>> {
    let g = pool.get_message_by_name("groups.G").expect("G");
    let item = pool.get_message_by_name("groups.G.Item").expect("Item");
    let mut m = DynamicMessage::new(g.clone());
    m.set_field_by_name("a", Value::I32(4));
    let mut i = DynamicMessage::new(item);
    i.set_field_by_name("name", Value::String("n".into()));
    let mut inner = DynamicMessage::new(g.clone());
    inner.set_field_by_name("a", Value::I32(1));
    i.set_field_by_name("inner", Value::Message(inner));
    m.set_field_by_name("Item", Value::List(vec![Value::Message(i)]));
    let mut payload = m.encode_to_vec();
    // Extension 100 (sint64 -1) and 101 ("x"), and an unknown group 50 holding a varint.
    payload.extend_from_slice(&[0xa0, 0x06, 0x01, 0xaa, 0x06, 0x01, b'x']);
    payload.extend_from_slice(&[0x93, 0x03, 0x08, 0x01, 0x94, 0x03]);
    vec![payload]
}

/// `depth` messages nested through field `number`, built inside out.
fn nested(number: u8, depth: usize) -> Vec<u8> {
    let mut headers = Vec::with_capacity(depth);
    let mut inner = 0usize;
    for _ in 0..depth {
        let mut header = vec![(number << 3) | 2];
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

fn differential(name: &str, text: &str, message: &str, seeds: Vec<Vec<u8>>, exact: bool) {
    let schema = ProtobufSchema::parse(text, &[]).expect("parses");
    let pool = pool(name, text);
    let desc = pool.get_message_by_name(message).expect("message");
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut cases = mutations(&seeds, 3000, &mut rng);
    // Around prost's recursion limit of 100 nested messages.
    let field = desc
        .fields()
        .find(|f| f.kind().as_message().is_some() && !f.is_list() && !f.is_group());
    if let Some(f) = field {
        for depth in 98..=103 {
            cases.push(nested(f.number() as u8, depth));
        }
    }
    let (mut accepted, mut refused, mut disagreements) = (0, 0, Vec::new());
    for payload in &cases {
        let ours = schema.validate(payload, &[]).is_ok();
        let reference = DynamicMessage::decode(desc.clone(), payload.as_slice()).is_ok();
        if ours {
            accepted += 1
        } else {
            refused += 1
        }
        let agree = if exact {
            ours == reference
        } else {
            !ours || reference
        };
        if !agree {
            disagreements.push(format!(
                "{payload:02x?}: ours {ours}, prost-reflect {reference}"
            ));
        }
    }
    assert!(
        disagreements.is_empty(),
        "{name}: {} disagreement(s), first: {:#?}",
        disagreements.len(),
        &disagreements[..disagreements.len().min(5)]
    );
    // The mutations exercise both outcomes.
    assert!(
        accepted > 100 && refused > 100,
        "{name}: {accepted} accepted, {refused} refused"
    );
}

#[test]
fn scan_agrees_with_full_decode_on_mutated_payloads() {
    let rich = pool("rich.proto", RICH);
    differential("rich.proto", RICH, "rich.R", rich_seeds(&rich), true);
    let groups = pool("groups.proto", GROUPS);
    differential(
        "groups.proto",
        GROUPS,
        "groups.G",
        groups_seeds(&groups),
        true,
    );
    // With maps the scan is stricter (a map field must be length-delimited), never laxer.
    differential(
        "shop.proto",
        SHOP,
        "shop.Order",
        vec![order_payload()],
        false,
    );
}

#[test]
fn map_fields_must_be_length_delimited() {
    let schema = ProtobufSchema::parse(SHOP, &[]).expect("parses");
    // `totals` (field 3) as a varint.
    let err = schema.validate(&[0x18, 0x01], &[]).expect_err("refused");
    assert!(err.contains("Order.totals"), "{err}");
}
