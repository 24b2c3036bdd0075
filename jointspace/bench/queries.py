"""End-to-end latency of encoded queries: Search (or Embed, the encoder alone) with a query of
each modality the model answers (ids, histories, text, audio), sent to a real `jointspace
serve`, with a raw vector query beside them (no encoder: the index alone), each split into where
its time went.

The server times its own steps (jointspace.core.stages, read from its Prometheus endpoint):
audio decoding, encoding (the model call and any wait for a shared one), the index search, and
the rest of its work (request and response conversion, waiting for a worker thread). Transport
is what the client saw beyond the server's whole call: the wire, gRPC on both ends, the client's
own Python. Shares are of the mean latency (in a closed loop, clients / q/s).

The same queries run against a server that shares encoder calls among concurrent requests
(`--encode-batching on`) and one that does not, alternately, with the server processes' CPU time
per query (decode workers included): what batching saves, or costs, at each concurrency.

Queries come from pair rows (the views of each modality in them), so the measured inputs are
the real kind the model was trained on: audio clips go over the wire as their file bytes.
"""

from __future__ import annotations

import shutil
import tempfile
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jointspace.bench.load import run_load
from jointspace.bench.peers import cpu_seconds
from jointspace.bench.searchers import Target, open_searcher
from jointspace.bench.serve import SERVE, _Running, _servers
from jointspace.core.progress import log
from jointspace.core.stages import DECODE, EMBED, SEARCH, STAGES

K = 10
PER_MODALITY = 200  # distinct queries of each modality, cycled through by the clients
VECTOR = "vector"
SHARES = ("decode", "encode", "search", "server_other", "transport")
# The server's whole calls of the measured method (every status code), from its Prometheus endpoint.
CALL_SECONDS = {"jointspace_grpc_request_duration_seconds_sum": "total",
                "jointspace_grpc_request_duration_seconds_count": "calls"}
METHODS = {"search": "Search", "embed": "Embed"}  # Embed: the encoder alone, no index


def query_requests(pair_files: Sequence[Path], modalities: Sequence[str], dim: int,
                   seed: int = 0) -> dict[str, list[bytes]]:
    """Serialized Query messages per modality the model answers, from the views in the pair
    files, plus random unit vectors under "vector"."""
    from jointspace.client import make_query
    from jointspace.data.pairs import modality_of, read_pairs

    rows = read_pairs(pair_files)
    values: dict[str, list[Any]] = {}
    for name, column in rows.views.items():
        modality = modality_of(name)
        if modality in modalities:
            values.setdefault(modality, []).extend(v for v in column if v is not None)
    rng = np.random.default_rng(seed)
    out: dict[str, list[bytes]] = {}
    for modality, found in sorted(values.items()):
        unique = list({repr(v): v for v in found}.values())
        chosen = [unique[i] for i in rng.permutation(len(unique))[:PER_MODALITY]]
        key = "audio_path" if modality == "audio" else modality
        out[modality] = [make_query(**{key: v}).SerializeToString() for v in chosen]
    vectors = rng.normal(size=(PER_MODALITY, dim)).astype(np.float32)
    out[VECTOR] = [make_query(vector=v).SerializeToString() for v in vectors]
    return out


def run(model: Path, index: Path, pair_files: Sequence[Path], seconds: float = 5.0,
        concurrency: Sequence[int] = (1, 16), batching: Sequence[str] = ("on", "off"),
        workers: int | None = None, call: str = "search") -> dict[str, Any]:
    """{"rows": [{modality, batching, clients, qps, p50_ms, p99_ms, errors, calls,
    server_cpu_us_per_query, shares: {decode, encode, search, server_other, transport}}]}."""
    from jointspace.encoders.manifest import read_manifest

    manifest = read_manifest(model)
    requests = query_requests(pair_files, manifest.modalities, manifest.dim)
    with tempfile.TemporaryDirectory(prefix="jointspace-bench-queries-") as work:
        # One writer per index directory: each further server gets a copy of its own.
        indexes = [index, *(shutil.copytree(index, Path(work) / mode) for mode in batching[1:])]
        commands = [(SERVE, ["--model", str(model), "--index", str(served), "--metrics-port", "0",
                             "--encode-batching", mode, *(["--workers", str(workers)] if workers else [])])
                    for mode, served in zip(batching, indexes)]
        rows = _measure_all(commands, batching, requests, concurrency, seconds, call)
    return {"k": K, "seconds": seconds, "workers": workers or "default", "call": METHODS[call], "rows": rows}


