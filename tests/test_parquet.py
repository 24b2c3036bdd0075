"""Parquet pair, catalog and validation files, written by pyarrow: the same rows and the same
one-line errors as JSON Lines, a Parquet pair file trained and a Parquet catalog indexed (locally
and by Beam, one row group per worker)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jointspace.core.errors import InvalidInput
from jointspace.data import synthetic
from jointspace.data.catalog import read_catalog
from jointspace.data.pairs import read_pairs
from jointspace.data.rows import iter_rows
from test_cli import assert_one_line_error, jointspace


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def write_parquet(path: Path, columns: dict, schema: pa.Schema | None = None,
                  row_group_size: int | None = None) -> Path:
    pq.write_table(pa.table(columns, schema=schema), path, row_group_size=row_group_size)
    return path


def test_pairs_read_as_their_json_lines_do(tmp_path):
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips/a.wav").write_bytes(b"")
    rows = [{"id:user": "u:1", "id:item": "m:2", "weight": 4.0},
            {"ids": ["m:1", "m:7"], "id:item": "m:31"},
            {"audio": "clips/a.wav", "text": "seven"}]
    names = ("id:user", "id:item", "ids", "audio", "text", "weight")
    columns = {name: [row.get(name) for row in rows] for name in names}
    parquet = write_parquet(tmp_path / "p.parquet", columns)
    from_parquet, from_json = read_pairs([parquet]), read_pairs([write_jsonl(tmp_path / "p.jsonl", rows)])
    assert from_parquet.views == from_json.views and from_parquet.weights == [4.0, 1.0, 1.0]
    assert from_parquet.views["audio"][2] == str((tmp_path / "clips/a.wav").resolve())


def test_catalog_structs_maps_and_vectors_read_as_json_does(tmp_path):
    rows = [{"key": "m:1", "id": "m:1", "metadata": {"title": "Heat", "year": 1995, "genres": ["crime"]}},
            {"key": "t:1", "text": "a film about a heist", "metadata": {"title": "Notes"}},
            {"key": "v:1", "vector": [1.0, 0.0, 0.5]}]
    metadata = pa.struct([("title", pa.string()), ("year", pa.int64()), ("genres", pa.list_(pa.string()))])
    schema = pa.schema([("key", pa.string()), ("id", pa.string()), ("text", pa.string()),
                        ("vector", pa.list_(pa.float32())), ("metadata", metadata)])
    parquet = write_parquet(tmp_path / "c.parquet", {
        "key": ["m:1", "t:1", "v:1"], "id": ["m:1", None, None], "text": [None, "a film about a heist", None],
        "vector": [None, None, [1.0, 0.0, 0.5]],
        "metadata": [rows[0]["metadata"], {"title": "Notes", "year": None, "genres": None}, None]}, schema)
    got, want = read_catalog([parquet]), read_catalog([write_jsonl(tmp_path / "c.jsonl", rows)])
    assert [(e.key, e.modality, e.metadata) for e in got] == [(e.key, e.modality, e.metadata) for e in want]
    assert got[0].value == "m:1" and np.array_equal(got[2].value, want[2].value)
    # A map holds metadata whose fields differ from row to row.
    mapped = write_parquet(tmp_path / "m.parquet", {"key": ["a", "b"], "id": ["a", "b"],
                                                    "metadata": pa.array([[("lang", "en")], [("genre", "x")]],
                                                                         pa.map_(pa.string(), pa.string()))})
    assert [e.metadata for e in read_catalog([mapped])] == [{"lang": "en"}, {"genre": "x"}]


def test_row_groups_read_alone_keep_the_numbers_of_the_whole_file(tmp_path):
    keys = [f"k{i}" for i in range(7)]
    path = write_parquet(tmp_path / "c.parquet", {"key": keys, "id": keys}, row_group_size=3)
    whole = list(iter_rows(path))
    assert [n for n, _ in whole] == list(range(1, 8))
    assert list(iter_rows(path, row_group=1)) == whole[3:6]
    assert list(iter_rows(path, row_group=2)) == whole[6:]


@pytest.mark.parametrize("columns, words", [
    ({"ids": pa.array([[7], [1, 2]], pa.list_(pa.int64())), "id": ["m:1", "m:2"]},
     "p.parquet row 1: ids must be a non-empty list of strings"),
    ({"ids": [["m:1"], []], "id": ["m:1", "m:2"]}, "p.parquet row 2: ids must be a non-empty list of strings"),
    ({"text": ["a", "b"], "id": ["m:1", None]}, "p.parquet row 2: a pair row needs at least two views"),
    ({"text": ["a", "b"], "id": ["m:1", "m:2"], "weight": [1.0, -2.0]}, "p.parquet row 2: weight must be"),
    ({"text": ["a", "b"], "seen": pa.array([0, 1], pa.timestamp("ms"))},
     "p.parquet: column 'seen': type timestamp[ms] has no JSON equivalent"),
    ({"text": ["a", "b"], "audio": pa.array([b"RIFF", b"RIFF"], pa.binary())},
     "p.parquet: column 'audio': type binary has no JSON equivalent"),
])
def test_bad_pair_rows_and_columns_are_named(tmp_path, columns, words):
    with pytest.raises(InvalidInput) as raised:
        read_pairs([write_parquet(tmp_path / "p.parquet", columns)])
    assert words in str(raised.value)


@pytest.mark.parametrize("columns, words", [
    ({"key": ["a", None], "id": ["a", "b"]}, "c.parquet row 2: key must be a non-empty string"),
    ({"key": ["a", "b"], "id": ["a", "b"], "text": [None, "b"]}, "c.parquet row 2: needs exactly one of"),
    ({"key": ["a", "b"], "vector": [["0.5"], ["x"]]}, "c.parquet row 1: vector must be a list of numbers"),
    ({"key": ["a", "b"], "id": ["a", "b"], "metadata": ["x", "y"]}, "c.parquet row 1: metadata must be"),
    ({"key": ["a", "a"], "id": ["a", "b"]}, "c.parquet row 2: key 'a' appears more than once (first at "),
    ({"key": ["a"], "id": ["a"], "metadata": pa.array([{"price": 1}], pa.struct([("price", pa.decimal128(5, 2))]))},
     "c.parquet: column 'metadata.price': type decimal128(5, 2) has no JSON equivalent"),
])
def test_bad_catalog_rows_and_columns_are_named(tmp_path, columns, words):
    with pytest.raises(InvalidInput) as raised:
        read_catalog([write_parquet(tmp_path / "c.parquet", columns)])
    assert words in str(raised.value)


def test_a_file_that_is_not_parquet_is_one_error(tmp_path):
    path = write_jsonl(tmp_path / "c.parquet", [{"key": "a", "id": "a"}])
    with pytest.raises(InvalidInput, match=r"c\.parquet: not a readable Parquet file"):
        read_catalog([path])


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _table(rows: list[dict]) -> pa.Table:
    """One column per name any row has, its type inferred from every row (Table.from_pylist
    would take the columns of the first row only)."""
    names = list(dict.fromkeys(name for row in rows for name in row))
    return pa.table({name: [row.get(name) for row in rows] for name in names})


def _film_parquet(films: synthetic.SyntheticData, folder: Path, row_group_size: int) -> tuple[Path, Path]:
    """The films' pair and catalog files, written as JSON Lines and rewritten as Parquet."""
    synthetic.write_pairs(films, folder / "pairs.jsonl")
    synthetic.write_catalog(films, folder / "catalog.jsonl")
    pq.write_table(_table(_rows(folder / "pairs.jsonl")), folder / "pairs.parquet")
    pq.write_table(_table(_rows(folder / "catalog.jsonl")), folder / "catalog.parquet",
                   row_group_size=row_group_size)
    return folder / "pairs.parquet", folder / "catalog.parquet"


