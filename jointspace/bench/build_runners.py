"""Index build by runner and index type, on one catalog of clustered vectors in shard files: the
single-machine HNSW graph (local build), the sharded build's IVF-HNSW index built locally, and
the same index built by the Beam pipeline on a dask.distributed LocalCluster of N worker
processes, for each N asked for.

Every build reads the same shard files, is timed from the call to the published generation
(model loading and, on Dask, worker start-up included: what a user waits for), and is judged
by recall@10 against exact search on held-out queries. The builds run one after another in one
run, so that their ratios hold on a shared machine where absolute times drift.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jointspace.bench.build import QUERIES, _overlap, _top_keys, _train_model
from jointspace.core.progress import log
from jointspace.data.vectors import as_catalog_holds, clustered_vectors, write_vector_catalog


def _write_shards(vectors: np.ndarray, folder: Path, shards: int) -> list[Path]:
    size = -(-len(vectors) // shards)
    paths = []
    for i in range(shards):
        path = folder / f"part-{i:03d}.jsonl"
        write_vector_catalog(path, vectors[i * size : (i + 1) * size], key_prefix=f"v{i}:")
        paths.append(path)
    return paths


def _build(runner: str, spec: str, workers: int, model: Path, shards: list[Path], out: Path,
           target_recall: float) -> float:
    from jointspace.encoders.inference import EncoderSet
    from jointspace.server.build.beam_builder import build_generation_with_beam
    from jointspace.server.build.dask_cluster import dask_pipeline_args, dask_scheduler
    from jointspace.server.build.local_builder import build_generation

    started = time.monotonic()
    if runner == "local":
        build_generation(EncoderSet(model), shards, out, spec, target_recall)
    else:
        with dask_scheduler(None, workers) as scheduler:
            build_generation_with_beam(model, shards, out, spec, target_recall, dask_pipeline_args(scheduler))
    return time.monotonic() - started


def run(rows: int, dim: int, shards: int, workers: Sequence[int], target_recall: float,
        work: Path | None = None, seed: int = 0) -> dict[str, Any]:
    import faiss

    from jointspace.server.index.generation import Generation
    from jointspace.server.index.index_directory import IndexDirectory

    builds = [("local", "hnsw", 0), ("local", "ivfhnsw", 0), *(("dask", "ivfhnsw", n) for n in workers)]
    with tempfile.TemporaryDirectory(prefix="jointspace-bench-build-runners-") as scratch:
        root = Path(work or scratch)
        vectors = clustered_vectors(rows + QUERIES, dim, seed)
        log(f"writing {rows} clustered vectors (d = {dim}) in {shards} shard files")
        paths = _write_shards(vectors[:rows], root / "catalog", shards)
        _train_model(dim, root / "model")
        queries = vectors[rows:]
        _, exact_rows = faiss.knn(queries, as_catalog_holds(vectors[:rows]), 10, metric=faiss.METRIC_INNER_PRODUCT)
        size = -(-rows // shards)
        exact = [{f"v{row // size}:{row % size}" for row in found} for found in exact_rows]
        results = []
        for runner, spec, count in builds:
            name = f"{runner}-{spec}" + (f"-{count}-workers" if runner == "dask" else "")
            seconds = _build(runner, spec, count, root / "model", paths, root / name, target_recall)
            generation = Generation(IndexDirectory(root / name).current_path())
            results.append({
                "build": name,
                "index": generation.factory,
                "seconds": round(seconds, 1),
                "search_params": generation.search_params["vector"],
                "recall@10": _overlap(_top_keys(generation, queries), exact),
                "bytes_per_vector": round(generation.info()["bytes_per_vector"], 1),
            })
            log(f"{name}: {results[-1]}")
    return {"rows": rows, "dim": dim, "shards": shards, "target_recall": target_recall, "builds": results}
