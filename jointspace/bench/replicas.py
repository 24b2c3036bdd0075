"""How far read replicas lag behind the writer, under query load: one `jointspace serve` writer
and N readers (`--role reader`) over one index directory, each a child process.

Each upsert is acknowledged by the writer, then every reader's GetEntries is polled without a
pause until it serves that upsert; a reader's lag is the time from the acknowledgement to the
first answer that holds it (so it includes one GetEntries call, well under a millisecond on
loopback). Writes are spaced by a random pause of up to one follow interval, so that they land
at random points of the readers' poll cycles: written back to back, each would land just after
the poll that saw the one before and wait a whole interval. Meanwhile a query loop per reader
(bench/rebuild.py's) searches without a pause: failed queries are reported, and the target is
none. Halfway through, the writer rebuilds from the catalog, and the time from the operation's
end to each reader serving the new generation is reported beside the writes' lag.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jointspace.bench.rebuild import QueryLoop
from jointspace.bench.serve_process import ServeProcess
from jointspace.data.vectors import clustered_vectors, write_vector_catalog
from jointspace.encoders.manifest import read_manifest

KEY_PREFIX = "replica-lag:"
GIVE_UP_SECONDS = 300.0  # a reader this far behind is broken, not slow


def run(model: Path, rows: int, readers: int, upserts: int, interval: float, work: Path | None,
        seed: int = 0) -> dict[str, Any]:
    """Build a catalog of `rows` clustered vectors, serve it with a writer and `readers` readers
    polling every `interval` seconds, and measure; `work` keeps the catalog and the index."""
    if work is None:
        with tempfile.TemporaryDirectory(prefix="jointspace-bench-replicas-") as temporary:
            return run(model, rows, readers, upserts, interval, Path(temporary), seed)
    work.mkdir(parents=True, exist_ok=True)
    vectors = clustered_vectors(rows, read_manifest(model).dim, seed)
    catalog = work / "catalog.jsonl"
    write_vector_catalog(catalog, vectors)
    subprocess.run([sys.executable, "-m", "jointspace.cli", "index", "build", "--model", str(model), str(catalog),
                    "--out", str(work / "index")], check=True, capture_output=True)
    common = ["--model", str(model), "--index", str(work / "index"), "--port", "0", "--log-format", "json"]
    reader_args = ["--role", "reader", "--follow-interval-seconds", str(interval)]
    processes = [ServeProcess(common)] + [ServeProcess([*common, *reader_args]) for _ in range(readers)]
    try:
        addresses = [f"127.0.0.1:{p.wait_for('listening on', timeout=300)['port']}" for p in processes]
        result = measure(addresses[0], addresses[1:], catalog, upserts, vectors[:upserts], interval, seed)
    finally:
        for process in processes:
            process.process.terminate()
        for process in processes:
            process.process.wait(timeout=60)
    return {"rows": rows, "readers": readers, "follow_interval_seconds": interval, **result}


def measure(writer: str, readers: Sequence[str], catalog: Path, upserts: int, vectors: np.ndarray,
            spacing: float, seed: int = 0) -> dict[str, Any]:
    """Lag of `upserts` acknowledged writes, spaced by random pauses of up to `spacing` seconds
    (and of a rebuild from `catalog`, a path on the writer's file system, halfway) on each reader,
    under a query loop per reader; `vectors` (at least `upserts` rows) are the values written and
    the queries searched."""
    from jointspace.client import Client

    pauses = np.random.default_rng(seed).uniform(0, spacing, upserts)
    clients = [Client(address, timeout=60) for address in (writer, *readers)]
    loops = [QueryLoop(address, vectors) for address in readers]
    try:
        for client in clients:
            client.wait_ready(timeout=600)
        for loop in loops:
            loop.thread.start()
        lags: list[list[float]] = [[] for _ in readers]
        swap: list[float] = []
        for number in range(upserts):
            if number == upserts // 2:
                swap = _rebuild_lag(clients[0], clients[1:], catalog)
            time.sleep(pauses[number])
            entry = {"key": f"{KEY_PREFIX}{number}", "vector": vectors[number].tolist(), "metadata": {"n": number}}
            clients[0].upsert([entry])
            for position, lag in enumerate(_lags(clients[1:], entry["key"], number)):
                lags[position].append(lag)
    finally:
        for loop in loops:
            loop.stop.set()
        for loop in loops:
            if loop.thread.is_alive():
                loop.thread.join()
        for client in clients:
            client.close()
    every = [lag for reader in lags for lag in reader]
    return {
        "upserts": upserts,
        "lag_ms": _percentiles(every),
        "lag_ms_by_reader": [_percentiles(reader) for reader in lags],
        "rebuild_swap_lag_ms_by_reader": [round(seconds * 1000, 1) for seconds in swap],
        "queries_during": sum(len(loop.calls) for loop in loops),
        "failed_queries": sum(len(loop.errors) for loop in loops),
        "first_errors": [error for loop in loops for error in loop.errors][:3],
    }


def _lags(readers: Sequence[Any], key: str, number: int) -> list[float]:
    """Seconds from now until each reader serves `key` as written by upsert `number`."""
    return _until_each(readers, lambda reader: [e.metadata.get("n") for e in reader.get_entries([key])] == [number])


def _rebuild_lag(writer: Any, readers: Sequence[Any], catalog: Path) -> list[float]:
    """Rebuild on the writer; seconds from the operation's end until each reader serves its generation."""
    done = writer.wait(writer.rebuild([catalog]).name, poll=0.05, timeout=3600)
    if not done.generation:
        raise RuntimeError(f"the rebuild did not succeed: {done.error.message if done.error else done.state}")
    return _until_each(readers, lambda reader: reader.info().generation == done.generation)


def _until_each(readers: Sequence[Any], serves: Callable[[Any], bool]) -> list[float]:
    """Seconds from now until `serves(reader)` holds, for each reader, polled without a pause."""
    started = time.monotonic()
    seen: dict[int, float] = {}
    while len(seen) < len(readers):
        if time.monotonic() - started > GIVE_UP_SECONDS:
            raise RuntimeError(f"readers {sorted(set(range(len(readers))) - set(seen))} did not catch up "
                               f"within {GIVE_UP_SECONDS} s")
        for position, reader in enumerate(readers):
            if position not in seen and serves(reader):
                seen[position] = time.monotonic() - started
    return [seen[position] for position in range(len(readers))]


def _percentiles(seconds: Sequence[float]) -> dict[str, float]:
    values = np.asarray(seconds) * 1000
    return {"p50": round(float(np.median(values)), 1), "p90": round(float(np.percentile(values, 90)), 1),
            "max": round(float(values.max()), 1)}
