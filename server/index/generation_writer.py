"""Writing a generation, the same way whichever runner computed it.

Every builder (the local one in build/local_builder.py, the Apache Beam one in
build/beam_builder.py) fills a staging folder with one tuned FAISS file per modality and the
catalog store, then `publish_generation` adds the manifest, with a checksum of every file, and
makes it live. Keeping these steps here is what guarantees that a generation does not depend on
how it was built.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss

from jointspace.server.index.catalog_store import EMPTY_METADATA, STORE_FILE, metadata_text, write_store
from jointspace.server.index.generation import index_file
from jointspace.server.index.generation_manifest import GenerationManifest
from jointspace.server.index.index_directory import MANIFEST, IndexDirectory, sha256_of
from jointspace.server.index.lexical import LEXICAL_FILE, write_lexical
from jointspace.server.index.lexical_terms import document
from jointspace.server.index.tuning import Neighbours, TuningQueries, tune_search
from jointspace.server.index.write_sites import write_site

# (modality, FAISS row id, key, metadata, the entry's text or None): one catalog entry of a build
StoreRow = tuple[str, int, str, dict[str, Any], "str | None"]


@dataclass(frozen=True)
class IndexSummary:
    """What the manifest records about one modality's index."""

    modality: str
    count: int
    search_params: dict[str, int]
    recall: float  # recall@TUNING_K against exact search with `search_params`

    def to_dict(self) -> dict[str, Any]:
        return {"modality": self.modality, "count": self.count,
                "search_params": self.search_params, "recall": self.recall}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> IndexSummary:
        """Back from `to_dict` (a Beam build passes summaries from its workers through a file)."""
        return cls(values["modality"], values["count"], values["search_params"], values["recall"])


@contextmanager
def staging_area(index_root: Path) -> Iterator[tuple[IndexDirectory, Path]]:
    """A fresh staging folder, removed if the build fails (the live generation is untouched)."""
    directory = IndexDirectory(index_root)
    directory.remove_partials()
    staging = directory.staging()
    try:
        yield directory, staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_tuned_index(staging: Path, modality: str, index: faiss.Index, queries: TuningQueries,
                      truth: Neighbours, target_recall: float) -> IndexSummary:
    """Tune the search parameter (stored in the FAISS file and in the manifest), then write."""
    tuning = tune_search(index, queries, truth, target_recall)
    path = staging / index_file(modality)
    with write_site("index", f"writing the FAISS file {path.name}"):
        faiss.write_index(index, str(path))
    return IndexSummary(modality, int(index.ntotal), tuning.params, round(tuning.recall, 4))


def write_catalog_store(staging: Path, rows: Iterable[StoreRow], model_version: str) -> None:
    """The catalog store and the lexical index beside it (lexical.py), from the same rows, read
    once: a million rows held in a list would survive long enough for Python's cyclic garbage
    collector to walk them, and the whole process's objects, again and again."""
    documents: list[tuple[str, int, str]] = []

    def store_rows() -> Iterator[tuple[str, int, str, str]]:
        for modality, row, key, metadata, text in rows:
            if text or metadata:  # only a text entry or metadata has words (a bare vector has none)
                documents.append((modality, row, document(modality, text, metadata)))
                yield modality, row, key, metadata_text(metadata)
            else:
                yield modality, row, key, EMPTY_METADATA

    with write_site("store", f"writing the catalog store {STORE_FILE}"):
        write_store(staging / STORE_FILE, store_rows(), {"model_version": model_version})
    with write_site("store", f"writing the lexical index {LEXICAL_FILE}"):
        write_lexical(staging, documents)


def publish_generation(directory: IndexDirectory, staging: Path, *, dim: int, model_version: str,
                       factory: str, summaries: Sequence[IndexSummary], catalogs: Sequence[Path],
                       target_recall: float, runner: str, model_dir: Path | None = None,
                       go_live: bool = True) -> str:
    """Write the manifest over the staged files and make the generation live; returns its name.
    `go_live=False` only places it (a server checks it before switching, see rebuild.py);
    `model_dir` lets a server that restarts find the model this generation is pinned to."""
    ordered = sorted(summaries, key=lambda s: s.modality)
    manifest = GenerationManifest(
        dim=dim,
        model_version=model_version,
        index_factory=factory,
        counts={s.modality: s.count for s in ordered},
        search_params={s.modality: s.search_params for s in ordered},
        recall={s.modality: s.recall for s in ordered},
        target_recall=target_recall,
        runner=runner,
        files={path.name: sha256_of(path) for path in sorted(staging.iterdir())},
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        catalogs=[str(Path(p).resolve()) for p in catalogs],
        model_dir=None if model_dir is None else str(Path(model_dir).resolve()),
    )
    with write_site("manifest", f"writing the manifest {MANIFEST} and placing the generation"):
        manifest.write(staging, MANIFEST)
        name = directory.place(staging)
    if go_live:
        directory.make_live(name)
    return name
