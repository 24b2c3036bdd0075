"""Training on a cluster of real local processes (encoders/training/distributed.py): two
data-parallel workers, and a chief with two workers and a parameter server. Each exports a normal
model that the index builder loads, as good on held-out rows as training in one process."""

from __future__ import annotations

import json
import math
import re
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import jointspace  # noqa: F401  (first: sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from jointspace.core.errors import InvalidInput
from jointspace.data import synthetic
from serving import jointspace_exe

# One direction's figure is compared: history → next film, the one a recommender serves.
DIRECTION, METRIC = "ids->id", "recall@10"
TRAINING = {"dim": 16, "epochs": 3, "batch_size": 64, "validation_split": 0.2, "seed": 0}
PROCESS_TIMEOUT_S = 300


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _cli_flags(settings: dict[str, object]) -> list[str]:
    flags = [item for key, value in settings.items() for item in (f"--{key.replace('_', '-')}", str(value))]
    return [*flags, "--patience", "0"]  # fixed epochs: equal examples seen by every run


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 1,300 history → next film rows over 200 films."""
    path = tmp_path_factory.mktemp("distributed") / "pairs.jsonl"
    films = synthetic.generate(synthetic.SyntheticConfig(n_films=200, n_users=400, n_tastes=8, mean_history=8))
    synthetic.write_pairs(films, path, max_history=10, title_pairs=False)
    return path


@dataclass
class SingleProcess:
    """One-process training with the cluster runs' settings: seed 0's steps and examples, and
    the validation figures of seeds 0 and 1."""

    steps: int
    examples: int
    metrics: list[dict[str, dict[str, float]]]


@pytest.fixture(scope="module")
def single_process(pairs: Path) -> SingleProcess:
    from jointspace.data.pairs import read_pairs
    from jointspace.encoders.training.config import TrainConfig
    from jointspace.encoders.training.trainer import train

    rows = read_pairs([pairs])
    done: list[tuple[int, int]] = []
    first = train(rows, TrainConfig(**TRAINING, patience=None), on_step=lambda *totals: done.append(totals))
    second = train(rows, TrainConfig(**{**TRAINING, "seed": 1}, patience=None))
    return SingleProcess(*done[-1], [first.metrics, second.metrics])


def _trained(log: str) -> tuple[int, int]:
    """A task's logged steps and examples."""
    found = re.search(r"trained (\d+) steps on (\d+) examples", log)
    assert found, log[-2000:]
    return int(found[1]), int(found[2])


def assert_within_noise(metrics: dict[str, dict[str, float]], single: SingleProcess) -> None:
    """Within noise: the two seeds' spread (what a seed alone changes) plus three binomial
    standard errors of the figure over the validation queries (what the draw of queries alone
    changes; two seeds are too few to measure that spread). A model that learnt nothing scores
    near 10/200 here, several times that margin below."""
    figure = metrics[DIRECTION][METRIC]
    baseline = [m[DIRECTION][METRIC] for m in single.metrics]
    mean = float(np.mean(baseline))
    queries = round(1315 * TRAINING["validation_split"])  # type: ignore[operator]
    margin = abs(baseline[0] - baseline[1]) + 3 * math.sqrt(mean * (1 - mean) / queries)
    assert abs(figure - mean) <= margin, (figure, baseline, margin)


def _start(spec: dict, role: str, index: int, args: list[str], log: Path) -> subprocess.Popen:
    command = [jointspace_exe(), "train", *args, "--cluster", json.dumps(spec), "--role", role,
               "--task-index", str(index)]
    return subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT)


@pytest.fixture()
def cluster(tmp_path: Path) -> Iterator[list[tuple[subprocess.Popen, Path]]]:
    """Started processes and their logs; any still running at the end are killed."""
    started: list[tuple[subprocess.Popen, Path]] = []
    yield started
    for process, _ in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def _finish(started: list[tuple[subprocess.Popen, Path]]) -> list[str]:
    """Every process's log once all have exited, failing with the logs if any did not exit 0."""
    codes = [process.wait(timeout=PROCESS_TIMEOUT_S) for process, _ in started]
    logs = [log.read_text() for _, log in started]
    assert codes == [0] * len(codes), "\n\n".join(f"exit {c}:\n{text[-3000:]}" for c, text in zip(codes, logs))
    return logs


def _validation_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if line.startswith("validation ")]


def _loads_and_indexes(model: Path, pairs: Path, tmp_path: Path) -> None:
    """The exported model embeds through `EncoderSet` and builds an index, as any model does."""
    from jointspace.encoders.inference import EncoderSet
    from jointspace.server.build.local_builder import build_generation

    films = synthetic.generate(synthetic.SyntheticConfig(n_films=200, n_users=400, n_tastes=8, mean_history=8))
    synthetic.write_catalog(films, tmp_path / "catalog.jsonl")
    encoders = EncoderSet(model)
    vectors = encoders.embed("id", ["m:1", "m:2"])
    assert vectors.shape == (2, 16) and np.isfinite(vectors).all()
    build_generation(encoders, [tmp_path / "catalog.jsonl"], tmp_path / "index")
    assert (tmp_path / "index" / "CURRENT").exists()


