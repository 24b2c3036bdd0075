"""The structured details of an error status (google.rpc.Status in `grpc-status-details-bin`).

A client library turns them into typed fields instead of parsing messages: `BadRequest` names the
wrong field (the service's messages start with it, "k: must be at least 1"), `ErrorInfo` gives a
stable reason (the error's kind) and, for INTERNAL, the error id the server logged the failure
under, `RetryInfo` says when a retry can succeed.
"""

from __future__ import annotations

import re

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

DOMAIN = "jointspace.v1"
# How long a call refused for a passing reason (busy, a rebuild running, a failed write) should wait.
RETRY_AFTER_SECONDS = 1.0
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED, grpc.StatusCode.RESOURCE_EXHAUSTED})
# "k: ...", "inputs[0].text: ...", or several fields at once, "k, exclude_keys: ...",
# "exclude_keys + seen_ids: ...".
_FIELDS = re.compile(r"^([A-Za-z_][\w.\[\]]*(?:(?:, | \+ )[A-Za-z_][\w.\[\]]*)*): ")
_SEPARATOR = re.compile(r", | \+ ")

Trailers = tuple[tuple[str, bytes], ...]


def reason_of(kind: str) -> str:
    """An error class name as an ErrorInfo reason: LimitExceeded -> LIMIT_EXCEEDED."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", kind).upper()


def rich_status(code: grpc.StatusCode, message: str, reason: str, *, error_id: str = "",
                retry: bool = False) -> status_pb2.Status:
    """A status with its details: what a call ends with, or a failed operation's error."""
    status = status_pb2.Status(code=code.value[0], message=message)
    fields = _FIELDS.match(message)
    if fields:
        description = message[fields.end():]
        violations = [error_details_pb2.BadRequest.FieldViolation(field=name, description=description)
                      for name in _SEPARATOR.split(fields.group(1))]
        status.details.add().Pack(error_details_pb2.BadRequest(field_violations=violations))
    metadata = {"error_id": error_id} if error_id else {}
    status.details.add().Pack(error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=metadata))
    if retry and code in RETRYABLE:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(RETRY_AFTER_SECONDS * 1e9))
        status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    return status


def trailers(status: status_pb2.Status) -> Trailers:
    """The trailing metadata that carries `status` with a call's end (its code and message must
    be the call's)."""
    return tuple(rpc_status.to_status(status).trailing_metadata)
