"""Search parameters tuned to a target recall on clustered vectors (real FAISS), stored in the
generation manifest and applied when a generation is loaded; memory per vector per index type."""

from __future__ import annotations

import json

import faiss
import numpy as np
import pytest

from jointspace.data.vectors import clustered_vectors, write_vector_catalog
from jointspace.encoders.inference import EncoderSet
from jointspace.server.build.local_builder import build_generation
from jointspace.server.index.generation import Generation
from jointspace.server.index.index_directory import MANIFEST, IndexDirectory
from jointspace.server.index.index_types import build_index
from jointspace.server.index.tuning import (
    EF_SEARCH_LADDER,
    EXACT_DATABASE_TILE,
    TuningQueries,
    apply_search_params,
    exact_neighbours,
    merge_neighbours,
    recall_at_k,
    tune_search,
    tuning_queries,
)

ROWS, HELD_OUT, DIM = 8_000, 500, 32


@pytest.fixture(scope="module")
def clustered() -> tuple[list[str], np.ndarray, np.ndarray]:
    vectors = clustered_vectors(ROWS + HELD_OUT, DIM, seed=7)
    return [f"v:{i}" for i in range(ROWS)], vectors[:ROWS], vectors[ROWS:]


def _ladder_below(name: str, value: int) -> int:
    ladder = list(EF_SEARCH_LADDER) if name == "efSearch" else [1 << p for p in range(16)]
    return ladder[ladder.index(value) - 1]


@pytest.mark.parametrize("factory", ["HNSW8,Flat", "IVF64,Flat"])
def test_tuning_picks_the_smallest_parameter_that_reaches_the_target(clustered, factory):
    keys, data, held_out = clustered
    index = build_index(factory, keys, data)
    queries = tuning_queries(keys, data)
    truth = exact_neighbours(queries, data, np.arange(ROWS))
    tuning = tune_search(index, queries, truth, target=0.95)
    [(name, value)] = tuning.params.items()
    assert tuning.recall >= 0.95
    assert recall_at_k(index, queries, truth) == tuning.recall  # the index is left tuned
    # The data is hard enough that the cheapest setting falls short, and so does the one below.
    assert value > (EF_SEARCH_LADDER[0] if name == "efSearch" else 1)
    apply_search_params(index, {name: _ladder_below(name, value)})
    assert recall_at_k(index, queries, truth) < 0.95
    # Queries that are not in the index (same clusters) get about the same recall: a little less,
    # since an indexed vector's own graph links lead to its neighbours.
    apply_search_params(index, tuning.params)
    fresh = TuningQueries(np.full(HELD_OUT, -1), held_out)
    assert recall_at_k(index, fresh, exact_neighbours(fresh, data, np.arange(ROWS))) >= tuning.recall - 0.035


def test_a_higher_target_buys_a_larger_parameter(clustered):
    keys, data, _ = clustered
    index = build_index("HNSW8,Flat", keys, data)
    queries = tuning_queries(keys, data)
    truth = exact_neighbours(queries, data, np.arange(ROWS))
    low, high = (tune_search(index, queries, truth, target) for target in (0.8, 0.99))
    assert high.params["efSearch"] > low.params["efSearch"] and high.recall >= 0.99


def test_exact_search_has_nothing_to_tune(clustered):
    keys, data, _ = clustered
    queries = tuning_queries(keys, data)
    tuning = tune_search(build_index("Flat", keys, data), queries, exact_neighbours(queries, data, np.arange(ROWS)))
    assert tuning.params == {} and tuning.recall == 1.0


def test_exact_neighbours_of_parts_merge_into_those_of_the_whole(clustered):
    keys, data, _ = clustered
    queries = tuning_queries(keys, data)
    whole = exact_neighbours(queries, data, np.arange(ROWS))
    cuts = [0, 1000, 4500, ROWS]
    parts = [exact_neighbours(queries, data[a:b], np.arange(a, b)) for a, b in zip(cuts, cuts[1:])]
    merged = merge_neighbours(parts)
    np.testing.assert_allclose(merged.scores, whole.scores, atol=1e-5)
    # Ids agree except between neighbours whose scores tie (blocked and unblocked sums round apart).
    differ = merged.ids != whole.ids
    assert differ.mean() < 0.001
    near_tie = np.abs(merged.scores[:, :, None] - whole.scores[:, None, :]) < 1e-5
    assert all(near_tie[q, j].any() for q, j in zip(*np.nonzero(differ)))
    assert not (whole.ids == queries.rows[:, None]).any()  # a query's own row is never its neighbour


