"""What the client returns: plain typed values, never protocol messages.

`Hit` is also what the server's search engine produces, so one object describes a result on both
sides of the wire.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import grpc


@dataclass
class Hit:
    key: str
    score: float  # inner product, at most 1: the cosine, times an id vector's length (<= 1)
    modality: str
    metadata: dict[str, Any] = field(default_factory=dict)
    # Hybrid search only: which sides found the hit ("vector", "lexical"); `score` is then fused.
    found_by: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        plain = {"key": self.key, "score": self.score, "modality": self.modality, "metadata": self.metadata}
        return {**plain, "found_by": list(self.found_by)} if self.found_by else plain


@dataclass(frozen=True)
class IndexInfo:
    """What a server serves (GetIndexInfo)."""

    generation: str
    size: int
    dim: int
    index_type: str
    model_version: str
    size_by_modality: dict[str, int]
    query_modalities: list[str]
    # The journal number of the newest acknowledged online change: pass it to `rebuild` as
    # `includes_changes_through` when a catalog exported now is rebuilt.
    last_change: int
    bytes_per_vector: float


@dataclass(frozen=True)
class Entry:
    """A catalog entry as the server holds it now (GetEntries): indexed or upserted since."""

    key: str
    modality: str
    metadata: dict[str, Any]


class OperationState(enum.IntEnum):
    """The values of the protocol's `RebuildMetadata.State`, so either can be compared."""

    STATE_UNSPECIFIED = 0
    RUNNING = 1
    SUCCEEDED = 2
    FAILED = 3
    CANCELLED = 4


@dataclass(frozen=True)
class Progress:
    phase: str
    done: int
    total: int


@dataclass(frozen=True)
class OperationError:
    code: grpc.StatusCode
    message: str


@dataclass(frozen=True)
class Validation:
    """The recall@k a gated rebuild measured for its new generation."""

    k: int
    recall: float
    min_recall: float
    pairs: int


@dataclass(frozen=True)
class Operation:
    """A rebuild, as GetOperation last reported it."""

    name: str
    done: bool
    state: OperationState
    progress: Progress
    generation: str = ""  # the generation that went live, once SUCCEEDED
    error: OperationError | None = None
    validation: Validation | None = None  # set when the rebuild was gated and the measurement ran
