"""Regenerate node/_pb from proto/creditx/v1/*.proto, or check that it is current.

`python proto/generate.py` writes the Python modules; `--check` compiles the .proto files
afresh and compares their descriptors with the ones embedded in the committed modules, so the
check does not depend on the exact grpcio-tools version that generated them.
"""

from __future__ import annotations

import argparse
import importlib
import pathlib
import re
import sys
import tempfile

import google.rpc
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_DIR = ROOT / "node" / "_pb"
PACKAGE = "node._pb"


def _includes() -> list[str]:
    import grpc_tools

    googleapis = pathlib.Path(google.rpc.__path__[0]).parent.parent
    well_known = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    return [f"-I{PROTO_DIR}", f"-I{googleapis}", f"-I{well_known}"]


def _protos() -> list[str]:
    return sorted(str(p.relative_to(PROTO_DIR)) for p in (PROTO_DIR / "creditx").rglob("*.proto"))


def _run(args: list[str]) -> None:
    code = protoc.main(["protoc", *_includes(), *args, *_protos()])
    if code != 0:
        sys.exit(f"protoc failed with exit code {code}")


def generate() -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    _run([f"--python_out={OUT_DIR}", f"--pyi_out={OUT_DIR}", f"--grpc_python_out={OUT_DIR}"])
    # protoc writes absolute imports (`from creditx.v1 import x_pb2`); make them package-relative
    # to node._pb so the generated code needs nothing on sys.path.
    for path in OUT_DIR.rglob("*.py*"):
        text = path.read_text()
        fixed = re.sub(r"^from creditx\.v1 import", f"from {PACKAGE}.creditx.v1 import", text,
                       flags=re.MULTILINE)
        if fixed != text:
            path.write_text(fixed)
    for pkg in [OUT_DIR, OUT_DIR / "creditx", OUT_DIR / "creditx" / "v1"]:
        (pkg / "__init__.py").touch()
    print(f"generated {len(_protos())} proto files into {OUT_DIR.relative_to(ROOT)}")


def _without_json_names(file: descriptor_pb2.FileDescriptorProto) -> descriptor_pb2.FileDescriptorProto:
    """protoc adds derived json_name fields to descriptor sets but not to generated code."""
    copy = descriptor_pb2.FileDescriptorProto()
    copy.CopyFrom(file)
    pending = list(copy.message_type)
    while pending:
        message = pending.pop()
        for field in message.field:
            field.ClearField("json_name")
        pending.extend(message.nested_type)
    return copy


def check() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "set.pb"
        _run([f"--descriptor_set_out={out}"])
        fresh = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    stale = []
    for file in fresh.file:
        module_name = f"{PACKAGE}." + file.name.removesuffix(".proto").replace("/", ".") + "_pb2"
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            stale.append(f"{file.name}: {module_name} is missing")
            continue
        committed = descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb)
        if committed != _without_json_names(file):
            stale.append(f"{file.name}: {module_name} differs from the .proto")
    for line in stale:
        print(f"stale generated code: {line}", file=sys.stderr)
    if stale:
        print("run `make proto` and commit node/_pb", file=sys.stderr)
        return 1
    print(f"generated code is current for {len(fresh.file)} proto files")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if node/_pb is stale")
    ns = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    sys.exit(check() if ns.check else generate())
