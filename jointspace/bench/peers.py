"""The vector databases a user would pick instead, for the serving benchmark: milvus-lite and
chromadb (`pip install 'jointspace[peers]'`), each run as its own server process, loaded with the
same vectors, given the same HNSW graph (32 neighbours, construction depth 40, inner product) and
its search depth raised until recall@10 on the same queries reaches the same target. A peer that
is not installed or does not start is skipped with the reason, never estimated.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from jointspace.bench.searchers import Target, recall_at_k, search_all
from jointspace.core.progress import Progress, log
from jointspace.server.index.tuning import EF_SEARCH_LADDER

COLLECTION = "bench"
HNSW_NEIGHBOURS = 32
HNSW_CONSTRUCTION = 40  # FAISS's default, which jointspace's HNSW32 builds with
START_TIMEOUT = 120.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_bytes(pid: int) -> int:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Peer:
    """One engine in its own server process."""

    name = ""
    module = ""  # the Python package that must be importable

    def __init__(self, work: Path) -> None:
        self.work = work
        self.process: subprocess.Popen | None = None
        self.port = 0

    def unavailable(self) -> str | None:
        if importlib.util.find_spec(self.module) is None:
            return f"{self.module} is not installed (pip install 'jointspace[peers]')"
        return None

    @property
    def target(self) -> Target:
        return Target(self.name, f"127.0.0.1:{self.port}", self.settings())

    def settings(self) -> dict[str, Any]:
        return {"collection": COLLECTION}

    def start(self) -> None:
        self.port = free_port()
        self.work.mkdir(parents=True, exist_ok=True)
        log_file = (self.work / "server.log").open("ab")
        self.process = subprocess.Popen(self.command(), stdout=log_file, stderr=subprocess.STDOUT)
        end = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} server exited with {self.process.returncode} "
                                   f"(see {self.work / 'server.log'})")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > end:
                    raise RuntimeError(f"{self.name} server did not listen within {START_TIMEOUT:g} s") from None
                time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def rss(self) -> int:
        assert self.process is not None
        return rss_bytes(self.process.pid)

    def command(self) -> list[str]:
        raise NotImplementedError

    def load(self, vectors: np.ndarray) -> None:
        raise NotImplementedError

    def set_depth(self, depth: int) -> None:
        raise NotImplementedError

    def tune(self, queries: np.ndarray, exact: np.ndarray, target_recall: float, k: int) -> dict[str, Any]:
        """The smallest HNSW search depth (ef) on jointspace's ladder that reaches the recall."""
        reached = 0.0
        for depth in EF_SEARCH_LADDER:
            self.set_depth(depth)
            reached = recall_at_k(search_all(self.target, queries, k), exact)
            if reached >= target_recall:
                return {"ef_search": depth, "recall": reached}
        return {"ef_search": EF_SEARCH_LADDER[-1], "recall": reached, "target_missed": True}


def _batches(vectors: np.ndarray, size: int, description: str) -> Any:
    progress = Progress(len(vectors), description, unit="vectors")
    for start in range(0, len(vectors), size):
        yield start, vectors[start : start + size]
        progress.update(min(size, len(vectors) - start))
    progress.close()


class Milvus(Peer):
    name, module = "milvus", "milvus_lite"

    def __init__(self, work: Path) -> None:
        super().__init__(work)
        self.depth = EF_SEARCH_LADDER[0]

    def unavailable(self) -> str | None:
        return super().unavailable() or (None if importlib.util.find_spec("pymilvus") else
                                         "pymilvus is not installed (pip install 'jointspace[peers]')")

    def command(self) -> list[str]:
        return [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(self.work / "data"),
                "--port", str(self.port)]

    def _client(self) -> Any:
        from pymilvus import MilvusClient

        return MilvusClient(uri=f"http://127.0.0.1:{self.port}")

    def settings(self) -> dict[str, Any]:
        return {"collection": COLLECTION, "search_params": {"ef": self.depth}}

    def load(self, vectors: np.ndarray) -> None:
        client = self._client()
        if client.has_collection(COLLECTION):
            client.load_collection(COLLECTION)
            if int(client.get_collection_stats(COLLECTION)["row_count"]) == len(vectors):
                log(f"milvus: reusing the {len(vectors)} vectors loaded in {self.work}")
                return
            client.drop_collection(COLLECTION)
        schema = client.create_schema(auto_id=False)
        schema.add_field("id", _milvus_type("INT64"), is_primary=True)
        schema.add_field("vector", _milvus_type("FLOAT_VECTOR"), dim=vectors.shape[1])
        index = client.prepare_index_params()
        index.add_index("vector", index_type="HNSW", metric_type="IP",
                        params={"M": HNSW_NEIGHBOURS, "efConstruction": HNSW_CONSTRUCTION})
        client.create_collection(COLLECTION, schema=schema, index_params=index)
        for start, part in _batches(vectors, 10_000, "milvus: inserting"):
            client.insert(COLLECTION, [{"id": start + i, "vector": row} for i, row in enumerate(part.tolist())])
        client.flush(COLLECTION)
        client.load_collection(COLLECTION)

    def set_depth(self, depth: int) -> None:
        self.depth = depth  # a per-query search parameter: the client sends it


def _milvus_type(name: str) -> Any:
    from pymilvus import DataType

    return getattr(DataType, name)


class Chroma(Peer):
    name, module = "chroma", "chromadb"

    def command(self) -> list[str]:
        chroma = shutil.which("chroma", path=str(Path(sys.executable).parent)) or "chroma"
        return [chroma, "run", "--path", str(self.work / "data"), "--host", "127.0.0.1", "--port", str(self.port)]

    def _client(self) -> Any:
        import chromadb

        return chromadb.HttpClient(host="127.0.0.1", port=self.port)

    def load(self, vectors: np.ndarray) -> None:
        """Always a fresh load. Restarted on a collection of a million vectors it had loaded and
        answered at the target recall, chromadb 1.5.9 answered far below it at every search depth
        (why its reopened index differs was not investigated)."""
        client = self._client()
        if COLLECTION in [c.name for c in client.list_collections()]:
            client.delete_collection(COLLECTION)
        collection = client.create_collection(
            COLLECTION, embedding_function=None,
            configuration={"hnsw": {"space": "ip", "max_neighbors": HNSW_NEIGHBOURS,
                                    "ef_construction": HNSW_CONSTRUCTION}})
        size = min(client.get_max_batch_size(), 5_000)
        for start, part in _batches(vectors, size, "chroma: adding"):
            collection.add(ids=[f"v:{start + i}" for i in range(len(part))], embeddings=part)

    def set_depth(self, depth: int) -> None:
        """A collection setting in chroma: the server applies it to every later query."""
        self._client().get_collection(COLLECTION, embedding_function=None).modify(
            configuration={"hnsw": {"ef_search": depth}})


PEERS: dict[str, Callable[[Path], Peer]] = {"milvus": Milvus, "chroma": Chroma}
