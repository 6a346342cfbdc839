//! Soundness of the Avro compatibility checker against a real decoder: random writer
//! schemas, random mutations of them as readers, random datums. Whenever `can_read` says a
//! reader reads a writer, apache-avro must decode the writer's datum with the reader schema
//! (its resolution is lenient, so it is an oracle for "compatible", not for "incompatible").

use std::collections::HashMap;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use serde_json::{Value as Json, json};
use weft_schema::{ParsedSchema, SchemaType};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const PRIMITIVES: [&str; 8] = [
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];
const SYMBOLS: [&str; 4] = ["A", "B", "C", "D"];

struct Gen {
    rng: Rng,
    names: usize,
}

impl Gen {
    fn name(&mut self, prefix: &str) -> String {
        self.names += 1;
        format!("{prefix}{}", self.names)
    }

    fn schema(&mut self, depth: usize) -> Json {
        let pick = if depth == 0 {
            self.rng.below(3)
        } else {
            self.rng.below(8)
        };
        match pick {
            0 => json!(PRIMITIVES[1 + self.rng.below(7)]),
            1 => {
                let n = 1 + self.rng.below(4);
                json!({"type": "enum", "name": self.name("E"), "symbols": SYMBOLS[..n]})
            }
            2 => json!({"type": "fixed", "name": self.name("F"), "size": 1 + self.rng.below(4)}),
            3 => json!({"type": "array", "items": self.schema(depth - 1)}),
            4 => json!({"type": "map", "values": self.schema(depth - 1)}),
            5 => {
                let inner = self.schema(depth - 1);
                if inner.is_array() || inner == json!("null") {
                    inner
                } else {
                    json!(["null", inner])
                }
            }
            _ => self.record(depth - 1),
        }
    }

    fn record(&mut self, depth: usize) -> Json {
        let fields: Vec<Json> = (0..1 + self.rng.below(3))
            .map(|i| json!({"name": format!("f{i}"), "type": self.schema(depth)}))
            .collect();
        json!({"type": "record", "name": self.name("R"), "fields": fields})
    }

    fn value(&mut self, schema: &Json) -> Value {
        match schema {
            Json::String(p) => match p.as_str() {
                "null" => Value::Null,
                "boolean" => Value::Boolean(self.rng.chance(50)),
                "int" => Value::Int(self.rng.next() as i32),
                "long" => Value::Long(self.rng.next() as i64),
                "float" => Value::Float(self.rng.below(1000) as f32 / 8.0),
                "double" => Value::Double(self.rng.below(1000) as f64 / 8.0),
                // ASCII: a bytes datum read as a string (a legal promotion) must be UTF-8.
                "bytes" => Value::Bytes(
                    (0..self.rng.below(5))
                        .map(|_| b'a' + self.rng.below(26) as u8)
                        .collect(),
                ),
                _ => Value::String("x".repeat(self.rng.below(5))),
            },
            Json::Array(branches) => {
                let i = self.rng.below(branches.len());
                Value::Union(i as u32, Box::new(self.value(&branches[i])))
            }
            Json::Object(o) => match o["type"].as_str() {
                Some("enum") => {
                    let symbols = o["symbols"].as_array().map(Vec::len).unwrap_or(1);
                    let i = self.rng.below(symbols);
                    Value::Enum(i as u32, SYMBOLS[i].to_owned())
                }
                Some("fixed") => {
                    let size = o["size"].as_u64().unwrap_or(0) as usize;
                    Value::Fixed(size, vec![7; size])
                }
                Some("array") => Value::Array(
                    (0..self.rng.below(3))
                        .map(|_| self.value(&o["items"]))
                        .collect(),
                ),
                Some("map") => Value::Map(
                    (0..self.rng.below(3))
                        .map(|i| (format!("k{i}"), self.value(&o["values"])))
                        .collect::<HashMap<_, _>>(),
                ),
                _ => Value::Record(
                    o["fields"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|f| {
                            (
                                f["name"].as_str().unwrap_or("").to_owned(),
                                self.value(&f["type"]),
                            )
                        })
                        .collect(),
                ),
            },
            _ => Value::Null,
        }
    }

