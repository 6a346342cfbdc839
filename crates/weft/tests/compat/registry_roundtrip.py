"""Confluent's Python client against Weft: SchemaRegistryClient calls, then records
serialized with the Avro, Protobuf or JSON Schema serializer, produced through Weft's
broker, consumed back and deserialized; field values must be equal.

Usage: registry_roundtrip.py REGISTRY_URL BOOTSTRAP FORMAT TOPIC
FORMAT is avro, protobuf, json or client (SchemaRegistryClient calls only).
Prints one JSON line with what was checked; exits non-zero on any mismatch.
"""

import json
import sys

from confluent_kafka import Consumer, Producer, TopicPartition, OFFSET_BEGINNING
from confluent_kafka.schema_registry import Schema, SchemaReference, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

RECORDS = 20
TIMEOUT_S = 60


def check(condition, what):
    if not condition:
        raise AssertionError(what)


def client_calls(sr):
    """The SchemaRegistryClient API, one call after another, with Weft's answers checked."""
    subject = "py-client-value"
    v1 = json.dumps({"type": "record", "name": "Item", "namespace": "py",
                     "fields": [{"name": "id", "type": "long"}]})
    v2 = json.dumps({"type": "record", "name": "Item", "namespace": "py",
                     "fields": [{"name": "id", "type": "long"},
                                {"name": "label", "type": "string", "default": ""}]})
    bad = json.dumps({"type": "record", "name": "Item", "namespace": "py",
                      "fields": [{"name": "id", "type": "long"},
                                 {"name": "qty", "type": "int"}]})
    id1 = sr.register_schema(subject, Schema(v1, "AVRO"))
    check(sr.register_schema(subject, Schema(v1, "AVRO")) == id1, "re-register gives the same id")
    check(sr.get_schema(id1).schema_type == "AVRO", "get_schema type")
    check(json.loads(sr.get_schema(id1).schema_str) == json.loads(v1), "get_schema text")
    check(sr.test_compatibility(subject, Schema(v2, "AVRO")), "v2 is backward compatible")
    check(not sr.test_compatibility(subject, Schema(bad, "AVRO")), "a required field is not")
    try:
        sr.register_schema(subject, Schema(bad, "AVRO"))
        check(False, "incompatible schema registered")
    except SchemaRegistryError as e:
        check(e.http_status_code == 409, f"incompatible: status {e.http_status_code}")
    id2 = sr.register_schema(subject, Schema(v2, "AVRO"))
    check(id2 != id1, "a new schema gets a new id")
    latest = sr.get_latest_version(subject)
    check((latest.version, latest.schema_id) == (2, id2), f"latest {latest}")
    check(sr.get_version(subject, 1).schema_id == id1, "version 1")
    check(sr.get_versions(subject) == [1, 2], "versions")
    check(subject in sr.get_subjects(), "subjects")
    found = sr.lookup_schema(subject, Schema(v1, "AVRO"))
    check((found.version, found.schema_id) == (1, id1), f"lookup {found}")
    # References: a schema in another subject using Item by name.
    order = json.dumps({"type": "record", "name": "Order", "namespace": "py",
                        "fields": [{"name": "item", "type": "py.Item"}]})
    ref = SchemaReference("py.Item", subject, 2)
    id3 = sr.register_schema("py-order-value", Schema(order, "AVRO", [ref]))
    got = sr.get_schema(id3)
    check([(r.name, r.subject, r.version) for r in got.references] == [("py.Item", subject, 2)],
          "references come back")
    check(sr.get_referenced_by(subject, 2) == [id3], "referencedby")
    check(sr.set_compatibility(subject, "FULL")["compatibility"] == "FULL", "set compatibility")
    check(sr.get_compatibility(subject) == "FULL", "get compatibility")
    check(sr.delete_version(subject, 1) == 1, "soft delete version 1")
    check(sr.get_versions(subject) == [2], "version 1 hidden")
    check(sr.delete_version(subject, 1, permanent=True) == 1, "hard delete version 1")
    # the id of a deleted version is gone after the hard delete
    try:
        SchemaRegistryClient({"url": sr._rest_client.base_urls[0]}).get_schema(id1)
        check(False, "hard-deleted schema still readable")
    except SchemaRegistryError as e:
        check(e.error_code == 40403, f"deleted id: {e.error_code}")
    return {"ids": [id1, id2, id3]}


