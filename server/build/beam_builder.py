"""Index build as an Apache Beam pipeline: local_builder.py's generation, computed in parallel.

FAISS's recipe for large indexes, as Beam stages:

    catalog parts ─ spread ─ read chunks ─ spread ─ embed (exported SavedModels) ─ pieces by shard
    pieces ─┬─ count per (modality, shard) ─────────────────────────────────────────┐
            └─ group by shard ─ row ids ─► shards                                     │
    shards ─┬─ hash sample ─ train ─ plan ──────────┐                                 │
            ├─ add_with_ids into a copy of the trained index ─ merge per modality ─ tune ─ write
            ├─ tuning queries ─ exact top-k per shard ─ merged ─┘
            └─ keys + metadata ─ catalog store

The driver lists the catalog's parts (catalog_files.py): a file, or a Parquet file's row group,
each read by one worker. A shard is a run of `shard_rows` consecutive lines (Parquet: rows) of
one catalog file, so FAISS row ids follow catalog order exactly as in the local build; training
samples and tuning queries are chosen by key hash (sampling.py). The local and the Beam build of
one catalog therefore store the same rows and, for IVF, train the same centroids. IVF indexes
are built shard by shard and merged (`merge_from`); any other type (Flat, HNSW, PQ) gathers its
shards as Flat indexes, merged in order, and a non-Flat index is then built from the merged
vectors in one place (an HNSW graph cannot be merged), which is why `auto` picks IVF-HNSW here
where the local build picks HNSW (`sharded_factory`). After embedding, rows travel in column
batches (`Piece`, `Shard`): per-row elements would spend most of the build pickling.

The pipeline writes the index files and the store into the staging folder of the index directory
(which workers must reach: a shared file system on a cluster); the driver adds the manifest and
publishes, through generation_writer.py like the local builder.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import apache_beam as beam
import faiss
import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.runner import PipelineState

from jointspace.core.errors import InvalidInput
from jointspace.core.progress import log
from jointspace.data.catalog import CatalogEntry, check_not_empty, check_unique_keys
from jointspace.encoders.inference import EncoderSet
from jointspace.encoders.manifest import read_manifest
from jointspace.server.build.catalog_embedding import embedded_batches
from jointspace.server.build.catalog_files import FilePart, catalog_files, file_parts, read_part
from jointspace.server.build.dask_cluster import DASK_RUNNER
from jointspace.server.index.generation_writer import (
    IndexSummary,
    StoreRow,
    publish_generation,
    staging_area,
    write_catalog_store,
    write_tuned_index,
)
from jointspace.server.index.index_types import (
    QUANTIZER_LINKS,
    TRAINING_SAMPLE,
    factory_string,
    make_index,
    train_index,
)
from jointspace.server.index.sampling import QUERY_SALT, TRAINING_SALT, candidate_bound, key_hashes
from jointspace.server.index.tuning import (
    DEFAULT_TARGET_RECALL,
    TUNING_QUERIES,
    Neighbours,
    TuningQueries,
    exact_neighbours,
    merge_neighbours,
)

DEFAULT_SHARD_ROWS = 100_000
READ_CHUNK = 4_096  # rows per element between reading and grouping by shard
# Beam's DirectRunner tries the Prism runner first, which downloads a binary: the in-process
# FnApiRunner is the default here instead.
DEFAULT_RUNNER = "FnApiRunner"
SUMMARY_FILE = "beam-summary.json"

Position = tuple[int, int]  # (catalog file number, line number or Parquet row number)
ShardNumber = tuple[int, int]  # (catalog file number, line number // shard_rows)
Counts = list[tuple[tuple[str, ShardNumber], int]]  # rows per (modality, shard)


@dataclass(frozen=True)
class RowChunk:
    """Catalog rows read together. One object rather than a list, because Beam's default coder
    pickles a list item by item (and measures sizes the same way)."""

    rows: list[tuple[Position, CatalogEntry]]


@dataclass(frozen=True)
class Piece:
    """Embedded rows of one shard, any modality, in no particular order."""

    lines: list[int]
    keys: list[str]
    modalities: list[str]
    metadata: list[dict[str, Any]]
    vectors: np.ndarray  # float32 [n, D]
    texts: list[str | None]


@dataclass(frozen=True)
class Shard:
    """One modality's entries of one shard, in catalog order, with their final FAISS row ids."""

    modality: str
    number: ShardNumber
    rows: np.ndarray  # int64, consecutive
    vectors: np.ndarray  # float32 [n, D]
    keys: list[str]
    metadata: list[dict[str, Any]]
    texts: list[str | None]


