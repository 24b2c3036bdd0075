"""Id two-tower training speed: a plain TFRS loop against jointspace's own, side by side.

Issue 4's target: on the synthetic generator at one million films × half a million users (d = 32)
jointspace's training path runs at least twice as many examples/second as a plain TFRS loop
(`tfrs.tasks.Retrieval` with metrics off, `model.fit`, batch 4096, Adagrad 0.1 as in the TFRS
basic-retrieval tutorial), at equal or better validation recall. Both sides train on the same
(user, film) rows, by default one pass over them, and see the same examples (jointspace's batch
may be a divisor of TFRS's, with proportionally more steps), one after the other in one run, each
in its own process (jointspace/bench/train_side.py) so that peak memory is measured per side,
with the same TensorFlow thread settings. The first steps (tracing, first touches of the tables)
are not timed; speed is reported by the clock and by the process's CPU time, since on a shared
machine the clock also counts other jobs' time. Validation is the
same for both: held-out (user, film) rows, each user's vector against every film's vector, exact
(jointspace/core/retrieval_metrics.py), as the TFRS tutorial's top-k accuracy counts it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from jointspace.core.errors import InvalidInput
from jointspace.core.progress import log
from jointspace.core.retrieval_metrics import Trials, model_ranks, popularity_ranks, summarize
from jointspace.data import synthetic

SIDES = ("tfrs", "jointspace")
KS = (10, 100)
TARGET_RATIO = 2.0


def _write_split(path: Path, films: int, users: int, val_queries: int, seed: int) -> dict[str, int]:
    """Every watch of the synthetic data as a (user, film) row; `val_queries` random rows held out."""
    data = synthetic.generate(synthetic.SyntheticConfig(n_films=films, n_users=users, seed=seed))
    events = len(data.event_user)
    if val_queries >= events:
        raise InvalidInput(f"--val-queries {val_queries} leaves no training rows ({events} watches)")
    held_out = np.zeros(events, bool)
    held_out[np.random.default_rng(seed).choice(events, val_queries, replace=False)] = True
    np.savez(path, train_user=data.event_user[~held_out].astype(np.int32),
             train_film=data.event_film[~held_out].astype(np.int32),
             val_user=data.event_user[held_out].astype(np.int32),
             val_film=data.event_film[held_out].astype(np.int64), n_films=films)
    return {"rows": events - val_queries, "val_queries": val_queries}


def _run_side(side: str, data: Path, work: Path, settings: dict[str, Any]) -> dict[str, Any]:
    out = work / side
    out.mkdir()
    log(f"training the {side} side in its own process")
    subprocess.run([sys.executable, "-m", "jointspace.bench.train_side", side, str(data), str(out),
                    json.dumps(settings)], check=True)
    result = json.loads((out / "result.json").read_text())
    with np.load(out / "vectors.npz") as vectors:
        users, films = vectors["users"], vectors["films"]
    with np.load(data) as archive:
        targets = archive["val_film"]
    trials = Trials(np.arange(len(targets)), targets, len(targets))
    return {
        "examples_per_second": round(result["examples_per_second"], 1),
        "timed_seconds": round(result["timed_seconds"], 4),
        "examples_per_cpu_second": round(result["examples_per_cpu_second"], 1),
        "peak_rss_mb": round(result["peak_rss_mb"], 1),
        "threads": result["threads"],  # intra-op, inter-op, as the side's TensorFlow reports them
        **_recalls(model_ranks(users, films, trials), trials, len(films)),
    }


def _recalls(ranks: np.ndarray, trials: Trials, num_films: int) -> dict[str, float]:
    quality = summarize(ranks, trials, KS, num_films)
    return {f"recall@{k}": round(quality[f"recall@{k}"], 4) for k in KS}


@dataclass(frozen=True)
class OwnSide:
    """The jointspace side's settings (the TFRS side's are the tutorial's, fixed; the defaults are
    the command line's). `batch_size` None trains at the TFRS side's batch; otherwise a divisor
    of it, with proportionally more steps, so that both sides see the same examples."""

    batch_size: int | None
    learning_rate: float
    id_norm: str
    temperature: float


def default_threads() -> int:
    """The cores this process may run on (both pools of both sides get this many)."""
    return len(os.sched_getaffinity(0))


def run(films: int, users: int, dim: int, steps: int | None, batch_size: int, warmup: int, val_queries: int,
        own: OwnSide, seed: int = 0, work: Path | None = None,
        intra_op_threads: int | None = None, inter_op_threads: int | None = None) -> dict[str, Any]:
    """`steps` None: one pass over the training rows (warm-up steps included)."""
    own_batch = own.batch_size or batch_size
    if batch_size % own_batch:
        raise InvalidInput(f"--jointspace-batch-size {own_batch} must divide --batch-size {batch_size}")
    threads = {"intra_op_threads": intra_op_threads or default_threads(),
               "inter_op_threads": inter_op_threads or default_threads()}
    with tempfile.TemporaryDirectory(prefix="jointspace-bench-train-") as scratch:
        root = Path(work or scratch)
        root.mkdir(parents=True, exist_ok=True)
        log(f"generating {films} films × {users} users")
        split = _write_split(root / "split.npz", films, users, val_queries, seed)
        if steps is None:
            steps = split["rows"] // batch_size - warmup
            if steps < 1:
                raise InvalidInput(f"one pass over {split['rows']} rows is {split['rows'] // batch_size} "
                                   f"batches of {batch_size}, not more than --warmup {warmup}")
        settings = {"dim": dim, "steps": steps, "batch_size": batch_size, "warmup": warmup, "seed": seed,
                    **threads, "jointspace": asdict(replace(own, batch_size=own_batch))}
        sides = {side: _run_side(side, root / "split.npz", root, settings) for side in SIDES}
        popularity = _popularity_recall(root / "split.npz")
    speed_ratio = sides["jointspace"]["examples_per_second"] / sides["tfrs"]["examples_per_second"]
    cpu_ratio = sides["jointspace"]["examples_per_cpu_second"] / sides["tfrs"]["examples_per_cpu_second"]
    recall_at_least = all(sides["jointspace"][f"recall@{k}"] >= sides["tfrs"][f"recall@{k}"] for k in KS)
    examples = (warmup + steps) * batch_size
    return {
        "films": films, "users": users, **split, "dim": dim, "batch_size": batch_size,
        "warmup_steps": warmup, "timed_steps": steps, "examples_seen": examples,
        "passes": round(examples / split["rows"], 3), **threads,
        "jointspace": asdict(replace(own, batch_size=own_batch)), "sides": sides, "popularity": popularity,
        "speed_ratio": round(speed_ratio, 3), "cpu_speed_ratio": round(cpu_ratio, 3), "target_ratio": TARGET_RATIO,
        "recall_at_least_tfrs": recall_at_least,
        "target_met": speed_ratio >= TARGET_RATIO and recall_at_least,
    }


def _popularity_recall(data: Path) -> dict[str, float]:
    """Recall of the same held-out rows when every user gets the films most watched in training:
    the floor a trained model must clear before its recall says anything about tastes."""
    with np.load(data) as archive:
        watched = np.bincount(archive["train_film"], minlength=int(archive["n_films"]))
        targets = archive["val_film"]
    trials = Trials(np.arange(len(targets)), targets, len(targets))
    return _recalls(popularity_ranks(watched, trials), trials, len(watched))


def table(result: dict[str, Any]) -> str:
    """The result as a Markdown table (as pasted into docs/benchmarks.md)."""
    own = result["jointspace"]
    batches = {"tfrs": result["batch_size"], "jointspace": own["batch_size"]}
    lines = ["| side | batch | examples/s | examples/CPU-s | timed s | peak RSS MB | "
             + " | ".join(f"recall@{k}" for k in KS) + " |", "|---|---:|---:|---:|---:|---:|" + "---:|" * len(KS)]
    for side, values in result["sides"].items():
        recalls = " | ".join(f"{values[f'recall@{k}']:.4f}" for k in KS)
        lines.append(f"| {side} | {batches[side]:,} | {values['examples_per_second']:,.0f} | "
                     f"{values['examples_per_cpu_second']:,.0f} | {values['timed_seconds']} | "
                     f"{values['peak_rss_mb']:,.0f} | {recalls} |")
    popular = " | ".join(f"{result['popularity'][f'recall@{k}']:.4f}" for k in KS)
    lines.append(f"| (most watched films in training) | | | | | | {popular} |")
    lines.append(f"\nspeed ratio (jointspace / tfrs): {result['speed_ratio']:.2f} by the clock, "
                 f"{result['cpu_speed_ratio']:.2f} by CPU time "
                 f"(target ≥ {TARGET_RATIO:g}); {result['examples_seen']:,} examples seen by each side "
                 f"(passes over the {result['rows']:,} rows: {result['passes']:g}), {result['val_queries']:,} "
                 f"held-out rows; threads on both sides: intra-op {result['intra_op_threads']}, "
                 f"inter-op {result['inter_op_threads']}\n"
                 f"jointspace side: learning rate {own['learning_rate']:g}, temperature {own['temperature']:g}, "
                 f"id norm {own['id_norm']}; recall at least the TFRS "
                 f"loop's at every k: {'yes' if result['recall_at_least_tfrs'] else 'no'}; "
                 f"target (≥ {TARGET_RATIO:g}× at equal or better recall): "
                 f"{'met' if result['target_met'] else 'not met'}")
    return "\n".join(lines)
