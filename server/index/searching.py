"""Answering queries over a generation and its online changes, with exclusions and filters.

Per result modality, the generation's FAISS index and the delta of upserted entries (changes.py)
each give their top k, and the lists are merged by score: all are inner products in one space.
Rows that must not come back (hidden by an upsert or delete, excluded by the query, failing its
metadata filter) are kept out of the FAISS search itself with an ID selector, so a query still
gets k hits when k entries qualify, without guessing an oversampling depth. Two corrections keep
that promise where a selector alone does not: a filter that leaves few rows is answered exactly
over those rows, and an approximate search that comes back short is repeated with a wider search
(efSearch or nprobe times WIDEN).

A hybrid search (`lexical` given, text queries only) also asks the generation's lexical index
(lexical.py) and the delta's documents for the k best BM25 matches under the same exclusions,
hidden rows, filters and modalities, and fuses the two top-k lists (fusion.py).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import faiss
import numpy as np

from jointspace.client.types import Hit
from jointspace.server.index.changes import NO_CHANGES, Changes
from jointspace.server.index.filters import MetadataFilter, matches
from jointspace.server.index.fusion import DEFAULT_FUSION, fuse
from jointspace.server.index.lexical import score_delta
from jointspace.server.index.lexical_terms import phrase, query_terms
from jointspace.server.index.packed_keys import PackedKeys

if TYPE_CHECKING:
    from jointspace.server.index.generation import Generation

EXACT_UP_TO = 4_096  # a filter leaving at most this many rows is answered exactly
WIDEN = 8
PARALLEL_FROM = 16  # queries in one FAISS call from which its OpenMP threads pay for themselves
CORES = faiss.omp_get_max_threads()  # OMP_NUM_THREADS, or every core

# (score, modality, row in the generation or -1 for the delta, key, metadata of a delta entry)
Candidate = tuple[float, str, int, str, "dict | None"]


@dataclass(frozen=True)
class Lexical:
    """The lexical side of a hybrid search: the text of each query row and the fusion."""

    texts: Sequence[str]
    weight: float  # 0: the vector side alone, 1: the lexical side alone
    fusion: str = DEFAULT_FUSION
    words_only: frozenset[int] = frozenset()  # query rows the text tower could not embed


@dataclass(slots=True)  # not frozen: a frozen one sets each field through object.__setattr__, per Search
class Ranked:
    """The hits of a batch of queries as one modality's FAISS index ranked them, best first, as
    FAISS's arrays: an answer can be built from them without an object per hit (api/answer_bytes.py),
    which cost more than the search itself. Row i of `rows` and `scores` belongs to query i;
    a row number -1 marks no hit (FAISS found fewer than k)."""

    modality: str
    keys: np.ndarray  # the generation's keys of this modality, by row
    packed_keys: PackedKeys  # the same keys as UTF-8 bytes
    rows: np.ndarray
    scores: np.ndarray

    def hits(self) -> list[list[Hit]]:
        return [[Hit(self.keys[row], score, self.modality) for row, score in zip(rows, scores) if row >= 0]
                for rows, scores in zip(self.rows.tolist(), self.scores.tolist())]


Found = Ranked | list[list[Hit]]


def search(generation: Generation, vectors: np.ndarray, k: int, modalities: Sequence[str],
           excludes: Sequence[set[str]] | None = None,
           filters: Sequence[Sequence[MetadataFilter]] | None = None,
           changes: Changes = NO_CHANGES, with_metadata: bool = True,
           lexical: Lexical | None = None) -> list[list[Hit]]:
    """Top-k hits per query row (`find`, as `Hit`s)."""
    return as_hits(find(generation, vectors, k, modalities, excludes, filters, changes, with_metadata, lexical))


def as_hits(found: Found) -> list[list[Hit]]:
    return found.hits() if isinstance(found, Ranked) else found


def find(generation: Generation, vectors: np.ndarray, k: int, modalities: Sequence[str],
         excludes: Sequence[set[str]] | None = None,
         filters: Sequence[Sequence[MetadataFilter]] | None = None,
         changes: Changes = NO_CHANGES, with_metadata: bool = True,
         lexical: Lexical | None = None) -> Found:
    """Top-k hits per query row; `excludes[i]` and `filters[i]` belong to query i. With
    `lexical`, the generation must have a lexical index (the engine checks). The common query
    comes back `Ranked`, straight from FAISS's arrays (`direct_modality` says when); any other
    as `Hit`s."""
    chosen = generation.check_modalities(modalities, also_present=changes.matrices)
    direct = direct_modality(generation, changes, chosen, excludes, filters, with_metadata, lexical)
    if direct is not None:
        return DirectSearch.of(generation, changes, direct)(vectors, k)
    count = len(vectors)
    excludes = excludes or [set()] * count
    filters = filters or [()] * count
    groups: dict[tuple[frozenset[str], tuple[MetadataFilter, ...]], list[int]] = {}
    for query in range(count):
        groups.setdefault((frozenset(excludes[query]), tuple(filters[query])), []).append(query)
    results: list[list[Hit]] = [[] for _ in range(count)]
    # One source (one modality's index, no upserted entries) comes back from FAISS in order.
    merge = len(chosen) > 1 or any(m in changes.matrices for m in chosen)
    with faiss_threads(count):
        for (excluded, query_filters), members in groups.items():
            excluded_rows = _excluded_rows(generation, excluded)
            found = _candidates(generation, changes, vectors[members], k, chosen, excluded, excluded_rows,
                                query_filters)
            for query, candidates in zip(members, found):
                if merge:
                    candidates.sort(key=lambda c: -c[0])
                    del candidates[k:]
                if lexical is None:
                    results[query] = _hits(generation, candidates, with_metadata)
                    continue
                if query in lexical.words_only:
                    candidates = []  # its vector row is a placeholder
                words = [] if lexical.weight <= 0 else _lexical_candidates(
                    generation, changes, lexical.texts[query], k, chosen, excluded, excluded_rows, query_filters)
                results[query] = _fused_hits(generation, candidates, words, k, lexical, with_metadata)
    return results


@dataclass(frozen=True, slots=True)
class DirectSearch:
    """The search of one result modality whose FAISS answer is the whole answer
    (`direct_modality`), with what it reads looked up: the engine keeps one per snapshot for
    the common query (serving/engine.py, `Served.direct_search`), which then skips the checks
    that `find` makes per call."""

    modality: str
    index: faiss.Index
    keys: np.ndarray
    packed_keys: PackedKeys
    hidden: frozenset[int]

    @classmethod
    def of(cls, generation: Generation, changes: Changes, modality: str) -> DirectSearch:
        return cls(modality, generation.indexes[modality], generation.keys[modality],
                   generation.packed_keys[modality], changes.hidden_rows(modality))

    def __call__(self, vectors: np.ndarray, k: int) -> Ranked:
        with faiss_threads(len(vectors)):
            scores, rows = nearest(self.index, vectors, k, None, self.hidden)
        return Ranked(self.modality, self.keys, self.packed_keys, rows, scores)


def direct_search(generation: Generation, changes: Changes, modalities: Sequence[str]) -> DirectSearch | None:
    """The `DirectSearch` of plain vector queries for `modalities` (hits with metadata), or
    None where `find`'s general path must answer; refuses an unknown modality as `find` does."""
    chosen = generation.check_modalities(modalities, also_present=changes.matrices)
    direct = direct_modality(generation, changes, chosen, None, None, True, None)
    return None if direct is None else DirectSearch.of(generation, changes, direct)


