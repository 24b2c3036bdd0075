"""Samples chosen by a stable hash of their keys, so that every worker and every runner that
reads the same catalog picks the same entries, in the same order.

That order matters: FAISS k-means depends on the order of its training vectors, so a sharded
build trains the same IVF centroids as the local one only if both hand it the same sample in the
same order, and the search parameter is tuned on the same queries.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Different salts: the training sample and the tuning queries are independent draws.
TRAINING_SALT = b"training"
QUERY_SALT = b"queries"
HASH_RANGE = 1 << 63
CANDIDATE_MARGIN = 4  # a sharded sample keeps ~4x the rows it needs before the exact cut

WORD = 8  # bytes hashed per step: a key is read as little-endian 64-bit words
FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = np.uint64(0x100000001B3)


def key_hashes(keys: Sequence[str], salt: bytes) -> np.ndarray:
    """int64 [len(keys)], uniform in [0, HASH_RANGE) and the same in every process, unlike
    `hash()`. Computed with numpy over all keys at once, since a per-key Python hash costs more
    than the rest of a million-row sample. Keys are grouped by their number of words, so that
    each group is one dense matrix: no key is padded to the longest one's width, and no mask is
    needed. The UTF-8 length is hashed too: a key's last word is padded with NUL bytes, which
    would otherwise make `"a"` and `"a\\0"` alike."""
    encoded = [key.encode("utf-8") for key in keys]
    lengths = np.fromiter(map(len, encoded), np.int64, len(encoded))
    words = -(-lengths // WORD)
    state = np.empty(len(encoded), np.uint64)
    for width in np.unique(words).tolist():
        group = np.flatnonzero(words == width)
        state[group] = _word_hash([encoded[i] for i in group.tolist()], width, salt)
    with np.errstate(over="ignore"):
        state = (state ^ lengths.astype(np.uint64)) * FNV_PRIME
    return (_finalise(state) >> np.uint64(1)).astype(np.int64)


def _word_hash(encoded: list[bytes], width: int, salt: bytes) -> np.ndarray:
    """FNV-1a over the words of keys that all have `width` words, one word column at a time."""
    state = np.full(len(encoded), _salted_offset(salt), np.uint64)
    if width == 0:
        return state
    matrix = np.array(encoded, dtype=f"S{width * WORD}").view("<u8").reshape(len(encoded), width)
    with np.errstate(over="ignore"):
        for column in matrix.T:
            state = (state ^ column) * FNV_PRIME
    return state


def _salted_offset(salt: bytes) -> np.uint64:
    """FNV-1a of the salt, byte by byte: a different start for each independent draw."""
    state = FNV_OFFSET
    for byte in salt:
        state = ((state ^ byte) * int(FNV_PRIME)) % (1 << 64)
    return np.uint64(state)


def _finalise(state: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: FNV leaves its high input bits in high output bits only, and a
    sample cut compares whole hashes, so every output bit must depend on every input bit."""
    with np.errstate(over="ignore"):
        state = (state ^ (state >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        state = (state ^ (state >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return state ^ (state >> np.uint64(31))


def candidate_bound(total: int, count: int) -> int:
    """Hashes below this bound are kept as candidates for a sample of `count` out of `total`.
    About CANDIDATE_MARGIN x count pass, so the sample's `count` smallest are all among them
    (unless far fewer pass than expected, which the caller checks), and a worker sends a few
    rows on instead of all of them."""
    return HASH_RANGE if CANDIDATE_MARGIN * count >= total else HASH_RANGE * CANDIDATE_MARGIN * count // total


def hash_sample(keys: Sequence[str], count: int, salt: bytes) -> list[int]:
    """Positions of the `count` keys with the smallest (hash, key), in that order."""
    hashes = key_hashes(keys, salt)
    candidates = np.arange(len(keys))
    if count < len(keys):
        cut = np.partition(hashes, count - 1)[count - 1]
        candidates = np.flatnonzero(hashes <= cut)
    ranked = sorted(zip(hashes[candidates].tolist(), (keys[i] for i in candidates.tolist()), candidates.tolist()))
    return [position for _, _, position in ranked[:count]]
