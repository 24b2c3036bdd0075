"""Online changes over an immutable generation: upserted entries and hidden rows.

A generation's FAISS indexes are never modified. An upsert puts the entry in a small exact
"delta" (its vector searched by brute force beside the FAISS index of its modality) and hides the
generation's row with the same key, if any; a delete hides the row or drops the delta entry.
Hidden rows are left out of FAISS searches by an ID selector, so a query still gets k hits.
Why not add to the FAISS index itself: FAISS allows concurrent searches of one index but not an
`add` concurrent with them, IVF-PQ and HNSW cannot really remove rows, and the generation's files
must keep matching their checksums. The delta is meant for what changes between rebuilds
(thousands to tens of thousands of entries); the next rebuild folds it into a new generation.

`Changes` is immutable: every write makes a new one and the engine swaps it in with the
generation it belongs to (engine.Served), so readers need no locks. Copying costs O(delta size)
per write, which is why the delta should stay small.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jointspace.server.index.journal import UPSERT, Change
from jointspace.server.index.lexical_terms import document

# (modality, row) of a generation's entry, as the catalog store locates keys.
Location = tuple[str, int]


@dataclass(frozen=True)
class DeltaEntry:
    key: str
    modality: str
    vector: np.ndarray  # float32 [D], as the model embeds it (length at most 1)
    metadata: dict[str, Any]
    document: str = ""  # its terms for the lexical side (lexical_terms.document)


@dataclass(frozen=True)
class DeltaMatrix:
    """The delta entries of one modality, stacked for brute-force search."""

    keys: list[str]
    vectors: np.ndarray  # float32 [n, D]
    metadata: list[dict[str, Any]]
    documents: list[str]  # space-separated terms, scored by lexical.score_delta


@dataclass(frozen=True)
class Changes:
    entries: Mapping[str, DeltaEntry] = field(default_factory=dict)
    hidden: Mapping[str, frozenset[int]] = field(default_factory=dict)  # modality -> base rows
    matrices: Mapping[str, DeltaMatrix] = field(default_factory=dict)
    terms: frozenset[str] = frozenset()  # of the delta's documents: a query term no typo expansion replaces

    @property
    def size(self) -> int:
        return len(self.entries)

    def hidden_rows(self, modality: str) -> frozenset[int]:
        return self.hidden.get(modality, frozenset())

    def has(self, key: str, location: Location | None) -> bool:
        """Whether `key` is served: in the delta, or in the generation (at `location`) and not hidden."""
        if key in self.entries:
            return True
        return location is not None and location[1] not in self.hidden_rows(location[0])

    def apply(self, upserts: list[DeltaEntry], deletes: list[str],
              located: Mapping[str, Location]) -> Changes:
        """A copy with `upserts` and then `deletes` applied; `located` holds the generation's
        (modality, row) of every key involved that the generation has."""
        entries = dict(self.entries)
        hidden = {m: set(rows) for m, rows in self.hidden.items()}
        for entry in upserts:
            entries[entry.key] = entry
        for key in deletes:
            entries.pop(key, None)
        for key in {e.key for e in upserts} | set(deletes):
            if key in located:
                modality, row = located[key]
                hidden.setdefault(modality, set()).add(row)
        return Changes(entries, {m: frozenset(r) for m, r in hidden.items()}, _matrices(entries),
                       frozenset(term for e in entries.values() for term in e.document.split()))


def _matrices(entries: Mapping[str, DeltaEntry]) -> dict[str, DeltaMatrix]:
    by_modality: dict[str, list[DeltaEntry]] = {}
    for entry in entries.values():
        by_modality.setdefault(entry.modality, []).append(entry)
    return {
        modality: DeltaMatrix([e.key for e in group], np.stack([e.vector for e in group]).astype(np.float32),
                              [e.metadata for e in group], [e.document for e in group])
        for modality, group in by_modality.items()
    }


NO_CHANGES = Changes()


def replay(journal: list[Change], located: Mapping[str, Location], over: Changes = NO_CHANGES) -> Changes:
    """The changes a generation serves after the journal's rows for it (in order: the last
    change of a key wins) applied `over` those it served before (a replica's next rows);
    `located` holds the generation's rows of the keys involved."""
    last: dict[str, Change] = {}
    for change in journal:
        last.pop(change.key, None)  # keep acknowledgement order among the survivors
        last[change.key] = change
    upserts = [DeltaEntry(c.key, c.upserted_modality, c.upserted_vector, c.metadata or {},
                          document(c.upserted_modality, c.value, c.metadata or {}))
               for c in last.values() if c.kind == UPSERT]
    deletes = [c.key for c in last.values() if c.kind != UPSERT]
    return over.apply(upserts, deletes, located)
