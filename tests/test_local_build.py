"""The local build writes the catalog store beside FAISS's work (server/build/local_builder.py):
a failure on either side still publishes nothing and leaves nothing behind."""

from __future__ import annotations

import sqlite3

import pytest

from jointspace.core.errors import StorageError
from jointspace.core.faults import Faults, injected
from jointspace.data.vectors import clustered_vectors, write_vector_catalog
from jointspace.encoders.inference import EncoderSet
from jointspace.server.build.local_builder import build_generation
from jointspace.server.index.catalog_store import STORE_FILE
from jointspace.server.index.index_directory import IndexDirectory


@pytest.fixture(scope="module")
def encoders(built) -> EncoderSet:
    return EncoderSet(built.model)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    path = tmp_path_factory.mktemp("local-build") / "catalog.jsonl"
    write_vector_catalog(path, clustered_vectors(3000, 16, seed=3))
    return path


def _assert_nothing_published(index) -> None:
    assert not (index / "CURRENT").exists()
    assert IndexDirectory(index).generations() == []
    assert list(index.iterdir()) == []  # no staging folder left either


def test_a_store_write_that_fails_publishes_nothing(encoders, catalog, tmp_path):
    index = tmp_path / "index"
    with injected(Faults(failing_writes=frozenset({"store"}))), \
            pytest.raises(StorageError, match="writing the catalog store .*No space left on device"):
        build_generation(encoders, [catalog], index, "HNSW8,Flat")
    _assert_nothing_published(index)
    assert build_generation(encoders, [catalog], index, "HNSW8,Flat") == "gen-000001"
    store = IndexDirectory(index).current_path() / STORE_FILE
    assert sqlite3.connect(store).execute("SELECT count(*) FROM entries").fetchone() == (3000,)


def test_a_build_stopped_while_the_store_is_written_publishes_nothing(encoders, catalog, tmp_path):
    """Stopped as a server cancels a rebuild: the store writer is waited for, then removed."""
    index = tmp_path / "index"

    def stop(phase: str, done: int, total: int) -> None:
        if phase == "indexing":
            raise RuntimeError("stopped")

    with pytest.raises(RuntimeError, match="stopped"):
        build_generation(encoders, [catalog], index, "HNSW8,Flat", report=stop)
    _assert_nothing_published(index)
