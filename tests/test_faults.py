"""Fault injection is enabled by code only (jointspace/core/faults.py). A `jointspace serve` process
whose environment holds the variables that used to enable the test hooks must write, rebuild and
decode normally; the test-only entry point tests/harness_serve.py, given the same faults as
options, must fail in each way, which shows that the checks can see a fault."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from harness_serve import serve_program
from jointspace.bench.serve_process import ServeProcess
from jointspace.client import Client, OperationState, make_query
from jointspace.core.faults import DECODE_SEGFAULT
from jointspace.server.index.write_sites import SITES
from jointspace.v1 import jointspace_pb2 as pb

DIM = 16
LONG_AGO = 1_000_000_000


def _old_hooks(tmp_path: Path) -> dict[str, str]:
    """Every environment variable that enabled a test hook before jointspace/core/faults.py."""
    return {"JOINTSPACE_FAULT_AT": ",".join(SITES), "JOINTSPACE_DECODE_TEST_FAULTS": "1",
            "JOINTSPACE_PAUSE_AT": "embedding", "JOINTSPACE_PAUSE_FILE": str(tmp_path / "paused"),
            "JOINTSPACE_RESUME_FILE": str(tmp_path / "resume")}


def _harness_faults(tmp_path: Path) -> tuple[str, ...]:
    """Not the journal: a rebuild that cannot open it is refused before it could pause."""
    return ("--fail-write", "index", "--decode-faults", "--pause-at", "embedding",
            "--pause-file", str(tmp_path / "paused"), "--resume-file", str(tmp_path / "resume"))


def _catalog(path: Path) -> Path:
    vectors = np.random.default_rng(5).normal(size=(50, DIM)).round(4)
    path.write_text("".join(json.dumps({"key": f"v:{i}", "vector": v}) + "\n" for i, v in enumerate(vectors.tolist())))
    return path


def _upsert(client: Client) -> str:
    try:
        client.upsert([{"key": "probe", "vector": [1.0] * DIM}])
    except grpc.RpcError as error:
        return error.code().name
    return "OK"


def _rebuild(client: Client, catalog: Path, paused: Path, resume: Path) -> tuple[bool, str]:
    """Whether the rebuild stopped at the pause point (then resumed), and how it ended."""
    operation = client.rebuild([catalog])
    give_up = time.monotonic() + 120  # a rebuild of 50 vectors: any machine is done long before
    while not operation.done and not paused.is_file():
        assert time.monotonic() < give_up, "the rebuild neither ended nor paused"
        time.sleep(0.05)
        operation = client.operation(operation.name)
    was_paused = paused.is_file()
    if was_paused:
        resume.write_text("go")
    return was_paused, OperationState(client.wait(operation.name, poll=0.05).state).name


def _decode_marker(client: Client) -> str:
    with pytest.raises(grpc.RpcError) as raised:
        client.stub.Search(pb.SearchRequest(query=make_query(audio=DECODE_SEGFAULT), k=1), timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    return "crashed" if "decoder crashed" in raised.value.details() else "undecodable"


CASES = {
    "serve-with-the-old-variables": (False, ("OK", (False, "SUCCEEDED"), "undecodable")),
    "harness-with-fault-options": (True, ("OK", (True, "FAILED"), "crashed")),
}


@pytest.mark.slow
@pytest.mark.parametrize("harness, expected", CASES.values(), ids=list(CASES))
def test_only_the_test_harness_injects_faults(built, tmp_path, harness, expected):
    index = tmp_path / "index"
    shutil.copytree(built.index, index)
    catalog = _catalog(tmp_path / "catalog.jsonl")
    program = serve_program(*_harness_faults(tmp_path)) if harness else ("-m", "jointspace.cli", "serve")
    serve = ServeProcess(["--model", str(built.model), "--index", str(index), "--port", "0", "--log-format", "json"],
                         env=_old_hooks(tmp_path), program=program)
    try:
        with Client(f"127.0.0.1:{serve.wait_for('listening on')['port']}", timeout=60) as client:
            client.wait_ready(timeout=120)
            observed = (_upsert(client), _rebuild(client, catalog, tmp_path / "paused", tmp_path / "resume"),
                        _decode_marker(client))
    finally:
        serve.process.kill()
        serve.process.wait(timeout=30)
    assert observed == expected