@pytest.mark.slow
def test_a_parquet_pair_file_trains_and_a_parquet_catalog_is_indexed(tmp_path):
    films = synthetic.generate(synthetic.SyntheticConfig(n_films=40, n_users=60, n_tastes=3, seed=4))
    pairs, catalog = _film_parquet(films, tmp_path, row_group_size=16)
    trained = jointspace("train", str(pairs), "--out", str(tmp_path / "model"), "--pairs", "ids=id",
                         "--dim", "8", "--epochs", "1")
    assert trained.returncode == 0, trained.stderr[-2000:]
    built = jointspace("index", "build", str(catalog), "--model", str(tmp_path / "model"),
                       "--out", str(tmp_path / "index"))
    assert built.returncode == 0, built.stderr[-2000:]
    from jointspace.server.index.generation import Generation
    from jointspace.server.index.index_directory import IndexDirectory

    generation = Generation(IndexDirectory(tmp_path / "index").current_path())
    assert list(generation.keys["id"]) == [f"m:{i}" for i in range(40)]
    assert generation.store.metadata("id", [0])[0] == _rows(tmp_path / "catalog.jsonl")[0]["metadata"]
    bad = write_parquet(tmp_path / "bad.parquet", {"key": ["a", "b"], "id": ["a", None]})
    assert_one_line_error(jointspace("index", "build", str(bad), "--model", str(tmp_path / "model"),
                                     "--out", str(tmp_path / "other")), "bad.parquet row 2", "needs exactly one of")


