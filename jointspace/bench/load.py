"""Closed-loop query load from client processes: each client sends one request, waits for the
answer, sends the next, for a fixed time.

Clients run in their own processes (spawned, so no gRPC state is inherited through fork) because
a Python client's per-call work would otherwise share one GIL and cap the rate before the server
does. All clients connect and warm up first, then start together at a barrier. Every engine is
driven through its own client library (searchers.py), with the same queries and k.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from jointspace.bench.searchers import Target, open_searcher

WARMUP_CALLS = 50  # or WARMUP_SECONDS, whichever comes first: a slow engine must not take minutes
WARMUP_SECONDS = 2.0
SETUP_TIMEOUT = 300.0


@dataclass(frozen=True)
class LoadResult:
    clients: int
    batch: int
    queries_per_second: float
    calls: int
    p50_ms: float
    p99_ms: float
    errors: int

    def as_dict(self) -> dict[str, Any]:
        return {"clients": self.clients, "batch": self.batch, "qps": round(self.queries_per_second, 1),
                "calls": self.calls, "p50_ms": round(self.p50_ms, 3), "p99_ms": round(self.p99_ms, 3),
                "errors": self.errors}


def _client(target: Target, k: int, queries: np.ndarray, batch: int, seconds: float,
            barrier: Any, results: Any) -> None:
    """One client process: connect, warm up, wait for the others, then call until time is up."""
    try:
        searcher = open_searcher(target, k)
        units = searcher.prepare(queries, batch)
        warm_until = time.perf_counter() + WARMUP_SECONDS
        for unit in units[:WARMUP_CALLS]:
            searcher.call(unit)
            if time.perf_counter() > warm_until:
                break
    except BaseException as error:  # the parent reports it; the barrier must not hang
        barrier.abort()
        results.put(("error", f"{type(error).__name__}: {error}"))
        return
    barrier.wait()
    latencies: list[float] = []
    errors = 0
    position = 0
    started = time.perf_counter()
    now = started
    while now - started < seconds:
        try:
            searcher.call(units[position % len(units)])
        except Exception:  # counted, not fatal: a benchmark reports failures, it does not hide them
            errors += 1
        after = time.perf_counter()
        latencies.append(after - now)
        now = after
        position += 1
    searcher.close()
    results.put(("ok", np.asarray(latencies), now - started, errors))


def run_load(target: Target, queries: np.ndarray, k: int, clients: int, seconds: float,
             batch: int = 1, at_start: Callable[[], None] | None = None) -> LoadResult:
    """`clients` processes in closed loops for `seconds`; each call carries `batch` queries.
    `at_start` runs as the clients start their measured calls, after their warm-up ones."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(clients + 1, timeout=SETUP_TIMEOUT)
    results = context.Queue()
    # Each client starts at a different query so that they do not move in lockstep.
    processes = [context.Process(target=_client, daemon=True,
                                 args=(target, k, np.roll(queries, -i * 97, axis=0), batch, seconds, barrier,
                                       results)) for i in range(clients)]
    for process in processes:
        process.start()
    try:
        barrier.wait()
    except Exception:
        pass  # a client failed to set up: its message follows on the queue
    else:
        if at_start is not None:
            at_start()
    reports = [results.get(timeout=SETUP_TIMEOUT + seconds) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    failed = [r[1] for r in reports if r[0] == "error"]
    if failed:
        raise RuntimeError(f"{target.kind} client could not start: {failed[0]}")
    latencies = np.concatenate([r[1] for r in reports])
    elapsed = max(r[2] for r in reports)
    return LoadResult(clients, batch, len(latencies) * batch / elapsed, len(latencies),
                      float(np.percentile(latencies, 50) * 1000), float(np.percentile(latencies, 99) * 1000),
                      sum(r[3] for r in reports))
