"""Embedding catalog values in batches, for every builder: audio batches are small because each
clip is decoded and padded to the longest in its batch; other modalities are cheap per value."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from jointspace.core.errors import InvalidInput
from jointspace.encoders.inference import EncoderSet

BATCH_SIZES = {"audio": 64}
DEFAULT_BATCH = 512


def embedded_batches(encoders: EncoderSet, modality: str,
                     values: Sequence[Any] | np.ndarray) -> Iterator[np.ndarray]:
    """float32 [batch, D] vectors of length at most 1, in the order of `values`."""
    size = BATCH_SIZES.get(modality, DEFAULT_BATCH)
    for start in range(0, len(values), size):
        batch = values[start : start + size]
        yield finite_vectors(encoders.embed(modality, batch).astype(np.float32), modality, batch)


def finite_vectors(vectors: np.ndarray, modality: str, values: Sequence[Any] | np.ndarray) -> np.ndarray:
    """`vectors`, refused if any is NaN or infinite: a model whose weights went NaN embeds
    everything to NaN, and FAISS would index that without a word."""
    bad = ~np.isfinite(vectors).all(axis=1)
    if bad.any():
        first = str(values[int(np.argmax(bad))])[:60]
        raise InvalidInput(f"{modality} {first!r}: the model's vector is not finite (NaN or Inf), nor are "
                           f"{int(bad.sum()) - 1} more of its batch of {len(values)}; train the model again")
    return vectors
