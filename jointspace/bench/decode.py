"""What decoding audio in worker processes (encoders/impl/decode_pool.py) adds to an audio query.

One in-process server answers audio Searches over real gRPC; passes alternate between decoding
in the pool and decoding in the server process, so that load from other processes on a shared
machine falls on both. Reported: the median latency of each, of a whole Search and of the
decode alone, and their difference.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jointspace.core.progress import log
from jointspace.data import fsdd


def _median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1e3, 3)


def _timed(call: Callable[[Any], Any], items: list[Any]) -> list[float]:
    times = []
    for item in items:
        started = time.perf_counter()
        call(item)
        times.append(time.perf_counter() - started)
    return times


def run(model: Path, index: Path, clips: int = 50, passes: int = 5) -> dict[str, Any]:
    from jointspace.client import Client, make_query
    from jointspace.encoders.impl import decode_pool
    from jointspace.encoders.impl.audio_decode import decode_to_rate
    from jointspace.server.api.app import start_server
    from jointspace.server.serving.engine import Engine
    from jointspace.v1 import jointspace_pb2 as pb

    contents = [c.path.read_bytes() for c in fsdd.list_clips(fsdd.shipped_fsdd_dir())[:clips]]
    engine = Engine(model, index)
    [rate] = [e.settings["audio"]["sample_rate"] for e in engine.served.encoders.manifest.encoders.values()
              if "audio" in e.modalities]
    had_pool = decode_pool.shared_pool() is not None  # a server of this process keeps its pool
    running = start_server(engine, port=0)
    by_mode: dict[str, dict[str, list[float]]] = {m: {"search": [], "decode": []} for m in ("pool", "in_process")}
    try:
        with Client(f"127.0.0.1:{running.port}", timeout=60) as client:
            client.wait_ready()
            requests = [pb.SearchRequest(query=make_query(audio=c), k=10) for c in contents]
            for number in range(passes):
                for mode in ("pool", "in_process"):
                    pool = decode_pool.start_shared_pool() if mode == "pool" else None
                    if pool is None:
                        decode_pool.stop_shared_pool()
                        decode = functools.partial(decode_to_rate, sample_rate=rate, limits=engine.limits)
                    else:
                        decode = functools.partial(pool.decode, sample_rate=rate, pcm_sample_rate=None,
                                                   limits=engine.limits)
                        decode(contents[0])  # waits until the workers are up
                    client.stub.Search(requests[0], timeout=60)
                    by_mode[mode]["search"] += _timed(lambda r: client.stub.Search(r, timeout=60), requests)
                    by_mode[mode]["decode"] += _timed(decode, contents)
                log(f"pass {number + 1}/{passes} done")
    finally:
        running.stop(grace=1.0)
        decode_pool.stop_shared_pool()
        if had_pool:
            decode_pool.start_shared_pool()
    result: dict[str, Any] = {"clips": len(contents), "passes": passes, "pool_size": decode_pool.default_size()}
    for what in ("search", "decode"):
        pool_ms, local_ms = (_median_ms(by_mode[m][what]) for m in ("pool", "in_process"))
        result[f"{what}_median_ms"] = {"pool": pool_ms, "in_process": local_ms,
                                       "added_by_pool": round(pool_ms - local_ms, 3)}
    return result
