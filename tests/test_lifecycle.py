"""Index lifecycle over real gRPC: rebuild operations, hot swap, upserts and deletes, filters,
the validation gate and model switches. Every test serves its own copy of the session index, so
the shared fixtures never change."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from jointspace.client import Client, Operation, OperationState
from jointspace.v1 import jointspace_pb2 as pb
from serving import jointspace_exe, own_server

DIM = 16
DONE = OperationState.SUCCEEDED
NEW_TEXT = "seven, said anew"  # scores 1.0 only against itself


@dataclass
class Setup:
    client: Client
    engine: Any
    index: Path
    target: str


def _engine(model: Path, index: Path, **settings: Any) -> Any:
    from jointspace.server.serving.engine import Engine

    return Engine(model, index, **settings)


@pytest.fixture()
def setup(built, tmp_path):
    """A server of its own over a private copy of the session index."""
    index = tmp_path / "index"
    shutil.copytree(built.index, index)
    engine = _engine(built.model, index)
    with own_server(engine) as running, Client(f"127.0.0.1:{running.port}", timeout=60) as client:
        client.wait_ready()
        yield Setup(client, engine, index, f"127.0.0.1:{running.port}")


def _code(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value.code(), raised.value.details()


def _rebuilt(client: Client, catalogs: list[Path], **options: Any) -> Operation:
    return client.wait(client.rebuild(catalogs, **options).name, poll=0.02)


@contextmanager
def _while_rebuilding(client: Client, monkeypatch: pytest.MonkeyPatch, catalogs: list[Path],
                      **options: Any) -> Iterator[list[Operation]]:
    """Holds a real rebuild just before it reads its catalogs while the body runs; the list
    yielded receives the finished operation on exit."""
    from jointspace.server.serving import rebuild
    reading, go_on = threading.Event(), threading.Event()
    real_build = rebuild.build_generation

    def held_build(*args: Any, **kwargs: Any) -> str:
        reading.set()
        if not go_on.wait(120):
            raise TimeoutError("the test never let the rebuild go on")
        return real_build(*args, **kwargs)

    monkeypatch.setattr(rebuild, "build_generation", held_build)
    operation = client.rebuild(catalogs, **options)
    assert reading.wait(120), "the rebuild never started reading"
    finished: list[Operation] = []
    try:
        yield finished
    finally:
        go_on.set()
    finished.append(client.wait(operation.name, poll=0.02))


def _vector_catalog(path: Path, count: int, seed: int = 0) -> Path:
    """Precomputed vectors whose metadata splits them in two halves."""
    vectors = np.random.default_rng(seed).normal(size=(count, DIM)).round(4)
    with path.open("w") as out:
        for i, vector in enumerate(vectors.tolist()):
            out.write(json.dumps({"key": f"v:{i}", "vector": vector, "metadata": {"half": i % 2}}) + "\n")
    return path


def _keys(hits) -> list[str]:
    return [h.key for h in hits]


def test_rebuild_reports_progress_and_swaps_in_the_new_generation(built, setup):
    client, index = setup.client, setup.index
    before = client.info().generation
    answer = [h.key for h in client.search(id="m:1", k=5, modalities=["id"])]
    started = client.rebuild([built.catalog])
    assert started.name.startswith("operations/rebuild-") and not started.done
    seen = []
    finished = client.wait(started.name, poll=0.01, on_progress=lambda op: seen.append(op.progress))
    assert finished.state == DONE and finished.generation, finished
    embedding = [p for p in seen if p.phase == "embedding"]
    assert embedding and all(0 < p.done <= p.total for p in embedding)
    assert finished.generation != before and client.info().generation == finished.generation
    assert (index / "CURRENT").read_text().strip() == finished.generation
    assert [h.key for h in client.search(id="m:1", k=5, modalities=["id"])] == answer  # same model and catalog
    assert [op.name for op in client.operations()] == [started.name]
    assert client.operation(started.name).generation == finished.generation


def test_second_rebuild_is_aborted_and_a_cancelled_one_publishes_nothing(built, setup, tmp_path):
    client, index = setup.client, setup.index
    catalog = _vector_catalog(tmp_path / "vectors.jsonl", 30_000)
    before = sorted(p.name for p in index.iterdir())
    serving = client.info().generation
    first = client.rebuild([catalog])
    code, message = _code(lambda: client.rebuild([built.catalog]))
    assert code == grpc.StatusCode.ABORTED and first.name in message
    assert client.cancel(first.name).name == first.name
    final = client.wait(first.name, poll=0.01)
    assert final.state == OperationState.CANCELLED and final.error.code == grpc.StatusCode.CANCELLED
    assert sorted(p.name for p in index.iterdir()) == before  # no staging folder, no new generation
    assert client.info().generation == serving
    assert _rebuilt(client, [built.catalog]).state == DONE  # the index is free again


def test_request_id_returns_the_operation_it_started(built, setup):
    client = setup.client
    first = client.rebuild([built.catalog], request_id="nightly-1")
    assert client.rebuild([built.catalog], request_id="nightly-1").name == first.name
    client.wait(first.name, poll=0.02)
    assert client.rebuild([built.catalog], request_id="nightly-1").name == first.name


def test_queries_never_fail_during_rebuild_and_swap(built, setup):
    failures: list[grpc.RpcError] = []
    answered, generations = [0], set()
    stop = threading.Event()

    def query_loop() -> None:
        with Client(setup.target, timeout=30) as own:
            while not stop.is_set():
                try:
                    response = own.stub.Search(pb.SearchRequest(query=pb.Query(text="seven"), k=5), timeout=30)
                    generations.add(response.generation)
                    answered[0] += len(response.hits) == 5
                except grpc.RpcError as error:
                    failures.append(error)

    thread = threading.Thread(target=query_loop)
    thread.start()
    try:
        for _ in range(2):
            assert _rebuilt(setup.client, [built.catalog]).state == DONE
    finally:
        stop.set()
        thread.join()
    assert failures == [] and answered[0] > 0
    assert len(generations) >= 2  # answered by the old generation and by new ones


def test_old_generations_beyond_the_retention_count_are_deleted(built, setup):
    names = [_rebuilt(setup.client, [built.catalog]).generation for _ in range(3)]
    kept = sorted(p.name for p in setup.index.iterdir() if p.name.startswith("gen-"))
    assert kept == names[-3:]  # default --keep-generations 3: the live one and two before it


def test_a_generation_placed_but_never_live_is_removed_at_start(built, tmp_path):
    from jointspace.encoders.inference import EncoderSet
    from jointspace.server.build.local_builder import build_generation

    index = tmp_path / "index"
    shutil.copytree(built.index, index)
    live = (index / "CURRENT").read_text().strip()
    placed = build_generation(EncoderSet(built.model), [built.catalog], index, go_live=False)
    assert (index / placed).is_dir() and (index / "CURRENT").read_text().strip() == live
    engine = _engine(built.model, index)  # what a restart after a kill in that gap does
    assert engine.served.generation.name == live and not (index / placed).exists()


def test_upsert_and_delete_are_served_and_survive_a_restart(built, setup):
    client = setup.client
    assert client.upsert([
        {"key": "new:seven", "text": NEW_TEXT, "metadata": {"source": "upsert"}},
        {"key": "vec:unit", "vector": [0.0, 1.0] + [0.0] * (DIM - 2), "metadata": {"kind": "moved"}},
    ]) == 2
    assert client.delete(["m:1"]) == 1

    def check(c: Client) -> None:
        [hit] = c.search(text=NEW_TEXT, k=1, modalities=["text"])
        assert (hit.key, hit.metadata) == ("new:seven", {"source": "upsert"})
        moved = c.search(vector=[0.0, 1.0] + [0.0] * (DIM - 2), k=1, modalities=["vector"])
        assert _keys(moved) == ["vec:unit"] and moved[0].score == pytest.approx(1.0, abs=1e-5)
        assert moved[0].metadata == {"kind": "moved"}
        assert _keys(c.search(vector=[1.0] + [0.0] * (DIM - 1), k=5, modalities=["vector"])) == ["vec:unit"]
        assert "m:1" not in _keys(c.search(id="m:2", k=200, modalities=["id"]))
        assert c.info().size_by_modality["id"] == len(built.films.film_ids) - 1

    check(client)
    restarted = _engine(built.model, setup.index)  # what a restart loads: generation + journal
    with own_server(restarted) as running, Client(f"127.0.0.1:{running.port}") as again:
        check(again)


@pytest.mark.parametrize("catalog_time", [1_000_000_000, 4_000_000_000], ids=["dated-past", "dated-future"])
def test_changes_are_carried_over_a_rebuild_by_journal_number_whatever_the_catalog_date(
        built, setup, tmp_path, monkeypatch, catalog_time):
    """Journal numbers decide, not file times: by default every acknowledged change survives a
    rebuild (made before it or while it runs); a catalog said to include the changes up to N
    supersedes exactly those."""
    client = setup.client
    catalog = tmp_path / "catalog.jsonl"
    shutil.copy(built.catalog, catalog)
    os.utime(catalog, (catalog_time, catalog_time))
    unit = [1.0] + [0.0] * (DIM - 1)
    client.upsert([{"key": "before:seven", "text": NEW_TEXT}])
    during = [f"during:{i}" for i in range(5)]
    with _while_rebuilding(client, monkeypatch, [catalog]) as finished:
        client.upsert([{"key": key, "vector": unit} for key in during])
        client.delete(["m:2"])
    assert finished[0].state == DONE
    assert _keys(client.search(text=NEW_TEXT, k=1, modalities=["text"])) == ["before:seven"]
    assert set(during) <= set(_keys(client.search(vector=unit, k=20, modalities=["vector"])))
    assert "m:2" not in _keys(client.search(id="m:3", k=200, modalities=["id"]))

    exported = client.info().last_change  # a catalog exported now would hold all of those
    client.upsert([{"key": "after:export", "vector": unit}])
    assert _rebuilt(client, [catalog], includes_changes_through=exported).state == DONE
    found = _keys(client.search(vector=unit, k=20, modalities=["vector"]))
    assert "after:export" in found and not set(during) & set(found)
    assert "before:seven" not in _keys(client.search(text=NEW_TEXT, k=20, modalities=["text"]))
    assert "m:2" in _keys(client.search(id="m:3", k=200, modalities=["id"]))


def test_concurrent_upserts_of_one_key_are_serialised(built, setup):
    def writer(n: int) -> None:
        with Client(setup.target) as own:
            for i in range(5):
                own.upsert([{"key": "race", "vector": [1.0] * DIM, "metadata": {"writer": n, "i": i}}])

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    served = setup.engine.served.changes.entries["race"].metadata
    journal = setup.engine.journal.changes(setup.engine.served.generation.name)
    assert len(journal) == 20 and journal[-1].metadata == served  # memory and journal agree on the last
    hits = setup.client.search(vector=[1.0] * DIM, k=3, modalities=["vector"])
    assert _keys(hits).count("race") == 1


def test_filters_return_k_matching_hits(built, setup):
    client = setup.client
    tastes = dict(zip(built.films.film_ids.tolist(), built.films.film_taste.tolist()))
    wanted = max(set(tastes.values()), key=list(tastes.values()).count)
    hits = client.search(id="m:1", k=10, modalities=["id"], filters={"taste": wanted})
    assert len(hits) == 10 and all(h.metadata["taste"] == wanted for h in hits)
    pair = sorted(set(tastes.values()))[:2]
    hits = client.search(id="m:1", k=30, modalities=["id"], filters={"taste": pair})
    assert len(hits) == 30 and {h.metadata["taste"] for h in hits} <= set(pair)
    assert client.search(id="m:1", k=10, filters={"taste": 12345}) == []
    client.upsert([{"key": "new:film", "id": "m:5", "metadata": {"taste": 12345}}])
    assert _keys(client.search(id="m:1", k=10, filters={"taste": 12345})) == ["new:film"]
    assert client.search(id="m:1", k=10, filters={"taste": "12345"}) == []  # a string is not a number


def test_filters_on_an_hnsw_index_still_return_k_hits(setup, tmp_path):
    catalog = _vector_catalog(tmp_path / "vectors.jsonl", 12_000)
    assert _rebuilt(setup.client, [catalog], index="hnsw").state == DONE
    query = np.random.default_rng(7).normal(size=DIM).tolist()
    hits = setup.client.search(vector=query, k=50, filters={"half": 1})
    assert len(hits) == 50 and all(h.metadata["half"] == 1 for h in hits)
    setup.client.delete([h.key for h in hits[:10]])
    again = setup.client.search(vector=query, k=50, filters={"half": 1})
    assert len(again) == 50 and not set(_keys(again)) & set(_keys(hits[:10]))


def _validation_file(built, path: Path, expected: str, client=None) -> Path:
    """Pairs of a film and the key it should find first: "served" takes what `client` answers now
    (the same model and catalog rebuilt must answer alike), "other" a film half the catalog away."""
    films = built.films.film_ids.tolist()
    with path.open("w") as out:
        for i, film in enumerate(films[:40]):
            if expected == "served":
                key = client.search(id=film, k=1, modalities=["id"])[0].key
            else:
                key = films[(i + 60) % len(films)]
            out.write(json.dumps({"key": key, "id": film}) + "\n")
    return path


def test_gated_rebuild_swaps_only_when_recall_is_reached(built, setup, tmp_path):
    client = setup.client
    good = _validation_file(built, tmp_path / "good.jsonl", "served", client)
    passed = _rebuilt(client, [built.catalog], validation_pairs=good, min_recall=0.9, validation_k=1)
    assert passed.state == DONE and passed.validation.recall >= 0.9 and passed.validation.pairs == 40
    assert client.info().generation == passed.generation

    bad = _validation_file(built, tmp_path / "bad.jsonl", "other")
    failed = _rebuilt(client, [built.catalog], validation_pairs=bad, min_recall=0.9, validation_k=1)
    assert failed.state == OperationState.FAILED and failed.validation.recall < 0.9
    assert failed.error.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "recall@1" in failed.error.message and passed.generation in failed.error.message
    assert client.info().generation == passed.generation
    assert not [p for p in setup.index.iterdir() if p.name > passed.generation and p.name.startswith("gen-")]


def _other_model(built, path: Path, version: str) -> Path:
    """The same weights under another version: a model the index was not embedded with."""
    shutil.copytree(built.model, path)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["model_version"] = version
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


def test_rebuild_with_a_new_model_switches_both_and_survives_a_restart(built, setup, tmp_path, monkeypatch):
    client = setup.client
    model = _other_model(built, tmp_path / "model-2", "model-two")
    with _while_rebuilding(client, monkeypatch, [built.catalog], model=model) as finished:
        client.upsert([{"key": "new:seven", "text": NEW_TEXT}])
    switched = finished[0]
    assert switched.state == DONE
    assert client.info().model_version == "model-two"
    assert _keys(client.search(text=NEW_TEXT, k=1, modalities=["text"])) == ["new:seven"]  # re-embedded
    # A restart with the old --model serves the pinned pair instead of refusing to start.
    restarted = _engine(built.model, setup.index)
    assert restarted.served.encoders.version == "model-two"


def test_a_model_that_cannot_load_fails_the_operation_not_the_server(built, setup, tmp_path):
    model = _other_model(built, tmp_path / "model-3", "model-three")
    shutil.rmtree(model / next(p.name for p in model.iterdir() if p.is_dir()))  # an encoder is missing
    failed = _rebuilt(setup.client, [built.catalog], model=model)
    assert failed.state == OperationState.FAILED and failed.error.message
    assert setup.client.info().model_version == built_version(built)  # the old pair keeps serving
    assert setup.client.search(text="seven", k=1)


def built_version(built) -> str:
    return json.loads((built.model / "manifest.json").read_text())["model_version"]


def test_bad_lifecycle_requests_get_clear_codes(built, setup, tmp_path):
    client, stub = setup.client, setup.client.stub
    cases = {
        "unknown operation": (lambda: client.operation("operations/rebuild-nope"), grpc.StatusCode.NOT_FOUND, "name"),
        "empty operation name": (lambda: client.cancel(""), grpc.StatusCode.INVALID_ARGUMENT, "name"),
        "no catalogs": (lambda: client.rebuild([]), grpc.StatusCode.INVALID_ARGUMENT, "catalog_paths"),
        "missing catalog": (lambda: client.rebuild([tmp_path / "nope.jsonl"]), grpc.StatusCode.NOT_FOUND,
                            "catalog_paths[0]"),
        "missing model": (lambda: client.rebuild([built.catalog], model=tmp_path / "nope"),
                          grpc.StatusCode.NOT_FOUND, "model_dir"),
        "change not made yet": (lambda: client.rebuild([built.catalog], includes_changes_through=10**9),
                                grpc.StatusCode.INVALID_ARGUMENT, "catalog_includes_changes_through"),
        "gate without pairs": (lambda: client.rebuild([built.catalog], min_recall=0.5),
                               grpc.StatusCode.INVALID_ARGUMENT, "min_recall"),
        "recall over 1": (lambda: client.rebuild([built.catalog], validation_pairs=built.catalog, min_recall=2),
                          grpc.StatusCode.INVALID_ARGUMENT, "min_recall"),
        "empty filter field": (lambda: stub.Search(pb.SearchRequest(
            query=pb.Query(text="seven"), k=1, filters=[pb.MetadataFilter(field="")])),
            grpc.StatusCode.INVALID_ARGUMENT, "filters[0].field"),
        "filter without values": (lambda: client.search(text="seven", k=1, filters={"taste": []}),
                                  grpc.StatusCode.INVALID_ARGUMENT, "filters[0].any_of"),
        "filter on an object": (lambda: client.search(text="seven", k=1, filters={"taste": [{"a": 1}]}),
                                grpc.StatusCode.INVALID_ARGUMENT, "filters[0].any_of[0]"),
        "empty upsert": (lambda: client.upsert([]), grpc.StatusCode.INVALID_ARGUMENT, "entries"),
        "upsert without key": (lambda: client.upsert([{"text": "x"}]), grpc.StatusCode.INVALID_ARGUMENT,
                               "entries[0].key"),
        "upsert of a wrong vector": (lambda: client.upsert([{"key": "k", "vector": [1.0, 2.0]}]),
                                     grpc.StatusCode.INVALID_ARGUMENT, "vector"),
        "duplicate keys": (lambda: client.upsert([{"key": "k", "text": "a"}, {"key": "k", "text": "b"}]),
                           grpc.StatusCode.INVALID_ARGUMENT, "entries"),
        "delete of an unknown key": (lambda: client.delete(["m:1", "no-such-key"]), grpc.StatusCode.NOT_FOUND,
                                     "no-such-key"),
    }
    for name, (call, expected, field) in cases.items():
        code, message = _code(call)
        assert (code, field in message) == (expected, True), f"{name}: {code} {message}"
    assert "m:1" in _keys(client.search(id="m:2", k=200, modalities=["id"]))  # the failed delete deleted none
    assert list(client.operations()) == []


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "JOINTSPACE_DEBUG"}
    return subprocess.run([jointspace_exe(), *args], capture_output=True, text=True, timeout=300, env=env)


def test_rebuild_command_waits_with_progress_and_fails_in_one_line(built, setup, tmp_path):
    done = _cli("rebuild", "--target", setup.target, str(built.catalog), "--wait")
    assert done.returncode == 0, done.stderr
    generation = setup.client.info().generation
    assert done.stdout.strip().endswith(f"{generation} is live")
    assert f"{done.stdout.split(':')[0]}: swapping" in done.stderr  # the progress shown, to the last phase

    bad = _validation_file(built, tmp_path / "bad.jsonl", "other")
    refused = _cli("rebuild", "--target", setup.target, str(built.catalog), "--wait",
                   "--validation-pairs", str(bad), "--min-recall", "0.9", "--validation-k", "1")
    errors = [line for line in refused.stderr.splitlines() if line.startswith("jointspace: error:")]
    assert refused.returncode == 1 and len(errors) == 1 and "Traceback" not in refused.stderr
    assert "failed: FAILED_PRECONDITION: validation gate: recall@1" in errors[0]
    missing = _cli("rebuild", "--target", setup.target, str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 1 and "NOT_FOUND: catalog_paths[0]" in missing.stderr
    assert setup.client.info().generation == generation

    filtered = _cli("query", "--target", setup.target, "--id", "m:1", "-k", "5", "--modality", "id",
                    "--filter", "taste=3", "--filter", "taste=4", "--json")
    hits = json.loads(filtered.stdout)["hits"]
    assert len(hits) == 5 and {h["metadata"]["taste"] for h in hits} <= {3, 4}
