"""The exported model at serving time: request values of any modality to vectors of the space.

Used by the index builder and the server alike, so catalog entries and queries are embedded by
the same code. Raw vectors (`vector`) need no encoder: they are checked and normalised here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jointspace.core.errors import InvalidInput
from jointspace.core.limits import DEFAULT_LIMITS, Limits
from jointspace.encoders import registry
from jointspace.encoders.base import ServingEncoder
from jointspace.encoders.manifest import read_manifest

VECTOR = "vector"


def normalize_vectors(vectors: np.ndarray, dim: int, field: str = VECTOR) -> np.ndarray:
    """Validate raw vectors (length D, finite, not zero) and scale them to unit length."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        got = vectors.shape[-1] if vectors.ndim else 0
        raise InvalidInput(f"{field}: expected {dim} values, got {got}")
    if not np.isfinite(vectors).all():
        raise InvalidInput(f"{field}: values must be finite (no NaN or Inf)")
    # Divided by its largest value first: the norm of [2e38, 3e38] overflows float32 to inf (the
    # query silently became the zero vector) and that of [3e-40, 4e-40] underflows to 0.
    largest = np.abs(vectors).max(axis=1, keepdims=True)
    if (largest == 0).any():
        raise InvalidInput(f"{field}: the zero vector has no direction")
    vectors = vectors / largest
    return np.ascontiguousarray(vectors / np.linalg.norm(vectors, axis=1, keepdims=True))


class EncoderSet:
    """Every encoder of one exported model, keyed by the modality it answers."""

    def __init__(self, model_dir: Path, limits: Limits = DEFAULT_LIMITS) -> None:
        self.model_dir = Path(model_dir)
        self.manifest = read_manifest(self.model_dir)
        self.dim = self.manifest.dim
        self.version = self.manifest.model_version
        self.limits = limits
        self._by_modality: dict[str, ServingEncoder] = {}
        for name, entry in self.manifest.encoders.items():
            encoder = registry.by_name(name).load(self.model_dir / entry.path, entry.settings, limits)
            for modality in entry.modalities:
                self._by_modality[modality] = encoder
        # Worked out once: `embed` checks every query against it.
        self.modalities: list[str] = sorted([*self._by_modality, VECTOR])

    def embed(self, modality: str, values: Sequence[Any]) -> np.ndarray:
        """float32 [len(values), D]: unit rows, or rows of length at most 1 for ids."""
        if modality == VECTOR:
            rows = [np.asarray(v, dtype=np.float32).ravel() for v in values]
            wrong = next((r for r in rows if r.size != self.dim), None)
            if wrong is not None:
                raise InvalidInput(f"vector: expected {self.dim} values, got {wrong.size}")
            return normalize_vectors(np.stack(rows) if rows else np.zeros((0, self.dim)), self.dim)
        if modality not in self.modalities:
            raise InvalidInput(
                f"the model cannot encode {modality!r} queries; it knows {', '.join(self.modalities)}"
            )
        if not values:
            return np.zeros((0, self.dim), np.float32)
        return self._by_modality[modality].embed(modality, values)
