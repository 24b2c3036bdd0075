"""Assembling and running the gRPC server: the service, health, reflection, limits, shutdown.

Health reports SERVING only once the engine is loaded, and NOT_SERVING as soon as shutdown
begins, so a load balancer stops sending traffic before in-flight calls are cut off.
"""

from __future__ import annotations

import signal
import threading
from concurrent import futures
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from jointspace.limits import Limits
from jointspace.server.engine import Engine
from jointspace.server.service import JointSpaceService
from jointspace.v1 import jointspace_pb2 as pb
from jointspace.v1 import jointspace_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["JointSpace"].full_name


@dataclass
class RunningServer:
    server: grpc.Server
    health: health.HealthServicer
    port: int
    engine: Engine

    def stop(self, grace: float = 5.0) -> None:
        """NOT_SERVING first, then stop accepting and give in-flight calls `grace` seconds."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()


def start_server(engine: Engine, host: str = "127.0.0.1", port: int = 50051,
                 workers: int = 8) -> RunningServer:
    """Start serving `engine`; port 0 picks a free port (see `RunningServer.port`)."""
    limits: Limits = engine.limits
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="jointspace-rpc"),
        options=[
            ("grpc.max_receive_message_length", limits.max_message_bytes),
            ("grpc.max_send_message_length", limits.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
    )
    pb_grpc.add_JointSpaceServicer_to_server(JointSpaceService(engine), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server,
    )
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    bound = server.add_insecure_port(address)
    if bound == 0:
        raise OSError(f"cannot listen on {address}")
    server.start()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server, health_servicer, bound, engine)


def serve_until_signal(running: RunningServer, grace: float = 5.0) -> None:
    """Block until SIGTERM or SIGINT (Ctrl-C), then shut down cleanly."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    running.stop(grace)
