"""Early stopping on validation recall (best weights kept) and the lazy Adam used for id tables."""

from __future__ import annotations

import numpy as np
import pytest

from jointspace.data import synthetic
from jointspace.data.pairs import read_pairs
from jointspace.encoders.base import tf
from jointspace.encoders.training import trainer as training
from jointspace.encoders.training.config import TrainConfig
from jointspace.encoders.training.early_stopping import (
    LEARNING_RATE_CUT,
    EarlyStopping,
    Verdict,
    validation_score,
)
from jointspace.encoders.training.optimizers import LazyAdam
from jointspace.encoders.training.trainer import train


def _metrics(recall_at_10: float) -> dict[str, dict[str, float]]:
    return {"ids->id": {"recall@10": recall_at_10, "recall@1": 0.1, "recall@100": 0.8, "mrr": 0.5, "pairs": 30,
                        "candidates": 1000},
            "id->ids": {"recall@10": recall_at_10 / 2, "recall@1": 0.0, "recall@100": 0.5, "mrr": 0.5,
                        "pairs": 10, "candidates": 1000}}


def test_score_is_the_mean_recall_at_1_10_and_100_per_validated_pair():
    """A direction of few pairs weighs little: its recall moves in large steps."""
    assert validation_score(_metrics(0.6)) == pytest.approx(
        (30 * (0.1 + 0.6 + 0.8) / 3 + 10 * (0.0 + 0.3 + 0.5) / 3) / 40)
    assert validation_score({}) == 0.0


def test_a_list_over_a_tenth_of_the_candidates_does_not_count():
    """Ten digit words: recall@10 is 1 whatever the model, so only recall@1 may move the score;
    600 clips: recall@100 creeps, recall@1 and @10 count."""
    words = {"recall@1": 0.4, "recall@10": 1.0, "recall@100": 1.0, "pairs": 5, "candidates": 10}
    clips = {"recall@1": 0.2, "recall@10": 0.5, "recall@100": 0.9, "pairs": 5, "candidates": 600}
    assert validation_score({"audio->text": words}) == pytest.approx(0.4)
    assert validation_score({"text->audio": clips}) == pytest.approx(0.35)
    assert validation_score({"audio->text": words, "text->audio": clips}) == pytest.approx(0.375)


def test_stops_after_patience_validations_without_a_better_score_and_restores_the_best():
    model = tf.keras.Sequential([tf.keras.layers.Dense(3)])
    model.build((None, 2))
    stopping = EarlyStopping(model, patience=2)
    assert stopping.check(1, _metrics(0.2)) is Verdict.GO_ON
    model.set_weights([w + 1.0 for w in model.get_weights()])
    assert stopping.check(2, _metrics(0.4)) is Verdict.GO_ON  # new best: these weights are kept
    best = [w.copy() for w in model.get_weights()]
    model.set_weights([w + 1.0 for w in model.get_weights()])
    assert stopping.check(3, _metrics(0.4)) is Verdict.GO_ON  # equal is not better
    assert stopping.check(4, _metrics(0.3)) is Verdict.STOP
    stopping.restore()
    assert stopping.best_epoch == 2 and stopping.best_metrics == _metrics(0.4)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), best))


def test_a_plateau_first_cuts_the_learning_rate_from_the_best_weights():
    """With one cut, the first plateau puts the best weights back and lowers the learning rate;
    patience then counts afresh, and the next plateau stops."""
    model = tf.keras.Sequential([tf.keras.layers.Dense(3)])
    model.build((None, 2))
    optimizer = LazyAdam(0.01)
    stopping = EarlyStopping(model, patience=2, learning_rate_cuts=1)
    stopping.check(1, _metrics(0.4))
    best = [w.copy() for w in model.get_weights()]
    model.set_weights([w + 1.0 for w in model.get_weights()])
    assert stopping.check(2, _metrics(0.3)) is Verdict.GO_ON
    assert stopping.check(3, _metrics(0.3)) is Verdict.CUT
    stopping.cut(optimizer)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), best))
    assert float(optimizer.learning_rate) == pytest.approx(0.01 * LEARNING_RATE_CUT)
    assert stopping.check(4, _metrics(0.5)) is Verdict.GO_ON  # better at the lower rate: a new best
    assert stopping.check(5, _metrics(0.5)) is Verdict.GO_ON
    assert stopping.check(6, _metrics(0.5)) is Verdict.STOP and stopping.best_epoch == 4


@pytest.mark.parametrize("cuts", [0, 1])
def test_training_stops_when_validation_recall_does_not_improve(tmp_path, monkeypatch, cuts):
    """With a learning rate of 0 the first validation is never beaten: patience 2 ends the run
    after three of its twenty epochs (validating after every epoch), or two more with one cut of
    the learning rate, and the figures reported are the best validation's."""
    monkeypatch.setattr(training, "VALIDATION_STEPS", 1)
    data = synthetic.generate(synthetic.SyntheticConfig(n_films=60, n_users=80, n_tastes=3, seed=1))
    synthetic.write_pairs(data, tmp_path / "pairs.jsonl", title_pairs=False)
    config = TrainConfig(dim=8, epochs=20, batch_size=32, learning_rate=0.0, patience=2, learning_rate_cuts=cuts)
    trained = train(read_pairs([tmp_path / "pairs.jsonl"]), config)
    assert len(trained.history) == 3 + 2 * cuts
    assert set(trained.metrics) == {"ids->id"}  # a history is a query, never a candidate


def test_lazy_adam_matches_adam_on_touched_rows_and_leaves_the_others_alone():
    table = np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32)
    lazy_var, dense_var = tf.Variable(table), tf.Variable(table)
    lazy, dense = LazyAdam(0.1), tf.keras.optimizers.Adam(0.1)
    lazy.build([lazy_var])
    dense.build([dense_var])

    def step(optimizer, variable, rows):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.gather(variable, rows) ** 2)
        optimizer.apply_gradients([(tape.gradient(loss, variable), variable)])

    step(lazy, lazy_var, [1, 1, 3])  # a repeated row: its two slices add up
    step(dense, dense_var, [1, 1, 3])
    assert np.allclose(lazy_var.numpy(), dense_var.numpy(), atol=1e-6)  # same first step
    after_first = lazy_var.numpy().copy()
    step(lazy, lazy_var, [0])
    step(dense, dense_var, [0])
    assert np.array_equal(lazy_var.numpy()[1:], after_first[1:])  # untouched rows stay put
    assert not np.allclose(dense_var.numpy()[1], after_first[1])  # Keras Adam keeps moving them
    assert not np.allclose(lazy_var.numpy()[0], table[0])


def test_auto_epochs_leave_the_end_to_early_stopping_when_it_is_on():
    """The step rule alone gives a large catalog few passes; with early stopping the run may go
    on while validation improves."""
    assert training.auto_epochs(1_000) == training.MIN_AUTO_EPOCHS
    assert training.auto_epochs(1_000, early_stopping=True) == training.STOPPED_AUTO_EPOCHS
    assert training.auto_epochs(5, early_stopping=True) == training.AUTO_STEPS // 5  # the step rule wins
    assert training.auto_epochs(1, early_stopping=True) == training.MAX_AUTO_EPOCHS
