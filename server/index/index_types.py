"""Which FAISS index to build, and how to train and fill it (search parameters: tuning.py).

`auto` follows the size of the catalog: exact search while it is cheap, HNSW (no training, high
recall) up to a few million vectors, IVF-PQ beyond, where memory per vector starts to matter.
Every index uses inner product over the model's vectors (unit length, at most 1 for ids).

A FAISS factory string is checked against a grammar of the index types this service can use
before FAISS sees it. FAISS accepts many it cannot: wrappers that want ids with every vector
(IDMap), searches that cannot leave out deleted or excluded rows (PQ and additive-quantizer
codes alone, NSG, refinement stages), indexes that cannot be saved (lattices), binary ones; and
some strings crash or hang the process in FAISS itself (HNSW0, HNSW1, RR0, PQ8x0, NSG0), so
parsing them to see is no check. Numbers are bounded too: one over its range costs memory
out of proportion before the first vector is added.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import faiss
import numpy as np

from jointspace.core.errors import InvalidInput, quoted
from jointspace.server.index.sampling import TRAINING_SALT, hash_sample

FLAT_UP_TO = 20_000
HNSW_UP_TO = 5_000_000
QUANTIZER_LINKS = 32  # M of the HNSW graph over the centroids of `ivfhnsw`
MAX_LISTS = 65_536  # IVF lists: auto's own most

_N = r"[1-9][0-9]{0,5}"
_SQ = r"SQ(?:4|6|8|fp16|bf16|8_direct)"
_TRANSFORM = rf"(?:PCAR?{_N}|OPQ{_N}(?:_{_N})?|RR{_N}|Pad{_N}|L2norm)"
_MAIN = (rf"Flat|{_SQ}|HNSW{_N}(?:[_,](?:Flat|{_SQ}|PQ{_N}))?"
         rf"|IVF{_N}(?:_HNSW{_N})?,(?:Flat|{_SQ}|PQ{_N}x4fsr?|PQ{_N}(?:x{_N})?(?:np)?)")
_FACTORY = re.compile(rf"(?:{_TRANSFORM},)*(?:{_MAIN})")
USABLE = ("auto, flat, hnsw, ivfhnsw or ivfpq, or a FAISS factory string of this form: transforms PCA<d>, PCAR<d>, "
          "OPQ<m>[_<d>], RR<d>, Pad<d> or L2norm, each followed by a comma, then Flat, SQ<4|6|8|fp16|bf16|8_direct>, "
          "HNSW<M>[,Flat|,SQ8|,PQ<m>] or IVF<lists>[_HNSW<M>],<Flat|SQ8|PQ<m>[x<bits>][np]|PQ<m>x4fs>")


def _bounds(dim: int) -> list[tuple[str, str, int, int]]:
    """(pattern of a number in a factory string, what it counts, lowest, highest)."""
    return [
        (r"HNSW(\d+)", "HNSW links per vector (M)", 2, 128),
        (r"IVF(\d+)", "IVF lists", 1, MAX_LISTS),
        (r"PQ(\d+)", "PQ sub-quantizers", 1, 2 * dim),
        (r"PQ\d+x(\d+)", "bits per PQ code", 1, 12),
        (r"OPQ(\d+)", "OPQ sub-quantizers", 1, 2 * dim),
        # Padding to a multiple that PQ can split needs less than double: more only costs memory.
        (r"(?:PCAR?|RR|Pad|OPQ\d+_)(\d+)", "dimensions out of a transform", 1, 2 * dim),
    ]


def check_factory(factory: str, spec: str, dim: int, field: str) -> None:
    """InvalidInput unless `factory` (from `spec`) names an index that this service can build,
    search with rows left out, save and load, with numbers in their ranges."""
    if not _FACTORY.fullmatch(factory):
        raise InvalidInput(f"{field} {quoted(spec)}: not an index type this server can build and search; "
                           f"give {USABLE}")
    for pattern, what, low, high in _bounds(dim):
        for number in map(int, re.findall(pattern, factory)):
            if not low <= number <= high:
                raise InvalidInput(f"{field} {quoted(spec)}: {number} {what} is outside {low} to {high}")
    problem = _transform_problem(factory, dim)
    if problem:
        raise InvalidInput(f"{field} {quoted(spec)}: {problem}")


def _transform_problem(factory: str, dim: int) -> str | None:
    """What makes the chain of transforms untrainable, following the dimensions from one to the
    next (FAISS finds out only when training, after the catalog is embedded); None if nothing."""
    for step in factory.split(","):
        match = re.fullmatch(r"(PCAR|PCA|OPQ|RR|Pad|L2norm)(\d*)(?:_(\d+))?", step)
        if not re.fullmatch(_TRANSFORM, step) or match is None:
            return None
        kind, out, opq_out = match.groups()
        if kind in ("PCA", "PCAR") and int(out) > dim:
            return f"{step} cannot make more than the {dim} dimensions it is given"
        if kind == "Pad" and int(out) < dim:
            return f"{step} cannot pad {dim} dimensions to fewer"
        if kind == "OPQ":
            parts, opq_dim = int(out), int(opq_out or dim)
            if opq_dim % parts:
                return f"{step}: {parts} sub-quantizers do not divide its {opq_dim} dimensions"
            out = str(opq_dim)
        dim = int(out or dim)
    return None


def factory_string(spec: str, count: int, dim: int) -> str:
    spec = (spec or "auto").strip()
    name = spec.lower()
    if name == "auto":
        name = "flat" if count <= FLAT_UP_TO else "hnsw" if count <= HNSW_UP_TO else "ivfpq"
    if name == "flat":
        return "Flat"
    if name == "hnsw":
        return "HNSW32,Flat"
    lists = max(1, min(65536, int(4 * math.sqrt(max(count, 1)))))
    if name == "ivfhnsw":  # what a sharded (Beam) build picks for `auto` instead of HNSW
        return f"IVF{lists}_HNSW{QUANTIZER_LINKS},Flat"
    if name == "ivfpq":
        sub = next(m for m in (dim // 2, dim // 4, dim // 8, 1) if m >= 1 and dim % m == 0)
        # np: no polysemous training, which only a Hamming-distance search uses (not ours) and
        # which costs a minute or more per build whatever the catalog's size.
        return f"IVF{lists},PQ{sub}np"
    return spec


def make_index(spec: str, count: int, dim: int, field: str = "--index") -> faiss.Index:
    """An empty index for `count` vectors of `dim`; `field` names the spec in errors."""
    factory = factory_string(spec, count, dim)
    check_factory(factory, spec, dim, field)
    try:
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as error:  # e.g. PQ sub-quantizers that do not divide the dimension
        raise InvalidInput(f"{field} {quoted(spec)}: FAISS cannot make this index for {dim} dimensions "
                           f"({faiss_reason(error)})") from None
    if isinstance(index, faiss.IndexHNSW):
        index.hnsw.efConstruction = 40
    return index


def check_index_type(spec: str, dim: int, field: str) -> None:
    """The checks of `make_index`, for a request, before any catalog is read."""
    make_index(spec, 1, dim, field)


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
        raise InvalidInput(f"index: training on {len(sample)} vectors failed ({faiss_reason(error)}); "
                           "use a smaller index or flat") from None


def faiss_reason(error: RuntimeError) -> str:
    """The condition FAISS found false, without the C++ function and source file before it."""
    text = str(error).strip()
    return text.splitlines()[-1].rsplit("Error: ", 1)[-1] if text else "rejected"


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
