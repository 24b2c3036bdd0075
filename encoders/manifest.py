"""`manifest.json` of an exported model, typed: what the index builders and the server read
first (the dimension, which encoder answers which modality, the model version that every index
generation records). Reading it needs neither TensorFlow nor the trainer, so that serving a
model never loads the training code.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from jointspace.core.errors import InvalidInput, NotFound

MANIFEST = "manifest.json"
FORMAT = 1


@dataclass(frozen=True)
class EncoderEntry:
    """One exported encoder: its SavedModel folder (relative to the model), the modalities it
    answers, and the encoder's own settings (vocabulary sizes, audio rate...), which only that
    encoder reads."""

    path: str
    modalities: list[str]
    settings: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"path": self.path, "modalities": list(self.modalities), **self.settings}


@dataclass(frozen=True)
class ModelManifest:
    model_version: str
    dim: int
    encoders: dict[str, EncoderEntry]
    pair_types: list[str] = field(default_factory=list)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    jointspace_version: str = ""
    format: int = FORMAT

    @property
    def modalities(self) -> list[str]:
        """The query modalities the model's encoders answer (raw vectors aside)."""
        return sorted(m for entry in self.encoders.values() for m in entry.modalities)

    def as_json(self) -> dict[str, Any]:
        fields = asdict(self)
        fields["encoders"] = {name: entry.as_json() for name, entry in self.encoders.items()}
        return fields

    def write(self, model_dir: Path) -> None:
        (Path(model_dir) / MANIFEST).write_text(json.dumps(self.as_json(), indent=2) + "\n")


def read_manifest(model_dir: Path) -> ModelManifest:
    path = Path(model_dir) / MANIFEST
    if not path.is_file():
        raise NotFound(f"{model_dir}: not a jointspace model (no {MANIFEST})")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InvalidInput(f"{path}: not valid JSON ({error})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise InvalidInput(f"{path}: unsupported model format {raw.get('format') if isinstance(raw, dict) else raw!r}")
    if isinstance(raw.get("members"), list):
        # The first `train --ensemble` wrote each member as a model of its own under members/<i>.
        raise InvalidInput(f"{path}: an ensemble in the older members/<i> layout; train it again "
                           f"with `jointspace train --ensemble` to get one SavedModel per encoder")
    try:
        return _typed(raw)
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidInput(f"{path}: not a model manifest ({type(error).__name__}: {error})") from None


def _typed(raw: dict[str, Any]) -> ModelManifest:
    dim = raw["dim"]
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
        raise ValueError(f"dim {dim!r} is not a positive integer")
    encoders = {}
    for name, entry in dict(raw["encoders"]).items():
        settings = {k: v for k, v in entry.items() if k not in ("path", "modalities")}
        encoders[str(name)] = EncoderEntry(str(entry["path"]), [str(m) for m in entry["modalities"]], settings)
    return ModelManifest(
        model_version=str(raw["model_version"]), dim=dim, encoders=encoders,
        pair_types=list(raw.get("pair_types", [])), training=dict(raw.get("training", {})),
        metrics=dict(raw.get("metrics", {})), jointspace_version=str(raw.get("jointspace_version", "")),
    )
