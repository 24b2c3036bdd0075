"""The places where the server writes durable state, and what a failed write becomes.

A full disk or an I/O error while writing a generation (FAISS file, catalog store, manifest,
`CURRENT`) or the journal of online changes must fail that one operation with a message, never
the server, and must leave the live generation and every acknowledged change as they were. Each
such write runs inside `write_site(site, what)`: its failure becomes StorageError (gRPC
UNAVAILABLE: nothing was applied; retry once the disk is fixed), or Corrupt (DATA_LOSS) when
SQLite finds the file itself damaged. The callers arrange the rest: a build removes its staging
folder, an upsert changes what is served only after its journal commit.

Tests make a site fail with ENOSPC, as a full disk would, through jointspace/core/faults.py (installed
by code, never by the environment), so they reach these paths through real gRPC on any machine.
tests/test_write_faults.py can also inject real write failures with libfiu (BUILD.md).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from jointspace.core import faults
from jointspace.core.errors import Corrupt, StorageError

SITES = ("journal", "index", "store", "manifest", "current")
_DAMAGED = {"SQLITE_CORRUPT", "SQLITE_NOTADB"}


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    lines = str(error).strip().splitlines()
    return lines[-1] if lines else type(error).__name__


@contextmanager
def write_site(site: str, what: str) -> Iterator[None]:
    """Run one durable write; `what` starts the message ("writing the journal"). RuntimeError is
    how FAISS reports a failed write (its C++ exception)."""
    if site not in SITES:
        raise ValueError(f"unknown write site {site!r}")
    try:
        faults.fail_write(site)
        yield
    except sqlite3.Error as error:
        if getattr(error, "sqlite_errorname", "") in _DAMAGED:
            raise Corrupt(f"{what}: the file is damaged ({_reason(error)})") from error
        raise StorageError(f"{what} failed ({_reason(error)})") from error
    except (OSError, RuntimeError) as error:
        raise StorageError(f"{what} failed ({_reason(error)})") from error
