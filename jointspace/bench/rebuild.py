"""A rebuild and hot swap under query load, through a real server process.

A catalog of precomputed vectors shaped like embeddings (clustered, data/vectors.py) at the
model's dimension is built once with `jointspace index build` (the local build time) and served
by `jointspace serve` in a child process (so that the client loop does not share the server's
GIL). The server then rebuilds from the same catalog with `RebuildIndex` twice: once idle (the
time of a rebuild and swap, per phase), once while one client loop searches without a pause. The
second gives the failed queries (the target is none) and the latency percentiles before the
rebuild, during it, around the swap (from the moment the new generation is placed and loading
begins to one second after the operation is done) and after.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from jointspace.bench.serve_process import ServeProcess
from jointspace.data.vectors import clustered_vectors, write_vector_catalog
from jointspace.encoders.manifest import read_manifest

AFTER_SECONDS = 5.0
SWAP_MARGIN = 1.0


class QueryLoop:
    """Sequential vector searches (k = 10) over loopback: (start time, seconds, ok) per call."""

    def __init__(self, target: str, queries: np.ndarray) -> None:
        self.target, self.queries = target, queries
        self.calls: list[tuple[float, float, bool]] = []
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import grpc

        from jointspace.client import Client, make_query
        from jointspace.v1 import jointspace_pb2 as pb

        requests = [pb.SearchRequest(query=make_query(vector=q), k=10) for q in self.queries]
        with Client(self.target, timeout=30) as client:
            position = 0
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    client.stub.Search(requests[position % len(requests)], timeout=30)
                    ok = True
                except grpc.RpcError as error:
                    ok = False
                    self.errors.append(f"{error.code().name}: {error.details()}")
                self.calls.append((started, time.monotonic() - started, ok))
                position += 1

    def window(self, start: float, end: float) -> dict[str, Any]:
        chosen = [(s, ok) for t, s, ok in self.calls if start <= t < end]
        latencies = np.asarray([s for s, ok in chosen if ok]) * 1000
        if not len(latencies):
            return {"queries": len(chosen), "failed": len(chosen)}
        return {"queries": len(chosen), "failed": sum(not ok for _, ok in chosen),
                "p50_ms": round(float(np.percentile(latencies, 50)), 2),
                "p99_ms": round(float(np.percentile(latencies, 99)), 2),
                "max_ms": round(float(latencies.max()), 2)}


def run(model: Path, rows: int, seconds: float, index: str, work: Path | None, seed: int = 0) -> dict[str, Any]:
    """`work` keeps the catalog and the index; without it they go to a temporary folder."""
    if work is None:
        with tempfile.TemporaryDirectory(prefix="jointspace-bench-rebuild-") as temporary:
            return run(model, rows, seconds, index, Path(temporary), seed)
    return _measure(model, rows, seconds, index, Path(work), seed)


def _measure(model: Path, rows: int, seconds: float, index: str, work: Path, seed: int) -> dict[str, Any]:
    from jointspace.client import Client

    work.mkdir(parents=True, exist_ok=True)
    dim = read_manifest(model).dim
    catalog = work / "catalog.jsonl"
    vectors = clustered_vectors(rows, dim, seed)
    write_vector_catalog(catalog, vectors)
    rng = np.random.default_rng(seed + 1)
    queries = vectors[rng.choice(rows, 1000)] + rng.normal(scale=0.05, size=(1000, dim)).astype(np.float32)

    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "jointspace.cli", "index", "build", "--model", str(model), str(catalog),
                    "--out", str(work / "index"), "--index", index], check=True, capture_output=True)
    build_seconds = time.monotonic() - started

    server = ServeProcess(["--model", str(model), "--index", str(work / "index"), "--port", "0",
                           "--log-format", "json"])
    try:
        target = f"127.0.0.1:{server.wait_for('listening on')['port']}"
        with Client(target, timeout=60) as client:
            client.wait_ready(timeout=600)
            idle = _timed_rebuild(client, catalog, index)
            loop = QueryLoop(target, queries)
            loop.thread.start()
            time.sleep(seconds)
            loaded = _timed_rebuild(client, catalog, index)
            time.sleep(AFTER_SECONDS)
            loop.stop.set()
            loop.thread.join()
    finally:
        server.process.terminate()
        server.process.wait(timeout=60)
    rebuild_started, rebuild_done = loaded["started"], loaded["done"]
    swap_start = loaded["phases"].get("placed", rebuild_done)
    return {
        "rows": rows, "dim": dim, "index": index, "catalog_mb": round(catalog.stat().st_size / 2**20, 1),
        "local_build_seconds": round(build_seconds, 1),
        "rebuild_and_swap_seconds": idle["seconds"], "phase_seconds": idle["phase_seconds"],
        "under_load": {"rebuild_and_swap_seconds": loaded["seconds"], "phase_seconds": loaded["phase_seconds"]},
        "queries": {
            "before": loop.window(rebuild_started - seconds, rebuild_started),
            "during_rebuild": loop.window(rebuild_started, rebuild_done),
            "around_swap": loop.window(swap_start, rebuild_done + SWAP_MARGIN),
            "after": loop.window(rebuild_done + SWAP_MARGIN, rebuild_done + AFTER_SECONDS),
        },
        "failed_queries": len(loop.errors), "first_errors": loop.errors[:3],
    }


def _timed_rebuild(client: Any, catalog: Path, index: str) -> dict[str, Any]:
    """RebuildIndex polled to its end: start and end (time.monotonic), seconds, seconds per phase
    (as seen by polling every 0.1 s, so phases shorter than that may not show)."""
    started = time.monotonic()
    operation = client.rebuild([catalog], index=index)
    phases: dict[str, float] = {}
    while not operation.done:
        phases.setdefault(operation.progress.phase, time.monotonic())
        time.sleep(0.1)
        operation = client.operation(operation.name)
    done = time.monotonic()
    if not operation.generation:
        raise RuntimeError(f"the rebuild did not succeed: {operation.error.message}")
    order = sorted(phases, key=phases.__getitem__)
    return {"started": started, "done": done, "phases": phases, "seconds": round(done - started, 1),
            "phase_seconds": {p: round((phases[n] if n else done) - phases[p], 1)
                              for p, n in zip(order, [*order[1:], None])}}