def direct_modality(generation: Generation, changes: Changes, chosen: list[str],
                    excludes: Sequence[set[str]] | None, filters: Sequence[Sequence[MetadataFilter]] | None,
                    with_metadata: bool, lexical: Lexical | None) -> str | None:
    """The one result modality whose FAISS answer is the whole answer as it comes back, or None
    (the general path): one modality `chosen`, with an index, no upserted entries to merge, no
    stored metadata to attach, and queries with no lexical side, nothing excluded and no filter.
    Rows hidden by deletes need no merge: the search itself leaves them out."""
    if lexical is not None or len(chosen) != 1 or (excludes and any(excludes)) or (filters and any(filters)):
        return None
    [modality] = chosen
    if (modality not in generation.indexes or modality in changes.matrices
            or (with_metadata and modality in generation.with_metadata)):
        return None
    return modality


def _excluded_rows(generation: Generation, excluded: frozenset[str]) -> dict[str, set[int]]:
    """The generation's rows of the excluded keys, by modality."""
    rows: dict[str, set[int]] = {}
    for modality, row in generation.store.locate(sorted(excluded)).values() if excluded else ():
        rows.setdefault(modality, set()).add(row)
    return rows


def _lexical_candidates(generation: Generation, changes: Changes, text: str, k: int, modalities: list[str],
                        excluded: frozenset[str], excluded_rows: dict[str, set[int]],
                        filters: tuple[MetadataFilter, ...]) -> list[Candidate]:
    """The k best BM25 matches of `text` among the generation's entries and the delta's, their
    scores over that of a full match (Corpus.full_match)."""
    index = generation.lexical
    if index is None:
        return []
    terms, corpus = index.lookup(query_terms(text), changes.terms.__contains__)
    whole = phrase(text)
    refused = {m: changes.hidden_rows(m) | excluded_rows.get(m, set()) for m in modalities}
    allowed: dict[str, set[int]] = {}

    def accept(modality: str, row: int) -> bool:
        if row in refused[modality]:
            return False
        if not filters:
            return True
        if modality not in allowed:
            allowed[modality] = set(generation.filter_rows(modality, filters).tolist())
        return row in allowed[modality]

    skips = sum(len(rows) for rows in refused.values())
    ranked = index.search(terms, corpus, k, modalities, accept, skips, whole)
    found: list[Candidate] = [(score, modality, row, generation.keys[modality][row], None)
                              for score, modality, row in ranked]
    for modality in modalities:
        delta = changes.matrices.get(modality)
        if delta is None:
            continue
        scores = score_delta(terms, delta.documents, corpus, whole)
        found.extend((score, modality, -1, key, meta) for score, key, meta in zip(scores, delta.keys, delta.metadata)
                     if score > 0 and key not in excluded and matches(meta, filters))
    found.sort(key=lambda c: -c[0])
    full = corpus.full_match()
    if full <= 0:
        return found[:k]
    return [(score / full, modality, row, key, meta) for score, modality, row, key, meta in found[:k]]


