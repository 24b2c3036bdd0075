"""The gRPC service: request checks, the status code for every error, the engine for the rest.

Errors raised as `JointspaceError` subclasses become their status code with their message made
public (errors.public_message: bounded, without the server's folders); anything else is a bug,
answered with INTERNAL and its kind only, logged with its traceback, and the server goes on
serving (a bad request never takes the process down). Failed operations are told the same way.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc

from jointspace.core.errors import (
    Aborted,
    Cancelled,
    Corrupt,
    DeadlineExceeded,
    InternalError,
    InvalidInput,
    JointspaceError,
    LimitExceeded,
    NotFound,
    NotReady,
    PermissionDenied,
    StorageError,
    Unimplemented,
    public_message,
)
from jointspace.server.api.convert import catalog_entry_from_proto, filters_from_proto, hits_to_proto, query_from_proto
from jointspace.server.serving.engine import Engine
from jointspace.server.serving.operations import OperationStatus
from jointspace.server.serving.rebuild import plan_rebuild, run_rebuild
from jointspace.v1 import jointspace_pb2 as pb
from jointspace.v1 import jointspace_pb2_grpc as pb_grpc

logger = logging.getLogger(__name__)

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
    InternalError: grpc.StatusCode.INTERNAL,
}


def status_of(error: JointspaceError) -> grpc.StatusCode:
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return grpc.StatusCode.UNKNOWN


def rpc(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def handler(self: JointSpaceService, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except JointspaceError as error:
            context.abort(status_of(error), public_message(error, self.server_paths()))
        except Exception as error:  # a bug: report it, keep serving
            logger.exception("%s failed", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, public_message(error))

    return handler


def operation_to_proto(status: OperationStatus, server_paths: Sequence[Path]) -> pb.Operation:
    operation = pb.Operation(
        name=status.name, done=status.finished, state=pb.Operation.State.Value(status.state),
        progress=pb.OperationProgress(phase=status.phase, done=status.done, total=status.total),
    )
    if status.error is not None:
        operation.error.code = status_of(status.error).value[0]
        operation.error.message = public_message(status.error, server_paths)
    elif status.generation:
        operation.generation = status.generation
    if status.validation is not None:
        operation.validation.CopyFrom(pb.Validation(**status.validation))
    return operation


class JointSpaceService(pb_grpc.JointSpaceServicer):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def server_paths(self) -> list[Path]:
        """The folders that messages must not show: where clients' relative paths start (the
        data directory), then the index folder."""
        return [self.engine.data_dir.base, self.engine.index_dir.root]

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
        self.engine.limits.check_search_work([(request.k, len(request.exclude_keys))], "k, exclude_keys")
        query = query_from_proto(request.query)
        filters = filters_from_proto(request.filters, "filters", self.engine.limits)
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
        self.engine.limits.check_search_work(((r.k, len(r.exclude_keys)) for r in request.requests),
                                             "requests[].k, requests[].exclude_keys")
        groups: dict[tuple[int, tuple[str, ...]], list[int]] = {}
        for i, item in enumerate(request.requests):
            groups.setdefault((item.k, tuple(item.modalities)), []).append(i)
        served = self.engine.served
        response = pb.BatchSearchResponse()
        slots = [response.results.add() for _ in request.requests]  # answers in request order
        for (k, modalities), members in groups.items():
            queries = [query_from_proto(request.requests[i].query, f"requests[{i}].query") for i in members]
            excludes = [set(request.requests[i].exclude_keys) for i in members]
            filters = [filters_from_proto(request.requests[i].filters, f"requests[{i}].filters", self.engine.limits)
                       for i in members]
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
        return operation_to_proto(status, self.server_paths())

    @rpc
    def GetOperation(self, request: pb.GetOperationRequest, context: grpc.ServicerContext) -> pb.Operation:
        return operation_to_proto(self.engine.operations.get(request.name), self.server_paths())

    @rpc
    def ListOperations(self, request: pb.ListOperationsRequest,
                       context: grpc.ServicerContext) -> pb.ListOperationsResponse:
        paths = self.server_paths()
        return pb.ListOperationsResponse(
            operations=[operation_to_proto(s, paths) for s in self.engine.operations.list()])

    @rpc
    def CancelOperation(self, request: pb.CancelOperationRequest, context: grpc.ServicerContext) -> pb.Operation:
        return operation_to_proto(self.engine.operations.cancel(request.name), self.server_paths())

    @rpc
    def Upsert(self, request: pb.UpsertRequest, context: grpc.ServicerContext) -> pb.UpsertResponse:
        limits = self.engine.limits
        entries = [catalog_entry_from_proto(e, f"entries[{i}]", limits) for i, e in enumerate(request.entries)]
        return pb.UpsertResponse(upserted=self.engine.upsert(entries, request.request_id))

    @rpc
    def Delete(self, request: pb.DeleteRequest, context: grpc.ServicerContext) -> pb.DeleteResponse:
        return pb.DeleteResponse(deleted=self.engine.delete(list(request.keys), request.request_id))

