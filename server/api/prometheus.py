"""Prometheus metrics: calls by method and status, latency, query stages, what is served,
rebuild progress.

Every call is counted twice: under the project's own names (`jointspace_grpc_*`, labels
service/method/code) and under the names and labels of go-grpc-prometheus, which stock gRPC
dashboards and alerts query (`grpc_server_started_total`, `grpc_server_handled_total`,
`grpc_server_handling_seconds`, `grpc_server_msg_received_total`, `grpc_server_msg_sent_total`;
labels grpc_type, grpc_service, grpc_method, grpc_code, the code spelt as Go spells it:
`InvalidArgument`, `Canceled`).

One server process is one scrape target, so the instruments live in prometheus_client's default
registry (which also carries the client's process metrics: RSS, CPU, open files). What is served
(generation, sizes) is read from the engine at scrape time, so it is right after every swap
without the lifecycle code having to report it. Rebuild code reports its progress through
`rebuild_progress(done, total)` and `rebuild_finished(outcome)`.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIServer

import grpc
from google.protobuf import descriptor_pool
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric

from jointspace.core.errors import JointspaceError
from jointspace.core.stages import observe_stages
from jointspace.server.api.interceptors import (
    Behavior,
    Continuation,
    Finish,
    MethodName,
    method_name,
    observe_calls,
    wrap_handler,
)
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

# go-grpc-prometheus's server metrics (its histogram is the optional one: on here).
STOCK_LABELS = ["grpc_type", "grpc_service", "grpc_method"]
STARTED = Counter("grpc_server_started_total", "Total number of RPCs started on the server.", STOCK_LABELS)
HANDLED = Counter("grpc_server_handled_total",
                  "Total number of RPCs completed on the server, regardless of success or failure.",
                  [*STOCK_LABELS, "grpc_code"])
HANDLING = Histogram("grpc_server_handling_seconds",
                     "Histogram of response latency (seconds) of gRPC that had been application-level "
                     "handled by the server.", STOCK_LABELS, buckets=LATENCY_BUCKETS)
RECEIVED = Counter("grpc_server_msg_received_total", "Total number of RPC stream messages received on the server.",
                   STOCK_LABELS)
SENT = Counter("grpc_server_msg_sent_total", "Total number of gRPC stream messages sent by the server.",
               STOCK_LABELS)

# Each step of a query inside the server (jointspace.core.stages): what `bench queries` reads to
# split a call's latency into decoding, encoding, searching and the rest.
STAGE_SECONDS = Histogram("jointspace_query_stage_seconds", "Time in one step of a query, by stage.", ["stage"],
                          buckets=LATENCY_BUCKETS)

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


@functools.lru_cache(maxsize=256)  # per served method; unknown methods never get here
def grpc_type(name: MethodName) -> str:
    """go-grpc-prometheus's grpc_type of a method, from its protobuf descriptor: the handler an
    interceptor sees cannot tell, since the request reader makes every handler request-streaming
    (deadline_interceptor.py). A method the descriptor pool does not know counts as unary."""
    try:
        method = descriptor_pool.Default().FindMethodByName(f"{name.service}.{name.method}")
    except KeyError:
        return "unary"
    return {(False, False): "unary", (True, False): "client_stream", (False, True): "server_stream",
            (True, True): "bidi_stream"}[(method.client_streaming, method.server_streaming)]


def go_code(code: grpc.StatusCode) -> str:
    """A status code as Go's codes.Code.String() spells it, the grpc_code values dashboards match."""
    if code is grpc.StatusCode.CANCELLED:
        return "Canceled"
    return "OK" if code is grpc.StatusCode.OK else code.name.title().replace("_", "")


class _CountingContext:
    """The call's context, counting the messages read from and written to the client; every
    other attribute is the real context's."""

    def __init__(self, context: grpc.aio.ServicerContext, received: Any, sent: Any) -> None:
        self._context, self._received, self._sent = context, received, sent

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    async def read(self) -> Any:
        message = await self._context.read()
        if message is not grpc.aio.EOF:
            self._received.inc()
        return message

    async def write(self, message: Any) -> None:
        await self._context.write(message)
        self._sent.inc()


def _counting_messages(handler: grpc.RpcMethodHandler, labels: tuple[str, str, str]) -> grpc.RpcMethodHandler:
    """The handler, counting its messages: reads and writes through the context, and a unary
    response when the behaviour returns one."""
    received, sent = RECEIVED.labels(*labels), SENT.labels(*labels)
    unary_response = not handler.response_streaming

    def wrap(behavior: Behavior) -> Behavior:
        async def counted(request: Any, context: grpc.aio.ServicerContext) -> Any:
            response = await behavior(request, _CountingContext(context, received, sent))
            if unary_response and response is not None:
                sent.inc()
            return response

        return counted

    return wrap_handler(handler, wrap)


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts and times every call from its start, so calls still waiting for their request are
    in flight too, and those cut off for it are counted with their status."""

    async def intercept_service(self, continuation: Continuation,
                                details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        if handler is None:  # an unknown method: no label for names a client made up
            return None
        name = method_name(details)
        service, method = name
        stock = (grpc_type(name), service, method)

        def start(context: grpc.aio.ServicerContext) -> Finish:
            in_flight = IN_FLIGHT.labels(service, method)
            in_flight.inc()
            STARTED.labels(*stock).inc()
            started = time.perf_counter()

            def finish(code: grpc.StatusCode) -> None:
                seconds = time.perf_counter() - started
                in_flight.dec()
                REQUESTS.labels(service, method, code.name).inc()
                LATENCY.labels(service, method, code.name).observe(seconds)
                HANDLED.labels(*stock, go_code(code)).inc()
                HANDLING.labels(*stock).observe(seconds)

            return finish

        return observe_calls(_counting_messages(handler, stock), start)


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
    observe_stages(_observe_stage)
    return MetricsEndpoint(http, thread)


def _observe_stage(stage: str, seconds: float) -> None:
    STAGE_SECONDS.labels(stage).observe(seconds)