@dataclass(frozen=True)
class Plan:
    """How one modality's index is made: the factory string and, for IVF, the trained empty index
    every shard copies; for other types that need training, the sample to train on at the end."""

    factory: str
    trained_ivf: bytes | None
    sample: np.ndarray | None


def _read_chunks(part: FilePart) -> Iterator[RowChunk]:
    file_number = part[0]
    chunk: list[tuple[Position, CatalogEntry]] = []
    for line, entry in read_part(part):
        chunk.append(((file_number, line), entry))
        if len(chunk) == READ_CHUNK:
            yield RowChunk(chunk)
            chunk = []
    if chunk:
        yield RowChunk(chunk)


@lru_cache(maxsize=1)
def _encoders(model_dir: str) -> EncoderSet:
    """The exported model, loaded once per worker process: Beam's DaskRunner sets a step up again
    for every partition. Loaded through EncoderSet: Beam's own TensorFlow model handler loads
    with Keras and stacks inputs into one tensor, which these string and waveform signatures
    do not take."""
    return EncoderSet(Path(model_dir))


def _embedded_pieces(chunk: RowChunk, model_dir: str, shard_rows: int) -> Iterator[tuple[ShardNumber, Piece]]:
    """The chunk's rows embedded, as one `Piece` per shard they fall in. No step holds rows back
    across elements to batch them (as RunInference and any buffering DoFn do): Beam's DaskRunner
    drops whatever a step emits when its bundle finishes."""
    encoders = _encoders(model_dir)
    rows = chunk.rows
    by_modality: dict[str, list[int]] = {}
    for i, (_, entry) in enumerate(rows):
        by_modality.setdefault(entry.modality, []).append(i)
    vectors = np.empty((len(rows), encoders.dim), dtype=np.float32)
    for modality, members in by_modality.items():
        values = [rows[i][1].value for i in members]
        vectors[members] = np.concatenate(list(embedded_batches(encoders, modality, values)))
    by_shard: dict[ShardNumber, list[int]] = {}
    for i, ((file_number, line), _) in enumerate(rows):
        by_shard.setdefault((file_number, line // shard_rows), []).append(i)
    for number, members in by_shard.items():
        entries = [rows[i][1] for i in members]
        yield number, Piece([rows[i][0][1] for i in members], [e.key for e in entries],
                            [e.modality for e in entries], [e.metadata for e in entries], vectors[members],
                            [e.value if e.modality == "text" else None for e in entries])


def _piece_counts(item: tuple[ShardNumber, Piece]) -> Iterator[tuple[tuple[str, ShardNumber], int]]:
    number, piece = item
    for modality in set(piece.modalities):
        yield (modality, number), piece.modalities.count(modality)


def _row_offsets(counts: Counts) -> dict[tuple[str, ShardNumber], int]:
    """First row id of each (modality, shard): rows run through the shards in catalog order."""
    offsets: dict[tuple[str, ShardNumber], int] = {}
    next_row: dict[str, int] = {}
    for (modality, number), count in sorted(counts):
        offsets[(modality, number)] = next_row.get(modality, 0)
        next_row[modality] = offsets[(modality, number)] + count
    return offsets


def _modality_totals(counts: Counts) -> dict[str, int]:
    totals: dict[str, int] = {}
    for (modality, _), count in counts:
        totals[modality] = totals.get(modality, 0) + count
    return totals


def _assemble_shards(item: tuple[ShardNumber, Iterable[Piece]], counts: Counts) -> Iterator[Shard]:
    number, pieces = item
    pieces = list(pieces)
    offsets = _row_offsets(counts)
    lines = [line for p in pieces for line in p.lines]
    keys = [key for p in pieces for key in p.keys]
    modalities = [m for p in pieces for m in p.modalities]
    metadata = [meta for p in pieces for meta in p.metadata]
    texts = [text for p in pieces for text in p.texts]
    vectors = np.concatenate([p.vectors for p in pieces]).astype(np.float32)
    by_modality: dict[str, list[int]] = {}
    for i in sorted(range(len(lines)), key=lines.__getitem__):
        by_modality.setdefault(modalities[i], []).append(i)
    for modality, members in by_modality.items():
        start = offsets[(modality, number)]
        yield Shard(modality, number, np.arange(start, start + len(members), dtype=np.int64),
                    vectors[members], [keys[i] for i in members], [metadata[i] for i in members],
                    [texts[i] for i in members])


@dataclass(frozen=True)
class Sample:
    """Rows of one modality ordered by (key hash, key), at most the sample's size."""

    orders: list[tuple[int, str]]
    rows: np.ndarray  # int64
    vectors: np.ndarray  # float32 [n, D]

    def smallest(self, count: int) -> Sample:
        chosen = sorted(range(len(self.orders)), key=self.orders.__getitem__)[:count]
        return Sample([self.orders[i] for i in chosen], self.rows[chosen], self.vectors[chosen])


def _shard_sample(shard: Shard, counts: Counts, count: int, salt: bytes) -> tuple[str, Sample]:
    """The shard's rows that can be among the modality's `count` smallest hashes."""
    bound = candidate_bound(_modality_totals(counts)[shard.modality], count)
    hashes = key_hashes(shard.keys, salt)
    kept = np.flatnonzero(hashes <= bound - 1)  # bound may be 2**63, one past int64
    orders = list(zip(hashes[kept].tolist(), (shard.keys[i] for i in kept.tolist())))
    candidates = Sample(orders, shard.rows[kept], shard.vectors[kept])
    return shard.modality, candidates.smallest(count)


def _merged_sample(parts: Iterable[Sample], count: int) -> Sample:
    parts = list(parts)
    merged = Sample([o for p in parts for o in p.orders], np.concatenate([p.rows for p in parts]),
                    np.concatenate([p.vectors for p in parts]))
    return merged.smallest(count)


def _checked_sample(item: tuple[str, Sample], counts: Counts, count: int) -> tuple[str, Sample]:
    """The candidate filter keeps ~4x more rows than needed; fewer would mean a broken hash."""
    modality, sample = item
    if len(sample.orders) < min(count, _modality_totals(counts)[modality]):
        raise RuntimeError(f"{modality}: only {len(sample.orders)} sample candidates for {count}")
    return item


def _is_ivf(index: faiss.Index) -> bool:
    return isinstance(faiss.downcast_index(index), faiss.IndexIVF)


def sharded_factory(spec: str, count: int, dim: int) -> str:
    """The factory string of `spec` for `count` vectors. `auto` follows the size of the whole
    catalog as in the local build, except that no HNSW graph over all vectors is chosen: that
    graph cannot be merged from shards, so it would be built in one place, from every vector.
    Where the local build picks HNSW, this picks IVF with an HNSW graph over the centroids as
    its coarse quantizer (`ivfhnsw`): trained on the hash sample, filled shard by shard on the
    workers, merged list by list. Beyond, IVF-PQ gets the same quantizer, which assigns a vector
    to one of tens of thousands of lists without comparing it with every centroid."""
    if spec.strip().lower() != "auto":
        return factory_string(spec, count, dim)
    factory = factory_string(spec, count, dim)
    if factory.startswith("HNSW"):
        return factory_string("ivfhnsw", count, dim)
    if factory.startswith("IVF"):
        return factory.replace(",", f"_HNSW{QUANTIZER_LINKS},", 1)
    return factory


def _make_plan(item: tuple[str, Sample], spec: str, dim: int, counts: Counts) -> tuple[str, Plan]:
    modality, sample = item
    factory = sharded_factory(spec, sum(count for _, count in counts), dim)
    index = make_index(factory, 0, dim)
    if index.is_trained:
        return modality, Plan(factory, None, None)
    if not _is_ivf(index):
        return modality, Plan(factory, None, sample.vectors)
    train_index(index, sample.vectors)
    return modality, Plan(factory, faiss.serialize_index(index).tobytes(), None)


def _shard_index(shard: Shard, plans: dict[str, Plan]) -> tuple[str, tuple[ShardNumber, bytes]]:
    """IVF: the shard's vectors in a copy of the trained index, under their final row ids.
    Anything else: a Flat index of the shard's vectors, merged in shard order later."""
    plan = plans[shard.modality]
    if plan.trained_ivf is not None:
        index = faiss.deserialize_index(np.frombuffer(plan.trained_ivf, dtype=np.uint8))
        index.add_with_ids(shard.vectors, shard.rows)
    else:
        index = faiss.IndexFlat(shard.vectors.shape[1], faiss.METRIC_INNER_PRODUCT)
        index.add(shard.vectors)
    return shard.modality, (shard.number, faiss.serialize_index(index).tobytes())


def _merged_index(parts: Iterable[tuple[ShardNumber, bytes]], plan: Plan) -> faiss.Index:
    ordered = sorted(parts, key=lambda part: part[0])
    merged = faiss.deserialize_index(np.frombuffer(ordered[0][1], dtype=np.uint8))
    for _, data in ordered[1:]:
        merged.merge_from(faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8)), 0)
    if plan.trained_ivf is not None:
        return merged
    target = make_index(plan.factory, merged.ntotal, merged.d)
    if isinstance(target, faiss.IndexFlat):
        return merged
    if plan.sample is not None:
        train_index(target, plan.sample)
    target.add(merged.reconstruct_n(0, merged.ntotal))
    return target


