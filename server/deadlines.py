"""A deadline for every unary call: the client's, capped by the server's maximum.

gRPC's default deadline is infinite (PITFALLS.md), so a client that sets none could keep a worker
thread busy for as long as its request takes. The interceptor puts the effective deadline into
`jointspace.deadline` for the handler; the work checks it between steps and stops with
DEADLINE_EXCEEDED (or CANCELLED when the client went away).
"""

from __future__ import annotations

from typing import Any, Callable

import grpc

from jointspace.deadline import Deadline, deadline_scope
from jointspace.server.interceptors import Behavior, wrap_handler


class DeadlineInterceptor(grpc.ServerInterceptor):
    def __init__(self, max_seconds: float) -> None:
        self.max_seconds = max_seconds

    def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
                          details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = continuation(details)
        if handler is None or handler.unary_unary is None:  # streams (health Watch) may last
            return handler
        return wrap_handler(handler, self._bounded)

    def _bounded(self, behavior: Behavior) -> Behavior:
        def run(request: Any, context: grpc.ServicerContext) -> Any:
            seconds = min(context.time_remaining(), self.max_seconds)
            with deadline_scope(Deadline.after(seconds, lambda: not context.is_active())):
                return behavior(request, context)

        return run
