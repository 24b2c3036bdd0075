"""One writer per index directory: the process that serves it as the writer holds a lock on
`INDEX/writer.lock` for as long as it lives; a second one is refused at start.

Only the writer changes the directory (rebuilds, `CURRENT`, leftovers removed at start, the
journal); read replicas (follower.py) only read it, so they take no lock and any number may run.
Two writers would each number, carry over and drop journal rows as if alone, and one's start
would delete the other's rebuild in progress as a leftover.

The lock is a POSIX record lock (`fcntl.lockf`): the kernel drops it when the process ends,
SIGKILL included, so a crash leaves no stale lock to clean up, and it is honoured across hosts
by file systems with working POSIX locks (a cluster file system; NFS only through its lock
manager, and SQLite's WAL does not work on NFS anyway: docs/guide.md, "Read replicas"). Such a
lock belongs to the process and is released when the process closes any descriptor of the file,
so the file is opened once per process and held open; engines made inside one process (tests,
the demo, benchmarks) take no lock: `serve` takes it for the process.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from jointspace.core.errors import Aborted, NotFound

LOCK_FILE = "writer.lock"

_held: dict[Path, int] = {}  # index directory -> the descriptor that holds its lock


def hold_writer_lock(index_root: Path) -> None:
    """Lock `index_root` for this process as its one writer, or Aborted naming the process that
    holds it (its pid and host, written into the file)."""
    root = Path(index_root).resolve()
    if root in _held:
        return
    if not root.is_dir():
        raise NotFound(f"{index_root}: no such index directory")
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise Aborted(f"{index_root}: already served by a writer ({holder}); one writer per index "
                      f"directory: start this server with --role reader, or stop that one") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    _held[root] = fd
