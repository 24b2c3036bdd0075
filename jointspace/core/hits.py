"""A search result, the same object on both sides of the wire (engine and Python client)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Hit:
    key: str
    score: float  # inner product, at most 1: the cosine, times an id vector's length (<= 1)
    modality: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "score": self.score, "modality": self.modality, "metadata": self.metadata}
