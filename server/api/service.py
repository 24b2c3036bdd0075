"""The gRPC service: request checks, the status code for every error, the engine for the rest.

One object answers two services: jointspace.v1.JointSpace, and google.longrunning.Operations for
the rebuilds it starts (AIP-151), so that generic operation helpers can follow them.

Errors raised as `JointspaceError` subclasses become their status code with their message made
public (errors.public_message: bounded, without the server's folders) and google.rpc.Status
details (status_details.py); anything else is a bug, answered with INTERNAL and an error id only,
logged with its traceback under that id, and the server goes on serving (a bad request never
takes the process down). Failed operations are told the same way.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
from google.longrunning import operations_pb2
from google.protobuf import empty_pb2
from google.rpc import status_pb2

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
    log_internal,
    public_message,
    quoted,
)
from jointspace.server.api.convert import (
    catalog_entry_from_proto,
    entries_to_proto,
    excluded_keys_from_proto,
    filters_from_proto,
    found_to_proto,
    found_to_results,
    lexical_weight_from_proto,
    min_score_from_proto,
    plain_vector_queries,
    query_from_proto,
)
from jointspace.server.api.paging import page
from jointspace.server.api.status_details import reason_of, rich_status, trailers
from jointspace.server.index.entries import lookup
from jointspace.server.serving.engine import Engine, Served
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


def error_status(error: JointspaceError, server_paths: Sequence[Path]) -> status_pb2.Status:
    """The error's status with its public message and its details (status_details.py): the wrong
    field, the error's kind, the error id of an INTERNAL one, a retry delay where one can help."""
    return rich_status(status_of(error), public_message(error, server_paths), reason_of(type(error).__name__),
                       error_id=error.error_id if isinstance(error, InternalError) else "",
                       retry=isinstance(error, (StorageError, Aborted)))


def abort(context: grpc.ServicerContext, error: JointspaceError, server_paths: Sequence[Path]) -> None:
    """End the call with the error's status and its details."""
    status = error_status(error, server_paths)
    context.abort(status_of(error), status.message, trailers(status))


