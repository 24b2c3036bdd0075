"""A small Python client for the jointspace gRPC API.

    with Client("127.0.0.1:50051") as client:
        hits = client.search(text="seven", k=5, modalities=["audio"])

It imports only grpc and the generated stubs (no TensorFlow), so it is cheap to use from any
Python service. Every call has a deadline (`timeout`, seconds); gRPC errors surface as
`grpc.RpcError` with the server's status code and message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import grpc
import numpy as np
from google.protobuf import json_format

from jointspace.hits import Hit
from jointspace.v1 import jointspace_pb2 as pb
from jointspace.v1 import jointspace_pb2_grpc as pb_grpc

DEFAULT_TARGET = "127.0.0.1:50051"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


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


class Client:
    def __init__(self, target: str = DEFAULT_TARGET, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self.channel = grpc.insecure_channel(target, options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ])
        self.stub = pb_grpc.JointSpaceStub(self.channel)

    def wait_ready(self, timeout: float = 10.0) -> None:
        grpc.channel_ready_future(self.channel).result(timeout=timeout)

    def search(self, k: int = 10, modalities: Sequence[str] = (), exclude: Sequence[str] = (),
               **query: Any) -> list[Hit]:
        request = pb.SearchRequest(query=make_query(**query), k=k, modalities=list(modalities),
                                   exclude_keys=list(exclude))
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
            "bytes_per_vector": response.bytes_per_vector,
        }

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
