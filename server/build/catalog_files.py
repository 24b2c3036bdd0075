"""The catalog files of a Beam build, through Beam's FileSystems: local paths, globs, and URLs
(`gs://`, `s3://`, ... wherever Beam's extra for that store is installed), so that workers on a
cluster read the shards of a catalog where it lies.

A catalog is cut into parts, each read by one worker: a JSON Lines or CSV file is one part, a
Parquet file one part per row group. Parts are listed by the driver (a Parquet file's footer
says its row groups), so that a runner can spread them before anything is read.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from apache_beam.io.filesystem import BeamIOError, CompressionTypes
from apache_beam.io.filesystems import FileSystems

from jointspace.core.errors import InvalidInput, NotFound
from jointspace.data.catalog import CatalogEntry, iter_numbered
from jointspace.data.rows import is_parquet

FilePart = tuple[int, str, int | None]  # (catalog file number, path, Parquet row group or None: all)


def _is_url(pattern: str) -> bool:
    return "://" in pattern


def catalog_files(patterns: Sequence[str | Path]) -> list[str]:
    """The files the patterns name, in order: each pattern's matches sorted, local paths made
    absolute (workers need not share the driver's working directory). A pattern that matches
    nothing is refused, as a missing file is by the local build."""
    files: list[str] = []
    for pattern in map(str, patterns):
        name = pattern if _is_url(pattern) else str(Path(pattern).expanduser().absolute())
        try:
            matched = sorted(m.path for m in FileSystems.match([name])[0].metadata_list)
        except (BeamIOError, ValueError) as error:
            raise InvalidInput(f"{pattern}: cannot list ({str(error).splitlines()[0][:200]})") from None
        matched = [path for path in matched if _is_url(path) or Path(path).is_file()]
        if not matched:
            raise NotFound(f"{pattern}: no such file" if not glob.has_magic(pattern) else
                           f"{pattern}: matches no file")
        files.extend(matched)
    return files


def _open(path: str) -> BinaryIO:
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def file_parts(paths: Sequence[str]) -> list[FilePart]:
    """Every part of every file, in catalog order."""
    from jointspace.data.parquet import row_group_sizes  # pyarrow only for Parquet files

    parts: list[FilePart] = []
    for number, path in enumerate(paths):
        if not is_parquet(Path(path)):
            parts.append((number, path, None))
            continue
        with _open(path) as handle:
            groups = len(row_group_sizes(Path(path), handle))
        parts.extend((number, path, group) for group in range(groups))
    return parts


def read_part(part: FilePart) -> Iterator[tuple[int, CatalogEntry]]:
    """(line or row number, entry) of one part."""
    _, path, row_group = part
    with _open(path) as handle:
        yield from iter_numbered(Path(path), row_group=row_group, source=handle)
