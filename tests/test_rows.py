"""Pair and catalog files: both formats, and errors that name the file and line."""

from __future__ import annotations

import json

import pytest

from jointspace.core.errors import InvalidInput, NotFound
from jointspace.data.catalog import read_catalog
from jointspace.data.pairs import parse_pair_spec, parse_pair_weights, read_pairs


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_jsonl_pairs_with_roles_weights_and_relative_audio(tmp_path):
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips/a.wav").write_bytes(b"")
    path = write(tmp_path / "p.jsonl", [
        {"id:user": "u:1", "id:item": "m:2", "weight": 4},
        {"ids": ["m:1", "m:7"], "id": "m:31"},
        {"audio": "clips/a.wav", "text": "seven"},
    ])
    rows = read_pairs([path])
    assert len(rows) == 3 and rows.weights == [4.0, 1.0, 1.0]
    assert rows.views["audio"][2] == str((tmp_path / "clips/a.wav").resolve())
    assert rows.pair_types() == [("audio", "text"), ("id", "ids"), ("id:item", "id:user")]
    assert rows.pair_types([("text", "audio")]) == [("audio", "text")]
    with pytest.raises(InvalidInput, match="no row has both views"):
        rows.pair_types([("text", "ids")])


def test_csv_pairs_split_lists(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("ids,id,text\nm:1 m:2,m:3,\n,m:4,Toy Story\n")
    rows = read_pairs([path])
    assert rows.views["ids"] == [["m:1", "m:2"], None]
    assert rows.pair_types() == [("id", "ids"), ("id", "text")]


@pytest.mark.parametrize("line, words", [
    ('{"text": "one"}', "at least two views"),
    ('{"ids": [], "id": "m:1"}', "non-empty list"),
    ('{"text": 3, "id": "m:1"}', "non-empty string"),
    ('[1, 2]', "JSON object"),
    ('{"text": "a", "id": "b", "weight": "heavy"}', "weight"),
    ('{"text": "a", "id": "b", "weight": NaN}', "weight"),
    ('{"text": "a", "id": "b", "weight": -Infinity}', "weight"),
    ('{"text": "a", "id": "b", "weight": 1e999}', "weight"),
    ('{"text": "a", "id": "b", "weight": -0.5}', "weight"),
    ('{"text": "a", "id": "b", "weight": true}', "weight"),
])
def test_bad_pair_rows_name_file_and_line(tmp_path, line, words):
    path = tmp_path / "p.jsonl"
    path.write_text('{"text": "ok", "id": "m:1"}\n' + line + "\n")
    with pytest.raises(InvalidInput, match=words) as raised:
        read_pairs([path])
    assert "p.jsonl:2" in str(raised.value)


def test_missing_file_and_bad_pair_spec(tmp_path):
    with pytest.raises(NotFound):
        read_pairs([tmp_path / "nope.jsonl"])
    assert parse_pair_spec("ids=id, text=id") == [("ids", "id"), ("text", "id")]
    with pytest.raises(InvalidInput):
        parse_pair_spec("ids")


@pytest.mark.parametrize("spec", ["id=text:inf", "id=text:nan", "id=text:-1"])
def test_pair_weights_must_be_finite_and_not_negative(spec):
    with pytest.raises(InvalidInput, match="--pair-weight"):
        parse_pair_weights([spec])


def test_catalog_rows(tmp_path):
    path = write(tmp_path / "c.jsonl", [
        {"key": "a", "id": "m:1", "metadata": {"title": "A"}},
        {"key": "b", "vector": [0.1, 0.2]},
        {"key": "c", "audio": "x.wav"},
    ])
    (tmp_path / "x.wav").write_bytes(b"")
    entries = read_catalog([path])
    assert [e.modality for e in entries] == ["id", "vector", "audio"]
    assert entries[2].value == str((tmp_path / "x.wav").resolve())


@pytest.mark.parametrize("row, words", [
    ({"id": "m:1"}, "key"),
    ({"key": "a"}, "exactly one"),
    ({"key": "a", "id": "m:1", "text": "t"}, "exactly one"),
    ({"key": "a", "vector": ["x"]}, "list of numbers"),
    ({"key": "a", "vector": ["0.5"]}, "list of numbers"),
    ({"key": "a", "vector": [[0.5, 1.0]]}, "list of numbers"),
    ({"key": "a", "vector": 0.5}, "list of numbers"),
    ({"key": "a", "id": "m:1", "metadata": [1]}, "metadata"),
])
def test_bad_catalog_rows(tmp_path, row, words):
    with pytest.raises(InvalidInput, match=words):
        read_catalog([write(tmp_path / "c.jsonl", [row])])


def test_duplicate_catalog_keys_are_refused(tmp_path):
    path = write(tmp_path / "c.jsonl", [{"key": "a", "id": "m:1"}, {"key": "a", "id": "m:2"}])
    with pytest.raises(InvalidInput, match="more than once"):
        read_catalog([path])


@pytest.mark.parametrize("name, good", [
    ("p.jsonl", b'{"text": "ok", "id": "m:1"}\n'),
    ("p.csv", b"text,id\nok,m:1\n"),
])
def test_a_byte_that_is_not_utf8_names_file_and_line(tmp_path, name, good):
    path = tmp_path / name
    path.write_bytes(good + good.splitlines(keepends=True)[-1].replace(b"ok", b"\xe9t\xe9"))
    line = good.count(b"\n") + 1
    with pytest.raises(InvalidInput, match="not UTF-8") as raised:
        read_pairs([path])
    assert f"{name}:{line}:" in str(raised.value)
    catalog = tmp_path / "c.jsonl"
    catalog.write_bytes(b'{"key": "a", "id": "m:1"}\n{"key": "b", "text": "caf\xe9"}\n')
    with pytest.raises(InvalidInput, match="c.jsonl:2: not UTF-8"):
        read_catalog([catalog])


def test_a_byte_order_mark_is_not_part_of_the_first_column(tmp_path):
    pairs = tmp_path / "p.csv"
    pairs.write_bytes("text,id\nöl,m:1\n".encode("utf-8-sig"))
    assert read_pairs([pairs]).views == {"id": ["m:1"], "text": ["öl"]}
    catalog = tmp_path / "c.jsonl"
    catalog.write_bytes('{"key": "a", "id": "m:1"}\n'.encode("utf-8-sig"))
    assert read_catalog([catalog])[0].key == "a"


def test_missing_audio_names_file_and_line(tmp_path):
    path = write(tmp_path / "c.jsonl", [{"key": "a", "id": "m:1"}, {"key": "b", "audio": "gone.wav"}])
    with pytest.raises(NotFound, match="c.jsonl:2: audio file 'gone.wav' not found"):
        read_catalog([path])
    path = write(tmp_path / "p.jsonl", [{"id": "m:1", "text": "one"}, {"audio": "gone.wav", "text": "one"}])
    with pytest.raises(NotFound, match="p.jsonl:2: audio file 'gone.wav' not found"):
        read_pairs([path])


def test_a_duplicate_catalog_key_names_both_lines(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in (
        {"key": "a", "id": "x"}, {"key": "b", "id": "y"}, {"key": "a", "id": "z"})))
    with pytest.raises(InvalidInput, match=r"c\.jsonl:3: key 'a' appears more than once \(first at .*c\.jsonl:1\)"):
        read_catalog([path])
