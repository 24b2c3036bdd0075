"""Ensembles (`train --ensemble K`): several seeds trained, exported and served as one model whose
scores are the members' mean, end to end through a real index and a real gRPC server."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import numpy as np
import pytest

from jointspace.data import synthetic

DIM = 8


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from jointspace.data.pairs import read_pairs
    from jointspace.encoders.export import export_model
    from jointspace.encoders.training import TrainConfig, train_members

    root = tmp_path_factory.mktemp("ensemble")
    films = synthetic.generate(synthetic.SyntheticConfig(n_films=80, n_users=120, n_tastes=4, seed=3))
    synthetic.write_pairs(films, root / "pairs.jsonl")
    synthetic.write_catalog(films, root / "catalog.jsonl")
    members = train_members(read_pairs([root / "pairs.jsonl"]),
                            TrainConfig(dim=DIM, epochs=2, batch_size=64, seed=7, pairs=[("ids", "id")]), 2)
    export_model(members, root / "model")
    return root


def test_an_ensemble_is_its_members_side_by_side(ensemble: Path):
    from jointspace.encoders.inference import EncoderSet

    manifest = json.loads((ensemble / "model" / "manifest.json").read_text())
    assert manifest["dim"] == 2 * DIM and manifest["members"] == ["members/0", "members/1"]
    member_manifests = [json.loads((ensemble / "model" / m / "manifest.json").read_text())
                        for m in manifest["members"]]
    assert [m["training"]["seed"] for m in member_manifests] == [7, 8]
    assert manifest["metrics"]["members"] == [m["metrics"] for m in member_manifests]

    films = [json.loads(line)["id"] for line in (ensemble / "catalog.jsonl").read_text().splitlines()]
    history = [films[:5]]
    joined, first, second = (EncoderSet(path) for path in (ensemble / "model", *(ensemble / "model" / m
                                                                                 for m in manifest["members"])))
    assert joined.modalities == first.modalities
    vectors = joined.embed("id", films)
    assert vectors.shape == (len(films), 2 * DIM)
    assert not np.allclose(first.embed("id", films), second.embed("id", films), atol=1e-3)  # two draws
    query = joined.embed("ids", history)[0]
    mean_score = (first.embed("id", films) @ first.embed("ids", history)[0]
                  + second.embed("id", films) @ second.embed("ids", history)[0]) / 2
    assert np.allclose(vectors @ query, mean_score, atol=1e-5)
    assert (np.linalg.norm(vectors, axis=1) <= 1 + 1e-5).all()


def test_a_served_ensemble_answers_with_the_members_mean_score(ensemble: Path):
    from jointspace.client import Client
    from jointspace.encoders.inference import EncoderSet
    from jointspace.server.app import start_server
    from jointspace.server.builder import build_generation
    from jointspace.server.engine import Engine

    encoders = EncoderSet(ensemble / "model")
    build_generation(encoders, [ensemble / "catalog.jsonl"], ensemble / "index")
    films = [json.loads(line)["id"] for line in (ensemble / "catalog.jsonl").read_text().splitlines()]
    expected = encoders.embed("id", films) @ encoders.embed("ids", [films[:5]])[0]
    running = start_server(Engine(ensemble / "model", ensemble / "index"), port=0)
    try:
        with Client(f"127.0.0.1:{running.port}", timeout=30) as client:
            client.wait_ready()
            hits = client.search(ids=films[:5], k=10)
            assert [h.key for h in hits] == [films[i] for i in np.argsort(-expected)[:10]]
            assert np.allclose([h.score for h in hits], np.sort(expected)[::-1][:10], atol=1e-4)
            assert client.info()["dim"] == 2 * DIM
            with pytest.raises(grpc.RpcError) as error:
                client.search(vector=[1.0] * DIM, k=3)  # one member's width is not the space's
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert f"expected {2 * DIM} values, got {DIM}" in error.value.details()
            assert len(client.search(id=films[0], k=3)) == 3  # still serving
    finally:
        running.stop(grace=0.5)

