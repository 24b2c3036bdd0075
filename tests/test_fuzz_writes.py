"""Generated write requests (Upsert, Delete, RebuildIndex) against a real server of this module's
own, over a private copy of the session model and index inside a data directory: every call gets
a status a client can act on, with a message; a rejected call changes nothing that is served (the
engine's served value, the journal, GetIndexInfo and a fixed search are the same before and
after); the server keeps answering. Then concurrent writes of one key from several threads: the
key ends as the last acknowledged write left it, and a restart (journal replay) agrees.
"""

from __future__ import annotations

import math
import shutil
import struct
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from jointspace.client import Client, OperationState
from jointspace.v1 import jointspace_pb2 as pb
from serving import own_server

DIM = 16
WRITE_STATUSES = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.PERMISSION_DENIED,  # a path outside the data directory
    grpc.StatusCode.ABORTED,  # a rebuild while one runs
}
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


class Served:
    def __init__(self, root: Path, engine: Any, target: str, client: Client) -> None:
        self.root, self.engine, self.target, self.client = root, engine, target, client

    def snapshot(self) -> tuple[Any, ...]:
        """Everything a rejected write must leave as it was."""
        engine = self.engine
        served = engine.served
        journalled = len(engine.journal.changes(served.generation.name))
        fixed = self.client.stub.Search(pb.SearchRequest(query=pb.Query(text="seven"), k=20), timeout=30)
        return served, journalled, self.client.info(), fixed.SerializeToString(deterministic=True)


@pytest.fixture(scope="module")
def served(built, tmp_path_factory) -> Iterator[Served]:
    """A server that only this module writes to, confined to a data directory of its own."""
    from jointspace.server.index.data_dir import DataDir
    from jointspace.server.serving.engine import Engine

    root = tmp_path_factory.mktemp("fuzz-writes")
    for name in ("model", "index"):
        shutil.copytree(getattr(built, name), root / name)
    shutil.copy(built.catalog, root / "catalog.jsonl")
    engine = Engine(root / "model", root / "index", data_dir=DataDir(root))
    with own_server(engine) as running, Client(f"127.0.0.1:{running.port}", timeout=60) as client:
        client.wait_ready()
        yield Served(root, engine, f"127.0.0.1:{running.port}", client)


def _packed(values: list[float]) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


floats = st.floats(allow_nan=True, allow_infinity=True, width=32)
odd_text = st.text(st.characters(codec="utf-8"), max_size=40)  # surrogates excluded: proto strings are UTF-8
keys = st.one_of(st.sampled_from(["", "m:1", "vec:unit", "new:a", "new:a", "\u202e\u0000", "k" * 5000]), odd_text)
contents = st.one_of(
    st.just({}),
    odd_text.map(lambda t: {"id": t}),
    st.text(max_size=300).map(lambda t: {"text": t}),
    st.binary(max_size=3000).map(lambda b: {"audio": pb.Audio(content=b)}),
    st.tuples(st.binary(max_size=4000), st.integers(-10, 400_000)).map(
        lambda p: {"audio": pb.Audio(content=p[0], sample_rate=p[1])}),
    st.lists(floats, max_size=2 * DIM).map(lambda v: {"vector": pb.Vector(values=v)}),
    st.lists(floats, min_size=DIM, max_size=DIM).map(lambda v: {"vector": pb.Vector(f32=_packed(v))}),
    st.binary(max_size=4 * DIM + 8).map(lambda b: {"vector": pb.Vector(f32=b)}),
)
metadata = st.dictionaries(odd_text, st.one_of(odd_text, st.integers(-(2**60), 2**60), st.booleans()), max_size=3)


def _entry(key: str, content: dict[str, Any], meta: dict[str, Any]) -> pb.CatalogEntry:
    entry = pb.CatalogEntry(key=key, **content)
    entry.metadata.update(meta)
    return entry


entries = st.builds(_entry, keys, contents, metadata)
request_ids = st.one_of(st.just(""), st.sampled_from(["retry-1", "retry-1", "retry-2"]), odd_text)
upserts = st.builds(pb.UpsertRequest, entries=st.lists(entries, max_size=6), request_id=request_ids)
deletes = st.builds(pb.DeleteRequest, keys=st.lists(keys, max_size=6), request_id=request_ids)
paths = st.one_of(
    st.sampled_from(["catalog.jsonl", "/etc/passwd", "../catalog.jsonl", "index/../../x.jsonl", "", "no-such.jsonl",
                     "model/manifest.json", "/dev/zero", "index"]),
    odd_text,
)
rebuilds = st.builds(
    pb.RebuildIndexRequest,
    catalog_paths=st.lists(paths, max_size=3),
    index_type=st.one_of(st.sampled_from(["", "flat", "hnsw", "ivfpq", "IVF99999,Flat", "nonsense", "PQ3"]), odd_text),
    model_dir=st.sampled_from(["", "model", "/tmp", "../model", "no-such-model"]),
    validation_pairs=st.sampled_from(["", "catalog.jsonl", "/etc/passwd"]),
    min_recall=st.one_of(st.just(0.0), st.floats(allow_nan=True, allow_infinity=True)),
    validation_k=st.integers(-5, 2_000),
    request_id=request_ids,
)


