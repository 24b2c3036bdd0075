"""A loaded, immutable generation: FAISS indexes per modality plus the catalog store.

One FAISS index per result modality means a search restricted to some modalities ("text → audio
only") gets exactly k hits from the indexes it asks, with no oversampling; a search over several
modalities merges their top-k lists by score, which is valid because all scores are inner
products of vectors of length at most 1 in the same space. A generation is never changed after
loading, so readers need no locks; a new generation replaces it as a whole.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from jointspace.core.errors import Corrupt, InvalidInput
from jointspace.server.index.catalog_store import STORE_FILE, StoreReader
from jointspace.server.index.filters import FieldIndex, MetadataFilter
from jointspace.server.index.generation_manifest import GenerationManifest
from jointspace.server.index.index_directory import MANIFEST, sha256_of
from jointspace.server.index.index_types import describe
from jointspace.server.index.lexical import LEXICAL_FILE, POSTINGS_FILE, LexicalIndex
from jointspace.server.index.packed_keys import PackedKeys
from jointspace.server.index.tuning import apply_search_params


def index_file(modality: str) -> str:
    return f"index-{modality}.faiss"


class CorruptGeneration(Corrupt):
    """A generation's files do not match its manifest, or cannot be read back."""


class Generation:
    def __init__(self, path: Path) -> None:
        """Reads and checks everything before serving any of it: every file against its checksum
        in the manifest, then each FAISS index and the store against the manifest's counts and
        dimension (the manifest itself has no checksum; a damaged one fails these)."""
        self.path = Path(path)
        self.name = self.path.name
        manifest_path = self.path / MANIFEST
        try:
            self.manifest = GenerationManifest.read(manifest_path)
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise CorruptGeneration(f"{manifest_path}: unreadable ({type(error).__name__}: {error})") from None
        files, counts = self.manifest.files, self.manifest.counts
        self.dim, self.model_version = self.manifest.dim, self.manifest.model_version
        self.factory = self.manifest.index_factory
        # Tuned at build time (tuning.py); FAISS files keep them too, the manifest says so openly.
        self.search_params = self.manifest.search_params
        for file, digest in files.items():
            if not (self.path / file).is_file() or sha256_of(self.path / file) != digest:
                raise CorruptGeneration(f"{self.path / file}: missing or checksum mismatch")
        missing = [index_file(m) for m in counts if index_file(m) not in files] + (
            [STORE_FILE] if STORE_FILE not in files else [])
        if missing:
            raise CorruptGeneration(f"{manifest_path}: lists no checksum for {', '.join(missing)}")
        try:
            self.store = StoreReader(self.path / STORE_FILE)
            self.fields = FieldIndex(self.store.field_values)
            self.keys = {m: np.asarray(k, dtype=object) for m, k in self.store.keys_by_modality().items()}
            self.packed_keys = {m: PackedKeys.of(k) for m, k in self.keys.items()}
            # Most large catalogs carry no metadata: their hits then skip the store (searching.py).
            self.with_metadata = self.store.modalities_with_metadata()
        except sqlite3.Error as error:
            raise CorruptGeneration(f"{self.path / STORE_FILE}: unreadable ({error})") from None
        # Generations written before hybrid search have none: their text queries are vector only.
        try:
            self.lexical = LexicalIndex(self.path) if LEXICAL_FILE in files and POSTINGS_FILE in files else None
        except (sqlite3.Error, KeyError, ValueError, OSError) as error:
            raise CorruptGeneration(f"{self.path / LEXICAL_FILE}: unreadable ({error})") from None
        self.indexes: dict[str, faiss.Index] = {}
        for modality, count in counts.items():
            index = self._read_index(modality)
            stored = len(self.keys.get(modality, ()))
            if index.d != self.dim or index.ntotal != count or stored != count:
                raise CorruptGeneration(
                    f"{self.path}: {modality}: the manifest says {count} vectors of dimension {self.dim}, "
                    f"the FAISS file holds {index.ntotal} of dimension {index.d}, the store {stored} keys")
            apply_search_params(index, self.search_params.get(modality, {}))
            self.indexes[modality] = index
        # Worked out once: every search checks its result modalities against them.
        self._known = frozenset({"id", "text", "audio", "vector", *self.indexes})
        self._sorted = sorted(self.indexes)

    def _read_index(self, modality: str) -> faiss.Index:
        path = self.path / index_file(modality)
        try:
            return faiss.read_index(str(path))
        except RuntimeError as error:  # FAISS reports a bad file as a C++ exception
            reason = str(error).strip().splitlines()[-1] if str(error).strip() else "unreadable"
            raise CorruptGeneration(f"{path}: unreadable ({reason})") from None

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
            "index_type": self._index_type(),
            "model_version": self.model_version,
            "size_by_modality": {m: i.ntotal for m, i in self.indexes.items()},
            "bytes_per_vector": file_bytes / self.size if self.size else 0.0,
        }

    def _index_type(self) -> str:
        """E.g. `HNSW32,Flat (IndexHNSWFlat; id efSearch=48)`: the factory, FAISS classes, and the
        search parameters tuned at build time."""
        classes = ", ".join(sorted({describe(i) for i in self.indexes.values()}))
        tuned = ", ".join(f"{modality} {name}={value}" for modality, params in sorted(self.search_params.items())
                          for name, value in params.items())
        return f"{self.factory} ({classes}{'; ' + tuned if tuned else ''})"

    def check_modalities(self, modalities: Sequence[str], also_present: Collection[str] = ()) -> list[str]:
        """Requested result modalities (empty: all). A modality absent from this generation is
        not an error (it simply has no hits); a name no encoder knows is. `also_present`: the
        modalities of online changes, which may hold entries where the generation has none."""
        known = self._known
        for modality in modalities:
            if modality not in known:
                raise InvalidInput(f"modalities: unknown modality {modality!r}; known: {', '.join(sorted(known))}")
        present: Collection[str] = set(self.indexes).union(also_present) if also_present else self.indexes
        if modalities:
            return [m for m in dict.fromkeys(modalities) if m in present]  # once each
        return sorted(present) if also_present else list(self._sorted)

    def filter_rows(self, modality: str, filters: Sequence[MetadataFilter]) -> np.ndarray:
        """Sorted rows of `modality` whose metadata passes every filter (at least one filter)."""
        return self.fields.rows(modality, filters)
