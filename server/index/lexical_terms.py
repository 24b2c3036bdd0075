"""The words of the lexical index: which text of an entry is indexed, and how text becomes terms.

One function (`terms`) turns text into terms for the generation's lexical index, for its online
changes and for queries alike, so that the three always agree: compatibility form (NFKD), accents
dropped, case folded, split at anything that is not a letter or a digit ("Amélie's" → "amelie",
"s").

Typos: a query term that no entry has is replaced by the indexed terms one edit away from it
(a letter dropped, added, changed, or two swapped). Those are found through deletions, as
SymSpell does: two terms are within one such edit when deleting at most one letter from each can
make them equal, so the index keeps every term's deletions and a query looks up its own.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

_WORD = re.compile(r"[^\W_]+")
FUZZY_FROM = 4  # shorter terms one edit away from another word are mostly other words
MAX_QUERY_TERMS = 32  # the distinct terms of one query that are looked up; the rest are ignored


def terms(text: str) -> list[str]:
    """The terms of `text`, in order, repeats kept."""
    folded = unicodedata.normalize("NFKD", text).casefold()
    plain = "".join(c for c in folded if not unicodedata.combining(c))
    return _WORD.findall(plain)


def query_terms(text: str) -> list[str]:
    """The distinct terms of a query, in order, at most MAX_QUERY_TERMS."""
    return list(dict.fromkeys(terms(text)))[:MAX_QUERY_TERMS]


def document(modality: str, value: Any, metadata: Mapping[str, Any]) -> str:
    """What the lexical index holds of one catalog entry: a text entry's text, then every
    text-valued top-level metadata field (a string, or the strings of a list), e.g. a film's
    title and genres, each as space-separated terms, one field a line. Numbers and nested
    objects are not words a person types. Splitting at any whitespace gives the terms;
    `fields` gives the lines, which a query can match whole (an exact title)."""
    parts = [value] if modality == "text" and isinstance(value, str) else []
    parts.extend(_strings(metadata.values()))
    return "\n".join(field for field in (" ".join(terms(part)) for part in parts) if field)


def fields(document_text: str) -> list[str]:
    """The fields of a document, as `document` wrote them."""
    return document_text.split("\n") if document_text else []


def phrase(text: str) -> str:
    """A query as one field would hold it: its terms in order, space-separated."""
    return " ".join(terms(text))


def _strings(values: Iterable[Any]) -> Iterable[str]:
    for value in values:
        if isinstance(value, str):
            yield value
        elif isinstance(value, list):
            yield from (item for item in value if isinstance(item, str))


def deletions(term: str) -> set[str]:
    """The term and every string one letter shorter: two terms are within one edit of each other
    (SymSpell's distance) when these sets meet."""
    return {term} | {term[:i] + term[i + 1:] for i in range(len(term))}
