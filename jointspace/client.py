"""A small Python client for the jointspace gRPC API.

    with Client("127.0.0.1:50051") as client:
        hits = client.search(text="seven", k=5, modalities=["audio"])

It imports only grpc and the generated stubs (no TensorFlow), so it is cheap to use from any
Python service. Every call has a deadline (`timeout`, seconds); gRPC errors surface as
`grpc.RpcError` with the server's status code and message.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc

from jointspace.core.hits import Hit
from jointspace.core.limits import DEFAULT_LIMITS
from jointspace.core.tls import channel_credentials
from jointspace.v1 import jointspace_pb2 as pb
from jointspace.v1 import jointspace_pb2_grpc as pb_grpc

DEFAULT_TARGET = "127.0.0.1:50051"
MAX_MESSAGE_BYTES = DEFAULT_LIMITS.max_message_bytes  # the server default; its --limit may differ


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
        raise ValueError(f"give exactly one of id, ids, text, audio, audio_path, vector; got {sorted(given)}")
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
        raise ValueError(
            f"entry {row.get('key')!r}: give exactly one of id, text, audio, vector; got {sorted(content)}")
    [(kind, value)] = content.items()
    if kind == "audio":
        query = make_query(**({"audio": value} if isinstance(value, bytes) else {"audio_path": value}))
    else:
        query = make_query(**{kind: value})
    entry = pb.CatalogEntry(key=row.get("key", ""), **{kind: getattr(query, kind)})
    json_format.ParseDict(dict(row.get("metadata") or {}), entry.metadata)
    return entry


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
        Hit(h.key, h.score, h.modality, _plain(json_format.MessageToDict(h.metadata)))
        for h in response.hits
    ]


class _CallDetails(
    collections.namedtuple("_CallDetails", "method timeout metadata credentials wait_for_ready compression"),
    grpc.ClientCallDetails,
):
    pass


class _BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                   grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds `authorization: Bearer TOKEN` to every call, whichever stub makes it."""

    def __init__(self, token: str) -> None:
        self.header = ("authorization", f"Bearer {token}")

    def _call(self, continuation: Any, details: grpc.ClientCallDetails, request: Any) -> Any:
        details = _CallDetails(details.method, details.timeout, [*(details.metadata or ()), self.header],
                               details.credentials, details.wait_for_ready, details.compression)
        return continuation(details, request)

    intercept_unary_unary = intercept_unary_stream = _call
    intercept_stream_unary = intercept_stream_stream = _call


