"""Requests and answers of the API, shared by the sync and the asyncio client.

Every client method is one `Call`: the stub method to invoke, the request message, and how its
response becomes typed values. The two clients differ only in how they run a call (blocking or
awaited), so what a method sends and returns is written once, here.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypedDict, TypeVar, cast

import grpc
import numpy as np
from google.longrunning import operations_pb2
from google.protobuf import json_format

from jointspace.client.errors import UsageError
from jointspace.client.types import (
    Entry,
    Hit,
    IndexInfo,
    Operation,
    OperationError,
    OperationState,
    Progress,
    Validation,
)
from jointspace.v1 import jointspace_pb2 as pb

R = TypeVar("R")
# Room left in a split Upsert for the request's own fields and the entries' framing.
_FRAMING_BYTES = 64 * 1024


@dataclass(frozen=True)
class Call(Generic[R]):
    method: str  # the stub's attribute, e.g. "Search"
    request: Any
    decode: Callable[[Any], R]
    operations: bool = False  # a method of google.longrunning.Operations, not of JointSpace


def make_query(
    *,
    id: str | None = None,
    ids: Sequence[str] | None = None,
    text: str | None = None,
    audio: bytes | None = None,
    audio_path: str | Path | None = None,
    sample_rate: int = 0,
    vector: Sequence[float] | np.ndarray | None = None,
) -> pb.Query:
    """Exactly one keyword: an id, a bag of ids, text, audio (file bytes, or raw float32 PCM with
    `sample_rate`), an audio file path (read here, sent as bytes) or a vector."""
    given = {k: v for k, v in dict(id=id, ids=ids, text=text, audio=audio, audio_path=audio_path,
                                   vector=vector).items() if v is not None}
    if len(given) != 1:
        raise UsageError(f"give exactly one of id, ids, text, audio, audio_path, vector; got {sorted(given)}")
    if id is not None:
        return pb.Query(id=id)
    if ids is not None:
        return pb.Query(ids=pb.IdList(ids=list(ids)))
    if text is not None:
        return pb.Query(text=text)
    if audio_path is not None:
        audio = Path(audio_path).read_bytes()
    if audio is not None:
        return pb.Query(audio=pb.Audio(content=audio, sample_rate=sample_rate))
    packed = np.ascontiguousarray(np.asarray(vector, dtype="<f4")).tobytes()
    return pb.Query(vector=pb.Vector(f32=packed))


def make_filters(filters: Mapping[str, Any] | None) -> list[pb.MetadataFilter]:
    """{"genre": "comedy", "year": [1994, 1995]}: a list is set membership, a value equality."""
    made = []
    for field, wanted in (filters or {}).items():
        values = wanted if isinstance(wanted, (list, tuple, set, frozenset)) else [wanted]
        message = pb.MetadataFilter(field=field)
        for value in values:
            json_format.ParseDict(value, message.any_of.add())
        made.append(message)
    return made


def make_catalog_entry(row: Mapping[str, Any]) -> pb.CatalogEntry:
    """A catalog row as in catalog files, {"key": ..., one of id / text / audio / vector,
    "metadata": {...}}; audio is a file path (read here) or the file's bytes."""
    content = {k: row[k] for k in ("id", "text", "audio", "vector") if row.get(k) is not None}
    if len(content) != 1:
        raise UsageError(
            f"entry {row.get('key')!r}: give exactly one of id, text, audio, vector; got {sorted(content)}")
    [(kind, value)] = content.items()
    if kind == "audio":
        query = make_query(**({"audio": value} if isinstance(value, bytes) else {"audio_path": value}))
    else:
        query = make_query(**{kind: value})
    entry = pb.CatalogEntry(key=row.get("key", ""), **{kind: getattr(query, kind)})
    json_format.ParseDict(dict(row.get("metadata") or {}), entry.metadata)
    return entry


class SearchOptions(TypedDict, total=False):
    """What a search asks besides its query: the keywords of `search` and `batch_search` in both
    clients. A new SearchRequest field is a line here and one in search_request."""

    k: int  # hits wanted; 10 when not given
    modalities: Sequence[str]  # result modalities; none given: all
    exclude: Sequence[str]  # catalog keys never to return
    filters: Mapping[str, Any] | None  # metadata field -> a value, or a list of values (any of them)
    min_score: float | None  # no hit scoring below it
    lexical_weight: float | None  # hybrid search of a text query: 0 (vectors alone) to 1 (words alone)
    exclude_query_ids: bool | None  # the query's own ids never return; None: the server's default (histories)
    seen_ids: Sequence[str]  # ids the asking user has seen, never returned


