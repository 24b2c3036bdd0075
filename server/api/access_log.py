"""One log record per finished call: method, status, duration, peer.

The record's fields travel as `extra`, so with `--log-format json` each call is one JSON object a
log pipeline can filter by method or status without parsing text.
"""

from __future__ import annotations

import logging
import time

import grpc

from jointspace.server.api.interceptors import Continuation, Finish, method_name, observe_calls

# A fixed name rather than __name__: the access records are a stream of their own, which log
# pipelines route by this name (the JSON "logger" field; docs/guide.md, "Logs").
logger = logging.getLogger("jointspace.access")


class AccessLogInterceptor(grpc.aio.ServerInterceptor):
    async def intercept_service(self, continuation: Continuation,
                                details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        if handler is None:
            return None
        name = method_name(details)

        def start(context: grpc.aio.ServicerContext) -> Finish:
            started, peer = time.perf_counter(), context.peer()

            def finish(code: grpc.StatusCode) -> None:
                milliseconds = round((time.perf_counter() - started) * 1000, 3)
                logger.info("%s/%s %s %.1f ms", name.service, name.method, code.name, milliseconds,
                            extra={"service": name.service, "method": name.method, "code": code.name,
                                   "duration_ms": milliseconds, "peer": peer})

            return finish

        return observe_calls(handler, start)
