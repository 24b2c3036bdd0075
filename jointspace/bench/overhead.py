"""What the server's protections cost per call: sequential Search over loopback with the bare
service (no interceptors, as before they existed), the default server (request reader, work
pool with its deadline, late-bound service) and the observed one (metrics and bearer-token auth on top).

A vector query with k = 5 keeps the model out of it, so the figure is the per-call cost of gRPC
plus what wraps the service. Rounds interleave the three servers because the development machine
is shared and its speed drifts (docs/benchmarks.md).
"""

from __future__ import annotations

import secrets
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc


def _calls_per_second(target: str, calls: int, token: str | None = None) -> float:
    from jointspace.client import Client
    from jointspace.v1 import jointspace_pb2 as pb

    with Client(target, token=token) as client:
        dim = client.info().dim
        request = pb.SearchRequest(query=pb.Query(vector=pb.Vector(values=[1.0] + [0.0] * (dim - 1))), k=5)
        for _ in range(min(calls, 200)):  # connection set up, caches warm
            client.stub.Search(request, timeout=10)
        started = time.perf_counter()
        for _ in range(calls):
            client.stub.Search(request, timeout=10)
        return calls / (time.perf_counter() - started)


def run(model: Path, index: Path, calls: int, rounds: int) -> dict[str, Any]:
    from jointspace.server.api.app import start_configured_server
    from jointspace.server.api.config import ServeConfig
    from jointspace.server.api.service import JointSpaceService
    from jointspace.server.serving.engine import Engine
    from jointspace.v1 import jointspace_pb2_grpc as pb_grpc

    engine = Engine(model, index)
    token = secrets.token_urlsafe(24)
    work = Path(tempfile.mkdtemp(prefix="jointspace-overhead-"))
    (work / "tokens.txt").write_text(f"read {token}\n")

    def bare() -> float:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        pb_grpc.add_JointSpaceServicer_to_server(JointSpaceService(engine), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        try:
            return _calls_per_second(f"127.0.0.1:{port}", calls)
        finally:
            server.stop(0)

    def configured(**settings: Any) -> Callable[[], float]:
        def measure() -> float:
            running = start_configured_server(replace(ServeConfig(), port=0, **settings), engine)
            try:
                return _calls_per_second(f"127.0.0.1:{running.port}", calls,
                                         token if "tokens_file" in settings else None)
            finally:
                running.stop(0)

        return measure

    servers = {"bare": bare, "default": configured(),
               "metrics+auth": configured(metrics_port=0, tokens_file=work / "tokens.txt")}
    rates: dict[str, list[float]] = {name: [] for name in servers}
    for _ in range(rounds):
        for name, measure in servers.items():
            rates[name].append(measure())
    medians = {name: statistics.median(values) for name, values in rates.items()}
    return {
        "command": f"jointspace bench overhead --model {model} --index {index} --calls {calls} --rounds {rounds}",
        "sequential_search_per_second": {name: round(value) for name, value in medians.items()},
        "relative_to_bare": {name: round(value / medians["bare"], 3) for name, value in medians.items()},
        "rounds": {name: [round(v) for v in values] for name, values in rates.items()},
    }