def _finish_index(item: tuple[str, Iterable[tuple[ShardNumber, bytes]]], staging: str,
                  target_recall: float, plans: dict[str, Plan], queries: dict[str, TuningQueries],
                  truth: dict[str, Neighbours]) -> dict[str, Any]:
    modality, parts = item
    plan = plans[modality]
    index = _merged_index(parts, plan)
    log(f"beam: {plan.factory} index for {index.ntotal} {modality} vectors")
    summary = write_tuned_index(Path(staging), modality, index, queries[modality], truth[modality],
                                target_recall)
    return {**summary.to_dict(), "factory": plan.factory}


def _tuning_queries(item: tuple[str, Sample]) -> tuple[str, TuningQueries]:
    modality, sample = item
    return modality, TuningQueries(sample.rows, sample.vectors)


def _merge_truth(parts: Iterable[Neighbours]) -> Neighbours:
    return merge_neighbours(list(parts))


def _store_rows(shard: Shard) -> list[StoreRow]:
    return [(shard.modality, row, key, meta, text)
            for row, key, meta, text in zip(shard.rows.tolist(), shard.keys, shard.metadata, shard.texts)]


def _write_store(parts: list[list[StoreRow]], staging: str, model_version: str) -> None:
    rows = [row for part in parts for row in part]
    check_unique_keys(key for _, _, key, _, _ in rows)
    write_catalog_store(Path(staging), rows, model_version)


