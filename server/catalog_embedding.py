"""Embedding catalog values in batches, for every builder: audio batches are small because each
clip is decoded and padded to the longest in its batch; other modalities are cheap per value."""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np

from jointspace.encoders.inference import EncoderSet

BATCH_SIZES = {"audio": 64}
DEFAULT_BATCH = 512


def embedded_batches(encoders: EncoderSet, modality: str, values: Sequence[Any]) -> Iterator[np.ndarray]:
    """float32 [batch, D] vectors of length at most 1, in the order of `values`."""
    size = BATCH_SIZES.get(modality, DEFAULT_BATCH)
    for start in range(0, len(values), size):
        yield encoders.embed(modality, values[start : start + size]).astype(np.float32)
