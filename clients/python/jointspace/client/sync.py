"""The blocking client: `Client`.

    with Client("127.0.0.1:50051") as client:
        hits = client.search(text="seven", k=5, modalities=["audio"])

What each method sends and returns is in wire.py, shared with the asyncio client (aio.py); this
module only runs the calls: with the client's deadline, gRPC errors raised as the typed
exceptions of errors.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
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


class Client(ClientBase):
    """The blocking client; its arguments (target, deadline, TLS, token, retries, limits) are
    ClientBase's."""

    def _open(self, target: str, credentials: grpc.ChannelCredentials | None, options: list[tuple[str, Any]],
              token: str | None) -> grpc.Channel:
        channel = (grpc.secure_channel(target, credentials, options) if credentials is not None
                   else grpc.insecure_channel(target, options))
        self._raw_channel = channel
        return grpc.intercept_channel(channel, channels.BearerToken(token)) if token else channel

    def _run(self, call: Call[R]) -> R:
        stub = self.operations_stub if call.operations else self.stub
        try:
            response = getattr(stub, call.method)(call.request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        return call.decode(response)

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Until the server's health says SERVING (model and index loaded), not merely until it
        accepts connections: a server that is still loading answers FAILED_PRECONDITION."""
        poll = Poll(timeout, f"the server did not report SERVING within {timeout:g} s")
        health = health_pb2_grpc.HealthStub(self.channel)
        while True:
            try:
                answer = health.Check(health_pb2.HealthCheckRequest(), timeout=poll.remaining(), wait_for_ready=True)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError as error:
                if error.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise from_rpc_error(error) from None
            time.sleep(poll.pause(READY_POLL_SECONDS))

    def search(self, **arguments: Unpack[SearchArguments]) -> list[Hit]:
        """One query, as make_query's keywords (`text="seven"`), with the keywords of
        SearchOptions (wire.py): `k`, `modalities`, `exclude`, `filters`, `min_score`,
        `lexical_weight`, `exclude_query_ids`, `seen_ids`."""
        return self._run(Calls.search(arguments))

    def batch_search(self, queries: Sequence[pb.Query | Mapping[str, Any]],
                     **options: Unpack[SearchOptions]) -> list[list[Hit]]:
        """Many queries (Query messages, or make_query's keywords as dicts) in one call, each
        with the same SearchOptions."""
        return self._run(Calls.batch_search(queries, options))

    def embed(self, queries: Sequence[pb.Query | Mapping[str, Any]]) -> np.ndarray:
        return self._run(Calls.embed(queries))

    def info(self) -> IndexInfo:
        return self._run(Calls.info())

    def get_entries(self, keys: Sequence[str]) -> list[Entry]:
        """The entries the server holds under these keys now (unknown keys are left out)."""
        return self._run(Calls.get_entries(keys))

    def upsert(self, entries: Sequence[Mapping[str, Any]], request_id: str = "") -> int:
        """Add or replace catalog entries by key (rows as make_catalog_entry takes them); durable
        on the server once this returns. More entries than one message holds go in several calls.
        A repeat with the same `request_id` is answered, not applied again."""
        return sum(self._run(call) for call in upsert_calls(entries, request_id, self.max_message_bytes,
                                                              self.max_batch))

    def delete(self, keys: Sequence[str], request_id: str = "") -> int:
        return self._run(Calls.delete(keys, request_id))

    def rebuild(self, catalogs: Sequence[str | Path], index: str = "", model: str | Path | None = None,
                validation_pairs: str | Path | None = None, min_recall: float = 0.0, validation_k: int = 0,
                request_id: str = "", includes_changes_through: int = 0) -> Operation:
        """Start a rebuild from catalog files on the server's file system; returns at once.
        `includes_changes_through`: the `last_change` of `info()` when the catalogs were exported
        (the online changes up to it are in them and are not carried over); 0 carries all."""
        return self._run(Calls.rebuild(catalogs, index, model, validation_pairs, min_recall, validation_k,
                                       request_id, includes_changes_through))

    def operation(self, name: str) -> Operation:
        return self._run(Calls.operation(name))

    def operations(self, page_size: int = 0) -> Iterator[Operation]:
        """Every operation of the server, fetched a page at a time (`page_size` 0: the server's)."""
        token = ""
        while True:
            page, token = self._run(Calls.operations_page(page_size, token))
            yield from page
            if not token:
                return

    def cancel(self, name: str) -> Operation:
        """Ask a running rebuild to stop (it does before it swaps); the operation as it is then."""
        self._run(Calls.cancel(name))
        return self.operation(name)

    def wait(self, name: str, poll: float = 0.2, on_progress: Callable[[Operation], None] | None = None,
             timeout: float | None = None) -> Operation:
        """Poll until the operation is done; `on_progress` sees every answer. Past `timeout`
        seconds (None: no limit) raises DeadlineExceeded; the operation goes on."""
        polling = Poll(timeout, f"{name}: not done within {timeout} s; it goes on running")
        while True:
            operation = self.operation(name)
            if on_progress is not None:
                on_progress(operation)
            if operation.done:
                return operation
            time.sleep(polling.pause(poll))

    def close(self) -> None:
        self._raw_channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

