"""The exported model at serving time: request values of any modality to vectors of the space.

Used by the index builder and the server alike, so catalog entries and queries are embedded by
the same code. Raw vectors (`vector`) need no encoder: they are checked and normalised here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from jointspace.core.errors import InvalidInput
from jointspace.core.limits import DEFAULT_LIMITS, Limits
from jointspace.encoders import registry
from jointspace.encoders.base import ServingEncoder
from jointspace.encoders.manifest import read_manifest

VECTOR = "vector"


def normalize_vectors(vectors: np.ndarray, dim: int, field: str = VECTOR) -> np.ndarray:
    """Validate raw vectors (length D, finite, not zero) and scale them to unit length."""
    if not (isinstance(vectors, np.ndarray) and vectors.dtype == np.float32):  # a query's rows already are
        vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        got = vectors.shape[-1] if vectors.ndim else 0
        raise InvalidInput(f"{field}: expected {dim} values, got {got}")
    if len(vectors) == 1:
        return _normalize_row(vectors, field)
    # In float64: the norm of [2e38, 3e38] overflows float32 to inf (the query silently became
    # the zero vector) and that of [3e-40, 4e-40] underflows to 0, but no float32's square does
    # either in float64. One pass then finds every bad row too (a NaN or an inf makes its norm
    # non-finite, a zero vector makes it 0).
    wide = vectors.astype(np.float64)
    norms = np.sqrt(np.add.reduce(wide * wide, axis=1, keepdims=True))
    if not ((norms > 0) & (norms < np.inf)).all():  # NaN fails both
        _refuse(vectors, field)
    return (wide / norms).astype(np.float32)


def _normalize_row(vector: np.ndarray, field: str) -> np.ndarray:
    """One row, as every vector query has, in Python floats: on one row each NumPy call costs
    more than its arithmetic, and under concurrent searches far more (docs/benchmarks.md,
    "Serving speed"). math.hypot neither overflows nor underflows for float32 values and is
    non-finite exactly when a value is, and Python floats divide in float64, so the checks, the
    division and the errors are the batch path's."""
    values = vector[0].tolist()
    norm = math.hypot(*values)
    if not 0 < norm < math.inf:  # NaN fails both
        _refuse(vector, field)
    return np.array([[value / norm for value in values]], np.float32)


def _refuse(vectors: np.ndarray, field: str) -> NoReturn:
    """The error for vectors of which one has a non-finite or a zero norm."""
    if not np.isfinite(vectors).all():
        raise InvalidInput(f"{field}: values must be finite (no NaN or Inf)")
    raise InvalidInput(f"{field}: the zero vector has no direction")


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

    def embed(self, modality: str, values: Sequence[Any] | np.ndarray) -> np.ndarray:
        """float32 [len(values), D]: unit rows, or rows of length at most 1 for ids."""
        if modality == VECTOR:
            if isinstance(values, np.ndarray) and values.ndim == 2:  # a catalog read column-wise
                return normalize_vectors(values, self.dim)
            if len(values) == 1:  # one query: a row of its own, no list of rows to stack
                return normalize_vectors(np.asarray(values[0], dtype=np.float32).reshape(1, -1), self.dim)
            rows = [np.asarray(v, dtype=np.float32).ravel() for v in values]
            wrong = next((r for r in rows if r.size != self.dim), None)
            if wrong is not None:
                raise InvalidInput(f"vector: expected {self.dim} values, got {wrong.size}")
            return normalize_vectors(np.stack(rows) if rows else np.zeros((0, self.dim)), self.dim)
        encoder = self.encoder(modality)
        items = values.tolist() if isinstance(values, np.ndarray) else values  # encoders take lists
        if not items:
            return np.zeros((0, self.dim), np.float32)
        return encoder.embed(modality, items)

    def encoder(self, modality: str) -> ServingEncoder:
        """The encoder that answers `modality` (not `vector`, which needs none)."""
        found = self._by_modality.get(modality)
        if found is None:
            raise InvalidInput(
                f"the model cannot encode {modality!r} queries; it knows {', '.join(self.modalities)}"
            )
        return found
