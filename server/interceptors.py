"""What every server interceptor needs: replace a method handler's behaviour, refuse a call.

A sync `grpc.ServerInterceptor` sees a call on gRPC's polling thread, before the handler runs on
a worker thread; anything that must run around the handler itself (timing, a deadline) has to
wrap the handler's behaviour. These helpers keep each interceptor (auth, deadlines, metrics,
readiness) down to its own rule, and small enough to port to `grpc.aio`.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import grpc

Behavior = Callable[[Any, grpc.ServicerContext], Any]

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
    """A handler of the same kind that answers `code` without running the method."""

    def refuse(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(code, message)

    return wrap_handler(handler, lambda _: refuse)


def status_of_call(context: grpc.ServicerContext, failed: bool) -> grpc.StatusCode:
    """The status a finished call was given: the one set by abort()/set_code(), else OK; for an
    exception that was not an abort, CANCELLED if the client left, else UNKNOWN (what gRPC
    answers)."""
    code = context.code()
    if code is not None:
        return code
    if not failed:
        return grpc.StatusCode.OK
    return grpc.StatusCode.UNKNOWN if context.is_active() else grpc.StatusCode.CANCELLED


Finish = Callable[[grpc.StatusCode], None]


def observe_calls(handler: grpc.RpcMethodHandler,
                  start: Callable[[grpc.ServicerContext], Finish]) -> grpc.RpcMethodHandler:
    """Run `start(context)` as each call begins; the function it returns gets the call's status
    once it ends, however it ends (for a streamed response: when the stream is over)."""
    streaming = handler.unary_stream is not None or handler.stream_stream is not None

    def wrap(behavior: Behavior) -> Behavior:
        def unary(request: Any, context: grpc.ServicerContext) -> Any:
            finish, failed = start(context), True
            try:
                response = behavior(request, context)
                failed = False
                return response
            finally:
                finish(status_of_call(context, failed))

        def stream(request: Any, context: grpc.ServicerContext) -> Any:
            finish, failed = start(context), True
            try:
                yield from behavior(request, context)
                failed = False
            finally:
                finish(status_of_call(context, failed))

        return stream if streaming else unary

    return wrap_handler(handler, wrap)
