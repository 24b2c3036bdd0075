"""The joint model: one tower per encoder, one symmetric in-batch softmax loss per pair type.

Every pair type (two views that occur in the same rows) contributes the in-batch softmax loss in
both directions, because users query both ways (text → audio and audio → text). Views of the same
encoder share its tower, which is what puts all modalities into one space.

The loss is `tfrs.tasks.Retrieval`'s (softmax cross-entropy against the diagonal, summed with
sample weights, masked scores set to TFRS's MIN_FLOAT), computed from one score matrix: the b → a
direction is the same matrix read by columns, so the [batch, batch] product, the mask and the
temperature are paid once rather than in two task calls (tests/test_training.py checks that the
figure equals the two calls).

A training step differentiates the loss in two parts: the loss and its gradient with respect to
the two sides' embeddings run as one XLA program, and only the towers are differentiated by
TensorFlow's tape (with those embedding gradients as output gradients). Leaving the loss's
gradient to the tape ran the [batch, batch] backward pass outside XLA, which slowed the loss
markedly at large batches (the training step as it is now: docs/benchmarks.md, "Training
speed"). The towers stay outside XLA so that an embedding table's gradient remains sparse rows,
not a dense table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tensorflow_recommenders.tasks.retrieval import MIN_FLOAT

from jointspace.encoders.base import tf


@dataclass(frozen=True)
class PairType:
    """Two views (`id:user`, `text`, ...), the encoders that embed them, and a loss weight."""

    a: str
    b: str
    encoder_a: str
    encoder_b: str
    weight: float = 1.0
    # "a" or "b": that side is a bag of the ids that the other side is one of (its members are
    # masked out of its softmax); None for other pairs.
    bags: str | None = None
    # "a" or "b": that side's every training value is a candidate of the other side's queries,
    # trained in that direction only (the catalog softmax, trainer.catalog_side); None: in-batch
    # candidates both ways.
    catalog: str | None = None

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
    def __init__(self, towers: dict[str, tf.keras.layers.Layer], temperature: float,
                 catalog_temperature: float | None = None) -> None:
        super().__init__()
        self.towers = towers
        self.temperature = temperature
        self.catalog_temperature = temperature if catalog_temperature is None else catalog_temperature

    def pair_temperature(self, pair: PairType) -> float:
        return self.temperature if pair.catalog is None else self.catalog_temperature

    def embed_pair(self, pair: PairType, batch: dict[str, Any], training: bool) -> list[tf.Tensor]:
        """The two embeddings a pair's loss reads: both sides of the batch or, for a pair with a
        catalog side, the queries and the whole catalog (the batch's own targets are rows of the
        catalog, so that side is not embedded again)."""
        if pair.catalog is None:
            return [self.towers[pair.encoder_a](batch["a"], training=training),
                    self.towers[pair.encoder_b](batch["b"], training=training)]
        query, query_encoder, catalog_encoder = (("a", pair.encoder_a, pair.encoder_b) if pair.catalog == "b"
                                                 else ("b", pair.encoder_b, pair.encoder_a))
        return [self.towers[query_encoder](batch[query], training=training),
                self.towers[catalog_encoder](batch["catalog"], training=training)]

    def pair_loss(self, pair: PairType, batch: dict[str, Any], training: bool = True) -> tf.Tensor:
        embedded = self.embed_pair(pair, batch, training)
        return (embedded_loss(embedded, _terms(batch), self.pair_temperature(pair), pair.catalog is not None)
                * _scale(pair, embedded[0]))

    def pair_gradients(self, pair: PairType, batch: dict[str, Any],
                       variables: list[tf.Variable]) -> tuple[tf.Tensor, list[Any]]:
        """The training loss of one batch and its gradients for `variables` (see the module
        docstring for why the loss's own gradient is taken inside XLA)."""
        with tf.GradientTape() as tape:
            embedded = self.embed_pair(pair, batch, training=True)
        loss, *gradients = loss_and_embedding_gradients(
            embedded, _terms(batch), self.pair_temperature(pair), _scale(pair, embedded[0]), pair.catalog is not None)
        return loss, tape.gradient(embedded, variables, output_gradients=gradients)


def _terms(batch: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in batch.items() if k not in ("a", "b", "catalog")}


def _scale(pair: PairType, left: tf.Tensor) -> tf.Tensor:
    """A batch's loss is the pair type's weight times the mean over its rows."""
    return pair.weight / tf.cast(tf.shape(left)[0], tf.float32)


@tf.function(jit_compile=True, reduce_retracing=True)
def loss_and_embedding_gradients(embedded: list[tf.Tensor], batch: dict[str, Any], temperature: float,
                                 scale: tf.Tensor, catalog: bool) -> tuple[tf.Tensor, ...]:
    """`scale` × the loss, and its gradients with respect to the two embeddings (`embed_pair`),
    as one XLA program: it fuses the score matrices' masks, softmaxes and their gradients into a
    few passes over them."""
    with tf.GradientTape() as tape:
        tape.watch(embedded)
        loss = scale * embedded_loss(embedded, batch, temperature, catalog)
    return (loss, *tape.gradient(loss, embedded))


def embedded_loss(embedded: list[tf.Tensor], batch: dict[str, Any], temperature: float, catalog: bool) -> tf.Tensor:
    """The loss of a pair's two embeddings (`JointModel.embed_pair`), summed over the batch: for a
    catalog pair, each query's target ranked among the whole catalog, in that direction only.
    The way back (a film ranking the batch's users) is left out: on MovieLens-like ratings it cost
    users' unseen films at top 10 (docs/benchmarks.md), and the catalog's vectors still sit near
    their own users, so film → user search keeps working."""
    if catalog:
        towards = catalog_loss(embedded[0], embedded[1], batch["catalog_target"], batch["catalog_mask"], temperature)
        return tf.reduce_sum(batch["weight"] * towards)
    return in_batch_loss(embedded[0], embedded[1], batch, temperature)


def catalog_loss(queries: tf.Tensor, catalog: tf.Tensor, target: tf.Tensor, mask: tf.Tensor,
                 temperature: float) -> tf.Tensor:
    """Per query, the softmax loss of its target among every catalog value, except those `mask`
    leaves out (the query's other training partners: a user's other films are not negatives)."""
    scores = tf.matmul(queries, catalog, transpose_b=True) / temperature
    positive = tf.gather(scores, target, axis=1, batch_dims=1)
    return tf.reduce_logsumexp(tf.where(mask, MIN_FLOAT, scores), axis=1) - positive


def in_batch_loss(left: tf.Tensor, right: tf.Tensor, batch: dict[str, Any], temperature: float) -> tf.Tensor:
    """The symmetric loss from the two sides' embeddings, summed over the batch."""
    scores = tf.matmul(left, right, transpose_b=True) / temperature
    mask = score_mask(batch["codes_a"], batch["codes_b"])  # symmetric: serves both directions
    if "members" in batch:  # a history's own ids are neither its negatives nor its candidates
        mask = mask & ~batch["members"]
    if "log_q_a" in batch:  # logQ correction: each direction's candidates lose log(sampling share)
        a_scores = tf.where(mask, scores - batch["log_q_b"][None, :], MIN_FLOAT)
        b_scores = tf.where(mask, scores - batch["log_q_a"][:, None], MIN_FLOAT)
    else:
        a_scores = b_scores = tf.where(mask, scores, MIN_FLOAT)
    # rows: queries a, candidates b; columns: queries b, candidates a
    a_to_b = tf.reduce_logsumexp(a_scores, axis=1) - tf.linalg.diag_part(a_scores)
    b_to_a = tf.reduce_logsumexp(b_scores, axis=0) - tf.linalg.diag_part(b_scores)
    return tf.reduce_sum(batch["weight"] * (a_to_b + b_to_a))
