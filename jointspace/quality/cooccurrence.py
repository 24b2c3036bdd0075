"""The item co-occurrence baseline of `jointspace evaluate`: a plain recommender that a learnt
space must beat on user → film and history → film, where popularity alone is weak and
co-occurrence is the classic strong baseline (its figures against popularity on MovieLens-100K
and on MovieLens-like data: docs/benchmarks.md, "Recommendation quality").

A query is represented by its items: a history's own ids, or the films a user is paired with in
the training rows. Candidate f scores sum over the query's items g of C[g, f], the number of
training queries whose items hold g and whose target is f (for users: how many users have both
films). The query's own items are ranked last, as any recommender shows unseen films: counting
them would let the films a user has already rated fill the list. Everything is sparse, so the
cost follows the number of co-occurrences, not candidates squared.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from jointspace.core.retrieval_metrics import MISSING, Trials, target_ranks

_BLOCK_ELEMENTS = 1 << 23  # dense scores held at once (64 MiB of float64)
MAX_PRODUCTS = 500_000_000  # (query item, target) products above which the baseline is skipped


def item_matrix(items: list[np.ndarray], num_candidates: int) -> sp.csr_matrix:
    """Rows of 0/1 item indicators: row i has a 1 at each of items[i] (repeats count once)."""
    lengths = np.fromiter((len(i) for i in items), np.int64, len(items))
    columns = np.concatenate(items).astype(np.int64) if len(items) else np.zeros(0, np.int64)
    rows = np.repeat(np.arange(len(items)), lengths)
    return pair_matrix(rows, columns, (len(items), num_candidates), binary=True)


def pair_matrix(rows: np.ndarray, columns: np.ndarray, shape: tuple[int, int],
                binary: bool = False) -> sp.csr_matrix:
    """Counts of (row, column) pairs as a sparse matrix, or 0/1 with `binary`."""
    matrix = sp.csr_matrix((np.ones(len(rows)), (rows, columns)), shape=shape)
    matrix.sum_duplicates()
    if binary:
        matrix.data[:] = 1.0
    return matrix


def cooccurrence_counts(items: sp.csr_matrix, targets: sp.csr_matrix) -> sp.csr_matrix | None:
    """C = itemsᵀ · targets with a zero diagonal: `items[q]` are query q's items, `targets[q, f]`
    how often training rows pair query q with f. None when the product is too large to form."""
    products = int(np.dot(np.diff(items.indptr), np.diff(targets.indptr)))
    if products > MAX_PRODUCTS:
        return None
    counts = (items.T @ targets).tocsr()
    counts.setdiag(0)
    counts.eliminate_zeros()
    return counts


def cooccurrence_ranks(query_items: sp.csr_matrix, counts: sp.csr_matrix, trials: Trials) -> np.ndarray:
    """1-based rank of each trial's target under the co-occurrence scores of its query's items
    (`query_items[trials.query]`); the query's own items last, ties against the target."""
    ranks = np.full(len(trials.query), np.inf)
    known = np.flatnonzero(trials.target != MISSING)
    order = known[np.argsort(trials.query[known], kind="stable")]
    per_block = max(1, _BLOCK_ELEMENTS // max(counts.shape[1], 1))
    starts = np.searchsorted(trials.query[order], np.arange(0, trials.num_queries + per_block, per_block))
    for first, begin, end in zip(range(0, trials.num_queries, per_block), starts[:-1], starts[1:]):
        if begin == end:
            continue
        block_items = query_items[first : first + per_block]
        scores = (block_items @ counts).toarray()
        scores[block_items.nonzero()] = -1.0
        for at in range(begin, end, per_block):
            chosen = order[at : min(end, at + per_block)]
            ranks[chosen] = target_ranks(scores[trials.query[chosen] - first], trials.target[chosen])
    return ranks
