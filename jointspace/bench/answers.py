"""What a BatchSearch answer costs to build from FAISS's arrays, message by message
(`convert.messages_to_results`) against written in protobuf's wire format with array operations
(`convert.ranked_to_results`), both parsed back into the message the service returns. The
smallest batch where the arrays win is where `convert.WIRE_FROM_HITS` belongs.

No server and no search: the arrays are random rows of a key set shaped like a catalog's
("item:123456"), so the figure is the answer's own cost. The two ways alternate, batch size by
batch size, so that load from other processes falls on both.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from jointspace.server.index.searching import Ranked


def run(batches: Sequence[int] = (4, 16, 32, 64, 128, 256), k: int = 10, keys: int = 100_000,
        passes: int = 5, seconds: float = 0.2) -> dict[str, Any]:
    from jointspace.server.api.convert import WIRE_FROM_HITS
    from jointspace.server.index.packed_keys import PackedKeys
    from jointspace.server.index.searching import Ranked

    rng = np.random.default_rng(0)
    names = np.asarray([f"item:{100_000 + i}" for i in range(keys)], dtype=object)
    packed = PackedKeys.of(names)
    rows: list[dict[str, Any]] = []
    for batch in batches:
        scores = -np.sort(-rng.random((batch, k), dtype=np.float32), axis=1)
        found = Ranked("vector", names, packed, rng.integers(0, keys, (batch, k)), scores)
        ways = _ways(found)
        if ways["messages"]() != ways["arrays"]():
            raise AssertionError(f"batch {batch}: the two ways answer differently")
        times: dict[str, list[float]] = {way: [] for way in ways}
        for _ in range(passes):
            for way, build in ways.items():
                times[way].append(_seconds_per_call(build, seconds))
        medians = {way: float(np.median(values)) for way, values in times.items()}
        rows.append({"batch": batch, "hits": batch * k, "messages_us": round(medians["messages"] * 1e6, 1),
                     "arrays_us": round(medians["arrays"] * 1e6, 1),
                     "arrays_vs_messages": round(medians["arrays"] / medians["messages"], 3)})
    cheaper = [row["hits"] for row in rows if row["arrays_vs_messages"] < 1]
    return {"k": k, "keys": keys, "passes": passes, "rows": rows, "wire_from_hits": WIRE_FROM_HITS,
            "arrays_cheaper_from_hits": min(cheaper) if cheaper else None}


def _ways(found: Ranked) -> dict[str, Callable[[], Any]]:
    """Each way of answering `found`, parsed as the service parses it."""
    from jointspace.server.api.convert import messages_to_results, ranked_to_results
    from jointspace.v1 import jointspace_pb2 as pb

    no_thresholds: list[float | None] = [None] * len(found.rows)
    return {"messages": lambda: pb.BatchSearchResponse.FromString(messages_to_results(found, no_thresholds, "g")),
            "arrays": lambda: pb.BatchSearchResponse.FromString(ranked_to_results(found, no_thresholds, "g"))}


def _seconds_per_call(call: Callable[[], Any], seconds: float) -> float:
    calls, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        call()
        calls += 1
    return elapsed / calls


def table(report: dict[str, Any]) -> str:
    lines = [f"{'batch':>6s} {'hits':>6s} {'messages us':>12s} {'arrays us':>10s} {'arrays/messages':>16s}"]
    lines += [f"{r['batch']:6d} {r['hits']:6d} {r['messages_us']:12,.1f} {r['arrays_us']:10,.1f} "
              f"{r['arrays_vs_messages']:16.3f}" for r in report["rows"]]
    lines.append(f"arrays cheaper from {report['arrays_cheaper_from_hits']} hits measured; "
                 f"the service switches at WIRE_FROM_HITS = {report['wire_from_hits']}")
    return "\n".join(lines)
