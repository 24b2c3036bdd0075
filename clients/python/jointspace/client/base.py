"""What the sync and the asyncio client share besides the calls (wire.py): the connection
settings, the stubs, and the bookkeeping of their polling loops."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import grpc
from google.longrunning import operations_pb2_grpc

import jointspace.client.channel as channels
from jointspace.client.errors import DeadlineExceeded
from jointspace.v1 import jointspace_pb2_grpc as pb_grpc

READY_POLL_SECONDS = 0.05


class ClientBase:
    """A connection to one server. TLS when `tls_ca` (the CA that signed the server's
    certificate) or `tls=True` (the system's CAs) is given; mutual TLS adds `tls_cert` and
    `tls_key`; `token` is sent as a bearer token on every call. `timeout` is every call's
    deadline in seconds, retries included (`retries=False` turns them off). Give
    `max_message_bytes` and `max_batch` when the server's limits differ from its defaults: large
    upserts are split under them."""

    def __init__(self, target: str = channels.DEFAULT_TARGET, timeout: float = 30.0, *, tls: bool = False,
                 tls_ca: str | Path | None = None, tls_cert: str | Path | None = None,
                 tls_key: str | Path | None = None, token: str | None = None, retries: bool = True,
                 max_message_bytes: int = channels.DEFAULT_MAX_MESSAGE_BYTES,
                 max_batch: int = channels.DEFAULT_MAX_BATCH) -> None:
        self.timeout = timeout
        self.max_message_bytes, self.max_batch = max_message_bytes, max_batch
        credentials = (channels.channel_credentials(tls_ca, tls_cert, tls_key)
                       if channels.wants_tls(tls, tls_ca, tls_cert, tls_key) else None)
        self.channel = self._open(target, credentials, channels.channel_options(max_message_bytes, retries), token)
        self.stub = pb_grpc.JointSpaceStub(self.channel)
        self.operations_stub = operations_pb2_grpc.OperationsStub(self.channel)

    def _open(self, target: str, credentials: grpc.ChannelCredentials | None, options: list[tuple[str, Any]],
              token: str | None) -> Any:
        """The channel (sync or asyncio), secure when `credentials` are given."""
        raise NotImplementedError


class Poll:
    """The deadline of a polling loop (`wait`, `wait_ready`): `timeout` seconds from now, or none."""

    def __init__(self, timeout: float | None, failure: str) -> None:
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.failure = failure

    def remaining(self) -> float | None:
        return None if self.deadline is None else max(self.deadline - time.monotonic(), 0.0)

    def pause(self, seconds: float) -> float:
        """How long to sleep before the next try; DeadlineExceeded once the next would be too late."""
        if self.deadline is not None and time.monotonic() + seconds > self.deadline:
            raise DeadlineExceeded(grpc.StatusCode.DEADLINE_EXCEEDED, self.failure)
        return seconds
