"""Recommendation quality pieces: the MovieLens-like generator, the co-occurrence baseline, the
logQ correction, `tune-dim`, and that a trained space recovers the hidden tastes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from jointspace.cli import main
from jointspace.core.errors import InvalidInput
from jointspace.core.retrieval_metrics import Trials
from jointspace.core.sparse import item_matrix
from jointspace.data import synthetic


def _popularity_hit_rate(data: synthetic.SyntheticData, top: int) -> float:
    """Share of each user's last watch found among the `top` most watched films of the others."""
    last = data.user_offsets[1:] - 1
    counts = np.bincount(np.delete(data.event_film, last), minlength=len(data.film_ids))
    return float(np.isin(data.event_film[last], np.argsort(-counts)[:top]).mean())


def test_global_popularity_makes_the_popular_films_a_real_baseline():
    sizes = dict(n_films=600, n_users=400, n_tastes=12, mean_history=40, max_history=300, seed=3)
    within = synthetic.generate(synthetic.SyntheticConfig(**sizes))
    skewed = synthetic.generate(synthetic.SyntheticConfig(**sizes, popular_share=0.4))
    top = 36  # k = 100 of MovieLens's 1,682 films, scaled to 600
    assert _popularity_hit_rate(skewed, top) > 2 * _popularity_hit_rate(within, top)
    # Tastes still decide most watches (the global draws hit a user's tastes only by chance).
    taste = skewed.film_taste[skewed.event_film]
    own = (taste == skewed.user_tastes[skewed.event_user, 0]) | (taste == skewed.user_tastes[skewed.event_user, 1])
    assert 0.5 < own.mean() < 0.9
    capped = synthetic.generate(synthetic.SyntheticConfig(**{**sizes, "max_history": 45}, popular_share=0.4))
    assert capped.history_lengths().max() == 45 < skewed.history_lengths().max()
    for bad in (dict(popular_share=1.0), dict(popular_share=-0.1), dict(popular_exponent=0.0),
                dict(mean_history=300, max_history=200)):
        with pytest.raises(InvalidInput):
            synthetic.SyntheticConfig(**bad)


def test_cooccurrence_ranks_films_by_shared_users_with_seen_films_kept_or_removed():
    from jointspace.core.retrieval_metrics import score_ranks
    from jointspace.core.sparse import item_matrix, pair_matrix
    from jointspace.quality.cooccurrence import cooccurrence_counts, cooccurrence_scores

    # Training: user 0 watched films 0 and 1, user 1 films 0, 1 and 2, user 2 films 2 and 3.
    users, films = np.array([0, 0, 1, 1, 1, 2, 2]), np.array([0, 1, 0, 1, 2, 2, 3])
    targets = pair_matrix(users, films, (3, 4))
    items = item_matrix([films[users == u] for u in range(3)], 4)
    counts = cooccurrence_counts(items, targets).toarray()
    assert counts.tolist() == [[0, 2, 1, 0], [2, 0, 1, 0], [1, 1, 0, 1], [0, 0, 1, 0]]
    # A query holding film 0 scores film 1: 2, film 2: 1, film 3 and its own film 0: 0 (ties count
    # against the target); a query holding films 2 and 3 scores every film 1.
    queries = item_matrix([np.array([0]), np.array([2, 3])], 4)
    trials = Trials(np.array([0, 0, 0, 1, 1]), np.array([1, 2, 3, 0, 2]), 2)
    ranks = score_ranks(cooccurrence_scores(queries, cooccurrence_counts(items, targets)), trials, 4,
                        {"kept": None, "removed": queries})
    assert ranks["kept"].tolist() == [1, 2, 4, 4, 4]
    # Removed: the query's own films are never shown, and a target among them is a miss.
    assert ranks["removed"].tolist() == [1, 2, 3, 2, np.inf]


def test_ease_recovers_an_item_item_structure_and_chooses_lambda_on_held_out_sets():
    import scipy.sparse as sp

    from jointspace.quality.ease import ease_weights, fit_ease

    # Films come in pairs (0, 1), (2, 3), ...: whoever watched one of a pair watched the other.
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(300):
        chosen = rng.choice(10, 3, replace=False)
        rows.append(np.concatenate([2 * chosen, 2 * chosen + 1]))
    sets = item_matrix(rows, 20)
    weights = ease_weights(sets, 10.0)
    assert np.all(np.diag(weights) == 0)  # an item never recommends itself
    partner = np.arange(20) ^ 1
    assert (np.argmax(weights, axis=1) == partner).all()
    ease = fit_ease(sets, lambdas=(1.0, 10.0, 100.0))
    assert set(ease.validation) == {1.0, 10.0, 100.0} and ease.regularization in ease.validation
    assert ease.validation[ease.regularization] == max(ease.validation.values())
    scores = ease.scores(sp.csr_matrix(item_matrix([np.array([4])], 20)))(np.array([0]))
    assert int(np.argmax(scores[0])) == 5


