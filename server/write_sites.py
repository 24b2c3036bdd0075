"""The places where the server writes durable state, and what a failed write becomes.

A full disk or an I/O error while writing a generation (FAISS file, catalog store, manifest,
`CURRENT`) or the journal of online changes must fail that one operation with a message, never
the server, and must leave the live generation and every acknowledged change as they were. Each
such write runs inside `write_site(site, what)`: its failure becomes StorageError (gRPC
UNAVAILABLE: nothing was applied; retry once the disk is fixed), or Corrupt (DATA_LOSS) when
SQLite finds the file itself damaged. The callers arrange the rest: a build removes its staging
folder, an upsert changes what is served only after its journal commit.

Test hook (like server/pause_points.py): JOINTSPACE_FAULT_AT=SITE[,SITE...] makes the named sites
fail with ENOSPC as a full disk would, in a real server, so tests reach these paths through real
gRPC on any machine. The sites: "journal", "index", "store", "manifest", "current". Unset
(always, outside tests), a site costs one dictionary lookup. tests/test_write_faults.py also
injects real write failures with libfiu where `fiu-run` is installed.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from contextlib import contextmanager
from typing import Iterator

from jointspace.errors import Corrupt, StorageError

FAULT_AT = "JOINTSPACE_FAULT_AT"
SITES = ("journal", "index", "store", "manifest", "current")
_DAMAGED = {"SQLITE_CORRUPT", "SQLITE_NOTADB"}


def _inject(site: str) -> None:
    if site in os.environ.get(FAULT_AT, "").split(","):
        raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (injected by {FAULT_AT})")


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
        _inject(site)
        yield
    except sqlite3.Error as error:
        if getattr(error, "sqlite_errorname", "") in _DAMAGED:
            raise Corrupt(f"{what}: the file is damaged ({_reason(error)})") from error
        raise StorageError(f"{what} failed ({_reason(error)})") from error
    except (OSError, RuntimeError) as error:
        raise StorageError(f"{what} failed ({_reason(error)})") from error
