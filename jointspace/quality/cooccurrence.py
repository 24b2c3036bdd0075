"""The item co-occurrence baseline of `jointspace evaluate`: a plain recommender that a learnt
space must beat on user → film and history → film, where popularity alone is weak and
co-occurrence is the classic strong baseline (its figures against popularity on MovieLens-100K
and on MovieLens-like data: docs/benchmarks.md, "Recommendation quality").

A query is represented by its items: a history's own ids, or the films a user is paired with in
the training rows. Candidate f scores sum over the query's items g of C[g, f], the number of
training queries whose items hold g and whose target is f (for users: how many users have both
films). Whether the query's own items may come back is the evaluation's rule, the same for every
scorer. Everything is sparse, so the cost follows the number of co-occurrences, not candidates
squared.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from jointspace.core.retrieval_metrics import ScoreRows

MAX_PRODUCTS = 500_000_000  # (query item, target) products above which the baseline is skipped


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


def cooccurrence_scores(query_items: sp.csr_matrix, counts: sp.csr_matrix) -> ScoreRows:
    """Each query's scores: the sum of `counts` rows over its items (`query_items[query]`)."""
    return lambda rows: (query_items[rows] @ counts).toarray()
