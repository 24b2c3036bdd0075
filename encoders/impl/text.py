"""Free text: words plus hashed character trigrams, pooled and passed through a small MLP.

Trigrams give every word a vector, including words never seen in training ("sevens", a typo, a
new title), at the cost of one extra hashed table; the word table adds the precision that frequent
words deserve. Standardisation and tokenisation run in the graph, so the exported SavedModel takes
raw strings and any TensorFlow runtime gets the same vectors as jointspace's server.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jointspace.core.errors import InvalidInput, LimitExceeded
from jointspace.core.limits import DEFAULT_LIMITS, Limits
from jointspace.encoders.base import (
    Arrays,
    Encoder,
    EncoderPlugin,
    ServingEncoder,
    TowerView,
    join_outputs,
    l2_normalize,
    load_serving,
    save_serving,
    tf,
)

_NOT_WORD = r"[^\w]+"


def words_of(text: tf.Tensor) -> tf.RaggedTensor:
    """Lower-case Unicode words, [batch, words]; the same rule on both sides of training and
    serving so that the vocabulary matches what queries produce."""
    lowered = tf.strings.lower(text, encoding="utf-8")
    spaced = tf.strings.regex_replace(lowered, _NOT_WORD, " ")
    return tf.strings.split(tf.strings.strip(spaced))


def _ragged_mean(values: tf.RaggedTensor) -> tf.Tensor:
    """Mean over the ragged axis that gives 0 (not NaN) for empty rows."""
    total = tf.reduce_sum(values, axis=1)
    count = tf.cast(values.row_lengths(), total.dtype)[:, None]
    return total / tf.maximum(count, 1.0)


class TextTower(tf.keras.layers.Layer):
    def __init__(self, vocabulary: list[str], dim: int, width: int, buckets: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.buckets = buckets
        self.lookup = tf.keras.layers.StringLookup(vocabulary=vocabulary, num_oov_indices=1)
        self.word_table = tf.keras.layers.Embedding(self.lookup.vocabulary_size(), width)
        self.trigram_table = tf.keras.layers.Embedding(buckets, width)
        self.hidden = tf.keras.layers.Dense(2 * width, activation="relu")
        self.projection = tf.keras.layers.Dense(dim)

    def call(self, text: tf.Tensor, training: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
        words = words_of(text)
        word_vectors = tf.ragged.map_flat_values(lambda w: self.word_table(self.lookup(w)), words)
        chars = tf.strings.unicode_split(tf.strings.join(["<", words.flat_values, ">"]), "UTF-8")
        trigrams = tf.strings.ngrams(chars, 3, separator="")
        trigram_ids = tf.strings.to_hash_bucket_fast(trigrams.flat_values, self.buckets)
        trigram_vectors = trigrams.with_flat_values(self.trigram_table(trigram_ids))
        per_word = word_vectors.flat_values + _ragged_mean(trigram_vectors)
        pooled = _ragged_mean(words.with_flat_values(per_word))
        embedding = l2_normalize(self.projection(self.hidden(pooled)))
        return embedding, tf.cast(words.row_lengths(), tf.int32)


class TextEncoder(Encoder):
    name = "text"
    modalities = ("text",)

    def adapt(self, values: Sequence[Any]) -> None:
        counts: Counter[str] = Counter()
        for batch_start in range(0, len(values), 65536):
            batch = tf.constant([str(v) for v in values[batch_start : batch_start + 65536]])
            counts.update(w.decode() for w in words_of(batch).flat_values.numpy())
        max_words = int(self.settings.get("max_words", 100_000))
        min_count = int(self.settings.get("min_count", 1))
        common = [w for w, c in counts.most_common(max_words) if c >= min_count]
        self.vocabulary = sorted(common)
        self.distinct_texts = len(set(map(str, values)))
        self.width = int(self.settings.get("width", 64))
        self.buckets = int(self.settings.get("trigram_buckets", 32768))

    def num_values(self) -> int:
        return self.distinct_texts

    def prepare(self, modality: str, values: Sequence[Any]) -> Arrays:
        """An object array: a fixed-width string array makes every text as wide as the longest,
        so one long text among thousands asked for gigabytes."""
        return {"text": np.array([str(v) for v in values], dtype=object)}

    def build_tower(self) -> tf.keras.layers.Layer:
        tower = TextTower(self.vocabulary, self.dim, self.width, self.buckets, name="text_tower")
        return TowerView(tower, "text")

    def export(self, towers: Sequence[tf.keras.layers.Layer], path: Path) -> dict[str, Any]:
        inners: list[TextTower] = [tower.inner for tower in towers]
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def serve(text: tf.Tensor) -> dict[str, tf.Tensor]:
            embedding, words = join_outputs([inner(text) for inner in inners])
            return {"embedding": embedding, "words": words}

        save_serving(path, inners, serve)
        return {"vocab_size": len(self.vocabulary), "trigram_buckets": self.buckets}


class ServingTextEncoder(ServingEncoder):
    modalities = TextEncoder.modalities

    def __init__(self, path: Path, entry: dict[str, Any], limits: Limits = DEFAULT_LIMITS) -> None:
        self.signature = load_serving(path)
        self.limits = limits

    def embed(self, modality: str, values: Sequence[Any]) -> np.ndarray:
        if any(not isinstance(v, str) for v in values):
            raise InvalidInput("text: values must be strings")
        longest = max(values, key=len)
        if len(longest) > self.limits.max_text_chars:
            raise LimitExceeded(
                f"text: {len(longest)} characters, over the limit of {self.limits.max_text_chars}"
            )
        out = self.signature(text=tf.constant(list(values), dtype=tf.string))
        words = out["words"].numpy()
        if (words == 0).any():
            bad = values[int(np.argmin(words))]
            raise InvalidInput(f"text: {bad[:40]!r} has no words to encode")
        return out["embedding"].numpy()


PLUGIN = EncoderPlugin(TextEncoder.name, TextEncoder.modalities, TextEncoder, ServingTextEncoder)
