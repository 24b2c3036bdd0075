"""Export of a trained model: one SavedModel per encoder plus `manifest.json`.

The manifest is what the index builder and the server read first: the dimension, which encoder
answers which modality, the audio rate, the validation figures, and a model version that every
index generation records so that queries and index always come from the same model.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

import jointspace
from jointspace.encoders.training import TrainedModel
from jointspace.errors import InvalidInput, NotFound

MANIFEST = "manifest.json"
FORMAT = 1


def new_model_version() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(4)


def export_model(trained: TrainedModel, out: Path) -> dict[str, Any]:
    """Write to a temporary sibling and rename, so a crash never leaves a half model at `out`."""
    out = Path(out)
    staging = out.with_name(f".{out.name}.partial-{secrets.token_hex(4)}")
    staging.mkdir(parents=True)
    try:
        encoders = {}
        for name, encoder in trained.encoders.items():
            entry = encoder.export(trained.towers[name], staging / name)
            encoders[name] = {"path": name, "modalities": list(encoder.modalities), **entry}
        manifest = {
            "format": FORMAT,
            "model_version": new_model_version(),
            "jointspace_version": jointspace.__version__,
            "dim": trained.dim,
            "encoders": encoders,
            "pair_types": [p.name for p in trained.pair_types],
            "training": {
                "epochs": trained.config.epochs,
                "batch_size": trained.config.batch_size,
                "learning_rate": trained.config.learning_rate,
                "temperature": trained.config.temperature,
                "final_loss": trained.history[-1] if trained.history else None,
            },
            "metrics": trained.metrics,
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def read_manifest(model_dir: Path) -> dict[str, Any]:
    path = Path(model_dir) / MANIFEST
    if not path.is_file():
        raise NotFound(f"{model_dir}: not a jointspace model (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise InvalidInput(f"{path}: not valid JSON ({error.msg})") from None
    if manifest.get("format") != FORMAT:
        raise InvalidInput(f"{path}: unsupported model format {manifest.get('format')!r}")
    return manifest
