"""Apache Beam index builds on the in-process FnApiRunner, against the local build of the same
catalog: the same keys in the same rows, the same answers for the same index type, and a real
gRPC server serving the Beam-built generation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from jointspace.core.errors import InvalidInput
from jointspace.data.vectors import clustered_vectors, write_vector_catalog
from jointspace.encoders.inference import EncoderSet
from jointspace.server.build.beam_builder import build_generation_with_beam, pipeline_options
from jointspace.server.build.local_builder import build_generation
from jointspace.server.index.generation import Generation
from jointspace.server.index.index_directory import IndexDirectory
from jointspace.server.index.lexical_terms import query_terms
from jointspace.server.index.searching import search
from test_cli import assert_one_line_error, jointspace

K = 10


def _live(index_root: Path) -> Generation:
    return Generation(IndexDirectory(index_root).current_path())


def _agreement(found: Generation, expected: Generation, queries: np.ndarray, modality: str) -> float:
    """Mean share of `expected`'s top-k keys that `found` returns too."""
    got = search(found, queries, K, [modality], with_metadata=False)
    want = search(expected, queries, K, [modality], with_metadata=False)
    return float(np.mean([len({h.key for h in g} & {h.key for h in w}) / len(w) for g, w in zip(got, want)]))


@pytest.fixture(scope="module")
def beam_index(built, tmp_path_factory) -> Path:
    """The shared catalog (audio, ids, text, a raw vector) built by Beam in shards of 50 lines."""
    root = tmp_path_factory.mktemp("beam") / "index"
    build_generation_with_beam(built.model, [built.catalog], root, shard_rows=50)
    return root


@pytest.fixture(scope="module")
def encoders(built) -> EncoderSet:
    return EncoderSet(built.model)


def assert_same_generation(found: Generation, expected: Generation) -> None:
    """The same files, manifest, keys in the same rows, metadata and vectors, whichever runner
    built each."""
    assert set(found.manifest.files) == set(expected.manifest.files)
    for field in ("dim", "model_version", "index_factory", "counts", "search_params"):
        assert getattr(found.manifest, field) == getattr(expected.manifest, field), field
    assert {m: list(k) for m, k in found.keys.items()} == {m: list(k) for m, k in expected.keys.items()}
    for modality in expected.modalities:
        rows = list(range(len(expected.keys[modality])))
        assert found.store.metadata(modality, rows) == expected.store.metadata(modality, rows)
        got = found.indexes[modality].reconstruct_n(0, len(rows))
        want = expected.indexes[modality].reconstruct_n(0, len(rows))
        # Beam batches differently; an embedding must not depend on its batch (test_audio_encoder).
        np.testing.assert_allclose(got, want, atol=1e-5, err_msg=modality)


def test_beam_build_stores_what_the_local_build_stores(built, beam_index):
    beam, local = _live(beam_index), _live(built.index)
    assert beam.manifest.runner == "beam" and local.manifest.runner == "local"
    assert_same_generation(beam, local)
    for text in ("seven", "the golden voyage", "raw fantasy"):  # the lexical index: every match, alike
        found = []
        for generation in (beam, local):
            terms, corpus = generation.lexical.lookup(query_terms(text))
            matches = generation.lexical.search(terms, corpus, 1000, local.modalities, lambda m, r: True, 0)
            found.append(sorted(matches, key=lambda m: m[1:]))
        assert found[0] and [m[1:] for m in found[0]] == [m[1:] for m in found[1]], text
        np.testing.assert_allclose([m[0] for m in found[0]], [m[0] for m in found[1]], rtol=1e-5)


def test_beam_and_local_indexes_answer_alike(built, beam_index, encoders):
    beam, local = _live(beam_index), _live(built.index)
    words = encoders.embed("text", ["one", "seven", "nine", "a thriller", "silent harbor"])
    for modality in local.modalities:
        stored = local.indexes[modality].reconstruct_n(0, local.indexes[modality].ntotal)
        queries = np.concatenate([words, stored[:50]])
        assert _agreement(beam, local, queries, modality) >= 0.99, modality