    /// Mutates one node somewhere in `schema` in a way that often breaks compatibility.
    fn mutate(&mut self, schema: &mut Json) -> bool {
        // Descend first, with some chance of stopping here.
        let children: usize = match &*schema {
            Json::Array(b) => b.len(),
            Json::Object(o) => match o["type"].as_str() {
                Some("array") | Some("map") => 1,
                Some("record") => o["fields"].as_array().map(Vec::len).unwrap_or(0),
                _ => 0,
            },
            _ => 0,
        };
        if children > 0 && self.rng.chance(60) {
            let i = self.rng.below(children);
            let child = match schema {
                Json::Array(b) => &mut b[i],
                Json::Object(o) => match o["type"].as_str() {
                    Some("array") => &mut o["items"],
                    Some("map") => &mut o["values"],
                    _ => &mut o["fields"][i]["type"],
                },
                _ => return false,
            };
            if self.mutate(child) {
                return true;
            }
        }
        match schema {
            Json::String(_) => {
                *schema = json!(PRIMITIVES[self.rng.below(8)]);
                true
            }
            Json::Array(branches) => {
                if branches.len() > 1 && self.rng.chance(50) {
                    let i = self.rng.below(branches.len());
                    branches.remove(i);
                } else {
                    let extra = json!(["long", "string", "double"][self.rng.below(3)]);
                    if !branches.contains(&extra) {
                        branches.push(extra);
                    }
                }
                true
            }
            Json::Object(o) => match o["type"].as_str().unwrap_or("") {
                "enum" => {
                    let symbols = o["symbols"].as_array().map(Vec::len).unwrap_or(1);
                    let n = match self.rng.below(3) {
                        0 if symbols > 1 => symbols - 1,
                        _ => (symbols + 1).min(4),
                    };
                    o.insert("symbols".into(), json!(SYMBOLS[..n]));
                    if self.rng.chance(30) {
                        o.insert("default".into(), json!("A"));
                    }
                    true
                }
                "fixed" => {
                    let size = o["size"].as_u64().unwrap_or(1);
                    o.insert("size".into(), json!(size + 1));
                    true
                }
                "array" | "map" => {
                    let (from, to) = if o["type"] == "array" {
                        ("items", "values")
                    } else {
                        ("values", "items")
                    };
                    if self.rng.chance(50) {
                        let inner = o.remove(from).unwrap_or(json!("int"));
                        o.insert(to.into(), inner);
                        o.insert(
                            "type".into(),
                            json!(if to == "items" { "array" } else { "map" }),
                        );
                    } else {
                        *schema = json!(["null", schema.clone()]);
                    }
                    true
                }
                "record" => {
                    let Some(fields) = o.get_mut("fields").and_then(Json::as_array_mut) else {
                        return false;
                    };
                    match self.rng.below(4) {
                        0 if fields.len() > 1 => {
                            let i = self.rng.below(fields.len());
                            fields.remove(i);
                        }
                        1 => {
                            let name = o["name"].as_str().unwrap_or("R").to_owned();
                            o.insert("name".into(), json!(format!("{name}x")));
                        }
                        _ => {
                            self.names += 1;
                            let ty = json!(PRIMITIVES[1 + self.rng.below(7)]);
                            let mut field = json!({"name": format!("n{}", self.names), "type": ty});
                            if self.rng.chance(60) {
                                field["default"] = default_for(&field["type"]);
                            }
                            fields.push(field);
                        }
                    }
                    true
                }
                _ => false,
            },
            _ => false,
        }
    }
}

fn default_for(schema: &Json) -> Json {
    match schema.as_str() {
        Some("null") => Json::Null,
        Some("boolean") => json!(false),
        Some("int" | "long") => json!(0),
        Some("float" | "double") => json!(0.5),
        _ => json!(""),
    }
}

#[test]
fn compatible_verdicts_decode() {
    let mut g = Gen {
        rng: Rng(0x2545_f491_4f6c_dd1d),
        names: 0,
    };
    let (mut compatible, mut incompatible, mut refused) = (0, 0, 0);
    for round in 0..1500 {
        let writer_json = g.record(3);
        let mut reader_json = writer_json.clone();
        for _ in 0..1 + g.rng.below(2) {
            g.mutate(&mut reader_json);
        }
        let (w_text, r_text) = (writer_json.to_string(), reader_json.to_string());
        let writer = match ParsedSchema::parse(SchemaType::Avro, &w_text, &[]) {
            Ok(s) => s,
            Err(e) => panic!("generated writer does not parse: {e}\n{w_text}"),
        };
        let Ok(reader) = ParsedSchema::parse(SchemaType::Avro, &r_text, &[]) else {
            refused += 1;
            continue;
        };
        let w_avro =
            apache_avro::Schema::parse_str(&w_text).expect("apache-avro parses the writer");
        let value = g.value(&writer_json);
        let bytes = GenericDatumWriter::builder(&w_avro)
            .build()
            .and_then(|w| w.write_value_to_vec(value.clone()))
            .unwrap_or_else(|e| panic!("round {round}: cannot encode {value:?}: {e}\n{w_text}"));
        assert_eq!(
            writer.validate(&bytes, &[]),
            Ok(()),
            "round {round}: {w_text}"
        );

        let reasons = reader.can_read(&writer);
        if !reasons.is_empty() {
            incompatible += 1;
            continue;
        }
        compatible += 1;
        let r_avro =
            apache_avro::Schema::parse_str(&r_text).expect("apache-avro parses the reader");
        let decoded = GenericDatumReader::builder(&w_avro)
            .reader_schema(&r_avro)
            .build()
            .and_then(|r| r.read_value(&mut &bytes[..]));
        assert!(
            decoded.is_ok(),
            "round {round}: judged compatible but does not decode: {decoded:?}\nwriter {w_text}\nreader {r_text}\nvalue {value:?}"
        );
    }
    assert!(
        compatible > 150 && incompatible > 150,
        "compatible {compatible}, incompatible {incompatible}, refused {refused}"
    );
}
