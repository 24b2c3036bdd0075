"""What the service serves: one model, one index generation from that model, and the online
changes made over that generation, as one frozen value.

The value is replaced as a whole (one reference assignment), so a query that started on the old
one finishes on it while new queries see the new one; nothing is ever half-swapped. Writers
(Upsert, Delete, the swap at the end of a rebuild) take one lock, so that concurrent changes of
one key are applied, journalled and acknowledged in one order. The engine knows nothing of gRPC:
the CLI, the tests and the service share it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from jointspace.client.types import Hit
from jointspace.core.deadline import check_deadline
from jointspace.core.errors import InvalidInput, JointspaceError, LimitExceeded, NotFound, NotReady, StorageError
from jointspace.core.faults import pause_point
from jointspace.core.lexical_weight import check_lexical_weight
from jointspace.core.limits import DEFAULT_LIMITS, Limits
from jointspace.core.progress import log
from jointspace.core.stages import EMBED, SEARCH, timed
from jointspace.data.catalog import CatalogEntry, check_unique_keys
from jointspace.encoders.inference import VECTOR, EncoderSet
from jointspace.server.index.changes import NO_CHANGES, Changes, DeltaEntry, replay
from jointspace.server.index.data_dir import DataDir
from jointspace.server.index.fallback import open_intact_generation
from jointspace.server.index.filters import MetadataFilter
from jointspace.server.index.fusion import DEFAULT_FUSION
from jointspace.server.index.generation import Generation
from jointspace.server.index.index_directory import IndexDirectory
from jointspace.server.index.journal import DELETE, UPSERT, Change, Journal
from jointspace.server.index.lexical_terms import document
from jointspace.server.index.searching import DirectSearch, Found, Lexical, as_hits, direct_search, find
from jointspace.server.serving.encode_batcher import EncodeBatcher
from jointspace.server.serving.operations import Operations
from jointspace.server.serving.request_ids import RecentWrites, fingerprint, metadata_text

Query = tuple[str, Any]  # (modality, value)
READ_ONLY = ("this server is a read replica (serve --role reader); send Upsert, Delete and RebuildIndex "
             "to the writer")
DEFAULT_KEEP_GENERATIONS = 3


@dataclass(frozen=True)
class Served:
    encoders: EncoderSet
    generation: Generation
    changes: Changes = NO_CHANGES
    # The generation the online changes are journalled against: the one `CURRENT` names, which
    # is `generation` except while an older one stands in for a corrupt live one (fallback.py).
    journal_name: str = ""
    # direct_search's answers by result modalities; not an init field, so that `replace` (every
    # write, every swap) starts the new snapshot with none.
    _direct: dict[tuple[str, ...], DirectSearch | None] = field(default_factory=dict, init=False, repr=False,
                                                                compare=False)

    def __post_init__(self) -> None:
        if not self.journal_name:
            object.__setattr__(self, "journal_name", self.generation.name)

    def direct_search(self, modalities: Sequence[str]) -> DirectSearch | None:
        """searching.direct_search on this snapshot, looked up once per result modality (a
        list of two or more is not kept: a client could send endless orders and repeats)."""
        key = tuple(modalities)
        if key in self._direct:
            return self._direct[key]
        found = direct_search(self.generation, self.changes, key)
        if len(key) <= 1:
            self._direct[key] = found
        return found

    @property
    def fallback(self) -> bool:
        return self.journal_name != self.generation.name


def check_pair(encoders: EncoderSet, generation: Generation) -> None:
    if generation.model_version != encoders.version:
        raise NotReady(
            f"index {generation.name} was embedded by model {generation.model_version}, "
            f"but the model loaded is {encoders.version}; rebuild the index with this model"
        )


def check_keep_generations(keep: int) -> int:
    """At least 2: the generation a swap replaces may still be answering in-flight queries, which
    read its catalog store, so it stays on disk until the next swap."""
    if keep < 2:
        raise InvalidInput(f"--keep-generations: at least 2 (the live one and the one it replaced), got {keep}")
    return keep


class Engine:
    def __init__(self, model_dir: Path, index_dir: Path, limits: Limits = DEFAULT_LIMITS,
                 data_dir: DataDir | None = None, keep_generations: int = DEFAULT_KEEP_GENERATIONS,
                 encode_batching: bool = True, read_only: bool = False) -> None:
        """`read_only`: a read replica's engine (follower.py), which writes nothing into the index
        directory, refuses changes, and serves what the writer publishes."""
        self.limits = limits
        self.read_only = read_only
        # Queries' model calls shared among concurrent requests (encode_batcher.py); None: one each.
        self.batcher = EncodeBatcher(limits.max_batch) if encode_batching else None
        self.keep_generations = check_keep_generations(keep_generations)
        # Every path the server reads (model, index, catalogs of a rebuild) goes through this.
        self.data_dir = data_dir or DataDir()
        self.index_dir = IndexDirectory(self.data_dir.confine(index_dir, "index"))
        # A replica leaves leftovers alone: a staging folder may be the writer's rebuild in progress.
        removed = [] if read_only else self.index_dir.remove_partials()
        if removed:
            log(f"removed leftovers of interrupted builds: {', '.join(removed)}")
        live_name, generation = open_intact_generation(self.index_dir)
        encoders = self._pinned_encoders(self.data_dir.confine(model_dir, "model"), generation)
        check_pair(encoders, generation)
        self.journal = Journal(self.index_dir.root, read_only=read_only)
        if not read_only:
            self.journal.keep_only(live_name)
        # The newest journal number served: where a replica's follower goes on tailing.
        self._served, self.loaded_through = load_changes(self.journal, encoders, generation, live_name)
        self._writer = threading.Lock()
        self.operations = Operations()
        self._recent = RecentWrites()

    def _pinned_encoders(self, model_dir: Path, generation: Generation) -> EncoderSet:
        """The model given, or the one a server rebuild built the live generation with (its
        manifest names the model folder; `index build` generations name none): a restart with the
        flags of before must not undo a switch of model and index, nor refuse to start after it."""
        encoders = EncoderSet(model_dir, self.limits)
        pinned = generation.manifest.model_dir
        if encoders.version == generation.model_version or not pinned or Path(pinned) == model_dir:
            return encoders
        try:
            other = EncoderSet(self.data_dir.confine(pinned, "model"), self.limits)
        except JointspaceError:
            return encoders  # gone or outside the data directory: check_pair explains the mismatch
        if other.version != generation.model_version:
            return encoders
        log(f"{generation.name} was built with the model at {pinned} (version {other.version}); "
            f"serving that model, not {model_dir} (version {encoders.version})")
        return other

    @property
    def served(self) -> Served:
        return self._served

    def check_batch(self, count: int, field: str) -> None:
        if count > self.limits.max_batch:
            raise LimitExceeded(f"{field}: {count} items, over the limit of {self.limits.max_batch}")

    def embed(self, queries: Sequence[Query], served: Served | None = None) -> np.ndarray:
        """Unit vectors for queries of mixed modalities, one encoder call per modality (shared
        with concurrent requests' when batching)."""
        with timed(EMBED):
            return _embed((served or self._served).encoders, queries, self.batcher)

    def search(self, queries: Sequence[Query], k: int, modalities: Sequence[str] = (),
               excludes: Sequence[set[str]] | None = None,
               filters: Sequence[Sequence[MetadataFilter]] | None = None,
               served: Served | None = None, lexical_weight: float | None = None,
               fusion: str = DEFAULT_FUSION) -> list[list[Hit]]:
        """`find`, every hit a `Hit`."""
        return as_hits(self.find(queries, k, modalities, excludes, filters, served, lexical_weight, fusion))

    def find(self, queries: Sequence[Query], k: int, modalities: Sequence[str] = (),
             excludes: Sequence[set[str]] | None = None,
             filters: Sequence[Sequence[MetadataFilter]] | None = None,
             served: Served | None = None, lexical_weight: float | None = None,
             fusion: str = DEFAULT_FUSION) -> Found:
        """Hits per query, `Ranked` arrays where searching.find can answer so (the API builds its
        response from those directly). `served`: the snapshot to answer from (the caller's, to name its generation); the
        current one if not given. `lexical_weight`: a hybrid search of text queries (fusion.py).
        `excludes`: keys never to return per query, bounded by the caller (the API checks them
        against max_exclude_keys, api/convert.py)."""
        self.limits.check_k(k)
        served = served or self._served  # one snapshot for the whole call
        lexical = None if lexical_weight is None else _lexical(served, queries, lexical_weight, fusion)
        if lexical is None or lexical.weight <= 0:
            vectors = self.embed(queries, served)
        else:
            with timed(EMBED):
                vectors, wordless = _embed_texts(served.encoders, queries)
            lexical = replace(lexical, words_only=wordless)
        return _find(served, vectors, k, modalities, excludes, filters, lexical)

    def find_vectors(self, vectors: np.ndarray, k: int, modalities: Sequence[str] = (),
                     served: Served | None = None) -> Found:
        """`find` for raw vector queries given as one matrix (a row of D floats each), with
        nothing excluded or filtered: the common batch, without a value per query to gather."""
        self.limits.check_k(k)
        served = served or self._served
        with timed(EMBED):
            unit = served.encoders.embed(VECTOR, vectors)
        return _find(served, unit, k, modalities, direct=served.direct_search(modalities))

    def info(self) -> dict[str, Any]:
        served = self._served
        info = served.generation.info()
        by_modality = dict(info["size_by_modality"])
        for modality, rows in served.changes.hidden.items():
            by_modality[modality] -= len(rows)
        for modality, matrix in served.changes.matrices.items():
            by_modality[modality] = by_modality.get(modality, 0) + len(matrix.keys)
        return {**info, "size": sum(by_modality.values()), "size_by_modality": by_modality,
                "query_modalities": served.encoders.modalities, "last_change": self.journal.last_number()}

    def upsert(self, entries: Sequence[CatalogEntry], request_id: str = "") -> int:
        """Embed with the served model, journal (durable before returning), then serve. A retry
        with the `request_id` of an acknowledged upsert gets its answer again (request_ids.py)."""
        self.check_writable()
        self._check_changes([e.key for e in entries], "entries")
        digest = fingerprint(UPSERT, [(e.key, e.modality, e.value, metadata_text(e.metadata)) for e in entries])
        with self._writer:
            answered = self._recent.answer(request_id, digest)
            if answered is not None:
                return answered
            served = self._served
            vectors = _embed(served.encoders, [(e.modality, e.value) for e in entries])
            located = served.generation.store.locate([e.key for e in entries])
            delta = [DeltaEntry(e.key, e.modality, v, e.metadata, document(e.modality, e.value, e.metadata))
                     for e, v in zip(entries, vectors)]
            changes = served.changes.apply(delta, [], located)
            self._journal(served, [
                Change(UPSERT, e.key, modality=e.modality, value=e.value, vector=v, metadata=e.metadata)
                for e, v in zip(entries, vectors)])
            self._served = replace(served, changes=changes)
            self._recent.record(request_id, digest, len(entries))
        return len(entries)

    def delete(self, keys: Sequence[str], request_id: str = "") -> int:
        """All or nothing: a key that is not served makes the call NOT_FOUND, deleting none. A
        retry with the `request_id` of an acknowledged delete gets its answer, not NOT_FOUND."""
        self.check_writable()
        self._check_changes(keys, "keys")
        digest = fingerprint(DELETE, list(keys))
        with self._writer:
            answered = self._recent.answer(request_id, digest)
            if answered is not None:
                return answered
            served = self._served
            located = served.generation.store.locate(list(keys))
            missing = [key for key in keys if not served.changes.has(key, located.get(key))]
            if missing:
                raise NotFound(f"keys: {', '.join(map(repr, missing[:5]))}{' ...' if len(missing) > 5 else ''} "
                               f"not in the index; nothing was deleted")
            changes = served.changes.apply([], list(keys), located)
            self._journal(served, [Change(DELETE, key) for key in keys])
            self._served = replace(served, changes=changes)
            self._recent.record(request_id, digest, len(keys))
        return len(keys)

    def _journal(self, served: Served, changes: list[Change]) -> None:
        """Durable before anything is served; a failed write leaves the served value as it was."""
        try:
            self.journal.append(served.journal_name, changes)
        except StorageError as error:
            raise StorageError(f"{error}; nothing was applied, retry once the disk is fixed") from error

    def check_writable(self) -> None:
        """Changes (Upsert, Delete, RebuildIndex) go to the writer; a replica refuses them."""
        if self.read_only:
            raise NotReady(READ_ONLY)

    def adopt(self, served: Served) -> None:
        """A replica's follower serves what the writer published (one reference assignment, like
        `swap`); a replica has no other writer of `_served`."""
        self._served = served

    def _check_changes(self, keys: Sequence[str], field: str) -> None:
        if not keys:
            raise InvalidInput(f"{field}: empty; give at least one")
        self.check_batch(len(keys), field)
        if not all(keys):
            raise InvalidInput(f"{field}: keys must be non-empty strings")
        try:
            check_unique_keys(keys)
        except InvalidInput:
            raise InvalidInput(f"{field}: a key appears more than once in one call") from None

    def swap(self, encoders: EncoderSet, generation: Generation, carry_after: int) -> None:
        """Make a loaded and checked generation (and its model) live: carry over the online
        changes numbered after `carry_after` (re-embedded if the model changes), switch
        `CURRENT`, then swap the served value. Writers wait meanwhile; readers never do."""
        with self._writer:
            served = self._served
            carried = self.journal.changes(served.journal_name, after=carry_after)
            if encoders.version != served.encoders.version or served.fallback:
                carried = _reembedded(encoders, carried)
            self.journal.carry_over(generation.name, carried)
            changes = replay(carried, generation.store.locate(sorted({c.key for c in carried})))
            self.index_dir.make_live(generation.name)
            pause_point("live")
            self._served = Served(encoders, generation, changes)
            try:
                self.journal.keep_only(generation.name)
            except JointspaceError as error:  # rows of other generations are dropped at start too
                log(f"could not drop the journal rows of older generations yet: {error}")
        log(f"serving {generation.name} (model {encoders.version}), {len(carried)} online changes carried over")


def load_changes(journal: Journal, encoders: EncoderSet, generation: Generation,
                 live_name: str) -> tuple[Served, int]:
    """What to serve over a loaded generation: the changes journalled against the live one
    replayed over it, and the newest number among them (0 for none)."""
    journalled = journal.changes(live_name)
    served = with_journalled(Served(encoders, generation, NO_CHANGES, live_name), journalled)
    if journalled:
        log(f"replayed {len(journalled)} online changes over {generation.name}")
    return served, max((c.number for c in journalled), default=0)


def with_journalled(served: Served, journalled: list[Change]) -> Served:
    """`served` with changes read from the journal applied in order (the last change of a key
    wins); embedded again while an older generation stands in for the live one they were made
    against (its model may differ)."""
    if journalled and served.fallback:
        journalled = _reembedded(served.encoders, journalled)
    located = served.generation.store.locate(sorted({c.key for c in journalled}))
    return replace(served, changes=replay(journalled, located, over=served.changes))


def _lexical(served: Served, queries: Sequence[Query], weight: float, fusion: str) -> Lexical:
    """The lexical side of a hybrid search, once the request is known to allow one."""
    check_lexical_weight(weight)
    other = sorted({modality for modality, _ in queries} - {"text"})
    if other:
        raise InvalidInput(f"lexical_weight: only text queries have a lexical side, not {', '.join(other)}")
    if served.generation.lexical is None:
        raise NotReady(f"index {served.generation.name} has no lexical index (built before hybrid search); "
                       f"rebuild it to search text queries by their words")
    return Lexical([value for _, value in queries], weight, fusion)


def _find(served: Served, vectors: np.ndarray, k: int, modalities: Sequence[str],
          excludes: Sequence[set[str]] | None = None, filters: Sequence[Sequence[MetadataFilter]] | None = None,
          lexical: Lexical | None = None, direct: DirectSearch | None = None) -> Found:
    """`find`, or `direct` where the caller has one (Served.direct_search)."""
    check_deadline("searching the index")
    with timed(SEARCH):
        if direct is not None:
            return direct(vectors, k)
        return find(served.generation, vectors, k, modalities, excludes, filters, served.changes, lexical=lexical)


def _embed_texts(encoders: EncoderSet, queries: Sequence[Query]) -> tuple[np.ndarray, frozenset[int]]:
    """The text queries of a hybrid search, and those the text tower has no word for (a script
    it never saw): for them the vector side alone refuses (InvalidInput), so they get a zero row
    and are answered from their words alone, which the lexical index may well know."""
    try:
        return _embed(encoders, queries), frozenset()
    except InvalidInput:
        pass
    vectors, wordless = np.zeros((len(queries), encoders.dim), np.float32), set()
    for position, query in enumerate(queries):
        try:
            vectors[position] = _embed(encoders, [query])[0]
        except InvalidInput:
            wordless.add(position)
    return vectors, frozenset(wordless)


def _embed(encoders: EncoderSet, queries: Sequence[Query], batcher: EncodeBatcher | None = None) -> np.ndarray:
    modalities = {modality for modality, _ in queries}
    if len(modalities) == 1:  # the usual call: no grouping, no scatter into a second array
        [modality] = modalities
        check_deadline(f"embedding {modality} queries")
        return np.ascontiguousarray(_encode(encoders, batcher, modality, [value for _, value in queries]), np.float32)
    by_modality: dict[str, list[int]] = {}
    for position, (modality, _) in enumerate(queries):
        by_modality.setdefault(modality, []).append(position)
    out = np.zeros((len(queries), encoders.dim), np.float32)
    for modality, positions in by_modality.items():
        check_deadline(f"embedding {modality} queries")
        out[positions] = _encode(encoders, batcher, modality, [queries[p][1] for p in positions])
    return out


def _encode(encoders: EncoderSet, batcher: EncodeBatcher | None, modality: str, values: list[Any]) -> np.ndarray:
    """One modality's values: through the batcher, shared with concurrent requests, if there is one."""
    return encoders.embed(modality, values) if batcher is None else batcher.embed(encoders, modality, values)


def _reembedded(encoders: EncoderSet, changes: list[Change]) -> list[Change]:
    """Upserts embedded again with the model that goes live with a new generation."""
    upserts = [(i, c) for i, c in enumerate(changes) if c.kind == UPSERT]
    vectors = _embed(encoders, [(c.upserted_modality, c.value) for _, c in upserts])
    result = list(changes)
    for (position, change), vector in zip(upserts, vectors):
        result[position] = replace(change, vector=vector)
    return result
