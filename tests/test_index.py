"""Index generations on disk with real FAISS: atomic publishing, checksums, index types."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from jointspace.core.errors import InvalidInput, NotReady
from jointspace.server.index.generation import CorruptGeneration, Generation
from jointspace.server.index.index_directory import IndexDirectory
from jointspace.server.index.index_types import build_index, factory_string, make_index
from jointspace.server.index.searching import search, unwrapped_search


@pytest.mark.parametrize("spec, count, factory", [
    ("auto", 1_000, "Flat"), ("auto", 100_000, "HNSW32,Flat"), ("auto", 10_000_000, "IVF12649,PQ16np"),
    ("flat", 10, "Flat"), ("hnsw", 10, "HNSW32,Flat"), ("IVF16,Flat", 10, "IVF16,Flat"),
])
def test_factory_choice(spec, count, factory):
    assert factory_string(spec, count, 32) == factory


def test_every_index_type_finds_near_duplicates():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(3000, 16)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    for spec in ("flat", "hnsw", "IVF32,Flat", "ivfpq"):
        index = build_index(factory_string(spec, len(data), 16), [str(i) for i in range(len(data))], data)
        _, found = index.search(data[:50], 1)
        recall = (found[:, 0] == np.arange(50)).mean()
        assert recall >= (0.6 if spec == "ivfpq" else 0.95), spec


@pytest.mark.parametrize("spec", ["flat", "hnsw", "IVF32,Flat"])
def test_the_unwrapped_search_answers_as_faiss_own_wrapper(spec):
    rng = np.random.default_rng(1)
    data = rng.normal(size=(2000, 16)).astype(np.float32)
    index = build_index(factory_string(spec, len(data), 16), [str(i) for i in range(len(data))], data)
    queries = rng.normal(size=(7, 16)).astype(np.float32)
    expected = index.search(queries, 10)
    for given in (queries, queries[:1], queries.astype(np.float64), np.asfortranarray(queries)):
        scores, rows = unwrapped_search(index, given, 10)
        assert scores.dtype == np.float32 and rows.dtype == np.int64
        np.testing.assert_array_equal(rows, expected[1][: len(given)])
        np.testing.assert_array_equal(scores, expected[0][: len(given)])
    with pytest.raises(AssertionError):  # the wrapper's own check, never FAISS reading past a row
        unwrapped_search(index, queries[:, :8], 10)


def test_bad_factory_string_is_invalid_input():
    with pytest.raises(InvalidInput, match="FAISS"):
        make_index("Bogus,Thing", 10, 8)


def test_generation_layout_and_info(built):
    directory = IndexDirectory(built.index)
    assert directory.current_name() == "gen-000001"
    generation = Generation(directory.current_path())
    manifest = json.loads((generation.path / "generation.json").read_text())
    assert manifest["model_version"] == json.loads((built.model / "manifest.json").read_text())["model_version"]
    assert set(manifest["files"]) == {"catalog.sqlite", "lexical.sqlite", "lexical.npz",
                                      *(f"index-{m}.faiss" for m in manifest["counts"])}
    assert generation.info()["size"] == sum(manifest["counts"].values())


def test_publish_makes_a_new_generation_live_and_keeps_the_old(built, tmp_path):
    root = tmp_path / "index"
    shutil.copytree(built.index, root)
    directory = IndexDirectory(root)
    staging = directory.staging()
    for file in (root / "gen-000001").iterdir():
        shutil.copy(file, staging / file.name)
    assert directory.publish(staging) == "gen-000002"
    assert directory.current_name() == "gen-000002"
    assert directory.generations() == ["gen-000001", "gen-000002"]
    assert Generation(directory.current_path()).size == Generation(root / "gen-000001").size


def test_leftovers_of_a_dead_build_are_removed(tmp_path):
    directory = IndexDirectory(tmp_path)
    staging = directory.staging()
    (staging / "index-id.faiss").write_bytes(b"partial")
    assert directory.remove_partials() == [staging.name]
    assert not staging.exists()
    with pytest.raises(NotReady):
        directory.current_path()


def test_corrupt_files_are_detected(built, tmp_path):
    copy = tmp_path / "gen"
    shutil.copytree(built.index / "gen-000001", copy)
    target = copy / "index-id.faiss"
    target.write_bytes(target.read_bytes()[:-10])
    with pytest.raises(CorruptGeneration, match="index-id.faiss"):
        Generation(copy)


def test_model_and_index_must_come_from_the_same_model(built, tmp_path):
    from jointspace.server.serving.engine import Engine

    model = tmp_path / "model"
    shutil.copytree(built.model, model)
    manifest = json.loads((model / "manifest.json").read_text())
    manifest["model_version"] = "another-version"
    (model / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(NotReady, match="rebuild the index"):
        Engine(model, built.index)


def test_search_excludes_and_filters(built):
    generation = Generation(IndexDirectory(built.index).current_path())
    query = np.zeros((1, 16), np.float32)
    query[0, 0] = 1.0
    [hits] = search(generation, query, 3, ["vector"])
    assert [h.key for h in hits] == ["vec:unit"] and hits[0].metadata == {"kind": "raw"}
    [hits] = search(generation, query, 3, ["vector"], [{"vec:unit"}])
    assert hits == []


def test_a_batch_uses_every_core_only_while_no_other_search_runs():
    """OpenMP threads are set per calling thread: a single query runs on one, a batch on every
    core while it is alone, and on one beside another search (no oversubscribed cores)."""
    import threading

    import faiss

    from jointspace.server.index.searching import CORES, faiss_threads

    seen: dict[str, int] = {}
    other_entered, release = threading.Event(), threading.Event()

    def other_batch() -> None:
        with faiss_threads(64):
            seen["first batch"] = faiss.omp_get_max_threads()
            other_entered.set()
            release.wait(10)

    with faiss_threads(1):
        seen["single query"] = faiss.omp_get_max_threads()
    worker = threading.Thread(target=other_batch)
    worker.start()
    assert other_entered.wait(10)
    with faiss_threads(64):
        seen["concurrent batch"] = faiss.omp_get_max_threads()
    release.set()
    worker.join()
    assert seen == {"single query": 1, "first batch": CORES, "concurrent batch": 1}


def test_a_generation_manifest_reads_back_what_was_written_and_refuses_a_bad_dim(tmp_path):
    from jointspace.server.index.generation_manifest import GenerationManifest

    written = GenerationManifest(dim=8, model_version="m1", index_factory="Flat", counts={"id": 3},
                                 files={"catalog.sqlite": "ab"}, search_params={"id": {"efSearch": 16}},
                                 recall={"id": 1.0}, model_dir="/models/m1")
    written.write(tmp_path, "manifest.json")
    assert GenerationManifest.read(tmp_path / "manifest.json") == written
    (tmp_path / "manifest.json").write_text(json.dumps({**written.as_json(), "dim": 0}))
    with pytest.raises(ValueError, match="dim"):
        GenerationManifest.read(tmp_path / "manifest.json")


def test_the_common_query_comes_straight_from_faiss_as_the_general_path_would_answer(built):
    """One result modality, nothing excluded or filtered, no metadata asked for: `find` answers
    with FAISS's arrays (`Ranked`), hits equal to the general path's (taken here by excluding a
    key no entry has), rows hidden by a delete left out on both."""
    from jointspace.server.index.changes import Changes
    from jointspace.server.index.searching import Ranked, find

    generation = Generation(IndexDirectory(built.index).current_path())
    modality = max(generation.indexes, key=lambda m: generation.indexes[m].ntotal)
    queries = np.random.default_rng(0).standard_normal((4, generation.dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    [first] = search(generation, queries[:1], 1, [modality], with_metadata=False)
    [(_, row)] = generation.store.locate([first[0].key]).values()
    hidden = Changes(hidden={modality: frozenset({row})})
    for changes in (Changes(), hidden):
        direct = find(generation, queries, 5, [modality], changes=changes, with_metadata=False)
        general = search(generation, queries, 5, [modality], [{"no-such-key"}] * 4, changes=changes,
                         with_metadata=False)
        assert isinstance(direct, Ranked) and direct.modality == modality
        assert direct.hits() == general
        assert (first[0].key in [hit.key for hit in direct.hits()[0]]) is (changes is not hidden)


def test_a_snapshot_keeps_its_direct_search_and_a_write_starts_the_next_without_it(built, tmp_path):
    """The engine looks up the common query's direct search once per served snapshot; a delete
    and an upsert make new snapshots, whose answers must show them (the deleted key gone, the
    upserted one found, through the general path that merges upserted entries)."""
    from jointspace.data.catalog import CatalogEntry
    from jointspace.encoders.inference import EncoderSet
    from jointspace.server.build.local_builder import build_generation
    from jointspace.server.index.searching import Ranked
    from jointspace.server.serving.engine import Engine

    vectors = np.random.default_rng(3).standard_normal((50, 16)).astype(np.float32)
    catalog = tmp_path / "vectors.jsonl"
    catalog.write_text("".join(json.dumps({"key": f"v:{i}", "vector": v.tolist()}) + "\n"
                               for i, v in enumerate(vectors)))
    build_generation(EncoderSet(built.model), [catalog], tmp_path / "index")
    engine = Engine(built.model, tmp_path / "index")

    def top(query: np.ndarray) -> list[str]:
        found = engine.find_vectors(query[None, :], 3, ["vector"])
        return [hit.key for hit in (found.hits() if isinstance(found, Ranked) else found)[0]]

    first = engine.served
    assert top(vectors[7])[0] == "v:7"
    assert first.direct_search(["vector"]) is first.direct_search(["vector"])
    engine.delete(["v:7"])
    assert "v:7" not in top(vectors[7])
    assert engine.served.direct_search(["vector"]).hidden == frozenset({7})
    engine.upsert([CatalogEntry("v:new", "vector", (-vectors[7]).tolist())])
    assert engine.served.direct_search(["vector"]) is None  # upserted entries need the merge
    assert top(-vectors[7])[0] == "v:new"
