"""Categorical ids and bags of ids (histories) in one embedding table.

A single id is a bag of one, so "films like this film" and "films for this history" go through
the same table and projection; a history never becomes a one-hot vector. Ids absent from the
vocabulary are left out of the pooling at serving time (and reported as NOT_FOUND when nothing
known remains), because a hashed bucket's vector says nothing about a particular new id.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jointspace.core.errors import InvalidInput, LimitExceeded, NotFound
from jointspace.core.limits import DEFAULT_LIMITS, Limits
from jointspace.encoders.base import (
    Arrays,
    Encoder,
    EncoderPlugin,
    ServingEncoder,
    TowerView,
    clip_to_unit_ball,
    join_outputs,
    l2_normalize,
    load_serving,
    save_serving,
    tf,
)
from jointspace.encoders.impl.id_norms import DEFAULT_NORM, NORMS

PAD = ""
# How an id vector's length is bounded, for each of id_norms.NORMS.
BOUNDS = {"clip": clip_to_unit_ball, "unit": l2_normalize}


def pad_bags(bags: Sequence[Sequence[str]], max_len: int | None = None) -> np.ndarray:
    """Bags to a dense [n, L] string array, padded with the mask token and cut to the last
    `max_len` entries (the most recent ones, for a time-ordered history)."""
    if max_len is not None:
        bags = [list(b)[-max_len:] for b in bags]
    width = max(1, max((len(b) for b in bags), default=1))
    out = np.full((len(bags), width), PAD, dtype=object)
    for row, bag in enumerate(bags):
        out[row, : len(bag)] = list(bag)
    return out.astype(str)


def string_lookup(vocabulary: list[str], oov_buckets: int) -> tf.keras.layers.StringLookup:
    """Ids to table rows: 0 for the pad, 1..oov_buckets for hashed unknown ids, then the
    vocabulary. Deterministic, so `prepare` and the tower's own copy agree on every index."""
    return tf.keras.layers.StringLookup(vocabulary=vocabulary, mask_token=PAD, num_oov_indices=oov_buckets)