@pytest.fixture(scope="module")
def vector_catalog(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """600 clustered 16-d vectors to index, 100 more from the same clusters to ask with."""
    vectors = clustered_vectors(700, 16, seed=3)
    path = tmp_path_factory.mktemp("vectors") / "catalog.jsonl"
    write_vector_catalog(path, vectors[:600])
    return path, vectors[600:]


@pytest.mark.parametrize("spec", ["IVF16,Flat", "hnsw"])
def test_sharded_index_types_agree_with_the_local_build(built, encoders, vector_catalog, tmp_path, spec):
    """IVF: trained once on the same hash sample, filled shard by shard and merged; HNSW: built
    in one place from the merged shards. Either way the local build's top-10 comes back."""
    catalog, queries = vector_catalog
    build_generation(encoders, [catalog], tmp_path / "local", spec)
    build_generation_with_beam(built.model, [catalog], tmp_path / "beam", spec, shard_rows=128)
    beam, local = _live(tmp_path / "beam"), _live(tmp_path / "local")
    assert list(beam.keys["vector"]) == list(local.keys["vector"]) == [f"v:{i}" for i in range(600)]
    assert beam.factory == local.factory
    assert beam.search_params == local.search_params
    assert _agreement(beam, local, queries, "vector") >= 0.99


def test_a_real_server_serves_a_beam_built_generation(built, beam_index, client):
    """The shared server serves the local build of the same catalog: both answer alike."""
    from jointspace.client import Client
    from jointspace.server.api.app import start_server
    from jointspace.server.serving.engine import Engine

    running = start_server(Engine(built.model, beam_index), port=0)
    try:
        with Client(f"127.0.0.1:{running.port}", timeout=30) as beam_client:
            beam_client.wait_ready()
            info = beam_client.info()
            assert info.generation == _live(beam_index).name
            assert info.size == client.info().size
            for query in ({"text": "seven"}, {"id": "m:3"}, {"ids": ["m:1", "m:2"]}):
                got = beam_client.search(k=5, **query)
                assert [(h.key, h.metadata) for h in got] == [(h.key, h.metadata) for h in client.search(k=5, **query)]
    finally:
        running.stop(grace=0.5)


def test_pipeline_options_default_to_the_in_process_runner_and_refuse_unknown_ones():
    from apache_beam.options.pipeline_options import StandardOptions

    assert pipeline_options([]).view_as(StandardOptions).runner == "FnApiRunner"
    assert pipeline_options(["--runner=FlinkRunner"]).view_as(StandardOptions).runner == "FlinkRunner"
    with pytest.raises(InvalidInput, match="--runer"):
        pipeline_options(["--runer=FlinkRunner"])


def test_cli_beam_build_passes_pipeline_options_and_reports_failures_in_one_line(built, tmp_path):
    out = tmp_path / "index"
    result = jointspace("index", "build", str(built.catalog), "--model", str(built.model), "--out", str(out),
                        "--runner", "beam", "--shard-rows", "100", "--", "--direct_num_workers=1")
    assert result.returncode == 0, result.stderr
    assert "gen-000001 is live" in result.stdout
    assert json.loads((out / "gen-000001" / "generation.json").read_text())["runner"] == "beam"

    duplicate = tmp_path / "duplicate.jsonl"
    duplicate.write_text(built.catalog.read_text() + built.catalog.read_text().splitlines()[0] + "\n")
    failed = jointspace("index", "build", str(duplicate), "--model", str(built.model), "--out", str(out),
                        "--runner", "beam")
    assert_one_line_error(failed, "appears more than once")
    assert IndexDirectory(out).current_name() == "gen-000001"
    assert sorted(p.name for p in out.iterdir()) == ["CURRENT", "gen-000001"]


def test_bench_build_times_both_runners_on_one_catalog(tmp_path):
    from jointspace.bench import build

    result = build.run(rows=3000, dim=16, index_spec="hnsw", target_recall=0.95, pipeline_args=[], work=tmp_path)
    assert result["index"] == "HNSW32,Flat" and result["rows"] == 3000
    assert result["local_seconds"] > 0 and result["beam_seconds"] > 0
    # Seconds are rounded to 0.1 s, the ratio is taken before rounding: agree within that rounding.
    ratio = result["beam_over_local"]
    assert ratio * result["local_seconds"] == pytest.approx(result["beam_seconds"], abs=0.05 * (1 + ratio) + 0.01)
    assert result["search_params"]["local"] == result["search_params"]["beam"]
    assert result["beam_vs_local_recall@10"] >= 0.99
    assert result["local_vs_exact_recall@10"] >= 0.9  # held-out queries; tuned on indexed ones
