"""What the service serves: one model and one index generation from that model, as a pair.

The pair is replaced as a whole (one reference assignment), so a query that started on the old
pair finishes on it while new queries see the new one; nothing is ever half-swapped. The engine
knows nothing of gRPC: the CLI, the tests and the service share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from jointspace.encoders.inference import EncoderSet
from jointspace.errors import InvalidInput, LimitExceeded, NotReady
from jointspace.limits import DEFAULT_LIMITS, Limits
from jointspace.progress import log
from jointspace.hits import Hit
from jointspace.server.generation import Generation
from jointspace.server.generations import IndexDirectory

Query = tuple[str, Any]  # (modality, value)


@dataclass(frozen=True)
class Served:
    encoders: EncoderSet
    generation: Generation


def check_pair(encoders: EncoderSet, generation: Generation) -> None:
    if generation.model_version != encoders.version:
        raise NotReady(
            f"index {generation.name} was embedded by model {generation.model_version}, "
            f"but the model loaded is {encoders.version}; rebuild the index with this model"
        )


class Engine:
    def __init__(self, model_dir: Path, index_dir: Path, limits: Limits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self.index_dir = IndexDirectory(index_dir)
        encoders = EncoderSet(model_dir, limits)
        removed = self.index_dir.remove_partials()
        if removed:
            log(f"removed leftovers of interrupted builds: {', '.join(removed)}")
        generation = Generation(self.index_dir.current_path())
        check_pair(encoders, generation)
        self._served = Served(encoders, generation)

    @property
    def served(self) -> Served:
        return self._served

    def check_k(self, k: int) -> None:
        if k <= 0:
            raise InvalidInput(f"k: must be at least 1, got {k}")
        if k > self.limits.max_k:
            raise LimitExceeded(f"k: {k} is over the limit of {self.limits.max_k}")

    def check_batch(self, count: int, field: str) -> None:
        if count > self.limits.max_batch:
            raise LimitExceeded(f"{field}: {count} items, over the limit of {self.limits.max_batch}")

    def embed(self, queries: Sequence[Query], served: Served | None = None) -> np.ndarray:
        """Unit vectors for queries of mixed modalities, one encoder call per modality."""
        encoders = (served or self._served).encoders
        out = np.zeros((len(queries), encoders.dim), np.float32)
        by_modality: dict[str, list[int]] = {}
        for position, (modality, _) in enumerate(queries):
            by_modality.setdefault(modality, []).append(position)
        for modality, positions in by_modality.items():
            out[positions] = encoders.embed(modality, [queries[p][1] for p in positions])
        return out

    def search(self, queries: Sequence[Query], k: int, modalities: Sequence[str] = (),
               excludes: Sequence[set[str]] | None = None) -> list[list[Hit]]:
        self.check_k(k)
        served = self._served  # one pair for the whole call
        vectors = self.embed(queries, served)
        return served.generation.search(vectors, k, modalities, excludes)

    def info(self) -> dict[str, Any]:
        served = self._served
        return {**served.generation.info(), "query_modalities": served.encoders.modalities}
