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


def _train_members(rows_path: Path, config, out: Path) -> None:
    """The ensemble at `out`, and each member exported on its own beside it (`out.i`)."""
    from jointspace.data.pairs import read_pairs
    from jointspace.encoders.training.export import export_model
    from jointspace.encoders.training.trainer import train_members

    members = train_members(read_pairs([rows_path]), config, 2)
    export_model(members, out)
    for index, member in enumerate(members):
        export_model(member, out.with_name(f"{out.name}.{index}"))


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from jointspace.encoders.training.config import TrainConfig

    root = tmp_path_factory.mktemp("ensemble")
    films = synthetic.generate(synthetic.SyntheticConfig(n_films=80, n_users=120, n_tastes=4, seed=3))
    synthetic.write_pairs(films, root / "pairs.jsonl")
    synthetic.write_catalog(films, root / "catalog.jsonl")
    _train_members(root / "pairs.jsonl", TrainConfig(dim=DIM, epochs=2, batch_size=64, seed=7,
                                                     pairs=[("ids", "id")]), root / "model")
    return root


def _assert_joined(joined, first, second, modality: str, queries: list, candidates_modality: str,
                   candidates: list) -> None:
    """The ensemble's inner products are its two members' mean scores, with the members really
    different; its vectors stay within the unit ball."""
    vectors = joined.embed(candidates_modality, candidates)
    assert vectors.shape == (len(candidates), 2 * DIM)
    assert (np.linalg.norm(vectors, axis=1) <= 1 + 1e-5).all()
    assert not np.allclose(first.embed(candidates_modality, candidates),
                           second.embed(candidates_modality, candidates), atol=1e-3)  # two draws
    mean_score = sum(member.embed(candidates_modality, candidates) @ member.embed(modality, queries).T
                     for member in (first, second)) / 2
    assert np.allclose(vectors @ joined.embed(modality, queries).T, mean_score, atol=1e-5)


def test_an_ensemble_is_its_members_side_by_side(ensemble: Path):
    from jointspace.encoders.inference import EncoderSet

    manifest = json.loads((ensemble / "model" / "manifest.json").read_text())
    member_manifests = [json.loads((ensemble / f"model.{i}" / "manifest.json").read_text()) for i in (0, 1)]
    assert manifest["dim"] == 2 * DIM and [m["dim"] for m in member_manifests] == [DIM, DIM]
    assert manifest["training"]["seed"] == 7 and manifest["training"]["members"] == 2
    assert [m["training"]["seed"] for m in member_manifests] == [7, 8]
    assert manifest["metrics"]["members"] == [m["metrics"] for m in member_manifests]
    assert manifest["encoders"]["id"]["path"] == "id"  # one SavedModel, as for a single model

    films = [json.loads(line)["id"] for line in (ensemble / "catalog.jsonl").read_text().splitlines()]
    joined, first, second = (EncoderSet(ensemble / name) for name in ("model", "model.0", "model.1"))
    assert joined.modalities == first.modalities
    _assert_joined(joined, first, second, "ids", [films[:5], films[5:9]], "id", films)


def test_an_audio_and_text_ensemble_shares_one_front_end(tmp_path: Path, clips):
    """Audio members share their decoding and log-mel features inside the one SavedModel; what
    each member's tower makes of them must still be that member's own vector."""
    from jointspace.data import fsdd
    from jointspace.encoders.inference import EncoderSet
    from jointspace.encoders.training.config import TrainConfig

    train_clips, held_out = fsdd.split_by_speaker(clips, "theo")
    fsdd.write_pairs(train_clips[::6], tmp_path / "pairs.jsonl")
    _train_members(tmp_path / "pairs.jsonl", TrainConfig(dim=DIM, epochs=1, batch_size=32, seed=3),
                   tmp_path / "model")
    joined, first, second = (EncoderSet(tmp_path / name) for name in ("model", "model.0", "model.1"))
    queries = [(str(c.path), None) for c in held_out[::25]]
    _assert_joined(joined, first, second, "audio", queries, "text", list(fsdd.DIGIT_WORDS))
    wav = held_out[0].path.read_bytes()  # bytes over the wire decode as the file does
    assert np.allclose(joined.embed("audio", [(wav, None)]), joined.embed("audio", queries[:1]), atol=1e-6)


def test_an_ensemble_in_the_older_layout_is_refused_with_what_to_do(ensemble: Path, tmp_path: Path):
    from jointspace.core.errors import InvalidInput
    from jointspace.encoders.inference import EncoderSet

    manifest = json.loads((ensemble / "model" / "manifest.json").read_text())
    (tmp_path / "manifest.json").write_text(json.dumps({**manifest, "members": ["members/0", "members/1"]}))
    with pytest.raises(InvalidInput, match="older members/<i> layout; train it again"):
        EncoderSet(tmp_path)


def test_models_trained_on_different_rows_are_not_joined(tmp_path: Path):
    """One SavedModel prepares a query once for every member, so members must share what
    preparing depends on; models of other rows are refused, and nothing is written."""
    from jointspace.core.errors import InvalidInput
    from jointspace.data.pairs import read_pairs
    from jointspace.encoders.training.config import TrainConfig
    from jointspace.encoders.training.export import export_model
    from jointspace.encoders.training.trainer import train

    models = []
    for films in (30, 40):
        data = synthetic.generate(synthetic.SyntheticConfig(n_films=films, n_users=40, n_tastes=2, seed=1))
        synthetic.write_pairs(data, tmp_path / f"pairs-{films}.jsonl")
        models.append(train(read_pairs([tmp_path / f"pairs-{films}.jsonl"]),
                            TrainConfig(dim=DIM, epochs=1, batch_size=32, pairs=[("ids", "id")])))
    with pytest.raises(InvalidInput, match="trained on the same rows with the same settings"):
        export_model(models, tmp_path / "model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs-30.jsonl", "pairs-40.jsonl"]


def test_a_served_ensemble_answers_with_the_members_mean_score(ensemble: Path):
    from jointspace.client import Client
    from jointspace.encoders.inference import EncoderSet
    from jointspace.server.api.app import start_server
    from jointspace.server.build.local_builder import build_generation
    from jointspace.server.serving.engine import Engine

    encoders = EncoderSet(ensemble / "model")
    build_generation(encoders, [ensemble / "catalog.jsonl"], ensemble / "index")
    films = [json.loads(line)["id"] for line in (ensemble / "catalog.jsonl").read_text().splitlines()]
    expected = encoders.embed("id", films) @ encoders.embed("ids", [films[:5]])[0]
    running = start_server(Engine(ensemble / "model", ensemble / "index"), port=0)
    try:
        with Client(f"127.0.0.1:{running.port}", timeout=30) as client:
            client.wait_ready()
            hits = client.search(ids=films[:5], k=10, exclude_query_ids=False)
            assert [h.key for h in hits] == [films[i] for i in np.argsort(-expected)[:10]]
            assert np.allclose([h.score for h in hits], np.sort(expected)[::-1][:10], atol=1e-4)
            assert client.info().dim == 2 * DIM
            with pytest.raises(grpc.RpcError) as error:
                client.search(vector=[1.0] * DIM, k=3)  # one member's width is not the space's
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert f"expected {2 * DIM} values, got {DIM}" in error.value.details()
            assert len(client.search(id=films[0], k=3)) == 3  # still serving
    finally:
        running.stop(grace=0.5)

