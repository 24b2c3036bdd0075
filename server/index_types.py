"""Which FAISS index to build, and how to search it.

`auto` follows the size of the catalog: exact search while it is cheap, HNSW (no training, high
recall) up to a few million vectors, IVF-PQ beyond, where memory per vector starts to matter.
Every index uses inner product over unit vectors, i.e. cosine similarity.
"""

from __future__ import annotations

import math

import faiss
import numpy as np

from jointspace.errors import InvalidInput

FLAT_UP_TO = 20_000
HNSW_UP_TO = 5_000_000
HNSW_EF_SEARCH = 128
IVF_NPROBE = 16


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


def fill_index(index: faiss.Index, vectors: np.ndarray, seed: int = 0) -> None:
    """Train (on a sample, for IVF/PQ) and add. Training needs enough vectors per centroid."""
    if not index.is_trained:
        rng = np.random.default_rng(seed)
        sample = vectors[rng.choice(len(vectors), min(len(vectors), 256 * 256), replace=False)]
        if len(sample) < 2:
            raise InvalidInput("index: too few vectors to train this index type; use flat")
        try:
            index.train(np.ascontiguousarray(sample))
        except RuntimeError as error:
            raise InvalidInput(f"index: training failed ({str(error).strip().splitlines()[-1]}); "
                               "use a smaller index or flat") from None
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))


def tune_for_search(index: faiss.Index) -> None:
    """Search-time parameters that a freshly read index does not keep."""
    if isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = HNSW_EF_SEARCH
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.nprobe = min(IVF_NPROBE, ivf.nlist)


def describe(index: faiss.Index) -> str:
    return type(index).__name__
