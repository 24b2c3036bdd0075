"""The mean of a run's weights over its later epochs, as a candidate for the model it returns.

Late in training at a constant learning rate, each epoch's weights are one point of the noise the
steps make around a minimum; their mean lies nearer its middle than any of them (Polyak averaging;
stochastic weight averaging, Izmailov et al., 2018). It costs a copy of the weights per epoch and
one more validation, no steps, where an ensemble of two seeds, which bought a similar gain,
costs twice the training (docs/benchmarks.md, "Recommendation quality"). The mean is kept unless
the held-out rows score it clearly below the run's best single epoch (`score_noise`,
`MAX_SHORTFALL`), so a run it would harm (a tower whose batch normalisation statistics do not fit
the mean of its weights, say) returns what it did before.

The weights after every epoch from `start` on are summed as they are: a learning-rate cut that
puts the best weights back (early_stopping.py) does not restart the sum, since validation decides
at the end. Only floating-point weights are averaged; any other (a counter) keeps its latest value.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from jointspace.encoders.training.early_stopping import validation_score

Metrics = dict[str, dict[str, float]]


# The mean may score at most this share below the best epoch, however few the validated pairs: a
# short run's mean includes weights from before it converged, and on a few hundred pairs the noise
# alone lets such a mean through (docs/benchmarks.md, "Recommendation quality").
MAX_SHORTFALL = 0.02


def average_start(epochs: int, average_from: float) -> int:
    """The first epoch whose weights are averaged, `average_from` of the way through `epochs`
    (1.0: the last alone, which is no average)."""
    return min(epochs, max(1, round(epochs * average_from)))


class WeightAverage:
    """`add` after every epoch; `keep_unless_worse` at the end."""

    def __init__(self, model: Any, start: int) -> None:
        self.model = model
        self.start = start
        self.last = 0
        self.count = 0
        self._sum: list[np.ndarray] = []
        self._dtypes: list[np.dtype] = []
        self.scored: Metrics = {}  # the mean's validation metrics, once keep_unless_worse has run

    def add(self, epoch: int) -> None:
        if epoch < self.start:
            return
        weights = self.model.get_weights()
        if not self._sum:
            self._dtypes = [w.dtype for w in weights]
            self._sum = [w.astype(np.float64) if _averaged(w) else w for w in weights]
        else:
            self._sum = [total + w if _averaged(w) else w for total, w in zip(self._sum, weights)]
        self.count += 1
        self.last = epoch

    def mean(self) -> list[np.ndarray]:
        return [(total / self.count).astype(dtype) if _averaged(total) else total
                for total, dtype in zip(self._sum, self._dtypes)]

    def keep_unless_worse(self, best: Metrics, validate: Callable[[], Metrics]) -> Metrics | None:
        """Put the mean in the model and return its validation metrics unless they score below
        the best epoch's (`best`) by more than `allowed_shortfall`; otherwise put the model's
        weights back and return None."""
        current = self.model.get_weights()
        self.model.set_weights(self.mean())
        metrics = self.scored = validate()
        if validation_score(metrics) >= validation_score(best) - allowed_shortfall(best):
            return metrics
        self.model.set_weights(current)
        return None

    def describe(self) -> str:
        return f"mean of epochs {self.start}-{self.last}"


def allowed_shortfall(best: Metrics) -> float:
    """How far below the best epoch's validation score the mean may score and still be kept:
    the score's noise (`score_noise`), at most MAX_SHORTFALL of the score."""
    return min(score_noise(best), MAX_SHORTFALL * validation_score(best))


def score_noise(metrics: Metrics) -> float:
    """About one standard error of `validation_score` on these validated pairs, as if it were
    one recall over all of them: √(s(1 − s)/n). Two sets of weights scored on the same rows can
    differ by that much by the rows' luck alone: on MovieLens-like ratings the validation rows put
    the mean a little below the best epoch where the test split, ten times larger, put it above at
    top 10 and top 100 (docs/benchmarks.md, "Recommendation quality"). Within the noise the mean
    is kept, as the estimate that averaging makes steadier."""
    pairs = sum(m.get("pairs", 0) for m in metrics.values())
    if not pairs:
        return 0.0
    score = validation_score(metrics)
    return math.sqrt(score * (1 - score) / pairs)


def _averaged(weight: np.ndarray) -> bool:
    return bool(np.issubdtype(weight.dtype, np.floating))
