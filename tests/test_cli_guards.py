"""`jointspace train` refuses what would delete a user's files, train a broken model or train
nothing: every refusal is one line and a non-zero exit, and nothing is deleted or written.

Real files and real (tiny) TensorFlow training through `jointspace.cli.main`, in this process
so that TensorFlow is imported once."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from jointspace.cli import main

WORDS = ("alpha", "beta", "gamma", "delta")
TINY = ("--epochs", "1", "--batch-size", "8", "--dim", "8", "--patience", "0")


def write_pairs(path: Path, count: int = 40, **extra: object) -> Path:
    """`count` id = text rows; `extra` is added to row 5 (the file's line 6)."""
    rows = [{"id": f"m:{i}", "text": f"{WORDS[i % 4]} film {i}"} for i in range(count)]
    if count > 5:
        rows[5].update(extra)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes: what must survive a refused command."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def error_line(capsys: pytest.CaptureFixture[str], *words: str) -> str:
    """The command's one error line, which must hold `words`."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture()
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails the test if training starts: these refusals must come first."""
    from jointspace.encoders.training import trainer as training
    def refuse(*args: object, **kwargs: object) -> None:
        pytest.fail("training started")  # a BaseException: `main` does not turn it into an exit code

    monkeypatch.setattr(training, "train_members", refuse)


def test_out_that_is_a_folder_of_other_files_is_refused_before_training(tmp_path, capsys, no_training):
    data = tmp_path / "data"
    pairs = write_pairs(data / "pairs.jsonl")
    (data / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    for out in (data, data / ".."):
        assert main(["train", str(pairs), "--out", str(out), *TINY]) == 1
        error_line(capsys, str(out), "not a jointspace model")
        assert snapshot(tmp_path) == before
    (tmp_path / "file").write_text("x")
    assert main(["train", str(pairs), "--out", str(tmp_path / "file"), *TINY]) == 1
    error_line(capsys, "not a folder")


def test_a_model_folder_with_files_of_its_own_is_not_replaced(tmp_path, capsys):
    pairs = write_pairs(tmp_path / "pairs.jsonl")
    model = tmp_path / "model"
    assert main(["train", str(pairs), "--out", str(model), *TINY]) == 0
    (model / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    capsys.readouterr()
    assert main(["train", str(pairs), "--out", str(model), *TINY]) == 1
    error_line(capsys, "notes.txt")
    assert snapshot(tmp_path) == before


def test_a_model_is_replaced_whole_and_nothing_is_left_beside_it(tmp_path, capsys):
    pairs = write_pairs(tmp_path / "pairs.jsonl")
    model = tmp_path / "model"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["train", str(pairs), "--out", str(empty), *TINY]) == 0
    assert main(["train", str(pairs), "--out", str(model), *TINY]) == 0
    first = json.loads((model / "manifest.json").read_text())["model_version"]
    assert main(["train", str(pairs), "--out", str(model), *TINY, "--seed", "1"]) == 0
    assert json.loads((model / "manifest.json").read_text())["model_version"] != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "model", "pairs.jsonl"]
    assert (empty / "manifest.json").is_file()


@pytest.mark.parametrize("option, value", [
    ("--learning-rate", "nan"), ("--learning-rate", "0"), ("--learning-rate", "-1"),
    ("--temperature", "0"), ("--temperature", "inf"), ("--logq", "nan"), ("--logq", "-1"),
    ("--validation-split", "nan"), ("--validation-split", "-0.5"), ("--validation-split", "1"),
    ("--batch-size", "1"),
])
def test_numeric_train_options_are_checked_by_the_parser(tmp_path, capsys, option, value):
    pairs = write_pairs(tmp_path / "pairs.jsonl")
    with pytest.raises(SystemExit) as exited:
        main(["train", str(pairs), "--out", str(tmp_path / "m"), option, value])
    assert exited.value.code == 2
    error_line(capsys, option)
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("weight", ["NaN", "Infinity", "-1"])
def test_a_bad_weight_is_refused_with_file_and_line(tmp_path, capsys, no_training, weight):
    pairs = tmp_path / "pairs.jsonl"
    write_pairs(pairs)
    lines = pairs.read_text().splitlines()
    lines[5] = lines[5][:-1] + f', "weight": {weight}}}'
    pairs.write_text("\n".join(lines) + "\n")
    assert main(["train", str(pairs), "--out", str(tmp_path / "m"), *TINY]) == 1
    error_line(capsys, "pairs.jsonl:6", "weight")
    assert not (tmp_path / "m").exists()


def test_a_run_whose_loss_becomes_nan_fails_and_writes_nothing(tmp_path, capsys):
    pairs = write_pairs(tmp_path / "pairs.jsonl")
    assert main(["train", str(pairs), "--out", str(tmp_path / "m"), *TINY, "--learning-rate", "1e30"]) == 1
    error_line(capsys, "loss", "--learning-rate")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.jsonl"]


@pytest.mark.parametrize("rows, options", [
    (1, ()),  # one row: no batch of two
    (40, ("--validation-split", "0.99")),  # every row but none held out
])
def test_training_that_takes_no_step_fails_and_writes_nothing(tmp_path, capsys, rows, options):
    pairs = write_pairs(tmp_path / "pairs.jsonl", rows)
    assert main(["train", str(pairs), "--out", str(tmp_path / "m"), *TINY, *options]) == 1
    error_line(capsys, "no training step")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.jsonl"]


def test_a_file_that_is_not_utf8_names_file_and_line(tmp_path, capsys, no_training):
    pairs = write_pairs(tmp_path / "pairs.jsonl")
    lines = pairs.read_bytes().splitlines(keepends=True)
    lines[20] = lines[20].replace(b"film", b"f\xe9lm")
    pairs.write_bytes(b"".join(lines))
    assert main(["train", str(pairs), "--out", str(tmp_path / "m"), *TINY]) == 1
    error_line(capsys, "pairs.jsonl:21", "UTF-8")


def test_a_nan_model_scores_nothing_and_is_refused_by_index_build(tmp_path, capsys):
    """Whatever produced it, a model that embeds to NaN neither looks perfect nor gets indexed;
    nor does a raw NaN vector."""
    import numpy as np

    from jointspace.data.pairs import read_pairs
    from jointspace.encoders.training.config import TrainConfig
    from jointspace.encoders.training.export import export_model
    from jointspace.encoders.training.trainer import train

    pairs = write_pairs(tmp_path / "pairs.jsonl")
    trained = train(read_pairs([pairs]), TrainConfig(dim=8, epochs=1, batch_size=8, patience=None))
    for tower in trained.towers.values():
        tower.set_weights([np.full_like(w, np.nan) for w in tower.get_weights()])
    model = tmp_path / "model"
    export_model(trained, model)
    capsys.readouterr()
    assert main(["evaluate", str(model), str(pairs), "--json"]) == 0
    for direction in json.loads(capsys.readouterr().out)["directions"].values():
        for mode in ("kept", "removed"):
            assert direction[mode]["model"]["recall@1"] == direction[mode]["model"]["mrr"] == 0.0
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text("".join(json.dumps({"key": f"m:{i}", "id": f"m:{i}"}) + "\n" for i in range(40)))
    raw = tmp_path / "raw.jsonl"
    raw.write_text('{"key": "v", "vector": [NaN, 0, 0, 0, 0, 0, 0, 1]}\n')
    for bad in (catalog, raw):
        assert main(["index", "build", str(bad), "--model", str(model), "--out", str(tmp_path / "index")]) == 1
        error_line(capsys, "finite")
        assert not (tmp_path / "index" / "CURRENT").exists()


def test_serve_on_a_busy_port_says_so_in_one_line(built, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "jointspace.cli", "serve", "--model", str(built.model),
             "--index", str(built.index), "--port", str(port)],
            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("jointspace: error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"127.0.0.1:{port}" in lines[0] and "in use" in lines[0], lines[0]
