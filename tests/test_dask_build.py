"""The Beam index build on a real distributed runner: a dask.distributed LocalCluster of two
worker processes (shared by this module), against the local build of the same catalog split
into shard files: the same generation layout, keys, rows and answers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from distributed import Client

from jointspace.core.errors import InvalidInput, NotFound
from jointspace.data.vectors import as_catalog_holds, clustered_vectors, write_vector_catalog
from jointspace.encoders.inference import EncoderSet
from jointspace.server.build import beam_builder
from jointspace.server.build.beam_builder import build_generation_with_beam, pipeline_options, sharded_factory
from jointspace.server.build.catalog_files import catalog_files
from jointspace.server.build.dask_cluster import DASK_RUNNER, dask_pipeline_args, dask_scheduler
from jointspace.server.build.local_builder import build_generation
from jointspace.server.index.generation import Generation
from jointspace.server.index.index_directory import IndexDirectory
from jointspace.server.index.searching import search
from test_beam_build import assert_same_generation
from test_cli import assert_one_line_error, jointspace

K = 10


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    with dask_scheduler(None, workers=2) as address:
        yield address


def _live(index_root: Path) -> Generation:
    return Generation(IndexDirectory(index_root).current_path())


def _top_keys(generation: Generation, queries: np.ndarray, modality: str) -> list[set[str]]:
    return [{h.key for h in hits} for hits in search(generation, queries, K, [modality], with_metadata=False)]


def _agreement(found: list[set[str]], expected: list[set[str]]) -> float:
    return float(np.mean([len(f & e) / len(e) for f, e in zip(found, expected)]))


def _shards(catalog: Path, folder: Path, count: int) -> list[Path]:
    """The catalog's rows dealt into `count` consecutive JSON Lines files, audio paths made
    absolute (they are relative to the file that names them)."""
    rows = [json.loads(line) for line in catalog.read_text().splitlines()]
    for row in rows:
        if "audio" in row:
            row["audio"] = str((catalog.parent / row["audio"]).resolve())
    size = -(-len(rows) // count)
    folder.mkdir(parents=True)
    paths = [folder / f"part-{i}.jsonl" for i in range(count)]
    for i, path in enumerate(paths):
        path.write_text("".join(json.dumps(row) + "\n" for row in rows[i * size : (i + 1) * size]))
    return paths


def _models_loaded() -> int:
    """How many times this worker process loaded the model (0: it embedded nothing)."""
    return beam_builder._encoders.cache_info().misses


def test_a_dask_build_of_catalog_shards_is_the_local_build(built, scheduler, tmp_path):
    """Audio, ids, text and a raw vector in four shard files, named by a glob: the generation
    has the local build's files, manifest, keys, rows and metadata, and answers alike; both
    worker processes embedded part of it."""
    shards = _shards(built.catalog, tmp_path / "shards", 4)
    build_generation(EncoderSet(built.model), shards, tmp_path / "local")
    build_generation_with_beam(built.model, [str(tmp_path / "shards" / "part-*.jsonl")], tmp_path / "dask",
                               pipeline_args=dask_pipeline_args(scheduler), shard_rows=30)
    dask, local = _live(tmp_path / "dask"), _live(tmp_path / "local")
    assert dask.manifest.runner == "beam"
    assert dask.manifest.catalogs == local.manifest.catalogs == [str(p) for p in shards]
    assert_same_generation(dask, local)
    for modality in local.modalities:
        stored = local.indexes[modality].reconstruct_n(0, local.indexes[modality].ntotal)
        assert _agreement(_top_keys(dask, stored, modality), _top_keys(local, stored, modality)) >= 0.99
    with Client(scheduler) as client:
        assert list(client.run(_models_loaded).values()) == [1, 1]


def _vector_shards(vectors: np.ndarray, folder: Path) -> list[Path]:
    """Two JSON Lines shards and a Parquet one of several row groups (each a part of its own)."""
    third = len(vectors) // 3
    paths = [folder / "a.jsonl", folder / "b.jsonl", folder / "c.parquet"]
    write_vector_catalog(paths[0], vectors[:third], key_prefix="a:")
    write_vector_catalog(paths[1], vectors[third : 2 * third], key_prefix="b:")
    rest = as_catalog_holds(vectors[2 * third :])
    table = pa.table({"key": [f"c:{i}" for i in range(len(rest))], "vector": rest.tolist()})
    pq.write_table(table, paths[2], row_group_size=len(rest) // 4 + 1)
    return paths


def test_ivf_hnsw_filled_on_the_workers_answers_as_the_local_build(built, scheduler, tmp_path):
    """The sharded build's index for large catalogs, at test size: trained once on the hash
    sample, lists filled shard by shard on two worker processes and merged."""
    vectors = clustered_vectors(3200, 16, seed=5)
    catalog, queries = vectors[:3000], vectors[3000:]
    shards = _vector_shards(catalog, tmp_path / "shards")
    build_generation(EncoderSet(built.model), shards, tmp_path / "local", "ivfhnsw")
    build_generation_with_beam(built.model, shards, tmp_path / "dask", "ivfhnsw",
                               pipeline_args=dask_pipeline_args(scheduler), shard_rows=400)
    dask, local = _live(tmp_path / "dask"), _live(tmp_path / "local")
    assert dask.factory == local.factory == sharded_factory("ivfhnsw", 3000, 16)
    assert "_HNSW" in dask.factory
    assert dask.search_params == local.search_params
    assert list(dask.keys["vector"]) == list(local.keys["vector"])
    found, expected = _top_keys(dask, queries, "vector"), _top_keys(local, queries, "vector")
    assert _agreement(found, expected) >= 0.99
    keys = list(local.keys["vector"])
    exact = np.argsort(-(queries @ as_catalog_holds(catalog).T), axis=1)[:, :K]
    assert _agreement(found, [{keys[i] for i in row} for row in exact]) >= 0.9


def test_auto_never_builds_one_hnsw_graph_over_a_sharded_catalog():
    assert sharded_factory("auto", 1_000, 32) == "Flat"
    assert sharded_factory("auto", 1_000_000, 32).endswith("_HNSW32,Flat")
    assert sharded_factory("auto", 10_000_000, 32).split(",")[0].endswith("_HNSW32")
    assert sharded_factory("hnsw", 1_000_000, 32) == "HNSW32,Flat"  # asked for by name: as asked


def test_cli_dask_build_on_a_scheduler_and_its_one_line_errors(built, scheduler, tmp_path):
    shards = _shards(built.catalog, tmp_path / "shards", 2)
    out = tmp_path / "index"
    result = jointspace("index", "build", str(tmp_path / "shards" / "*.jsonl"), "--model", str(built.model),
                        "--out", str(out), "--runner", "dask", "--dask-scheduler", scheduler)
    assert result.returncode == 0, result.stderr
    assert "gen-000001 is live" in result.stdout
    assert _live(out).manifest.catalogs == [str(p) for p in shards]

    common = ("--model", str(built.model), "--out", str(out))
    on_cluster = ("--runner", "dask", "--dask-scheduler", scheduler)
    assert_one_line_error(jointspace("index", "build", str(shards[0]), str(shards[0]), *common, *on_cluster),
                          "appears more than once")
    assert_one_line_error(jointspace("index", "build", str(shards[0]), *common, "--workers", "2"),
                          "--workers and --dask-scheduler need --runner dask")
    assert IndexDirectory(out).current_name() == "gen-000001"


def test_catalog_patterns_that_match_nothing_and_beams_own_dask_runner_are_refused(tmp_path):
    with pytest.raises(NotFound, match="matches no file"):
        catalog_files([str(tmp_path / "none-*.jsonl")])
    with pytest.raises(NotFound, match="no such file"):
        catalog_files([tmp_path / "none.jsonl"])
    with pytest.raises(InvalidInput, match=DASK_RUNNER):
        pipeline_options(["--runner=apache_beam.runners.dask.dask_runner.DaskRunner"])
