"""Protocol messages ↔ engine values, with the checks that only the wire format needs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from google.protobuf import json_format, struct_pb2

from jointspace.client.types import Hit
from jointspace.core.errors import InvalidInput
from jointspace.core.limits import Limits
from jointspace.data.catalog import CatalogEntry
from jointspace.server.api.answer_bytes import RESULT, length_delimited, ranked_results
from jointspace.server.index.filters import MetadataFilter, make_filter
from jointspace.server.index.searching import Found, Ranked
from jointspace.server.serving.engine import Query
from jointspace.v1 import jointspace_pb2 as pb

WIRE_FROM_HITS = 400  # about the measured break-even (`jointspace bench answers`, docs/benchmarks.md)


def vector_from_proto(vector: pb.Vector, field: str) -> np.ndarray:
    packed = vector.f32  # read once: each read of a bytes field makes a new object
    if packed:
        if vector.values:
            raise InvalidInput(f"{field}: set values or f32, not both")
        if len(packed) % 4:
            raise InvalidInput(f"{field}.f32: {len(packed)} bytes is not a whole number of float32")
        return np.frombuffer(packed, dtype="<f4")
    return np.asarray(vector.values, dtype=np.float32)


def query_from_proto(query: pb.Query, field: str = "query") -> Query:
    kind = query.WhichOneof("kind")
    if kind is None:
        raise InvalidInput(f"{field}: empty; set one of id, ids, text, audio, vector")
    if kind == "id":
        if not query.id:
            raise InvalidInput(f"{field}.id: empty")
        return "id", query.id
    if kind == "ids":
        if not query.ids.ids:
            raise InvalidInput(f"{field}.ids: the list is empty")
        return "ids", list(query.ids.ids)
    if kind == "text":
        if not query.text.strip():
            raise InvalidInput(f"{field}.text: empty")
        return "text", query.text
    if kind == "audio":
        if not query.audio.content:
            raise InvalidInput(f"{field}.audio.content: empty")
        if query.audio.sample_rate < 0:
            raise InvalidInput(f"{field}.audio.sample_rate: must be positive")
        return "audio", (query.audio.content, query.audio.sample_rate or None)
    return "vector", vector_from_proto(query.vector, f"{field}.vector")


def plain_vector_queries(requests: Sequence[pb.SearchRequest], dim: int) -> tuple[int, list[str], np.ndarray] | None:
    """The common search, or batch of them, as its k, result modalities and one matrix of its
    queries: every request a packed vector of `dim` floats with the same k and modalities, and
    no other field set. None for any other, which is parsed request by request (and refused
    there if something is wrong): that costs several times the FAISS-free rest of a plain batch."""
    first = requests[0]
    k, modalities, row_bytes, packed = first.k, list(first.modalities), 4 * dim, []
    fields = 3 if modalities else 2  # query, k (and modalities)
    for request in requests:
        vector = request.query.vector  # an empty Vector when the query is of another kind
        if (len(request.ListFields()) != fields or request.k != k or len(vector.ListFields()) != 1
                or (modalities and request.modalities != modalities)):
            return None
        values = vector.f32
        if len(values) != row_bytes:
            return None
        packed.append(values)
    joined = packed[0] if len(packed) == 1 else b"".join(packed)  # a Search: no copy to make
    return k, modalities, np.frombuffer(joined, "<f4").reshape(len(requests), dim)


def catalog_entry_from_proto(entry: pb.CatalogEntry, field: str, limits: Limits) -> CatalogEntry:
    """An upserted entry: its content is checked as a query's is (the same oneof members), its
    key and metadata against the limits that catalog rows meet too (data/catalog.py)."""
    if not entry.key:
        raise InvalidInput(f"{field}.key: empty; every entry needs its catalog key")
    limits.check_key(entry.key, f"{field}.key")
    kind = entry.WhichOneof("content")
    if kind is None:
        raise InvalidInput(f"{field}: no content; set one of id, text, audio, vector")
    modality, value = query_from_proto(pb.Query(**{kind: getattr(entry, kind)}), f"{field}.{kind}")
    metadata = _plain(entry.metadata, f"{field}.metadata")
    limits.check_metadata(metadata, f"{field}.metadata")
    return CatalogEntry(entry.key, modality, value, metadata)


def _plain(message: Any, field: str) -> Any:
    """A Struct or Value as plain Python; JSON has no NaN or infinity, so such numbers are refused."""
    try:
        return json_format.MessageToDict(message)
    except ValueError as error:
        raise InvalidInput(f"{field}: {error}") from None


def filters_from_proto(filters: Any, field: str, limits: Limits) -> tuple[MetadataFilter, ...]:
    if not filters:
        return ()
    limits.check_count(len(filters), "max_filters", field, "filters")
    return tuple(
        make_filter(item.field, [_plain(v, f"{field}[{i}].any_of[{j}]") for j, v in enumerate(item.any_of)],
                    f"{field}[{i}]")
        for i, item in enumerate(filters)
    )


def struct_from_dict(values: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    if values:
        json_format.ParseDict(values, message)
    return message


def hits_to_proto(hits: list[Hit], generation: str) -> pb.SearchResponse:
    """Hits are added in place rather than built and copied in, and hits without metadata leave
    the field unset (a client reads it as an empty Struct all the same)."""
    response = pb.SearchResponse(generation=generation)
    add = response.hits.add
    for hit in hits:
        if hit.metadata:
            add(key=hit.key, score=hit.score, modality=hit.modality, metadata=struct_from_dict(hit.metadata),
                found_by=hit.found_by)
        else:
            add(key=hit.key, score=hit.score, modality=hit.modality, found_by=hit.found_by)
    return response


def found_to_proto(found: Found, query: int, min_score: float | None, generation: str) -> pb.SearchResponse:
    """The answer to query `query` of `found`, its hits scoring at least `min_score` (None: all).
    `Ranked` arrays are added without a `Hit` per hit."""
    if not isinstance(found, Ranked):
        return hits_to_proto(above(found[query], min_score), generation)
    response = pb.SearchResponse(generation=generation)
    add, modality, rows = response.hits.add, found.modality, found.rows[query]
    for key, score, row in zip(found.keys[rows].tolist(), found.scores[query].tolist(), rows.tolist()):
        if row >= 0 and (min_score is None or score >= min_score):  # -1: no hit (its key is the last row's)
            add(key=key, score=score, modality=modality)
    return response


def found_to_results(found: Found, min_scores: Sequence[float | None], generation: str) -> bytes:
    """A serialized BatchSearchResponse with the answer to each query of `found`, as
    `found_to_proto` gives it. Large `Ranked` answers are written from their arrays
    (`ranked_to_results`); under WIRE_FROM_HITS hits, the arrays' fixed cost is more than
    messages cost (`messages_to_results`)."""
    if isinstance(found, Ranked) and found.rows.size >= WIRE_FROM_HITS:
        return ranked_to_results(found, min_scores, generation)
    return messages_to_results(found, min_scores, generation)


def ranked_to_results(found: Ranked, min_scores: Sequence[float | None], generation: str) -> bytes:
    thresholds = (None if all(m is None for m in min_scores)
                  else np.array([-np.inf if m is None else m for m in min_scores], np.float32))
    return ranked_results(found.rows, found.scores, found.packed_keys, found.modality, generation, thresholds)


def messages_to_results(found: Found, min_scores: Sequence[float | None], generation: str) -> bytes:
    return b"".join(length_delimited(RESULT, found_to_proto(found, query, min_score, generation).SerializeToString())
                    for query, min_score in enumerate(min_scores))


def lexical_weight_from_proto(request: pb.SearchRequest) -> float | None:
    """The hybrid weight, or None when the request asks for no hybrid search (field unset)."""
    return request.lexical_weight if request.HasField("lexical_weight") else None


def min_score_from_proto(request: pb.SearchRequest, field: str) -> float | None:
    """The score threshold, or None when the request sets none (field unset)."""
    if not request.HasField("min_score"):
        return None
    if math.isnan(request.min_score):
        raise InvalidInput(f"{field}: must be a number, got NaN")
    return request.min_score


def above(hits: list[Hit], min_score: float | None) -> list[Hit]:
    """The hits scoring at least `min_score` (hits come best first, so a prefix)."""
    if min_score is None:
        return hits
    return [hit for hit in hits if hit.score >= min_score]


def entries_to_proto(entries: list[tuple[str, str, dict[str, Any]]], missing: list[str]) -> pb.GetEntriesResponse:
    return pb.GetEntriesResponse(
        entries=[pb.StoredEntry(key=key, modality=modality, metadata=struct_from_dict(metadata))
                 for key, modality, metadata in entries],
        missing_keys=missing)


def excluded_keys_from_proto(request: pb.SearchRequest, query: Query, limits: Limits) -> set[str]:
    """The keys a search must not return: `exclude_keys`, `seen_ids` and, when
    `exclude_query_ids` says so (unset: for a history), the query's own ids. The keys asked for
    count against max_exclude_keys; a history's own ids are bounded by max_ids instead."""
    kind, value = query
    own = request.exclude_query_ids if request.HasField("exclude_query_ids") else kind == "ids"
    if not (request.exclude_keys or request.seen_ids or own):  # the usual query: nothing to look up
        return set()
    asked = len(request.exclude_keys) + len(request.seen_ids)
    limits.check_count(asked, "max_exclude_keys", "exclude_keys + seen_ids" if request.seen_ids else "exclude_keys",
                       "keys")
    excluded = set(request.exclude_keys) | set(request.seen_ids)
    if own and kind == "id":
        excluded.add(value)
    elif own and kind == "ids":
        limits.check_count(len(value), "max_ids", "query.ids", "ids")
        excluded.update(value)
    return excluded
