"""Catalogs of precomputed vectors shaped like real embeddings, for benchmarks and tests.

Uniform random vectors make a poor stand-in: in 32 dimensions they are all nearly orthogonal, so
every neighbour is about as far as any other and approximate search looks either perfect or
hopeless. Real embeddings cluster (films of one taste, clips of one word), with clusters of very
different sizes; this draws unit vectors around Zipf-sized clusters of random centres.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

ROWS_PER_CLUSTER = 500  # on average
SPREAD = 0.12  # per-dimension noise around a unit centre: clusters overlap a little at d = 32


def clustered_vectors(count: int, dim: int, seed: int = 0) -> np.ndarray:
    """float32 [count, dim] unit vectors."""
    rng = np.random.default_rng(seed)
    clusters = max(1, count // ROWS_PER_CLUSTER)
    centres = rng.normal(size=(clusters, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    weights = 1.0 / np.arange(1, clusters + 1) ** 0.7
    members = rng.choice(clusters, size=count, p=weights / weights.sum())
    vectors = centres[members] + rng.normal(scale=SPREAD, size=(count, dim))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32)


def write_vector_catalog(path: Path, vectors: np.ndarray, key_prefix: str = "v:") -> int:
    """Catalog rows `{"key": "v:<n>", "vector": [...]}` (6 decimals: float32 needs no more for
    a cosine); returns the number written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for start in range(0, len(vectors), 10_000):
            block = np.round(vectors[start : start + 10_000].astype(np.float64), 6).tolist()
            handle.writelines(
                json.dumps({"key": f"{key_prefix}{start + i}", "vector": row}, separators=(",", ":")) + "\n"
                for i, row in enumerate(block)
            )
    return len(vectors)


def as_catalog_holds(vectors: np.ndarray) -> np.ndarray:
    """The vectors as a catalog written by `write_vector_catalog` holds them once read back:
    rounded to 6 decimals and normalised again (what exact search must compare with)."""
    stored = np.round(vectors.astype(np.float64), 6)
    return (stored / np.linalg.norm(stored, axis=1, keepdims=True)).astype(np.float32)
