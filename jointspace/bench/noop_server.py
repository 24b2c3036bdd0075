"""The serving benchmark's ceiling: the real server stack (`start_configured_server`: the same
grpc.aio server, worker threads, interceptors, late-bound service slot, limits) answering Search and
BatchSearch with a prebuilt response of k hits shaped like real ones, without embedding,
searching or converting anything. What jointspace reaches against this is the share of the
ceiling its own work leaves.

With `--index DIR` it does instead the least work any server must do to give jointspace's answer
to each query from that index: read the query's packed vector and check it as jointspace does
(a plain vector query of the index's width, k within the limit, its values finite and not all
zero), scale it to unit length (the scores are cosines), run its FAISS search (on the served
generation's index, with its tuned search depth, jointspace's thread policy and its call past
FAISS's Python wrapper; a batch's queries in one call), and answer with the hits found, keys
looked up by row, as jointspace's answer has them (key, score, modality, the generation's name).
The reading, checks and scaling are jointspace's own functions; what the reference leaves out
is the engine between them. That is the ceiling of any server on this
stack that searches this index, which splits jointspace's gap to the plain ceiling into the
search's share and jointspace's own.

Run as `python -m jointspace.bench.noop_server --k 10 --port 0`; it logs JSON lines like
`jointspace serve --log-format json`, the port in the "listening on" record.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from jointspace.core.errors import InvalidInput, JointspaceError
from jointspace.core.limits import DEFAULT_LIMITS
from jointspace.core.logs import configure_logging
from jointspace.encoders.inference import VECTOR, normalize_vectors
from jointspace.server.api.config import ServeConfig, default_workers
from jointspace.server.api.convert import plain_vector_queries
from jointspace.server.index.searching import faiss_threads, unwrapped_search
from jointspace.v1 import jointspace_pb2 as pb

if TYPE_CHECKING:
    from jointspace.server.index.generation import Generation

# Its import name, not __name__: run as `python -m`, this module is "__main__", outside the
# "jointspace" logger that configure_logging routes (and the benchmark reads its "listening" line).
logger = logging.getLogger("jointspace.bench.noop_server")


class NoopService:
    """Search and BatchSearch of the JointSpace API: prebuilt answers, or (with an index) the
    FAISS search of each query and an answer built from its arrays."""

    def __init__(self, k: int, index_dir: Path | None = None) -> None:
        self.k = k
        hits = [pb.Hit(key=f"v:{100_000 + i}", score=0.9 - i / 100, modality="vector") for i in range(k)]
        self.response = pb.SearchResponse(hits=hits, generation="gen-000001")
        self.batches: dict[int, pb.BatchSearchResponse] = {}
        self.index: Any = None
        if index_dir is not None:
            generation = served_generation(index_dir)
            self.index, self.keys, self.generation = generation.indexes["vector"], generation.keys["vector"], \
                generation.name

    def Search(self, request: pb.SearchRequest, context: Any) -> pb.SearchResponse:
        if self.index is None:
            return self.response
        response = pb.SearchResponse()
        self._answer([request], [response], context)
        return response

    def BatchSearch(self, request: pb.BatchSearchRequest, context: Any) -> pb.BatchSearchResponse:
        size = len(request.requests)
        if self.index is None:
            if size not in self.batches:  # a benign race: two threads may build the same message
                self.batches[size] = pb.BatchSearchResponse(results=[self.response] * size)
            return self.batches[size]
        response = pb.BatchSearchResponse()
        self._answer(request.requests, [response.results.add() for _ in range(size)], context)
        return response

    def _answer(self, requests: Sequence[pb.SearchRequest], responses: Sequence[pb.SearchResponse],
                context: Any) -> None:
        """These queries checked and scaled to unit length, searched in one FAISS call, each
        answer filled from its arrays."""
        plain = plain_vector_queries(requests, self.index.d)
        try:
            if plain is None or plain[1] not in ([], [VECTOR]):
                raise InvalidInput("the reference answers plain vector queries only")
            k, _, vectors = plain
            DEFAULT_LIMITS.check_k(k)
            vectors = normalize_vectors(vectors, self.index.d)
        except JointspaceError as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        with faiss_threads(len(vectors)):
            scores, rows = unwrapped_search(self.index, vectors, k)
        for response, keys, values in zip(responses, self.keys[rows].tolist(), scores.tolist()):
            response.generation = self.generation
            add = response.hits.add
            for key, score in zip(keys, values):
                add(key=key, score=score, modality="vector")


def served_generation(index_dir: Path) -> Generation:
    """The generation `index_dir` serves now."""
    from jointspace.server.index.generation import Generation
    from jointspace.server.index.index_directory import IndexDirectory

    return Generation(IndexDirectory(index_dir).current_path())


def main(argv: Sequence[str] | None = None) -> int:
    from jointspace.server.api.app import serve_until_signal, start_configured_server

    parser = argparse.ArgumentParser(prog="python -m jointspace.bench.noop_server")
    parser.add_argument("--k", type=int, default=10, help="hits per answer")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--index", type=Path, help="also run each query's FAISS search on this index")
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--log-format", default="json")
    args = parser.parse_args(argv)
    configure_logging(args.log_format)
    running = start_configured_server(replace(ServeConfig(), port=args.port, workers=args.workers))
    running.answer_with(NoopService(args.k, args.index))
    logger.info("listening on 127.0.0.1:%d (no-op service, %d hits per answer)", running.port, args.k,
                extra={"port": running.port})
    serve_until_signal(running, grace=0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
