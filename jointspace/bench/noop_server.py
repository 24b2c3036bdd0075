"""The serving benchmark's ceiling: the real server stack (`start_configured_server`: the same
gRPC server, thread pool, interceptors, late-bound service slot, limits) answering Search and
BatchSearch with a prebuilt response of k hits shaped like real ones, without embedding,
searching or converting anything. What jointspace reaches against this is the share of the
ceiling its own work leaves.

Run as `python -m jointspace.bench.noop_server --k 10 --port 0`; it logs JSON lines like
`jointspace serve --log-format json`, the port in the "listening on" record.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from typing import Any, Sequence

from google.protobuf import struct_pb2

from jointspace.config import ServeConfig, default_workers
from jointspace.logs import configure_logging
from jointspace.v1 import jointspace_pb2 as pb

logger = logging.getLogger("jointspace.server")


class NoopService:
    """Search and BatchSearch of the JointSpace API, answered from prebuilt messages."""

    def __init__(self, k: int) -> None:
        hits = [pb.Hit(key=f"v:{100_000 + i}", score=0.9 - i / 100, modality="vector", metadata=struct_pb2.Struct())
                for i in range(k)]
        self.response = pb.SearchResponse(hits=hits, generation="gen-000001")
        self.batches: dict[int, pb.BatchSearchResponse] = {}

    def Search(self, request: pb.SearchRequest, context: Any) -> pb.SearchResponse:
        return self.response

    def BatchSearch(self, request: pb.BatchSearchRequest, context: Any) -> pb.BatchSearchResponse:
        size = len(request.requests)
        if size not in self.batches:  # a benign race: two threads may build the same message
            self.batches[size] = pb.BatchSearchResponse(results=[self.response] * size)
        return self.batches[size]


def main(argv: Sequence[str] | None = None) -> int:
    from jointspace.server.app import serve_until_signal, start_configured_server

    parser = argparse.ArgumentParser(prog="python -m jointspace.bench.noop_server")
    parser.add_argument("--k", type=int, default=10, help="hits per answer")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--log-format", default="json")
    args = parser.parse_args(argv)
    configure_logging(args.log_format)
    running = start_configured_server(replace(ServeConfig(), port=args.port, workers=args.workers))
    running.answer_with(NoopService(args.k))
    logger.info("listening on 127.0.0.1:%d (no-op service, %d hits per answer)", running.port, args.k,
                extra={"port": running.port})
    serve_until_signal(running, grace=0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
