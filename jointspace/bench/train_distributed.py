"""Training examples/second of one process against a data-parallel cluster of local workers.

`jointspace bench train-distributed` writes synthetic history → next film pair rows, trains on
them in one process, then with `--workers` MultiWorkerMirroredStrategy workers on loopback
(encoders/training/distributed.py), the same global batch and steps, and reports the examples per
second of each after the warm-up steps (tracing, the first collectives). A cluster's figure is
the sum of its workers' own examples/second (they step together, each on its slice of the global
batch). On one machine the workers share its cores: what this measures there is the cost of the
all-reduce, not a gain.

`python -m jointspace.bench.train_distributed PAIRS RESULT_JSON SETTINGS_JSON [CLUSTER_JSON]` is
one process of it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jointspace  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
from jointspace.bench.peers import free_port
from jointspace.bench.train_side import StepTimer
from jointspace.core.progress import log
from jointspace.data import synthetic


def run(films: int, users: int, workers: int, steps: int, warmup: int, batch_size: int, dim: int) -> dict[str, Any]:
    settings = {"steps": steps, "warmup": warmup, "batch_size": batch_size, "dim": dim}
    with tempfile.TemporaryDirectory() as work:
        pairs = Path(work) / "pairs.jsonl"
        data = synthetic.generate(synthetic.SyntheticConfig(n_films=films, n_users=users))
        rows = synthetic.write_pairs(data, pairs, title_pairs=False)
        log("one process")
        (one,) = _processes(pairs, Path(work) / "one", settings, [None])
        spec = {"cluster": {"worker": [f"127.0.0.1:{free_port()}" for _ in range(workers)]}}
        log(f"{workers} data-parallel workers")
        tasks = [{**spec, "task": {"type": "worker", "index": i}} for i in range(workers)]
        each = _processes(pairs, Path(work) / "cluster", settings, tasks)
    cluster = sum(r["examples_per_second"] for r in each)
    return {"rows": rows, "films": films, "settings": settings,
            "one_process": {"examples_per_second": round(one["examples_per_second"], 1)},
            "cluster": {"workers": workers, "examples_per_second": round(cluster, 1),
                        "per_worker": [round(r["examples_per_second"], 1) for r in each]},
            "speedup": round(cluster / one["examples_per_second"], 3)}


def _processes(pairs: Path, folder: Path, settings: dict[str, Any], tasks: Sequence[dict | None]) -> list[dict]:
    """Run one process per task at once; their results."""
    folder.mkdir()
    results = [folder / f"result{i}.json" for i in range(len(tasks))]
    running = [subprocess.Popen([sys.executable, "-m", "jointspace.bench.train_distributed", str(pairs),
                                 str(result), json.dumps(settings), *([json.dumps(task)] if task else [])])
               for result, task in zip(results, tasks)]
    if any(process.wait() != 0 for process in running):
        raise RuntimeError("a training process failed (its output is above)")
    return [json.loads(result.read_text()) for result in results]


def table(result: dict[str, Any]) -> str:
    one, cluster = result["one_process"], result["cluster"]
    return "\n".join([
        f"{result['rows']} rows, {result['films']} films; {result['settings']}",
        f"one process        {one['examples_per_second']:>12,.1f} examples/s",
        f"{cluster['workers']} workers (sum)    {cluster['examples_per_second']:>12,.1f} examples/s  "
        f"(each: {', '.join(f'{r:,.1f}' for r in cluster['per_worker'])})",
        f"speed-up           {result['speedup']:>12.3f}",
    ])


def main(argv: list[str]) -> int:
    from jointspace.data.pairs import read_pairs
    from jointspace.encoders.training.config import TrainConfig

    pairs, result, settings_text, *cluster = argv
    settings = json.loads(settings_text)
    last = settings["warmup"] + settings["steps"]
    config = TrainConfig(dim=settings["dim"], epochs=10**6, batch_size=settings["batch_size"],
                         validation_split=0.0, patience=None, max_steps=last)
    timer = StepTimer(settings["warmup"], last)
    if cluster:
        from jointspace.encoders.training.cluster import read_cluster
        from jointspace.encoders.training.distributed import train_on_cluster

        task = read_cluster(cluster[0], None, None, {})
        assert task is not None
        train_on_cluster(task, read_pairs([Path(pairs)]), config, on_step=timer)
    else:
        from jointspace.encoders.training.trainer import train

        train(read_pairs([Path(pairs)]), config, on_step=timer)
    Path(result).write_text(json.dumps(timer.result()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