def _write(served: Served, method: str, request: Any) -> tuple[grpc.StatusCode, Any]:
    """The call's status and answer (None when refused); a refused call must change nothing."""
    before = served.snapshot()
    try:
        answer, code = getattr(served.client.stub, method)(request, timeout=60), grpc.StatusCode.OK
    except grpc.RpcError as error:
        assert error.details(), f"{error.code()} without a message"
        answer, code = None, error.code()
    assert code in WRITE_STATUSES, (code, request)
    if currently_in_test_context():  # --hypothesis-show-statistics: how often each status came
        event(f"{method} {code.name}")
    if code != grpc.StatusCode.OK:
        _unchanged(served, before, method)
    return code, answer


def _unchanged(served: Served, before: tuple[Any, ...], what: str) -> None:
    after = served.snapshot()
    assert after[0] is before[0], f"a rejected {what} changed what is served"
    assert after[1:] == before[1:], f"a rejected {what} changed the journal, the info or a search"


@SETTINGS
@given(request=upserts)
def test_generated_upserts_get_a_proper_status_and_rejected_ones_change_nothing(served, request) -> None:
    _write(served, "Upsert", request)


@SETTINGS
@given(request=deletes)
def test_generated_deletes_get_a_proper_status_and_rejected_ones_change_nothing(served, request) -> None:
    _write(served, "Delete", request)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request=rebuilds)
def test_generated_rebuilds_get_a_proper_status_and_failed_ones_change_nothing(served, request) -> None:
    """An accepted rebuild is waited for (the next example meets an idle index); one that fails
    must say why, with a code other than INTERNAL, and leave the served index as it was."""
    before = served.snapshot()
    code, operation = _write(served, "RebuildIndex", request)
    if code == grpc.StatusCode.OK:
        finished = served.client.wait(operation.name, poll=0.05)
        assert finished.state in (OperationState.SUCCEEDED, OperationState.FAILED), finished
        if finished.state == OperationState.FAILED and finished.name == operation.name and not operation.done:
            assert finished.error.message and finished.error.code != grpc.StatusCode.INTERNAL, finished
            _unchanged(served, before, "RebuildIndex (failed operation)")


def test_huge_batches_are_refused_whole(served) -> None:
    limit = served.engine.limits.max_batch
    entries = [_entry(f"huge:{i}", {"vector": pb.Vector(values=[1.0] * DIM)}, {}) for i in range(limit + 1)]
    assert _write(served, "Upsert", pb.UpsertRequest(entries=entries))[0] == grpc.StatusCode.RESOURCE_EXHAUSTED
    keys = [f"huge:{i}" for i in range(limit + 1)]
    assert _write(served, "Delete", pb.DeleteRequest(keys=keys))[0] == grpc.StatusCode.RESOURCE_EXHAUSTED
    # One bad entry at the end of a full batch: none of the good ones before it is applied.
    entries[limit - 1] = _entry("huge:nan", {"vector": pb.Vector(values=[math.nan] * DIM)}, {})
    assert _write(served, "Upsert", pb.UpsertRequest(entries=entries[:limit]))[0] == grpc.StatusCode.INVALID_ARGUMENT