class QueryKeywords(TypedDict, total=False):
    """make_query's keywords: exactly one kind of query (`sample_rate` goes with raw PCM audio)."""

    id: str
    ids: Sequence[str]
    text: str
    audio: bytes
    audio_path: str | Path
    sample_rate: int
    vector: Sequence[float] | np.ndarray


class SearchArguments(QueryKeywords, SearchOptions, total=False):
    """The keywords of `search`: the query's and the options."""


def search_request(query: pb.Query, options: SearchOptions) -> pb.SearchRequest:
    """The one place a SearchRequest is built, for search and batch_search alike."""
    request = pb.SearchRequest(query=query, k=options.get("k", 10), modalities=list(options.get("modalities", ())),
                               exclude_keys=list(options.get("exclude", ())),
                               seen_ids=list(options.get("seen_ids", ())),
                               filters=make_filters(options.get("filters")))
    if (exclude_query_ids := options.get("exclude_query_ids")) is not None:
        request.exclude_query_ids = exclude_query_ids
    if (min_score := options.get("min_score")) is not None:
        request.min_score = min_score
    if (lexical_weight := options.get("lexical_weight")) is not None:
        request.lexical_weight = lexical_weight
    return request


def as_query(query: pb.Query | Mapping[str, Any]) -> pb.Query:
    """A Query message, or the keywords of make_query as a dict ({"text": "seven"})."""
    return query if isinstance(query, pb.Query) else make_query(**query)


def new_request_id(given: str) -> str:
    """Writes always carry a request id, so that a retry (gRPC's, or the caller's with the same
    id) is answered instead of applied twice; that is what makes retrying a write safe."""
    return given or uuid.uuid4().hex


def _plain(value: Any) -> Any:
    """Struct numbers are doubles; give back integers where the value is one (a digit, a year)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def hits_from_proto(response: pb.SearchResponse) -> list[Hit]:
    return [
        Hit(h.key, h.score, h.modality, _plain(json_format.MessageToDict(h.metadata)), tuple(h.found_by))
        for h in response.hits
    ]


def batch_hits_from_proto(response: pb.BatchSearchResponse) -> list[list[Hit]]:
    return [hits_from_proto(result) for result in response.results]


def vectors_from_proto(response: pb.EmbedResponse) -> np.ndarray:
    return np.frombuffer(response.vectors, dtype="<f4").reshape(response.count, response.dim)


def info_from_proto(response: pb.IndexInfo) -> IndexInfo:
    return IndexInfo(
        generation=response.generation, size=response.size, dim=response.dim, index_type=response.index_type,
        model_version=response.model_version, size_by_modality=dict(response.size_by_modality),
        query_modalities=list(response.query_modalities), last_change=response.last_change,
        bytes_per_vector=response.bytes_per_vector,
    )


def entries_from_proto(response: pb.GetEntriesResponse) -> list[Entry]:
    return [Entry(e.key, e.modality, _plain(json_format.MessageToDict(e.metadata))) for e in response.entries]


def status_code(value: int) -> grpc.StatusCode:
    return next((code for code in grpc.StatusCode if code.value[0] == value), grpc.StatusCode.UNKNOWN)


def operation_from_proto(operation: operations_pb2.Operation) -> Operation:
    """A rebuild's google.longrunning.Operation, with its RebuildIndexMetadata and, once it
    succeeded, its RebuildIndexResponse unpacked."""
    metadata = pb.RebuildIndexMetadata()
    operation.metadata.Unpack(metadata)
    response = pb.RebuildIndexResponse()
    if operation.HasField("response"):
        operation.response.Unpack(response)
    gate = metadata.validation
    return Operation(
        name=operation.name, done=operation.done, state=OperationState(metadata.state),
        progress=Progress(metadata.progress.phase, metadata.progress.done, metadata.progress.total),
        generation=response.generation,
        error=(OperationError(status_code(operation.error.code), operation.error.message)
               if operation.HasField("error") else None),
        validation=(Validation(gate.k, gate.recall, gate.min_recall, gate.pairs)
                    if metadata.HasField("validation") else None),
    )


def operations_page_from_proto(response: operations_pb2.ListOperationsResponse) -> tuple[list[Operation], str]:
    return [operation_from_proto(o) for o in response.operations], response.next_page_token


def upsert_batches(entries: Sequence[pb.CatalogEntry], max_bytes: int,
                   max_count: int) -> Iterator[list[pb.CatalogEntry]]:
    """Consecutive runs of entries, each under the message limit and the batch limit. An entry
    that alone is over the message limit is sent alone: the server names it in its refusal."""
    budget = max_bytes - _FRAMING_BYTES
    batch: list[pb.CatalogEntry] = []
    size = 0
    for entry in entries:
        entry_size = entry.ByteSize() + 16  # the field's tag and length
        if batch and (size + entry_size > budget or len(batch) >= max_count):
            yield batch
            batch, size = [], 0
        batch.append(entry)
        size += entry_size
    if batch or not entries:  # nothing to upsert is still asked: the server says what is wrong
        yield batch


def upsert_calls(entries: Sequence[Mapping[str, Any]], request_id: str, max_bytes: int,
                 max_count: int) -> list[Call[int]]:
    """One Upsert per batch; batch i of a split carries `<request_id>/<i>`, so that repeating the
    whole upsert with the same id repeats every part's answer instead of applying it again."""
    request_id = new_request_id(request_id)
    batches = list(upsert_batches([make_catalog_entry(e) for e in entries], max_bytes, max_count))
    return [
        Call("Upsert", pb.UpsertRequest(entries=batch,
                                        request_id=request_id if len(batches) == 1 else f"{request_id}/{i}"),
             lambda response: int(response.upserted))
        for i, batch in enumerate(batches)
    ]