@pytest.mark.slow
def test_beam_reads_parquet_row_groups_in_parallel_and_builds_what_the_local_build_does(built, tmp_path):
    from jointspace.encoders.inference import EncoderSet
    from jointspace.server.build.beam_builder import build_generation_with_beam
    from jointspace.server.build.catalog_files import file_parts
    from jointspace.server.build.local_builder import build_generation
    from jointspace.server.index.generation import Generation
    from jointspace.server.index.index_directory import IndexDirectory

    _, catalog = _film_parquet(built.films, tmp_path, row_group_size=25)
    groups = pq.ParquetFile(catalog).metadata.num_row_groups
    assert groups > 2 and [part[2] for part in file_parts([str(catalog)])] == list(range(groups))
    build_generation_with_beam(built.model, [catalog], tmp_path / "beam", shard_rows=40)
    build_generation(EncoderSet(built.model), [tmp_path / "catalog.jsonl"], tmp_path / "local")
    beam, local = (Generation(IndexDirectory(tmp_path / name).current_path()) for name in ("beam", "local"))
    assert list(beam.keys["id"]) == list(local.keys["id"])
    rows = list(range(len(local.keys["id"])))
    assert beam.store.metadata("id", rows) == local.store.metadata("id", rows)
    assert beam.manifest.counts == local.manifest.counts


@pytest.mark.slow
def test_a_running_server_rebuilds_from_a_parquet_catalog_gated_by_parquet_validation_pairs(built, tmp_path):
    import shutil

    from jointspace.client import Client, OperationState
    from jointspace.server.serving.engine import Engine
    from serving import own_server

    _, catalog = _film_parquet(built.films, tmp_path, row_group_size=50)
    keys = [f"m:{i}" for i in range(0, 120, 7)]
    validation = write_parquet(tmp_path / "validation.parquet", {"key": keys, "id": keys})
    bad = write_parquet(tmp_path / "bad.parquet", {"key": ["m:1", "m:2"], "id": ["m:1", None]})
    index = tmp_path / "index"
    shutil.copytree(built.index, index)
    with own_server(Engine(built.model, index)) as running, \
            Client(f"127.0.0.1:{running.port}", timeout=60) as client:
        done = client.wait(client.rebuild([catalog], validation_pairs=validation, min_recall=0.1).name,
                           poll=0.1, timeout=300)
        assert done.state == OperationState.SUCCEEDED and done.validation is not None
        assert done.validation.pairs == len(keys)
        assert client.info().size == len(built.films.film_ids)
        assert len(client.search(id="m:7", k=3, modalities=["id"])) == 3
        failed = client.wait(client.rebuild([bad]).name, poll=0.1, timeout=300)
    assert failed.state == OperationState.FAILED and failed.error is not None
    assert "bad.parquet row 2: needs exactly one of" in failed.error.message
