"""Regenerate the committed gRPC stubs from ``palyra_node.proto``.

    python -m palyra_proto.generate            # rewrite the stubs in place
    python -m palyra_proto.generate --out DIR  # write them elsewhere (the drift test)

The stubs are committed rather than generated at install time: installing the daemon then
needs neither grpcio-tools (a 30 MB compiler) nor a build step, and a change to the wire
contract shows in review as a diff of the stubs. ``tests/test_proto.py`` regenerates into a
temporary folder and fails when the result differs from what is committed.

Needs the test extras (grpcio-tools, mypy-protobuf): the ``.pyi`` files let strict mypy check
every use of the messages and stubs.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROTO = "palyra_node.proto"
GENERATED = (
    "palyra_node_pb2.py",
    "palyra_node_pb2.pyi",
    "palyra_node_pb2_grpc.py",
    "palyra_node_pb2_grpc.pyi",
)


def _plugin(name: str) -> str:
    """The mypy-protobuf plugin beside this interpreter (a venv's bin/), else on PATH."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if found is None:
        raise SystemExit(f"error: {name} not found (pip install mypy-protobuf)")
    return found


def generate(out_dir: Path) -> list[Path]:
    """Run protoc on the proto into ``out_dir``/palyra_proto/; returns the generated files."""
    from grpc_tools import protoc

    # protoc names imports after the path given to it: compiling "palyra_proto/x.proto"
    # from the repository root makes the stubs import `from palyra_proto import ...`.
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "palyra_proto").mkdir()
        shutil.copy(PACKAGE_DIR / PROTO, root / "palyra_proto" / PROTO)
        (out_dir / "palyra_proto").mkdir(parents=True, exist_ok=True)
        args = [
            "protoc",
            f"-I{root}",
            f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
            f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
            f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            f"--mypy_out={out_dir}",
            f"--mypy_grpc_out={out_dir}",
            f"palyra_proto/{PROTO}",
        ]
        if protoc.main(args) != 0:
            raise SystemExit("error: protoc failed (see above)")
    return [out_dir / "palyra_proto" / name for name in GENERATED]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write here instead of in place")
    args = parser.parse_args()
    if args.out is not None:
        for path in generate(args.out):
            print(path)
        return
    with tempfile.TemporaryDirectory() as tmp:
        for path in generate(Path(tmp)):
            shutil.copy(path, PACKAGE_DIR / path.name)
            print(PACKAGE_DIR / path.name)


if __name__ == "__main__":
    main()
