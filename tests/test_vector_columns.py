"""Vector catalogs read column-wise (data/vector_columns.py): the same keys and vectors as the row
reader, and every file the row reader would refuse or read differently left to it."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jointspace.core.errors import InvalidInput, LimitExceeded
from jointspace.core.limits import DEFAULT_LIMITS
from jointspace.data.catalog import read_catalog, read_catalog_groups
from jointspace.data.vector_columns import read_vector_columns


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def assert_same_as_rows(paths):
    """read_catalog_groups gives read_catalog's entries, column-wise."""
    entries = read_catalog(paths)
    groups = read_catalog_groups(paths)
    assert list(groups) == ["vector"]
    assert groups["vector"].keys == [e.key for e in entries]
    values = np.asarray(groups["vector"].values)
    assert values.dtype == np.float32
    assert np.array_equal(values, np.stack([e.value for e in entries]), equal_nan=True)
    assert list(groups["vector"].metadata) == [e.metadata for e in entries]


def test_jsonl_vectors_read_column_wise_match_the_row_reader(tmp_path):
    rng = np.random.default_rng(0)
    rows = [json.dumps({"key": f"v:{i}", "vector": np.round(rng.normal(size=4), 7).tolist()}) for i in range(50)]
    # NaN and Infinity are read as the row reader reads them; embedding refuses them later.
    first = write_lines(tmp_path / "a.jsonl", rows[:30] + ["", '{"key": "int", "vector": [1, 2, 3, 16777217]}',
                                                  '{"key": "nan", "vector": [NaN, 1, -Infinity, 2]}',
                                                  '{"key": "caf\\u00e9 \\ud83d\\ude00", "vector": [1, 2, 3, 4]}'])
    second = write_lines(tmp_path / "b.jsonl", rows[30:])
    assert read_vector_columns([first, second], DEFAULT_LIMITS) is not None
    assert_same_as_rows([first, second])


def test_parquet_vectors_read_column_wise_match_the_row_reader(tmp_path):
    path = tmp_path / "c.parquet"
    vectors = np.random.default_rng(1).normal(size=(40, 3)).astype(np.float32)
    pq.write_table(pa.table({"key": [f"k{i}" for i in range(40)], "vector": list(vectors)}), path, row_group_size=16)
    assert read_vector_columns([path], DEFAULT_LIMITS) is not None
    assert_same_as_rows([path])


@pytest.mark.parametrize("lines", [
    ['{"key": "a", "vector": [1, 2]}', '{"key": "b", "vector": [3, 4], "metadata": {"genre": "x"}}'],
    ['{"key": "a", "vector": [1, 2]}', '{"key": "b", "vector": [3]}'],
    # An integer that float32 rounds one way and its double another (Arrow reads it as a double).
    ['{"key": "a", "vector": [1, 2]}', f'{{"key": "b", "vector": [{2**54 + 2**30 + 1}, 1]}}'],
])
def test_other_vector_files_go_row_by_row_with_the_same_result(tmp_path, lines):
    path = write_lines(tmp_path / "c.jsonl", lines)
    assert read_vector_columns([path], DEFAULT_LIMITS) is None
    groups = read_catalog_groups([path])
    entries = read_catalog([path])
    assert groups["vector"].keys == [e.key for e in entries]
    assert [list(v) for v in groups["vector"].values] == [list(e.value) for e in entries]


@pytest.mark.parametrize(("lines", "error", "message"), [
    (['{"key": "a", "vector": [1, 2]}', '{"key": "a", "vector": [3, 4]}'], InvalidInput,
     r"c\.jsonl:2: key 'a' appears"),
    (['{"key": "", "vector": [1, 2]}'], InvalidInput, r"c\.jsonl:1: key must be a non-empty string"),
    (['{"key": "' + "k" * (DEFAULT_LIMITS.max_key_bytes + 1) + '", "vector": [1, 2]}'], LimitExceeded,
     r"c\.jsonl:1: key: .* over max_key_bytes"),
    (['{"key": "\\ud800", "vector": [1, 2]}'], InvalidInput, r"c\.jsonl:1: key: not valid Unicode"),
    (['{"key": "a", "vector": [true, false]}'], InvalidInput, r"c\.jsonl:1: vector must be a list of numbers"),
    (['{"key": "a", "vector": [[1], [2]]}'], InvalidInput, r"c\.jsonl:1: vector must be a list of numbers"),
    (['{"key": 7, "vector": [1, 2]}'], InvalidInput, r"c\.jsonl:1: key must be a non-empty string"),
    ([f'{{"key": "a", "vector": [{2**70}, 2]}}'], InvalidInput, r"c\.jsonl:1: vector must be a list of numbers"),
    (['{"key": "a", "vector": [1, 2]', '{"key": "b", "vector": [1, 2]}'], InvalidInput, r"c\.jsonl:1: not valid JSON"),
])
def test_rows_the_row_reader_refuses_are_refused_by_line(tmp_path, lines, error, message):
    path = write_lines(tmp_path / "c.jsonl", lines)
    assert read_vector_columns([path], DEFAULT_LIMITS) is None
    with pytest.raises(error, match=message):
        read_catalog_groups([path])


def test_keys_repeated_across_files_are_refused(tmp_path):
    first = write_lines(tmp_path / "a.jsonl", ['{"key": "a", "vector": [1, 2]}'])
    second = write_lines(tmp_path / "b.jsonl", ['{"key": "a", "vector": [3, 4]}'])
    assert read_vector_columns([first, second], DEFAULT_LIMITS) is None
    with pytest.raises(InvalidInput, match=r"b\.jsonl:1: key 'a' appears more than once \(first at .*a\.jsonl:1\)"):
        read_catalog_groups([first, second])
