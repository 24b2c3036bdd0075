"""Confining the files the server reads to one data directory.

A FAISS file or a SavedModel is a program as much as data (PITFALLS.md: reading one is a
memory-corruption surface, a model runs its own graph), and catalog paths arrive in requests
(`RebuildIndex`). With a data directory configured, every such path must resolve, symlinks
followed, to a place inside it; `..` and links pointing out are refused with PERMISSION_DENIED.
"""

from __future__ import annotations

from pathlib import Path

from jointspace.errors import InvalidInput, PermissionDenied


class DataDir:
    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root).resolve() if root is not None else None

    def confine(self, path: Path | str, field: str = "path") -> Path:
        """`path` resolved (relative paths from the data directory), if it lies inside the data
        directory; without one configured, every path is allowed (relative: from the working
        directory). The message names `field` and the path as given, not the server's layout."""
        if "\0" in str(path):  # the OS cannot name such a file; Path would raise ValueError
            raise InvalidInput(f"{field} {str(path)!r}: a path cannot hold a NUL character")
        given = Path(path)
        if self.root is None:
            return given.resolve()
        resolved = (self.root / given).resolve()
        if not resolved.is_relative_to(self.root):
            raise PermissionDenied(f"{field} {str(path)!r}: outside the server's data directory")
        return resolved