def _write_summary(summaries: list[dict[str, Any]], staging: str) -> None:
    (Path(staging) / SUMMARY_FILE).write_text(json.dumps(summaries))


def _sample(shards: beam.PCollection, counts: Any, count: int, salt: bytes, label: str) -> beam.PCollection:
    """(modality, Sample): the `count` rows with the smallest key hashes, as hash_sample picks
    them in the local build."""
    return (
        shards
        | f"{label} per shard" >> beam.Map(_shard_sample, counts=counts, count=count, salt=salt)
        | f"{label} merged" >> beam.CombinePerKey(_merged_sample, count=count)
        | f"{label} checked" >> beam.Map(_checked_sample, counts=counts, count=count)
    )


def expand_build(pipeline: beam.Pipeline, model_dir: Path, parts: Sequence[FilePart], staging: Path,
                 spec: str, dim: int, model_version: str, target_recall: float, shard_rows: int) -> None:
    """Add the build's stages to `pipeline`; running it fills `staging`."""
    where = str(staging)
    pieces = (
        pipeline
        | "catalog parts" >> beam.Create(list(parts))
        | "spread parts" >> beam.Reshuffle()
        | "read rows" >> beam.FlatMap(_read_chunks)
        | "spread rows" >> beam.Reshuffle()
        | "embed" >> beam.FlatMap(_embedded_pieces, model_dir=str(Path(model_dir).resolve()), shard_rows=shard_rows)
    )
    counts = beam.pvalue.AsList(
        pieces | "count rows" >> beam.FlatMap(_piece_counts) | "count per shard" >> beam.CombinePerKey(sum)
    )
    shards = (
        pieces
        | "group shards" >> beam.GroupByKey()
        | "assign rows" >> beam.FlatMap(_assemble_shards, counts=counts)
    )
    plans = beam.pvalue.AsDict(
        _sample(shards, counts, TRAINING_SAMPLE, TRAINING_SALT, "training sample")
        | "train" >> beam.Map(_make_plan, spec=spec, dim=dim, counts=counts)
    )
    queries = beam.pvalue.AsDict(
        _sample(shards, counts, TUNING_QUERIES, QUERY_SALT, "tuning queries")
        | "queries" >> beam.Map(_tuning_queries)
    )
    truth = beam.pvalue.AsDict(
        shards
        | "exact top-k per shard" >> beam.Map(
            lambda s, q: (s.modality, exact_neighbours(q[s.modality], s.vectors, s.rows)), q=queries)
        | "exact top-k" >> beam.CombinePerKey(_merge_truth)
    )
    (
        shards
        | "index shards" >> beam.Map(_shard_index, plans=plans)
        | "group indexes" >> beam.GroupByKey()
        | "merge, tune, write" >> beam.Map(_finish_index, staging=where, target_recall=target_recall,
                                           plans=plans, queries=queries, truth=truth)
        | "gather summaries" >> beam.combiners.ToList()
        | "write summary" >> beam.Map(_write_summary, staging=where)
    )
    (
        shards
        | "store rows" >> beam.Map(_store_rows)
        | "gather store" >> beam.combiners.ToList()
        | "write store" >> beam.Map(_write_store, staging=where, model_version=model_version)
    )


