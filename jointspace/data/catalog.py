"""Catalog rows (what gets indexed): a unique key, exactly one content field, optional metadata."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import numpy as np

from jointspace.core.errors import InvalidInput, quoted
from jointspace.core.limits import DEFAULT_LIMITS, Limits
from jointspace.data.rows import iter_rows, place, resolve_audio
from jointspace.data.vector_columns import read_vector_columns

CONTENT_FIELDS = ("id", "text", "audio", "vector")


class Confine(Protocol):
    """Where a file that a row names may lie: a server's data directory (server/index/data_dir.py)."""

    def __call__(self, path: str, field: str, relative_to: Path | None = None) -> Path: ...


@dataclass(frozen=True)
class RowRules:
    """What a row may hold beyond its format: keys and metadata within the limits, and audio
    files where `confine` allows them (None: anywhere, as a local `index build` reads them)."""

    limits: Limits = DEFAULT_LIMITS
    confine: Confine | None = None


LOCAL = RowRules()


@dataclass(frozen=True)
class CatalogEntry:
    key: str
    modality: str
    value: Any
    metadata: dict[str, Any] = field(default_factory=dict)


def entry_from_row(row: dict[str, Any], where: str, base: Path | None = None,
                   rules: RowRules = LOCAL) -> CatalogEntry:
    """Validate one row; `base` is the catalog file, for relative audio paths."""
    key = row.get("key")
    if not isinstance(key, str) or not key:
        raise InvalidInput(f"{where}: key must be a non-empty string")
    rules.limits.check_key(key, f"{where}: key")
    present = [f for f in CONTENT_FIELDS if row.get(f) is not None]
    if len(present) != 1:
        raise InvalidInput(
            f"{where}: needs exactly one of {', '.join(CONTENT_FIELDS)}, got {present or 'none'}"
        )
    modality = present[0]
    value = row[modality]
    if modality in ("id", "text") and not (isinstance(value, str) and value):
        raise InvalidInput(f"{where}: {modality} must be a non-empty string")
    if modality == "audio" and base is not None:
        value = resolve_audio(base, _confined(value, where, base, rules.confine), where)
    if modality == "vector":
        value = _vector(value, where)
    metadata = row.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise InvalidInput(f"{where}: metadata must be a JSON object")
    rules.limits.check_metadata(metadata, f"{where}: metadata")
    return CatalogEntry(key, modality, value, metadata)


def _confined(value: Any, where: str, base: Path, confine: Confine | None) -> Any:
    """An audio path checked by `confine` before anything looks at the file (relative paths
    from the catalog's folder, as resolve_audio reads them); other values are left for
    resolve_audio to refuse."""
    if confine is not None and isinstance(value, str) and value:
        confine(value, f"{where}: audio", relative_to=base.parent)
    return value


def _vector(value: Any, where: str) -> np.ndarray:
    """A flat list of numbers, kept as one float32 array: a million catalog vectors as Python
    lists of floats would take ten times the memory, and checking them number by number is the
    slowest part of reading a vector catalog."""
    array = np.asarray(value) if isinstance(value, list) else None
    if array is None or array.ndim != 1 or array.dtype.kind not in "iuf":
        raise InvalidInput(f"{where}: vector must be a list of numbers")
    return array.astype(np.float32)


def iter_numbered(path: Path, rules: RowRules = LOCAL, row_group: int | None = None,
                  source: BinaryIO | None = None) -> Iterator[tuple[int, CatalogEntry]]:
    """(line or row number, entry) of one file, or of one row group of a Parquet file: the
    number orders entries for sharded builds. `source`: as for `iter_rows`."""
    path = Path(path)
    for number, row in iter_rows(path, row_group, source):
        yield number, entry_from_row(row, place(path, number), path, rules)


def check_unique_keys(keys: Iterable[str], places: Sequence[str] | None = None) -> None:
    """A key names one thing in the index. `places[i]` (file:line) says where key i was read."""
    seen: dict[str, int] = {}
    for i, key in enumerate(keys):
        if key in seen:
            where = f"{places[i]}: " if places else "catalog: "
            first = f" (first at {places[seen[key]]})" if places else ""
            raise InvalidInput(f"{where}key {quoted(key)} appears more than once{first}")
        seen[key] = i


def check_not_empty(count: int, paths: Sequence[Path]) -> None:
    if not count:
        raise InvalidInput(f"no catalog rows in {', '.join(map(str, paths))}")


def read_catalog(paths: Sequence[Path], rules: RowRules = LOCAL) -> list[CatalogEntry]:
    """All entries, refusing duplicate keys and empty catalogs."""
    numbered = [(Path(path), number, entry) for path in paths for number, entry in iter_numbered(path, rules)]
    keys = [entry.key for _, _, entry in numbered]
    if len(set(keys)) != len(keys):  # where each row was is spelled out only to name a repeat
        check_unique_keys(keys, [place(path, number) for path, number, _ in numbered])
    check_not_empty(len(numbered), paths)
    return [entry for _, _, entry in numbered]


@dataclass(frozen=True)
class CatalogGroup:
    """The entries of one modality, column-wise, in catalog order: a catalog of precomputed
    vectors stays one float32 matrix rather than an object per row."""

    keys: list[str]
    values: Sequence[Any] | np.ndarray  # a float32 [rows, D] matrix for vectors read column-wise
    metadata: Sequence[dict[str, Any]]


def read_catalog_groups(paths: Sequence[Path], rules: RowRules = LOCAL) -> dict[str, CatalogGroup]:
    """`read_catalog`'s entries grouped by modality; a plain vector catalog is read column-wise
    (vector_columns.py), with the same result."""
    columns = read_vector_columns(paths, rules.limits)
    if columns is not None:
        return {"vector": CatalogGroup(columns.keys, columns.vectors, [{}] * len(columns.keys))}
    entries: dict[str, list[CatalogEntry]] = {}
    for entry in read_catalog(paths, rules):
        entries.setdefault(entry.modality, []).append(entry)
    return {modality: CatalogGroup([e.key for e in group], [e.value for e in group], [e.metadata for e in group])
            for modality, group in entries.items()}
