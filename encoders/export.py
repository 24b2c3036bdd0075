"""Export of a trained model: one SavedModel per encoder plus `manifest.json`.

The manifest is what the index builder and the server read first: the dimension, which encoder
answers which modality, the audio rate, the validation figures, and a model version that every
index generation records so that queries and index always come from the same model. An
ensemble is exported the same way: each encoder's SavedModel holds every member's tower.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

import jointspace
from jointspace.encoders.training import TrainedModel
from jointspace.errors import InvalidInput, NotFound

MANIFEST = "manifest.json"
FORMAT = 1


def new_model_version() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(4)


def export_model(trained: TrainedModel | Sequence[TrainedModel], out: Path) -> dict[str, Any]:
    """Write to a temporary sibling and rename, so a crash never leaves a half model at `out`.

    Several trained models (`train_members`) become one ensemble model. Its space is their
    spaces side by side (dim = the sum of theirs), each member's vector scaled by
    1/sqrt(members), so an inner product in it is the mean of the members' own scores and a
    unit vector stays a unit vector. Each encoder's SavedModel computes that joined vector in
    one call (the members share their vocabularies and audio front end, so a query is decoded
    and prepared once), and the index, the server and any other caller of the SavedModels see
    an ordinary model."""
    out = Path(out)
    members = [trained] if isinstance(trained, TrainedModel) else list(trained)
    staging = out.with_name(f".{out.name}.partial-{secrets.token_hex(4)}")
    staging.mkdir(parents=True)
    try:
        manifest = _write_model(members, staging)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _write_model(members: list[TrainedModel], folder: Path) -> dict[str, Any]:
    first = members[0]
    if any(_trained_alike(first) != _trained_alike(member) for member in members[1:]):
        raise InvalidInput("ensemble members must be trained on the same rows with the same settings "
                           "(train_members): their encoders differ")
    encoders = {}
    for name, encoder in first.encoders.items():
        entry = encoder.export([member.towers[name] for member in members], folder / name)
        encoders[name] = {"path": name, "modalities": list(encoder.modalities), **entry}
    # Each member's validation figures, on its own split: no figure of the joined model exists.
    metrics = first.metrics if len(members) == 1 else {"members": [m.metrics for m in members]}
    manifest = {
        "format": FORMAT,
        "model_version": new_model_version(),
        "jointspace_version": jointspace.__version__,
        "dim": sum(member.dim for member in members),
        "encoders": encoders,
        "pair_types": [p.name for p in first.pair_types],
        "training": {
            "epochs": first.config.epochs,
            "batch_size": first.config.batch_size,
            "learning_rate": first.config.learning_rate,
            "temperature": first.config.temperature,
            "seed": first.config.seed,
            "members": len(members),
            "final_loss": _mean([m.history[-1] for m in members if m.history]),
        },
        "metrics": metrics,
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _trained_alike(trained: TrainedModel) -> tuple:
    """What members must share for one SavedModel to prepare a query once for all of them."""
    return (trained.dim, [p.name for p in trained.pair_types],
            {name: (encoder.settings, encoder.num_values()) for name, encoder in trained.encoders.items()})


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


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
    if isinstance(manifest.get("members"), list):
        # The first `train --ensemble` wrote each member as a model of its own under members/<i>.
        raise InvalidInput(f"{path}: an ensemble in the older members/<i> layout; train it again "
                           f"with `jointspace train --ensemble` to get one SavedModel per encoder")
    return manifest