def test_two_data_parallel_workers_train_one_model_as_good_as_one_process(
        pairs: Path, single_process: SingleProcess, cluster: list, tmp_path: Path) -> None:
    spec = {"cluster": {"worker": [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]}}
    model = tmp_path / "model"
    for index in range(2):
        args = [str(pairs), "--out", str(model if index == 0 else tmp_path / "not-written"), *_cli_flags(TRAINING)]
        log = tmp_path / f"worker{index}.log"
        cluster.append((_start(spec, "worker", index, args, log), log))
    first, second = _finish(cluster)

    assert "data-parallel cluster (2 worker)" in first
    # Each worker trains on its half of every global batch: together, the examples of one process.
    (steps, first_examples), (other_steps, second_examples) = _trained(first), _trained(second)
    assert steps == other_steps == single_process.steps
    assert first_examples + second_examples == single_process.examples
    assert abs(first_examples - second_examples) <= steps
    # The workers' weights are mirrored: both validate the same model to the same figures.
    assert _validation_lines(first) and _validation_lines(first) == _validation_lines(second)
    assert not (tmp_path / "not-written").exists()  # only the chief (worker 0) exports
    metrics = json.loads((model / "manifest.json").read_text())["metrics"]
    assert_within_noise(metrics, single_process)
    _loads_and_indexes(model, pairs, tmp_path)


def test_parameter_servers_hold_the_table_in_shards_and_the_chief_exports_it_whole(
        pairs: Path, single_process: SingleProcess, cluster: list, tmp_path: Path) -> None:
    import tensorflow as tf

    spec = {"cluster": {"chief": [f"127.0.0.1:{_free_port()}"],
                        "worker": [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"],
                        "ps": [f"127.0.0.1:{_free_port()}"]}}
    for role, index in (("ps", 0), ("worker", 0), ("worker", 1)):  # they need neither rows nor --out
        log = tmp_path / f"{role}{index}.log"
        cluster.append((_start(spec, role, index, [], log), log))
    model = tmp_path / "model"
    # Two shards of any variable over 1 KiB, so that the 209 × 16 table is split on the one ps.
    args = [str(pairs), "--out", str(model), *_cli_flags(TRAINING), "--max-shards", "2", "--min-shard-bytes", "1024"]
    cluster.append((_start(spec, "chief", 0, args, tmp_path / "chief.log"), tmp_path / "chief.log"))
    *_, chief = _finish(cluster)  # the ps and workers stop once the chief has gone

    assert _trained(chief) == (single_process.steps, single_process.examples)
    assert "variable tower_view/id_tower/embedding/embeddings [209, 16] in 2 shards on " \
           "/job:ps/replica:0/task:0/device:CPU:0" in chief
    saved = tf.saved_model.load(str(model / "id"))
    served = saved.signatures["serving_default"].variables
    # Gathered: the serving function reads one whole table, no shards.
    assert [tuple(v.shape) for v in served if "embeddings" in v.name] == [(209, 16)]
    assert not any("part_" in v.name for v in served)
    metrics = json.loads((model / "manifest.json").read_text())["metrics"]
    assert_within_noise(metrics, single_process)
    _loads_and_indexes(model, pairs, tmp_path)


@pytest.mark.parametrize(("spec", "role", "message"), [
    ('{"cluster": {"worker": ["127.0.0.1:1"]}}', None, "no task"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}}', "chief", "role 'chief' is not in the cluster"),
    ('{"cluster": {"worker": ["127.0.0.1:1"], "ps": ["127.0.0.1:2"]}}', "ps", "needs a chief"),
    ('{"cluster": {"worker": ["localhost"]}, "task": {"type": "worker"}}', None, "list of 'host:port'"),
    ('{"cluster": {"gpu": ["127.0.0.1:1"]}}', None, "unknown role 'gpu'"),
    ("{not json", None, "not JSON"),
    ('{"cluster": [1, 2]}', "worker", "must be a JSON object"),
])
def test_a_bad_cluster_spec_is_refused_by_name(spec: str, role: str | None, message: str) -> None:
    from jointspace.encoders.training.cluster import read_cluster

    with pytest.raises(InvalidInput, match=message):
        read_cluster(spec, role, None, {})


def test_the_task_comes_from_tf_config_unless_overridden() -> None:
    from jointspace.encoders.training.cluster import read_cluster

    environ = {"TF_CONFIG": json.dumps({"cluster": {"chief": ["h:1"], "worker": ["h:2"], "ps": ["h:3"]},
                                       "task": {"type": "worker", "index": 0}})}
    task = read_cluster(None, None, None, environ)
    assert task is not None and (task.role, task.index, task.trains, task.is_chief) == ("worker", 0, False, False)
    chief = read_cluster(None, "chief", None, environ)
    assert chief is not None and chief.trains and chief.is_chief
    assert read_cluster(None, None, None, {}) is None
    with pytest.raises(InvalidInput, match="need --cluster or TF_CONFIG"):
        read_cluster(None, "worker", 0, {})
