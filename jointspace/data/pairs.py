"""Pair rows: two or more views of the same thing per row, the training data of the joint model.

A view is a column named by its modality, optionally with a role (`id:user`, `id:item`) when a
row holds two views of one modality. Every two views in a row form a positive pair unless the
caller restricts the pair types.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from jointspace.core.errors import InvalidInput
from jointspace.data.rows import iter_rows, place, resolve_audio

NOT_VIEWS = {"weight"}


def modality_of(view: str) -> str:
    return view.split(":", 1)[0]


@dataclass
class PairRows:
    """Column-wise rows: `views[name][i]` is row i's value of that view, or None."""

    views: dict[str, list[Any]] = field(default_factory=dict)
    weights: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.weights)

    def has(self, view: str) -> np.ndarray:
        return np.array([v is not None for v in self.views[view]], dtype=bool)

    def pair_types(self, restrict: Sequence[tuple[str, str]] | None = None) -> list[tuple[str, str]]:
        """The view pairs that co-occur in at least one row, in a stable order."""
        present = {
            _ordered(*pair)
            for i in range(len(self))
            for pair in combinations([v for v in self.views if self.views[v][i] is not None], 2)
        }
        if restrict is None:
            return sorted(present)
        chosen = []
        for a, b in restrict:
            pair = _ordered(a, b)
            if pair not in present:
                raise InvalidInput(f"--pairs {a}={b}: no row has both views; have {_names(present)}")
            chosen.append(pair)
        return chosen


def _ordered(a: str, b: str) -> tuple[str, str]:
    """The pair of view names in sorted order."""
    return (a, b) if a <= b else (b, a)


def _names(pairs: set[tuple[str, str]]) -> str:
    return ", ".join(f"{a}={b}" for a, b in sorted(pairs)) or "none"


def read_pairs(paths: Sequence[Path]) -> PairRows:
    rows: list[dict[str, Any]] = []
    weights: list[float] = []
    for path in map(Path, paths):
        for number, row in iter_rows(path):
            where = place(path, number)
            views = {k: v for k, v in row.items() if k not in NOT_VIEWS and v is not None}
            if len(views) < 2:
                raise InvalidInput(f"{where}: a pair row needs at least two views, got {sorted(views)}")
            for name, value in views.items():
                if modality_of(name) == "audio":
                    views[name] = resolve_audio(path, value, where)
                elif modality_of(name) == "ids" and not (
                    isinstance(value, list) and value and all(isinstance(i, str) for i in value)
                ):
                    raise InvalidInput(f"{where}: {name} must be a non-empty list of strings")
                elif modality_of(name) in ("id", "text") and not (isinstance(value, str) and value):
                    raise InvalidInput(f"{where}: {name} must be a non-empty string")
            rows.append(views)
            weights.append(_weight(row.get("weight", 1.0), where))
    if not rows:
        raise InvalidInput(f"no pair rows in {', '.join(map(str, paths))}")
    names = sorted({name for row in rows for name in row})
    return PairRows({n: [row.get(n) for row in rows] for n in names}, weights)


def _weight(value: Any, where: str) -> float:
    """A row's loss weight: a finite number, at least 0. NaN or infinity makes every loss after
    it NaN, and a negative weight rewards pushing a pair apart."""
    try:
        weight = math.nan if isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        weight = math.nan
    if not (math.isfinite(weight) and weight >= 0):
        raise InvalidInput(f"{where}: weight must be a finite number >= 0, got {value!r:.40}")
    return weight


def parse_pair_spec(spec: str | None) -> list[tuple[str, str]] | None:
    """`"ids=id,text=id"` to view pairs."""
    if not spec:
        return None
    pairs = []
    for item in spec.split(","):
        a, sep, b = item.strip().partition("=")
        if not sep or not a or not b:
            raise InvalidInput(f"--pairs: {item!r} is not VIEW=VIEW")
        pairs.append((a, b))
    return pairs


def parse_pair_weights(specs: Sequence[str] | None) -> dict[str, float]:
    """`["text=id:0.5"]` to `{"id=text": 0.5}`: pair-type names put their views in sorted order,
    as `PairRows.pair_types` does, so either spelling names the same pair type."""
    weights = {}
    for spec in specs or ():
        pair, _, number = spec.rpartition(":")
        a, equals, b = pair.partition("=")
        try:
            weight = float(number)
        except ValueError:
            weight = -1.0
        if not (a and equals and b) or "=" in b or "," in pair or not 0 <= weight < math.inf:
            raise InvalidInput(f"--pair-weight {spec!r}: expected VIEW=VIEW:WEIGHT with a weight >= 0")
        weights["=".join(sorted((a.strip(), b.strip())))] = weight
    return weights
