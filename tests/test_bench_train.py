"""`jointspace bench train` at a tiny size: both sides run in their own processes, the report is
well formed, and both trainers learn (the speed figures themselves are for the full-size
command, not for a test)."""

from __future__ import annotations

import json

import numpy as np

from jointspace.bench import train
from jointspace.cli import main

WARMUP = 2


def test_bench_reports_both_sides_their_ratio_and_recall(tmp_path, capsys):
    """By default one pass over the rows (enough to leave the popular films behind)."""
    code = main(["bench", "train", "--films", "300", "--users", "200", "--warmup", str(WARMUP),
                 "--batch-size", "64", "--jointspace-batch-size", "32", "--val-queries", "200",
                 "--id-norm", "unit", "--temperature", "0.1", "--learning-rate", "0.05", "--intra-op-threads", "1",
                 "--work", str(tmp_path), "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    steps = result["rows"] // 64 - WARMUP
    assert result["timed_steps"] == steps and 0.95 < result["passes"] <= 1.0
    sides = result["sides"]
    assert set(sides) == set(train.SIDES)
    for side, values in sides.items():
        assert values["examples_per_second"] > 0 and values["timed_seconds"] > 0
        assert values["examples_per_cpu_second"] > 0
        assert values["peak_rss_mb"] > 100  # TensorFlow alone takes more: it is the child's figure
        assert 0.0 <= values["recall@10"] <= values["recall@100"] <= 1.0
        # A trainer that does not learn does no better than ranking films by their training watches
        # (the popularity row), nor than a guess at recall@100 (100 of 300 films: 0.33).
        for k in train.KS:
            assert values[f"recall@{k}"] > result["popularity"][f"recall@{k}"], (side, values)
        assert values["recall@100"] >= 0.5, (side, values)
    ratio = sides["jointspace"]["examples_per_second"] / sides["tfrs"]["examples_per_second"]
    assert abs(result["speed_ratio"] - ratio) <= 1e-3 * ratio + 1e-3
    cpu_ratio = sides["jointspace"]["examples_per_cpu_second"] / sides["tfrs"]["examples_per_cpu_second"]
    assert abs(result["cpu_speed_ratio"] - cpu_ratio) <= 1e-3 * cpu_ratio + 1e-3
    assert result["examples_seen"] == (WARMUP + steps) * 64 and result["val_queries"] == 200
    assert (result["intra_op_threads"], result["inter_op_threads"]) == (1, train.default_threads())
    assert all(values["threads"] == [1, train.default_threads()] for values in sides.values())
    # jointspace's batch of 32 takes twice the steps: both sides time as many examples
    timed = {side: json.loads((tmp_path / side / "result.json").read_text())["timed_examples"]
             for side in train.SIDES}
    assert timed == {"tfrs": steps * 64, "jointspace": steps * 64}
    own = result["jointspace"]
    assert (own["batch_size"], own["id_norm"], own["temperature"]) == (32, "unit", 0.1)
    at_least = all(sides["jointspace"][f"recall@{k}"] >= sides["tfrs"][f"recall@{k}"] for k in train.KS)
    assert result["recall_at_least_tfrs"] == at_least
    assert 0.0 <= result["popularity"]["recall@10"] <= result["popularity"]["recall@100"] <= 1.0
    assert result["target_met"] == (result["speed_ratio"] >= train.TARGET_RATIO and at_least)
    text = train.table(result)
    assert "speed ratio" in text and "temperature 0.1, id norm unit" in text
    assert "| tfrs | 64 |" in text and "| jointspace | 32 |" in text and "intra-op 1" in text


def test_bench_refuses_a_hold_out_larger_than_the_data(tmp_path, capsys):
    code = main(["bench", "train", "--films", "30", "--users", "10", "--steps", "1",
                 "--val-queries", "100000", "--work", str(tmp_path)])
    assert code == 1
    assert "--val-queries 100000 leaves no training rows" in capsys.readouterr().err



def test_popularity_row_ranks_films_by_training_watches(tmp_path):
    films = 150
    watched = np.repeat(np.arange(films), np.arange(films, 0, -1))  # film i watched 150 - i times
    path = tmp_path / "split.npz"
    np.savez(path, train_film=watched, val_film=np.array([0, 9, 10, 99, 100]), n_films=films)
    assert train._popularity_recall(path) == {"recall@10": 0.4, "recall@100": 0.8}
