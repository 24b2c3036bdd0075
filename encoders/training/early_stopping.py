"""Early stopping on validation recall, keeping the best weights.

The loss can keep falling after held-out recall has stopped improving (the towers memorise the
training pairs), so it is no guide to when to stop; recall on held-out rows is what a user gets.
The score is the mean of recall@1, @10 and @100 over every validated pair, whatever its direction
(a model that serves text → audio and audio → text must be good at both). recall@100 is what a
recommender's longer lists show. A list that covers more than a tenth of a direction's candidates
says little, so recall@k counts only where there are at least 10·k candidates: with ten digit
words, audio → text recall@10 was 1.0 by the second validation (epoch 50 of 150), so patience ended
training at epoch 125 and kept epoch 50's weights, blind to what recall@1 did meanwhile; and
text → audio recall@100 over ~600 clips crept up by a hair per validation for a hundred epochs,
so patience never ran out. Each direction weighs by its validated pairs: a mean over directions
let a direction of twenty titles, whose recall moves in steps of 0.05, outvote a thousand users'
and stop a run at its first epoch. Weights are copied to host memory at each new best and put back
at the end, so a run that stops late, or runs out its epochs after a peak, still returns the
peak.

Before stopping, a run may first go back to its best weights and go on at a lower learning rate
(`learning_rate_cuts`, LEARNING_RATE_CUT each): a plateau at a constant rate is often the rate
being too coarse for the last steps, not the model being done. On MovieLens-like ratings one cut
raised every held-out figure on two seeds (docs/benchmarks.md, "Recommendation quality"); a
second cut found no better epoch.
"""

from __future__ import annotations

import enum
from typing import Any

import numpy as np

SCORE_KS = (1, 10, 100)
LEARNING_RATE_CUT = 0.3  # the learning rate's factor at each cut
LIST_SHARE = 10  # recall@k counts where there are at least LIST_SHARE·k candidates (k = 1 always)


def direction_score(metrics: dict[str, float]) -> float:
    """Mean recall@k of one direction over the SCORE_KS its candidate count makes informative."""
    ks = [k for k in SCORE_KS if k == 1 or metrics["candidates"] >= LIST_SHARE * k]
    return float(np.mean([metrics[f"recall@{k}"] for k in ks]))


def validation_score(metrics: dict[str, dict[str, float]]) -> float:
    """direction_score per validated pair over every direction (0 when none was validated)."""
    scored = [m for m in metrics.values() if m.get("pairs")]
    if not scored:
        return 0.0
    return float(np.average([direction_score(m) for m in scored], weights=[m["pairs"] for m in scored]))


class Verdict(enum.Enum):
    GO_ON = "go on"
    CUT = "cut"  # back to the best weights, then on at a learning rate LEARNING_RATE_CUT times lower
    STOP = "stop"


class EarlyStopping:
    """Call `check` after each validation and follow its verdict; `restore` at the end.
    `patience` is the number of validations in a row without a new best that ends training, or
    that first spends one of `learning_rate_cuts` (`cut`)."""

    def __init__(self, model: Any, patience: int, learning_rate_cuts: int = 0) -> None:
        self.model = model
        self.patience = patience
        self.cuts_left = learning_rate_cuts
        self.best_score = -np.inf
        self.best_metrics: dict[str, dict[str, float]] = {}
        self.best_epoch = 0
        self.stale = 0
        self._weights: list[np.ndarray] | None = None

    def check(self, epoch: int, metrics: dict[str, dict[str, float]]) -> Verdict:
        score = validation_score(metrics)
        if score > self.best_score:
            self.best_score, self.best_metrics, self.best_epoch = score, metrics, epoch
            self._weights = self.model.get_weights()
            self.stale = 0
            return Verdict.GO_ON
        self.stale += 1
        if self.stale < self.patience:
            return Verdict.GO_ON
        if self.cuts_left:
            self.cuts_left -= 1
            self.stale = 0
            return Verdict.CUT
        return Verdict.STOP

    def cut(self, optimizer: Any) -> None:
        """Back to the best weights, the learning rate LEARNING_RATE_CUT times what it was (the
        optimizer's moments stay: they are estimates of the gradient, not of the step)."""
        self.restore()
        optimizer.learning_rate.assign(optimizer.learning_rate * LEARNING_RATE_CUT)

    def restore(self) -> None:
        """Put the best weights back (a no-op before the first validation)."""
        if self._weights is not None:
            self.model.set_weights(self._weights)