def test_a_retried_write_is_answered_again_not_applied_again(served) -> None:
    """A retry (same request_id) after the write was applied: an Upsert does not undo a later
    write of its key, a Delete answers as the first time instead of NOT_FOUND; the id reused
    for another request is refused and changes nothing."""
    key, probe = "retry:key", [0.0, 0.0, 0.0, 1.0] + [0.0] * (DIM - 4)
    first = pb.UpsertRequest(entries=[_entry(key, {"vector": pb.Vector(values=probe)}, {"n": 1})], request_id="r-up")
    assert served.client.stub.Upsert(first, timeout=30).upserted == 1
    served.client.upsert([{"key": key, "vector": probe, "metadata": {"n": 2}}])
    assert served.client.stub.Upsert(first, timeout=30).upserted == 1
    [hit] = served.client.search(vector=probe, k=1, modalities=["vector"])
    assert (hit.key, hit.metadata) == (key, {"n": 2})

    assert served.client.delete([key], request_id="r-del") == 1
    journalled = len(served.engine.journal.changes(served.engine.served.generation.name))
    assert served.client.delete([key], request_id="r-del") == 1
    assert len(served.engine.journal.changes(served.engine.served.generation.name)) == journalled
    code, _ = _write(served, "Delete", pb.DeleteRequest(keys=["m:3"], request_id="r-del"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, _ = _write(served, "Upsert", pb.UpsertRequest(entries=first.entries, request_id="r-del"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_server_still_answers_after_the_generated_writes(served) -> None:
    served.client.wait_ready()
    assert served.client.search(text="seven", k=3)
    assert served.client.upsert([{"key": "after:fuzz", "vector": [0.0, 0.0, 1.0] + [0.0] * (DIM - 3)}]) == 1
    [hit] = served.client.search(vector=[0.0, 0.0, 1.0] + [0.0] * (DIM - 3), k=1, modalities=["vector"])
    assert hit.key == "after:fuzz"


def test_concurrent_upserts_and_deletes_of_one_key_end_as_the_last_acknowledged_one(served) -> None:
    """Threads upsert (tagged by writer and step) and delete one key at random; a delete of the
    key while it is absent is NOT_FOUND and changes nothing. The journal must hold exactly the
    acknowledged writes, each writer's in its own order; what is served must be what the
    journal's last write left, and, after one final write once the threads are done (the last
    acknowledged operation beyond doubt), its outcome, in memory and after a restart."""
    key, acknowledged, lock = "race:key", [], threading.Lock()

    def vector(seed: int, step: int) -> list[float]:
        drawn = np.random.default_rng([seed, step]).normal(size=DIM)
        return (drawn / np.linalg.norm(drawn)).tolist()

    def worker(seed: int) -> None:
        rng = np.random.default_rng(seed)
        with Client(served.target, timeout=60) as own:
            for step in range(15):
                if rng.random() < 0.6:
                    own.upsert([{"key": key, "vector": vector(seed, step), "metadata": {"writer": seed, "step": step}}])
                    with lock:
                        acknowledged.append(("upsert", seed, step))
                    continue
                try:
                    own.delete([key])
                except grpc.RpcError as error:
                    assert error.code() == grpc.StatusCode.NOT_FOUND, error
                    continue
                with lock:
                    acknowledged.append(("delete", seed, step))

    with ThreadPoolExecutor(max_workers=4) as pool:
        writers = [pool.submit(worker, seed) for seed in range(4)]
    for writer in writers:
        writer.result()  # a writer's failed assert or error raises here, in the test's thread
    engine = served.engine
    journal = [c for c in engine.journal.changes(engine.served.generation.name) if c.key == key]
    assert len(journal) == len(acknowledged) and sum(c.kind == "delete" for c in journal) == \
        sum(kind == "delete" for kind, _, _ in acknowledged)
    tags = [(c.metadata["writer"], c.metadata["step"]) for c in journal if c.kind == "upsert"]
    assert sorted(tags) == sorted((w, s) for kind, w, s in acknowledged if kind == "upsert")
    for writer in range(4):
        steps = [s for w, s in tags if w == writer]
        assert steps == sorted(steps), f"writer {writer}'s upserts journalled out of order"

    def outcome(client: Client, probe: list[float]) -> Any:
        """The key's hit for `probe` (its vector if it is live), or None when it is absent."""
        found = [h for h in client.search(vector=probe, k=5, modalities=["vector"]) if h.key == key]
        return (found[0].metadata, round(found[0].score, 4)) if found else None

    last = journal[-1]
    probe = last.vector.tolist() if last.kind == "upsert" else vector(0, 0)
    assert outcome(served.client, probe) == ((last.metadata, 1.0) if last.kind == "upsert" else None)

    if last.kind == "upsert":  # the final write: a delete of a live key, or an upsert of an absent one
        assert served.client.delete([key]) == 1
        expected = None
    else:
        served.client.upsert([{"key": key, "vector": probe, "metadata": {"writer": "main", "step": 0}}])
        expected = ({"writer": "main", "step": 0}, 1.0)
    assert outcome(served.client, probe) == expected
    restarted = type(engine)(served.root / "model", served.root / "index", data_dir=engine.data_dir)
    with own_server(restarted) as running, Client(f"127.0.0.1:{running.port}", timeout=60) as again:
        assert outcome(again, probe) == expected