def test_logq_correction_is_tfrs_sampling_probability_correction():
    """The loss with logQ equals two `tfrs.tasks.Retrieval` calls given each direction's
    candidate sampling probabilities, so it means what TFRS means by it."""
    import tensorflow as tf
    import tensorflow_recommenders as tfrs

    from jointspace.encoders.training.model import JointModel, PairType
    from jointspace.encoders.training.trainer import log_frequencies

    rng = np.random.default_rng(0)
    left, right = (tf.math.l2_normalize(rng.normal(size=(6, 4)).astype(np.float32), axis=1) for _ in "ab")
    towers = {"a": tf.keras.layers.Lambda(lambda x: x), "b": tf.keras.layers.Lambda(lambda x: x)}
    codes_a, codes_b = np.arange(6), np.array([0, 1, 2, 2, 3, 4])
    rows = np.arange(6)
    log_a, log_b = log_frequencies(codes_a, rows), log_frequencies(codes_b, rows)
    assert np.allclose(np.exp(log_b), [1 / 6, 1 / 6, 2 / 6, 2 / 6, 1 / 6, 1 / 6])
    weight = np.ones(6, np.float32)
    batch = {"a": left, "b": right, "codes_a": codes_a, "codes_b": codes_b, "weight": weight,
             "log_q_a": log_a, "log_q_b": log_b}
    model = JointModel(towers, temperature=0.2)
    ours = float(model.pair_loss(PairType("a", "b", "a", "b"), batch))

    from jointspace.encoders.training.model import score_mask

    task = tfrs.tasks.Retrieval(temperature=0.2)
    mask = score_mask(codes_a, codes_b)
    reference = task(left, right, sample_weight=weight, candidate_sampling_probability=np.exp(log_b),
                     compute_metrics=False, compute_batch_metrics=False, score_mask=mask)
    reference += task(right, left, sample_weight=weight, candidate_sampling_probability=np.exp(log_a),
                      compute_metrics=False, compute_batch_metrics=False, score_mask=mask)
    assert ours == pytest.approx(float(reference) / 6, rel=1e-5)
    plain = float(model.pair_loss(PairType("a", "b", "a", "b"), {k: batch[k] for k in batch if "log_q" not in k}))
    assert plain != pytest.approx(ours, rel=1e-3)  # the correction changes the loss


def test_trained_space_recovers_hidden_tastes(built):
    """Films of one hidden taste are each other's nearest neighbours far above chance."""
    from jointspace.encoders.inference import EncoderSet

    films = built.films
    vectors = EncoderSet(built.model).embed("id", films.film_ids.tolist())
    scores = vectors @ vectors.T
    np.fill_diagonal(scores, -np.inf)
    neighbours = np.argsort(-scores, axis=1)[:, :5]
    same = (films.film_taste[neighbours] == films.film_taste[:, None]).mean()
    shares = np.bincount(films.film_taste) / len(films.film_taste)
    chance = float((shares**2).sum())  # a random neighbour's chance of sharing the film's taste
    assert same > 3 * chance, (same, chance)


def test_tune_dim_reports_recall_per_dimension_and_recommends_one(tmp_path: Path, capsys):
    from jointspace.encoders.training.trainer import auto_dim

    data = synthetic.generate(synthetic.SyntheticConfig(n_films=80, n_users=150, n_tastes=4, seed=4))
    pairs = tmp_path / "pairs.jsonl"
    synthetic.write_pairs(data, pairs, title_pairs=False)
    args = ["tune-dim", str(pairs), "--dims", "16,8", "--epochs", "2", "--batch-size", "64"]
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["dim"] for r in report["dims"]] == [8, 16]
    for result in report["dims"]:
        assert set(result["validation"]) == {"ids->id"}
        assert result["score"] == pytest.approx(np.mean([m["recall@10"] for m in result["validation"].values()]))
    best = max(r["score"] for r in report["dims"])
    chosen = next(r for r in report["dims"] if r["dim"] == report["recommended"])
    assert chosen["score"] >= best * (1 - report["tolerance"])
    assert all(r["score"] < best * (1 - report["tolerance"]) for r in report["dims"] if r["dim"] < chosen["dim"])
    assert report["auto_dim"] == auto_dim(report["num_values"]) and report["num_values"] == 80
    assert main(["tune-dim", str(pairs), "--dims", "8", "--epochs", "1"]) == 0
    table = capsys.readouterr().out
    assert "recommended: --dim 8" in table and "ids->id" in table
    assert main(["tune-dim", str(pairs), "--validation-split", "0"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "validation split" in err[0]


def test_clipped_id_vectors_grow_with_evidence_and_unit_ones_do_not(tmp_path: Path):
    """`--id-norm clip` (the default) lets an id's length say how much training stands behind it,
    so after one pass ids seen under four times stay far shorter than ids seen sixteen times or
    more; `--id-norm unit` keeps every id vector at length 1, so that scores are cosines."""
    from collections import Counter

    from jointspace.encoders.impl.id_norms import NORMS
    from jointspace.encoders.impl.ids import BOUNDS
    from jointspace.encoders.inference import EncoderSet

    assert set(BOUNDS) == set(NORMS)  # the tower bounds every norm the command line offers
    data = synthetic.generate(synthetic.SyntheticConfig(n_films=3000, n_users=2000, n_tastes=6,
                                                        popular_share=0.4, seed=5))
    pairs = tmp_path / "pairs.jsonl"
    synthetic.write_pairs(data, pairs, title_pairs=False)
    seen: Counter[str] = Counter()
    for line in pairs.read_text().splitlines():
        row = json.loads(line)
        seen.update([row["id"], *row["ids"]])
    films = sorted(seen)
    times = np.array([seen[f] for f in films])
    norms = {}
    for norm in ("clip", "unit"):
        model = tmp_path / norm
        assert main(["train", str(pairs), "--out", str(model), "--dim", "16", "--epochs", "1",
                     "--batch-size", "128", "--catalog-batch-size", "128", "--learning-rate", "0.05",
                     "--validation-split", "0",
                     "--id-norm", norm]) == 0
        assert json.loads((model / "manifest.json").read_text())["encoders"]["id"]["norm"] == norm
        norms[norm] = np.linalg.norm(EncoderSet(model).embed("id", films), axis=1)
    assert np.allclose(norms["unit"], 1.0, atol=1e-5)
    clipped = norms["clip"]
    assert clipped.max() <= 1.0 + 1e-5
    rarely, often = clipped[times < 4].mean(), clipped[times >= 16].mean()
    assert often > 2 * rarely, (rarely, often)
