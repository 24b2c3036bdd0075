"""`jointspace bench train` at a tiny size: both sides run in their own processes and the report
is well formed (the speed figures themselves are for the full-size command, not for a test)."""

from __future__ import annotations

import json

from jointspace.bench import train
from jointspace.cli import main


def test_bench_reports_both_sides_their_ratio_and_recall(tmp_path, capsys):
    code = main(["bench", "train", "--films", "300", "--users", "200", "--steps", "3", "--warmup", "2",
                 "--batch-size", "64", "--jointspace-batch-size", "32", "--val-queries", "50",
                 "--work", str(tmp_path), "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    sides = result["sides"]
    assert set(sides) == set(train.SIDES)
    for values in sides.values():
        assert values["examples_per_second"] > 0 and values["timed_seconds"] > 0
        assert values["peak_rss_mb"] > 100  # TensorFlow alone takes more: it is the child's figure
        assert 0.0 <= values["recall@10"] <= values["recall@100"] <= 1.0
    ratio = sides["jointspace"]["examples_per_second"] / sides["tfrs"]["examples_per_second"]
    assert abs(result["speed_ratio"] - ratio) <= 1e-3 * ratio + 1e-3
    assert result["examples_seen"] == 5 * 64 and result["val_queries"] == 50
    # jointspace's batch of 32 takes twice the steps: both sides time as many examples
    timed = {side: json.loads((tmp_path / side / "result.json").read_text())["timed_examples"]
             for side in train.SIDES}
    assert timed == {"tfrs": 3 * 64, "jointspace": 3 * 64}
    assert "speed ratio" in train.table(result)


def test_bench_refuses_a_hold_out_larger_than_the_data(tmp_path, capsys):
    code = main(["bench", "train", "--films", "30", "--users", "10", "--steps", "1",
                 "--val-queries", "100000", "--work", str(tmp_path)])
    assert code == 1
    assert "--val-queries 100000 leaves no training rows" in capsys.readouterr().err

