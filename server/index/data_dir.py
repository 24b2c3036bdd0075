"""Confining the files the server reads to one data directory.

A FAISS file or a SavedModel is a program as much as data (FAISS's C++ reader trusts the sizes
and offsets in the file, so a crafted one is a memory-corruption surface; a SavedModel runs the
graph it holds), and paths arrive in requests
(`RebuildIndex`) and in the catalogs they name (audio files). With a data directory configured,
every such path must resolve, symlinks followed, to a place inside it; `..` and links pointing out
are refused with PERMISSION_DENIED. A path the file system cannot name (a NUL, a component or a
whole path over its length limits) is INVALID_ARGUMENT before anything touches the disk.
Messages quote the path as the request or row gave it, never where it resolved to.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from jointspace.core.errors import InvalidInput, NotFound, PermissionDenied, quoted

NAME_MAX = 255  # bytes of one path component (Linux file systems)
PATH_MAX = 4096  # bytes of a whole path


class DataDir:
    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root).resolve() if root is not None else None

    @property
    def base(self) -> Path:
        """Where a request's relative paths start: the data directory, or without one the
        working directory."""
        return self.root or Path.cwd()

    def confine(self, path: Path | str, field: str = "path", relative_to: Path | None = None) -> Path:
        """`path` resolved, relative paths from `relative_to` (the file that names them) or
        else from `base`, if it lies inside the data directory; without one configured, every
        path is allowed. The message names `field` and the path as given."""
        _check_nameable(str(path), field)
        resolved = _resolved((relative_to or self.base) / path, path, field)
        if self.root is not None and not resolved.is_relative_to(self.root):
            raise PermissionDenied(f"{field} {quoted(str(path))}: outside the server's data directory")
        return resolved

    def existing(self, path: Path | str, field: str, kind: Literal["file", "directory"] = "file") -> Path:
        """`confine`, then NotFound unless there is a file (kind "file") or a folder
        ("directory") at the path."""
        resolved = self.confine(path, field)
        try:
            present = resolved.is_dir() if kind == "directory" else resolved.is_file()
        except OSError as error:
            raise NotFound(f"{field} {quoted(str(path))}: cannot be read ({error.strerror})") from None
        if not present:
            raise NotFound(f"{field} {quoted(str(path))}: no such {kind} on the server")
        return resolved


def _check_nameable(path: str, field: str) -> None:
    """InvalidInput for a path that no file can have: the OS would refuse it with an error
    that names the path, or Python with a ValueError."""
    if "\0" in path:
        raise InvalidInput(f"{field} {quoted(path)}: a path cannot hold a NUL character")
    try:
        encoded = os.fsencode(path)
    except UnicodeEncodeError:  # a lone surrogate, which a JSON row can spell
        raise InvalidInput(f"{field} {quoted(path)}: not a name the file system can store") from None
    longest = max((len(part) for part in encoded.split(b"/")), default=0)
    if longest > NAME_MAX:
        raise InvalidInput(f"{field} {quoted(path)}: a component of {longest} bytes is too long "
                           f"for a file name (at most {NAME_MAX})")
    if len(encoded) > PATH_MAX:
        raise InvalidInput(f"{field} {quoted(path)}: {len(encoded)} bytes is too long for a path "
                           f"(at most {PATH_MAX})")


def _resolved(path: Path, given: Path | str, field: str) -> Path:
    """`path` with links followed; a link loop (RuntimeError before Python 3.13) or a resolved
    path over the length limits is InvalidInput naming the path as given."""
    try:
        return path.resolve()
    except (OSError, RuntimeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "a loop of symbolic links"
        raise InvalidInput(f"{field} {quoted(str(given))}: cannot be resolved ({reason})") from None
