"""The EASE baseline of `jointspace evaluate` (Steck, "Embarrassingly Shallow Autoencoders for
Sparse Data", 2019): a closed-form item-item model, the strongest simple bar a recommender team
would set.

From a 0/1 matrix X of sets of items (each training user's films, or each history with its next
film), B minimises ‖X − XB‖² + λ‖B‖² with a zero diagonal, so an item never recommends itself:
with P = (XᵀX + λI)⁻¹, B = I − P · diag(1 / diag(P)). A query's scores are its items' row of X
times B. λ is chosen on a validation split of the training sets (the held-out sets' items split
into query and targets, the query's own items excluded as a deployed recommender would), then B
is refit on all of them.

The cost is a dense inverse of an items × items matrix per λ, so the baseline runs only on
catalogs of at most MAX_ITEMS candidates; larger ones are skipped with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from jointspace.core.retrieval_metrics import ScoreRows, Trials, score_ranks, summarize

MAX_ITEMS = 20_000
LAMBDAS = (10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0)
VALIDATION_SETS = 0.1  # share of the training sets held out to choose λ
VALIDATION_TARGETS = 0.2  # share of a held-out set's items that are its targets
SELECTION_KS = (10, 100)  # λ maximises the mean recall at these cut-offs


@dataclass(frozen=True)
class Ease:
    weights: np.ndarray  # B, items × items
    regularization: float
    validation: dict[float, float]  # λ → its validation score

    def scores(self, query_items: sp.csr_matrix) -> ScoreRows:
        """Scores of the query values (rows of `query_items`) over every item."""
        return lambda rows: np.asarray(query_items[rows] @ self.weights, np.float32)


def ease_weights(sets: sp.csr_matrix, regularization: float, gram: np.ndarray | None = None) -> np.ndarray:
    """B for a 0/1 matrix of item sets (rows) and λ; `gram`, XᵀX of `sets` if already formed."""
    if gram is None:
        gram = gram_matrix(sets)
    inverse = np.linalg.inv(gram + regularization * np.eye(len(gram)))
    weights = -inverse / np.diag(inverse)
    weights[np.diag_indices_from(weights)] = 0.0
    return weights.astype(np.float32)


def gram_matrix(sets: sp.csr_matrix) -> np.ndarray:
    """XᵀX, dense: how many sets hold both items."""
    return (sets.T @ sets).toarray().astype(np.float64)


def _split_sets(sets: sp.csr_matrix, rng: np.random.Generator) -> tuple[sp.csr_matrix, sp.csr_matrix, sp.csr_matrix]:
    """Fitting sets, and for the held-out sets their query items and their target items."""
    eligible = np.flatnonzero(np.diff(sets.indptr) >= 2)
    held = rng.permutation(eligible)[: max(1, int(len(eligible) * VALIDATION_SETS))]
    keep = np.ones(sets.shape[0], bool)
    keep[held] = False
    held_sets = sets[np.sort(held)].tocoo()
    target = rng.random(held_sets.nnz) < VALIDATION_TARGETS
    shape = held_sets.shape

    def part(mask: np.ndarray) -> sp.csr_matrix:
        return sp.csr_matrix((held_sets.data[mask], (held_sets.row[mask], held_sets.col[mask])), shape=shape)

    return sets[keep], part(~target), part(target)


def fit_ease(sets: sp.csr_matrix, lambdas: Sequence[float] = LAMBDAS, seed: int = 0) -> Ease:
    """EASE with λ chosen on held-out sets (module docstring); `sets` must have at least two rows
    of two items to choose, otherwise the middle λ is taken."""
    rng = np.random.default_rng(seed)
    validation: dict[float, float] = {}
    if (np.diff(sets.indptr) >= 2).sum() >= 2:
        fitting, queries, targets = _split_sets(sets, rng)
        rows, columns = targets.nonzero()
        trials = Trials(rows.astype(np.int64), columns.astype(np.int64), queries.shape[0])
        gram = gram_matrix(fitting)
        for regularization in lambdas:
            model = Ease(ease_weights(fitting, regularization, gram), regularization, {})
            ranks = score_ranks(model.scores(queries), trials, sets.shape[1], {"removed": queries})["removed"]
            figures = summarize(ranks, trials, SELECTION_KS, sets.shape[1])
            validation[regularization] = float(np.mean([figures[f"recall@{k}"] for k in SELECTION_KS]))
        chosen = max(validation, key=lambda value: validation[value])
    else:
        chosen = lambdas[len(lambdas) // 2]
    return Ease(ease_weights(sets, chosen), chosen, validation)
