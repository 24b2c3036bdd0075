"""Hash samples: the key hash is stable, uniform and tells apart keys that differ only by
trailing NUL bytes or by non-ASCII characters; the sharded (Beam) sample picks the local one's
rows in the local one's order."""

from __future__ import annotations

import random

import numpy as np
import pytest

from jointspace.server.build.beam_builder import Shard, _merged_sample, _shard_sample
from jointspace.server.index.sampling import HASH_RANGE, QUERY_SALT, TRAINING_SALT, hash_sample, key_hashes

# Computed once: a change here changes every sample, and with it every IVF training and tuning.
KNOWN = {
    "": 8745947681151152428,
    "v:0": 6903024876432985457,
    "a": 3536069745484618515,
    "a\0": 2355378496917626418,
    "café": 5881866921335199558,
    "日本語のキー": 4304316821230707467,
    "abcdefgh": 2417542160884483893,
    "abcdefgh\0": 2366609470713496522,
}


def test_hashes_are_the_known_values_whatever_else_is_hashed_with_them():
    keys = list(KNOWN)
    assert key_hashes(keys, TRAINING_SALT).tolist() == list(KNOWN.values())
    mixed = ["x" * 5_000, *keys, "v:1", "é" * 100]  # other lengths, so other groups
    assert key_hashes(mixed, TRAINING_SALT)[1:-2].tolist() == list(KNOWN.values())
    assert [key_hashes([key], TRAINING_SALT)[0] for key in keys] == list(KNOWN.values())
    assert key_hashes(["v:0", "café"], QUERY_SALT).tolist() == [6726029942194526708, 7541170161687893406]


def test_trailing_nul_bytes_and_non_ascii_characters_make_other_keys():
    keys = ["a", "a\0", "a\0\0", "\0", "", "abcdefg", "abcdefg\0", "abcdefg\0\0",
            "cafe", "café", "cafè", "日本", "日本\0", "🙂", "🙃"]
    hashes = key_hashes(keys, TRAINING_SALT)
    assert len(set(hashes.tolist())) == len(keys)


def test_hashes_are_uniform_in_the_hash_range():
    hashes = key_hashes([f"v:{i}" for i in range(200_000)], TRAINING_SALT)
    assert hashes.dtype == np.int64 and hashes.min() >= 0 and int(hashes.max()) < HASH_RANGE
    assert len(np.unique(hashes)) == len(hashes)
    bins = np.bincount((hashes >> 59).astype(np.int64), minlength=16)  # 16 equal ranges
    assert np.all(np.abs(bins - len(hashes) / 16) < 0.05 * len(hashes) / 16), bins
    bits = (hashes[:, None] >> np.arange(63)) & 1
    assert np.all(np.abs(bits.mean(axis=0) - 0.5) < 0.01)


def test_salts_draw_independent_samples():
    keys = [f"v:{i}" for i in range(20_000)]
    training, queries = set(hash_sample(keys, 1_000, TRAINING_SALT)), set(hash_sample(keys, 1_000, QUERY_SALT))
    assert len(training & queries) < 150  # ~50 expected from two independent draws


def test_a_long_key_is_hashed_as_when_alone():
    long_key = "€" * 400_000  # 1.2 MB of UTF-8, among short keys
    keys = [f"k{i}" for i in range(1_000)] + [long_key]
    assert key_hashes(keys, TRAINING_SALT)[-1] == key_hashes([long_key], TRAINING_SALT)[0]


def test_the_sample_is_the_smallest_hashes_in_order_and_does_not_depend_on_the_catalog_order():
    keys = [f"key {i} ü" for i in range(5_000)]
    sample = hash_sample(keys, 300, TRAINING_SALT)
    hashes = key_hashes(keys, TRAINING_SALT)
    assert [keys[i] for i in sample] == [keys[i] for i in np.argsort(hashes)[:300]]
    shuffled = random.Random(1).sample(keys, len(keys))
    assert [shuffled[i] for i in hash_sample(shuffled, 300, TRAINING_SALT)] == [keys[i] for i in sample]
    assert sorted(hash_sample(keys, 10_000, TRAINING_SALT)) == list(range(len(keys)))


@pytest.mark.parametrize("count", [40, 1_000, 6_000])
def test_shard_samples_merge_into_the_local_sample(count):
    """What the Beam build does, shard by shard then merged, against what the local build does."""
    keys = [f"entry/{i}" for i in range(5_000)]
    vectors = np.arange(len(keys), dtype=np.float32)[:, None]
    shards = [Shard("vector", (0, n), np.arange(start, start + 700), vectors[start:start + 700],
                    keys[start:start + 700], [], []) for n, start in enumerate(range(0, len(keys), 700))]
    counts = [(("vector", shard.number), len(shard.keys)) for shard in shards]
    parts = [_shard_sample(shard, counts, count, QUERY_SALT)[1] for shard in shards]
    merged = _merged_sample(parts, count)
    local = hash_sample(keys, count, QUERY_SALT)
    assert merged.rows.tolist() == local
    assert merged.vectors[:, 0].astype(np.int64).tolist() == local
