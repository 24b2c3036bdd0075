"""The joint model: one tower per encoder, one symmetric TFRS retrieval loss per pair type.

Every pair type (two views that occur in the same rows) contributes the in-batch softmax loss in
both directions, because users query both ways (text → audio and audio → text). Views of the same
encoder share its tower, which is what puts all modalities into one space.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import tensorflow_recommenders as tfrs

from jointspace.encoders.base import tf


@dataclass(frozen=True)
class PairType:
    """Two views (`id:user`, `text`, ...), the encoders that embed them, and a loss weight."""

    a: str
    b: str
    encoder_a: str
    encoder_b: str
    weight: float = 1.0

    @property
    def name(self) -> str:
        return f"{self.a}={self.b}"


def score_mask(codes_a: tf.Tensor, codes_b: tf.Tensor) -> tf.Tensor:
    """Keep the positive and every candidate that is not an accidental hit.

    A candidate j is a false negative for query i when row j repeats row i's value on either side
    (another clip of the same word, another film of the same history); counting it as a negative
    would push apart things that belong together. TFRS's own accidental-hit removal looks only at
    candidate ids, which misses repeats on the query side.
    """
    same = tf.equal(codes_a[:, None], codes_a[None, :]) | tf.equal(codes_b[:, None], codes_b[None, :])
    eye = tf.cast(tf.eye(tf.shape(codes_a)[0]), tf.bool)
    return eye | ~same


class JointModel(tf.keras.Model):
    def __init__(self, towers: dict[str, tf.keras.layers.Layer], temperature: float) -> None:
        super().__init__()
        self.towers = towers
        self.task = tfrs.tasks.Retrieval(temperature=temperature)

    def pair_loss(self, pair: PairType, batch: dict[str, Any], training: bool = True) -> tf.Tensor:
        left = self.towers[pair.encoder_a](batch["a"], training=training)
        right = self.towers[pair.encoder_b](batch["b"], training=training)
        mask = score_mask(batch["codes_a"], batch["codes_b"])  # symmetric: serves both directions
        weight = batch["weight"]
        loss = self.task(left, right, sample_weight=weight, compute_metrics=False,
                         compute_batch_metrics=False, score_mask=mask)
        loss += self.task(right, left, sample_weight=weight, compute_metrics=False,
                          compute_batch_metrics=False, score_mask=mask)
        return pair.weight * loss / tf.cast(tf.shape(left)[0], tf.float32)

