"""Index build time, local against Apache Beam, on one large catalog of precomputed vectors.

Issue 5's targets: a one-million-row catalog rebuilt locally in at most 90 s, and the Beam build
within 3x of the local one; issue 27's: the local build within 10 % of FAISS's own `add` of the
same vectors, timed first in the same run. Both builds read the same JSON Lines catalog of clustered unit
vectors (jointspace/data/vectors.py), check and normalise them, build the index `--index` names
(auto: HNSW at this size), tune its search parameter and publish a generation. Each is timed from
the call to the published generation, model loading included, one after the other in one run so
that their ratio holds on a shared machine where absolute times drift. The two generations are
then compared on held-out queries: the Beam index's top-10 against the local index's, and each
against exact search.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jointspace.core.progress import log
from jointspace.data import synthetic
from jointspace.data.vectors import as_catalog_holds, clustered_vectors, write_vector_catalog
from jointspace.server.index.searching import search

QUERIES = 1_000
K = 10
LOCAL_TARGET_SECONDS = 90
BEAM_TARGET_RATIO = 3
FAISS_ADD_TARGET_RATIO = 1.1  # issue 27: at most 10 % over FAISS's own add


MODEL_FILMS = synthetic.SyntheticConfig(n_films=200, n_users=200, n_tastes=4, seed=0)


def _train_model(dim: int, out: Path) -> None:
    """A real exported model of the wanted dimension (it only embeds the catalog's vectors, which
    need no encoder, but every generation records the model that built it), trained on the films
    of MODEL_FILMS: its id and text encoders know those films and titles."""
    from jointspace.data.pairs import read_pairs
    from jointspace.encoders.training.config import TrainConfig
    from jointspace.encoders.training.export import export_model
    from jointspace.encoders.training.trainer import train

    films = synthetic.generate(MODEL_FILMS)
    synthetic.write_pairs(films, out.parent / "pairs.jsonl")
    export_model(train(read_pairs([out.parent / "pairs.jsonl"]), TrainConfig(dim=dim, epochs=1)), out)


def _top_keys(generation: Any, queries: np.ndarray) -> list[set[str]]:
    return [{hit.key for hit in hits} for hits in search(generation, queries, K, ["vector"], with_metadata=False)]


def _overlap(found: list[set[str]], expected: list[set[str]]) -> float:
    return round(float(np.mean([len(f & e) / len(e) for f, e in zip(found, expected)])), 4)


def _compare(local_index: Path, beam_index: Path, catalog_vectors: np.ndarray, queries: np.ndarray) -> dict[str, Any]:
    import faiss

    from jointspace.server.index.generation import Generation
    from jointspace.server.index.index_directory import IndexDirectory

    local = Generation(IndexDirectory(local_index).current_path())
    beam = Generation(IndexDirectory(beam_index).current_path())
    if {m: list(k) for m, k in local.keys.items()} != {m: list(k) for m, k in beam.keys.items()}:
        raise AssertionError("the local and the Beam generation hold different keys or rows")
    _, exact_rows = faiss.knn(queries, catalog_vectors, K, metric=faiss.METRIC_INNER_PRODUCT)
    exact = [{f"v:{row}" for row in rows} for rows in exact_rows]
    local_top, beam_top = _top_keys(local, queries), _top_keys(beam, queries)
    return {
        "index": local.factory,
        "search_params": {"local": local.search_params, "beam": beam.search_params},
        f"beam_vs_local_recall@{K}": _overlap(beam_top, local_top),
        f"local_vs_exact_recall@{K}": _overlap(local_top, exact),
        f"beam_vs_exact_recall@{K}": _overlap(beam_top, exact),
        "bytes_per_vector": round(local.info()["bytes_per_vector"], 1),
    }


def _faiss_add_seconds(index_spec: str, vectors: np.ndarray) -> float:
    """FAISS alone on the same vectors, already in memory, with the same threads: the index the
    build makes (same factory string and construction settings), trained on a sample of the
    same size if it needs training, then filled by one `add`. What a build costs beyond this is
    jointspace's own overhead."""
    from jointspace.server.index.index_types import TRAINING_SAMPLE, make_index

    index = make_index(index_spec, len(vectors), vectors.shape[1])
    started = time.monotonic()
    if not index.is_trained:
        index.train(vectors[:: max(1, len(vectors) // TRAINING_SAMPLE)][:TRAINING_SAMPLE])
    index.add(vectors)
    return time.monotonic() - started


def run(rows: int, dim: int, index_spec: str, target_recall: float, pipeline_args: Sequence[str],
        work: Path | None = None, seed: int = 0) -> dict[str, Any]:
    from jointspace.encoders.inference import EncoderSet
    from jointspace.server.build.beam_builder import build_generation_with_beam
    from jointspace.server.build.local_builder import build_generation

    with tempfile.TemporaryDirectory(prefix="jointspace-bench-build-") as scratch:
        root = Path(work or scratch)
        vectors = clustered_vectors(rows + QUERIES, dim, seed)
        catalog = root / "catalog.jsonl"
        log(f"writing {rows} clustered vectors (d = {dim}) to {catalog}")
        write_vector_catalog(catalog, vectors[:rows])
        catalog_mb = catalog.stat().st_size / 1e6
        _train_model(dim, root / "model")

        faiss_seconds = _faiss_add_seconds(index_spec, as_catalog_holds(vectors[:rows]))
        started = time.monotonic()
        build_generation(EncoderSet(root / "model"), [catalog], root / "index-local", index_spec, target_recall)
        local_seconds = time.monotonic() - started

        started = time.monotonic()
        build_generation_with_beam(root / "model", [catalog], root / "index-beam", index_spec, target_recall,
                                   pipeline_args)
        beam_seconds = time.monotonic() - started

        comparison = _compare(root / "index-local", root / "index-beam", as_catalog_holds(vectors[:rows]),
                              vectors[rows:])
    return {
        "rows": rows,
        "dim": dim,
        "catalog_mb": round(catalog_mb, 1),
        "faiss_add_seconds": round(faiss_seconds, 1),
        "local_seconds": round(local_seconds, 1),
        "local_over_faiss_add": round(local_seconds / faiss_seconds, 3),
        "beam_seconds": round(beam_seconds, 1),
        "beam_over_local": round(beam_seconds / local_seconds, 2),
        "targets": {"local_seconds_at_1M": LOCAL_TARGET_SECONDS, "beam_over_local": BEAM_TARGET_RATIO,
                    "local_over_faiss_add": FAISS_ADD_TARGET_RATIO},
        "beam_pipeline_options": list(pipeline_args) or ["(default) --runner=FnApiRunner"],
        **comparison,
    }
