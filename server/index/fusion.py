"""One ranking from the vector hits and the lexical hits of a hybrid query.

`weight` is the request's `lexical_weight`: 0 keeps the vector side alone, 1 the lexical side
alone, and between them both sides count. Two rules, compared on typed queries by `jointspace
bench typed-search` (docs/benchmarks.md, "Typed text search"), which is how the default was chosen:

- "rrf", reciprocal rank fusion: (1 - w) / (RRF_K + vector rank) + w / (RRF_K + lexical rank).
  Ranks only, so the scales of the two sides never meet.
- "weighted": (1 - w) * v + w * l, a calibrated sum: v is the vector score (an inner product, at
  most 1), l the BM25 score over that of a document holding every query word once (about 1 for a
  full match, less for a partial one; searching.py). A hit a side did not find counts 0 there.
  Unlike a min-max rescaling per query, a weak lexical match stays weak: a query that shares one
  rare word with some title does not put that title first.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

VECTOR, LEXICAL = "vector", "lexical"
RRF_K = 60  # the constant of the original RRF paper; it damps the difference between top ranks
FUSIONS = ("rrf", "weighted")
DEFAULT_FUSION = "weighted"

Item = TypeVar("Item", bound=Hashable)


def fuse(vector: Sequence[tuple[float, Item]], lexical: Sequence[tuple[float, Item]], weight: float, k: int,
         method: str = DEFAULT_FUSION) -> list[tuple[float, Item, tuple[str, ...]]]:
    """The k best items by fused score, each with the sides that found it. Each side's list is
    (score, item), best first, an item at most once."""
    sides = {VECTOR: [] if weight >= 1 else list(vector), LEXICAL: [] if weight <= 0 else list(lexical)}
    share = {VECTOR: 1 - weight, LEXICAL: weight}
    fused: dict[Item, float] = {}
    found: dict[Item, list[str]] = {}
    for side, hits in sides.items():
        for score, item in zip(_side_scores(hits, method), (item for _, item in hits)):
            fused[item] = fused.get(item, 0.0) + share[side] * score
            found.setdefault(item, []).append(side)
    ranked = sorted(fused, key=lambda item: -fused[item])[:k]
    return [(fused[item], item, tuple(found[item])) for item in ranked]


def _side_scores(hits: Sequence[tuple[float, Hashable]], method: str) -> list[float]:
    if method == "rrf":
        return [1 / (RRF_K + rank) for rank in range(1, len(hits) + 1)]
    return [score for score, _ in hits]
