"""Reading row files (JSON Lines or CSV) with errors that name the file and line.

Pair files and catalog files share the format rules: one object per line, or CSV with the same
column names (lists space-separated), audio paths relative to the file that names them.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterator

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
