"""Retrieval metrics over a full candidate set, from the rank of every relevant candidate.

Shared by validation during training and by `jointspace evaluate`, so a figure means the same
thing wherever it is printed. Everything is computed from ranks rather than from a top-k list:
one brute-force pass gives recall@k for every k and MRR at once, and a baseline that is not a
vector model (popularity) can be scored by the same summary.

The unit of recall is a (query, relevant candidate) pair: recall@k is the share of those pairs
whose candidate ranks in the query's top k. With one relevant candidate per query this is the
hit rate, and it is exactly TFRS's `FactorizedTopK` top-k accuracy (each held-out rating counts
once); a query with several relevant candidates contributes each of them. Precision@k and MRR
are per query (MRR takes the best-ranked relevant candidate). Ties count against the model
(a candidate scoring the same as the relevant one ranks ahead of it), so a collapsed space that
maps everything to one point scores nothing, and so does a space of NaN vectors.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

MISSING = -1  # a query or candidate the model could not embed: its pairs are misses
_BLOCK_ELEMENTS = 1 << 24  # scores held at once (64 MiB of float32)


@dataclass(frozen=True)
class Trials:
    """Flat (query, relevant candidate) pairs: `query[i]` indexes the queries, `target[i]` the
    candidates (or is MISSING when the relevant value has no vector)."""

    query: np.ndarray
    target: np.ndarray
    num_queries: int

    @classmethod
    def from_relevant(cls, relevant: Sequence[Collection[int]]) -> Trials:
        lengths = np.fromiter((len(r) for r in relevant), np.int64, len(relevant))
        query = np.repeat(np.arange(len(relevant)), lengths)
        target = np.fromiter((c for r in relevant for c in r), np.int64, int(lengths.sum()))
        return cls(query, target, len(relevant))


def model_ranks(query_vectors: np.ndarray, candidate_vectors: np.ndarray, trials: Trials,
                query_ok: np.ndarray | None = None) -> np.ndarray:
    """1-based rank of each trial's target among all candidates by inner product (inf where the
    query or the target has no vector). Exact, in blocks of queries to bound memory."""
    ranks = np.full(len(trials.query), np.inf)
    usable = trials.target != MISSING
    if query_ok is not None:
        usable &= query_ok[trials.query]
    order = np.flatnonzero(usable)
    order = order[np.argsort(trials.query[order], kind="stable")]
    count = len(candidate_vectors)
    if not len(order) or not count:
        return ranks
    rows_per_block = max(1, _BLOCK_ELEMENTS // count)
    queries = trials.query[order]
    starts = np.searchsorted(queries, np.arange(0, trials.num_queries + rows_per_block, rows_per_block))
    candidates_t = np.ascontiguousarray(candidate_vectors.T, dtype=np.float32)
    for begin, end in zip(starts[:-1], starts[1:]):
        if begin == end:
            continue
        first = queries[begin]
        block = np.asarray(query_vectors[first : queries[end - 1] + 1], np.float32) @ candidates_t
        for at in range(begin, end, rows_per_block):
            chunk = order[at : min(end, at + rows_per_block)]
            ranks[chunk] = target_ranks(block[trials.query[chunk] - first], trials.target[chunk])
    return ranks


def target_ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """1-based rank of each row's target among that row's scores. Ties and NaN scores count
    against the target, and a target whose own score is NaN is a miss (inf): NaN compares false
    with everything, so counting only the scores at least as high ranked a NaN model's every
    target first."""
    own = scores[np.arange(len(targets)), targets]
    ranks = ((scores >= own[:, None]) | np.isnan(scores)).sum(axis=1).astype(np.float64)
    ranks[np.isnan(own)] = np.inf
    return ranks


def popularity_ranks(counts: np.ndarray, trials: Trials) -> np.ndarray:
    """Ranks under a recommender that shows every query the same list, most counted first (ties
    in candidate order, as a fixed list would have them)."""
    position = np.empty(len(counts), np.float64)
    position[np.argsort(-np.asarray(counts), kind="stable")] = np.arange(1, len(counts) + 1)
    ranks = np.full(len(trials.target), np.inf)
    known = trials.target != MISSING
    ranks[known] = position[trials.target[known]]
    return ranks


def summarize(ranks: np.ndarray, trials: Trials, ks: Sequence[int], num_candidates: int) -> dict[str, float]:
    """recall@k over pairs, precision@k and MRR over queries (see the module docstring)."""
    out: dict[str, float] = {}
    if not len(ranks):
        return out
    queries = max(trials.num_queries, 1)
    best = np.full(trials.num_queries, np.inf)
    np.minimum.at(best, trials.query, ranks)
    for k in ks:
        hit = ranks <= k
        out[f"recall@{k}"] = float(hit.mean())
        per_query = np.bincount(trials.query, weights=hit, minlength=trials.num_queries)
        out[f"precision@{k}"] = float(per_query.sum() / queries / max(min(k, num_candidates), 1))
    out["mrr"] = float((1.0 / best).sum() / queries)
    return out


def retrieval_metrics(query_vectors: np.ndarray, candidate_vectors: np.ndarray,
                      relevant: Sequence[Collection[int]], ks: Sequence[int] = (1, 10)) -> dict[str, float]:
    """recall@k, precision@k and MRR of queries against the full candidate set, exactly."""
    trials = Trials.from_relevant(relevant)
    ranks = model_ranks(query_vectors, candidate_vectors, trials)
    return summarize(ranks, trials, ks, len(candidate_vectors))
