"""Read replicas: a writer and two readers, real `jointspace serve` processes over one index
directory on loopback. What the writer acknowledges, the readers serve within a bound; a rebuild
on the writer swaps on all three; under a mixed load with a rebuild in the middle no query fails
and no acknowledged write is missing anywhere; readers refuse writes and a second writer refuses
to start. Visibility is polled with a deadline far beyond the stated bound (follow interval plus
apply time, docs/guide.md), so a loaded machine does not fail it; a failure names the time."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from jointspace.bench.serve_process import ServeProcess
from jointspace.client import Client, RpcFailure
from jointspace.server.index.journal import DELETE, UPSERT, Change, Journal
from serving import jointspace_exe

DIM = 16  # the session model's
INTERVAL = "0.2"  # the readers' --follow-interval-seconds
DEADLINE = 30.0  # seconds: for CI, far beyond the bound; not a timing assertion


@dataclass
class Replica:
    name: str
    process: ServeProcess
    address: str
    client: Client


@dataclass
class Replicas:
    index: Path
    writer: Replica
    readers: list[Replica]

    @property
    def all(self) -> list[Replica]:
        return [self.writer, *self.readers]


@pytest.fixture(scope="module")
def replicas(built, tmp_path_factory) -> Iterator[Replicas]:
    index = tmp_path_factory.mktemp("replicas") / "index"
    shutil.copytree(built.index, index)
    common = ["--model", str(built.model), "--index", str(index), "--port", "0", "--log-format", "json",
              "--workers", "2", "--grace-seconds", "1"]
    roles = {"writer": [], "reader-1": ["--role", "reader", "--follow-interval-seconds", INTERVAL],
             "reader-2": ["--role", "reader", "--follow-interval-seconds", INTERVAL]}
    processes = {name: ServeProcess([*common, *extra]) for name, extra in roles.items()}  # load together
    started: list[Replica] = []
    try:
        for name, process in processes.items():
            address = f"127.0.0.1:{process.wait_for('listening on')['port']}"
            started.append(Replica(name, process, address, Client(address, timeout=60)))
            started[-1].client.wait_ready(timeout=180)
        yield Replicas(index, started[0], started[1:])
    finally:
        for replica in started:
            replica.client.close()
        for process in processes.values():
            process.process.terminate()
        for process in processes.values():
            process.process.wait(timeout=60)


def _vector(key: str) -> list[float]:
    return np.random.default_rng(zlib.crc32(key.encode())).normal(size=DIM).tolist()


def _catalog(path: Path, rows: int = 200) -> Path:
    path.write_text("".join(json.dumps({"key": f"c:{i}", "vector": _vector(f"c:{i}")}) + "\n" for i in range(rows)))
    return path


def _upsert(writer: Replica, key: str, version: int) -> None:
    entry = {"key": key, "vector": _vector(key), "metadata": {"v": version}}
    assert writer.client.upsert([entry]) == 1  # acknowledged: durable on the writer


def _serves(replica: Replica, key: str, version: int | None) -> bool:
    """Whether the replica serves `key` at `version` (None: serves no such key)."""
    entries = replica.client.get_entries([key])
    return not entries if version is None else bool(entries) and entries[0].metadata.get("v") == version


def _on_generation(replica: Replica, generation: str) -> bool:
    return replica.client.info().generation == generation


def _until(what: str, check: Callable[..., bool], *args: Any) -> float:
    """Seconds until `check(*args)` holds; fails after DEADLINE naming `what` and the time waited."""
    started = time.monotonic()
    while not check(*args):
        waited = time.monotonic() - started
        assert waited < DEADLINE, f"{what}: not seen after {waited:.1f} s"
        time.sleep(0.02)
    return time.monotonic() - started


def _served_everywhere(replicas: Replicas, written: dict[str, int | None]) -> None:
    """Every replica serves each key at its version (None: deleted)."""
    for replica in replicas.all:
        for key, version in written.items():
            _until(f"{replica.name}: {key} at version {version}", _serves, replica, key, version)


def _rebuilt(writer: Replica, catalog: Path, wait: bool = True) -> str:
    operation = writer.client.rebuild([catalog])
    if not wait:
        return operation.name
    done = writer.client.wait(operation.name, timeout=120)
    assert done.error is None, done.error
    return done.generation


def _same_generation(replicas: Replicas, generation: str) -> None:
    for replica in replicas.all:
        _until(f"{replica.name}: generation {generation}", _on_generation, replica, generation)


def test_an_acknowledged_upsert_and_delete_reach_both_readers(replicas):
    _upsert(replicas.writer, "replica:a", 1)
    for reader in replicas.readers:
        _until(f"{reader.name}: the upsert", _serves, reader, "replica:a", 1)
        [hit] = reader.client.search(vector=_vector("replica:a"), k=1, modalities=["vector"])
        assert hit.key == "replica:a"  # searched too, not only looked up
    _upsert(replicas.writer, "replica:a", 2)
    assert replicas.writer.client.delete(["vec:unit"]) == 1  # a row of the generation itself
    for reader in replicas.readers:
        _until(f"{reader.name}: the second upsert", _serves, reader, "replica:a", 2)
        _until(f"{reader.name}: the delete", _serves, reader, "vec:unit", None)
    assert replicas.writer.client.delete(["replica:a"]) == 1
    for reader in replicas.readers:
        _until(f"{reader.name}: the delete of an upsert", _serves, reader, "replica:a", None)


def test_a_rebuild_on_the_writer_swaps_on_all_three(replicas, tmp_path):
    _upsert(replicas.writer, "replica:before", 1)
    generation = _rebuilt(replicas.writer, _catalog(tmp_path / "catalog.jsonl"))
    _upsert(replicas.writer, "replica:after", 1)
    _same_generation(replicas, generation)
    _served_everywhere(replicas, {"replica:before": 1, "replica:after": 1})
    for replica in replicas.all:  # the new catalog's rows and the two upserts (earlier ones were deleted)
        assert replica.client.info().size_by_modality == {"vector": 200 + 2}, replica.name


def test_no_failed_query_and_no_missing_write_under_load_with_a_rebuild(replicas, tmp_path):
    stop, failures, answered = threading.Event(), [], [0, 0]

    def query(number: int, reader: Replica) -> None:
        with Client(reader.address, timeout=30) as client:
            while not stop.is_set():
                try:
                    client.search(vector=_vector(f"load:{answered[number] % 30}"), k=5, modalities=["vector"])
                except grpc.RpcError as error:
                    failures.append(f"{reader.name}: {error}")
                answered[number] += 1

    threads = [threading.Thread(target=query, args=(n, r)) for n, r in enumerate(replicas.readers)]
    for thread in threads:
        thread.start()
    try:
        written: dict[str, int | None] = {}
        operation = ""
        for step in range(60):
            if step == 20:
                operation = _rebuilt(replicas.writer, _catalog(tmp_path / "catalog.jsonl", 300), wait=False)
            key = f"load:{step % 30}"  # half the keys are written twice
            _upsert(replicas.writer, key, step)
            written[key] = step
            if step % 10 == 9:
                deleted = f"load:{(step - 5) % 30}"
                assert replicas.writer.client.delete([deleted]) == 1
                written[deleted] = None
        done = replicas.writer.client.wait(operation, timeout=120)
        assert done.error is None, done.error
        _same_generation(replicas, done.generation)
        _served_everywhere(replicas, written)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    assert all(answered), answered


def test_a_reader_refuses_writes_and_a_second_writer_refuses_to_start(replicas, built, tmp_path):
    reader = replicas.readers[0].client
    writes = {"upsert": lambda: reader.upsert([{"key": "nope", "vector": _vector("nope")}]),
              "delete": lambda: reader.delete(["c:1"]),
              "rebuild": lambda: reader.rebuild([_catalog(tmp_path / "catalog.jsonl", 10)])}
    for name, write in writes.items():
        with pytest.raises(RpcFailure) as refused:
            write()
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION, name
        assert "read replica" in refused.value.message and "writer" in refused.value.message, name
    result = subprocess.run([jointspace_exe(), "serve", "--model", str(built.model), "--index", str(replicas.index),
                             "--port", "0"], capture_output=True, text=True, timeout=180)
    errors = [line for line in result.stderr.splitlines() if line.startswith("jointspace: error:")]
    assert result.returncode == 1 and len(errors) == 1, result.stderr
    assert "already served by a writer" in errors[0] and "--role reader" in errors[0], errors[0]
    assert replicas.writer.client.info().generation  # the first writer serves on


def test_bench_replicas_measures_every_readers_lag(replicas, tmp_path):
    """`jointspace bench replicas`'s measurement, over these processes: a figure per reader for
    the writes and the rebuild, the query load answered throughout."""
    from jointspace.bench import replicas as bench

    vectors = np.asarray([_vector(f"bench:{n}") for n in range(6)], np.float32)
    result = bench.measure(replicas.writer.address, [r.address for r in replicas.readers],
                           _catalog(tmp_path / "catalog.jsonl", 50), 6, vectors, spacing=0.05)
    assert result["failed_queries"] == 0 and result["queries_during"] > 0, result["first_errors"]
    assert len(result["lag_ms_by_reader"]) == len(result["rebuild_swap_lag_ms_by_reader"]) == 2
    assert 0 <= result["lag_ms"]["p50"] <= result["lag_ms"]["p90"] <= result["lag_ms"]["max"]


def test_a_read_only_engine_writes_nothing_into_the_index_directory(built, tmp_path):
    """No journal created, a build in progress (the writer's) left alone, changes refused."""
    from jointspace.core.errors import NotReady
    from jointspace.server.serving.engine import Engine

    index = tmp_path / "index"
    shutil.copytree(built.index, index)
    (index / ".staging-writer").mkdir()
    before = sorted(p.name for p in index.iterdir())
    engine = Engine(built.model, index, read_only=True)
    with pytest.raises(NotReady, match="read replica"):
        engine.delete(["vec:unit"])
    assert engine.info()["size"] > 0
    assert sorted(p.name for p in index.iterdir()) == before


def test_tailing_the_journal_by_number_misses_no_change_and_repeats_none(tmp_path):
    """The reader's rule (journal.py): once a generation is live, its rows numbered after the
    last one applied are exactly the new ones, also right after a carry-over."""
    writer, reader = Journal(tmp_path), Journal(tmp_path, read_only=True)
    assert reader.changes("gen-000001") == [] and not writer.path.exists()  # a reader creates nothing
    writer.append("gen-000001", [Change(UPSERT, "a", modality="id", value="m:1"), Change(DELETE, "b")])
    writer.append("gen-000001", [Change(DELETE, "c")])
    writer.carry_over("gen-000002", writer.changes("gen-000001", after=1))  # a rebuild's catalog held "a"
    writer.keep_only("gen-000002")
    carried = reader.changes("gen-000002")
    assert [(c.key, c.number) for c in carried] == [("b", 2), ("c", 3)]
    applied = max(c.number for c in carried)
    writer.append("gen-000002", [Change(DELETE, "d")])
    assert [(c.key, c.number) for c in reader.changes("gen-000002", after=applied)] == [("d", 6)]
    with pytest.raises(RuntimeError, match="never written"):
        reader.append("gen-000002", [Change(DELETE, "e")])
