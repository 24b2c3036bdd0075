"""`manifest.json` of an index generation, typed: the model version that embedded it, the FAISS
factory, the count and tuned search parameters of each modality's index, and a SHA-256 of every
file, which the server checks before serving any of them (a FAISS file is read as trusted).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jointspace.server.index.tuning import TUNING_K

RECALL_FIELD = f"recall@{TUNING_K}"


@dataclass(frozen=True)
class GenerationManifest:
    dim: int
    model_version: str
    index_factory: str
    counts: dict[str, int]  # modality -> vectors in its FAISS index
    files: dict[str, str]  # file name -> SHA-256
    search_params: dict[str, dict[str, int]] = field(default_factory=dict)  # tuned at build time
    recall: dict[str, float] = field(default_factory=dict)  # recall@TUNING_K with those parameters
    target_recall: float = 0.0
    runner: str = "local"
    created: str = ""
    catalogs: list[str] = field(default_factory=list)
    model_dir: str | None = None  # set by a server rebuild: the model a restart must serve

    def as_json(self) -> dict[str, Any]:
        fields = {"dim": self.dim, "model_version": self.model_version, "index_factory": self.index_factory,
                  "counts": self.counts, "search_params": self.search_params, RECALL_FIELD: self.recall,
                  "target_recall": self.target_recall, "runner": self.runner, "files": self.files,
                  "created": self.created, "catalogs": self.catalogs}
        return fields if self.model_dir is None else {**fields, "model_dir": self.model_dir}

    def write(self, folder: Path, name: str) -> None:
        (Path(folder) / name).write_text(json.dumps(self.as_json(), indent=2) + "\n")

    @classmethod
    def read(cls, path: Path) -> GenerationManifest:
        """Raises OSError, ValueError, KeyError or TypeError for a file that is not one."""
        raw = json.loads(Path(path).read_text())
        if not isinstance(raw, dict):
            raise TypeError("not a JSON object")
        model_dir = raw.get("model_dir")
        return cls(
            dim=_positive(raw["dim"]), model_version=str(raw["model_version"]),
            index_factory=str(raw["index_factory"]),
            counts={str(m): int(n) for m, n in dict(raw["counts"]).items()},
            files={str(f): str(d) for f, d in dict(raw["files"]).items()},
            search_params={str(m): {str(k): int(v) for k, v in dict(p).items()}
                           for m, p in dict(raw.get("search_params", {})).items()},
            recall={str(m): float(r) for m, r in dict(raw.get(RECALL_FIELD, {})).items()},
            target_recall=float(raw.get("target_recall", 0.0)), runner=str(raw.get("runner", "local")),
            created=str(raw.get("created", "")), catalogs=[str(c) for c in raw.get("catalogs", [])],
            model_dir=None if model_dir is None else str(model_dir),
        )


def _positive(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"dim {value!r} is not a positive integer")
    return value
