"""Local (in-process) index build: catalog → vectors → FAISS indexes + store → new generation."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import chain, count, repeat
from pathlib import Path

import numpy as np

from jointspace.core.progress import Progress, log
from jointspace.data.catalog import CatalogGroup, RowRules, read_catalog_groups
from jointspace.encoders.inference import EncoderSet
from jointspace.server.build.catalog_embedding import embedded_batches
from jointspace.server.index.data_dir import DataDir
from jointspace.server.index.generation_writer import (
    StoreRow,
    publish_generation,
    staging_area,
    write_catalog_store,
    write_tuned_index,
)
from jointspace.server.index.index_types import build_index, check_index_type, factory_string
from jointspace.server.index.tuning import DEFAULT_TARGET_RECALL, exact_neighbours, tuning_queries

# report(phase, done, total): "reading catalog", then "embedding" rows, then "indexing" modalities
# (0 when the first index build starts, then one more as each index file is written).
ReportProgress = Callable[[str, int, int], None]


def _no_report(phase: str, done: int, total: int) -> None:
    pass


def build_generation(
    encoders: EncoderSet,
    catalog_paths: Sequence[Path],
    index_root: Path,
    index_spec: str = "auto",
    target_recall: float = DEFAULT_TARGET_RECALL,
    *,
    report: ReportProgress = _no_report,
    go_live: bool = True,
    model_dir: Path | None = None,
    data_dir: DataDir | None = None,
) -> str:
    """Build and publish a generation; returns its name. Nothing is published on failure.

    `report` is called between batches; raising from it stops the build with nothing published,
    which is how a server cancels a rebuild. `go_live=False` places the generation without
    switching `CURRENT`, so that a server can load and check it first, and `model_dir` records
    the model folder it is to be served with after a restart (both: rebuild.py). A server
    passes its `data_dir`: the audio files that catalog rows name must lie inside it too. Keys
    and metadata are held to the model's limits."""
    started = time.monotonic()
    check_index_type(index_spec, encoders.dim, "--index")  # before the catalog is read and embedded
    report("reading catalog", 0, 0)
    groups = read_catalog_groups(catalog_paths, RowRules(encoders.limits, data_dir.confine if data_dir else None))
    total = sum(len(group.keys) for group in groups.values())
    # The store needs only the catalog, so it is written beside embedding and FAISS's `add`, which
    # leaves part of a core idle. Leaving the `with` waits for the writer before a failed build's
    # staging folder is removed; its error fails the build at `result()`, before publishing.
    with staging_area(index_root) as (directory, staging), ThreadPoolExecutor(1, "catalog-store") as writer:
        store = writer.submit(write_catalog_store, staging, _store_rows(groups), encoders.version)
        vectors = _embed(encoders, groups, total, report)
        factory = factory_string(index_spec, total, encoders.dim)
        summaries = []
        report("indexing", 0, len(vectors))
        for done, (modality, matrix) in enumerate(vectors.items(), 1):
            log(f"building {factory} index for {len(matrix)} {modality} vectors")
            keys = groups[modality].keys
            queries = tuning_queries(keys, matrix)
            truth = exact_neighbours(queries, matrix, np.arange(len(matrix)))
            summaries.append(write_tuned_index(staging, modality, build_index(factory, keys, matrix),
                                               queries, truth, target_recall))
            report("indexing", done, len(vectors))
        store.result()
        name = publish_generation(directory, staging, dim=encoders.dim, model_version=encoders.version,
                                  factory=factory, summaries=summaries, catalogs=catalog_paths,
                                  target_recall=target_recall, runner="local",
                                  model_dir=model_dir, go_live=go_live)
    log(f"published {name}: {total} entries in {time.monotonic() - started:.1f}s")
    return name


def _store_rows(groups: dict[str, CatalogGroup]) -> Iterator[StoreRow]:
    """Each group's rows zipped in C, without a Python step per row (a text entry keeps its text
    for the lexical index)."""
    return chain.from_iterable(
        zip(repeat(modality), count(), group.keys, group.metadata, group.values if modality == "text" else repeat(None))
        for modality, group in groups.items())


def _embed(encoders: EncoderSet, groups: dict[str, CatalogGroup], total: int,
           report: ReportProgress) -> dict[str, np.ndarray]:
    vectors = {}
    with Progress(total, "embedding catalog", unit="row") as progress:
        for modality, group in sorted(groups.items()):
            chunks = []
            for chunk in embedded_batches(encoders, modality, group.values):
                chunks.append(chunk)
                progress.update(len(chunk))
                report("embedding", progress.done, total)
            vectors[modality] = np.concatenate(chunks)
    return vectors