def _blas_settings() -> tuple[int, int, int]:
    return (faiss.cvar.distance_compute_blas_threshold, faiss.cvar.distance_compute_blas_query_bs,
            faiss.cvar.distance_compute_blas_database_bs)


def test_exact_neighbours_are_the_brute_force_top_k_and_leave_faiss_settings_as_they_were():
    """Over more vectors than one database tile of FAISS's matrix products."""
    rng = np.random.default_rng(5)
    data = rng.standard_normal((EXACT_DATABASE_TILE + 7_000, DIM)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    own = rng.choice(len(data), 200, replace=False)
    queries = TuningQueries(own, data[own])
    before = _blas_settings()
    found = exact_neighbours(queries, data, np.arange(len(data)))
    assert _blas_settings() == before
    scores = queries.vectors.astype(np.float64) @ data.T.astype(np.float64)
    scores[np.arange(len(own)), own] = -np.inf
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    np.testing.assert_allclose(found.scores, np.take_along_axis(scores, expected, axis=1), atol=1e-5)
    assert (found.ids == expected).mean() > 0.999  # float32 sums may swap neighbours that tie


@pytest.fixture(scope="module")
def encoders(built) -> EncoderSet:
    return EncoderSet(built.model)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    path = tmp_path_factory.mktemp("tuning") / "catalog.jsonl"
    write_vector_catalog(path, clustered_vectors(3000, 16, seed=11))
    return path


@pytest.mark.parametrize("factory, name", [("HNSW8,Flat", "efSearch"), ("IVF32,Flat", "nprobe")])
def test_the_tuned_parameter_is_stored_in_the_manifest_and_applied_on_load(encoders, catalog, tmp_path,
                                                                          factory, name):
    build_generation(encoders, [catalog], tmp_path / "index", factory, target_recall=0.99)
    path = IndexDirectory(tmp_path / "index").current_path()
    manifest = json.loads((path / MANIFEST).read_text())
    [(stored_name, value)] = manifest["search_params"]["vector"].items()
    assert stored_name == name and manifest["recall@10"]["vector"] >= 0.99
    assert manifest["target_recall"] == 0.99
    generation = Generation(path)
    assert _parameter(generation.indexes["vector"], name) == value
    assert f"vector {name}={value}" in generation.info()["index_type"]  # GetIndexInfo shows it
    # The manifest, not what FAISS kept in its file, decides.
    manifest["search_params"]["vector"][name] = value + 1
    (path / MANIFEST).write_text(json.dumps(manifest))
    assert _parameter(Generation(path).indexes["vector"], name) == value + 1


def _parameter(index: faiss.Index, name: str) -> int:
    if name == "nprobe":
        return faiss.extract_index_ivf(index).nprobe
    return faiss.downcast_index(index).hnsw.efSearch


@pytest.mark.parametrize("factory, low, high", [
    # exactly the float32 vector
    ("Flat", 16 * 4, 16 * 4 + 1),
    # the vector, 2 x 8 links on level 0 (4 bytes each), upper levels, level and offset tables
    ("HNSW8,Flat", 16 * 4 + 2 * 8 * 4, 16 * 4 + 2 * 8 * 4 + 32),
    # a 4-byte PQ code (8 x 4 bits) and an 8-byte id per vector, plus codebooks and centroids
    ("IVF16,PQ8x4", 4 + 8, 4 + 8 + (8 * 16 * 2 * 4 + 16 * 16 * 4) / 3000 + 1),
])
def test_memory_per_vector_follows_the_index_type(encoders, catalog, tmp_path, factory, low, high):
    build_generation(encoders, [catalog], tmp_path / "index", factory)
    info = Generation(IndexDirectory(tmp_path / "index").current_path()).info()
    assert low <= info["bytes_per_vector"] <= high, info