class Client:
    """A connection to one server. TLS when `tls_ca` (the CA that signed the server's
    certificate) or `tls=True` (the system's CAs) is given; mutual TLS adds `tls_cert` and
    `tls_key`; `token` is sent as a bearer token on every call."""

    def __init__(self, target: str = DEFAULT_TARGET, timeout: float = 30.0, *, tls: bool = False,
                 tls_ca: str | Path | None = None, tls_cert: str | Path | None = None,
                 tls_key: str | Path | None = None, token: str | None = None) -> None:
        self.timeout = timeout
        options = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]
        if tls or tls_ca or tls_cert or tls_key:
            channel = grpc.secure_channel(target, channel_credentials(tls_ca, tls_cert, tls_key), options)
        else:
            channel = grpc.insecure_channel(target, options)
        self.channel = grpc.intercept_channel(channel, _BearerToken(token)) if token else channel
        self._raw_channel = channel
        self.stub = pb_grpc.JointSpaceStub(self.channel)

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Until the server's health says SERVING (model and index loaded), not merely until it
        accepts connections: a server that is still loading answers FAILED_PRECONDITION."""
        deadline = time.monotonic() + timeout
        health = health_pb2_grpc.HealthStub(self.channel)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise grpc.FutureTimeoutError(f"the server did not report SERVING within {timeout:g} s")
            try:
                answer = health.Check(health_pb2.HealthCheckRequest(), timeout=remaining, wait_for_ready=True)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError as error:
                if error.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise
            time.sleep(min(0.05, max(deadline - time.monotonic(), 0)))

    def search(self, k: int = 10, modalities: Sequence[str] = (), exclude: Sequence[str] = (),
               filters: Mapping[str, Any] | None = None, **query: Any) -> list[Hit]:
        """`filters`: metadata field -> a value, or a list of values (any of them), see make_filters."""
        request = pb.SearchRequest(query=make_query(**query), k=k, modalities=list(modalities),
                                   exclude_keys=list(exclude), filters=make_filters(filters))
        return hits_from_proto(self.stub.Search(request, timeout=self.timeout))

    def batch_search(self, queries: Sequence[pb.Query], k: int = 10,
                     modalities: Sequence[str] = ()) -> list[list[Hit]]:
        request = pb.BatchSearchRequest(
            requests=[pb.SearchRequest(query=q, k=k, modalities=list(modalities)) for q in queries]
        )
        return [hits_from_proto(r) for r in self.stub.BatchSearch(request, timeout=self.timeout).results]

    def embed(self, queries: Sequence[pb.Query]) -> np.ndarray:
        response = self.stub.Embed(pb.EmbedRequest(inputs=list(queries)), timeout=self.timeout)
        return np.frombuffer(response.vectors, dtype="<f4").reshape(response.count, response.dim)

    def info(self) -> dict[str, Any]:
        response = self.stub.GetIndexInfo(pb.GetIndexInfoRequest(), timeout=self.timeout)
        return {
            "generation": response.generation,
            "size": response.size,
            "dim": response.dim,
            "index_type": response.index_type,
            "model_version": response.model_version,
            "size_by_modality": dict(response.size_by_modality),
            "query_modalities": list(response.query_modalities),
            "last_change": response.last_change,
            "bytes_per_vector": response.bytes_per_vector,
        }

    def upsert(self, entries: Sequence[Mapping[str, Any]], request_id: str = "") -> int:
        """Add or replace catalog entries by key (rows as make_catalog_entry takes them); durable
        on the server once this returns. A retry with the same `request_id` is not applied twice."""
        request = pb.UpsertRequest(entries=[make_catalog_entry(e) for e in entries], request_id=request_id)
        return self.stub.Upsert(request, timeout=self.timeout).upserted

    def delete(self, keys: Sequence[str], request_id: str = "") -> int:
        request = pb.DeleteRequest(keys=list(keys), request_id=request_id)
        return self.stub.Delete(request, timeout=self.timeout).deleted

    def rebuild(self, catalogs: Sequence[str | Path], index: str = "", model: str | Path | None = None,
                validation_pairs: str | Path | None = None, min_recall: float = 0.0, validation_k: int = 0,
                request_id: str = "", includes_changes_through: int = 0) -> pb.Operation:
        """Start a rebuild from catalog files on the server's file system; returns at once.
        `includes_changes_through`: the `last_change` of `info()` when the catalogs were exported
        (the online changes up to it are in them and are not carried over); 0 carries all."""
        request = pb.RebuildIndexRequest(
            catalog_paths=[str(c) for c in catalogs], index_type=index, model_dir=str(model or ""),
            validation_pairs=str(validation_pairs or ""), min_recall=min_recall, validation_k=validation_k,
            request_id=request_id, catalog_includes_changes_through=includes_changes_through)
        return self.stub.RebuildIndex(request, timeout=self.timeout)

    def operation(self, name: str) -> pb.Operation:
        return self.stub.GetOperation(pb.GetOperationRequest(name=name), timeout=self.timeout)

    def operations(self) -> list[pb.Operation]:
        return list(self.stub.ListOperations(pb.ListOperationsRequest(), timeout=self.timeout).operations)

    def cancel(self, name: str) -> pb.Operation:
        return self.stub.CancelOperation(pb.CancelOperationRequest(name=name), timeout=self.timeout)

    def wait(self, name: str, poll: float = 0.2,
             on_progress: Callable[[pb.Operation], None] | None = None) -> pb.Operation:
        """Poll until the operation is done; `on_progress` sees every answer."""
        while True:
            operation = self.operation(name)
            if on_progress is not None:
                on_progress(operation)
            if operation.done:
                return operation
            time.sleep(poll)

    def close(self) -> None:
        self._raw_channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