def avro_case(sr, topic):
    from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer

    schema = json.dumps({
        "type": "record", "name": "Payment", "namespace": "weft.test",
        "fields": [
            {"name": "id", "type": "long"},
            {"name": "payer", "type": "string"},
            {"name": "amount", "type": "double"},
            {"name": "note", "type": ["null", "string"], "default": None},
            {"name": "tags", "type": {"type": "array", "items": "string"}},
        ],
    })
    values = [{"id": i, "payer": f"p{i}", "amount": i * 1.25,
               "note": None if i % 2 else f"n{i}", "tags": ["a"] * (i % 3)}
              for i in range(RECORDS)]
    return AvroSerializer(sr, schema), AvroDeserializer(sr), values, lambda v: v


def json_case(sr, topic):
    from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer

    schema = json.dumps({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "Shipment", "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "dest": {"type": "string"},
            "weight": {"type": "number"},
            "fragile": {"type": "boolean"},
        },
        "required": ["id", "dest"],
        "additionalProperties": False,
    })
    values = [{"id": i, "dest": f"d{i}", "weight": i / 4, "fragile": i % 2 == 0}
              for i in range(RECORDS)]
    ser = JSONSerializer(schema, sr)
    de = JSONDeserializer(None, schema_registry_client=sr)
    return ser, de, values, lambda v: v


def protobuf_case(sr, topic):
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    from google.protobuf.json_format import MessageToDict
    from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer

    # A .proto built as a descriptor, as protoc-generated code would carry it.
    fdp = descriptor_pb2.FileDescriptorProto(name="weft/test/order.proto", package="weft.test",
                                             syntax="proto3")
    msg = fdp.message_type.add(name="Order")
    F = descriptor_pb2.FieldDescriptorProto
    for number, (name, ftype, label) in enumerate([
        ("id", F.TYPE_INT64, F.LABEL_OPTIONAL),
        ("customer", F.TYPE_STRING, F.LABEL_OPTIONAL),
        ("total", F.TYPE_DOUBLE, F.LABEL_OPTIONAL),
        ("items", F.TYPE_STRING, F.LABEL_REPEATED),
    ], start=1):
        msg.field.add(name=name, number=number, type=ftype, label=label)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    order_cls = message_factory.GetMessageClass(pool.FindMessageTypeByName("weft.test.Order"))
    values = [order_cls(id=i, customer=f"c{i}", total=i * 2.5, items=["x"] * (i % 4))
              for i in range(RECORDS)]
    ser = ProtobufSerializer(order_cls, sr, {"use.deprecated.format": False})
    de = ProtobufDeserializer(order_cls, {"use.deprecated.format": False},
                              schema_registry_client=sr)

    def comparable(m):
        return MessageToDict(m, preserving_proto_field_name=True)

    return ser, de, values, comparable


def roundtrip(sr, bootstrap, fmt, topic):
    make = {"avro": avro_case, "json": json_case, "protobuf": protobuf_case}[fmt]
    ser, de, values, comparable = make(sr, topic)
    ctx = SerializationContext(topic, MessageField.VALUE)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for v in values:
        producer.produce(topic, value=ser(v, ctx))
    check(producer.flush(TIMEOUT_S) == 0, "all records delivered")

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-reader",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    got = []
    import time
    deadline = time.time() + TIMEOUT_S
    while len(got) < len(values) and time.time() < deadline:
        m = consumer.poll(1.0)
        if m is None:
            continue
        check(m.error() is None, f"consume error {m.error()}")
        raw = m.value()
        check(raw[0] == 0, "Confluent wire format: magic byte 0")
        got.append(de(raw, ctx))
    consumer.close()
    check(len(got) == len(values), f"consumed {len(got)} of {len(values)}")
    for i, (sent, back) in enumerate(zip(values, got)):
        check(comparable(sent) == comparable(back), f"record {i}: {comparable(sent)} != {comparable(back)}")
    subject = f"{topic}-value"
    registered = sr.get_latest_version(subject)
    return {"records": len(got), "subject": subject, "schema_id": registered.schema_id,
            "schema_type": registered.schema.schema_type}


def main():
    url, bootstrap, fmt, topic = sys.argv[1:5]
    sr = SchemaRegistryClient({"url": url})
    if fmt == "client":
        result = client_calls(sr)
    else:
        result = roundtrip(sr, bootstrap, fmt, topic)
    print(json.dumps({"ok": True, "format": fmt, **result}))


if __name__ == "__main__":
    main()
