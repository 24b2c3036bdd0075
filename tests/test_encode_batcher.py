"""Encoder calls shared among concurrent requests (server/serving/encode_batcher.py), through a
real server: requests that queue behind a running model call go together in the next one, get
the vectors they would get alone, and keep their own errors."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from jointspace.bench.queries import query_requests
from jointspace.client import Client, InvalidArgument, NotFound
from jointspace.core import faults
from jointspace.v1 import jointspace_pb2 as pb
from serving import own_server

WORKERS = 16


@pytest.fixture(scope="module")
def engine(built: Any) -> Any:
    from jointspace.server.serving.engine import Engine

    return Engine(built.model, built.index)


@pytest.fixture(scope="module")
def address(engine: Any) -> Iterator[str]:
    with own_server(engine, workers=WORKERS) as running:
        yield f"127.0.0.1:{running.port}"


@pytest.fixture(scope="module")
def real_queries(built: Any) -> dict[str, list[pb.Query]]:
    found = query_requests([built.root / "audio-pairs.jsonl", built.root / "film-pairs.jsonl"],
                           ["audio", "id", "ids", "text"], dim=16)
    return {modality: [pb.Query.FromString(q) for q in queries] for modality, queries in found.items()}


def _queued(engine: Any) -> int:
    return sum(len(waiting) for waiting in engine.batcher._waiting.values())


def _behind_one_call(engine: Any, address: str, calls: list[Callable[[Client], Any]],
                     queue: int | None = None) -> list[Future[Any]]:
    """Run the first call, hold its model call, send the others meanwhile and let it go once
    they (or `queue` of them: a clip that does not decode fails before it joins) wait for the
    next call: they go together, in one."""
    pause = faults.Pause()
    with faults.injected(faults.Faults(pauses={"encoding": pause})), Client(address, timeout=60) as client, \
            ThreadPoolExecutor(len(calls)) as pool:
        client.wait_ready()
        first = pool.submit(calls[0], client)
        assert pause.reached.wait(60)
        rest = [pool.submit(call, client) for call in calls[1:]]
        deadline = time.monotonic() + 60
        queue = len(rest) if queue is None else queue
        while _queued(engine) < queue and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _queued(engine) == queue
        pause.resume.set()
        for future in [first, *rest]:
            future.exception(timeout=120)
        return [first, *rest]


@pytest.mark.parametrize("modality", ["text", "id", "ids", "audio"])
def test_batched_requests_of_mixed_sizes_get_the_vectors_they_get_alone(engine: Any, address: str,
                                                                       real_queries: dict[str, list[pb.Query]],
                                                                       modality: str) -> None:
    values = real_queries[modality]
    requests = [values[start:start + size] for start, size in zip([0, 1, 3, 6, 10, 11], [1, 2, 3, 4, 1, 5])]
    with Client(address, timeout=60) as client:
        alone = [client.embed(request) for request in requests]
    calls = [lambda client, request=request: client.embed(request) for request in requests]
    batched = [future.result() for future in _behind_one_call(engine, address, calls)]
    for got, expected in zip(batched, alone):
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_a_bad_request_in_a_batch_fails_alone(engine: Any, address: str,
                                              real_queries: dict[str, list[pb.Query]]) -> None:
    ids, clips = real_queries["id"][:3], real_queries["audio"][:3]
    unknown = pb.Query(id="no-such-film-anywhere")
    bad_clip = pb.Query(audio=pb.Audio(content=b"RIFF but not a wav file at all"))
    calls = [lambda client, query=query: client.embed([query]) for query in [*ids, unknown]]
    futures = _behind_one_call(engine, address, calls)  # the unknown id fails the shared call
    assert all(future.exception() is None for future in futures[:-1])
    assert isinstance(futures[-1].exception(), NotFound)
    calls = [lambda client, query=query: client.embed([query]) for query in [*clips, bad_clip]]
    futures = _behind_one_call(engine, address, calls, queue=len(clips) - 1)
    assert all(future.exception() is None for future in futures[:-1])
    assert isinstance(futures[-1].exception(), InvalidArgument)
