"""Metadata filters of a search: which catalog entries a query may return.

A filter keeps entries whose metadata field equals one of its values (set membership; one value is
plain equality); a list field matches when one of its elements does. All filters of a query must
hold. Values are compared by JSON kind, so the string "1", the number 1 and `true` are three
different values, as they are in the metadata a user wrote.

Over a generation, matching rows come from an inverted index per (modality, field) built from the
catalog store on the first query that filters on the field and kept for the generation's life
(generations never change): one SQL scan per field instead of one per query. Online changes are
few and checked in Python with `matches`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from jointspace.core.errors import InvalidInput, quoted

# A value as compared: ("s", text), ("n", number as float) or ("b", flag).
Value = tuple[str, Any]


@dataclass(frozen=True)
class MetadataFilter:
    field: str
    values: frozenset[Value]


def canonical(value: Any) -> Value | None:
    """The comparable form of a JSON scalar; None for null, lists and objects."""
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, (int, float)):
        return ("n", float(value))
    if isinstance(value, str):
        return ("s", value)
    return None


def make_filter(field: str, values: Sequence[Any], where: str) -> MetadataFilter:
    """Validate one filter; `where` names it in errors (e.g. "filters[0]")."""
    if not field:
        raise InvalidInput(f"{where}.field: empty; name a metadata field")
    if "\0" in field:  # SQLite ends text at a NUL: it could not compare the name (catalog_store.py)
        raise InvalidInput(f"{where}.field: {quoted(field)}: a field name cannot hold a NUL character")
    if not values:
        raise InvalidInput(f"{where}.any_of: empty; give at least one value")
    converted = set()
    for position, value in enumerate(values):
        comparable = canonical(value)
        if comparable is None:
            raise InvalidInput(f"{where}.any_of[{position}]: {quoted(value)}: only strings, numbers and "
                               "booleans can be matched")
        converted.add(comparable)
    return MetadataFilter(field, frozenset(converted))


def matches(metadata: dict[str, Any], filters: Sequence[MetadataFilter]) -> bool:
    """Whether one entry's metadata passes every filter."""
    for item in filters:
        value = metadata.get(item.field)
        elements = value if isinstance(value, list) else [value]
        if not any(canonical(e) in item.values for e in elements):
            return False
    return True


# json_each's type names for the scalar kinds canonical() knows.
_SQL_KINDS = {"text": "s", "integer": "n", "real": "n", "true": "b", "false": "b"}


def _sql_value(kind: str, value: Any) -> Value | None:
    letter = _SQL_KINDS.get(kind)
    if letter is None:
        return None
    if letter == "b":
        return ("b", kind == "true")
    return (letter, float(value) if letter == "n" else value)


class FieldIndex:
    """Rows by metadata value, per (modality, field), for one immutable catalog store."""

    def __init__(self, scan: Any) -> None:
        # scan(modality, field) yields (row, json type, value) as SQLite's json_each gives them.
        self._scan = scan
        self._built: dict[tuple[str, str], dict[Value, np.ndarray]] = {}
        self._lock = threading.Lock()

    def _field(self, modality: str, field: str) -> dict[Value, np.ndarray]:
        """Kept only when the field has values: names that match nothing come from requests and
        are answered without a scan (store.field_names), so keeping them would only let callers
        fill the memory with names."""
        key = (modality, field)
        built = self._built.get(key)
        if built is None:
            with self._lock:  # one scan per field, however many queries ask at once
                built = self._built.get(key)
                if built is None:
                    built = self._build(modality, field)
                    if built:
                        self._built[key] = built
        return built

    def _build(self, modality: str, field: str) -> dict[Value, np.ndarray]:
        rows: dict[Value, list[int]] = {}
        for row, kind, value in self._scan(modality, field):
            comparable = _sql_value(kind, value)
            if comparable is not None:
                rows.setdefault(comparable, []).append(row)
        return {value: np.unique(np.asarray(r, np.int64)) for value, r in rows.items()}

    def rows(self, modality: str, filters: Iterable[MetadataFilter]) -> np.ndarray:
        """Sorted rows of `modality` that pass every filter."""
        result: np.ndarray | None = None
        for item in filters:
            by_value = self._field(modality, item.field)
            parts = [by_value[v] for v in item.values if v in by_value]
            passing = np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
            result = passing if result is None else np.intersect1d(result, passing, assume_unique=True)
            if not len(result):
                break
        return np.zeros(0, np.int64) if result is None else result
