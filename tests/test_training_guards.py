"""The library under `jointspace train`: a model is only written whole and only over a model, a
run that diverges or takes no step fails, a degenerate space never scores well, and one long
text does not make every text as wide as itself."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest

from jointspace.core.errors import InvalidInput
from jointspace.core.retrieval_metrics import Trials, model_ranks, retrieval_metrics, summarize
from jointspace.data.pairs import PairRows
from jointspace.encoders.training import export
from jointspace.encoders.training.config import TrainConfig
from jointspace.encoders.training.trainer import train

WORDS = ("alpha", "beta", "gamma", "delta")
TINY = TrainConfig(dim=8, epochs=1, batch_size=8, patience=None)


def film_rows(count: int = 40, weight: float = 1.0) -> PairRows:
    return PairRows({"id": [f"m:{i}" for i in range(count)],
                     "text": [f"{WORDS[i % 4]} film {i}" for i in range(count)]}, [weight] * count)


@pytest.fixture(scope="module")
def trained():
    return train(film_rows(), TINY)


def test_export_refuses_a_folder_that_is_not_a_model(tmp_path, trained):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InvalidInput, match="not a jointspace model"):
        export.export_model(trained, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_a_failed_export_leaves_the_old_model_as_it_was(tmp_path, trained, monkeypatch):
    model = tmp_path / "model"
    old = export.export_model(trained, model)

    def fail(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export, "_write_model", fail)
    with pytest.raises(OSError):
        export.export_model(trained, model)
    assert json.loads((model / "manifest.json").read_text())["model_version"] == old.model_version
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


@pytest.mark.parametrize("config", [
    TrainConfig(dim=8, epochs=1, batch_size=8, temperature=0.0),
    TrainConfig(dim=8, epochs=1, batch_size=8, learning_rate=float("nan")),
])
def test_a_non_finite_loss_fails_the_run(config):
    with pytest.raises(InvalidInput, match="loss"):
        train(film_rows(), config)


def test_non_finite_weights_fail_the_run():
    with pytest.raises(InvalidInput, match="loss"):
        train(film_rows(weight=float("inf")), TINY)


@pytest.mark.parametrize("rows, config", [
    (film_rows(1), TINY),
    (film_rows(), TrainConfig(dim=8, epochs=1, batch_size=1)),
    (film_rows(), TrainConfig(dim=8, epochs=1, batch_size=8, validation_split=1.0)),
])
def test_training_that_takes_no_step_fails(rows, config):
    with pytest.raises(InvalidInput, match="no training step"):
        train(rows, config)


def test_nan_vectors_score_nothing():
    rng = np.random.default_rng(0)
    good = rng.normal(size=(5, 4)).astype(np.float32)
    nan = np.full((5, 4), np.nan, np.float32)
    relevant = [[i] for i in range(5)]
    for queries, candidates in ((nan, nan), (nan, good), (good, nan)):
        scores = retrieval_metrics(queries, candidates, relevant)
        assert scores["recall@1"] == 0.0 and scores["mrr"] == 0.0, scores
        assert all(np.isfinite(v) for v in scores.values())


def test_ties_and_nan_candidates_rank_ahead_of_the_target():
    queries = np.eye(2, dtype=np.float32)
    candidates = np.array([[1, 0], [1, 0], [np.nan, 0]], np.float32)
    trials = Trials.from_relevant([[0], [2]])
    assert model_ranks(queries, candidates, trials).tolist() == [3.0, np.inf]
    assert summarize(np.array([3.0, np.inf]), trials, (1,), 3)["mrr"] == pytest.approx(1 / 6)


def test_one_long_text_does_not_widen_the_others():
    from jointspace.encoders.impl.text import TextEncoder
    from jointspace.encoders.training.trainer import _view_data

    texts = ["a few words"] * 299 + ["word " * 40_000]
    encoder = TextEncoder({})
    encoder.adapt(texts)
    tracemalloc.start()
    try:
        data = _view_data(encoder, "text", texts)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 * len(texts[-1]), peak  # as wide as the longest: 300 × 4 bytes × its length
    assert data.codes[0] == data.codes[298] != data.codes[299]
