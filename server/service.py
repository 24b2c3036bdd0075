"""The gRPC service: request checks, the status code for every error, the engine for the rest.

Errors raised as `JointspaceError` subclasses become their status code with the message as is;
anything else is a bug, answered with INTERNAL and logged with its traceback, and the server goes
on serving (a bad request never takes the process down).
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable

import grpc

from jointspace.errors import (
    Aborted,
    Cancelled,
    Corrupt,
    DeadlineExceeded,
    InvalidInput,
    JointspaceError,
    LimitExceeded,
    NotFound,
    NotReady,
    PermissionDenied,
    StorageError,
    Unimplemented,
)
from jointspace.server.convert import catalog_entry_from_proto, filters_from_proto, hits_to_proto, query_from_proto
from jointspace.server.engine import Engine
from jointspace.server.operations import OperationStatus
from jointspace.server.rebuild import plan_rebuild, run_rebuild
from jointspace.v1 import jointspace_pb2 as pb
from jointspace.v1 import jointspace_pb2_grpc as pb_grpc

logger = logging.getLogger("jointspace.server")

STATUS = {
    InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    LimitExceeded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    NotReady: grpc.StatusCode.FAILED_PRECONDITION,
    Unimplemented: grpc.StatusCode.UNIMPLEMENTED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    Cancelled: grpc.StatusCode.CANCELLED,
    Aborted: grpc.StatusCode.ABORTED,
    Corrupt: grpc.StatusCode.DATA_LOSS,
    StorageError: grpc.StatusCode.UNAVAILABLE,  # disk full or I/O error: nothing applied, retry later
}


def status_of(error: JointspaceError) -> grpc.StatusCode:
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return grpc.StatusCode.UNKNOWN


def rpc(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def handler(self: "JointSpaceService", request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except JointspaceError as error:
            context.abort(status_of(error), str(error))
        except Exception as error:  # a bug: report it, keep serving
            logger.exception("%s failed", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(error).__name__}: {error}")

    return handler


def operation_to_proto(status: OperationStatus) -> pb.Operation:
    operation = pb.Operation(
        name=status.name, done=status.finished, state=pb.Operation.State.Value(status.state),
        progress=pb.OperationProgress(phase=status.phase, done=status.done, total=status.total),
    )
    if status.error is not None:
        operation.error.code = status_of(status.error).value[0]
        operation.error.message = str(status.error)
    elif status.generation:
        operation.generation = status.generation
    if status.validation is not None:
        operation.validation.CopyFrom(pb.Validation(**status.validation))
    return operation


class JointSpaceService(pb_grpc.JointSpaceServicer):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @rpc
    def Embed(self, request: pb.EmbedRequest, context: grpc.ServicerContext) -> pb.EmbedResponse:
        if not request.inputs:
            raise InvalidInput("inputs: empty; give at least one input")
        self.engine.check_batch(len(request.inputs), "inputs")
        queries = [query_from_proto(q, f"inputs[{i}]") for i, q in enumerate(request.inputs)]
        vectors = self.engine.embed(queries)
        return pb.EmbedResponse(
            dim=vectors.shape[1], count=len(vectors), vectors=vectors.astype("<f4").tobytes(),
            model_version=self.engine.served.encoders.version,
        )

    @rpc
    def Search(self, request: pb.SearchRequest, context: grpc.ServicerContext) -> pb.SearchResponse:
        query = query_from_proto(request.query)
        filters = filters_from_proto(request.filters, "filters")
        served = self.engine.served
        [hits] = self.engine.search([query], request.k, list(request.modalities), [set(request.exclude_keys)],
                                    [filters], served=served)
        return hits_to_proto(hits, served.generation.name)

    @rpc
    def BatchSearch(self, request: pb.BatchSearchRequest, context: grpc.ServicerContext) -> pb.BatchSearchResponse:
        """Queries that share k and result modalities are embedded and searched together."""
        if not request.requests:
            raise InvalidInput("requests: empty")
        self.engine.check_batch(len(request.requests), "requests")
        groups: dict[tuple[int, tuple[str, ...]], list[int]] = {}
        for i, item in enumerate(request.requests):
            groups.setdefault((item.k, tuple(item.modalities)), []).append(i)
        served = self.engine.served
        response = pb.BatchSearchResponse()
        slots = [response.results.add() for _ in request.requests]  # answers in request order
        for (k, modalities), members in groups.items():
            queries = [query_from_proto(request.requests[i].query, f"requests[{i}].query") for i in members]
            excludes = [set(request.requests[i].exclude_keys) for i in members]
            filters = [filters_from_proto(request.requests[i].filters, f"requests[{i}].filters") for i in members]
            for i, hits in zip(members, self.engine.search(queries, k, modalities, excludes, filters, served)):
                hits_to_proto(hits, served.generation.name, slots[i])
        return response

    @rpc
    def GetIndexInfo(self, request: pb.GetIndexInfoRequest, context: grpc.ServicerContext) -> pb.IndexInfo:
        return pb.IndexInfo(**self.engine.info())

    @rpc
    def RebuildIndex(self, request: pb.RebuildIndexRequest, context: grpc.ServicerContext) -> pb.Operation:
        """Checks the request, then starts the rebuild in the background (rebuild.py); a second
        one while one runs is ABORTED (operations.py)."""
        engine = self.engine
        plan = plan_rebuild(engine, list(request.catalog_paths), request.index_type, request.model_dir,
                            request.validation_pairs, request.min_recall, request.validation_k,
                            request.catalog_includes_changes_through)
        status = engine.operations.start(lambda control: run_rebuild(engine, plan, control), request.request_id)
        return operation_to_proto(status)

    @rpc
    def GetOperation(self, request: pb.GetOperationRequest, context: grpc.ServicerContext) -> pb.Operation:
        return operation_to_proto(self.engine.operations.get(request.name))

    @rpc
    def ListOperations(self, request: pb.ListOperationsRequest,
                       context: grpc.ServicerContext) -> pb.ListOperationsResponse:
        return pb.ListOperationsResponse(operations=[operation_to_proto(s) for s in self.engine.operations.list()])

    @rpc
    def CancelOperation(self, request: pb.CancelOperationRequest, context: grpc.ServicerContext) -> pb.Operation:
        return operation_to_proto(self.engine.operations.cancel(request.name))

    @rpc
    def Upsert(self, request: pb.UpsertRequest, context: grpc.ServicerContext) -> pb.UpsertResponse:
        entries = [catalog_entry_from_proto(e, f"entries[{i}]") for i, e in enumerate(request.entries)]
        return pb.UpsertResponse(upserted=self.engine.upsert(entries, request.request_id))

    @rpc
    def Delete(self, request: pb.DeleteRequest, context: grpc.ServicerContext) -> pb.DeleteResponse:
        return pb.DeleteResponse(deleted=self.engine.delete(list(request.keys), request.request_id))

