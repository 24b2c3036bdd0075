"""Prometheus metrics: calls by method and status, latency, what is served, rebuild progress.

One server process is one scrape target, so the instruments live in prometheus_client's default
registry (which also carries the client's process metrics: RSS, CPU, open files). What is served
(generation, sizes) is read from the engine at scrape time, so it is right after every swap
without the lifecycle code having to report it. Rebuild code reports its progress through
`rebuild_progress(done, total)` and `rebuild_finished(outcome)`.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIServer

import grpc
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric

from jointspace.core.errors import JointspaceError
from jointspace.server.api.interceptors import Continuation, Finish, method_name, observe_calls
from jointspace.server.serving.operations import Unobserved

if TYPE_CHECKING:
    from jointspace.server.serving.engine import Engine

# From a vector Search over loopback, under a millisecond (docs/benchmarks.md, "Serving speed"),
# to a batch of long audio clips (tens of seconds).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0, 60.0)

REQUESTS = Counter("jointspace_grpc_requests", "gRPC calls finished, by method and status code.",
                   ["service", "method", "code"])
LATENCY = Histogram("jointspace_grpc_request_duration_seconds", "gRPC call duration in seconds.",
                    ["service", "method", "code"], buckets=LATENCY_BUCKETS)
IN_FLIGHT = Gauge("jointspace_grpc_requests_in_flight", "gRPC calls being served now.",
                  ["service", "method"])
REBUILD_DONE = Gauge("jointspace_rebuild_items_done", "Catalog entries the running rebuild has embedded.")
REBUILD_TOTAL = Gauge("jointspace_rebuild_items_total", "Catalog entries the running rebuild will embed (0: unknown).")
REBUILD_RATIO = Gauge("jointspace_rebuild_progress_ratio", "Fraction of the running rebuild done, 0 to 1.")
REBUILDS = Counter("jointspace_rebuilds", "Rebuilds finished, by outcome.", ["outcome"])


def rebuild_progress(done: int, total: int | None) -> None:
    """Report a rebuild's progress (`total` None or 0 when not known yet); cheap, call per batch."""
    REBUILD_DONE.set(done)
    REBUILD_TOTAL.set(total or 0)
    REBUILD_RATIO.set(min(done / total, 1.0) if total else 0.0)


def rebuild_finished(outcome: str) -> None:
    """Count a finished rebuild: outcome is e.g. "succeeded", "failed", "cancelled"."""
    REBUILDS.labels(outcome).inc()


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts and times every call from its start, so calls still waiting for their request are
    in flight too, and those cut off for it are counted with their status."""

    async def intercept_service(self, continuation: Continuation,
                                details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        if handler is None:  # an unknown method: no label for names a client made up
            return None
        service, method = method_name(details)

        def start(context: grpc.aio.ServicerContext) -> Finish:
            in_flight = IN_FLIGHT.labels(service, method)
            in_flight.inc()
            started = time.perf_counter()

            def finish(code: grpc.StatusCode) -> None:
                in_flight.dec()
                REQUESTS.labels(service, method, code.name).inc()
                LATENCY.labels(service, method, code.name).observe(time.perf_counter() - started)

            return finish

        return observe_calls(handler, start)


_GENERATION_NUMBER = re.compile(r"(\d+)$")


class IndexCollector:
    """Reads what the watched engine serves at each scrape."""

    def __init__(self) -> None:
        self.engine: Engine | None = None

    def collect(self) -> Iterator[Metric]:
        ready = GaugeMetricFamily("jointspace_ready", "1 once a model and index are loaded.")
        ready.add_metric([], 0 if self.engine is None else 1)
        yield ready
        if self.engine is None:
            return
        try:
            info = self.engine.info()
        except JointspaceError:  # nothing live right now: ready stays, the rest is absent
            return
        number = _GENERATION_NUMBER.search(info["generation"])
        yield GaugeMetricFamily("jointspace_index_generation", "Number of the live index generation.",
                                value=int(number.group(1)) if number else 0)
        size = GaugeMetricFamily("jointspace_index_size", "Entries in the live index, by modality.",
                                 labels=["modality"])
        for modality, count in sorted(info["size_by_modality"].items()):
            size.add_metric([modality], count)
        yield size
        yield GaugeMetricFamily("jointspace_index_dim", "Dimension of the vector space.", value=info["dim"])
        served = GaugeMetricFamily("jointspace_index_info", "What is served (value is always 1).",
                                   labels=["generation", "model_version", "index_type"])
        served.add_metric([info["generation"], info["model_version"], info["index_type"]], 1)
        yield served


INDEX = IndexCollector()
REGISTRY.register(INDEX)


class RebuildMetrics:
    """The rebuild gauges and counter, as the serving layer's `RebuildObserver`."""

    def progress(self, done: int, total: int | None) -> None:
        rebuild_progress(done, total)

    def finished(self, outcome: str) -> None:
        rebuild_finished(outcome)


def watch_engine(engine: Engine | None) -> None:
    """The engine whose index and rebuilds the metrics describe (one per process, like the
    registry); None stops watching the one before."""
    if INDEX.engine is not None:
        INDEX.engine.operations.observer = Unobserved()
    INDEX.engine = engine
    if engine is not None:
        engine.operations.observer = RebuildMetrics()


@dataclass
class MetricsEndpoint:
    http: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return self.http.server_port

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


def serve_metrics(host: str, port: int) -> MetricsEndpoint:
    """`/metrics` over HTTP on `host:port` (port 0 picks a free one), on a daemon thread."""
    http, thread = start_http_server(port, addr=host)
    return MetricsEndpoint(http, thread)
