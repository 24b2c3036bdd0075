"""The catalog store of one generation: SQLite mapping (modality, FAISS row) ↔ key + metadata.

SQLite rather than a JSON file so that a million entries do not need to be parsed to start, and
so that later online changes can be written durably. Keys are also kept in memory per modality
because every search needs them; metadata is read from SQLite only for the hits returned.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

STORE_FILE = "catalog.sqlite"

SCHEMA = """
CREATE TABLE entries (
    modality TEXT NOT NULL,
    row INTEGER NOT NULL,
    key TEXT NOT NULL UNIQUE,
    metadata TEXT NOT NULL,
    PRIMARY KEY (modality, row)
);
CREATE TABLE info (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


EMPTY_METADATA = "{}"


def metadata_text(metadata: dict[str, Any]) -> str:
    """Metadata as the store holds it. Callers pass EMPTY_METADATA for an entry without any, as
    most entries of a large build are, rather than call the encoder."""
    return json.dumps(metadata, separators=(",", ":"))


def write_store(path: Path, rows: Iterable[tuple[str, int, str, str]], info: dict[str, str]) -> None:
    """Write a new store of (modality, row, key, `metadata_text`) rows in one transaction, without
    a rollback journal or syncs: the file is new in a staging folder, which a failed build removes
    and publishing fsyncs before the generation is placed (index_directory.py), so neither would
    protect anything."""
    connection = sqlite3.connect(path)
    try:
        connection.executescript("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;" + SCHEMA)
        connection.executemany("INSERT INTO entries VALUES (?, ?, ?, ?)", rows)
        connection.executemany("INSERT INTO info VALUES (?, ?)", info.items())
        connection.commit()
    finally:
        connection.close()


class ReadOnlyFile:
    """A SQLite file of a generation, read only, with one connection per thread (connections are
    not shared between threads)."""

    def __init__(self, path: Path) -> None:
        self.uri = f"file:{path}?mode=ro"
        self._local = threading.local()

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.uri, uri=True, check_same_thread=False)
            self._local.connection = connection
        return connection


class StoreReader(ReadOnlyFile):
    """Read-only access to the catalog store."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._field_names: dict[str, frozenset[str]] = {}

    def keys_by_modality(self) -> dict[str, list[str]]:
        keys: dict[str, list[str]] = {}
        for modality, key in self._connection().execute(
            "SELECT modality, key FROM entries ORDER BY modality, row"
        ):
            keys.setdefault(modality, []).append(key)
        return keys

    def metadata(self, modality: str, rows: list[int]) -> dict[int, dict[str, Any]]:
        """The metadata of those rows that have any (rows without it are left out)."""
        if not rows:
            return {}
        marks = ",".join("?" * len(rows))
        cursor = self._connection().execute(
            f"SELECT row, metadata FROM entries WHERE modality = ? AND row IN ({marks}) AND metadata != '{{}}'",
            [modality, *rows],
        )
        return {row: json.loads(text) for row, text in cursor}

    def modalities_with_metadata(self) -> frozenset[str]:
        """Modalities with at least one entry that has metadata (one scan, at loading)."""
        return frozenset(modality for (modality,) in self._connection().execute(
            "SELECT DISTINCT modality FROM entries WHERE metadata != '{}'"))

    def locate(self, keys: list[str]) -> dict[str, tuple[str, int]]:
        """(modality, row) of each key present; absent keys are left out."""
        found: dict[str, tuple[str, int]] = {}
        for start in range(0, len(keys), 500):  # SQLite caps the number of parameters
            part = keys[start : start + 500]
            cursor = self._connection().execute(
                f"SELECT key, modality, row FROM entries WHERE key IN ({','.join('?' * len(part))})", part)
            found.update((key, (modality, row)) for key, modality, row in cursor)
        return found

    def field_names(self, modality: str) -> frozenset[str]:
        """The top-level metadata field names of a modality's entries, found by one scan and
        kept (the store never changes): a filter on any other name is answered without one."""
        names = self._field_names.get(modality)
        if names is None:
            names = frozenset(name for (name,) in self._connection().execute(
                "SELECT DISTINCT j.key FROM entries e, json_each(e.metadata) j "
                "WHERE e.modality = ? AND e.metadata != '{}'", (modality,)))
            self._field_names[modality] = names
        return names

    def field_values(self, modality: str, field: str) -> Iterator[tuple[int, str, Any]]:
        """(row, JSON type, value) of a top-level metadata field, one per element for a list.

        The field is matched by name among the top-level members rather than named in a JSON
        path: a path cannot spell every name (a quote, a backslash), and SQLite compares a path
        with the stored text, in which json.dumps wrote non-ASCII names as escapes."""
        if field not in self.field_names(modality):
            return iter(())
        return self._connection().execute(
            "SELECT e.row, j.type, j.atom FROM entries e, json_each(e.metadata) j "
            "WHERE e.modality = ?1 AND j.key = ?2 AND j.type NOT IN ('array', 'object') "
            "UNION ALL "
            "SELECT e.row, v.type, v.atom FROM entries e, json_each(e.metadata) j, json_each(j.value) v "
            "WHERE e.modality = ?1 AND j.key = ?2 AND j.type = 'array'",
            (modality, field),
        )

    def info(self) -> dict[str, str]:
        return dict(self._connection().execute("SELECT name, value FROM info"))