class Calls:
    """The API's calls with their arguments checked and typed; each client runs them its way."""

    @staticmethod
    def search(arguments: SearchArguments) -> Call[list[Hit]]:
        option_names = SearchOptions.__optional_keys__
        options = cast(SearchOptions, {k: v for k, v in arguments.items() if k in option_names})
        keywords: dict[str, Any] = {k: v for k, v in arguments.items() if k not in option_names}
        query = make_query(**keywords)
        return Call("Search", search_request(query, options), hits_from_proto)

    @staticmethod
    def batch_search(queries: Sequence[pb.Query | Mapping[str, Any]], options: SearchOptions) -> Call[list[list[Hit]]]:
        request = pb.BatchSearchRequest(requests=[search_request(as_query(q), options) for q in queries])
        return Call("BatchSearch", request, batch_hits_from_proto)

    @staticmethod
    def embed(queries: Sequence[pb.Query | Mapping[str, Any]]) -> Call[np.ndarray]:
        return Call("Embed", pb.EmbedRequest(inputs=[as_query(q) for q in queries]), vectors_from_proto)

    @staticmethod
    def info() -> Call[IndexInfo]:
        return Call("GetIndexInfo", pb.GetIndexInfoRequest(), info_from_proto)

    @staticmethod
    def get_entries(keys: Sequence[str]) -> Call[list[Entry]]:
        return Call("GetEntries", pb.GetEntriesRequest(keys=list(keys)), entries_from_proto)

    @staticmethod
    def delete(keys: Sequence[str], request_id: str) -> Call[int]:
        request = pb.DeleteRequest(keys=list(keys), request_id=new_request_id(request_id))
        return Call("Delete", request, lambda response: int(response.deleted))

    @staticmethod
    def rebuild(catalogs: Sequence[str | Path], index: str, model: str | Path | None,
                validation_pairs: str | Path | None, min_recall: float, validation_k: int, request_id: str,
                includes_changes_through: int) -> Call[Operation]:
        request = pb.RebuildIndexRequest(
            catalog_paths=[str(c) for c in catalogs], index_type=index, model_dir=str(model or ""),
            validation_pairs=str(validation_pairs or ""), min_recall=min_recall, validation_k=validation_k,
            request_id=new_request_id(request_id), catalog_includes_changes_through=includes_changes_through)
        return Call("RebuildIndex", request, operation_from_proto)

    @staticmethod
    def operation(name: str) -> Call[Operation]:
        return Call("GetOperation", operations_pb2.GetOperationRequest(name=name), operation_from_proto,
                    operations=True)

    @staticmethod
    def operations_page(page_size: int, page_token: str) -> Call[tuple[list[Operation], str]]:
        request = operations_pb2.ListOperationsRequest(name="operations", page_size=page_size, page_token=page_token)
        return Call("ListOperations", request, operations_page_from_proto, operations=True)

    @staticmethod
    def cancel(name: str) -> Call[None]:
        """CancelOperation answers nothing (google.protobuf.Empty); the clients read the operation after."""
        return Call("CancelOperation", operations_pb2.CancelOperationRequest(name=name), lambda _: None,
                    operations=True)
