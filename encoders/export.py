"""Export of a trained model: one SavedModel per encoder plus `manifest.json`.

The manifest is what the index builder and the server read first: the dimension, which encoder
answers which modality, the audio rate, the validation figures, and a model version that every
index generation records so that queries and index always come from the same model. An
ensemble's manifest also lists its members, each a complete model of its own.
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
MEMBERS = "members"
FORMAT = 1


def new_model_version() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(4)


def export_model(trained: TrainedModel | Sequence[TrainedModel], out: Path) -> dict[str, Any]:
    """Write to a temporary sibling and rename, so a crash never leaves a half model at `out`.

    Several trained models (`train_members`) become one ensemble model: each member is a
    complete model under `members/<i>`, and the top manifest lists them. The ensemble's space is
    their spaces side by side (dim = the sum of theirs), each member's vector scaled by
    1/sqrt(members), so an inner product in it is the mean of the members' own scores and a
    unit vector stays a unit vector (`EncoderSet` does the joining)."""
    out = Path(out)
    members = [trained] if isinstance(trained, TrainedModel) else list(trained)
    staging = out.with_name(f".{out.name}.partial-{secrets.token_hex(4)}")
    staging.mkdir(parents=True)
    try:
        if len(members) == 1:
            manifest = _write_model(members[0], staging)
        else:
            manifest = _write_ensemble(members, staging)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _write_model(trained: TrainedModel, folder: Path) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    encoders = {}
    for name, encoder in trained.encoders.items():
        entry = encoder.export(trained.towers[name], folder / name)
        encoders[name] = {"path": name, "modalities": list(encoder.modalities), **entry}
    return _write_manifest(folder, _manifest(trained.dim, encoders, trained, trained.metrics))


def _write_ensemble(members: list[TrainedModel], folder: Path) -> dict[str, Any]:
    paths = [f"{MEMBERS}/{index}" for index in range(len(members))]
    written = [_write_model(member, folder / path) for member, path in zip(members, paths)]
    # Each modality's entry as in the first member, so that tools reading the manifest (which
    # modalities, which audio rate) need not know about members; EncoderSet loads the members.
    encoders = {name: {**entry, "path": f"{paths[0]}/{entry['path']}"}
                for name, entry in written[0]["encoders"].items()}
    manifest = _manifest(sum(m["dim"] for m in written), encoders, members[0],
                         {"members": [m["metrics"] for m in written]})
    return _write_manifest(folder, {**manifest, "members": paths})


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _manifest(dim: int, encoders: dict[str, Any], trained: TrainedModel,
              metrics: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "model_version": new_model_version(),
        "jointspace_version": jointspace.__version__,
        "dim": dim,
        "encoders": encoders,
        "pair_types": [p.name for p in trained.pair_types],
        "training": {
            "epochs": trained.config.epochs,
            "batch_size": trained.config.batch_size,
            "learning_rate": trained.config.learning_rate,
            "temperature": trained.config.temperature,
            "seed": trained.config.seed,
            "final_loss": trained.history[-1] if trained.history else None,
        },
        "metrics": metrics,
    }


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
