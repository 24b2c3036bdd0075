"""Raw vectors at serving time: one row (every vector query) goes a shorter way than a batch,
with the same unit vectors and the same errors."""

from __future__ import annotations

import numpy as np
import pytest

from jointspace.core.errors import InvalidInput
from jointspace.encoders.inference import normalize_vectors

DIM = 32


def test_one_row_is_normalised_as_in_a_batch():
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((300, DIM)) * 10.0 ** rng.integers(-30, 30, (300, 1))
    extremes = np.zeros((2, DIM))
    extremes[0, :2], extremes[1, :2] = [2e38, 3e38], [3e-40, 4e-40]  # norms over and under float32's range
    rows = np.vstack([rows, extremes]).astype(np.float32)
    batch = normalize_vectors(rows, DIM)
    alone = np.vstack([normalize_vectors(row[None], DIM) for row in rows])
    assert alone.dtype == np.float32 and alone.shape == rows.shape
    np.testing.assert_array_max_ulp(alone, batch, maxulp=1)
    np.testing.assert_allclose(np.linalg.norm(alone[-2:], axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize(("bad", "message"), [(np.nan, "must be finite"), (np.inf, "must be finite"),
                                              (-np.inf, "must be finite"), (None, "zero vector")])
def test_one_row_and_a_batch_refuse_alike(bad, message):
    row = np.zeros((1, DIM), np.float32)
    if bad is not None:
        row[0, :3] = [1.0, bad, 2.0]
    for vectors in (row, np.vstack([np.ones((1, DIM), np.float32), row])):
        with pytest.raises(InvalidInput, match=f"^vector: .*{message}"):
            normalize_vectors(vectors, DIM)


def test_a_row_of_the_wrong_length_is_refused():
    with pytest.raises(InvalidInput, match=f"expected {DIM} values, got {DIM - 1}"):
        normalize_vectors(np.ones((1, DIM - 1), np.float32), DIM)
