"""Shared fixtures: a tiny real model trained on real clips and synthetic films, an index built
from it, and a real gRPC server on a free loopback port. Session-scoped because training is the
slow part; tests must not change what these fixtures serve."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings

import jointspace  # first: sets TF_USE_LEGACY_KERAS before TensorFlow loads
from jointspace.data import fsdd, synthetic

# Every property test runs the same examples on every run and machine (derandomize), as many as it
# asks for or this count, without a per-example deadline (a server call's time depends on the
# machine and its load), and a failure prints the blob that reproduces it. Loaded by default;
# `pytest --hypothesis-profile NAME` picks another registered profile.
settings.register_profile("ci", derandomize=True, max_examples=100, deadline=None, print_blob=True)
settings.load_profile("ci")



def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `longest` go first (a stable sort keeps the rest in order): started last, a
    five-minute training would run alone after the other worker had finished."""
    items.sort(key=lambda item: item.get_closest_marker("longest") is None)


TRAIN_SPEAKERS = ("jackson", "nicolas")
INDEX_SPEAKER = "george"
TAKES = range(4)


@dataclass
class Built:
    root: Path
    model: Path
    index: Path
    catalog: Path
    films: synthetic.SyntheticData
    indexed_clips: list[fsdd.Clip]
    train_clips: list[fsdd.Clip]
    history: list[float]  # the mean training loss of each epoch


@pytest.fixture(scope="session")
def clips() -> list[fsdd.Clip]:
    return fsdd.list_clips(fsdd.shipped_fsdd_dir())


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory, clips: list[fsdd.Clip]) -> Built:
    from jointspace.data.pairs import read_pairs
    from jointspace.encoders.inference import EncoderSet
    from jointspace.encoders.training.config import TrainConfig
    from jointspace.encoders.training.export import export_model
    from jointspace.encoders.training.trainer import train
    from jointspace.server.build.local_builder import build_generation

    root = tmp_path_factory.mktemp("built")
    train_clips = [c for c in clips if c.speaker in TRAIN_SPEAKERS and c.take in TAKES]
    indexed = [c for c in clips if c.speaker == INDEX_SPEAKER and c.take in TAKES]
    fsdd.write_pairs(train_clips, root / "audio-pairs.jsonl")
    films = synthetic.generate(synthetic.SyntheticConfig(n_films=120, n_users=200, n_tastes=6, seed=1))
    synthetic.write_pairs(films, root / "film-pairs.jsonl")

    fsdd.write_catalog(indexed, root / "audio-catalog.jsonl")
    synthetic.write_catalog(films, root / "film-catalog.jsonl")
    catalog = root / "catalog.jsonl"
    with catalog.open("w") as out:
        for part in ("audio-catalog.jsonl", "film-catalog.jsonl"):
            out.write((root / part).read_text())
        out.write(json.dumps({"key": "vec:unit", "vector": [1.0] + [0.0] * 15,
                              "metadata": {"kind": "raw"}}) + "\n")

    rows = read_pairs([root / "audio-pairs.jsonl", root / "film-pairs.jsonl"])
    trained = train(rows, TrainConfig(dim=16, epochs=4, batch_size=64, catalog_batch_size=64, validation_split=0.1))
    export_model(trained, root / "model")
    build_generation(EncoderSet(root / "model"), [catalog], root / "index")
    return Built(root, root / "model", root / "index", catalog, films, indexed, train_clips, trained.history)


@pytest.fixture(scope="session")
def server(built: Built) -> Iterator[str]:
    from jointspace.server.api.app import start_server
    from jointspace.server.serving.engine import Engine

    running = start_server(Engine(built.model, built.index), port=0)
    try:
        yield f"127.0.0.1:{running.port}"
    finally:
        running.stop(grace=1.0)


@pytest.fixture()
def client(server: str) -> Iterator[jointspace.client.Client]:
    from jointspace.client import Client

    with Client(server, timeout=30) as c:
        c.wait_ready()
        yield c
