"""Disk full and I/O errors while the server writes, through real gRPC: the operation fails with
a message, and the live index and every acknowledged change stay as they were.

Two injectors. The in-process one (jointspace/core/faults.py, at the write sites of
server/index/write_sites.py) runs everywhere. libfiu (`fiu-run`, Debian's fiu-utils) makes the real libc
calls fail under SQLite and FAISS in a `jointspace serve` process; that test is opt-in
(JOINTSPACE_FIU_TESTS=1), because TensorFlow's import often hangs under libfiu's preload (BUILD.md):
`make test` reports it as skipped, and once opted in, a missing `fiu-run` fails it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import grpc
import numpy as np
import pytest

from jointspace.bench.serve_process import ServeProcess
from jointspace.client import Client, OperationState
from jointspace.core.faults import Faults, injected
from jointspace.server.index.index_directory import IndexDirectory
from jointspace.server.index.write_sites import SITES
from serving import own_server, served_copy

DIM = 16
FIRST = "gen-000001"
ENOSPC = 28
LONG_AGO = 1_000_000_000


def _vector(seed: int) -> list[float]:
    return np.random.default_rng(seed).normal(size=DIM).tolist()


def _top_key(client: Client, seed: int) -> str:
    return client.search(vector=_vector(seed), k=1, modalities=["vector"])[0].key


def _vector_catalog(path: Path, count: int = 200) -> Path:
    """Dated long ago, so that every upsert is newer and carried over by a rebuild (guide.md)."""
    with path.open("w") as out:
        for i in range(count):
            out.write(json.dumps({"key": f"v:{i}", "vector": _vector(1000 + i)}) + "\n")
    os.utime(path, (LONG_AGO, LONG_AGO))
    return path


def _unavailable(call) -> str:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE, raised.value.details()
    return raised.value.details()


def _assert_untouched(client: Client, index: Path, acknowledged: list[tuple[str, int]]) -> None:
    """The first generation serving, nothing left over, every acknowledged upsert found."""
    assert client.info().generation == FIRST
    assert (index / "CURRENT").read_text().strip() == FIRST
    assert IndexDirectory(index).generations() == [FIRST]
    assert [p.name for p in index.iterdir() if p.name.startswith(".")] == []
    for key, seed in acknowledged:
        assert _top_key(client, seed) == key


@pytest.fixture()
def served(built, tmp_path):
    with served_copy(built, tmp_path) as pair:
        yield pair


def _failing(site: str) -> Faults:
    return Faults(failing_writes=frozenset({site}))


def test_a_journal_write_that_fails_fails_the_upsert_and_applies_nothing(built, served):
    from jointspace.server.serving.engine import Engine

    client, index = served
    assert client.upsert([{"key": "ok:1", "vector": _vector(1)}]) == 1
    with injected(_failing("journal")):
        message = _unavailable(lambda: client.upsert([{"key": "lost:2", "vector": _vector(2)}]))
        assert "writing the journal" in message and "No space left on device" in message
        assert "nothing was applied" in message
        _unavailable(lambda: client.delete(["ok:1"]))
    assert _top_key(client, 2) != "lost:2" and _top_key(client, 1) == "ok:1"
    assert client.upsert([{"key": "ok:3", "vector": _vector(3)}]) == 1
    # A restart replays exactly the acknowledged changes.
    with own_server(Engine(built.model, index)) as running, Client(f"127.0.0.1:{running.port}") as again:
        again.wait_ready()
        assert _top_key(again, 1) == "ok:1" and _top_key(again, 3) == "ok:3"
        assert _top_key(again, 2) != "lost:2"


@pytest.mark.parametrize("site", [s for s in SITES if s != "journal"])
def test_a_rebuild_write_that_fails_fails_the_operation_and_leaves_the_index(served, tmp_path, site):
    client, index = served
    assert client.upsert([{"key": "ok:1", "vector": _vector(1)}]) == 1
    catalog = _vector_catalog(tmp_path / "catalog.jsonl")
    with injected(_failing(site)):
        operation = client.wait(client.rebuild([catalog]).name, poll=0.02)
    assert operation.state == OperationState.FAILED
    assert operation.error.code == grpc.StatusCode.UNAVAILABLE
    assert "No space left on device" in operation.error.message
    assert f"{FIRST} keeps serving" in operation.error.message
    _assert_untouched(client, index, [("ok:1", 1)])
    assert client.wait(client.rebuild([catalog]).name, poll=0.02).state == OperationState.SUCCEEDED
    assert _top_key(client, 1) == "ok:1"  # carried over to the new generation


FIU = shutil.which("fiu-run")
FIU_OPTED_IN = os.environ.get("JOINTSPACE_FIU_TESTS") == "1"


class FiuServer:
    """`jointspace serve` under `fiu-run -x`: `fail(point)` makes that libc call fail with ENOSPC
    in the server process until `heal(point)`."""

    def __init__(self, built, index: Path) -> None:
        self.serve = ServeProcess(["--model", str(built.model), "--index", str(index), "--port", "0",
                                   "--log-format", "json"], wrapper=(FIU, "-x"))
        port = self.serve.wait_for("listening on")["port"]
        self.client = Client(f"127.0.0.1:{port}", timeout=60)
        self.client.wait_ready(timeout=120)

    def _control(self, command: str) -> None:
        subprocess.run(["fiu-ctrl", "-c", command, str(self.serve.process.pid)], check=True, timeout=30)

    def fail(self, point: str) -> None:
        self._control(f"enable name={point},failinfo={ENOSPC}")

    def heal(self, point: str) -> None:
        self._control(f"disable name={point}")

    def stop(self) -> None:
        self.client.close()
        self.serve.process.terminate()
        self.serve.process.wait(timeout=60)


@pytest.mark.slow
@pytest.mark.skipif(not FIU_OPTED_IN, reason="opt-in (JOINTSPACE_FIU_TESTS=1, with fiu-utils installed): "
                                             "TensorFlow's import often hangs under libfiu's preload")
def test_real_write_failures_under_libfiu(built, tmp_path):
    assert FIU is not None, "JOINTSPACE_FIU_TESTS=1 but fiu-run is not installed (apt-get install fiu-utils)"
    index = tmp_path / "index"
    shutil.copytree(built.index, index)
    catalog = _vector_catalog(tmp_path / "catalog.jsonl")
    server = FiuServer(built, index)
    try:
        client = server.client
        assert client.upsert([{"key": "ok:1", "vector": _vector(1)}]) == 1
        # SQLite writes with pwrite: the journal commit fails as on a full disk.
        server.fail("posix/io/rw/pwrite")
        message = _unavailable(lambda: client.upsert([{"key": "lost:2", "vector": _vector(2)}]))
        assert "writing the journal" in message and "full" in message
        server.heal("posix/io/rw/pwrite")
        assert client.upsert([{"key": "ok:3", "vector": _vector(3)}]) == 1
        # FAISS writes with fwrite: the rebuild fails while writing its index file.
        server.fail("posix/stdio/rw/fwrite")
        operation = client.wait(client.rebuild([catalog]).name, poll=0.05)
        assert operation.state == OperationState.FAILED
        assert "writing the FAISS file" in operation.error.message
        assert "No space left on device" in operation.error.message
        server.heal("posix/stdio/rw/fwrite")
        # The catalog store is SQLite too: this rebuild fails while writing it.
        server.fail("posix/io/rw/pwrite")
        operation = client.wait(client.rebuild([catalog]).name, poll=0.05)
        assert operation.state == OperationState.FAILED and "catalog store" in operation.error.message
        server.heal("posix/io/rw/pwrite")
        _assert_untouched(client, index, [("ok:1", 1), ("ok:3", 3)])
        assert _top_key(client, 2) != "lost:2"
    finally:
        server.stop()
    # After a restart without faults: exactly the acknowledged changes.
    again = FiuServer(built, index)
    try:
        _assert_untouched(again.client, index, [("ok:1", 1), ("ok:3", 3)])
        assert _top_key(again.client, 2) != "lost:2"
    finally:
        again.stop()
