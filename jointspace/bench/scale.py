"""What one machine costs per vector, per query and per id at several sizes: the measured side of
docs/scaling.md, from which the plan for catalogs this machine cannot hold is derived.

For each catalog size (clustered unit vectors, jointspace/data/vectors.py) and each index type
the product can build, it times FAISS building the index as a build does (same factory strings,
construction settings and training sample size: server/index/index_types.py), then reads the
bytes per vector from the written file and from the growth of this process's resident memory,
tunes the search parameter on indexed vectors as a build does (server/index/tuning.py), and
measures recall@10 against exact search on held-out vectors and single-query searches per second
on one thread (what one core of a serving replica answers, before the gRPC stack's own cost). The
training side runs `bench train`'s jointspace side (train_side.py) for a few steps at several id
table sizes and dimensions: examples per second and peak memory, whose growth with the number of
ids is the table's memory per id.
"""

from __future__ import annotations

import gc
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from jointspace.bench.peers import rss_bytes
from jointspace.core.progress import log
from jointspace.data.vectors import clustered_vectors

K = 10
SEARCH_SECONDS = 2.0  # per index type and size: single queries until this much time has passed
MIN_SEARCHES = 20


def index_types(count: int, dim: int) -> dict[str, str]:
    """Name → FAISS factory string at `count` vectors: exact, graph, the two IVF types `auto`'s
    list count gives, and IVF with an HNSW coarse quantizer, the type that scales past one graph."""
    from jointspace.server.index.index_types import factory_string

    ivf_pq = factory_string("ivfpq", count, dim)  # IVF<lists>,PQ<m>np
    lists = ivf_pq.split(",")[0]
    return {"flat": factory_string("flat", count, dim), "hnsw": factory_string("hnsw", count, dim),
            "ivf_flat": f"{lists},Flat", "ivf_pq": ivf_pq,
            "ivf_hnsw_pq": ivf_pq.replace(",", "_HNSW32,", 1)}


def _held_out_recall(found: np.ndarray, exact: np.ndarray) -> float:
    return round(float(np.mean([len(set(f) & set(e)) / K for f, e in zip(found.tolist(), exact.tolist())])), 4)


def _single_query_qps(index: Any, queries: np.ndarray) -> float:
    """Queries per second, one query per call on one thread, as a served Search asks FAISS."""
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        done, started = 0, time.perf_counter()
        while done < len(queries) and (done < MIN_SEARCHES or time.perf_counter() - started < SEARCH_SECONDS):
            index.search(queries[done : done + 1], K)
            done += 1
        return done / (time.perf_counter() - started)
    finally:
        faiss.omp_set_num_threads(threads)


