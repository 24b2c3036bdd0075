"""A loaded, immutable generation: FAISS indexes per modality plus the catalog store.

One FAISS index per result modality means a search restricted to some modalities ("text → audio
only") gets exactly k hits from the indexes it asks, with no oversampling; a search over several
modalities merges their top-k lists by score, which is valid because all scores are cosines in
the same space. A generation is never changed after loading, so readers need no locks; a new
generation replaces it as a whole.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import faiss
import numpy as np

from jointspace.errors import InvalidInput
from jointspace.hits import Hit
from jointspace.server.generations import MANIFEST, sha256_of
from jointspace.server.index_types import describe, tune_for_search
from jointspace.server.store import STORE_FILE, StoreReader


def index_file(modality: str) -> str:
    return f"index-{modality}.faiss"


class CorruptGeneration(Exception):
    """A generation's files do not match its manifest."""


class Generation:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.name = self.path.name
        manifest_path = self.path / MANIFEST
        try:
            self.manifest: dict[str, Any] = json.loads(manifest_path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise CorruptGeneration(f"{manifest_path}: unreadable ({error})") from None
        for file, digest in self.manifest["files"].items():
            if not (self.path / file).is_file() or sha256_of(self.path / file) != digest:
                raise CorruptGeneration(f"{self.path / file}: missing or checksum mismatch")
        self.dim: int = int(self.manifest["dim"])
        self.model_version: str = self.manifest["model_version"]
        self.factory: str = self.manifest["index_factory"]
        self.store = StoreReader(self.path / STORE_FILE)
        self.keys = {m: np.asarray(k, dtype=object) for m, k in self.store.keys_by_modality().items()}
        self.indexes: dict[str, faiss.Index] = {}
        for modality in self.manifest["counts"]:
            index = faiss.read_index(str(self.path / index_file(modality)))
            tune_for_search(index)
            self.indexes[modality] = index

    @property
    def modalities(self) -> list[str]:
        return sorted(self.indexes)

    @property
    def size(self) -> int:
        return sum(index.ntotal for index in self.indexes.values())

    def info(self) -> dict[str, Any]:
        file_bytes = sum((self.path / index_file(m)).stat().st_size for m in self.indexes)
        return {
            "generation": self.name,
            "size": self.size,
            "dim": self.dim,
            "index_type": f"{self.factory} ({', '.join(sorted({describe(i) for i in self.indexes.values()}))})",
            "model_version": self.model_version,
            "size_by_modality": {m: i.ntotal for m, i in self.indexes.items()},
            "bytes_per_vector": file_bytes / self.size if self.size else 0.0,
        }

    def check_modalities(self, modalities: Sequence[str]) -> list[str]:
        """Requested result modalities (empty: all). A modality absent from this generation is
        not an error (it simply has no hits); a name no encoder knows is."""
        known = {"id", "text", "audio", "vector"} | set(self.indexes)
        for modality in modalities:
            if modality not in known:
                raise InvalidInput(f"modalities: unknown modality {modality!r}; known: {', '.join(sorted(known))}")
        return [m for m in (modalities or self.modalities) if m in self.indexes]

    def search(self, vectors: np.ndarray, k: int, modalities: Sequence[str],
               excludes: Sequence[set[str]] | None = None, with_metadata: bool = True) -> list[list[Hit]]:
        """Top-k hits for each query row. `excludes[i]` are keys never returned for query i."""
        chosen = self.check_modalities(modalities)
        excludes = excludes or [set()] * len(vectors)
        depth = k + max((len(e) for e in excludes), default=0)
        candidates: list[list[tuple[float, str, int]]] = [[] for _ in range(len(vectors))]
        for modality in chosen:
            index = self.indexes[modality]
            scores, rows = index.search(vectors, min(depth, index.ntotal))
            for query, (score_row, id_row) in enumerate(zip(scores, rows)):
                candidates[query].extend(
                    (float(s), modality, int(r)) for s, r in zip(score_row, id_row) if r >= 0
                )
        results = []
        for query, found in enumerate(candidates):
            found.sort(key=lambda c: -c[0])
            hits = []
            for score, modality, row in found:
                key = self.keys[modality][row]
                if key not in excludes[query]:
                    hits.append((score, modality, row, key))
                    if len(hits) == k:
                        break
            results.append(self._hits(hits, with_metadata))
        return results

    def _hits(self, found: list[tuple[float, str, int, str]], with_metadata: bool) -> list[Hit]:
        metadata: dict[tuple[str, int], dict[str, Any]] = {}
        if with_metadata:
            for modality in {m for _, m, _, _ in found}:
                rows = [r for _, m, r, _ in found if m == modality]
                metadata.update({(modality, r): v for r, v in self.store.metadata(modality, rows).items()})
        return [Hit(key, score, m, metadata.get((m, r), {})) for score, m, r, key in found]