def _fused_hits(generation: Generation, vector: list[Candidate], lexical: list[Candidate], k: int,
                settings: Lexical, with_metadata: bool) -> list[Hit]:
    """One list from both sides' top k; a hit's score is its fused score."""
    by_item = {(c[1], c[2], c[3]): c for c in [*lexical, *vector]}
    fused = fuse([(c[0], (c[1], c[2], c[3])) for c in vector], [(c[0], (c[1], c[2], c[3])) for c in lexical],
                 settings.weight, k, settings.fusion)
    hits = _hits(generation, [(score, *by_item[item][1:]) for score, item, _ in fused], with_metadata)
    for hit, (_, _, sides) in zip(hits, fused):
        hit.found_by = sides
    return hits


def _candidates(generation: Generation, changes: Changes, vectors: np.ndarray, k: int,
                modalities: list[str], excluded: frozenset[str], excluded_rows: dict[str, set[int]],
                filters: tuple[MetadataFilter, ...]) -> list[list[Candidate]]:
    found: list[list[Candidate]] = [[] for _ in range(len(vectors))]
    for modality in modalities:
        index = generation.indexes.get(modality)
        if index is not None:
            hidden = changes.hidden_rows(modality)
            if modality in excluded_rows:
                hidden = hidden | excluded_rows[modality]
            allowed = generation.filter_rows(modality, filters) if filters else None
            scores, rows = nearest(index, vectors, k, allowed, hidden)
            # Whole arrays to Python values at once: per-element numpy scalars cost more than the search.
            keys = generation.keys[modality][np.maximum(rows, 0)].tolist()
            for query, (score_row, id_row, key_row) in enumerate(zip(scores.tolist(), rows.tolist(), keys)):
                found[query].extend((s, modality, r, key, None)
                                    for s, r, key in zip(score_row, id_row, key_row) if r >= 0)
        delta = changes.matrices.get(modality)
        if delta is not None:
            keep = [i for i, (key, meta) in enumerate(zip(delta.keys, delta.metadata))
                    if key not in excluded and matches(meta, filters)]
            if keep:
                scores, local = faiss.knn(vectors, delta.vectors[keep], min(k, len(keep)),
                                          metric=faiss.METRIC_INNER_PRODUCT)
                for query, (score_row, id_row) in enumerate(zip(scores, local)):
                    found[query].extend((float(s), modality, -1, delta.keys[keep[i]], delta.metadata[keep[i]])
                                        for s, i in zip(score_row, id_row) if i >= 0)
    return found


