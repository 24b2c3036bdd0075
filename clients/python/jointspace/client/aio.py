"""The asyncio client: `AsyncClient`, the same methods as `Client`, awaited (grpc.aio).

    async with AsyncClient("127.0.0.1:50051") as client:
        hits = await client.search(text="seven", k=5)

What each method sends and returns is in wire.py, shared with the blocking client (sync.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from typing_extensions import Unpack

import jointspace.client.channel as channels
from jointspace.client.base import READY_POLL_SECONDS, ClientBase, Poll
from jointspace.client.errors import from_rpc_error
from jointspace.client.types import Entry, Hit, IndexInfo, Operation
from jointspace.client.wire import Call, Calls, SearchArguments, SearchOptions, upsert_calls
from jointspace.v1 import jointspace_pb2 as pb

R = TypeVar("R")


class AsyncClient(ClientBase):
    """A connection to one server from an event loop; the arguments are Client's. Make it
    inside the loop that uses it (grpc.aio channels belong to one loop)."""

    def _open(self, target: str, credentials: grpc.ChannelCredentials | None, options: list[tuple[str, Any]],
              token: str | None) -> grpc.aio.Channel:
        interceptors = [channels.AsyncBearerToken(token)] if token else None
        if credentials is not None:
            return grpc.aio.secure_channel(target, credentials, options, interceptors=interceptors)
        return grpc.aio.insecure_channel(target, options, interceptors=interceptors)

    async def _run(self, call: Call[R]) -> R:
        stub = self.operations_stub if call.operations else self.stub
        try:
            response = await getattr(stub, call.method)(call.request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        return call.decode(response)

    async def wait_ready(self, timeout: float = 10.0) -> None:
        """Until the server's health says SERVING (model and index loaded)."""
        poll = Poll(timeout, f"the server did not report SERVING within {timeout:g} s")
        health = health_pb2_grpc.HealthStub(self.channel)
        while True:
            try:
                answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=poll.remaining(),
                                            wait_for_ready=True)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError as error:
                if error.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise from_rpc_error(error) from None
            await asyncio.sleep(poll.pause(READY_POLL_SECONDS))

    async def search(self, **arguments: Unpack[SearchArguments]) -> list[Hit]:
        return await self._run(Calls.search(arguments))

    async def batch_search(self, queries: Sequence[pb.Query | Mapping[str, Any]],
                           **options: Unpack[SearchOptions]) -> list[list[Hit]]:
        return await self._run(Calls.batch_search(queries, options))

    async def embed(self, queries: Sequence[pb.Query | Mapping[str, Any]]) -> np.ndarray:
        return await self._run(Calls.embed(queries))

    async def info(self) -> IndexInfo:
        return await self._run(Calls.info())

    async def get_entries(self, keys: Sequence[str]) -> list[Entry]:
        return await self._run(Calls.get_entries(keys))

    async def upsert(self, entries: Sequence[Mapping[str, Any]], request_id: str = "") -> int:
        calls = upsert_calls(entries, request_id, self.max_message_bytes, self.max_batch)
        return sum([await self._run(call) for call in calls])

    async def delete(self, keys: Sequence[str], request_id: str = "") -> int:
        return await self._run(Calls.delete(keys, request_id))

    async def rebuild(self, catalogs: Sequence[str | Path], index: str = "", model: str | Path | None = None,
                      validation_pairs: str | Path | None = None, min_recall: float = 0.0, validation_k: int = 0,
                      request_id: str = "", includes_changes_through: int = 0) -> Operation:
        return await self._run(Calls.rebuild(catalogs, index, model, validation_pairs, min_recall, validation_k,
                                             request_id, includes_changes_through))

    async def operation(self, name: str) -> Operation:
        return await self._run(Calls.operation(name))

    async def operations(self, page_size: int = 0) -> AsyncIterator[Operation]:
        token = ""
        while True:
            page, token = await self._run(Calls.operations_page(page_size, token))
            for operation in page:
                yield operation
            if not token:
                return

    async def cancel(self, name: str) -> Operation:
        await self._run(Calls.cancel(name))
        return await self.operation(name)

    async def wait(self, name: str, poll: float = 0.2, on_progress: Callable[[Operation], None] | None = None,
                   timeout: float | None = None) -> Operation:
        """As Client.wait: past `timeout` seconds raises DeadlineExceeded; the operation goes on."""
        polling = Poll(timeout, f"{name}: not done within {timeout} s; it goes on running")
        while True:
            operation = await self.operation(name)
            if on_progress is not None:
                on_progress(operation)
            if operation.done:
                return operation
            await asyncio.sleep(polling.pause(poll))

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
