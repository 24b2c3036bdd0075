"""Reading row files (JSON Lines, CSV or Parquet) with errors that name the file and line (row).

Pair files and catalog files share the format rules: one object per line, CSV with the same
column names (lists space-separated), or Parquet with the same column names (parquet.py: lists,
structs and maps as JSON has them); audio paths relative to the file that names them.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any, BinaryIO

from jointspace.core.errors import InvalidInput, NotFound

LIST_FIELDS = {"ids", "vector"}
PARQUET_SUFFIX = ".parquet"


def _csv_value(field: str, text: str) -> Any:
    modality = field.split(":", 1)[0]
    if modality in LIST_FIELDS:
        items = text.split()
        return [float(x) for x in items] if modality == "vector" else items
    if modality == "weight":
        return float(text)
    if modality == "metadata":
        return json.loads(text)
    return text


def iter_rows(path: Path, row_group: int | None = None,
              source: BinaryIO | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) for every row of a .jsonl/.json/.csv file, (row number, row) for a
    .parquet file (or one of its row groups); empty CSV cells and Parquet nulls are absent.
    `source`: the file already open (a remote one, through Beam's FileSystems); `path` then
    only names it, for its format and for messages."""
    if source is None and not path.is_file():
        raise NotFound(f"{path}: no such file")
    if is_parquet(path):
        from jointspace.data.parquet import iter_parquet_rows  # pyarrow only for Parquet files

        yield from iter_parquet_rows(path, row_group, source)
        return
    with nullcontext(source) if source is not None else path.open("rb") as handle:
        lines = _text_lines(path, handle)
        if path.suffix.lower() == ".csv":
            reader = csv.DictReader(lines)
            for record in reader:
                try:
                    yield reader.line_num, {k: _csv_value(k, v) for k, v in record.items() if k and v}
                except ValueError as error:
                    raise InvalidInput(f"{path}:{reader.line_num}: {error}") from None
            return
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise InvalidInput(f"{path}:{number}: not valid JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise InvalidInput(f"{path}:{number}: a row must be a JSON object")
            yield number, row


def is_parquet(path: Path) -> bool:
    return path.suffix.lower() == PARQUET_SUFFIX


def place(path: Path, number: int) -> str:
    """Where a row is, for messages: `file:line`, or `file row N` in a Parquet file (no lines)."""
    return f"{path} row {number}" if is_parquet(path) else f"{path}:{number}"


def _text_lines(path: Path, handle: BinaryIO) -> Iterator[str]:
    """The file's lines as text, line endings kept (the csv module wants them). Decoded one line
    at a time so that a byte that is not UTF-8 is reported by its line, not by its offset in a
    block; a byte order mark (spreadsheets write one) is dropped rather than read as part of
    the first column's name."""
    for number, raw in enumerate(handle, start=1):
        try:
            yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as error:
            raise InvalidInput(f"{path}:{number}: not UTF-8 text (byte 0x{raw[error.start]:02x} at "
                               f"byte {error.start + 1} of the line)") from None


def resolve_audio(path: Path, value: Any, where: str) -> str:
    """Audio paths are relative to the file that names them; absolute ones stay as they are. A
    missing file is reported here, where the row's file and line are known."""
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{where}: audio must be a file path")
    resolved = (path.parent / value).resolve()
    try:
        present = resolved.is_file()
    except OSError as error:  # a name the file system cannot hold, e.g. a component too long
        raise InvalidInput(f"{where}: audio file {value!r:.60} cannot be read ({error.strerror})") from None
    if not present:
        raise NotFound(f"{where}: audio file {value!r:.60} not found")
    return str(resolved)


def relative_path(path: Path | str, out: Path) -> str:
    """Audio paths in row files are relative to the row file (the format's rule), in POSIX form
    so that a folder of data moves between machines intact."""
    return Path(os.path.relpath(Path(path).resolve(), out.resolve().parent)).as_posix()


def write_rows(out: Path, rows: Iterable[dict]) -> int:
    """Rows as JSON Lines (creating the folder); returns the number written."""
    written = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
            written += 1
    return written


def read_text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) of a non-empty text file in UTF-8 or, failing that, latin-1 (any byte
    sequence is latin-1, so what cannot be text is caught by its NUL bytes: UTF-16, binaries).
    A UTF-8 byte order mark is dropped, not read as part of the first line."""
    if not path.is_file():
        raise NotFound(f"{path}: no such file")
    data = path.read_bytes()
    if not data.strip():
        raise InvalidInput(f"{path}: the file is empty")
    if b"\x00" in data:
        nul_line = data[: data.index(b"\x00")].count(b"\n") + 1
        raise InvalidInput(f"{path}:{nul_line}: NUL byte: not a latin-1 or UTF-8 text file (UTF-16?)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield number, line