def unwrapped_search(index: faiss.Index, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """`index.search(vectors, k)` without the Python wrapper's conversions, which matrices that are
    already C-contiguous float32 rows of the index's width do not need (anything else takes the
    wrapper). The search runs without the GIL; every Python step around it is a step a worker
    coming back from its own search may wait for, and with two workers the wrapper's few NumPy
    calls cost a single query several times their own time (docs/benchmarks.md, "Serving speed")."""
    if (k <= 0 or vectors.dtype != np.float32 or vectors.ndim != 2 or vectors.shape[1] != index.d
            or not vectors.flags.c_contiguous):
        return index.search(vectors, k)
    count = len(vectors)
    scores, rows = np.empty((count, k), np.float32), np.empty((count, k), np.int64)
    index.search_c(count, faiss.swig_ptr(vectors), k, faiss.swig_ptr(scores), faiss.swig_ptr(rows), None)
    return scores, rows


def nearest(index: faiss.Index, vectors: np.ndarray, k: int, allowed: np.ndarray | None,
            hidden: set[int] | frozenset[int]) -> tuple[np.ndarray, np.ndarray]:
    """FAISS top-k among the rows in `allowed` (None: all) that are not `hidden`; rows -1 pad."""
    if allowed is None and not hidden:
        return unwrapped_search(index, vectors, min(k, index.ntotal))
    none = np.zeros((len(vectors), 0), np.float32), np.zeros((len(vectors), 0), np.int64)
    if allowed is not None:
        hidden_rows = np.fromiter(hidden, np.int64, len(hidden))
        rows = np.setdiff1d(allowed, hidden_rows, assume_unique=True) if len(hidden_rows) else allowed
        if not len(rows):
            return none
        if len(rows) <= EXACT_UP_TO:
            exact = _exact(index, vectors, rows, k)
            if exact is not None:
                return exact
        selector, available = faiss.IDSelectorBatch(rows), len(rows)
    else:
        selector, available = _all_but(frozenset(hidden)), index.ntotal - len(hidden)
    want = min(k, available)
    if want <= 0:
        return none
    scores, ids = index.search(vectors, want, params=_params(index, selector, 1))
    short = (ids >= 0).sum(axis=1) < want
    if short.any():
        wider = index.search(vectors[short], want, params=_params(index, selector, WIDEN))
        scores[short], ids[short] = wider
    return scores, ids


class _InFlight:
    """How many searches are running now, across the server's worker threads."""

    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()


_in_flight = _InFlight()
# The OpenMP threads faiss_threads last set on each thread: setting them costs a release and
# retake of the GIL, which a worker thread contends for with the server's event loop.
_set_here = threading.local()


class faiss_threads:
    """Sets the OpenMP threads of the calling thread's FAISS calls for the duration (the setting
    is per thread, so concurrent calls do not race). A few queries run on the caller's thread
    alone: a team of OpenMP threads per gRPC worker, spinning after each tiny search, cost
    concurrent single queries much of their throughput. A batch uses every core only while no
    other search runs: two concurrent batches with a full team each put twice as many threads
    as cores, and each waits at its barriers for threads the other has preempted
    (docs/benchmarks.md, "Serving speed"). A class rather than a generator: it wraps every
    search, and costs less so."""

    def __init__(self, queries: int) -> None:
        self.queries = queries

    def __enter__(self) -> None:
        with _in_flight.lock:
            _in_flight.count += 1
            alone = _in_flight.count == 1
        threads = CORES if alone and self.queries >= PARALLEL_FROM else 1
        if getattr(_set_here, "threads", None) != threads:  # most calls: as this thread's last one
            faiss.omp_set_num_threads(threads)
            _set_here.threads = threads

    def __exit__(self, *raised: object) -> None:
        with _in_flight.lock:
            _in_flight.count -= 1


@functools.lru_cache(maxsize=16)
def _all_but(hidden: frozenset[int]) -> faiss.IDSelector:
    """A selector of every row but `hidden`, built once per set of hidden rows: the rows an
    online change hides stay the same object (changes.Changes) until the next write, and
    building the selector is O(hidden) per search otherwise."""
    inner = faiss.IDSelectorBatch(np.fromiter(hidden, np.int64, len(hidden)))
    selector = faiss.IDSelectorNot(inner)
    selector.referenced = inner  # the Not selector does not own its inner one: keep it alive with it
    return selector


def _exact(index: faiss.Index, vectors: np.ndarray, rows: np.ndarray,
           k: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Exact top-k over a few rows, from their stored vectors; None where the index cannot give
    them back (PQ codes without a direct map): the selector search answers then."""
    try:
        stored = index.reconstruct_batch(rows)
    except RuntimeError:
        return None
    scores, local = faiss.knn(vectors, stored, min(k, len(rows)), metric=faiss.METRIC_INNER_PRODUCT)
    return scores, np.where(local >= 0, rows[np.maximum(local, 0)], -1)


def _params(index: faiss.Index, selector: faiss.IDSelector, widen: int) -> faiss.SearchParameters:
    """Search parameters carrying the selector and the index's own tuned efSearch / nprobe
    (FAISS would otherwise fall back to its defaults), times `widen`."""
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexPreTransform):
        return faiss.SearchParametersPreTransform(index_params=_params(index.index, selector, widen))
    if isinstance(index, faiss.IndexHNSW):
        return faiss.SearchParametersHNSW(sel=selector, efSearch=index.hnsw.efSearch * widen)
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        return faiss.SearchParametersIVF(sel=selector, nprobe=min(ivf.nprobe * widen, ivf.nlist))
    return faiss.SearchParameters(sel=selector)


def _hits(generation: Generation, found: list[Candidate], with_metadata: bool) -> list[Hit]:
    if not (with_metadata and generation.with_metadata):  # nothing stored to look up
        return [Hit(key, score, modality, meta or {}) for score, modality, _, key, meta in found]
    metadata: dict[tuple[str, int], dict] = {}
    for modality in {m for _, m, row, _, _ in found if row >= 0} & generation.with_metadata:
        rows = [row for _, m, row, _, _ in found if m == modality and row >= 0]
        metadata.update({(modality, r): v for r, v in generation.store.metadata(modality, rows).items()})
    return [Hit(key, score, modality, (meta if row < 0 else metadata.get((modality, row), {})) or {})
            for score, modality, row, key, meta in found]