@contextmanager
def _step_failures_unlogged() -> Iterator[None]:
    """The in-process runners log a failed step's traceback and then raise the same error here,
    where the caller reports it once (the CLI in one line)."""
    logger = logging.getLogger("apache_beam.runners.common")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def pipeline_options(args: Sequence[str]) -> PipelineOptions:
    """Beam's own options; unknown ones are refused (Beam would drop them with a warning, and a
    misspelt --runner would quietly run the build here instead of on the cluster)."""
    if importlib.util.find_spec("distributed") is not None:
        from jointspace.server.build import dask_runner  # noqa: F401  (makes Beam's Dask options known)
    options = PipelineOptions(list(args))
    known = PipelineOptions([]).get_all_options()
    unknown = set(options.get_all_options(retain_unknown_options=True)) - set(known)
    if unknown:
        raise InvalidInput(f"beam pipeline options: unknown {', '.join('--' + u for u in sorted(unknown))}")
    standard = options.view_as(StandardOptions)
    if standard.runner is None:
        standard.runner = DEFAULT_RUNNER
    if standard.runner.endswith("DaskRunner") and standard.runner != DASK_RUNNER:
        raise InvalidInput(f"beam pipeline options: --runner={standard.runner} loses and repeats elements "
                           f"(Beam 2.77); use --runner={DASK_RUNNER}")
    return options


def build_generation_with_beam(
    model_dir: Path,
    catalog_paths: Sequence[str | Path],
    index_root: Path,
    index_spec: str = "auto",
    target_recall: float = DEFAULT_TARGET_RECALL,
    pipeline_args: Sequence[str] = (),
    shard_rows: int = DEFAULT_SHARD_ROWS,
) -> str:
    """Build and publish a generation with a Beam pipeline; returns its name. `catalog_paths`:
    files, globs or URLs (catalog_files.py)."""
    started = time.monotonic()
    manifest = read_manifest(model_dir)
    dim, model_version = manifest.dim, manifest.model_version
    make_index(factory_string(index_spec, 1, dim), 1, dim)  # a bad factory string fails here, not on a worker
    options = pipeline_options(pipeline_args)
    files = catalog_files(catalog_paths)
    parts = file_parts(files)
    with staging_area(index_root) as (directory, staging):
        pipeline = beam.Pipeline(options=options)
        expand_build(pipeline, model_dir, parts, staging, index_spec, dim, model_version, target_recall, shard_rows)
        log(f"beam: running the build on {options.view_as(StandardOptions).runner}")
        with _step_failures_unlogged():
            state = pipeline.run().wait_until_finish()
        if state != PipelineState.DONE:
            raise RuntimeError(f"beam pipeline ended in state {state}")
        summary_path = staging / SUMMARY_FILE
        summaries = json.loads(summary_path.read_text())
        summary_path.unlink()
        check_not_empty(sum(s["count"] for s in summaries), [Path(f) for f in files])
        name = publish_generation(
            directory, staging, dim=dim, model_version=model_version, factory=summaries[0]["factory"],
            summaries=[IndexSummary.from_dict(s) for s in summaries], catalogs=[Path(f) for f in files],
            target_recall=target_recall, runner="beam", model_dir=model_dir)
    log(f"published {name} (beam): {sum(s['count'] for s in summaries)} entries in "
        f"{time.monotonic() - started:.1f}s")
    return name
