"""Samples chosen by a stable hash of their keys, so that every worker and every runner that
reads the same catalog picks the same entries, in the same order.

That order matters: FAISS k-means depends on the order of its training vectors, so a sharded
build trains the same IVF centroids as the local one only if both hand it the same sample in the
same order, and the search parameter is tuned on the same queries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

# Different salts: the training sample and the tuning queries are independent draws.
TRAINING_SALT = b"training"
QUERY_SALT = b"queries"
HASH_RANGE = 1 << 63
CANDIDATE_MARGIN = 4  # a sharded sample keeps ~4x the rows it needs before the exact cut


def key_hash(key: str, salt: bytes) -> int:
    """Uniform in [0, HASH_RANGE) and stable across processes, unlike `hash()`."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8, salt=salt).digest()
    return int.from_bytes(digest, "big") >> 1


def candidate_bound(total: int, count: int) -> int:
    """Hashes below this bound are kept as candidates for a sample of `count` out of `total`.
    About CANDIDATE_MARGIN x count pass, so the sample's `count` smallest are all among them
    (unless far fewer pass than expected, which the caller checks), and a worker sends a few
    rows on instead of all of them."""
    return HASH_RANGE if CANDIDATE_MARGIN * count >= total else HASH_RANGE * CANDIDATE_MARGIN * count // total


def hash_sample(keys: Sequence[str], count: int, salt: bytes) -> list[int]:
    """Positions of the `count` keys with the smallest (hash, key), in that order."""
    hashes = np.fromiter((key_hash(k, salt) for k in keys), np.int64, len(keys))
    candidates: Sequence[int] = range(len(keys))
    if count < len(keys):
        cut = np.partition(hashes, count - 1)[count - 1]
        candidates = np.flatnonzero(hashes <= cut).tolist()
    return sorted(candidates, key=lambda i: (int(hashes[i]), keys[i]))[:count]
