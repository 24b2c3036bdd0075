"""Local (in-process) index build: catalog → vectors → FAISS indexes + store → new generation."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Sequence

import faiss
import numpy as np

from jointspace.data.catalog import CatalogEntry, read_catalog
from jointspace.encoders.inference import EncoderSet
from jointspace.progress import Progress, log
from jointspace.server.generation import index_file
from jointspace.server.generations import MANIFEST, IndexDirectory, sha256_of
from jointspace.server.index_types import factory_string, fill_index, make_index
from jointspace.server.store import STORE_FILE, write_store

BATCH_SIZES = {"audio": 64}
DEFAULT_BATCH = 512


def build_generation(
    encoders: EncoderSet,
    catalog_paths: Sequence[Path],
    index_root: Path,
    index_spec: str = "auto",
) -> str:
    """Build and publish a generation; returns its name. Nothing is published on failure."""
    started = time.monotonic()
    entries = read_catalog(catalog_paths)
    directory = IndexDirectory(index_root)
    directory.remove_partials()
    staging = directory.staging()
    try:
        groups: dict[str, list[CatalogEntry]] = {}
        for entry in entries:
            groups.setdefault(entry.modality, []).append(entry)
        vectors = _embed(encoders, groups, len(entries))
        factory = factory_string(index_spec, len(entries), encoders.dim)
        files = {}
        for modality, matrix in vectors.items():
            log(f"building {factory} index for {len(matrix)} {modality} vectors")
            index = make_index(factory, len(matrix), encoders.dim)
            fill_index(index, matrix)
            faiss.write_index(index, str(staging / index_file(modality)))
            files[index_file(modality)] = sha256_of(staging / index_file(modality))
        write_store(
            staging / STORE_FILE,
            ((m, row, e.key, e.metadata) for m, group in groups.items() for row, e in enumerate(group)),
            {"model_version": encoders.version},
        )
        files[STORE_FILE] = sha256_of(staging / STORE_FILE)
        manifest = {
            "dim": encoders.dim,
            "model_version": encoders.version,
            "index_factory": factory,
            "counts": {m: len(v) for m, v in vectors.items()},
            "files": files,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "catalogs": [str(Path(p).resolve()) for p in catalog_paths],
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        name = directory.publish(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log(f"published {name}: {len(entries)} entries in {time.monotonic() - started:.1f}s")
    return name


def _embed(encoders: EncoderSet, groups: dict[str, list[CatalogEntry]], total: int) -> dict[str, np.ndarray]:
    vectors = {}
    with Progress(total, "embedding catalog", unit="row") as progress:
        for modality, group in sorted(groups.items()):
            size = BATCH_SIZES.get(modality, DEFAULT_BATCH)
            chunks = []
            for start in range(0, len(group), size):
                batch = group[start : start + size]
                chunks.append(encoders.embed(modality, [e.value for e in batch]))
                progress.update(len(batch))
            vectors[modality] = np.concatenate(chunks).astype(np.float32)
    return vectors
