//! Confluent's Python client (`confluent-kafka` with its schema-registry extras, installed by
//! `cargo xtask test`) against a real `weft serve`: SchemaRegistryClient calls, and records
//! serialized with the Avro, Protobuf and JSON Schema serializers, produced through Weft's
//! broker and deserialized back with equal field values. The script is
//! `tests/compat/registry_roundtrip.py`.

mod common;
mod registry_common;

use std::path::Path;
use std::process::Command;

use registry_common::{Serve, http};
use serde_json::Value;

/// Runs the script for `format`; returns its JSON summary line. Fails with the script's
/// output when it fails.
fn roundtrip(server: &Serve, format: &str, topic: &str) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat/registry_roundtrip.py");
    let output = Command::new("python3")
        .arg(&script)
        .arg(format!("http://{}", server.registry))
        .arg(server.kafka.to_string())
        .arg(format)
        .arg(topic)
        .output()
        .expect("run python3 (cargo xtask test installs it with confluent-kafka)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{format} round trip failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// The round trip for `format`, then what the registry holds for the topic's subject.
fn check_format(format: &str, schema_type: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Serve::start(dir.path(), &[]);
    let topic = format!("confluent-{format}");
    let summary = roundtrip(&server, format, &topic);
    assert_eq!(summary["ok"], true, "{summary}");
    assert_eq!(summary["records"], 20, "{summary}");
    assert_eq!(summary["schema_type"], schema_type, "{summary}");
    // The serializer registered under TopicNameStrategy; the registry agrees.
    let subject = format!("{topic}-value");
    let (status, latest) = http(
        server.registry,
        "GET",
        &format!("/subjects/{subject}/versions/latest"),
        None,
    );
    assert_eq!(status, 200, "{latest}");
    assert_eq!(latest["id"], summary["schema_id"]);
    assert_eq!(latest["version"], 1, "one version: {latest}");
    let expected_type = (schema_type != "AVRO").then_some(schema_type);
    assert_eq!(latest["schemaType"].as_str(), expected_type, "{latest}");
    server.stop();
}

#[test]
fn schema_registry_client_calls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Serve::start(dir.path(), &[]);
    let summary = roundtrip(&server, "client", "unused");
    assert_eq!(summary["ok"], true, "{summary}");
    server.stop();
}

#[test]
fn avro_serializer_round_trip() {
    check_format("avro", "AVRO");
}

#[test]
fn protobuf_serializer_round_trip() {
    check_format("protobuf", "PROTOBUF");
}

#[test]
fn json_schema_serializer_round_trip() {
    check_format("json", "JSON");
}
