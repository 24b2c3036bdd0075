"""Catalog entries by key, as served: the generation's catalog store under the online changes.

An upserted entry answers for its key; a row hidden by an upsert or a delete does not; any other
key is looked up in the store. The result is what a search could return for the key now.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jointspace.server.index.changes import Changes
from jointspace.server.index.generation import Generation

# (key, modality, metadata)
StoredEntry = tuple[str, str, dict[str, Any]]


def lookup(generation: Generation, changes: Changes, keys: Sequence[str]) -> tuple[list[StoredEntry], list[str]]:
    """The served entries of `keys`, in their order (a repeated key once), and the keys not served."""
    wanted = list(dict.fromkeys(keys))
    located = generation.store.locate([k for k in wanted if k not in changes.entries])
    rows_by_modality: dict[str, list[int]] = {}
    for modality, row in located.values():
        rows_by_modality.setdefault(modality, []).append(row)
    metadata = {modality: generation.store.metadata(modality, rows) for modality, rows in rows_by_modality.items()}
    found: list[StoredEntry] = []
    missing: list[str] = []
    for key in wanted:
        if key in changes.entries:
            entry = changes.entries[key]
            found.append((key, entry.modality, dict(entry.metadata)))
        elif changes.has(key, located.get(key)):
            modality, row = located[key]
            found.append((key, modality, metadata[modality].get(row, {})))
        else:
            missing.append(key)
    return found, missing
