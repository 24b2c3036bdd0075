"""Time limits on a call: its request must arrive in time, and its work must end in time.

A client that opens calls and never sends their requests (or sends part of one) must not be able
to pile them up: every request message a call waits for has to arrive within the server's
request-read timeout, or the call ends with DEADLINE_EXCEEDED. The request is read and decoded
here, before the method runs, so a body that is not the method's message is INVALID_ARGUMENT.

gRPC's default deadline is infinite (a call without one never times out), so a client that sets
none could keep a worker thread busy for as long as its request takes. `work_deadline` is the
deadline the work runs under (app.py's WorkPool puts it into `jointspace.core.deadline` on the
worker thread): the client's, capped by the server's maximum. The work checks it between steps
and stops with DEADLINE_EXCEEDED (or CANCELLED when the client went away).
"""

from __future__ import annotations

import asyncio
import inspect
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError

from jointspace.core.deadline import Deadline
from jointspace.server.api.interceptors import HANDLER_FACTORIES, Behavior, Continuation, kind_of, method_name

T = TypeVar("T")


class RequestReadInterceptor(grpc.aio.ServerInterceptor):
    """Reads each call's request itself, within `seconds` a message, and hands the method the
    decoded message. Every handler it returns reads its requests as a stream: gRPC would
    otherwise read a unary request before any of this runs, without a time limit."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def intercept_service(self, continuation: Continuation,
                                details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        if handler is None:
            return None
        return reading(handler, RequestReader(self.seconds, handler.request_deserializer,
                                              method_name(details).method))


def reading(handler: grpc.RpcMethodHandler, reader: RequestReader) -> grpc.RpcMethodHandler:
    """`handler` made request-streaming: the call's request (or requests) come from `reader`."""
    behavior = getattr(handler, kind_of(handler))
    streamed = handler.request_streaming

    async def run(requests: Any, context: grpc.aio.ServicerContext) -> Any:
        request = reader.each(context) if streamed else await reader.one(context)
        return await respond(behavior, request, context)

    kind = "stream_stream" if handler.response_streaming else "stream_unary"
    return HANDLER_FACTORIES[kind](run, None, handler.response_serializer)  # None: raw bytes come in


async def respond(behavior: Behavior, request: Any, context: grpc.aio.ServicerContext) -> Any:
    """Run `behavior`; a streamed response it yields is written here, so that the handler is a
    coroutine function whatever it wraps (which is what the interceptors outside expect)."""
    if not inspect.isasyncgenfunction(behavior):
        return await behavior(request, context)
    async for response in behavior(request, context):
        await context.write(response)
    return None


class RequestReader:
    """One call's requests, read within `seconds` each and decoded with the method's
    deserializer: the handler it feeds never waits on a client, and never sees undecodable bytes."""

    def __init__(self, seconds: float, deserializer: Any, method: str) -> None:
        self.seconds = seconds
        self.deserializer = deserializer
        self.method = method

    async def one(self, context: grpc.aio.ServicerContext) -> Any:
        """The single request of a call whose method takes one."""
        raw = await self._next(context)
        if raw is grpc.aio.EOF:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "request: none was sent")
        return await self._decode(raw, context)

    async def each(self, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        """The requests of a call whose method takes a stream of them, until the client ends it."""
        while (raw := await self._next(context)) is not grpc.aio.EOF:
            yield await self._decode(raw, context)

    async def _next(self, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await within(self.seconds, context.read())
        except asyncio.TimeoutError:
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                                f"request: not received within {self.seconds:g} s")

    async def _decode(self, raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        try:
            return self.deserializer(raw) if self.deserializer else raw
        except DecodeError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"request: not a valid {self.method} request")


async def within(seconds: float, awaitable: Awaitable[T]) -> T:
    """`await awaitable`, or asyncio.TimeoutError after `seconds`. asyncio.timeout (3.11) costs a
    timer; wait_for, the fallback, a task of its own and a turn of the loop more, on every call."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await awaitable
    return await asyncio.wait_for(awaitable, seconds)


def work_deadline(context: grpc.aio.ServicerContext, max_seconds: float,
                  is_cancelled: Callable[[], bool]) -> Deadline:
    """The deadline of a call's work: the client's, capped by the server's maximum, which also
    applies when the client set none (gRPC's default deadline is infinite)."""
    remaining = context.time_remaining()  # None: no deadline
    return Deadline.after(max_seconds if remaining is None else min(remaining, max_seconds), is_cancelled)
