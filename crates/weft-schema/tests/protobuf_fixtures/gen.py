"""Regenerates the base64 fixtures: the exact strings Confluent's Python serializer
(confluent-kafka, ProtobufSerializer) registers for a schema, i.e. the standard base64
of the file's serialized FileDescriptorProto as protoc generated it.

Needs `pip install grpcio-tools confluent-kafka googleapis-common-protos`.
Run from this directory: python3 gen.py
"""
import base64
import importlib
import os
import subprocess
import sys
import tempfile

from grpc_tools import protoc  # noqa: F401  (checks it is installed)


def b64(serialized):
    return base64.standard_b64encode(serialized).decode("ascii")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    os.chdir(here)
    from google.protobuf import descriptor_pb2
    from confluent_kafka.schema_registry.confluent import meta_pb2
    work = tempfile.mkdtemp()
    # confluent/meta.proto as the client ships it (and descriptor.proto, which it imports),
    # as a descriptor set protoc imports from.
    fds = descriptor_pb2.FileDescriptorSet()
    for module in (descriptor_pb2, meta_pb2):
        module.DESCRIPTOR.CopyToProto(fds.file.add())
    with open(os.path.join(work, "deps.bin"), "wb") as f:
        f.write(fds.SerializeToString())
    includes = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    for name in ("common.proto", "shop.proto", "legacy.proto"):
        subprocess.run(
            [sys.executable, "-m", "grpc_tools.protoc", "-I.", f"-I{includes}",
             f"--descriptor_set_in={work}/deps.bin", f"--python_out={work}", name],
            check=True,
        )
    sys.path.insert(0, work)
    # The generated modules import `confluent.meta_pb2`; the client ships it elsewhere.
    import confluent_kafka.schema_registry.confluent as confluent_pkg
    sys.modules["confluent"] = confluent_pkg
    sys.modules["confluent.meta_pb2"] = meta_pb2
    for name in ("common", "shop", "legacy"):
        module = importlib.import_module(f"{name}_pb2")
        with open(f"{name}.b64", "w") as f:
            f.write(b64(module.DESCRIPTOR.serialized_pb) + "\n")

    # Files the client never sends as references: what its descriptors hold for them.
    from confluent_kafka.schema_registry.confluent.type import decimal_pb2, variant_pb2
    from confluent_kafka.schema_registry.confluent.types import decimal_pb2 as legacy_decimal_pb2
    from google.type import (calendar_period_pb2, color_pb2, date_pb2, datetime_pb2,
                             dayofweek_pb2, expr_pb2, fraction_pb2, latlng_pb2, money_pb2,
                             month_pb2, postal_address_pb2, quaternion_pb2, timeofday_pb2)
    modules = [meta_pb2, decimal_pb2, legacy_decimal_pb2, variant_pb2, calendar_period_pb2,
               color_pb2, date_pb2, datetime_pb2, dayofweek_pb2, expr_pb2, fraction_pb2,
               latlng_pb2, money_pb2, month_pb2, postal_address_pb2, quaternion_pb2,
               timeofday_pb2]
    with open("builtins.txt", "w") as f:
        for module in modules:
            f.write(f"{module.DESCRIPTOR.name} {b64(module.DESCRIPTOR.serialized_pb)}\n")


if __name__ == "__main__":
    main()
