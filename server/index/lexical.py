"""The lexical index of one generation: BM25 over the words of its entries.

    gen-N/lexical.sqlite   terms (term → id, documents), variants (typo lookup), fields (whole
                           fields → documents), stats, modalities
    gen-N/lexical.npz      postings: per term, its documents and their BM25 term weights;
                           per document, its modality and row

A text query is answered from it beside the vector index (hybrid search, searching.py): the
vector side finds what a text means, this side the words a person typed, such as a film's bare
title, which a text tower trained on full catalog strings can miss. The documents are the terms
of each entry (lexical_terms.document), keyed by the (modality, row) that the catalog store and
the FAISS indexes use, so exclusions, hidden rows and filters apply to both sides alike.

Why postings in numpy rather than SQLite FTS5: FTS5 calls its bm25() function for every document
that holds a query term and sorts them all, so a query with a common word ("the", "of") cost
milliseconds on ten thousand titles. Here each posting carries its precomputed term weight
tf·(k1+1) / (tf + k1·(1 − b + b·length/average)), and a query adds idf × weight into one dense
array with numpy. The vocabulary and the typo variants stay in SQLite: one indexed lookup each,
without loading a large vocabulary into Python. Scores are FTS5's BM25 (k1 1.2, b 0.75, its idf
floor), and the upserted entries of online changes (changes.py) are scored by `score_delta` with
the same formula and the generation's document frequencies. Written once, never changed.

An entry one of whose fields is exactly the query ("The Alchemist" for the book of that title)
scores one full match more (Corpus.full_match): BM25 alone would rank "Fullmetal Alchemist,
Vol. 1 (Fullmetal Alchemist, #1)" first, which holds the word twice. `fields` makes that check
one indexed lookup.
"""

from __future__ import annotations

import math
import sqlite3
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jointspace.server.index.catalog_store import ReadOnlyFile
from jointspace.server.index.lexical_terms import FUZZY_FROM, deletions, fields

LEXICAL_FILE = "lexical.sqlite"
POSTINGS_FILE = "lexical.npz"
K1, B = 1.2, 0.75  # FTS5's bm25() constants
DEEPER = 4  # how much deeper a read goes when filters refused too many documents

SCHEMA = """
CREATE TABLE terms (term TEXT PRIMARY KEY, id INTEGER NOT NULL, docs INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE variants (variant TEXT NOT NULL, term TEXT NOT NULL);
CREATE TABLE fields (field TEXT NOT NULL, doc INTEGER NOT NULL);
CREATE TABLE stats (name TEXT PRIMARY KEY, value REAL NOT NULL);
CREATE TABLE modalities (code INTEGER PRIMARY KEY, modality TEXT NOT NULL);
"""

# (score, modality, row) of a generation entry that matched
Match = tuple[float, str, int]


def term_weights(counts: np.ndarray, lengths: np.ndarray, average_length: float) -> np.ndarray:
    """BM25's term-frequency part, without the idf: what a posting stores."""
    norm = K1 * (1 - B + B * lengths / average_length) if average_length else np.full(len(lengths), K1)
    return (counts * (K1 + 1) / (counts + norm)).astype(np.float32)


