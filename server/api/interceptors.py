"""What every server interceptor needs: replace a method handler's behaviour, refuse a call.

The server runs on grpc.aio (app.py): an interceptor sees each call on the event loop as it
starts, before any of its request has been read, and returns the handler that will serve it.
Anything that must run around the handler itself (timing, a deadline, reading the request) wraps
the handler's behaviour, an async function. These helpers keep each interceptor (auth, deadlines,
request reading, metrics, access log) down to its own rule.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import grpc

Behavior = Callable[[Any, grpc.aio.ServicerContext], Any]
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]

# handler kind ("unary_unary", ...) -> the grpc function that makes such a handler
HANDLER_FACTORIES = {
    "unary_unary": grpc.unary_unary_rpc_method_handler,
    "unary_stream": grpc.unary_stream_rpc_method_handler,
    "stream_unary": grpc.stream_unary_rpc_method_handler,
    "stream_stream": grpc.stream_stream_rpc_method_handler,
}


class MethodName(NamedTuple):
    service: str  # "jointspace.v1.JointSpace"
    method: str  # "Search"


def method_name(details: grpc.HandlerCallDetails) -> MethodName:
    service, _, method = details.method.lstrip("/").rpartition("/")
    return MethodName(service, method)


def kind_of(handler: grpc.RpcMethodHandler) -> str:
    return next(kind for kind in HANDLER_FACTORIES if getattr(handler, kind) is not None)


def wrap_handler(handler: grpc.RpcMethodHandler,
                 wrap: Callable[[Behavior], Behavior]) -> grpc.RpcMethodHandler:
    """The same kind of handler, with its behaviour replaced by `wrap(behaviour)`."""
    kind = kind_of(handler)
    return HANDLER_FACTORIES[kind](wrap(getattr(handler, kind)), handler.request_deserializer,
                                   handler.response_serializer)


def refusing_handler(handler: grpc.RpcMethodHandler, code: grpc.StatusCode,
                     message: str) -> grpc.RpcMethodHandler:
    """A handler of the same kind that answers `code` without running the method; behind the
    request reader (deadline_interceptor.py) it does not wait for the request either."""

    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(code, message)

    return wrap_handler(handler, lambda _: refuse)


def status_of_call(context: grpc.aio.ServicerContext, error: BaseException | None) -> grpc.StatusCode:
    """The status a finished call was given: the one set by abort()/set_code(), else OK; for an
    exception that was not an abort, CANCELLED if the call was cancelled (the client left, its
    deadline passed), else UNKNOWN (what gRPC answers)."""
    code = context.code()
    if code is not None:
        return code
    if error is None:
        return grpc.StatusCode.OK
    return grpc.StatusCode.CANCELLED if isinstance(error, asyncio.CancelledError) else grpc.StatusCode.UNKNOWN


Finish = Callable[[grpc.StatusCode], None]


def observe_calls(handler: grpc.RpcMethodHandler,
                  start: Callable[[grpc.aio.ServicerContext], Finish]) -> grpc.RpcMethodHandler:
    """Run `start(context)` as each call begins; the function it returns gets the call's status
    once it ends, however it ends. The behaviour must be a coroutine function (a streamed
    response written with context.write), as every handler behind the request reader is."""

    def wrap(behavior: Behavior) -> Behavior:
        async def observed(request: Any, context: grpc.aio.ServicerContext) -> Any:
            finish, error = start(context), None
            try:
                return await behavior(request, context)
            except BaseException as raised:
                error = raised
                raise
            finally:
                finish(status_of_call(context, error))

        return observed

    return wrap_handler(handler, wrap)
