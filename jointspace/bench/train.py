"""Id two-tower training speed: a plain TFRS loop against jointspace's own, side by side.

Issue 4's target: on the synthetic generator at one million films × half a million users (d = 32)
jointspace's training path runs at least twice as many examples/second as a plain TFRS loop
(`tfrs.tasks.Retrieval` with metrics off, `model.fit`, batch 4096, Adagrad 0.1 as in the TFRS
basic-retrieval tutorial), at equal or better validation recall. Both sides train on the same
(user, film) rows for the same number of steps of the same batch size, one after the other in one
run, each in its own process (jointspace/bench/train_side.py) so that peak memory is measured per
side. The first steps (tracing, first touches of the tables) are not timed. Validation is the
same for both: held-out (user, film) rows, each user's vector against every film's vector, exact
(jointspace/core/retrieval_metrics.py), as the TFRS tutorial's top-k accuracy counts it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
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
        "peak_rss_mb": round(result["peak_rss_mb"], 1),
        **_recalls(model_ranks(users, films, trials), trials, len(films)),
    }


def _recalls(ranks: np.ndarray, trials: Trials, num_films: int) -> dict[str, float]:
    quality = summarize(ranks, trials, KS, num_films)
    return {f"recall@{k}": round(quality[f"recall@{k}"], 4) for k in KS}


def run(films: int, users: int, dim: int, steps: int, batch_size: int, warmup: int, val_queries: int,
        learning_rate: float, seed: int = 0, work: Path | None = None,
        jointspace_batch_size: int | None = None, id_norm: str = "clip",
        temperature: float = 0.2) -> dict[str, Any]:
    own_batch = jointspace_batch_size or batch_size
    if batch_size % own_batch:
        raise InvalidInput(f"--jointspace-batch-size {own_batch} must divide --batch-size {batch_size}")
    settings = {"dim": dim, "steps": steps, "batch_size": batch_size, "warmup": warmup,
                "learning_rate": learning_rate, "seed": seed, "jointspace_batch_size": own_batch,
                "id_norm": id_norm, "temperature": temperature}
    with tempfile.TemporaryDirectory(prefix="jointspace-bench-train-") as scratch:
        root = Path(work or scratch)
        root.mkdir(parents=True, exist_ok=True)
        log(f"generating {films} films × {users} users")
        split = _write_split(root / "split.npz", films, users, val_queries, seed)
        if (warmup + steps) * batch_size > split["rows"]:
            log(f"note: {warmup + steps} steps of {batch_size} pass over the {split['rows']} rows "
                "more than once")
        sides = {side: _run_side(side, root / "split.npz", root, settings) for side in SIDES}
        popularity = _popularity_recall(root / "split.npz")
    speed_ratio = sides["jointspace"]["examples_per_second"] / sides["tfrs"]["examples_per_second"]
    recall_at_least = all(sides["jointspace"][f"recall@{k}"] >= sides["tfrs"][f"recall@{k}"] for k in KS)
    return {
        "films": films, "users": users, **split, "dim": dim, "batch_size": batch_size,
        "jointspace_batch_size": own_batch,
        "warmup_steps": warmup, "timed_steps": steps, "examples_seen": (warmup + steps) * batch_size,
        "jointspace_learning_rate": learning_rate, "jointspace_id_norm": id_norm,
        "jointspace_temperature": temperature, "sides": sides, "popularity": popularity,
        "speed_ratio": round(speed_ratio, 3), "target_ratio": TARGET_RATIO,
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
    lines = ["| side | examples/s | timed s | peak RSS MB | " + " | ".join(f"recall@{k}" for k in KS) + " |",
             "|---|---:|---:|---:|" + "---:|" * len(KS)]
    for side, values in result["sides"].items():
        recalls = " | ".join(f"{values[f'recall@{k}']:.4f}" for k in KS)
        lines.append(f"| {side} | {values['examples_per_second']:,.0f} | {values['timed_seconds']} | "
                     f"{values['peak_rss_mb']:,.0f} | {recalls} |")
    popular = " | ".join(f"{result['popularity'][f'recall@{k}']:.4f}" for k in KS)
    lines.append(f"| (most watched films in training) | | | | {popular} |")
    lines.append(f"\nspeed ratio (jointspace / tfrs): {result['speed_ratio']:.2f} "
                 f"(target ≥ {TARGET_RATIO:g}); {result['examples_seen']:,} examples seen by each side "
                 f"(batch: tfrs {result['batch_size']}, jointspace {result['jointspace_batch_size']}), "
                 f"{result['val_queries']:,} held-out rows\n"
                 f"jointspace side: learning rate {result['jointspace_learning_rate']:g}, temperature "
                 f"{result['jointspace_temperature']:g}, id norm {result['jointspace_id_norm']}; recall at "
                 f"least the TFRS loop's at every k: {'yes' if result['recall_at_least_tfrs'] else 'no'}; "
                 f"target (≥ {TARGET_RATIO:g}× at equal or better recall): "
                 f"{'met' if result['target_met'] else 'not met'}")
    return "\n".join(lines)
