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
    InvalidInput,
    JointspaceError,
    LimitExceeded,
    NotFound,
    NotReady,
    Unimplemented,
)
from jointspace.server.convert import hits_to_proto, query_from_proto
from jointspace.server.engine import Engine
from jointspace.v1 import jointspace_pb2 as pb
from jointspace.v1 import jointspace_pb2_grpc as pb_grpc

logger = logging.getLogger("jointspace.server")

STATUS = {
    InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    LimitExceeded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    NotReady: grpc.StatusCode.FAILED_PRECONDITION,
    Unimplemented: grpc.StatusCode.UNIMPLEMENTED,
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


def _lifecycle(name: str) -> Callable[..., Any]:
    @rpc
    def unimplemented(self: "JointSpaceService", request: Any, context: grpc.ServicerContext) -> Any:
        raise Unimplemented(f"{name} is part of the index-lifecycle API and not offered by this "
                            "server version yet; rebuild with `jointspace index build` and restart")

    return unimplemented


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
        served = self.engine.served
        [hits] = self.engine.search([query], request.k, list(request.modalities), [set(request.exclude_keys)])
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
        generation = self.engine.served.generation.name
        results: list[pb.SearchResponse | None] = [None] * len(request.requests)
        for (k, modalities), members in groups.items():
            queries = [query_from_proto(request.requests[i].query, f"requests[{i}].query") for i in members]
            excludes = [set(request.requests[i].exclude_keys) for i in members]
            for i, hits in zip(members, self.engine.search(queries, k, modalities, excludes)):
                results[i] = hits_to_proto(hits, generation)
        return pb.BatchSearchResponse(results=results)

    @rpc
    def GetIndexInfo(self, request: pb.GetIndexInfoRequest, context: grpc.ServicerContext) -> pb.IndexInfo:
        return pb.IndexInfo(**self.engine.info())

    RebuildIndex = _lifecycle("RebuildIndex")
    GetOperation = _lifecycle("GetOperation")
    ListOperations = _lifecycle("ListOperations")
    CancelOperation = _lifecycle("CancelOperation")
    Upsert = _lifecycle("Upsert")
    Delete = _lifecycle("Delete")

