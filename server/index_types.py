"""Which FAISS index to build, and how to train and fill it (search parameters: tuning.py).

`auto` follows the size of the catalog: exact search while it is cheap, HNSW (no training, high
recall) up to a few million vectors, IVF-PQ beyond, where memory per vector starts to matter.
Every index uses inner product over the model's vectors (unit length, at most 1 for ids).
"""

from __future__ import annotations

import math
from typing import Sequence

import faiss
import numpy as np

from jointspace.errors import InvalidInput
from jointspace.server.sampling import TRAINING_SALT, hash_sample

FLAT_UP_TO = 20_000
HNSW_UP_TO = 5_000_000


def factory_string(spec: str, count: int, dim: int) -> str:
    spec = (spec or "auto").strip()
    name = spec.lower()
    if name == "auto":
        name = "flat" if count <= FLAT_UP_TO else "hnsw" if count <= HNSW_UP_TO else "ivfpq"
    if name == "flat":
        return "Flat"
    if name == "hnsw":
        return "HNSW32,Flat"
    if name == "ivfpq":
        lists = max(1, min(65536, int(4 * math.sqrt(max(count, 1)))))
        sub = next(m for m in (dim // 2, dim // 4, dim // 8, 1) if m >= 1 and dim % m == 0)
        return f"IVF{lists},PQ{sub}"
    return spec


def make_index(spec: str, count: int, dim: int) -> faiss.Index:
    factory = factory_string(spec, count, dim)
    try:
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[-1] if str(error).strip() else "rejected"
        raise InvalidInput(f"--index {spec!r}: not a FAISS factory string FAISS accepts ({first})") from None
    if isinstance(index, faiss.IndexHNSW):
        index.hnsw.efConstruction = 40
    return index


# 256 vectors per PQ centroid. IVF wants at least 39 per list, which this gives up to ~1,700
# lists only: auto's IVF-PQ for over 5 million vectors (~9,000 lists) trains on fewer.
TRAINING_SAMPLE = 256 * 256


def train_index(index: faiss.Index, sample: np.ndarray) -> None:
    """Train the IVF/PQ parts of an index that needs training."""
    if len(sample) < 2:
        raise InvalidInput("index: too few vectors to train this index type; use flat")
    try:
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
    except RuntimeError as error:
        raise InvalidInput(f"index: training failed ({str(error).strip().splitlines()[-1]}); "
                           "use a smaller index or flat") from None


def build_index(factory: str, keys: Sequence[str], vectors: np.ndarray) -> faiss.Index:
    """An index over all `vectors` (row i is `keys[i]`), trained on the hash sample of the keys,
    which is the sample a sharded build draws too (sampling.py)."""
    index = make_index(factory, len(vectors), vectors.shape[1])
    if not index.is_trained:
        train_index(index, vectors[hash_sample(keys, TRAINING_SAMPLE, TRAINING_SALT)])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def describe(index: faiss.Index) -> str:
    return type(index).__name__