def _measure_all(commands: Sequence[tuple[tuple[str, ...], list[str]]], batching: Sequence[str],
                 requests: dict[str, list[bytes]], concurrency: Sequence[int], seconds: float,
                 call: str) -> list[dict[str, Any]]:
    """Each modality at each concurrency on each server in turn, the servers' order swapped
    from one measurement to the next (the first of a pair is not always the same server)."""
    rows: list[dict[str, Any]] = []
    with _servers(*commands) as running:
        servers = [(mode, server, _metrics_url(server)) for mode, server in zip(batching, running)]
        for _, server, _ in servers:
            _warm(server, requests, call)
        measurement = 0
        for modality, queries in requests.items():
            units = np.array(queries, dtype=object)
            for count in concurrency:
                # A vector query has no encoder call to share: the first server alone.
                turn = servers[:1] if modality == VECTOR else servers[::-1] if measurement % 2 else servers
                for mode, server, url in turn:
                    row = {"modality": modality, "batching": mode,
                           **_measure(server, url, units, count, seconds, call)}
                    log(f"{modality}, batching {mode}, {count} clients: {row}")
                    rows.append(row)
                measurement += 1
    return sorted(rows, key=lambda row: (row["modality"], row["clients"], batching.index(row["batching"])))


def _warm(server: _Running, requests: dict[str, list[bytes]], call: str) -> None:
    """Every query once, before anything is measured: the first calls of a modality set up
    TensorFlow's functions lazily, and the clients' own warm-up is short."""
    searcher = open_searcher(_target(server, call), K)
    for queries in requests.values():
        for unit in searcher.prepare(np.array(queries, dtype=object), 1):
            searcher.call(unit)
    searcher.close()


def _target(server: _Running, call: str) -> Target:
    return Target("jointspace-requests", server.address, {"method": call})


def _metrics_url(server: _Running) -> str:
    port = server.process.wait_for("metrics on", timeout=60)["metrics_port"]
    return f"http://127.0.0.1:{port}/metrics"


def _measure(server: _Running, url: str, units: np.ndarray, clients: int, seconds: float,
             call: str) -> dict[str, Any]:
    """One closed-loop load of `call`s, with the server's stages and CPU time over the same span."""
    started: list[tuple[float, dict[str, float]]] = []
    method = METHODS[call]
    result = run_load(_target(server, call), units, K, clients, seconds,
                      at_start=lambda: started.append((_tree_cpu_seconds(server.pid), _server_seconds(url, method)))
                      ).as_dict()
    after = _server_seconds(url, method)
    [(cpu, before)] = started
    calls = max(after["calls"] - before["calls"], 1)
    per_call = {name: (after[name] - before[name]) / calls for name in after}
    result["server_cpu_us_per_query"] = round((_tree_cpu_seconds(server.pid) - cpu) / calls * 1e6)
    result["shares"] = shares(per_call, clients / result["qps"] if result["qps"] else 0.0)
    return result


def shares(per_call: dict[str, float], latency: float) -> dict[str, float]:
    """Fractions of a call's mean latency (seconds) by where it went, from the server's seconds
    per call in each stage and in the whole call ("total")."""
    if latency <= 0:
        return dict.fromkeys(SHARES, 0.0)
    seconds = {"decode": per_call[DECODE], "encode": per_call[EMBED] - per_call[DECODE],
               "search": per_call[SEARCH], "server_other": per_call["total"] - per_call[EMBED] - per_call[SEARCH],
               "transport": latency - per_call["total"]}
    return {name: round(value / latency, 4) for name, value in seconds.items()}


def _server_seconds(url: str, method: str) -> dict[str, float]:
    """Cumulative seconds the server spent in each stage and in calls of `method`, and those calls."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=30) as answer:
        text = answer.read().decode()
    found = dict.fromkeys([*STAGES, "total", "calls"], 0.0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "jointspace_query_stage_seconds_sum":
                found[sample.labels["stage"]] += sample.value
            elif sample.name in CALL_SECONDS and sample.labels.get("method") == method:
                found[CALL_SECONDS[sample.name]] += sample.value
    return found


def _tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and all its descendants now alive (the server's audio decoders)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # the process ended while being read
    family, grew = {pid}, True
    while grew:
        children = {child for child, parent in parents.items() if parent in family} - family
        family |= children
        grew = bool(children)
    total = 0.0
    for member in family:
        try:
            total += cpu_seconds(member)
        except (OSError, IndexError):
            continue
    return total


def format_table(report: dict[str, Any]) -> str:
    lines = [f"{report['call']} latency over loopback by query kind, k = {report['k']}, {report['seconds']:g} s per "
             f"measurement, server workers: {report['workers']}; shares of the mean latency",
             "", f"{'query':7s} {'batching':8s} {'clients':>7s} {'q/s':>7s} {'p50 ms':>7s} {'p99 ms':>7s} "
                 f"{'CPU µs/q':>8s} {'decode':>6s} {'encode':>6s} {'search':>6s} {'server':>6s} "
                 f"{'wire':>6s} {'errors':>6s}"]
    for row in report["rows"]:
        parts = "".join(f" {row['shares'][name]:6.0%}" for name in SHARES)
        lines.append(f"{row['modality']:7s} {row['batching']:8s} {row['clients']:7d} {row['qps']:7,.0f} "
                     f"{row['p50_ms']:7.2f} {row['p99_ms']:7.2f} {row['server_cpu_us_per_query']:8,}{parts} "
                     f"{row['errors']:6d}")
    return "\n".join(lines)
