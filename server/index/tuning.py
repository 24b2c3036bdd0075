"""Search parameters chosen by measurement, autofaiss-style: the smallest HNSW efSearch or IVF
nprobe whose recall@10 against exact search reaches a target.

Measured rather than fixed because the recall a given efSearch or nprobe buys depends on the
data (how clustered, what dimension, how many vectors) more than on the index type: a fixed value
wastes time on easy data and misses the target on hard data. The queries are indexed vectors
picked by a hash of their keys (sampling.py), so every runner that builds the same catalog
tunes on the same queries; a query's own entry is left out of both the exact and the approximate
answer, as in a "more like this" query, because finding itself says nothing about the index.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import faiss
import numpy as np

from jointspace.core.progress import log
from jointspace.server.index.sampling import QUERY_SALT, hash_sample

TUNING_K = 10
TUNING_QUERIES = 1_000
DEFAULT_TARGET_RECALL = 0.95
EF_SEARCH_LADDER = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)
# Exact search's score tile, queries x database vectors: 128 MiB of float32 at most.
EXACT_QUERY_TILE = 1_024
EXACT_DATABASE_TILE = 32_768
_BLAS_SETTINGS = threading.Lock()


@dataclass(frozen=True)
class TuningQueries:
    """Indexed vectors used as queries, with their own row ids (left out of every answer)."""

    rows: np.ndarray  # int64 [Q]
    vectors: np.ndarray  # float32 [Q, D]


def tuning_queries(keys: Sequence[str], vectors: np.ndarray) -> TuningQueries:
    rows = np.asarray(hash_sample(keys, TUNING_QUERIES, QUERY_SALT), np.int64)
    return TuningQueries(rows, vectors[rows])


@dataclass(frozen=True)
class Neighbours:
    """Top-k per query: scores and row ids, best first, padded with -inf / -1."""

    scores: np.ndarray  # float32 [Q, k]
    ids: np.ndarray  # int64 [Q, k]


def exact_neighbours(queries: TuningQueries, vectors: np.ndarray, rows: np.ndarray,
                     k: int = TUNING_K) -> Neighbours:
    """Exact top-k of the queries among `vectors` (whose row ids are `rows`), each query's own
    row left out. Works on a part of the index as well as the whole: see `merge_neighbours`."""
    depth = min(k + 1, len(vectors))
    with _blas_tiles():
        scores, local = faiss.knn(np.ascontiguousarray(queries.vectors, np.float32),
                                  np.ascontiguousarray(vectors, np.float32), depth,
                                  metric=faiss.METRIC_INNER_PRODUCT)
    ids = np.where(local >= 0, np.asarray(rows, np.int64)[np.maximum(local, 0)], -1)
    return _top_k(scores, ids, queries.rows, k)


@contextmanager
def _blas_tiles() -> Iterator[None]:
    """FAISS's exhaustive search by matrix products, in large database tiles, restored after.
    Its default for fewer than distance_compute_blas_threshold queries is a dot product per
    (query, vector) pair, several times slower for a thousand queries among a million vectors;
    small database tiles spend most of their time per tile, not per product. Both ways are
    exhaustive, so the answer is the same exact top-k. The settings are process-wide: the lock
    keeps two builds from restoring each other's."""
    settings = faiss.cvar
    with _BLAS_SETTINGS:
        saved = (settings.distance_compute_blas_threshold, settings.distance_compute_blas_query_bs,
                 settings.distance_compute_blas_database_bs)
        settings.distance_compute_blas_threshold = 0
        settings.distance_compute_blas_query_bs = EXACT_QUERY_TILE
        settings.distance_compute_blas_database_bs = EXACT_DATABASE_TILE
        try:
            yield
        finally:
            (settings.distance_compute_blas_threshold, settings.distance_compute_blas_query_bs,
             settings.distance_compute_blas_database_bs) = saved


def merge_neighbours(parts: Sequence[Neighbours], k: int = TUNING_K) -> Neighbours:
    """The exact top-k over the union of the parts' vectors, from each part's exact top-k."""
    scores = np.concatenate([p.scores for p in parts], axis=1)
    ids = np.concatenate([p.ids for p in parts], axis=1)
    return _top_k(scores, ids, None, k)


