"""`jointspace bench serve`: how fast the real server answers vector queries, beside what bounds
it, in one run on one machine.

An index of clustered vectors (data/vectors.py) is built once with `jointspace index build` (kept
in --work for the next run) and served by `jointspace serve` in a child process. Beside it run
(a) the no-op server (noop_server.py: the same server stack, prebuilt answers) = the ceiling of
what the stack allows, and the same no-op server answering each query with the hits of its FAISS
search (the least work any server must do: decode, search, build the same response) = the ceiling
of any server on this stack that must search this index (jointspace's gap to the first ceiling
is FAISS's share plus its own; the second ceiling isolates its own), (b) FAISS in this process
on the same index file = the floor of work, and (c) milvus-lite and chromadb when installed
(peers.py), loaded with the same vectors and tuned to the same recall. Clients are separate
processes (load.py). jointspace and the ceilings are measured alternately, step by step, so that
drift of a shared machine hits them alike; the figures that matter are the ratios between them,
each taken within a round (`paired`).

Server memory is the resident set (/proc) after the load, beside the index file's own size and a
base: the same server serving a 1,000-vector index (Python, TensorFlow and the model loaded).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from jointspace.bench.load import LoadResult, run_load
from jointspace.bench.peers import PEERS, cpu_seconds, rss_bytes
from jointspace.bench.searchers import Target, recall_at_k, search_all
from jointspace.bench.serve_process import ServeProcess
from jointspace.core.progress import log
from jointspace.data.vectors import as_catalog_holds, clustered_vectors, write_vector_catalog
from jointspace.encoders.manifest import read_manifest

if TYPE_CHECKING:
    from jointspace.client import IndexInfo

K = 10
QUERIES = 1_000
PEER_TARGET = ("milvus", "chroma")  # issue 6 compares with both
BASE_VECTORS = 1_000
TARGETS = {"single_qps_16_clients_vs_ceiling": 0.8, "single_qps_16_clients_vs_peers": 3.0,
           "batch_qps_vs_faiss": 0.5, "p99_ms_1_client": 2.0, "rss_over_base_vs_index_size": 1.5,
           # issue 27: jointspace's own work per Search at the floor that searching itself sets
           "search_cpu_vs_ceiling_faiss": 1.1, "search_qps_vs_ceiling_faiss": 0.95, "largest_batch_qps_vs_faiss": 0.8}
UPPER_BOUNDS = ("p99", "rss", "search_cpu")  # targets met at or below their value


def run(vectors: int = 1_000_000, dim: int = 32, work: Path | None = None, seconds: float = 10.0,
        target_recall: float = 0.95, clients: Sequence[int] = (1, 4, 16), batches: Sequence[int] = (64, 256),
        peers: Sequence[str] = ("milvus", "chroma"), seed: int = 0, model: Path | None = None,
        rounds: int = 1) -> dict[str, Any]:
    """The report (see `format_table`); `work` keeps the model, catalog, indexes and peers' data.
    `model`: any exported model (its dimension replaces `dim`); by default a small one is trained.
    `rounds`: how many times each server is measured on each workload (`_alternate`)."""
    if work is None:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="jointspace-bench-serve-") as scratch:
            return run(vectors, dim, Path(scratch), seconds, target_recall, clients, batches, peers, seed, model,
                       rounds)
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    model = model or _model(work, dim)
    dim = read_manifest(model).dim
    data = clustered_vectors(vectors + QUERIES, dim, seed)
    catalog, queries = data[:vectors], data[vectors:]
    exact = _exact(as_catalog_holds(catalog), queries)
    index = _index(work / "index", model, catalog, target_recall, work / "catalog.jsonl", seed)
    base_index = _index(work / "base-index", model, catalog[:BASE_VECTORS], target_recall,
                        work / "base-catalog.jsonl", seed)

    report: dict[str, Any] = {"vectors": vectors, "dim": dim, "k": K, "queries": QUERIES, "seconds": seconds,
                              "rounds": rounds, "target_recall": target_recall, "cpu_cores": _cores()}
    with _servers((SERVE, ["--model", str(model), "--index", str(index)]), (NOOP, ["--k", str(K)]),
                  (NOOP, ["--k", str(K), "--index", str(index)]),
                  (SERVE, ["--model", str(model), "--index", str(base_index)])) as (served, ceiling, searching, base):
        info = _info(served.address)
        report["index"] = {"type": info.index_type, "file_bytes": _index_bytes(index)}
        report["recall"] = recall_at_k(search_all(served.target, queries, K), exact)
        _settle([served, ceiling, searching], queries, max(clients), seconds)
        report["jointspace"], report["ceiling"], report["ceiling_faiss"] = _alternate(
            [served, ceiling, searching], queries, clients, batches, seconds, rounds)
        search_all(base.target, queries, K)  # the same work once, so that lazy allocations are made
        report["memory"] = {"server_rss_bytes": rss_bytes(served.pid), "base_rss_bytes": rss_bytes(base.pid)}
        log(f"recall@{K} {report['recall']}, memory {json.dumps(report['memory'])}")
    report["faiss"] = _faiss_floor(index, queries, batches, seconds, rounds)
    report["peers"] = {name: _peer(name, work / name, catalog, queries, exact, target_recall, clients, seconds)
                       for name in peers}
    report["ratios"] = ratios(report)
    report["targets"] = targets(report)
    return report


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0))


def _exact(catalog: np.ndarray, queries: np.ndarray) -> np.ndarray:
    import faiss

    _, rows = faiss.knn(queries, catalog, K, metric=faiss.METRIC_INNER_PRODUCT)
    return rows


def _model(work: Path, dim: int) -> Path:
    from jointspace.bench.build import _train_model

    model = work / "model"
    if (model / "manifest.json").is_file() and read_manifest(model).dim == dim:
        return model
    log(f"training a small model of dimension {dim} (every generation names the model that built it)")
    _train_model(dim, model)
    return model


def _index(out: Path, model: Path, vectors: np.ndarray, target_recall: float, catalog: Path, seed: int) -> Path:
    """A generation of `vectors` built by `jointspace index build`, reused when one with the same
    recipe is there already."""
    recipe = {"vectors": len(vectors), "dim": int(vectors.shape[1]), "seed": seed, "target_recall": target_recall}
    stamp = out / "bench-recipe.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == recipe:
        log(f"reusing the index in {out}")
        return out
    from jointspace.encoders.inference import EncoderSet
    from jointspace.server.build.local_builder import build_generation

    log(f"writing {len(vectors)} vectors to {catalog} and building {out}")
    write_vector_catalog(catalog, vectors)
    started = time.monotonic()
    build_generation(EncoderSet(model), [catalog], out, "auto", target_recall)
    log(f"built {out} in {time.monotonic() - started:.0f} s")
    catalog.unlink()
    stamp.write_text(json.dumps(recipe))
    return out


class _Running:
    def __init__(self, process: ServeProcess, port: int) -> None:
        self.process, self.pid, self.address = process, process.process.pid, f"127.0.0.1:{port}"
        self.target = Target("jointspace", self.address)


NOOP = ("-m", "jointspace.bench.noop_server")
SERVE = ("-m", "jointspace.cli", "serve")


@contextmanager
def _servers(*commands: tuple[tuple[str, ...], list[str]]) -> Iterator[list[_Running]]:
    """Child servers, (program, args) each, started together (loading overlaps), each ready
    (health SERVING) when entered; stopped on the way out."""
    from jointspace.client import Client

    processes = [ServeProcess([*args, "--port", "0", "--log-format", "json"], program=program)
                 for program, args in commands]
    try:
        running = [_Running(p, p.wait_for("listening on", timeout=300)["port"]) for p in processes]
        for server in running:
            with Client(server.address) as client:
                client.wait_ready(timeout=600)
        yield running
    finally:
        for process in processes:
            process.process.terminate()
        for process in processes:
            process.process.wait(timeout=60)


def _info(address: str) -> IndexInfo:
    from jointspace.client import Client

    with Client(address) as client:
        return client.info()


def _index_bytes(index: Path) -> int:
    from jointspace.server.index.index_directory import IndexDirectory

    return sum(f.stat().st_size for f in IndexDirectory(index).current_path().glob("index-*.faiss"))


def _workloads(clients: Sequence[int], batches: Sequence[int]) -> list[tuple[str, int, int]]:
    """(name, clients, queries per call): single queries at each client count, then batches.
    Batches are a throughput measurement, beside FAISS on every core: one client per core, so
    that the server is not left idle while a lone client builds its next request and reads the
    last answer."""
    return ([(f"search_{c}_clients", c, 1) for c in clients] +
            [(f"batch_{b}", _cores(), b) for b in batches])


def _settle(servers: list[_Running], queries: np.ndarray, clients: int, seconds: float) -> None:
    """A load on each server that is not measured: a server's first seconds under load after it
    started ran far slower than its later ones, with long stalls (docs/benchmarks.md, "Serving
    speed"), and would otherwise fall on whichever server opens the first round."""
    for server in servers:
        run_load(server.target, queries, K, clients, seconds)


def _alternate(servers: list[_Running], queries: np.ndarray, clients: Sequence[int], batches: Sequence[int],
               seconds: float, rounds: int = 1) -> list[dict[str, Any]]:
    """Each workload on each server in turn, `rounds` times: one result dict per server, each
    workload's figures with the server process's own CPU time per call (what the ratio of rates
    hides: on shared cores the clients' CPU is in both rates). With several rounds a figure is
    the median of its rounds: one measurement of a few seconds on a shared machine moves a
    server's rate by up to a tenth, and the median of alternated rounds keeps one unlucky
    stretch from deciding a ratio. The servers take turns to open a round, so that none always
    runs straight after the same other one (whose clients and caches it would inherit)."""
    results: list[dict[str, Any]] = [{} for _ in servers]
    for name, count, batch in _workloads(clients, batches):
        measured: list[list[dict[str, Any]]] = [[] for _ in servers]
        for turn in range(rounds):
            first = turn % len(servers)
            for position in [*range(first, len(servers)), *range(first)]:
                server, figures = servers[position], measured[position]
                before = cpu_seconds(server.pid)
                figures.append(run_load(server.target, queries, K, count, seconds, batch).as_dict())
                figures[-1]["server_cpu_us_per_call"] = round((cpu_seconds(server.pid) - before)
                                                              / figures[-1]["calls"] * 1e6)
                log(f"{name} against {server.address}: {json.dumps(figures[-1])}")
        for result, figures in zip(results, measured):
            result[name] = median_figures(figures)
    return results


ROUNDS_OF = {"qps": "qps_rounds", "server_cpu_us_per_call": "cpu_rounds"}  # figure: its value in each round


def median_figures(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One workload's figures over its rounds: each number's median (counts summed), and the
    rate and server CPU of every round beside them (`paired` compares servers round by round)."""
    if len(rounds) == 1:
        return rounds[0]
    summed = ("calls", "errors")
    out = {key: sum(r[key] for r in rounds) if key in summed else
           type(value)(np.median([r[key] for r in rounds])) for key, value in rounds[0].items()}
    for figure, per_round in ROUNDS_OF.items():
        if figure in rounds[0]:
            out[per_round] = [r[figure] for r in rounds]
    return out


def paired(mine: dict[str, Any], other: dict[str, Any], figure: str) -> float:
    """`figure` of `mine` over `other`'s: the median of the two servers' ratios round by round
    where both were measured in rounds. The servers of one round ran within seconds of each
    other, while a shared machine's speed drifts between rounds by more than the gaps measured;
    a ratio of the two medians could pair one server's fast round with the other's slow one."""
    per_round = ROUNDS_OF[figure]
    if per_round in mine and per_round in other:
        return float(np.median([a / b for a, b in zip(mine[per_round], other[per_round])]))
    return mine[figure] / other[figure]


def _faiss_floor(index_dir: Path, queries: np.ndarray, batches: Sequence[int], seconds: float,
                 rounds: int = 1) -> dict[str, Any]:
    """FAISS in this process on the served generation's index, with its tuned search depth:
    one query per call, then whole batches (FAISS spreads a batch over its OpenMP threads), each
    the median of `rounds` measurements, as the servers' figures are."""
    import faiss

    from jointspace.bench.noop_server import served_generation

    log("FAISS in-process on the same index")
    index = served_generation(index_dir).indexes["vector"]
    floor: dict[str, Any] = {"threads": faiss.omp_get_max_threads()}
    for name, batch in [("search_1_clients", 1)] + [(f"batch_{batch}", batch) for batch in batches]:
        floor[name] = median_figures([_timed(lambda q: index.search(q, K), queries, batch, seconds)
                                      for _ in range(rounds)])
    log(f"FAISS: {json.dumps(floor)}")
    return floor


def _timed(search: Any, queries: np.ndarray, batch: int, seconds: float) -> dict[str, Any]:
    units = [np.ascontiguousarray(queries[s : s + batch]) for s in range(0, len(queries) - batch + 1, batch)]
    latencies: list[float] = []
    started = now = time.perf_counter()
    while now - started < seconds:
        search(units[len(latencies) % len(units)])
        after = time.perf_counter()
        latencies.append(after - now)
        now = after
    result = LoadResult(1, batch, len(latencies) * batch / (now - started), len(latencies),
                        float(np.percentile(latencies, 50) * 1000), float(np.percentile(latencies, 99) * 1000), 0)
    return result.as_dict()


def _peer(name: str, work: Path, catalog: np.ndarray, queries: np.ndarray, exact: np.ndarray,
          target_recall: float, clients: Sequence[int], seconds: float) -> dict[str, Any]:
    """A peer's figures, or {"skipped": reason}: not installed, or failed to start, load or answer."""
    if name not in PEERS:
        return {"skipped": f"unknown peer {name!r}; known: {', '.join(PEERS)}"}
    peer = PEERS[name](work)
    reason = peer.unavailable()
    if reason is not None:
        log(f"{name}: skipped, {reason}")
        return {"skipped": reason}
    try:
        log(f"{name}: starting, loading {len(catalog)} vectors")
        peer.start()
        started = time.monotonic()
        peer.load(catalog)
        result: dict[str, Any] = {"load_seconds": round(time.monotonic() - started, 1)}
        result["tuning"] = peer.tune(queries, exact, target_recall, K)
        log(f"{name}: loaded in {result['load_seconds']} s, tuned: {json.dumps(result['tuning'])}")
        result["recall"] = result["tuning"]["recall"]
        for workload, count, batch in _workloads(clients, ()):
            result[workload] = run_load(peer.target, queries, K, count, seconds, batch).as_dict()
            log(f"{name}: {workload}: {json.dumps(result[workload])}")
        result["rss_bytes"] = peer.rss()
        return result
    except Exception as error:  # reported in the table, never replaced by a number
        log(f"{name}: skipped, {type(error).__name__}: {error}")
        return {"skipped": f"failed: {type(error).__name__}: {error}"}
    finally:
        peer.stop()


def ratios(report: dict[str, Any]) -> dict[str, Any]:
    """Every ratio from the measured figures in the report; between servers, round by round
    (`paired`)."""
    mine, ceiling, searching, floor = report["jointspace"], report["ceiling"], report["ceiling_faiss"], report["faiss"]
    out: dict[str, Any] = {
        "vs_ceiling": {w: round(paired(mine[w], ceiling[w], "qps"), 3) for w in mine},
        "vs_ceiling_faiss": {w: round(paired(mine[w], searching[w], "qps"), 3) for w in mine},
        "ceiling_faiss_vs_ceiling": {w: round(paired(searching[w], ceiling[w], "qps"), 3) for w in mine},
        # FAISS in-process runs after the servers, in rounds of its own: its medians are compared
        "vs_faiss": {w: round(mine[w]["qps"] / floor[w]["qps"], 3) for w in mine if w in floor},
        "cpu_vs_ceiling_faiss": {w: round(paired(mine[w], searching[w], "server_cpu_us_per_call"), 3)
                                 for w in mine},
    }
    for name, peer in report["peers"].items():
        if "skipped" not in peer:
            out[f"vs_{name}"] = {w: round(mine[w]["qps"] / peer[w]["qps"], 3) for w in mine if w in peer}
    memory = report["memory"]
    memory_ratio = (memory["server_rss_bytes"] - memory["base_rss_bytes"]) / report["index"]["file_bytes"]
    out["rss_over_base_vs_index_size"] = round(memory_ratio, 3)
    return out


def targets(report: dict[str, Any]) -> dict[str, Any]:
    """Issue 6's targets, each with the figure measured and whether it is met (None: not measured)."""
    ratio, single = report["ratios"], _most_clients(report)
    compared = [name for name, peer in report["peers"].items() if _at_recall(peer)]
    peers = [ratio[f"vs_{name}"][single] for name in compared]
    batch = [value for w, value in ratio["vs_faiss"].items() if w.startswith("batch_")]
    searches = [w for w in report["jointspace"] if w.startswith("search_")]
    largest = max((int(w.split("_")[1]) for w in report["jointspace"] if w.startswith("batch_")), default=0)
    measured = {
        "single_qps_16_clients_vs_ceiling": ratio["vs_ceiling"][single],
        "single_qps_16_clients_vs_peers": min(peers) if peers else None,
        "batch_qps_vs_faiss": min(batch) if batch else None,
        "p99_ms_1_client": report["jointspace"].get("search_1_clients", {}).get("p99_ms"),
        "rss_over_base_vs_index_size": ratio["rss_over_base_vs_index_size"],
        "search_cpu_vs_ceiling_faiss": max((ratio["cpu_vs_ceiling_faiss"][w] for w in searches), default=None),
        "search_qps_vs_ceiling_faiss": min((ratio["vs_ceiling_faiss"][w] for w in searches), default=None),
        "largest_batch_qps_vs_faiss": ratio["vs_faiss"].get(f"batch_{largest}") if largest else None,
    }
    out = {}
    for name, value in measured.items():
        wanted = TARGETS[name]
        upper = name.startswith(UPPER_BOUNDS)
        met = None if value is None else (value <= wanted if upper else value >= wanted)
        out[name] = {"measured": value, "target": f"{'<=' if upper else '>='} {wanted}", "met": met}
    missing = [name for name in PEER_TARGET if name not in compared]
    if missing and out["single_qps_16_clients_vs_peers"]["met"] is not False:  # the target names both peers
        out["single_qps_16_clients_vs_peers"].update(met=None, not_measured=missing)
    out["recall"] = {"measured": report["recall"], "target": f">= {report['target_recall']}",
                     "met": report["recall"] >= report["target_recall"]}
    return out


def _at_recall(peer: dict[str, Any]) -> bool:
    """Whether a peer reached the target recall: the issue compares speeds at the same recall, so
    a peer that never got there is shown but not compared."""
    return "skipped" not in peer and not peer["tuning"].get("target_missed")


def _most_clients(report: dict[str, Any]) -> str:
    """The single-query workload with the most clients (the issue's 16)."""
    most = max(int(w.split("_")[1]) for w in report["jointspace"] if w.startswith("search_"))
    return f"search_{most}_clients"


def format_table(report: dict[str, Any]) -> str:
    """Queries per second per workload and engine, ratios beside them, then targets."""
    mine, ceiling, floor = report["jointspace"], report["ceiling"], report["faiss"]
    peers = {n: p for n, p in report["peers"].items() if "skipped" not in p}
    lines = [f"{report['vectors']:,} vectors, d = {report['dim']}, {report['index']['type']}; recall@{K} "
             f"{report['recall']} (target {report['target_recall']}); {report['cpu_cores']} CPU cores shared by "
             f"servers and client processes; {report['seconds']:g} s per measurement"
             + (f", each the median of {report['rounds']} alternated rounds (a ratio between servers: the "
                f"median of the rounds' own)" if report["rounds"] > 1 else ""),
             ""]
    header = ["workload", "clients", "jointspace q/s", "p50 ms", "p99 ms", "server CPU us/call", "ceiling q/s",
              "ceiling CPU us/call", "vs ceiling", "ceiling+FAISS q/s", "ceiling+FAISS CPU us/call",
              "CPU vs ceiling+FAISS", "vs ceiling+FAISS", "FAISS q/s", "vs FAISS"]
    for name in peers:
        header += [f"{name} q/s", f"vs {name}"]
    rows, ratio = [header], report["ratios"]
    for workload, figures in mine.items():
        row = [workload, str(figures["clients"]), f"{figures['qps']:,.0f}", f"{figures['p50_ms']:.2f}",
               f"{figures['p99_ms']:.2f}", f"{figures['server_cpu_us_per_call']:,}",
               f"{ceiling[workload]['qps']:,.0f}", f"{ceiling[workload]['server_cpu_us_per_call']:,}",
               f"{ratio['vs_ceiling'][workload]:.2f}", f"{report['ceiling_faiss'][workload]['qps']:,.0f}",
               f"{report['ceiling_faiss'][workload]['server_cpu_us_per_call']:,}",
               f"{ratio['cpu_vs_ceiling_faiss'][workload]:.2f}", f"{ratio['vs_ceiling_faiss'][workload]:.2f}"]
        row += ([f"{floor[workload]['qps']:,.0f}", f"{ratio['vs_faiss'][workload]:.2f}"]
                if workload in floor else ["", ""])
        for name, peer in peers.items():
            row += ([f"{peer[workload]['qps']:,.0f}", f"{ratio[f'vs_{name}'][workload]:.2f}"]
                    if workload in peer else ["", ""])
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines += ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths)))
              for r in rows]
    memory = report["memory"]
    lines += ["", f"memory: server RSS {memory['server_rss_bytes'] / 2**20:,.0f} MiB, base (1,000-vector index) "
                  f"{memory['base_rss_bytes'] / 2**20:,.0f} MiB, "
                  f"index file {report['index']['file_bytes'] / 2**20:,.0f} MiB: "
                  f"(RSS - base) / index = {report['ratios']['rss_over_base_vs_index_size']:.2f}"]
    for name, peer in report["peers"].items():
        if "skipped" in peer:
            lines.append(f"{name}: skipped ({peer['skipped']})")
        else:
            below = "" if _at_recall(peer) else \
                f" (below the target {report['target_recall']}: not compared)"
            lines.append(f"{name}: recall@{K} {peer['recall']} at ef_search {peer['tuning']['ef_search']}{below}, "
                         f"loaded in {peer['load_seconds']} s, RSS {peer['rss_bytes'] / 2**20:,.0f} MiB")
    single = _most_clients(report)
    lines += ["", f"ceiling+FAISS (the no-op server answering each query with the hits of its FAISS search) reaches "
                  f"{report['ratios']['ceiling_faiss_vs_ceiling'][single]:.2f} of the ceiling at {single}: "
                  f"no server on this stack that searches this index can do better"]
    lines.append("")
    for name, target in report["targets"].items():
        state = {True: "met", False: "NOT met", None: "not measured"}[target["met"]]
        lines.append(f"target {name}: {target['measured']} (want {target['target']}): {state}")
    return "\n".join(lines)
