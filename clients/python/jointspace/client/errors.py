"""Typed exceptions: one class per gRPC status code, each carrying what the server said.

A failed call raises a subclass of `RpcFailure`, which is also a `grpc.RpcError` with `code()`
and `details()`, so code written against plain gRPC keeps working. The server sends its
structured details (`google.rpc.Status` in the `grpc-status-details-bin` trailer):
`BadRequest` field violations give `field`, `ErrorInfo` gives `reason` and, for INTERNAL, the
`error_id` the server logged the failure under, `RetryInfo` gives `retry_delay`.

`UsageError` is a mistake made on this side (two query kinds at once, a missing PEM file): no
call was made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


class UsageError(ValueError):
    """A call this client refuses to make, e.g. a query with two kinds; nothing was sent."""


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class RpcFailure(grpc.RpcError):
    """A call the server (or the channel) ended with a status other than OK."""

    status_code = grpc.StatusCode.UNKNOWN

    def __init__(self, code: grpc.StatusCode, message: str, violations: tuple[FieldViolation, ...] = (),
                 reason: str = "", info: dict[str, str] | None = None, retry_delay: float | None = None) -> None:
        super().__init__(f"{code.name}: {message}")
        self._code = code
        self.message = message
        self.violations = violations
        self.field = violations[0].field if violations else ""  # the first wrong field, e.g. "k"
        self.reason = reason
        self.info = info or {}
        self.retry_delay = retry_delay

    @property
    def error_id(self) -> str:
        """For INTERNAL: the id the server logged the failure under (tell its operator)."""
        return self.info.get("error_id", "")

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self.message


class InvalidArgument(RpcFailure):
    status_code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(RpcFailure):
    status_code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(RpcFailure):
    status_code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(RpcFailure):
    """No index loaded yet, or a rebuild's gate not reached."""

    status_code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(RpcFailure):
    """Over a server limit (the message names it), or the server is at its concurrency limit."""

    status_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class OutOfRange(RpcFailure):
    status_code = grpc.StatusCode.OUT_OF_RANGE


class Unauthenticated(RpcFailure):
    status_code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(RpcFailure):
    status_code = grpc.StatusCode.PERMISSION_DENIED


class Aborted(RpcFailure):
    """Conflicts with work already running (a second rebuild): retry once it is done."""

    status_code = grpc.StatusCode.ABORTED


class Unavailable(RpcFailure):
    """No server, or a write the server could not make durable: nothing was applied."""

    status_code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(RpcFailure):
    status_code = grpc.StatusCode.DEADLINE_EXCEEDED


class Cancelled(RpcFailure):
    status_code = grpc.StatusCode.CANCELLED


class Unimplemented(RpcFailure):
    status_code = grpc.StatusCode.UNIMPLEMENTED


class Internal(RpcFailure):
    """A bug on the server; `error_id` finds it in the server's log."""

    status_code = grpc.StatusCode.INTERNAL


class DataLoss(RpcFailure):
    status_code = grpc.StatusCode.DATA_LOSS


class Unknown(RpcFailure):
    status_code = grpc.StatusCode.UNKNOWN


_BY_CODE = {cls.status_code: cls for cls in RpcFailure.__subclasses__()}


def failure(code: grpc.StatusCode, message: str, status: Any = None) -> RpcFailure:
    """The typed exception for a status; `status` is the `google.rpc.Status` the server sent, if any."""
    violations: list[FieldViolation] = []
    reason, info, retry_delay = "", {}, None
    for detail in getattr(status, "details", ()):
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations += [FieldViolation(v.field, v.description) for v in bad.field_violations]
        elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            error_info = error_details_pb2.ErrorInfo()
            detail.Unpack(error_info)
            reason, info = error_info.reason, dict(error_info.metadata)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            retry_delay = retry.retry_delay.ToTimedelta().total_seconds()
    return _BY_CODE.get(code, Unknown)(code, message, tuple(violations), reason, info, retry_delay)


def from_rpc_error(error: grpc.RpcError) -> RpcFailure:
    """A gRPC error (sync or asyncio) as its typed exception, with the server's details."""
    if isinstance(error, RpcFailure):
        return error
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    message = (error.details() if hasattr(error, "details") else "") or ""
    try:
        status = rpc_status.from_call(error)
    except ValueError:  # details that do not match the status: use the status alone
        status = None
    return failure(code, message, status)
