"""The generated gRPC stubs are committed; this fails when they no longer match the .proto."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GENERATED = ("jointspace_pb2.py", "jointspace_pb2.pyi", "jointspace_pb2_grpc.py")


def test_committed_stubs_match_the_proto(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'protos'}", f"--python_out={tmp_path}",
         f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}",
         str(ROOT / "protos/jointspace/v1/jointspace.proto")],
        check=True,
    )
    for name in GENERATED:
        fresh = (tmp_path / "jointspace/v1" / name).read_text()
        committed = (ROOT / "jointspace/v1" / name).read_text()
        assert fresh == committed, f"jointspace/v1/{name} is stale: run `make stubs`"