def _top_k(scores: np.ndarray, ids: np.ndarray, own: np.ndarray | None, k: int) -> Neighbours:
    scores = np.where(ids >= 0, scores, -np.inf).astype(np.float32)
    if own is not None:
        scores[ids == own[:, None]] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    best_scores = np.take_along_axis(scores, order, axis=1)
    best_ids = np.where(np.isfinite(best_scores), np.take_along_axis(ids, order, axis=1), -1)
    if best_ids.shape[1] < k:
        pad = k - best_ids.shape[1]
        best_scores = np.pad(best_scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        best_ids = np.pad(best_ids, ((0, 0), (0, pad)), constant_values=-1)
    return Neighbours(best_scores, best_ids)


def recall_at_k(index: faiss.Index, queries: TuningQueries, truth: Neighbours,
                k: int = TUNING_K) -> float:
    """Share of the exact top-k (own row left out) that `index` finds in its top-k."""
    _, found = index.search(np.ascontiguousarray(queries.vectors, np.float32),
                            min(k + 1, index.ntotal))
    hits = wanted = 0
    for own, found_row, truth_row in zip(queries.rows.tolist(), found, truth.ids):
        expected = set(truth_row[truth_row >= 0].tolist())
        got = [r for r in found_row.tolist() if r >= 0 and r != own][:k]
        hits += len(expected.intersection(got))
        wanted += len(expected)
    return hits / wanted if wanted else 1.0


def search_parameter(index: faiss.Index) -> str | None:
    """The knob that trades speed for recall: nprobe for IVF, efSearch for HNSW, none for Flat."""
    if faiss.try_extract_index_ivf(index) is not None:
        return "nprobe"
    inner = faiss.downcast_index(index)
    while isinstance(inner, (faiss.IndexIDMap, faiss.IndexPreTransform)):
        inner = faiss.downcast_index(inner.index)
    return "efSearch" if isinstance(inner, faiss.IndexHNSW) else None


def apply_search_params(index: faiss.Index, params: dict[str, int]) -> None:
    space = faiss.ParameterSpace()
    for name, value in params.items():
        space.set_index_parameter(index, name, value)


def _ladder(index: faiss.Index, name: str) -> list[int]:
    if name == "efSearch":
        return list(EF_SEARCH_LADDER)
    nlist = faiss.try_extract_index_ivf(index).nlist
    return sorted({min(1 << p, nlist) for p in range(nlist.bit_length() + 1)})


@dataclass(frozen=True)
class Tuning:
    params: dict[str, int]  # empty for exact indexes
    recall: float  # recall@k measured with those params


def tune_search(index: faiss.Index, queries: TuningQueries, truth: Neighbours,
                target: float = DEFAULT_TARGET_RECALL, k: int = TUNING_K) -> Tuning:
    """Set and return the smallest parameter value on the ladder whose recall reaches `target`
    (binary search: recall grows with either parameter). If none does, the largest value wins
    and the shortfall is logged: a faster-but-worse choice is not ours to make silently."""
    name = search_parameter(index)
    if name is None:
        return Tuning({}, recall_at_k(index, queries, truth, k))
    ladder = _ladder(index, name)
    measured: dict[int, float] = {}

    def recall_with(value: int) -> float:
        if value not in measured:
            apply_search_params(index, {name: value})
            measured[value] = recall_at_k(index, queries, truth, k)
        return measured[value]

    low, high = 0, len(ladder) - 1
    while low < high:
        middle = (low + high) // 2
        if recall_with(ladder[middle]) >= target:
            high = middle
        else:
            low = middle + 1
    chosen = ladder[low]
    recall = recall_with(chosen)
    apply_search_params(index, {name: chosen})
    if recall < target:
        log(f"{name}={chosen}: recall@{k} {recall:.3f} stays below the target {target}; "
            "this index type cannot reach it (more HNSW links or PQ bytes would)")
    return Tuning({name: chosen}, recall)
