"""Evaluation: the rank-based metrics against brute force, and `jointspace evaluate` end to end on
MovieLens-format files from the generator (import, train a tiny model, evaluate beside the
popularity baseline), plus the spoken-digit model of the shared fixture."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from jointspace.cli import main
from jointspace.core import retrieval_metrics as metrics
from jointspace.core.retrieval_metrics import MISSING, Trials, model_ranks, popularity_ranks, summarize


def brute_force_ranks(queries: np.ndarray, candidates: np.ndarray, trials: Trials) -> np.ndarray:
    scores = queries @ candidates.T
    return np.array([(scores[q] >= scores[q, t]).sum() for q, t in zip(trials.query, trials.target)], float)


def test_ranks_match_brute_force_in_small_blocks(monkeypatch):
    rng = np.random.default_rng(0)
    queries = rng.normal(size=(37, 8)).astype(np.float32)
    candidates = rng.normal(size=(53, 8)).astype(np.float32)
    candidates[5] = candidates[4]  # a tie counts against the relevant candidate
    relevant = [rng.choice(53, rng.integers(1, 4), replace=False).tolist() for _ in range(37)]
    relevant[0] = [4]
    trials = Trials.from_relevant(relevant)
    monkeypatch.setattr(metrics, "_BLOCK_ELEMENTS", 53 * 3)  # three queries per block
    ranks = model_ranks(queries, candidates, trials)
    assert (ranks == brute_force_ranks(queries, candidates, trials)).all()
    scores = queries[0] @ candidates.T
    assert ranks[0] == (scores > scores[4]).sum() + 2


def test_summary_by_hand():
    trials = Trials(np.array([0, 0, 1]), np.array([3, 7, 2]), 2)
    ranks = np.array([1.0, 12.0, 4.0])
    out = summarize(ranks, trials, (1, 10), num_candidates=20)
    assert out["recall@1"] == pytest.approx(1 / 3) and out["recall@10"] == pytest.approx(2 / 3)
    assert out["precision@1"] == pytest.approx(0.5) and out["precision@10"] == pytest.approx(0.1)
    assert out["mrr"] == pytest.approx((1 + 1 / 4) / 2)


def test_a_collapsed_space_or_a_missing_vector_scores_nothing():
    trials = Trials.from_relevant([[0], [1], [2]])
    same = np.ones((3, 4), np.float32) / 2
    assert summarize(model_ranks(same, same, trials), trials, (1,), 3)["recall@1"] == 0.0
    missing = Trials(trials.query, np.array([0, MISSING, 2]), 3)
    ranks = model_ranks(np.eye(3, dtype=np.float32), np.eye(3, dtype=np.float32), missing,
                        query_ok=np.array([True, True, False]))
    assert ranks.tolist() == [1.0, np.inf, np.inf]


def test_popularity_ranks_follow_counts_with_ties_in_order():
    trials = Trials.from_relevant([[0], [1], [2], [3]])
    assert popularity_ranks(np.array([5, 9, 5, 0]), trials).tolist() == [2, 1, 3, 4]


@dataclass
class Trained:
    data: Path
    model: Path
    logdir: Path
    films: int


@pytest.fixture(scope="module")
def movielens_model(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    from jointspace.data import synthetic
    from jointspace.data.movielens import import_movielens
    from jointspace.data.pairs import read_pairs
    from jointspace.encoders.training.config import TrainConfig
    from jointspace.encoders.training.export import export_model
    from jointspace.encoders.training.trainer import train

    root = tmp_path_factory.mktemp("movielens-eval")
    films = synthetic.generate(synthetic.SyntheticConfig(n_films=400, n_users=500, n_tastes=8, seed=2))
    ratings, items = synthetic.write_movielens(films, root / "raw")
    import_movielens(ratings, items, root / "data")
    config = TrainConfig(dim=16, epochs=3, batch_size=128, logdir=str(root / "logs"),
                         pairs=[("id:user", "id"), ("ids", "id")])  # the text tower is slow to train
    export_model(train(read_pairs([root / "data" / "train.jsonl"]), config), root / "model")
    return Trained(root / "data", root / "model", root / "logs", len(films.film_ids))


def evaluate_json(capsys, *args: str) -> dict:
    assert main(["evaluate", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_evaluate_movielens_against_popularity(movielens_model, capsys):
    data = movielens_model.data
    report = evaluate_json(capsys, str(movielens_model.model), str(data / "test.jsonl"),
                           "--train", str(data / "train.jsonl"))
    assert report["k"] == [1, 10, 100]
    assert {"id:user->id", "id->id:user", "ids->id", "id->ids"} == set(report["directions"])
    user = report["directions"]["id:user->id"]
    test_rows = [json.loads(line) for line in (data / "test.jsonl").read_text().splitlines()]
    assert user["pairs"] == sum("id:user" in r for r in test_rows)
    assert user["candidates"] == movielens_model.films  # every film, not only the held-out ones
    assert user["popularity_from"] == "train"
    for result in report["directions"].values():
        for mode in ("kept", "removed"):
            for scorer, figures in result[mode].items():
                assert 0.0 <= figures["recall@1"] <= figures["recall@10"] <= figures["recall@100"] <= 1.0
                assert 0.0 <= figures["ndcg@10"] <= 1.0 and 0.0 <= figures["query_recall@10"] <= 1.0
                assert 0.0 < figures["mrr"] <= 1.0, (mode, scorer)
    # Hidden tastes are learnable: the model finds held-out films far above chance (k / 400) and
    # beats popularity in the top 100, where knowing the user's tastes matters most.
    for name in ("id:user->id", "ids->id"):
        for mode in ("kept", "removed"):
            figures = report["directions"][name][mode]
            assert set(figures) == {"model", "popularity", "cooccurrence", "ease"}
            assert figures["model"]["recall@10"] > 2 * 10 / movielens_model.films
            assert figures["model"]["recall@100"] > 1.5 * figures["popularity"]["recall@100"]
        # The baselines know the users' tastes too, once seen films are out of the way.
        removed = report["directions"][name]["removed"]
        for baseline in ("cooccurrence", "ease"):
            assert removed[baseline]["recall@100"] > 1.5 * removed["popularity"]["recall@100"], baseline
        assert f'{report["directions"][name]["ease_lambda"]:g}' in report["directions"][name]["ease_validation"]
    # Removing seen films can only lift a fixed list's held-out hits: none of them was seen.
    assert user["removed"]["popularity"]["recall@10"] >= user["kept"]["popularity"]["recall@10"]
    only = evaluate_json(capsys, str(movielens_model.model), str(data / "test.jsonl"), "--pairs", "ids=id")
    assert set(only["directions"]) == {"ids->id", "id->ids"}
    assert only["directions"]["ids->id"]["popularity_from"] == "evaluated"
    assert set(only["directions"]["ids->id"]["skipped"]) == {"cooccurrence", "ease"}  # they need --train rows


def test_evaluate_table_and_unknown_values(movielens_model, capsys, tmp_path):
    extra = tmp_path / "extra.jsonl"
    extra.write_text('{"id:user": "u:1", "id": "m:never-seen"}\n{"id:user": "u:nobody", "id": "m:1"}\n'
                     '{"id:user": "u:1", "id": "m:1"}\n')
    report = evaluate_json(capsys, str(movielens_model.model), str(extra), "--k", "1,5")
    user = report["directions"]["id:user->id"]
    assert (user["queries"], user["pairs"], user["candidates"]) == (2, 3, 2)
    assert (user["unembedded_queries"], user["unembedded_candidates"]) == (1, 1)
    assert user["kept"]["model"]["recall@5"] == pytest.approx(1 / 3)  # only u:1 -> m:1 can be found
    assert user["popularity_from"] == "evaluated"
    assert main(["evaluate", str(movielens_model.model), str(extra)]) == 0
    table = capsys.readouterr().out
    assert "R@1" in table and "N@10" in table and "popularity*" in table and "unknown to the model" in table
    assert "seen removed" in table


def test_evaluate_spoken_digits_of_an_unheard_speaker(built, capsys, tmp_path):
    """k below the ten candidate words, so that recall can miss; the figures must be the ranks of
    the model's own vectors, and beat a guess (the popularity row: every word is as frequent)."""
    from jointspace.data import fsdd
    from jointspace.encoders.inference import EncoderSet

    pairs = tmp_path / "george.jsonl"
    fsdd.write_pairs(built.indexed_clips, pairs)
    report = evaluate_json(capsys, str(built.model), str(pairs), "--k", "1,3")
    to_text = report["directions"]["audio->text"]
    assert to_text["queries"] == to_text["pairs"] == len(built.indexed_clips)
    assert to_text["candidates"] == 10
    encoders = EncoderSet(built.model)
    scores = (encoders.embed("audio", [str(c.path) for c in built.indexed_clips])
              @ encoders.embed("text", list(fsdd.DIGIT_WORDS)).T)
    own = scores[np.arange(len(scores)), [c.digit for c in built.indexed_clips]]
    ranks = (scores >= own[:, None]).sum(axis=1)  # ties count against the right word, as retrieval_metrics.py does
    for k in (1, 3):
        # No training rows: nothing was seen, so both ways agree.
        assert to_text["removed"] == to_text["kept"]
        assert to_text["kept"]["model"][f"recall@{k}"] == pytest.approx(np.mean(ranks <= k))
        assert to_text["kept"]["popularity"][f"recall@{k}"] == pytest.approx(k / 10)
        assert to_text["kept"]["model"][f"recall@{k}"] > to_text["kept"]["popularity"][f"recall@{k}"]
    to_audio = report["directions"]["text->audio"]
    assert to_audio["queries"] == 10 and to_audio["candidates"] == len(built.indexed_clips)


