"""Early stopping on validation recall, keeping the best weights.

The loss can keep falling after held-out recall has stopped improving (the towers memorise the
training pairs), so it is no guide to when to stop; recall on held-out rows is what a user gets.
The score is the mean of recall@1, @10 and @100 over every validated pair, whatever its direction
(a model that serves text → audio and audio → text must be good at both). recall@10 alone
saturates on small candidate sets: with ten digit words, audio → text recall@10 was 1.0 by the
second validation (epoch 50 of 150), so patience ended training at epoch 125 and kept epoch 50's
weights, blind to what recall@1 did meanwhile. recall@100 is what a recommender's longer lists
show. Each direction weighs by its validated pairs: a mean over directions let a direction of
twenty titles, whose recall moves in steps of 0.05, outvote a thousand users' and stop a run
at its first epoch. Weights are copied to host memory at each new best and put back
at the end, so a run that stops late, or runs out its epochs after a peak, still returns the
peak.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SCORE_METRICS = ("recall@1", "recall@10", "recall@100")


def validation_score(metrics: dict[str, dict[str, float]]) -> float:
    """Mean of SCORE_METRICS per validated pair over every direction (0 when none was validated)."""
    scored = [m for m in metrics.values() if all(name in m for name in SCORE_METRICS)]
    weights = [m.get("pairs", 1.0) for m in scored]
    if not scored or not sum(weights):
        return 0.0
    return float(np.average([np.mean([m[name] for name in SCORE_METRICS]) for m in scored], weights=weights))


class EarlyStopping:
    """Call `check` after each validation; stop when it returns True, then `restore`.
    `patience` is the number of validations in a row without a new best that ends training."""

    def __init__(self, model: Any, patience: int) -> None:
        self.model = model
        self.patience = patience
        self.best_score = -np.inf
        self.best_metrics: dict[str, dict[str, float]] = {}
        self.best_epoch = 0
        self.stale = 0
        self._weights: list[np.ndarray] | None = None

    def check(self, epoch: int, metrics: dict[str, dict[str, float]]) -> bool:
        score = validation_score(metrics)
        if score > self.best_score:
            self.best_score, self.best_metrics, self.best_epoch = score, metrics, epoch
            self._weights = self.model.get_weights()
            self.stale = 0
            return False
        self.stale += 1
        return self.stale >= self.patience

    def restore(self) -> None:
        """Put the best weights back (a no-op before the first validation)."""
        if self._weights is not None:
            self.model.set_weights(self._weights)
