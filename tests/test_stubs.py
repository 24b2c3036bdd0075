"""The generated gRPC stubs are committed; this fails when they no longer match the .proto."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GENERATED = ("jointspace_pb2.py", "jointspace_pb2.pyi", "jointspace_pb2_grpc.py")


def test_committed_stubs_match_the_proto(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "tools" / "stubs.py"), str(tmp_path)], check=True)
    for name in GENERATED:
        fresh = (tmp_path / "jointspace/v1" / name).read_text()
        committed = (ROOT / "clients/python/jointspace/v1" / name).read_text()
        assert fresh == committed, f"clients/python/jointspace/v1/{name} is stale: run `make stubs`"
