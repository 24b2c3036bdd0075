"""Catalogs of precomputed vectors read column-wise: a file whose rows all hold only a `key` and
a `vector` becomes one list of keys and one float32 matrix without a Python object per row.

Row by row, a million-row vector catalog spends most of its reading time on per-row work (a dict
per line, a list of floats, a checked entry), not on parsing. Arrow parses JSON Lines and Parquet
in C++ into columns, which are checked whole here. This is only a faster way to the same result:
a file that is anything else, or breaks any rule that `catalog.entry_from_row` enforces, is left
to the row reader (None), which reads it again and reports the first bad row by its line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from itertools import chain
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from jointspace.core.limits import Limits
from jointspace.data.rows import is_parquet

COLUMNS = frozenset({"key", "vector"})
JSON_SUFFIXES = (".jsonl", ".json")
# Told rather than inferred, which Arrow does faster. Every number is read as a double, so an
# integer beyond 2**53, which the row reader holds exactly (or refuses beyond 64 bits), is left
# to the row reader (`_rounded_integers`); a row of another shape fails to parse, as before.
JSON_OPTIONS = pj.ParseOptions(explicit_schema=pa.schema([("key", pa.string()), ("vector", pa.list_(pa.float64()))]))
EXACT_INTEGERS = 2.0**53


@dataclass(frozen=True)
class VectorColumns:
    keys: list[str]
    vectors: np.ndarray  # float32 [rows, D], as the row reader would hold each row's `vector`


def read_vector_columns(paths: Sequence[Path], limits: Limits) -> VectorColumns | None:
    """The rows of all `paths` in order, or None unless every file is a plain vector catalog whose
    rows pass the row reader's checks (keys unique across the files)."""
    parts = []
    for path in map(Path, paths):
        table = _table(path)
        part = _checked(table, limits) if table is not None else None
        if part is None:
            return None
        parts.append(part)
    keys = list(chain.from_iterable(part.keys for part in parts))
    if not keys or len(set(keys)) != len(keys):
        return None
    return VectorColumns(keys, np.concatenate([part.vectors for part in parts]))


def _table(path: Path) -> pa.Table | None:
    if not path.is_file():
        return None
    if is_parquet(path):
        import pyarrow.parquet as pq

        read = pq.read_table
    elif path.suffix.lower() in JSON_SUFFIXES:
        read = partial(pj.read_json, parse_options=JSON_OPTIONS)
    else:
        return None
    try:
        table = read(path)
        table.validate(full=True)  # e.g. keys that are not UTF-8, which the row reader refuses
    # Arrow refuses what the row reader refuses as JSON (a lone surrogate escape too) but not
    # the other way round: any error sends the file to the row reader, for its message.
    except (pa.ArrowException, OSError):
        return None
    return table


def _checked(table: pa.Table, limits: Limits) -> VectorColumns | None:
    if set(table.column_names) != COLUMNS or not len(table) or table["key"].null_count or table["vector"].null_count:
        return None
    keys, vectors = table["key"], table["vector"].combine_chunks()
    if not pa.types.is_string(keys.type) and not pa.types.is_large_string(keys.type):
        return None
    values = vectors.type.value_type if pa.types.is_list(vectors.type) or pa.types.is_large_list(vectors.type) else None
    if values is None or not (pa.types.is_floating(values) or pa.types.is_integer(values)):
        return None
    key_bytes = pc.binary_length(keys)
    if pc.min(key_bytes).as_py() < 1 or pc.max(key_bytes).as_py() > limits.max_key_bytes:
        return None
    lengths = pc.list_value_length(vectors)
    dim = pc.min(lengths).as_py()
    flat = vectors.flatten()
    if dim != pc.max(lengths).as_py() or flat.null_count or len(flat) != dim * len(vectors):
        return None
    matrix = flat.to_numpy(zero_copy_only=False).reshape(len(vectors), dim)
    single = matrix.astype(np.float32)
    if _rounded_integers(matrix, single):
        return None
    return VectorColumns(keys.to_pylist(), single)


def _rounded_integers(matrix: np.ndarray, single: np.ndarray) -> bool:
    """Whether doubles hold finite values from 2**53 up, where a number that was an integer in
    the file was rounded on the way (JSON_OPTIONS); `single` is `matrix` as float32, for speed."""
    if matrix.dtype != np.float64:
        return False
    large = np.abs(single) >= EXACT_INTEGERS
    return bool(large.any() and np.isfinite(matrix[large]).any())