def measure_index(name: str, factory: str, vectors: np.ndarray, keys: list[str], held_out: np.ndarray,
                  exact: np.ndarray, target_recall: float, scratch: Path) -> dict[str, Any]:
    import faiss

    from jointspace.server.index.index_types import TRAINING_SAMPLE, make_index, train_index
    from jointspace.server.index.tuning import exact_neighbours, tune_search, tuning_queries

    gc.collect()
    before = rss_bytes(os.getpid())
    started = time.monotonic()
    index = make_index(factory, len(vectors), vectors.shape[1])
    if not index.is_trained:
        train_index(index, vectors[:: max(1, len(vectors) // TRAINING_SAMPLE)][:TRAINING_SAMPLE])
    index.add(vectors)
    build_seconds = time.monotonic() - started
    grown = rss_bytes(os.getpid()) - before
    path = scratch / f"{name}.faiss"
    faiss.write_index(index, str(path))
    file_bytes = path.stat().st_size
    path.unlink()
    queries = tuning_queries(keys, vectors)
    tuning = tune_search(index, queries, exact_neighbours(queries, vectors, np.arange(len(vectors))), target_recall)
    _, found = index.search(held_out, K)
    row = {
        "index": name, "factory": factory, "vectors": len(vectors), "build_seconds": round(build_seconds, 1),
        "file_bytes_per_vector": round(file_bytes / len(vectors), 1),
        "rss_bytes_per_vector": round(grown / len(vectors), 1),
        "search_params": tuning.params, f"recall@{K}": _held_out_recall(found, exact),
        "qps_one_thread": round(_single_query_qps(index, held_out), 1),
    }
    log(f"scale: {row}")
    return row


def measure_indexes(sizes: Sequence[int], dim: int, kinds: Sequence[str], queries: int,
                    target_recall: float, seed: int = 0) -> list[dict[str, Any]]:
    import faiss

    rows = []
    with tempfile.TemporaryDirectory(prefix="jointspace-bench-scale-") as scratch:
        for size in sizes:
            everything = clustered_vectors(size + queries, dim, seed)
            vectors, held_out = everything[:size], everything[size:]
            del everything
            _, exact = faiss.knn(held_out, vectors, K, metric=faiss.METRIC_INNER_PRODUCT)
            keys = [f"v:{i}" for i in range(size)]
            factories = index_types(size, dim)
            for kind in kinds:
                rows.append(measure_index(kind, factories[kind], vectors, keys, held_out, exact, target_recall,
                                          Path(scratch)))
    return rows


def measure_training(films: Sequence[int], dims: Sequence[int], steps: int, warmup: int, batch_size: int,
                     seed: int = 0) -> list[dict[str, Any]]:
    """`bench train`'s jointspace side at each (films, dim), users half the films, a few steps."""
    from jointspace.bench.train import OwnSide, _run_side, _write_split, default_threads
    from jointspace.encoders.impl.id_norms import DEFAULT_NORM
    from jointspace.encoders.training.config import TrainConfig

    defaults = TrainConfig()  # the train command's own settings: only the speed is measured here
    own = OwnSide(batch_size, defaults.learning_rate, DEFAULT_NORM, defaults.temperature)

    rows = []
    with tempfile.TemporaryDirectory(prefix="jointspace-bench-scale-train-") as scratch:
        root = Path(scratch)
        for count in films:
            split = _write_split(root / f"split-{count}.npz", count, count // 2, 1_000, seed)
            for dim in dims:
                work = root / f"{count}-{dim}"
                work.mkdir()
                settings = {"dim": dim, "steps": steps, "batch_size": batch_size, "warmup": warmup, "seed": seed,
                            "intra_op_threads": default_threads(), "inter_op_threads": default_threads(),
                            "jointspace": asdict(own)}
                side = _run_side("jointspace", root / f"split-{count}.npz", work, settings)
                row = {"dim": dim, "ids": count + count // 2, "rows": split["rows"],
                       "examples_per_second": side["examples_per_second"], "peak_rss_mb": side["peak_rss_mb"]}
                log(f"scale: {row}")
                rows.append(row)
    return rows


def table_bytes_per_id(training: list[dict[str, Any]]) -> dict[int, float]:
    """Per dimension, the growth of peak memory from the smallest to the largest table over the
    growth in ids (the rows grow with the users too: their share is in this figure)."""
    slopes = {}
    for dim in sorted({row["dim"] for row in training}):
        runs = sorted((row for row in training if row["dim"] == dim), key=lambda row: row["ids"])
        if len(runs) > 1 and runs[-1]["ids"] > runs[0]["ids"]:
            grown = (runs[-1]["peak_rss_mb"] - runs[0]["peak_rss_mb"]) * 2**20
            slopes[dim] = round(grown / (runs[-1]["ids"] - runs[0]["ids"]), 1)
    return slopes


def run(sizes: Sequence[int], dim: int, kinds: Sequence[str], queries: int, target_recall: float,
        films: Sequence[int], dims: Sequence[int], steps: int, warmup: int, batch_size: int) -> dict[str, Any]:
    indexes = measure_indexes(sizes, dim, kinds, queries, target_recall) if sizes else []
    training = measure_training(films, dims, steps, warmup, batch_size) if films else []
    return {"dim": dim, "target_recall": target_recall, "held_out_queries": queries, "cores": os.cpu_count(),
            "indexes": indexes, "training": training, "training_bytes_per_id": table_bytes_per_id(training)}


def table(result: dict[str, Any]) -> str:
    lines = [f"index (d = {result['dim']}, recall@{K} on {result['held_out_queries']} held-out queries, "
             f"tuned to {result['target_recall']})",
             f"{'vectors':>10} {'index':<12} {'build s':>8} {'file B/v':>9} {'RSS B/v':>8} "
             f"{'params':<16} {'recall':>7} {'q/s/core':>9}"]
    for row in result["indexes"]:
        params = ",".join(f"{k}={v}" for k, v in row["search_params"].items()) or "-"
        lines.append(f"{row['vectors']:>10,} {row['index']:<12} {row['build_seconds']:>8} "
                     f"{row['file_bytes_per_vector']:>9} {row['rss_bytes_per_vector']:>8} {params:<16} "
                     f"{row[f'recall@{K}']:>7} {row['qps_one_thread']:>9}")
    if result["training"]:
        lines += ["", f"{'ids':>10} {'dim':>4} {'rows':>11} {'examples/s':>11} {'peak RSS MB':>12}"]
        lines += [f"{row['ids']:>10,} {row['dim']:>4} {row['rows']:>11,} {row['examples_per_second']:>11} "
                  f"{row['peak_rss_mb']:>12}" for row in result["training"]]
        lines += [f"peak memory growth per id, d = {dim}: {value} B"
                  for dim, value in result["training_bytes_per_id"].items()]
    return "\n".join(lines)
