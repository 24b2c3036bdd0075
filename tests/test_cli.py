"""The installed `jointspace` command: real subprocesses, one-line errors, non-zero exits."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def jointspace(*args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    exe = shutil.which("jointspace", path=str(Path(sys.executable).parent)) or "jointspace"
    env = {**os.environ}
    env.pop("JOINTSPACE_DEBUG", None)
    return subprocess.run([exe, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env)


def assert_one_line_error(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("jointspace: error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0]


def test_query_json_output(server, client):
    """The command prints the server's answer, hit for hit; and that answer says the word: every
    indexed clip is the same speaker's, so only the word can tell a right answer from a wrong one
    (a guess puts 0.4 sevens in a top 4)."""
    result = jointspace("query", "--target", server, "--text", "seven", "-k", "4", "--modality", "audio", "--json")
    assert result.returncode == 0, result.stderr
    hits = json.loads(result.stdout)["hits"]
    assert len(hits) == 4
    assert set(hits[0]) == {"key", "score", "modality", "metadata"}
    assert all(h["modality"] == "audio" for h in hits)
    served = client.search(text="seven", k=4, modalities=["audio"])
    assert [(h["key"], h["metadata"]) for h in hits] == [(h.key, h.metadata) for h in served]
    assert [h["score"] for h in hits] == pytest.approx([h.score for h in served], abs=1e-5)
    assert all(h["metadata"]["digit"] == int(h["key"].split(":")[1].split("_")[0]) for h in hits)
    words = [h["metadata"]["word"] for h in hits]
    assert words.count("seven") >= 2, words


def test_query_by_ids_and_audio_file(server, built):
    result = jointspace("query", "--target", server, "--ids", "m:1,m:2", "-k", "2")
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 2
    # A history's own films never come back unless asked; seen films never do.
    def keys(*args: str) -> list[str]:
        done = jointspace("query", "--target", server, "-k", "20", "--modality", "id", "--json", *args)
        assert done.returncode == 0, done.stderr
        return [h["key"] for h in json.loads(done.stdout)["hits"]]

    history = ["m:1", "m:2", "m:3"]
    assert not set(history) & set(keys("--ids", ",".join(history)))
    assert set(history) & set(keys("--ids", ",".join(history), "--keep-query-ids"))
    nearest = keys("--id", "m:1")
    assert not set(nearest[:3]) & set(keys("--id", "m:1", "--seen", ",".join(nearest[:3])))
    clip = built.indexed_clips[0]
    result = jointspace("query", "--target", server, "--audio", str(clip.path), "-k", "1", "--json")
    assert json.loads(result.stdout)["hits"][0]["key"] == f"clip:{clip.path.stem}"


def test_info_command(server):
    result = jointspace("info", "--target", server, "--json")
    assert result.returncode == 0 and json.loads(result.stdout)["dim"] == 16


def test_server_errors_are_one_line(server):
    assert_one_line_error(jointspace("query", "--target", server, "--id", "nope"), "NOT_FOUND", "nope")
    assert_one_line_error(jointspace("query", "--target", server, "--text", "one", "-k", "0"), "INVALID_ARGUMENT")
    assert_one_line_error(jointspace("query", "--target", server, "--vector", "1,2"), "expected 16 values")
    assert_one_line_error(jointspace("query", "--target", server, "--vector", "a,b"), "--vector")


def test_local_errors_are_one_line(tmp_path, built, clips):
    assert_one_line_error(jointspace("query", "--target", "127.0.0.1:1", "--timeout", "1", "--text", "x"),
                          "UNAVAILABLE")
    assert_one_line_error(jointspace("query", "--audio", str(tmp_path / "missing.wav")), "no such file")
    assert_one_line_error(jointspace("train", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "m")),
                          "no such file")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "one", "id": "a"}\n{not json\n')
    assert_one_line_error(jointspace("train", str(bad), "--out", str(tmp_path / "m")), "bad.jsonl:2", "JSON")
    spoken = tmp_path / "spoken.jsonl"
    spoken.write_text(json.dumps({"audio": str(clips[0].path), "text": clips[0].word}) + "\n")
    assert_one_line_error(jointspace("train", str(spoken), "--out", str(tmp_path / "m"), "--audio-fmax", "9000"),
                          "fmax=9000")
    assert jointspace("train", str(spoken), "--out", "m", "--audio-fmax", "-1").returncode == 2
    assert_one_line_error(jointspace("index", "build", str(built.catalog), "--model", str(tmp_path),
                                     "--out", str(tmp_path / "i")), "not a jointspace model")
    assert_one_line_error(jointspace("serve", "--model", str(built.model), "--index", str(tmp_path / "none")),
                          "no such index directory")


def test_bad_index_type_is_refused_and_the_live_generation_stays(built, tmp_path):
    index = tmp_path / "index"
    shutil.copytree(built.index, index)
    result = jointspace("index", "build", str(built.catalog), "--model", str(built.model), "--out", str(index),
                        "--index", "NotAnIndex,Nope")
    assert_one_line_error(result, "NotAnIndex")
    assert (index / "CURRENT").read_text().strip() == "gen-000001"
    assert sorted(p.name for p in index.iterdir()) == sorted(p.name for p in built.index.iterdir())


def test_usage_errors_exit_2():
    result = jointspace("train", "x.jsonl", "--out", "m", "--dim", "minus")
    assert result.returncode == 2 and "--dim" in result.stderr
    assert jointspace("query").returncode == 2
    # An option the command does not take is reported with that command's usage, not the top's.
    unknown = jointspace("bench", "speakers", "--json")
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    assert unknown.stderr.splitlines()[-1] == "jointspace bench speakers: error: unrecognized arguments: --json"
    assert unknown.stderr.startswith("usage: jointspace bench speakers [-h]")


def test_every_command_has_help():
    for command in (["demo"], ["train"], ["index", "build"], ["serve"], ["query"], ["info"], ["data", "fsdd"],
                    ["data", "synthetic"]):
        result = jointspace(*command, "--help")
        assert result.returncode == 0 and "usage:" in result.stdout


def test_data_commands_write_files(tmp_path):
    result = jointspace("data", "fsdd", "--hold-out", "theo", "--out", str(tmp_path / "digits"))
    assert result.returncode == 0, result.stderr
    pairs = [json.loads(line) for line in (tmp_path / "digits/pairs.jsonl").read_text().splitlines()]
    assert pairs and all((tmp_path / "digits" / p["audio"]).is_file() for p in pairs)
    assert not any("theo" in p["audio"] for p in pairs)
    result = jointspace("data", "synthetic", "--films", "50", "--users", "40", "--out", str(tmp_path / "films"))
    assert result.returncode == 0, result.stderr
    assert len((tmp_path / "films/catalog.jsonl").read_text().splitlines()) == 50
    assert_one_line_error(jointspace("data", "fsdd", "--hold-out", "nobody", "--out", str(tmp_path / "x")), "nobody")


@pytest.mark.slow
def test_serve_stops_cleanly_on_sigterm(built):
    import signal
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    exe = shutil.which("jointspace", path=str(Path(sys.executable).parent)) or "jointspace"
    process = subprocess.Popen([exe, "serve", "--model", str(built.model), "--index", str(built.index),
                                "--port", str(port)], stderr=subprocess.PIPE, text=True)
    try:
        from jointspace.client import Client

        with Client(f"127.0.0.1:{port}", timeout=10) as client:
            client.wait_ready(timeout=120)
            assert client.search(text="one", k=1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert "stopped" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()


def test_bench_speakers_runs_every_speaker_under_every_seed():
    """Training follows its seed, so one seed is one draw of initial weights: `--seed` repeats
    the held-out-speaker benchmark under several and reports a mean per seed."""
    result = jointspace("bench", "speakers", "--speaker", "theo", "--epochs", "1",
                        "--seed", "0", "--seed", "5", timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert [(r["speaker"], r["seed"]) for r in report["per_speaker"]] == [("theo", 0), ("theo", 5)]
    assert set(report["mean_by_seed"]) == {"0", "5"}
    recalls = [r["audio_to_text_recall@1"] for r in report["per_speaker"]]
    assert report["mean"]["audio_to_text_recall@1"] == pytest.approx(sum(recalls) / 2, abs=1e-4)


def test_train_ensemble_trains_one_model_per_seed(tmp_path: Path):
    from jointspace.data import synthetic

    films = synthetic.generate(synthetic.SyntheticConfig(n_films=40, n_users=60, n_tastes=3, seed=4))
    synthetic.write_pairs(films, tmp_path / "pairs.jsonl")
    result = jointspace("train", str(tmp_path / "pairs.jsonl"), "--out", str(tmp_path / "model"),
                        "--pairs", "ids=id", "--dim", "8", "--epochs", "1", "--ensemble", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "(dim 16)" in result.stdout
    assert "ensemble member 2/2 (seed 1)" in result.stderr
    assert json.loads((tmp_path / "model" / "manifest.json").read_text())["training"]["members"] == 2
    refused = jointspace("train", str(tmp_path / "pairs.jsonl"), "--out", str(tmp_path / "other"),
                         "--ensemble", "0")
    assert refused.returncode == 2 and "--ensemble" in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "other").exists()
