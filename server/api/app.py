"""Assembling and running the gRPC server: the service, health, reflection, limits, deadlines,
TLS, auth, metrics, logging, shutdown.

The server is grpc.aio on an event loop of its own thread (`event_loop()`), so that a call costs
a thread only while its method runs: a call waiting for its request, health checks and refusals
are coroutines, and a client that opens many calls and never sends their requests cannot take the
workers from everyone else (deadline_interceptor.py cuts such calls off). The service's methods
are plain functions; `WorkPool` runs them on `config.workers` threads. Starting, attaching and
stopping stay blocking calls for the process that runs the server (the CLI, tests, the demo,
benchmarks).

Health reports SERVING only once an engine (model and index) is attached, and NOT_SERVING as soon
as shutdown begins, so a load balancer stops sending traffic before in-flight calls are cut off.
`run_server(config)` listens first and loads second: loading a model takes seconds, and a
probe should meet a live process that says NOT_SERVING, not a refused connection. Until then the
JointSpace methods answer FAILED_PRECONDITION.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import signal
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any, NoReturn, TypeVar

import grpc
from google.longrunning import operations_pb2
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor
from grpc._cython import cygrpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from jointspace.core.deadline import Deadline, deadline_scope
from jointspace.core.tls import server_credentials
from jointspace.encoders.impl.decode_pool import start_shared_pool, stop_shared_pool
from jointspace.server.api.access_log import AccessLogInterceptor
from jointspace.server.api.auth import AuthInterceptor, Tokens
from jointspace.server.api.config import ServeConfig
from jointspace.server.api.deadline_interceptor import RequestReadInterceptor, work_deadline
from jointspace.server.api.prometheus import MetricsEndpoint, MetricsInterceptor, serve_metrics, watch_engine
from jointspace.server.api.service import JointSpaceService
from jointspace.server.api.status_details import Trailers, rich_status, trailers
from jointspace.server.index.data_dir import DataDir
from jointspace.server.index.writer_lock import hold_writer_lock
from jointspace.server.serving.engine import Engine
from jointspace.server.serving.follower import Follower
from jointspace.v1 import jointspace_pb2 as pb

logger = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["JointSpace"].full_name
# The services the JointSpace service object answers: its own, and the standard one that follows
# its long-running operations (AIP-151).
SERVICES = (pb.DESCRIPTOR.services_by_name["JointSpace"], operations_pb2.DESCRIPTOR.services_by_name["Operations"])
NOT_LOADED = "the server is still loading its model and index; retry once health says SERVING"
T = TypeVar("T")

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def event_loop() -> asyncio.AbstractEventLoop:
    """The event loop every server of this process runs on, on a daemon thread started on first
    use: one for all, so that grpc.aio's process-wide poller serves one loop for good."""
    global _loop
    with _loop_lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="jointspace-grpc", daemon=True).start()
            asyncio.run_coroutine_threadsafe(_hold_grpc_aio(), loop).result()
            _loop = loop
        return _loop


async def _hold_grpc_aio() -> None:
    """Initialise grpc.aio for this loop once and for all. It counts its users (servers, calls)
    and tears its poller down whenever the count drops to 0, from whichever thread drops the last
    one, racing with the loop that polls; here servers come and go (tests), the loop stays."""
    cygrpc.init_grpc_aio()


