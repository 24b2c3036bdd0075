"""The durable record of online changes: an append-only SQLite journal in the index directory.

    INDEX/journal.sqlite    one row per upserted or deleted key, in acknowledgement order

Each change is committed (WAL, synchronous=FULL: fsynced) before Upsert or Delete answers, and
is tagged with the generation it was made against; loading a generation replays its changes on
top of it (changes.py), so an acknowledged change survives a restart or a SIGKILL. An upsert
keeps both the vector (replayed as is while the model stays) and the value it came from (id,
text, vector, or audio bytes), so that a rebuild with another model can embed it again.

Every change is numbered once, as it is acknowledged (`origin`: its first `seq`); the number
stays with it when a rebuild carries it over to a new generation (`carry_over`, one transaction,
before `CURRENT` is switched). Which changes a rebuild carries is decided by these numbers (those
after the one its catalog is said to include), never by file times or clocks; rows of any
generation other than the live one are dropped once it is live, and at every start (a
generation that was placed but never went live may reuse a name).

One writer, many readers: only the writer process (`serve`, writer_lock.py) opens the journal
to write; read replicas open it read-only (`Journal(root, read_only=True)`: a `mode=ro`
connection, no table created, no pragma set) and tail it (follower.py). Why a reader misses no
change and applies none twice: once a generation is live its rows only grow, at the end. Every
row carried to it was committed, in one transaction, before `CURRENT` named it; later rows are
appended, and writes are serialised by `BEGIN IMMEDIATE`, so rows commit in `seq` order and a
new row's number (its own `seq`) is larger than every number before it. A reader that has
applied a live generation's changes through number N therefore needs exactly those numbered
after N, and reads a generation's rows in full only when `CURRENT` comes to name it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jointspace.core.errors import Corrupt
from jointspace.server.index.write_sites import write_site

JOURNAL_FILE = "journal.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    generation TEXT NOT NULL,
    acknowledged REAL NOT NULL,   -- unix time of the commit
    kind TEXT NOT NULL,           -- 'upsert' or 'delete'
    key TEXT NOT NULL,
    modality TEXT,
    value TEXT,                   -- JSON of an id, text or vector value
    audio BLOB,
    sample_rate INTEGER,
    vector BLOB,                  -- little-endian float32, as embedded for the generation's model
    metadata TEXT,
    origin INTEGER                -- the seq the change was acknowledged as; NULL: this row's seq
);
CREATE INDEX IF NOT EXISTS changes_by_generation ON changes (generation, seq);
"""
UPSERT, DELETE = "upsert", "delete"


@dataclass(frozen=True)
class Change:
    kind: str
    key: str
    acknowledged: float = 0.0
    number: int = 0  # the journal's number for it (`origin`); 0 until journalled
    modality: str | None = None
    value: Any = None  # id or text string, float list, or (audio bytes, sample rate or None)
    vector: np.ndarray | None = None
    metadata: dict[str, Any] | None = None

    @property
    def upserted_modality(self) -> str:
        """The modality of an upsert, which the journal always records."""
        if self.modality is None:
            raise Corrupt(f"the journal's upsert of {self.key!r} names no modality")
        return self.modality

    @property
    def upserted_vector(self) -> np.ndarray:
        """The vector of an upsert, which the journal always records."""
        if self.vector is None:
            raise Corrupt(f"the journal's upsert of {self.key!r} has no vector")
        return self.vector


