"""The contract between the core and a modality encoder.

An encoder owns everything modality-specific at both ends of a model's life: during training it
turns raw view values into arrays and builds a Keras tower that maps them to unit vectors of the
shared space; at export it writes a SavedModel whose signature takes what a caller has (strings,
waveforms); at serving time it turns request values into that signature's inputs. Model, training and
export never branch on a modality name; the set of modalities itself is closed (registry.py).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import tensorflow as tf

import jointspace  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from jointspace.core.limits import Limits

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class EncoderPlugin:
    """How to make the two halves of one encoder. `modalities` are the view / query fields it
    encodes; `load` builds the serving half from an exported SavedModel directory and its
    manifest entry under the server's request limits."""

    name: str
    modalities: tuple[str, ...]
    encoder_class: type
    load: Callable[[Path, dict[str, Any], Limits], Any]


def l2_normalize(x: tf.Tensor) -> tf.Tensor:
    """Unit vectors make the inner product a cosine: what text and audio towers end in."""
    return tf.math.l2_normalize(x, axis=-1, epsilon=1e-12)


def clip_to_unit_ball(x: tf.Tensor) -> tf.Tensor:
    """Vectors longer than 1 shrink to length 1, shorter ones keep theirs. Every score stays an
    inner product of at most 1, and a vector's length can carry how much evidence stands behind
    it (an id trained on once stays short, a popular film grows to full length)."""
    return tf.clip_by_norm(x, 1.0, axes=[-1])


class TowerView(tf.keras.layers.Layer):
    """Training-time face of a tower: takes one field of the batch dict and keeps only the
    embedding, dropping the extra serving output (a count used to reject empty queries)."""

    def __init__(self, inner: tf.keras.layers.Layer, field: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.inner = inner
        self.field = field

    def call(self, inputs: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        return self.inner(inputs[self.field], training=training)[0]


def join_members(embeddings: Sequence[tf.Tensor]) -> tf.Tensor:
    """An ensemble's vector: its members' vectors side by side, each scaled by 1/sqrt(members),
    so that an inner product is the mean of the members' own scores and a unit vector stays one.
    One member's vector is returned as it is."""
    if len(embeddings) == 1:
        return embeddings[0]
    return tf.concat(embeddings, axis=-1) / tf.sqrt(float(len(embeddings)))


def join_outputs(outputs: Sequence[tuple[tf.Tensor, tf.Tensor]]) -> tuple[tf.Tensor, tf.Tensor]:
    """Members' `(embedding, count)` outputs for one input: the joined embedding, and the first
    member's count of known ids or words (members share their vocabularies, so counts agree)."""
    return join_members([embedding for embedding, _ in outputs]), outputs[0][1]


def save_serving(path: Path, towers: Sequence[tf.keras.layers.Layer], serve: Any) -> None:
    """Save `serve` (a tf.function with an input signature) as the SavedModel's default
    signature, with the towers tracked so their variables travel along."""
    module = tf.Module()
    module.towers = list(towers)
    module.serve = serve
    tf.saved_model.save(module, str(path), signatures={"serving_default": serve})


def load_serving(path: Path) -> Any:
    return tf.saved_model.load(str(path)).signatures["serving_default"]


class Encoder(ABC):
    """Training half of a modality encoder. One instance per model, shared by every view whose
    modality is in `modalities` (an `id` view and an `ids` bag use the same table)."""

    name: ClassVar[str]
    modalities: ClassVar[tuple[str, ...]]

    dim: int  # set by the trainer after `adapt`, since `--dim auto` depends on what was seen

    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        self.settings = dict(settings or {})

    @abstractmethod
    def adapt(self, values: Sequence[Any]) -> None:
        """Learn vocabularies or statistics from every training value of this encoder's views."""

    @abstractmethod
    def num_values(self) -> int:
        """How many distinct values the encoder has seen; feeds the `--dim auto` rule."""

    @abstractmethod
    def prepare(self, modality: str, values: Sequence[Any]) -> Arrays:
        """Raw view values (as read from pair rows, audio as absolute paths) to training arrays,
        all with the row count as first dimension."""

    @abstractmethod
    def build_tower(self) -> tf.keras.layers.Layer:
        """A layer mapping a dict of prepared arrays (batched) to unit vectors [batch, dim]."""

    @abstractmethod
    def export(self, towers: Sequence[tf.keras.layers.Layer], path: Path) -> dict[str, Any]:
        """Write a self-contained SavedModel (preprocessing inside) and return its manifest entry.

        `towers` is one tower, or an ensemble's (`train_members`: the same rows and settings, so
        the same vocabularies and front end, different weights). An ensemble's towers go into one
        SavedModel that prepares the input once and returns `join_members` of their vectors: it
        serves as any single model does, with one call a query."""


class ServingEncoder(ABC):
    """Serving half: wraps a loaded SavedModel and validates request values for it."""

    modalities: tuple[str, ...]

    @abstractmethod
    def embed(self, modality: str, values: Sequence[Any]) -> np.ndarray:
        """Request values of one modality to float32 unit vectors [n, dim]. Raises
        `InvalidInput`/`NotFound`/`LimitExceeded` naming what was wrong with which value."""

    def prepare(self, modality: str, values: Sequence[Any]) -> list[Any]:
        """The per-request work before the model call (decoding audio), so that the server can
        do it on the request's own thread and run one model call for several requests
        (`embed_prepared` of their prepared values together). None by default."""
        return list(values)

    def embed_prepared(self, modality: str, prepared: Sequence[Any]) -> np.ndarray:
        """`embed` of values that went through `prepare`, one request's or several's."""
        return self.embed(modality, prepared)
