"""Row files in Parquet: each row as the dict its JSON line would be, so that pair, catalog and
validation files obey one set of rules whatever their format.

Columns map as JSON values do: strings, numbers and booleans as themselves, lists (an `ids` view,
a `vector`) as lists, structs and maps (`metadata`) as objects, null as an absent value (also
inside a struct or map; a null list element stays null). A column
of a type JSON has no equivalent for (binary, timestamps, decimals...) is refused by name before
any row is read, rather than failing somewhere later on a value that cannot be stored. Rows are
numbered from 1 in file order across row groups; a row group can be read on its own (the Beam
build reads the groups of one file in parallel) and numbers its rows as the whole file would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from jointspace.core.errors import InvalidInput

BATCH_ROWS = 1_024

Convert = Callable[[Any], Any]


def open_parquet(path: Path, source: BinaryIO | None = None) -> pq.ParquetFile:
    """The file (or `source`, the file already open: `path` then only names it), its schema
    checked; InvalidInput naming the file, or the column and its type."""
    try:
        parquet = pq.ParquetFile(path if source is None else source)
    except (pa.ArrowException, OSError) as error:
        raise InvalidInput(f"{path}: not a readable Parquet file ({_short(error)})") from None
    for field in parquet.schema_arrow:
        _check_type(field.type, path, field.name)
    return parquet


def row_group_sizes(path: Path, source: BinaryIO | None = None) -> list[int]:
    """Rows in each row group of the file, in order."""
    metadata = open_parquet(path, source).metadata
    return [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]


def iter_parquet_rows(path: Path, row_group: int | None = None,
                      source: BinaryIO | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(row number, row) of the whole file, or of one row group; null values are left out of the
    row, as an empty CSV cell is."""
    parquet = open_parquet(path, source)
    sizes = [parquet.metadata.row_group(i).num_rows for i in range(parquet.metadata.num_row_groups)]
    groups = range(len(sizes)) if row_group is None else [row_group]
    converters = {field.name: _converter(field.type) for field in parquet.schema_arrow}
    for group in groups:
        number = sum(sizes[:group])
        try:
            for batch in parquet.iter_batches(batch_size=BATCH_ROWS, row_groups=[group]):
                for record in batch.to_pylist():
                    number += 1
                    yield number, {name: converters[name](value) for name, value in record.items()
                                   if value is not None}
        except pa.ArrowException as error:
            raise InvalidInput(f"{path}: row group {group + 1} cannot be read ({_short(error)})") from None


def _check_type(kind: pa.DataType, path: Path, column: str) -> None:
    """InvalidInput naming the file and the column (`metadata.year` inside a struct) unless every
    value of the type has a JSON equivalent."""
    if pa.types.is_dictionary(kind):
        _check_type(kind.value_type, path, column)
    elif pa.types.is_struct(kind):
        for i in range(kind.num_fields):
            _check_type(kind.field(i).type, path, f"{column}.{kind.field(i).name}")
    elif pa.types.is_map(kind):
        if not _is_string(kind.key_type):
            raise InvalidInput(f"{path}: column {column!r}: map keys must be strings, got {kind.key_type}")
        _check_type(kind.item_type, path, column)
    elif _is_list(kind):
        _check_type(kind.value_type, path, column)
    elif not (pa.types.is_null(kind) or pa.types.is_boolean(kind) or pa.types.is_integer(kind)
              or pa.types.is_floating(kind) or _is_string(kind)):
        raise InvalidInput(f"{path}: column {column!r}: type {kind} has no JSON equivalent; use strings, "
                           "numbers, booleans, lists, structs or maps")


def _converter(kind: pa.DataType) -> Convert:
    """What turns a `to_pylist` value of this type into its JSON value: structs and maps (lists of
    pairs) to objects without their null members, at any depth (a struct has every field in every
    row; null is how a row leaves one out); `_same` for a type holding neither, so a vector column
    costs nothing."""
    if pa.types.is_dictionary(kind):
        return _converter(kind.value_type)
    if pa.types.is_map(kind):
        item = _converter(kind.item_type)
        return lambda value: None if value is None else {k: item(v) for k, v in value if v is not None}
    if pa.types.is_struct(kind):
        children = {kind.field(i).name: _converter(kind.field(i).type) for i in range(kind.num_fields)}
        return lambda value: None if value is None else {k: children[k](v) for k, v in value.items() if v is not None}
    if _is_list(kind):
        element = _converter(kind.value_type)
        if element is _same:
            return _same
        return lambda value: None if value is None else [element(v) for v in value]
    return _same


def _same(value: Any) -> Any:
    return value


def _is_string(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _is_list(kind: pa.DataType) -> bool:
    return bool(pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind))


def _short(error: Exception) -> str:
    """pyarrow's message, first line, bounded: it can quote a whole buffer."""
    return str(error).splitlines()[0][:200] if str(error) else type(error).__name__