class IdTower(tf.keras.layers.Layer):
    """Mean of the known ids' embeddings, projected and bounded to length 1 (`BOUNDS`). Returns
    the embedding and the number of known ids per row (0 means the query is made only of unknown
    ids).

    Takes id strings (serving: the exported SavedModel keeps the lookup inside) or the table
    indices `IdEncoder.prepare` computed once (training: a hash lookup of every id on every step
    would cost more than the embedding itself)."""

    def __init__(self, vocabulary: list[str], dim: int, oov_buckets: int, norm: str = DEFAULT_NORM,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bound_length = BOUNDS[norm]
        self.lookup = string_lookup(vocabulary, oov_buckets)
        self.first_known_index = 1 + oov_buckets
        self.table = tf.keras.layers.Embedding(self.lookup.vocabulary_size(), dim)
        self.projection = tf.keras.layers.Dense(dim, use_bias=False)

    def call(self, ids: tf.Tensor, training: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
        index = self.lookup(ids) if ids.dtype == tf.string else ids
        # In training every non-pad id counts (rare ids share hashed buckets); at serving time
        # only vocabulary ids do.
        keep = index >= (1 if training else self.first_known_index)
        weights = tf.cast(keep, tf.float32)
        count = tf.reduce_sum(weights, axis=1, keepdims=True)
        pooled = tf.reduce_sum(self.table(index) * weights[..., None], axis=1) / tf.maximum(count, 1.0)
        return self.bound_length(self.projection(pooled)), tf.cast(count[:, 0], tf.int32)


class IdEncoder(Encoder):
    name = "id"
    modalities = ("id", "ids")

    def adapt(self, values: Sequence[Any]) -> None:
        counts: Counter[str] = Counter()
        for value in values:
            counts.update([value] if isinstance(value, str) else value)
        min_count = int(self.settings.get("min_count", 1))
        self.vocabulary = sorted(v for v, c in counts.items() if c >= min_count and v != PAD)
        self.oov_buckets = int(self.settings.get("oov_buckets", 8))
        self.max_bag = int(self.settings.get("max_bag", 200))
        self.norm = str(self.settings.get("norm", DEFAULT_NORM))
        if self.norm not in NORMS:
            raise ValueError(f"id norm must be one of {', '.join(NORMS)}, not {self.norm!r}")

    def num_values(self) -> int:
        return len(self.vocabulary)

    def prepare(self, modality: str, values: Sequence[Any]) -> Arrays:
        """Table indices [n, L] (int32), looked up once here instead of on every training step.

        Vocabulary ids are found with a dict: with TensorFlow's string lookup this step took
        longer than training itself at ten million rows. Only the ids the dict misses (pads and
        unknown ids, hashed into buckets) go through the tower's own lookup, so both still agree
        on every index."""
        bags = [[v] for v in values] if modality == "id" else [list(v)[-self.max_bag :] for v in values]
        lengths = np.fromiter(map(len, bags), np.int64, len(bags))
        flat = list(itertools.chain.from_iterable(bags))
        first = 1 + self.oov_buckets
        row_of = {v: first + i for i, v in enumerate(self.vocabulary)}
        rows = np.fromiter((row_of.get(v, -1) for v in flat), np.int32, len(flat))
        missed = np.flatnonzero(rows < 0)
        if missed.size:
            lookup = string_lookup(self.vocabulary, self.oov_buckets)
            # An object array: a fixed-width one makes every id as wide as the longest.
            rows[missed] = lookup(np.array([flat[i] for i in missed], dtype=object)).numpy()
        index = np.zeros((len(bags), max(1, int(lengths.max(initial=0)))), np.int32)  # 0 is the pad
        starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
        index[np.repeat(np.arange(len(bags)), lengths), np.arange(len(flat)) - starts] = rows
        return {"index": index}

    def build_tower(self) -> tf.keras.layers.Layer:
        tower = IdTower(self.vocabulary, self.dim, self.oov_buckets, self.norm, name="id_tower")
        return TowerView(tower, "index")

    def export(self, towers: Sequence[tf.keras.layers.Layer], path: Path) -> dict[str, Any]:
        inners: list[IdTower] = [tower.inner for tower in towers]
        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.string, name="ids")])
        def serve(ids: tf.Tensor) -> dict[str, tf.Tensor]:
            embedding, known = join_outputs([inner(ids, training=False) for inner in inners])
            return {"embedding": embedding, "known": known}

        save_serving(path, inners, serve)
        return {
            "vocab_size": len(self.vocabulary),
            "oov_buckets": self.oov_buckets,
            "max_bag": self.max_bag,
            "norm": self.norm,
        }


class ServingIdEncoder(ServingEncoder):
    modalities = IdEncoder.modalities

    def __init__(self, path: Path, entry: dict[str, Any], limits: Limits = DEFAULT_LIMITS) -> None:
        self.signature = load_serving(path)
        self.max_bag = int(entry.get("max_bag", 200))
        self.limits = limits

    def embed(self, modality: str, values: Sequence[Any]) -> np.ndarray:
        bags = [[v] for v in values] if modality == "id" else [list(v) for v in values]
        for bag in bags:
            if len(bag) > self.limits.max_ids:
                raise LimitExceeded(f"{modality}: {len(bag)} ids, over the limit of {self.limits.max_ids}")
            if not bag or any(not isinstance(i, str) or not i for i in bag):
                raise InvalidInput(f"{modality}: ids must be non-empty strings")
        out = self.signature(ids=tf.constant(pad_bags(bags, self.max_bag)))
        known = out["known"].numpy()
        if (known == 0).any():
            unknown = bags[int(np.argmin(known))]
            if len(unknown) == 1:
                raise NotFound(f"{modality}: id {unknown[0]!r} is not in the model's vocabulary")
            raise NotFound(f"{modality}: none of the {len(unknown)} ids is in the model's vocabulary")
        return out["embedding"].numpy()


PLUGIN = EncoderPlugin(IdEncoder.name, IdEncoder.modalities, IdEncoder, ServingIdEncoder)
