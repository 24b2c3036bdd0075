"""Corrupt state on disk, with real files damaged in the test: a generation that fails its checks
is never served (the server falls back to the newest intact one, or refuses to start with one
line), a corrupt new generation is refused at the swap, and a damaged journal is reported."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from pathlib import Path

import grpc
import numpy as np
import pytest

from jointspace.client import Client, OperationState
from jointspace.core.errors import Corrupt
from jointspace.core.faults import Faults, Pause, injected
from jointspace.server.index.catalog_store import STORE_FILE
from jointspace.server.index.generation import CorruptGeneration, Generation
from jointspace.server.index.index_directory import MANIFEST, sha256_of
from jointspace.server.index.journal import JOURNAL_FILE, UPSERT, Change, Journal
from serving import jointspace_exe, own_server

DIM = 16
FIRST = "gen-000001"


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip(path: Path, at: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * at)] ^= 0xFF
    path.write_bytes(bytes(data))


def _rewrite_manifest(generation: Path, **changes) -> None:
    manifest = json.loads((generation / MANIFEST).read_text())
    manifest.update(changes)
    (generation / MANIFEST).write_text(json.dumps(manifest))


def _garbage_with_checksum(generation: Path, file: str) -> None:
    """Damage a file and record the damaged file's checksum: only reading it back can tell."""
    (generation / file).write_bytes(b"\x00garbage" * 512)
    manifest = json.loads((generation / MANIFEST).read_text())
    manifest["files"][file] = sha256_of(generation / file)
    (generation / MANIFEST).write_text(json.dumps(manifest))


DAMAGE = {
    "truncated FAISS file": (lambda g: _truncate(g / "index-id.faiss"), "index-id.faiss: missing or checksum"),
    "flipped byte in FAISS file": (lambda g: _flip(g / "index-text.faiss"), "index-text.faiss: missing or checksum"),
    "missing FAISS file": (lambda g: (g / "index-audio.faiss").unlink(), "index-audio.faiss: missing"),
    "truncated store": (lambda g: _truncate(g / STORE_FILE), f"{STORE_FILE}: missing or checksum"),
    "flipped byte in store": (lambda g: _flip(g / STORE_FILE, 0.1), f"{STORE_FILE}: missing or checksum"),
    "truncated manifest": (lambda g: _truncate(g / MANIFEST), f"{MANIFEST}: unreadable"),
    "manifest not an object": (lambda g: (g / MANIFEST).write_text("[1, 2]"), f"{MANIFEST}: unreadable"),
    "manifest with another dimension": (lambda g: _rewrite_manifest(g, dim=DIM * 2), "dimension"),
    "manifest with other counts": (
        lambda g: _rewrite_manifest(g, counts={**json.loads((g / MANIFEST).read_text())["counts"], "id": 3}),
        "the manifest says 3 vectors"),
    "unreadable FAISS file": (lambda g: _garbage_with_checksum(g, "index-id.faiss"), "index-id.faiss: unreadable"),
    "unreadable store": (lambda g: _garbage_with_checksum(g, STORE_FILE), f"{STORE_FILE}: unreadable"),
}


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_every_kind_of_damage_fails_the_generation_checks(built, tmp_path, damage):
    generation = tmp_path / FIRST
    shutil.copytree(built.index / FIRST, generation)
    Generation(generation)  # intact
    harm, message = DAMAGE[damage]
    harm(generation)
    with pytest.raises(CorruptGeneration, match=message):
        Generation(generation)


def _index_with_generations(built, tmp_path: Path, count: int) -> Path:
    """An index directory with `count` identical, intact generations; the last is live."""
    index = tmp_path / "index"
    shutil.copytree(built.index, index)
    for number in range(2, count + 1):
        shutil.copytree(index / FIRST, index / f"gen-{number:06d}")
    (index / "CURRENT").write_text(f"gen-{count:06d}\n")
    return index


def _engine(built, index: Path):
    from jointspace.server.serving.engine import Engine

    return Engine(built.model, index)


def _vector(seed: int) -> list[float]:
    return np.random.default_rng(seed).normal(size=DIM).tolist()


def _top_key(client: Client, seed: int) -> str:
    return client.search(vector=_vector(seed), k=1, modalities=["vector"])[0].key


