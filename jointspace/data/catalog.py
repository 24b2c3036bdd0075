"""Catalog rows (what gets indexed): a unique key, exactly one content field, optional metadata."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from jointspace.data.rows import iter_rows, resolve_audio
from jointspace.errors import InvalidInput

CONTENT_FIELDS = ("id", "text", "audio", "vector")


@dataclass(frozen=True)
class CatalogEntry:
    key: str
    modality: str
    value: Any
    metadata: dict[str, Any] = field(default_factory=dict)


def entry_from_row(row: dict[str, Any], where: str, base: Path | None = None) -> CatalogEntry:
    """Validate one row; `base` is the catalog file, for relative audio paths."""
    key = row.get("key")
    if not isinstance(key, str) or not key:
        raise InvalidInput(f"{where}: key must be a non-empty string")
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
        value = resolve_audio(base, value, where)
    if modality == "vector" and not (
        isinstance(value, list) and all(isinstance(x, (int, float)) for x in value)
    ):
        raise InvalidInput(f"{where}: vector must be a list of numbers")
    metadata = row.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise InvalidInput(f"{where}: metadata must be a JSON object")
    return CatalogEntry(key, modality, value, metadata)


def iter_catalog(paths: Sequence[Path]) -> Iterator[CatalogEntry]:
    for path in map(Path, paths):
        for number, row in iter_rows(path):
            yield entry_from_row(row, f"{path}:{number}", path)


def read_catalog(paths: Sequence[Path]) -> list[CatalogEntry]:
    """All entries, refusing duplicate keys (a key names one thing in the index)."""
    entries, seen = [], set()
    for entry in iter_catalog(paths):
        if entry.key in seen:
            raise InvalidInput(f"catalog: key {entry.key!r} appears more than once")
        seen.add(entry.key)
        entries.append(entry)
    if not entries:
        raise InvalidInput(f"no catalog rows in {', '.join(map(str, paths))}")
    return entries