def on_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` on the servers' event loop and wait for its result."""
    return asyncio.run_coroutine_threadsafe(coroutine, event_loop()).result()


class CallAborted(Exception):
    """A service method's abort, on its way from the worker thread to the event loop."""

    def __init__(self, code: grpc.StatusCode, details: str, trailing_metadata: Trailers = ()) -> None:
        super().__init__(code, details)
        self.code, self.details, self.trailing_metadata = code, details, trailing_metadata


class ThreadContext:
    """The context a service method gets on its worker thread: `abort` ends the method, and the
    event loop sends the status (grpc.aio's context belongs to the loop) with its details."""

    def abort(self, code: grpc.StatusCode, details: str, trailing_metadata: Trailers = ()) -> NoReturn:
        raise CallAborted(code, details, trailing_metadata)


class WorkPool:
    """Runs the service's methods on `workers` threads of its own. Only calls whose request has
    arrived get here; beyond `limit` of them waiting or running, a call gets RESOURCE_EXHAUSTED
    instead of a place in a queue without bound. A job goes to the threads through one queue and
    its result comes back with one call_soon_threadsafe, which costs less per call than
    run_in_executor's chained futures."""

    def __init__(self, workers: int, limit: int, max_deadline_seconds: float) -> None:
        self.limit = limit
        self.max_deadline_seconds = max_deadline_seconds
        self.admitted = 0  # only touched on the event loop
        self.jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self.threads = [threading.Thread(target=self._work, name=f"jointspace-rpc-{number}", daemon=True)
                        for number in range(workers)]
        for thread in self.threads:
            thread.start()

    async def run(self, method: Callable[[Any, Any], Any], request: Any, context: grpc.aio.ServicerContext) -> Any:
        """`method(request, context)` on a worker thread, under the call's deadline. A call
        cancelled before a worker takes it never starts; one cancelled while it runs stops at its
        next deadline check (jointspace.core.deadline)."""
        if self.admitted >= self.limit:
            busy = f"the server is at its limit of {self.limit} calls at once; retry later"
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, busy,
                                trailers(rich_status(grpc.StatusCode.RESOURCE_EXHAUSTED, busy, "SERVER_BUSY",
                                                     retry=True)))
        self.admitted += 1
        try:
            result = asyncio.get_running_loop().create_future()
            # The worker thread reads result.cancelled() (a flag) to learn that the call is over.
            deadline = work_deadline(context, self.max_deadline_seconds, result.cancelled)
            self.jobs.put(Job(result, deadline, method, request))
            return await result
        except CallAborted as aborted:
            await context.abort(aborted.code, aborted.details, aborted.trailing_metadata)
        finally:
            self.admitted -= 1

    def close(self) -> None:
        """Let the threads finish the jobs they run (cancelled ones stop at their next deadline
        check), then end them."""
        for _ in self.threads:
            self.jobs.put(None)
        for thread in self.threads:
            thread.join()

    def _work(self) -> None:
        while (job := self.jobs.get()) is not None:
            if not job.result.cancelled():
                job.run()


@dataclass
class Job:
    result: asyncio.Future[Any]  # of the event loop, settled from the worker thread
    deadline: Deadline
    method: Callable[[Any, Any], Any]
    request: Any

    def run(self) -> None:
        loop = self.result.get_loop()
        try:
            with deadline_scope(self.deadline):
                value = self.method(self.request, ThreadContext())
        except BaseException as error:  # an abort, or a bug: the call's coroutine raises it
            loop.call_soon_threadsafe(_settle, self.result, None, error)
        else:
            loop.call_soon_threadsafe(_settle, self.result, value, None)


def _settle(result: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if result.cancelled():  # the call ended while its job ran
        return
    if error is None:
        result.set_result(value)
    else:
        result.set_exception(error)


class ServiceSlot:
    """The JointSpace and google.longrunning.Operations methods, bound late: registered before
    the server starts (gRPC needs that), answered by the service once an engine is attached.
    Built from the services' descriptors, so a (unary) method added to the API is routed without
    touching this code."""

    def __init__(self, pool: WorkPool) -> None:
        self.pool = pool
        self.service: Any = None  # a JointSpaceService, or an object with the same methods

    def generic_handlers(self) -> tuple[grpc.GenericRpcHandler, ...]:
        return tuple(
            grpc.method_handlers_generic_handler(
                descriptor.full_name, {method.name: self._handler(method) for method in descriptor.methods})
            for descriptor in SERVICES)

    def _handler(self, method: MethodDescriptor) -> grpc.RpcMethodHandler:
        if method.client_streaming or method.server_streaming:
            raise NotImplementedError(f"{method.name}: streaming methods are not routed to worker threads")

        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            service = self.service
            if service is None:
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION, NOT_LOADED)
            return await self.pool.run(getattr(service, method.name), request, context)

        return grpc.unary_unary_rpc_method_handler(
            call,
            request_deserializer=message_factory.GetMessageClass(method.input_type).FromString,
            response_serializer=message_factory.GetMessageClass(method.output_type).SerializeToString,
        )


@dataclass
class RunningServer:
    server: grpc.aio.Server
    health: health_aio.HealthServicer
    port: int
    slot: ServiceSlot
    metrics: MetricsEndpoint | None = None

    @property
    def engine(self) -> Engine:
        if self.slot.service is None:
            raise RuntimeError("no engine attached yet")
        return self.slot.service.engine

    def attach(self, engine: Engine) -> None:
        """Answer with `engine` from now on; health turns SERVING (unless shutting down)."""
        if self.metrics is not None:
            watch_engine(engine)
        self.answer_with(JointSpaceService(engine))

    def answer_with(self, service: Any) -> None:
        """Route the JointSpace methods to `service` (the engine's, or the serving benchmark's
        no-op one, which measures this same stack without the work); health turns SERVING."""
        self.slot.service = service
        on_loop(_set_health(self.health, health_pb2.HealthCheckResponse.SERVING))

    def stop(self, grace: float = 5.0) -> None:
        """NOT_SERVING first, then stop accepting and give in-flight calls `grace` seconds."""
        on_loop(self.health.enter_graceful_shutdown())
        on_loop(self.server.stop(grace))
        self.slot.pool.close()
        if self.metrics is not None:
            self.metrics.close()
            watch_engine(None)

    def cancel_calls(self) -> None:
        """Cancel every call in flight now (a second stop signal); returns without waiting."""
        asyncio.run_coroutine_threadsafe(self.server.stop(None), event_loop())


async def _set_health(servicer: health_aio.HealthServicer, status: int) -> None:
    for name in ("", SERVICE_NAME):
        await servicer.set(name, status)


def _interceptors(config: ServeConfig) -> list[grpc.aio.ServerInterceptor]:
    """Outermost first: metrics and the access log see every call, refused ones included; auth
    refuses before the request is read; the request reader reads and decodes it in time."""
    chain: list[grpc.aio.ServerInterceptor] = []
    if config.metrics_port is not None:
        chain.append(MetricsInterceptor())
    if config.access_log:
        chain.append(AccessLogInterceptor())
    if config.tokens_file is not None:
        chain.append(AuthInterceptor(Tokens.read(config.tokens_file)))
    chain.append(RequestReadInterceptor(config.request_read_timeout_seconds))
    return chain


def _listen(server: grpc.aio.Server, config: ServeConfig, credentials: grpc.ServerCredentials | None) -> int:
    host = config.host
    address = f"[{host}]:{config.port}" if ":" in host else f"{host}:{config.port}"
    try:
        if credentials is not None:
            return server.add_secure_port(address, credentials)
        return server.add_insecure_port(address)
    except RuntimeError:  # grpc's "failed to bind"
        raise OSError(f"cannot listen on {address}") from None


async def _build(config: ServeConfig, slot: ServiceSlot,
                 credentials: grpc.ServerCredentials | None) -> tuple[grpc.aio.Server, health_aio.HealthServicer, int]:
    """Build and bind the server; on the event loop, which grpc.aio ties it to."""
    limits = config.limits
    server = grpc.aio.server(
        interceptors=_interceptors(config),
        options=[
            ("grpc.max_receive_message_length", limits.max_message_bytes),
            ("grpc.max_send_message_length", limits.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
    )
    server.add_generic_rpc_handlers(slot.generic_handlers())
    health_servicer = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*(s.full_name for s in SERVICES), health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
         reflection.SERVICE_NAME),
        server,
    )
    bound = _listen(server, config, credentials)
    await _set_health(health_servicer, health_pb2.HealthCheckResponse.NOT_SERVING)
    return server, health_servicer, bound


def start_configured_server(config: ServeConfig, engine: Engine | None = None) -> RunningServer:
    """Listen as `config` says (port 0 picks a free port, see `RunningServer.port`); serve
    `engine` now, or from `RunningServer.attach` once it is loaded."""
    credentials = None
    if config.tls_cert is not None and config.tls_key is not None:
        credentials = server_credentials(config.tls_cert, config.tls_key, config.tls_client_ca)
    slot = ServiceSlot(WorkPool(config.workers, config.max_concurrent_rpcs, config.max_deadline_seconds))
    try:
        server, health_servicer, bound = on_loop(_build(config, slot, credentials))
    except BaseException:
        slot.pool.close()
        raise
    start_shared_pool()  # audio is decoded in worker processes (decode_pool.py), warmed from now
    on_loop(server.start())
    metrics = serve_metrics(config.metrics_host, config.metrics_port) if config.metrics_port is not None else None
    running = RunningServer(server, health_servicer, bound, slot, metrics)
    if engine is not None:
        running.attach(engine)
    return running


def start_server(engine: Engine, host: str = "127.0.0.1", port: int = 50051) -> RunningServer:
    """Serve `engine` with the default settings and its limits (tests, the demo, benchmarks)."""
    config = replace(ServeConfig(), host=host, port=port, limits=engine.limits)
    return start_configured_server(config, engine)


def load_engine(config: ServeConfig) -> Engine:
    """The model and index `config` names, refused if they lie outside its data directory; a
    writer first locks the index directory against a second writer (writer_lock.py)."""
    if config.model is None or config.index is None:
        config.check()  # refuses the missing one
        raise AssertionError("ServeConfig.check passed without a model and an index")
    data_dir = DataDir(config.data_dir)
    reader = config.role == "reader"
    if not reader:
        hold_writer_lock(data_dir.confine(config.index, "index"))
    return Engine(config.model, config.index, config.limits, data_dir=data_dir,
                  keep_generations=config.keep_generations, encode_batching=config.encode_batching == "on",
                  read_only=reader)


class StopSignal:
    """SIGTERM or SIGINT (Ctrl-C) asks for a graceful stop; a second one stops at once."""

    def __init__(self, running: RunningServer | None = None) -> None:
        self.requested = threading.Event()
        self.running = running
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.requested.is_set() and self.running is not None:
            logger.warning("second stop signal: cancelling in-flight calls")
            self.running.cancel_calls()
        self.requested.set()
def serve_until_signal(running: RunningServer, grace: float = 5.0) -> None:
    """Block until SIGTERM or SIGINT (Ctrl-C), then shut down cleanly."""
    StopSignal(running).requested.wait()
    running.stop(grace)


def run_server(config: ServeConfig) -> None:
    """Listen, load, serve until SIGTERM or SIGINT, then shut down within the grace period."""
    stop = StopSignal()
    running = stop.running = start_configured_server(config)
    scheme = "TLS" if config.tls_cert else "plaintext"
    logger.info("listening on %s:%d (%s%s); loading the model and index", config.host, running.port, scheme,
                ", mutual TLS" if config.tls_client_ca else "", extra={"port": running.port})
    if config.tokens_file is None and config.host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("listening beyond loopback without --tokens-file: anyone who reaches the port may call")
    if config.tokens_file is not None and config.tls_cert is None:
        logger.warning("bearer tokens without TLS travel in clear text; use --tls-cert/--tls-key off loopback")
    if running.metrics is not None:
        logger.info("metrics on http://%s:%d/metrics", config.metrics_host, running.metrics.port,
                    extra={"metrics_port": running.metrics.port})
    try:
        engine = load_engine(config)
    except BaseException:
        running.stop(0)
        stop_shared_pool()
        raise
    if not stop.requested.is_set():  # a signal during loading: straight to the shutdown
        running.attach(engine)
    follower = Follower(engine, config.follow_interval_seconds).start() if engine.read_only else None
    info = engine.info()
    logger.info("serving %s (%d entries, dim %d) on %s:%d as the %s; Ctrl-C to stop", info["generation"],
                info["size"], info["dim"], config.host, running.port,
                "read replica" if follower else "writer", extra={"generation": info["generation"]})
    stop.requested.wait()
    logger.info("stopping: NOT_SERVING, finishing in-flight calls (up to %g s)", config.grace_seconds)
    if follower is not None:
        follower.stop()
    running.stop(config.grace_seconds)
    stop_shared_pool()
    logger.info("stopped")
