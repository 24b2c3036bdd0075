"""The mean of a run's later weights, kept only where validation scores it above the best epoch."""

from __future__ import annotations

import numpy as np
import pytest

from jointspace.data import synthetic
from jointspace.data.pairs import read_pairs
from jointspace.encoders.base import tf
from jointspace.encoders.training.config import TrainConfig
from jointspace.encoders.training.early_stopping import validation_score
from jointspace.encoders.training.trainer import train
from jointspace.encoders.training.weight_average import WeightAverage, average_start, score_noise


def _model() -> tf.keras.Model:
    model = tf.keras.Sequential([tf.keras.layers.Dense(3)])
    model.build((None, 2))
    return model


def _metrics(score: float, pairs: int = 10) -> dict[str, dict[str, float]]:
    return {"id:user->id": {"recall@1": score, "recall@10": score, "recall@100": score, "pairs": pairs,
                            "candidates": 5000}}


@pytest.mark.parametrize(("epochs", "share", "start"), [(12, 0.5, 6), (12, 1.0, 12), (2, 0.5, 1), (1, 0.5, 1),
                                                         (12, 0.01, 1)])
def test_the_average_starts_the_given_share_of_the_way_through_the_epochs(epochs, share, start):
    assert average_start(epochs, share) == start


def test_the_mean_is_of_the_weights_after_each_epoch_from_the_start_on():
    model = _model()
    average = WeightAverage(model, start=2)
    seen = []
    for epoch in range(1, 5):
        model.set_weights([np.full_like(w, float(epoch)) for w in model.get_weights()])
        seen.append(model.get_weights())
        average.add(epoch)
    assert (average.count, average.describe()) == (3, "mean of epochs 2-4")
    for mean, *epochs in zip(average.mean(), *seen[1:]):
        assert mean.dtype == np.float32
        assert np.allclose(mean, np.mean(epochs, axis=0))  # 3.0: epoch 1's weights are left out


@pytest.mark.parametrize(("best_score", "pairs", "kept"), [
    (0.1, 100_000, True),  # the mean scores 0.3: better
    (0.305, 10, True),  # worse by 0.005: within the noise of ten pairs and within MAX_SHORTFALL
    (0.31, 10, False),  # worse by 0.01: within the noise, beyond MAX_SHORTFALL (0.0062)
    (0.302, 100_000, False),  # worse by 0.002: beyond the noise of 100,000 pairs (0.00145)
    (0.9, 10, False),
])
def test_the_mean_is_kept_unless_it_validates_clearly_below_the_best_epoch(best_score, pairs, kept):
    """The validation here reads the model's weights as they are when it runs: the mean must be
    in the model while it is scored, and gone again when it loses."""
    model = _model()
    average = WeightAverage(model, start=1)
    for epoch in (1, 2):
        model.set_weights([np.full_like(w, 0.2 * epoch) for w in model.get_weights()])
        average.add(epoch)
    before = model.get_weights()
    best = _metrics(best_score, pairs)
    found = average.keep_unless_worse(best, lambda: _metrics(float(np.mean(model.get_weights()[0])), pairs))
    if kept:  # the mean's weights are all 0.3, which scores 0.3
        assert found is not None and validation_score(found) == pytest.approx(0.3)
        assert np.allclose(model.get_weights()[0], 0.3)
    else:
        assert found is None
        assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), before))


def test_the_noise_is_one_standard_error_of_the_score_over_every_validated_pair():
    metrics = {**_metrics(0.2, 300), "id->id:user": {**_metrics(0.2, 100)["id:user->id"]}}
    assert score_noise(metrics) == pytest.approx((0.2 * 0.8 / 400) ** 0.5)
    assert score_noise({}) == 0.0


def test_a_run_reports_the_figures_of_the_weights_it_returns(tmp_path):
    """The same seed trained twice, without and with the average: the runs are the same up to
    their last epoch, so the second reports either the first's figures (the best epoch kept) or
    the mean's, which are never clearly worse."""
    data = synthetic.generate(synthetic.SyntheticConfig(n_films=60, n_users=120, n_tastes=3, seed=2))
    synthetic.write_pairs(data, tmp_path / "pairs.jsonl", title_pairs=False)
    rows = read_pairs([tmp_path / "pairs.jsonl"])
    config = TrainConfig(dim=8, epochs=6, batch_size=32, catalog_batch_size=32, patience=6, validation_split=0.2)
    alone = train(rows, TrainConfig(**{**config.__dict__, "average_from": 1.0}))
    averaged = train(rows, TrainConfig(**{**config.__dict__, "average_from": 0.5}))
    assert alone.weights.startswith("epoch ")
    if averaged.weights == "mean of epochs 3-6":
        assert validation_score(averaged.metrics) >= validation_score(alone.metrics) - score_noise(alone.metrics)
        assert averaged.metrics != alone.metrics
    else:
        assert (averaged.weights, averaged.metrics) == (alone.weights, alone.metrics)
