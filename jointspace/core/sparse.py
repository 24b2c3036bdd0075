"""Sparse 0/1 and count matrices of (query, candidate) pairs, shared by training validation and
the evaluation's baselines and exclusions."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


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
