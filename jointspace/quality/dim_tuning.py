"""`jointspace tune-dim`: train the same data at a few dimensions and recommend one.

The square-root rule (`--dim auto`) is a starting point, not a measurement of this data. A larger space costs
memory and search time in every index built from the model, so the recommendation is the
smallest dimension whose validation recall is within a tolerance of the best one, measured on
the same held-out rows (the validation split depends only on the seed) for every dimension.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from jointspace.core.errors import InvalidInput
from jointspace.core.progress import log
from jointspace.data.pairs import PairRows
from jointspace.encoders.training.config import TrainConfig
from jointspace.encoders.training.trainer import encoders_dim, train

DEFAULT_DIMS = (8, 16, 32, 64)
METRIC = "recall@10"
TOLERANCE = 0.02  # relative: within 2% of the best dimension's score


def tune_dim(rows: PairRows, config: TrainConfig, dims: Sequence[int] = DEFAULT_DIMS,
             tolerance: float = TOLERANCE) -> dict[str, Any]:
    """Train at each dimension; per dimension the validation metrics of every direction and
    their mean `METRIC` (the score), plus the recommendation. JSON-able."""
    if not config.validation_split or not 0 < config.validation_split < 1:
        raise InvalidInput("tune-dim needs a validation split between 0 and 1 (exclusive)")
    if not dims:
        raise InvalidInput("--dims: name at least one dimension")
    results: list[dict[str, Any]] = []
    num_values = 0
    for dim in sorted(set(dims)):
        log(f"tune-dim: training at dim {dim}")
        started = time.monotonic()
        trained = train(rows, replace(config, dim=dim))
        num_values = sum(e.num_values() for e in trained.encoders.values())
        scores = [m[METRIC] for m in trained.metrics.values() if METRIC in m]
        results.append({
            "dim": dim,
            "score": float(np.mean(scores)) if scores else 0.0,
            "validation": trained.metrics,
            "train_seconds": round(time.monotonic() - started, 1),
        })
    best = max(r["score"] for r in results)
    recommended = next(r["dim"] for r in results if r["score"] >= best * (1.0 - tolerance))
    return {"metric": METRIC, "tolerance": tolerance, "dims": results, "recommended": recommended,
            "auto_dim": encoders_dim(trained.encoders), "num_values": num_values}


def format_table(report: dict[str, Any]) -> str:
    """One line per dimension: each direction's validation recall and the mean."""
    directions = sorted({d for r in report["dims"] for d in r["validation"]})
    width = max([len("dim")] + [len(d) for d in directions]) + 2
    header = f"{'dim':>5}" + "".join(f"{d:>{width}}" for d in directions) + f"{'mean':>9}{'train s':>9}"
    lines = [f"validation {report['metric']} per dimension", header]
    for r in report["dims"]:
        cells = "".join(f"{r['validation'].get(d, {}).get(report['metric'], float('nan')):>{width}.4f}"
                        for d in directions)
        lines.append(f"{r['dim']:>5}{cells}{r['score']:>9.4f}{r['train_seconds']:>9.1f}")
    lines.append(f"recommended: --dim {report['recommended']} (the smallest within "
                 f"{report['tolerance']:.0%} of the best mean {report['metric']}); --dim auto would pick "
                 f"{report['auto_dim']} for {report['num_values']} distinct values")
    return "\n".join(lines)