def rpc(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def handler(self: JointSpaceService, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except JointspaceError as error:
            abort(context, error, self.server_paths())
        except Exception as error:  # a bug: log it under an id, tell the client the id only, keep serving
            abort(context, log_internal(logger, method.__name__, error), ())

    return handler


def operation_to_proto(status: OperationStatus, server_paths: Sequence[Path]) -> operations_pb2.Operation:
    """A rebuild as google.longrunning.Operation: RebuildIndexMetadata always, then either the
    error (a google.rpc.Status with details; CANCELLED for a cancelled one) or, once it
    succeeded, RebuildIndexResponse."""
    validation = pb.Validation(**status.validation) if status.validation is not None else None
    operation = operations_pb2.Operation(name=status.name, done=status.finished)
    operation.metadata.Pack(pb.RebuildIndexMetadata(
        state=pb.RebuildIndexMetadata.State.Value(status.state), validation=validation,
        progress=pb.OperationProgress(phase=status.phase, done=status.done, total=status.total)))
    if status.error is not None:
        operation.error.CopyFrom(error_status(status.error, server_paths))
    elif status.finished:
        operation.response.Pack(pb.RebuildIndexResponse(generation=status.generation, validation=validation))
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
        served = self.engine.served
        plain = plain_vector_queries([request], served.encoders.dim)
        if plain is not None:
            k, modalities, vector = plain
            return found_to_proto(self.engine.find_vectors(vector, k, modalities, served), 0, None,
                                  served.generation.name)
        query = query_from_proto(request.query)
        excluded = excluded_keys_from_proto(request, query, self.engine.limits)
        self.engine.limits.check_search_work([(request.k, len(excluded))], "k, exclude_keys, seen_ids")
        filters = filters_from_proto(request.filters, "filters", self.engine.limits)
        min_score = min_score_from_proto(request, "min_score")
        found = self.engine.find([query], request.k, list(request.modalities), [excluded],
                                 [filters], served=served, lexical_weight=lexical_weight_from_proto(request))
        return found_to_proto(found, 0, min_score, served.generation.name)

    @rpc
    def BatchSearch(self, request: pb.BatchSearchRequest, context: grpc.ServicerContext) -> pb.BatchSearchResponse:
        if not request.requests:
            raise InvalidInput("requests: empty")
        self.engine.check_batch(len(request.requests), "requests")
        served = self.engine.served
        plain = plain_vector_queries(request.requests, served.encoders.dim)
        if plain is None:
            return self._answers(request.requests, served)
        k, modalities, vectors = plain
        self.engine.limits.check_search_work([(k * len(vectors), 0)], "requests[].k")
        found = self.engine.find_vectors(vectors, k, modalities, served)
        return pb.BatchSearchResponse.FromString(found_to_results(found, [None] * len(vectors), served.generation.name))

    def _answers(self, requests: Sequence[pb.SearchRequest], served: Served) -> pb.BatchSearchResponse:
        """Any batch's answers, in request order: queries that share k, result modalities and
        lexical weight are embedded and searched together."""
        self.engine.limits.check_search_work(((r.k, len(r.exclude_keys) + len(r.seen_ids)) for r in requests),
                                             "requests[].k, requests[].exclude_keys, requests[].seen_ids")
        groups: dict[tuple[int, tuple[str, ...], float | None], list[int]] = {}
        for i, item in enumerate(requests):
            groups.setdefault((item.k, tuple(item.modalities), lexical_weight_from_proto(item)), []).append(i)
        min_scores = [min_score_from_proto(r, f"requests[{i}].min_score") for i, r in enumerate(requests)]
        response = pb.BatchSearchResponse()
        slots = [response.results.add() for _ in requests] if len(groups) > 1 else []
        for (k, modalities, lexical_weight), members in groups.items():
            queries = [query_from_proto(requests[i].query, f"requests[{i}].query") for i in members]
            excludes = [excluded_keys_from_proto(requests[i], query, self.engine.limits)
                        for i, query in zip(members, queries)]
            filters = [filters_from_proto(requests[i].filters, f"requests[{i}].filters", self.engine.limits)
                       for i in members]
            found = self.engine.find(queries, k, modalities, excludes, filters, served, lexical_weight)
            results = pb.BatchSearchResponse.FromString(
                found_to_results(found, [min_scores[i] for i in members], served.generation.name))
            if not slots:  # one group: its answers are the whole batch's, in order
                return results
            for i, result in zip(members, results.results):
                slots[i].CopyFrom(result)
        return response

    @rpc
    def GetIndexInfo(self, request: pb.GetIndexInfoRequest, context: grpc.ServicerContext) -> pb.IndexInfo:
        return pb.IndexInfo(**self.engine.info())

    @rpc
    def GetEntries(self, request: pb.GetEntriesRequest, context: grpc.ServicerContext) -> pb.GetEntriesResponse:
        if not request.keys:
            raise InvalidInput("keys: empty; give at least one catalog key")
        self.engine.check_batch(len(request.keys), "keys")
        served = self.engine.served
        return entries_to_proto(*lookup(served.generation, served.changes, list(request.keys)))

    @rpc
    def RebuildIndex(self, request: pb.RebuildIndexRequest,
                     context: grpc.ServicerContext) -> operations_pb2.Operation:
        """Checks the request, then starts the rebuild in the background (rebuild.py); a second
        one while one runs is ABORTED (operations.py)."""
        engine = self.engine
        plan = plan_rebuild(engine, list(request.catalog_paths), request.index_type, request.model_dir,
                            request.validation_pairs, request.min_recall, request.validation_k,
                            request.catalog_includes_changes_through)
        status = engine.operations.start(lambda control: run_rebuild(engine, plan, control), request.request_id)
        return operation_to_proto(status, self.server_paths())

    # google.longrunning.Operations: the operations of this server's rebuilds (AIP-151).

    @rpc
    def GetOperation(self, request: operations_pb2.GetOperationRequest,
                     context: grpc.ServicerContext) -> operations_pb2.Operation:
        return operation_to_proto(self.engine.operations.get(request.name), self.server_paths())

    @rpc
    def ListOperations(self, request: operations_pb2.ListOperationsRequest,
                       context: grpc.ServicerContext) -> operations_pb2.ListOperationsResponse:
        """Newest first, paged (AIP-158); `name` may be empty or "operations" (the one collection)."""
        if request.name not in ("", "operations"):
            raise NotFound(f"name: no collection {quoted(request.name)}; this server lists \"operations\"")
        if request.filter:
            raise InvalidInput("filter: not supported; list without one")
        paths = self.server_paths()
        statuses, next_token = page(self.engine.operations.list(), lambda s: s.name, request.page_size,
                                    request.page_token)
        return operations_pb2.ListOperationsResponse(operations=[operation_to_proto(s, paths) for s in statuses],
                                                     next_page_token=next_token)

    @rpc
    def CancelOperation(self, request: operations_pb2.CancelOperationRequest,
                        context: grpc.ServicerContext) -> empty_pb2.Empty:
        """Asks a running rebuild to stop (before it swaps); a finished one is left as it is."""
        self.engine.operations.cancel(request.name)
        return empty_pb2.Empty()

    @rpc
    def DeleteOperation(self, request: operations_pb2.DeleteOperationRequest,
                        context: grpc.ServicerContext) -> empty_pb2.Empty:
        raise Unimplemented("DeleteOperation: operations are kept in memory, the oldest finished ones "
                            "forgotten first")

    @rpc
    def WaitOperation(self, request: operations_pb2.WaitOperationRequest,
                      context: grpc.ServicerContext) -> operations_pb2.Operation:
        raise Unimplemented("WaitOperation: poll GetOperation")

    @rpc
    def Upsert(self, request: pb.UpsertRequest, context: grpc.ServicerContext) -> pb.UpsertResponse:
        limits = self.engine.limits
        entries = [catalog_entry_from_proto(e, f"entries[{i}]", limits) for i, e in enumerate(request.entries)]
        return pb.UpsertResponse(upserted=self.engine.upsert(entries, request.request_id))

    @rpc
    def Delete(self, request: pb.DeleteRequest, context: grpc.ServicerContext) -> pb.DeleteResponse:
        return pb.DeleteResponse(deleted=self.engine.delete(list(request.keys), request.request_id))

