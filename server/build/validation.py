"""The gate of a rebuild: recall@k of a new generation on validation pairs, measured before it goes
live, so that a broken catalog export or a worse model is caught before users see it.

A validation file has the layout of a catalog (JSON Lines, CSV or Parquet): each row names a `key` of the
catalog and one query field, `id`, `ids`, `text`, `audio` (a path relative to the file, inside
the data directory as a catalog's are) or `vector`. The query is embedded with the model of the
new generation and searched among the entries of the key's modality; the row is a hit when the
key is among the top k. A key missing from the new generation is a miss, so a rebuild that loses
entries fails its gate too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jointspace.core.errors import InvalidInput, NotReady
from jointspace.data.catalog import LOCAL, RowRules, entry_from_row
from jointspace.data.rows import iter_rows, place
from jointspace.encoders.inference import EncoderSet
from jointspace.server.index.data_dir import DataDir
from jointspace.server.index.generation import Generation
from jointspace.server.index.searching import search

DEFAULT_K = 10


@dataclass(frozen=True)
class Gate:
    pairs: Path
    min_recall: float
    k: int = DEFAULT_K
    data_dir: DataDir = field(default_factory=DataDir)  # where the audio the pairs name may lie

    def __post_init__(self) -> None:
        if not 0.0 < self.min_recall <= 1.0:
            raise InvalidInput(f"min_recall: {self.min_recall} is not in (0, 1]")
        if self.k <= 0:
            raise InvalidInput(f"validation_k: must be at least 1, got {self.k}")


@dataclass(frozen=True)
class ValidationPair:
    modality: str  # of the query
    value: Any
    key: str  # expected among the hits


def read_validation_pairs(path: Path, rules: RowRules = LOCAL) -> list[ValidationPair]:
    pairs = []
    for number, row in iter_rows(Path(path)):
        where = place(Path(path), number)
        if "ids" in row:
            ids = row["ids"]
            if not isinstance(row.get("key"), str) or not isinstance(ids, list) or not ids:
                raise InvalidInput(f"{where}: needs a key and a non-empty ids list")
            pairs.append(ValidationPair("ids", [str(i) for i in ids], row["key"]))
            continue
        entry = entry_from_row({k: v for k, v in row.items() if k != "metadata"}, where, Path(path), rules)
        pairs.append(ValidationPair(entry.modality, entry.value, entry.key))
    if not pairs:
        raise InvalidInput(f"validation_pairs {path}: no rows")
    return pairs


def measure(encoders: EncoderSet, generation: Generation, gate: Gate) -> dict[str, Any]:
    """{"k", "recall", "min_recall", "pairs"} of the generation on the gate's pairs."""
    pairs = read_validation_pairs(gate.pairs, RowRules(encoders.limits, gate.data_dir.confine))
    located = generation.store.locate(sorted({p.key for p in pairs}))
    groups: dict[tuple[str, str], list[ValidationPair]] = {}
    for pair in pairs:
        if pair.key in located:
            groups.setdefault((pair.modality, located[pair.key][0]), []).append(pair)
    hits = 0
    for (query_modality, key_modality), members in groups.items():
        vectors = encoders.embed(query_modality, [p.value for p in members])
        for pair, found in zip(members, search(generation, vectors, gate.k, [key_modality], with_metadata=False)):
            hits += any(hit.key == pair.key for hit in found)
    return {"k": gate.k, "recall": hits / len(pairs), "min_recall": gate.min_recall, "pairs": len(pairs)}


def check(figures: dict[str, Any], generation: str, serving: str) -> None:
    """NotReady (FAILED_PRECONDITION) with the figures when the gate is not passed."""
    if figures["recall"] < figures["min_recall"]:
        raise NotReady(
            f"validation gate: recall@{figures['k']} {figures['recall']:.3f} over {figures['pairs']} pairs is "
            f"below min_recall {figures['min_recall']}; {generation} was not swapped in, {serving} keeps serving")