class Journal:
    """Created on the first write, so that serving a directory that never changes writes nothing
    into it. Writers are serialised by the engine; reads happen at load and rebuild time, and
    on a read replica at every poll. `read_only`: a replica's, which never writes (a write is a
    bug, refused before SQLite is asked)."""

    def __init__(self, index_root: Path, read_only: bool = False) -> None:
        self.path = Path(index_root) / JOURNAL_FILE
        self.read_only = read_only
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _open(self, create: bool) -> sqlite3.Connection | None:
        if create:
            self._check_writable()
        with self._lock:
            if self._connection is None and (create or self.path.is_file()):
                existed = self.path.is_file()
                with self._reading():
                    connection = self._connect()
                    if existed:
                        self._check(connection)
                if self.read_only:  # the writer set WAL mode and created the table
                    self._connection = connection
                    return connection
                with write_site("journal", f"opening the journal {self.path}"):
                    connection.execute("PRAGMA journal_mode=WAL")
                    connection.execute("PRAGMA synchronous=FULL")
                    connection.executescript(SCHEMA)
                    _add_origin_column(connection)
                self._connection = connection
            return self._connection

    def _connect(self) -> sqlite3.Connection:
        if not self.read_only:
            return sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        address = f"file:{urllib.parse.quote(str(self.path))}?mode=ro"
        return sqlite3.connect(address, uri=True, check_same_thread=False, isolation_level=None)

    def _check_writable(self) -> None:
        if self.read_only:
            raise RuntimeError(f"{self.path}: a read replica's journal is never written")

    def _check(self, connection: sqlite3.Connection) -> None:
        """SQLite's own page check; a damaged journal must stop the server, not lose changes."""
        problems = [row[0] for row in connection.execute("PRAGMA quick_check(5)")]
        if problems != ["ok"]:
            raise sqlite3.DatabaseError("; ".join(problems))

    @contextmanager
    def _reading(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.DatabaseError as error:
            raise Corrupt(
                f"{self.path}: the journal of online changes is unreadable ({error}); it holds acknowledged "
                f"upserts and deletes, so the server does not go on without it: restore it from a backup, "
                f"or move it (and its -wal file) aside to serve without those changes") from None

    def append(self, generation: str, changes: Iterable[Change]) -> None:
        """Commit changes made against `generation`, stamped with the time of the commit."""
        now = time.time()
        self._write([_row(generation, now, change) for change in changes])

    def last_number(self) -> int:
        """The number of the newest change, 0 for an empty or absent journal. AUTOINCREMENT never
        reuses a number, so every change acknowledged later has a larger one."""
        connection = self._open(create=False)
        if connection is None:
            return 0
        with self._lock, self._reading():
            return int(connection.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()[0])

    def changes(self, generation: str, after: int = 0) -> list[Change]:
        """Changes made against `generation` (numbered after `after`), in order. A number is never
        larger than its row's `seq` (it is its own seq, or an earlier one it was carried from), so
        `seq > after` picks the candidates through the (generation, seq) index: a replica that
        tails the journal reads only the new rows."""
        connection = self._open(create=False)
        if connection is None:
            return []
        with self._lock, self._reading():
            rows = connection.execute(
                "SELECT kind, key, acknowledged, modality, value, audio, sample_rate, vector, metadata,"
                " COALESCE(origin, seq) FROM changes WHERE generation = ? AND seq > ?"
                " AND COALESCE(origin, seq) > ? ORDER BY seq", (generation, after, after)).fetchall()
        return [_change(row) for row in rows]

    def carry_over(self, generation: str, changes: list[Change]) -> None:
        """Record changes as made against `generation` (a new one, not live yet), keeping their
        acknowledgement times and numbers; rows left under that name by an earlier attempt are
        replaced."""
        if changes or self.path.is_file():  # an index that never changed gets no journal
            self._write([_row(generation, c.acknowledged, c) for c in changes], replacing=generation)

    def _write(self, rows: list[tuple[Any, ...]], replacing: str | None = None) -> None:
        """One transaction, fsynced at commit; `replacing` drops that generation's rows first."""
        connection = self._open(create=True)
        assert connection is not None  # create=True always opens it
        with self._lock, write_site("journal", f"writing the journal {self.path}"):
            connection.execute("BEGIN IMMEDIATE")
            try:
                if replacing is not None:
                    connection.execute("DELETE FROM changes WHERE generation = ?", (replacing,))
                connection.executemany(
                    "INSERT INTO changes (generation, acknowledged, kind, key, modality, value, audio,"
                    " sample_rate, vector, metadata, origin) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
                connection.execute("COMMIT")
            except BaseException:
                # A failed COMMIT may have rolled back already, and ROLLBACK itself may fail on a
                # broken disk: the first error is the one to report.
                with suppress(sqlite3.Error):
                    if connection.in_transaction:
                        connection.execute("ROLLBACK")
                raise

    def keep_only(self, generation: str) -> None:
        """Drop the changes of every generation but the live one."""
        self._check_writable()
        connection = self._open(create=False)
        if connection is not None:
            with self._lock, write_site("journal", f"dropping old rows of the journal {self.path}"):
                connection.execute("DELETE FROM changes WHERE generation != ?", (generation,))


def _add_origin_column(connection: sqlite3.Connection) -> None:
    """Journals written before changes kept their number across rebuilds lack the column; NULL
    there means the row's own seq, which is what those rows were numbered."""
    columns = {row[1] for row in connection.execute("PRAGMA table_info(changes)")}
    if "origin" not in columns:
        connection.execute("ALTER TABLE changes ADD COLUMN origin INTEGER")


def _row(generation: str, acknowledged: float, change: Change) -> tuple[Any, ...]:
    audio = sample_rate = value = None
    if change.modality == "audio" and change.value is not None:
        audio, sample_rate = change.value
    elif change.value is not None:
        value = json.dumps(np.asarray(change.value).tolist() if change.modality == "vector" else change.value)
    vector = None if change.vector is None else np.asarray(change.vector, "<f4").tobytes()
    metadata = None if change.metadata is None else json.dumps(change.metadata, separators=(",", ":"))
    return (generation, acknowledged, change.kind, change.key, change.modality, value, audio, sample_rate,
            vector, metadata, change.number or None)


def _change(row: tuple[Any, ...]) -> Change:
    kind, key, acknowledged, modality, value, audio, sample_rate, vector, metadata, number = row
    return Change(
        kind, key, acknowledged, int(number), modality,
        (bytes(audio), sample_rate) if audio is not None else None if value is None else json.loads(value),
        None if vector is None else np.frombuffer(vector, "<f4").copy(),
        None if metadata is None else json.loads(metadata),
    )
