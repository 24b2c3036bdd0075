"""Export of a trained model: one SavedModel per encoder plus `manifest.json`.

The manifest is what the index builder and the server read first: the dimension, which encoder
answers which modality, the audio rate, the validation figures, and a model version that every
index generation records so that queries and index always come from the same model. An
ensemble is exported the same way: each encoder's SavedModel holds every member's tower.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import jointspace
from jointspace.core.errors import InvalidInput, JointspaceError
from jointspace.encoders.manifest import MANIFEST, EncoderEntry, ModelManifest, read_manifest
from jointspace.encoders.training.trainer import TrainedModel


def new_model_version() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(4)


def export_model(trained: TrainedModel | Sequence[TrainedModel], out: Path) -> ModelManifest:
    """Write to a temporary sibling and swap it in by rename (`_swap`), so a crash never leaves
    a half model at `out`, and `out` is only ever replaced when it is a model (`check_model_out`).

    Several trained models (`train_members`) become one ensemble model. Its space is their
    spaces side by side (dim = the sum of theirs), each member's vector scaled by
    1/sqrt(members), so an inner product in it is the mean of the members' own scores and a
    unit vector stays a unit vector. Each encoder's SavedModel computes that joined vector in
    one call (the members share their vocabularies and audio front end, so a query is decoded
    and prepared once), and the index, the server and any other caller of the SavedModels see
    an ordinary model."""
    check_model_out(out)
    out = Path(os.path.abspath(out))  # `..` and `.` have no name to put a sibling beside
    members = [trained] if isinstance(trained, TrainedModel) else list(trained)
    staging = out.with_name(f".{out.name}.partial-{secrets.token_hex(4)}")
    staging.mkdir(parents=True)
    try:
        manifest = _write_model(members, staging)
        _swap(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def check_model_out(out: Path) -> None:
    """Refuse an output folder that holds anything a model export did not write: replacing it
    would delete the user's files (`--out data` once deleted the pair file being trained on).
    A new or empty folder, or a model's own folder, is fine. The CLI calls this before training,
    so that a wrong `--out` costs nothing."""
    folder = Path(os.path.abspath(out))
    if folder.is_symlink():
        raise InvalidInput(f"--out {out}: a symbolic link; give the folder it points to")
    if folder.exists() and not folder.is_dir():
        raise InvalidInput(f"--out {out}: exists and is not a folder")
    if folder.exists():
        foreign = _not_of_a_model(folder)
        if foreign:
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise InvalidInput(f"--out {out}: not a jointspace model folder ({shown} would be deleted); "
                               f"give a new or empty folder, or a model folder to replace")
    parent = folder.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise InvalidInput(f"--out {out}: cannot write in {parent}")


def _not_of_a_model(folder: Path) -> list[str]:
    """Names in `folder` that are not the manifest or an encoder folder its manifest names (all
    of them when there is no readable manifest)."""
    names = sorted(p.name for p in folder.iterdir())
    try:
        encoders = read_manifest(folder).encoders
    except JointspaceError:
        return names
    ours = {MANIFEST} | {entry.path for entry in encoders.values()}
    return [name for name in names if name not in ours]


def _swap(new: Path, out: Path) -> None:
    """Put the finished model `new` at `out`. A model already there is renamed aside and deleted
    only once the new one is in place, so at every moment one whole model is at `out` or beside
    it. An empty folder is replaced by the rename itself."""
    old = None
    if out.exists() and any(out.iterdir()):
        old = out.with_name(f".{out.name}.old-{secrets.token_hex(4)}")
        os.replace(out, old)
    try:
        os.replace(new, out)
    except BaseException:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)  # the new model is in place: a leftover is no failure


def _write_model(members: list[TrainedModel], folder: Path) -> ModelManifest:
    first = members[0]
    if any(_trained_alike(first) != _trained_alike(member) for member in members[1:]):
        raise InvalidInput("ensemble members must be trained on the same rows with the same settings "
                           "(train_members): their encoders differ")
    encoders = {}
    for name, encoder in first.encoders.items():
        settings = encoder.export([member.towers[name] for member in members], folder / name)
        encoders[name] = EncoderEntry(name, list(encoder.modalities), settings)
    # Each member's validation figures, on its own split: no figure of the joined model exists.
    metrics = first.metrics if len(members) == 1 else {"members": [m.metrics for m in members]}
    manifest = ModelManifest(
        model_version=new_model_version(),
        jointspace_version=jointspace.__version__,
        dim=sum(member.dim for member in members),
        encoders=encoders,
        pair_types=[p.name for p in first.pair_types],
        training={
            "epochs": first.config.epochs,
            "batch_size": first.config.batch_size,
            "catalog_batch_size": first.config.catalog_batch_size,
            "learning_rate": first.config.learning_rate,
            "temperature": first.config.temperature,
            "seed": first.config.seed,
            "members": len(members),
            "weights": [m.weights for m in members] if len(members) > 1 else first.weights,
            "final_loss": _mean([m.history[-1] for m in members if m.history]),
        },
        metrics=metrics,
    )
    manifest.write(folder)
    return manifest


def _trained_alike(trained: TrainedModel) -> tuple:
    """What members must share for one SavedModel to prepare a query once for all of them."""
    return (trained.dim, [p.name for p in trained.pair_types],
            {name: (encoder.settings, encoder.num_values()) for name, encoder in trained.encoders.items()})


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
