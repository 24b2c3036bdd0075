"""Reading row files (JSON Lines or CSV) with errors that name the file and line.

Pair files and catalog files share the format rules: one object per line, or CSV with the same
column names (lists space-separated), audio paths relative to the file that names them.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator

from jointspace.errors import InvalidInput, NotFound

LIST_FIELDS = {"ids", "vector"}


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


def iter_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) for every row of a .jsonl/.json/.csv file; empty CSV cells are absent."""
    if not path.is_file():
        raise NotFound(f"{path}: no such file")
    with path.open(newline="", encoding="utf-8") as handle:
        if path.suffix.lower() == ".csv":
            for number, record in enumerate(csv.DictReader(handle), start=2):
                try:
                    yield number, {k: _csv_value(k, v) for k, v in record.items() if k and v}
                except ValueError as error:
                    raise InvalidInput(f"{path}:{number}: {error}") from None
            return
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise InvalidInput(f"{path}:{number}: not valid JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise InvalidInput(f"{path}:{number}: a row must be a JSON object")
            yield number, row


def resolve_audio(path: Path, value: Any, where: str) -> str:
    """Audio paths are relative to the file that names them; absolute ones stay as they are."""
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{where}: audio must be a file path")
    return str((path.parent / value).resolve())


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
    sequence is latin-1, so what cannot be text is caught by its NUL bytes: UTF-16, binaries)."""
    if not path.is_file():
        raise NotFound(f"{path}: no such file")
    data = path.read_bytes()
    if not data.strip():
        raise InvalidInput(f"{path}: the file is empty")
    if b"\x00" in data:
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        raise InvalidInput(f"{path}:{line}: NUL byte: not a latin-1 or UTF-8 text file (UTF-16?)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield number, line
