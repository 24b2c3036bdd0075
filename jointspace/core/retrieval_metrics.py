"""Retrieval metrics over a full candidate set, from the rank of every relevant candidate.

Shared by validation during training and by `jointspace evaluate`, so a figure means the same
thing wherever it is printed. Everything is computed from ranks rather than from a top-k list:
one brute-force pass gives recall@k for every k and MRR at once, and a baseline that is not a
vector model (popularity) can be scored by the same summary.

The unit of recall@k is a (query, relevant candidate) pair: the share of those pairs whose
candidate ranks in the query's top k. With one relevant candidate per query this is the hit rate,
and it is exactly TFRS's `FactorizedTopK` top-k accuracy (each held-out rating counts once); a
query with several relevant candidates contributes each of them. The per-query figures weigh every
query alike: precision@k; query_recall@k, the share of a query's relevant candidates in its top k
out of at most k (so that a query with 30 held-out films can reach 1 at k = 10); ndcg@k with
binary relevance, normalised by the best possible order of the same number of relevant
candidates; and MRR (the best-ranked relevant candidate). Ties count against the model (a
candidate scoring the same as the relevant one ranks ahead of it), so a collapsed space that maps
everything to one point scores nothing, and so does a space of NaN vectors.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

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


ScoreRows = Callable[[np.ndarray], np.ndarray]  # query indices -> their [queries, candidates] scores


def score_ranks(scores_of: ScoreRows, trials: Trials, num_candidates: int,
                exclusions: Mapping[str, sp.csr_matrix | None]) -> dict[str, np.ndarray]:
    """For each named exclusion (a [queries, candidates] 0/1 matrix, or None), the 1-based rank of
    every trial's target among all candidates once the query's excluded candidates are removed.

    One function ranks every scorer (the model, popularity, co-occurrence, EASE) so that they are
    compared under the same rule; the scores of a block of queries are computed once and ranked
    under every exclusion. A candidate scored -inf is never shown: excluded, or unknown to the
    scorer. A target that is never shown is a miss (inf), as is one scored NaN."""
    ranks = {name: np.full(len(trials.query), np.inf) for name in exclusions}
    order = np.flatnonzero(trials.target != MISSING)
    order = order[np.argsort(trials.query[order], kind="stable")]
    if not len(order) or not num_candidates:
        return ranks
    rows_per_block = max(1, _BLOCK_ELEMENTS // num_candidates)
    queries = trials.query[order]
    starts = np.searchsorted(queries, np.arange(0, trials.num_queries + rows_per_block, rows_per_block))
    for begin, end in zip(starts[:-1], starts[1:]):
        if begin == end:
            continue
        first, last = queries[begin], queries[end - 1] + 1
        block = np.asarray(scores_of(np.arange(first, last)), np.float32)
        for name, excluded in exclusions.items():
            scores = block
            if excluded is not None and excluded[first:last].nnz:
                scores = block.copy()
                scores[excluded[first:last].nonzero()] = -np.inf
            for at in range(begin, end, rows_per_block):
                chunk = order[at : min(end, at + rows_per_block)]
                ranks[name][chunk] = target_ranks(scores[trials.query[chunk] - first], trials.target[chunk])
    return ranks


def inner_products(query_vectors: np.ndarray, candidate_vectors: np.ndarray, query_ok: np.ndarray | None = None,
                   candidate_ok: np.ndarray | None = None) -> ScoreRows:
    """A vector model as a scorer: inner products, -inf (never shown) for a query or a candidate
    that has no vector."""
    candidates_t = np.ascontiguousarray(candidate_vectors.T, dtype=np.float32)

    def scores_of(rows: np.ndarray) -> np.ndarray:
        scores = np.asarray(query_vectors[rows], np.float32) @ candidates_t
        if candidate_ok is not None:
            scores[:, ~candidate_ok] = -np.inf
        if query_ok is not None:
            scores[~query_ok[rows]] = -np.inf
        return scores

    return scores_of


def model_ranks(query_vectors: np.ndarray, candidate_vectors: np.ndarray, trials: Trials,
                query_ok: np.ndarray | None = None, excluded: sp.csr_matrix | None = None) -> np.ndarray:
    """1-based rank of each trial's target among all candidates by inner product (inf where the
    query or the target has no vector), leaving out each query's `excluded` candidates. Exact,
    in blocks of queries to bound memory."""
    return score_ranks(inner_products(query_vectors, candidate_vectors, query_ok), trials, len(candidate_vectors),
                       {"all": excluded})["all"]


def target_ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """1-based rank of each row's target among that row's scores. Ties and NaN scores count
    against the target, and a target whose own score is NaN or -inf is a miss (inf): NaN compares
    false with everything, so counting only the scores at least as high ranked a NaN model's every
    target first."""
    own = scores[np.arange(len(targets)), targets]
    ranks = ((scores >= own[:, None]) | np.isnan(scores)).sum(axis=1).astype(np.float64)
    ranks[np.isnan(own) | (own == -np.inf)] = np.inf
    return ranks


def list_scores(counts: np.ndarray) -> np.ndarray:
    """Scores of a fixed list, most counted first, ties in candidate order (as a fixed list would
    have them): every score distinct, so no tie counts against a target."""
    position = np.empty(len(counts), np.float32)
    position[np.argsort(-np.asarray(counts), kind="stable")] = np.arange(len(counts))
    return -position


def popularity_ranks(counts: np.ndarray, trials: Trials) -> np.ndarray:
    """Ranks under a recommender that shows every query the same list, most counted first."""
    scores = list_scores(counts)
    return score_ranks(lambda rows: np.broadcast_to(scores, (len(rows), len(scores))), trials,
                       len(scores), {"all": None})["all"]


def summarize(ranks: np.ndarray, trials: Trials, ks: Sequence[int], num_candidates: int) -> dict[str, float]:
    """recall@k over pairs; precision@k, query_recall@k, ndcg@k and MRR over queries (see the
    module docstring)."""
    out: dict[str, float] = {}
    if not len(ranks):
        return out
    queries = max(trials.num_queries, 1)
    relevant = np.bincount(trials.query, minlength=trials.num_queries)
    best = np.full(trials.num_queries, np.inf)
    np.minimum.at(best, trials.query, ranks)
    gain = 1.0 / np.log2(np.minimum(ranks, np.iinfo(np.int32).max) + 1.0)
    for k in ks:
        hit = ranks <= k
        per_query = np.bincount(trials.query, weights=hit, minlength=trials.num_queries)
        wanted = np.maximum(np.minimum(relevant, k), 1)
        ideal = np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))[wanted - 1]
        dcg = np.bincount(trials.query, weights=np.where(hit, gain, 0.0), minlength=trials.num_queries)
        out[f"recall@{k}"] = float(hit.mean())
        out[f"precision@{k}"] = float(per_query.sum() / queries / max(min(k, num_candidates), 1))
        out[f"query_recall@{k}"] = float((per_query / wanted).sum() / queries)
        out[f"ndcg@{k}"] = float((dcg / ideal).sum() / queries)
    out["mrr"] = float((1.0 / best).sum() / queries)
    return out


def vector_metrics(query_vectors: np.ndarray, candidate_vectors: np.ndarray, trials: Trials,
                   excluded: sp.csr_matrix | None = None, ks: Sequence[int] = (1, 10)) -> dict[str, float]:
    """The summary of exact inner-product ranks, each query's `excluded` candidates left out."""
    ranks = model_ranks(query_vectors, candidate_vectors, trials, excluded=excluded)
    return summarize(ranks, trials, ks, len(candidate_vectors))


def retrieval_metrics(query_vectors: np.ndarray, candidate_vectors: np.ndarray,
                      relevant: Sequence[Collection[int]], ks: Sequence[int] = (1, 10)) -> dict[str, float]:
    """recall@k, precision@k and MRR of queries against the full candidate set, exactly."""
    return vector_metrics(query_vectors, candidate_vectors, Trials.from_relevant(relevant), ks=ks)