def test_evaluate_errors_are_one_line(built, movielens_model, capsys, tmp_path):
    pairs = tmp_path / "george.jsonl"
    pairs.write_text(json.dumps({"audio": str(built.indexed_clips[0].path), "text": "one"}) + "\n")
    for args, words in (
        ([str(movielens_model.model), str(pairs)], ["audio", "cannot encode"]),
        ([str(built.model), str(pairs), "--k", "1,x"], ["--k"]),
        ([str(tmp_path), str(pairs)], ["not a jointspace model"]),
        ([str(built.model), str(pairs), "--pairs", "id=text"], ["--pairs id=text", "audio=text"]),
        ([str(built.model), str(tmp_path / "missing.jsonl")], ["missing.jsonl"]),
    ):
        assert main(["evaluate", *args]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("jointspace: error:"), err
        assert all(w in err[0] for w in words), err


def test_training_writes_tensorboard_scalars(movielens_model):
    import tensorflow as tf

    tags: dict[str, list[int]] = {}
    for path in movielens_model.logdir.glob("events.out.tfevents.*"):
        for record in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                assert value.metadata.plugin_data.plugin_name == "scalars"
                tags.setdefault(value.tag, []).append(event.step)
    assert tags["loss"] == [1, 2, 3]
    validated = tags["validation/id:user->id/recall@10"]  # early stopping validates along the way
    assert validated[-1] == 3 and validated == sorted(set(validated)) and set(validated) <= {1, 2, 3}


def test_bench_tfrs_tutorial_is_judged_by_the_evaluation_rule(movielens_model, capsys):
    """The tutorial model's figures, per epoch, over every film; removing seen films can only lift
    them here, since no held-out rating repeats a training one."""
    data = movielens_model.data
    assert main(["bench", "tfrs-tutorial", str(data / "train.jsonl"), str(data / "test.jsonl"),
                 "--epochs", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["films"] == movielens_model.films and [e["epoch"] for e in report["epochs"]] == [1, 2]
    for epoch in report["epochs"]:
        for k in (10, 100):
            assert 0.0 < epoch["kept"][f"recall@{k}"] <= epoch["removed"][f"recall@{k}"] <= 1.0
    empty = data.parent / "no-users.jsonl"
    empty.write_text('{"ids": ["m:1"], "id": "m:2"}\n')
    assert main(["bench", "tfrs-tutorial", str(empty), str(data / "test.jsonl")]) == 1
    assert "id:user=id rows" in capsys.readouterr().err
