"""Assembling and running the gRPC server: the service, health, reflection, limits, deadlines,
TLS, auth, metrics, logging, shutdown.

Health reports SERVING only once an engine (model and index) is attached, and NOT_SERVING as soon
as shutdown begins, so a load balancer stops sending traffic before in-flight calls are cut off.
`run_server(config)` listens first and loads second: loading a model takes seconds, and a
probe should meet a live process that says NOT_SERVING, not a refused connection. Until then the
JointSpace methods answer FAILED_PRECONDITION.
"""

from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures
from dataclasses import dataclass, replace
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from jointspace.config import ServeConfig
from jointspace.encoders.decode_pool import start_shared_pool, stop_shared_pool
from jointspace.server.access_log import AccessLogInterceptor
from jointspace.server.auth import AuthInterceptor, Tokens
from jointspace.server.datadir import DataDir
from jointspace.server.deadlines import DeadlineInterceptor
from jointspace.server.engine import Engine
from jointspace.server.interceptors import HANDLER_FACTORIES
from jointspace.server.metrics import MetricsEndpoint, MetricsInterceptor, serve_metrics, watch_engine
from jointspace.server.service import JointSpaceService
from jointspace.tls import server_credentials
from jointspace.v1 import jointspace_pb2 as pb

logger = logging.getLogger("jointspace.server")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["JointSpace"].full_name
NOT_LOADED = "the server is still loading its model and index; retry once health says SERVING"


class ServiceSlot:
    """The JointSpace methods, bound late: registered before the server starts (gRPC needs
    that), answered by the service once an engine is attached. Built from the proto's service
    descriptor, so a method added to the API is routed without touching this code."""

    def __init__(self) -> None:
        self.service: Any = None  # a JointSpaceService, or an object with the same methods

    def generic_handler(self) -> grpc.GenericRpcHandler:
        descriptor = pb.DESCRIPTOR.services_by_name["JointSpace"]
        return grpc.method_handlers_generic_handler(
            descriptor.full_name, {method.name: self._handler(method) for method in descriptor.methods})

    def _handler(self, method: MethodDescriptor) -> grpc.RpcMethodHandler:
        def call(request: Any, context: grpc.ServicerContext) -> Any:
            service = self.service
            if service is None:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, NOT_LOADED)
            return getattr(service, method.name)(request, context)

        kind = f"{'stream' if method.client_streaming else 'unary'}_{'stream' if method.server_streaming else 'unary'}"
        return HANDLER_FACTORIES[kind](
            call,
            request_deserializer=message_factory.GetMessageClass(method.input_type).FromString,
            response_serializer=message_factory.GetMessageClass(method.output_type).SerializeToString,
        )


@dataclass
class RunningServer:
    server: grpc.Server
    health: health.HealthServicer
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
        for name in ("", SERVICE_NAME):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    def stop(self, grace: float = 5.0) -> None:
        """NOT_SERVING first, then stop accepting and give in-flight calls `grace` seconds."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
        if self.metrics is not None:
            self.metrics.close()
            watch_engine(None)


def _interceptors(config: ServeConfig) -> list[grpc.ServerInterceptor]:
    """Outermost first: metrics and the access log see every call, refused ones included."""
    chain: list[grpc.ServerInterceptor] = []
    if config.metrics_port is not None:
        chain.append(MetricsInterceptor())
    if config.access_log:
        chain.append(AccessLogInterceptor())
    if config.tokens_file is not None:
        chain.append(AuthInterceptor(Tokens.read(config.tokens_file)))
    chain.append(DeadlineInterceptor(config.max_deadline_seconds))
    return chain


def start_configured_server(config: ServeConfig, engine: Engine | None = None) -> RunningServer:
    """Listen as `config` says (port 0 picks a free port, see `RunningServer.port`); serve
    `engine` now, or from `RunningServer.attach` once it is loaded."""
    limits = config.limits
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="jointspace-rpc"),
        interceptors=_interceptors(config),
        options=[
            ("grpc.max_receive_message_length", limits.max_message_bytes),
            ("grpc.max_send_message_length", limits.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
        maximum_concurrent_rpcs=config.max_concurrent_rpcs,
    )
    slot = ServiceSlot()
    server.add_generic_rpc_handlers((slot.generic_handler(),))
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server,
    )
    host = config.host
    address = f"[{host}]:{config.port}" if ":" in host else f"{host}:{config.port}"
    if config.tls_cert is not None and config.tls_key is not None:
        bound = server.add_secure_port(
            address, server_credentials(config.tls_cert, config.tls_key, config.tls_client_ca))
    else:
        bound = server.add_insecure_port(address)
    if bound == 0:
        raise OSError(f"cannot listen on {address}")
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    start_shared_pool()  # audio is decoded in worker processes (decode_pool.py), warmed from now
    server.start()
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
    """The model and index `config` names, refused if they lie outside its data directory."""
    return Engine(config.model, config.index, config.limits, data_dir=DataDir(config.data_dir),
                  keep_generations=config.keep_generations)


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
            self.running.server.stop(0)
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
    info = engine.info()
    logger.info("serving %s (%d entries, dim %d) on %s:%d; Ctrl-C to stop", info["generation"], info["size"],
                info["dim"], config.host, running.port, extra={"generation": info["generation"]})
    stop.requested.wait()
    logger.info("stopping: NOT_SERVING, finishing in-flight calls (up to %g s)", config.grace_seconds)
    running.stop(config.grace_seconds)
    stop_shared_pool()
    logger.info("stopped")
