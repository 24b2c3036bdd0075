"""One search interface over the engines the serving benchmark compares, each through its own
client: jointspace (and the no-op ceiling, which speaks the same API) over gRPC with vectors as
packed float32 bytes, milvus-lite through pymilvus, chromadb through its HTTP client.

A searcher turns query vectors into request units once, before timing (so that the timed loop
measures calls, not request building), and answers a unit with the keys found per query. Keys
are `v:<row>` everywhere, the rows of the benchmark's vector catalog.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class Target:
    """Where an engine listens and what a client must know to query it (picklable: it travels
    to client processes)."""

    kind: str  # "jointspace", "milvus" or "chroma"
    address: str  # host:port
    settings: dict[str, Any] = field(default_factory=dict)


class Searcher(Protocol):
    def prepare(self, queries: np.ndarray, batch: int) -> list[Any]: ...

    def call(self, unit: Any) -> list[list[str]]: ...

    def close(self) -> None: ...


def _chunks(queries: np.ndarray, batch: int) -> list[np.ndarray]:
    """Whole batches; fewer queries than one batch make one short batch."""
    chunks = [queries[start : start + batch] for start in range(0, len(queries) - batch + 1, batch)]
    return chunks or ([queries] if len(queries) else [])


class JointspaceSearcher:
    """Search for one query, BatchSearch for more."""

    def __init__(self, address: str, k: int) -> None:
        from jointspace.client import Client

        self.client, self.k = Client(address, timeout=60), k

    def prepare(self, queries: np.ndarray, batch: int) -> list[Any]:
        from jointspace.client import make_query
        from jointspace.v1 import jointspace_pb2 as pb

        if batch == 1:
            return [pb.SearchRequest(query=make_query(vector=q), k=self.k) for q in queries]
        return [pb.BatchSearchRequest(requests=[pb.SearchRequest(query=make_query(vector=q), k=self.k) for q in chunk])
                for chunk in _chunks(queries, batch)]

    def call(self, unit: Any) -> list[list[str]]:
        if unit.DESCRIPTOR.name == "SearchRequest":
            return [[hit.key for hit in self.client.stub.Search(unit, timeout=60).hits]]
        answer = self.client.stub.BatchSearch(unit, timeout=60)
        return [[hit.key for hit in result.hits] for result in answer.results]

    def close(self) -> None:
        self.client.close()


class QuerySearcher:
    """Queries of any modality, given as serialized Query messages (bench/queries.py), one per
    call: Search (encoder and index) or Embed (the encoder alone), as `method` says."""

    def __init__(self, address: str, k: int, method: str) -> None:
        from jointspace.client import Client

        self.client, self.k, self.method = Client(address, timeout=60), k, method

    def prepare(self, queries: np.ndarray, batch: int) -> list[Any]:
        from jointspace.v1 import jointspace_pb2 as pb

        parsed = [pb.Query.FromString(q) for q in queries]
        if self.method == "embed":
            return [pb.EmbedRequest(inputs=[q]) for q in parsed]
        return [pb.SearchRequest(query=q, k=self.k) for q in parsed]

    def call(self, unit: Any) -> list[list[str]]:
        if self.method == "embed":
            self.client.stub.Embed(unit, timeout=60)
            return [[]]
        return [[hit.key for hit in self.client.stub.Search(unit, timeout=60).hits]]

    def close(self) -> None:
        self.client.close()


class MilvusSearcher:
    def __init__(self, address: str, k: int, settings: dict[str, Any]) -> None:
        from pymilvus import MilvusClient

        self.client, self.k = MilvusClient(uri=f"http://{address}"), k
        self.collection = settings["collection"]
        self.params = {"metric_type": "IP", "params": dict(settings.get("search_params", {}))}

    def prepare(self, queries: np.ndarray, batch: int) -> list[Any]:
        return [chunk.tolist() for chunk in _chunks(queries, batch)]

    def call(self, unit: Any) -> list[list[str]]:
        found = self.client.search(self.collection, data=unit, limit=self.k, search_params=self.params)
        return [[f"v:{hit['id']}" for hit in hits] for hits in found]

    def close(self) -> None:
        self.client.close()


class ChromaSearcher:
    def __init__(self, address: str, k: int, settings: dict[str, Any]) -> None:
        import chromadb

        host, port = address.rsplit(":", 1)
        self.client = chromadb.HttpClient(host=host, port=int(port))
        self.collection, self.k = self.client.get_collection(settings["collection"]), k

    def prepare(self, queries: np.ndarray, batch: int) -> list[Any]:
        return [chunk.tolist() for chunk in _chunks(queries, batch)]

    def call(self, unit: Any) -> list[list[str]]:
        return self.collection.query(query_embeddings=unit, n_results=self.k, include=[])["ids"]

    def close(self) -> None:
        pass  # the HTTP client keeps no connection that needs closing


def open_searcher(target: Target, k: int) -> Searcher:
    if target.kind == "jointspace":
        return JointspaceSearcher(target.address, k)
    if target.kind == "jointspace-requests":
        return QuerySearcher(target.address, k, target.settings["method"])
    if target.kind == "milvus":
        return MilvusSearcher(target.address, k, target.settings)
    if target.kind == "chroma":
        return ChromaSearcher(target.address, k, target.settings)
    raise ValueError(f"unknown engine kind {target.kind!r}")


def search_all(target: Target, queries: np.ndarray, k: int, batch: int = 64) -> list[list[str]]:
    """Keys found for every query (recall measurement), in batches; the tail goes one by one."""
    searcher = open_searcher(target, k)
    try:
        full = len(queries) - len(queries) % batch
        found = [keys for unit in searcher.prepare(queries[:full], batch) for keys in searcher.call(unit)]
        found += [keys for unit in searcher.prepare(queries[full:], 1) for keys in searcher.call(unit)]
        return found
    finally:
        searcher.close()


def recall_at_k(found: list[list[str]], exact_rows: np.ndarray) -> float:
    """Mean share of each query's exact top-k (catalog rows) among the keys found for it."""
    k = exact_rows.shape[1]
    shares = [len(set(keys) & {f"v:{row}" for row in rows}) / k for keys, rows in zip(found, exact_rows)]
    return round(float(np.mean(shares)), 4)
