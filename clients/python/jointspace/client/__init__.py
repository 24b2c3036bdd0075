"""The Python client of the jointspace gRPC API: blocking (`Client`) and asyncio (`AsyncClient`).

    with Client("127.0.0.1:50051") as client:
        hits = client.search(text="seven", k=5, modalities=["audio"])

It is its own distribution (`jointspace-client`, in clients/python of the repository): grpcio,
protobuf, numpy and the Google API protos, no TensorFlow, so any Python service can use it. Every
call has a deadline (`timeout`, seconds) and returns typed values (types.py); a failed call raises
the typed exception of its status code (errors.py), which is also a `grpc.RpcError`.
"""

from jointspace.client.aio import AsyncClient
from jointspace.client.channel import DEFAULT_MAX_BATCH, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_TARGET
from jointspace.client.errors import (
    Aborted,
    AlreadyExists,
    Cancelled,
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    FieldViolation,
    Internal,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    ResourceExhausted,
    RpcFailure,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    Unknown,
    UsageError,
)
from jointspace.client.sync import Client
from jointspace.client.types import (
    Entry,
    Hit,
    IndexInfo,
    Operation,
    OperationError,
    OperationState,
    Progress,
    Validation,
)
from jointspace.client.wire import hits_from_proto, make_catalog_entry, make_filters, make_query

__all__ = [
    "DEFAULT_MAX_BATCH", "DEFAULT_MAX_MESSAGE_BYTES", "DEFAULT_TARGET",
    "Aborted", "AlreadyExists", "AsyncClient", "Cancelled", "Client", "DataLoss", "DeadlineExceeded", "Entry",
    "FailedPrecondition", "FieldViolation", "Hit", "IndexInfo", "Internal", "InvalidArgument", "NotFound",
    "Operation", "OperationError", "OperationState", "OutOfRange", "PermissionDenied", "Progress",
    "ResourceExhausted", "RpcFailure", "Unauthenticated", "Unavailable", "Unimplemented", "Unknown", "UsageError",
    "Validation", "hits_from_proto", "make_catalog_entry", "make_filters", "make_query",
]
