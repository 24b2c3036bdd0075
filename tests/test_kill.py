"""SIGKILL at each step of a rebuild, in a real `jointspace serve` process: after every restart the
server answers from a complete generation, partial files are gone and no acknowledged upsert is
lost. The kill lands at a named step: the server runs under the test-only entry point
tests/harness_serve.py, which pauses it there (jointspace/core/faults.py)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from harness_serve import serve_program
from jointspace.bench.serve_process import ServeProcess
from jointspace.client import Client
from jointspace.server.index.index_directory import IndexDirectory

DIM = 16
LONG_AGO = 1_000_000_000  # the catalog's mtime: older than every upsert, which are all carried over


def _catalog(path: Path) -> Path:
    vectors = np.random.default_rng(3).normal(size=(3_000, DIM)).round(4)
    with path.open("w") as out:
        for i, vector in enumerate(vectors.tolist()):
            out.write(json.dumps({"key": f"v:{i}", "vector": vector}) + "\n")
    os.utime(path, (LONG_AGO, LONG_AGO))
    return path


class Server:
    def __init__(self, built, index: Path, pause_at: str | None, pause_file: Path) -> None:
        pause = ("--pause-at", pause_at, "--pause-file", str(pause_file)) if pause_at else ()
        self.serve = ServeProcess(["--model", str(built.model), "--index", str(index), "--port", "0",
                                   "--log-format", "json"], program=serve_program(*pause))
        self.pause_file = pause_file
        port = self.serve.wait_for("listening on")["port"]
        self.client = Client(f"127.0.0.1:{port}", timeout=60)
        self.client.wait_ready(timeout=120)

    def rebuild_until_paused(self, catalog: Path, timeout: float = 60) -> None:
        self.client.rebuild([catalog])
        end = time.monotonic() + timeout
        while not self.pause_file.is_file():
            assert self.serve.process.poll() is None and time.monotonic() < end, "".join(self.serve.lines)
            time.sleep(0.02)
        self.pause_file.unlink()

    def kill(self) -> None:
        self.client.close()
        self.serve.process.send_signal(signal.SIGKILL)
        self.serve.process.wait(timeout=30)


def _check(server: Server, index: Path, generation: str, upserted: list[str]) -> None:
    """Serving `generation` completely, nothing partial on disk, every acknowledged upsert found."""
    info = server.client.info()
    assert info.generation == generation
    assert (index / "CURRENT").read_text().strip() == generation
    leftovers = [p.name for p in index.iterdir() if p.name.startswith(".")]
    newer = [n for n in IndexDirectory(index).generations() if n > generation]
    assert leftovers == [] and newer == []
    for key in upserted:
        [hit] = server.client.search(vector=_vector_of(key), k=1, modalities=["vector"])
        assert hit.key == key


def _vector_of(key: str) -> list[float]:
    return np.random.default_rng(zlib.crc32(key.encode())).normal(size=DIM).tolist()


@pytest.mark.slow
def test_sigkill_during_a_rebuild_never_loses_the_index_or_an_acknowledged_upsert(built, tmp_path):
    index = tmp_path / "index"
    shutil.copytree(built.index, index)
    catalog = _catalog(tmp_path / "catalog.jsonl")
    original = (index / "CURRENT").read_text().strip()
    upserted: list[str] = []

    def upsert(server: Server, key: str) -> None:
        assert server.client.upsert([{"key": key, "vector": _vector_of(key)}]) == 1  # acknowledged
        upserted.append(key)

    # Killed while embedding, with an acknowledged upsert not yet in any generation file.
    server = Server(built, index, "embedding", tmp_path / "paused")
    upsert(server, "kill:during-embedding")
    server.rebuild_until_paused(catalog)
    assert any(p.name.startswith(".staging-") for p in index.iterdir())
    server.kill()

    # Killed with a FAISS file written into the staging folder.
    server = Server(built, index, "indexing", tmp_path / "paused")
    _check(server, index, original, upserted)
    upsert(server, "kill:during-indexing")
    server.rebuild_until_paused(catalog)
    # The store is written beside the index (local_builder.py), so it may be there too, whole or not.
    assert "index-vector.faiss" in [f.name for f in index.glob(".staging-*/*")]
    server.kill()

    # Killed right after CURRENT names the new generation, before the process swapped to it.
    server = Server(built, index, "live", tmp_path / "paused")
    _check(server, index, original, upserted)
    upsert(server, "kill:after-switch")
    server.rebuild_until_paused(catalog)
    switched = (index / "CURRENT").read_text().strip()
    assert switched != original
    server.kill()

    # The restart serves the new generation, with every upsert carried over to it.
    server = Server(built, index, None, tmp_path / "paused")
    try:
        _check(server, index, switched, upserted)
        assert server.client.info().size_by_modality == {"vector": 3_000 + len(upserted)}
    finally:
        server.kill()