def test_a_corrupt_live_generation_falls_back_and_keeps_every_acknowledged_change(built, tmp_path, caplog):
    index = _index_with_generations(built, tmp_path, 3)
    with own_server(_engine(built, index)) as running, Client(f"127.0.0.1:{running.port}") as client:
        client.wait_ready()
        assert client.upsert([{"key": "kept:before", "vector": _vector(1)}]) == 1
        assert client.delete(["vec:unit"]) == 1
    _truncate(index / "gen-000003" / "index-id.faiss")
    _flip(index / "gen-000002" / STORE_FILE, 0.1)
    pristine = {p: p.read_bytes() for p in (index / "gen-000003").iterdir()}

    with caplog.at_level(logging.ERROR, logger="jointspace.server"):
        engine = _engine(built, index)
    [record] = [r for r in caplog.records if "CORRUPT INDEX" in r.getMessage()]
    assert "gen-000003" in record.getMessage() and "serving the older gen-000001" in record.getMessage()
    with own_server(engine) as running, Client(f"127.0.0.1:{running.port}") as client:
        client.wait_ready()
        assert client.info().generation == FIRST
        assert _top_key(client, 1) == "kept:before"
        assert "vec:unit" not in [h.key for h in client.search(vector=[1.0] + [0.0] * (DIM - 1), k=5)]
        assert client.upsert([{"key": "kept:during", "vector": _vector(2)}]) == 1
        assert len(client.search(text="seven", k=3)) == 3
    # Nothing was rewritten, moved or deleted: the operator can still repair the live one.
    assert (index / "CURRENT").read_text().strip() == "gen-000003"
    assert {p: p.read_bytes() for p in (index / "gen-000003").iterdir()} == pristine

    shutil.copy(index / FIRST / "index-id.faiss", index / "gen-000003" / "index-id.faiss")  # repaired
    with own_server(_engine(built, index)) as running, Client(f"127.0.0.1:{running.port}") as client:
        client.wait_ready()
        assert client.info().generation == "gen-000003"
        assert _top_key(client, 1) == "kept:before" and _top_key(client, 2) == "kept:during"


def test_without_an_intact_generation_serve_exits_with_one_line(built, tmp_path):
    index = _index_with_generations(built, tmp_path, 2)
    _truncate(index / "gen-000002" / MANIFEST)
    _flip(index / FIRST / "index-audio.faiss")
    done = subprocess.run([jointspace_exe(), "serve", "--model", str(built.model), "--index", str(index),
                           "--port", "0"], capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("jointspace: error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr
    assert "no intact generation" in errors[0]
    assert "gen-000002" in errors[0] and f"{FIRST}/index-audio.faiss" in errors[0]


def test_a_corrupt_new_generation_is_refused_at_the_swap(built, tmp_path):
    index = _index_with_generations(built, tmp_path, 1)
    placed = Pause()
    with injected(Faults(pauses={"placed": placed})), own_server(_engine(built, index)) as running, \
            Client(f"127.0.0.1:{running.port}", timeout=60) as client:
        client.wait_ready()
        operation = client.rebuild([built.catalog])
        assert placed.reached.wait(120), "the rebuild never placed its generation"
        _flip(index / "gen-000002" / "index-text.faiss")  # placed, not yet loaded or live
        placed.resume.set()
        finished = client.wait(operation.name, poll=0.02)
        assert finished.state == OperationState.FAILED
        assert finished.error.code == grpc.StatusCode.DATA_LOSS
        assert "index-text.faiss: missing or checksum mismatch" in finished.error.message
        assert f"{FIRST} keeps serving" in finished.error.message
        assert client.info().generation == FIRST
        assert len(client.search(text="seven", k=3)) == 3
    assert (index / "CURRENT").read_text().strip() == FIRST
    assert not (index / "gen-000002").exists()


def _journal_with_a_change(index: Path) -> Path:
    journal = Journal(index)
    journal.append(FIRST, [Change(UPSERT, "k", modality="vector", value=_vector(0), vector=np.float32(_vector(0)))])
    journal._connection.close()  # the last connection: SQLite folds the WAL into the file
    return index / JOURNAL_FILE


@pytest.mark.parametrize("damage", ["header", "truncated"])
def test_a_damaged_journal_is_reported_clearly(built, tmp_path, damage):
    index = _index_with_generations(built, tmp_path, 1)
    path = _journal_with_a_change(index)
    assert not Path(f"{path}-wal").exists()
    if damage == "header":
        path.write_bytes(b"not a database!!" + path.read_bytes()[16:])
    else:
        path.write_bytes(path.read_bytes()[: path.stat().st_size - 1024])
    with pytest.raises(Corrupt, match=f"{JOURNAL_FILE}: the journal of online changes is unreadable"):
        _engine(built, index)