def write_lexical(folder: Path, documents: Iterable[tuple[str, int, str]]) -> None:
    """Write both files of a lexical index from (modality, row, document) triples; entries
    without words are left out."""
    ids: dict[str, int] = {}
    codes: dict[str, int] = {}
    term_ids, doc_numbers, counts = array("q"), array("q"), array("d")
    lengths, doc_codes, doc_rows = array("d"), array("b"), array("q")
    whole: list[tuple[str, int]] = []
    for modality, row, text in documents:
        words = Counter(text.split())
        if not words:
            continue
        number = len(doc_rows)
        whole.extend((field, number) for field in dict.fromkeys(fields(text)))
        doc_codes.append(codes.setdefault(modality, len(codes)))
        doc_rows.append(row)
        lengths.append(sum(words.values()))
        for term, count in words.items():
            term_ids.append(ids.setdefault(term, len(ids)))
            doc_numbers.append(number)
            counts.append(count)
    terms, numbers = np.frombuffer(term_ids, np.int64), np.frombuffer(doc_numbers, np.int64)
    order = np.argsort(terms, kind="stable")
    length = np.frombuffer(lengths, np.float64)
    average = float(length.mean()) if len(length) else 0.0
    weights = term_weights(np.frombuffer(counts, np.float64)[order], length[numbers[order]], average)
    frequency = np.bincount(terms, minlength=len(ids))
    np.savez(folder / POSTINGS_FILE, starts=np.concatenate([[0], np.cumsum(frequency)]).astype(np.int64),
             docs=numbers[order].astype(np.int32), weights=weights,
             doc_codes=np.frombuffer(doc_codes, np.int8), doc_rows=np.frombuffer(doc_rows, np.int64))
    connection = sqlite3.connect(folder / LEXICAL_FILE)
    try:
        connection.executescript(SCHEMA)
        connection.executemany("INSERT INTO terms VALUES (?, ?, ?)",
                               ((term, i, int(frequency[i])) for term, i in ids.items()))
        connection.executemany("INSERT INTO variants VALUES (?, ?)",
                               ((variant, term) for term in ids for variant in deletions(term)))
        connection.execute("CREATE INDEX variants_by_variant ON variants (variant)")
        connection.executemany("INSERT INTO fields VALUES (?, ?)", whole)
        connection.execute("CREATE INDEX fields_by_field ON fields (field)")
        connection.executemany("INSERT INTO stats VALUES (?, ?)",
                               [("documents", len(doc_rows)), ("average_length", average)])
        connection.executemany("INSERT INTO modalities VALUES (?, ?)", ((c, m) for m, c in codes.items()))
        connection.commit()
    finally:
        connection.close()


@dataclass(frozen=True)
class Corpus:
    """What BM25 needs to know of all documents, to score one more."""

    documents: int
    average_length: float
    frequency: dict[str, int]  # documents holding each query term
    groups: tuple[tuple[str, ...], ...] = ()  # per query term, the terms searched for it

    def idf(self, term: str) -> float:
        """FTS5's inverse document frequency, floored as FTS5 floors it."""
        n = self.frequency.get(term, 0)
        return max(math.log((self.documents - n + 0.5) / (n + 0.5)), 1e-6)

    def full_match(self) -> float:
        """The score of a document of average length that holds each query term once (or one
        term of its typo group): lexical scores over it are comparable across queries, about 1
        for every word matched and less for some (fusion.py's weighted sum)."""
        return sum(max(self.idf(term) for term in group) for group in self.groups if group)

    def exact_bonus(self) -> float:
        """What a document with a field equal to the whole query gains: one full match."""
        return self.full_match() or 1.0


class LexicalIndex(ReadOnlyFile):
    """Read-only access to one generation's lexical index: the SQLite part through one
    connection per thread, the postings in memory."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder / LEXICAL_FILE)
        stats = dict(self._connection().execute("SELECT name, value FROM stats"))
        self.documents = int(stats["documents"])
        self.average_length = float(stats["average_length"])
        names = dict(self._connection().execute("SELECT code, modality FROM modalities"))
        self.modalities = frozenset(names.values())
        self._codes = {modality: code for code, modality in names.items()}
        self._names = names
        with np.load(folder / POSTINGS_FILE) as postings:
            self._starts, self._docs, self._weights = postings["starts"], postings["docs"], postings["weights"]
            self._doc_codes, self._doc_rows = postings["doc_codes"], postings["doc_rows"]
        if len(self._doc_rows) != self.documents or self._starts[-1] != len(self._docs):
            raise ValueError(f"{POSTINGS_FILE} does not match {LEXICAL_FILE}")

    def lookup(self, query: Sequence[str],
               extra: Callable[[str], bool] = lambda term: False) -> tuple[list[str], Corpus]:
        """The terms to search for, and their document frequencies. A query term the index has
        stays, unless half the documents or more hold it: BM25 gives such a term no weight (its
        idf is floored) and its long list of documents would be most of the query's cost. A term
        the index lacks, of FUZZY_FROM letters or more, becomes the indexed terms one edit away
        (a typo); `extra` says which terms the online changes hold: those stay as they are."""
        connection = self._connection()
        frequency = dict(connection.execute(
            f"SELECT term, docs FROM terms WHERE term IN ({','.join('?' * len(query))})", list(query)))
        groups: list[tuple[str, ...]] = []
        for term in query:
            if term in frequency:
                groups.append((term,) if 2 * frequency[term] < self.documents else ())
                continue
            if extra(term) or len(term) < FUZZY_FROM:
                groups.append((term,))
                continue
            variants = sorted(deletions(term))
            near = dict(connection.execute(
                "SELECT DISTINCT t.term, t.docs FROM variants v JOIN terms t ON t.term = v.term "
                f"WHERE v.variant IN ({','.join('?' * len(variants))})", variants).fetchall())
            frequency.update(near)
            groups.append(tuple(t for t, docs in near.items() if 2 * docs < self.documents))
        found = list(dict.fromkeys(term for group in groups for term in group))
        return found, Corpus(self.documents, self.average_length, frequency, tuple(groups))

    def search(self, query: Sequence[str], corpus: Corpus, k: int, modalities: Sequence[str],
               accept: Callable[[str, int], bool], skips: int, whole: str = "") -> list[Match]:
        """The k best-scored entries of `modalities` holding any of the `query` terms, or a
        field equal to `whole` (the query as a field would hold it), that `accept` lets through.
        `skips` bounds the rows `accept` refuses without filters (hidden, excluded): the best
        k + skips are then enough; filters that refuse more make the read deeper until k are
        found or the matches run out."""
        codes = [self._codes[m] for m in modalities if m in self._codes]
        if not codes or k <= 0:
            return []
        connection = self._connection()
        ids = dict(connection.execute(
            f"SELECT term, id FROM terms WHERE term IN ({','.join('?' * len(query))})", list(query)))
        scores = np.zeros(self.documents, np.float32)
        for term, i in ids.items():
            start, end = self._starts[i], self._starts[i + 1]
            scores[self._docs[start:end]] += np.float32(corpus.idf(term)) * self._weights[start:end]
        exact = [doc for (doc,) in connection.execute("SELECT doc FROM fields WHERE field = ?", (whole,))]
        scores[exact] += np.float32(corpus.exact_bonus())
        matched = np.flatnonzero(scores)
        if len(codes) < len(self._codes):
            matched = matched[np.isin(self._doc_codes[matched], codes)]
        limit = k + skips
        while True:
            top = matched if limit >= len(matched) else matched[np.argpartition(-scores[matched], limit)[:limit]]
            top = top[np.argsort(-scores[top], kind="stable")]
            kept = [(float(scores[d]), self._names[int(self._doc_codes[d])], int(self._doc_rows[d])) for d in top]
            kept = [match for match in kept if accept(match[1], match[2])]
            if len(kept) >= k or len(top) == len(matched):
                return kept[:k]
            limit *= DEEPER


def score_delta(query: Sequence[str], documents: Sequence[str], corpus: Corpus, whole: str = "") -> list[float]:
    """BM25 of each document (lexical_terms.document) for the query terms, with the bonus of a
    field equal to `whole`, as the generation's documents are scored; 0 for no match."""
    scores = []
    for text in documents:
        counts = Counter(text.split())
        weight = term_weights(np.asarray([counts[t] for t in query], np.float64),
                              np.full(len(query), sum(counts.values()), np.float64), corpus.average_length)
        score = sum(corpus.idf(t) * float(w) for t, w in zip(query, weight) if counts[t])
        scores.append(score + (corpus.exact_bonus() if whole and whole in fields(text) else 0.0))
    return scores
