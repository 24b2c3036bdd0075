"""A soak: mixed load from several client processes against one `jointspace serve` process, a
rebuild in the middle, then a check that no acknowledged write was lost, before and after a
restart.

The served catalog holds clustered vectors (data/vectors.py) and the films the small model was
trained on (bench/build.py), so that vector, id, bag-of-ids and text queries all have something
to find. Each client process runs its own mix of Search, Embed, Upsert and Delete and writes only
keys of its own range (`soak:<client>:<n>`), one call at a time, so the last acknowledged write of
each key is known without any coordination; a share of its deletes aim on purpose at keys it has
already deleted or never written, whose NOT_FOUND is the expected answer. Any other error, and any
answer that contradicts the client's record (a delete of a live key that finds nothing), counts
as unexpected. Halfway through, the main process asks for a RebuildIndex from the same catalog
and polls GetOperation to its end (the `--wait` of `jointspace rebuild`); the online changes must
be carried over to the new generation.

The server's resident memory is sampled every second: `start` is taken once the warm-up is over
(the first calls of each encoder trace TensorFlow graphs and fill caches, which is not a leak),
`middle` just before the rebuild, `end` when the load stops. At the end every key a client wrote
is checked by exact vector search over BatchSearch (an upserted key must be the top hit for its
last vector, with the metadata of its last write; a deleted key must not be among the hits for
the last vector it had), and the served vector count must equal the catalog's plus the live keys;
then the server is stopped (SIGTERM) and started again on the same index, and the check repeats
(the journal replayed over the rebuilt generation).
"""

from __future__ import annotations

import collections
import multiprocessing
import shutil
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jointspace.bench.build import MODEL_FILMS, _train_model
from jointspace.bench.serve_process import ServeProcess
from jointspace.core.progress import Progress, log
from jointspace.data import synthetic
from jointspace.data.vectors import clustered_vectors, write_vector_catalog

KEYS_PER_CLIENT = 64
MIX = {  # share of calls per kind
    "Search(vector)": 0.30, "Search(id)": 0.10, "Search(ids)": 0.05, "Search(text)": 0.10,
    "Embed": 0.15, "Upsert": 0.20, "Delete": 0.10,
}
ABSENT_DELETE_SHARE = 0.2  # deletes aimed on purpose at a key the client holds as absent
QUERY_VECTORS = 1_000
K = 10
CALL_TIMEOUT = 30.0
CHECK_BATCH = 256
RSS_GROWTH_TARGET = 0.10
DEFAULT_DIM = 32


@dataclass(frozen=True)
class ClientPlan:
    """What one client process needs (pickled to it): where, until when, and what to ask."""

    number: int
    target: str
    end: float  # time.time() at which to stop
    seed: int
    dim: int
    queries: np.ndarray  # vectors near catalog entries
    film_ids: list[str]
    titles: list[str]


@dataclass
class ClientReport:
    """What a client did: latencies by kind, errors by (kind, code), acknowledged writes in
    order, the final state of each of its keys, and keys whose last write had an unclear end."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: collections.defaultdict(list))
    expected: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)  # (kind, code)
    unexpected: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    messages: list[str] = field(default_factory=list)
    writes: list[tuple[int, str, str]] = field(default_factory=list)  # (sequence, "upsert"/"delete", key)
    live: dict[str, tuple[np.ndarray, int]] = field(default_factory=dict)  # key -> (vector, sequence)
    deleted: dict[str, np.ndarray] = field(default_factory=dict)  # key -> the last vector it had
    uncertain: set[str] = field(default_factory=set)

    def plain(self) -> ClientReport:
        self.latencies = dict(self.latencies)
        return self


def client_load(plan: ClientPlan) -> ClientReport:
    """One client process: a random mix of calls, one at a time, until `plan.end`."""
    import grpc

    from jointspace.client import Client, make_catalog_entry, make_query
    from jointspace.v1 import jointspace_pb2 as pb

    rng = np.random.default_rng(plan.seed)
    kinds, shares = list(MIX), np.asarray(list(MIX.values()))
    report, sequence = ClientReport(), 0
    keys = [f"soak:{plan.number}:{n}" for n in range(KEYS_PER_CLIENT)]

    def unit() -> np.ndarray:
        vector = rng.normal(size=plan.dim).astype(np.float32)
        return vector / np.linalg.norm(vector)

    def call(kind: str, method: Any, request: Any, expect: grpc.StatusCode = grpc.StatusCode.OK) -> bool | None:
        """True: answered as expected; False: the expected error; None: anything else."""
        started = time.monotonic()
        try:
            method(request, timeout=CALL_TIMEOUT)
            code, message = grpc.StatusCode.OK, ""
        except grpc.RpcError as error:
            code, message = error.code(), error.details() or ""
        report.latencies[kind].append(time.monotonic() - started)
        if code == expect == grpc.StatusCode.OK:
            return True
        if code == expect:
            report.expected[(kind, code.name)] += 1
            return False
        label = code.name if expect == grpc.StatusCode.OK else f"{code.name} (expected {expect.name})"
        report.unexpected[(kind, label)] += 1
        if len(report.messages) < 5:
            report.messages.append(f"client {plan.number} {kind}: {label}: {message}")
        return None

    with Client(plan.target, timeout=CALL_TIMEOUT) as client:
        stub = client.stub
        while time.time() < plan.end:
            kind = kinds[rng.choice(len(kinds), p=shares)]
            if kind.startswith("Search"):
                query = {
                    "Search(vector)": lambda: make_query(vector=plan.queries[rng.integers(len(plan.queries))]),
                    "Search(id)": lambda: make_query(id=plan.film_ids[rng.integers(len(plan.film_ids))]),
                    "Search(ids)": lambda: make_query(ids=list(rng.choice(plan.film_ids, 5))),
                    "Search(text)": lambda: make_query(text=plan.titles[rng.integers(len(plan.titles))]),
                }[kind]()
                call(kind, stub.Search, pb.SearchRequest(query=query, k=K))
            elif kind == "Embed":
                inputs = [make_query(id=plan.film_ids[rng.integers(len(plan.film_ids))]),
                          make_query(text=plan.titles[rng.integers(len(plan.titles))]), make_query(vector=unit())]
                call(kind, stub.Embed, pb.EmbedRequest(inputs=inputs))
            elif kind == "Upsert":
                sequence += 1
                chosen = [keys[i] for i in rng.choice(len(keys), rng.integers(1, 4), replace=False)]
                vectors = [unit() for _ in chosen]
                entries = [make_catalog_entry({"key": key, "vector": vector,
                                               "metadata": {"client": plan.number, "sequence": sequence}})
                           for key, vector in zip(chosen, vectors)]
                request = pb.UpsertRequest(entries=entries, request_id=f"{plan.number}-{sequence}")
                outcome = call(kind, stub.Upsert, request)
                for key, vector in zip(chosen, vectors):
                    if outcome:
                        report.writes.append((sequence, "upsert", key))
                        report.live[key] = (vector, sequence)
                        report.deleted.pop(key, None)
                        report.uncertain.discard(key)
                    else:
                        report.uncertain.add(key)
            else:
                sequence += 1
                live = [k for k in keys if k in report.live]
                absent = [k for k in keys if k not in report.live]
                aim_absent = not live or (absent and rng.random() < ABSENT_DELETE_SHARE)
                key = (absent if aim_absent else live)[rng.integers(len(absent if aim_absent else live))]
                if key in report.uncertain:
                    continue
                expect = grpc.StatusCode.NOT_FOUND if aim_absent else grpc.StatusCode.OK
                request = pb.DeleteRequest(keys=[key], request_id=f"{plan.number}-{sequence}")
                outcome = call(kind, stub.Delete, request, expect)
                if outcome:
                    report.writes.append((sequence, "delete", key))
                    report.deleted[key] = report.live.pop(key)[0]
                elif outcome is None:
                    report.uncertain.add(key)
    return report.plain()


class RssSampler:
    """The server's resident set size (from /proc) every `interval` seconds, in a thread."""

    def __init__(self, pid: int, interval: float = 1.0) -> None:
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, int]] = []  # (time.time(), bytes)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def read(self) -> int:
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmRSS for process {self.pid}")

    def _run(self) -> None:
        while True:
            self.samples.append((time.time(), self.read()))
            if self.stop.wait(self.interval):
                return

    def at(self, moment: float) -> int:
        """The last sample taken at or before `moment` (the first one if none is)."""
        before = [rss for t, rss in self.samples if t <= moment]
        return before[-1] if before else self.samples[0][1]


@dataclass(frozen=True)
class Served:
    model: Path
    index: Path
    catalogs: list[Path]
    vectors: np.ndarray
    films: synthetic.SyntheticData


def prepare(work: Path, rows: int) -> Served:
    """Model and catalogs are reused from `work` when there; the index is always built afresh
    (a soak changes it, and the check needs to know every write it holds). The model is the
    small one of bench/build.py: id and text queries ask for its films, which it must know."""
    from jointspace.encoders.inference import EncoderSet
    from jointspace.encoders.manifest import read_manifest
    from jointspace.server.build.local_builder import build_generation

    work.mkdir(parents=True, exist_ok=True)
    model = work / "model"
    if not (model / "manifest.json").is_file():
        log(f"training a small model (d = {DEFAULT_DIM}) in {model}")
        _train_model(DEFAULT_DIM, model)
    dim = read_manifest(model).dim
    vectors = clustered_vectors(rows, dim)
    films = synthetic.generate(MODEL_FILMS)
    catalogs = [work / f"vectors-{rows}x{dim}.jsonl", work / "films.jsonl"]
    if not catalogs[0].is_file():
        write_vector_catalog(catalogs[0], vectors)
    if not catalogs[1].is_file():
        synthetic.write_catalog(films, catalogs[1])
    index = work / "index"
    shutil.rmtree(index, ignore_errors=True)
    log(f"building the index of {rows} vectors and {len(films.film_ids)} films in {index}")
    build_generation(EncoderSet(model), catalogs, index)
    return Served(model, index, catalogs, vectors, films)


def start_server(served: Served) -> tuple[ServeProcess, str]:
    server = ServeProcess(["--model", str(served.model), "--index", str(served.index), "--port", "0",
                           "--log-format", "json"])
    try:
        target = f"127.0.0.1:{server.wait_for('listening on', timeout=300)['port']}"
        server.wait_for("serving gen-", timeout=600)
    except Exception as error:
        stop_server(server)
        raise RuntimeError("the server did not start: " + "".join(server.lines[-5:]).strip()) from error
    return server, target


def stop_server(server: ServeProcess) -> int:
    """SIGTERM (graceful: in-flight calls finish, the journal is already durable)."""
    server.process.send_signal(signal.SIGTERM)
    return server.process.wait(timeout=120)


def run(seconds: float, clients: int, rows: int, work: Path | None = None, seed: int = 0) -> dict[str, Any]:
    """The soak; the result holds every figure, the failures (empty when the targets hold) and
    `passed`. Without `work` everything goes to a temporary folder."""
    import tempfile

    if work is None:
        with tempfile.TemporaryDirectory(prefix="jointspace-soak-") as temporary:
            return run(seconds, clients, rows, Path(temporary), seed)
    served = prepare(Path(work), rows)
    rng = np.random.default_rng(seed + 1)
    dim = served.vectors.shape[1]
    chosen = served.vectors[rng.choice(len(served.vectors), QUERY_VECTORS)]
    queries = (chosen + rng.normal(scale=0.05, size=chosen.shape)).astype(np.float32)
    film_ids, titles = served.films.film_ids.tolist(), list(served.films.film_titles)

    server, target = start_server(served)
    try:
        rss = RssSampler(server.process.pid)
        loaded = rss.read()
        started = time.time()
        end = started + seconds
        warm_up = min(max(seconds * 0.1, 2.0), 30.0)
        plans = [ClientPlan(n, target, end, seed * 1000 + n, dim, queries, film_ids, titles) for n in range(clients)]
        context = multiprocessing.get_context("spawn")  # no forked gRPC or TensorFlow state
        with ProcessPoolExecutor(max_workers=clients, mp_context=context) as pool:
            pending = [pool.submit(client_load, plan) for plan in plans]
            rebuild = _rebuild_midway(target, served.catalogs, started, end, rss)
            reports = [p.result() for p in pending]
        rss.stop.set()
        rss_mb = {"loaded": loaded, "start": rss.at(started + warm_up), "middle": rss.at(rebuild["started"]),
                  "end": rss.at(end), "peak": max(r for _, r in rss.samples)}
        expected = _expected_state(reports)
        before_restart = _check(target, expected, len(served.vectors))
    except BaseException:
        stop_server(server)
        raise
    stop_code = stop_server(server)
    server, target = start_server(served)
    try:
        after_restart = _check(target, expected, len(served.vectors))
    finally:
        stop_server(server)
    return _summary(seconds, clients, rows, dim, work, reports, rebuild, rss_mb, before_restart,
                    {**after_restart, "stop_exit_code": stop_code})


def _rebuild_midway(target: str, catalogs: Sequence[Path], load_started: float, end: float,
                    rss: RssSampler) -> dict[str, Any]:
    """Wait until halfway (showing progress), rebuild, poll to the end; then wait out the load."""
    from jointspace.client import Client

    def wait_until(moment: float, bar: Progress) -> None:
        while time.time() < moment:
            time.sleep(min(1.0, max(moment - time.time(), 0)))
            bar.update(int(time.time() - load_started) - bar.done, rss_mb=round(rss.samples[-1][1] / 2**20))

    with Progress(int(end - load_started), "soak", unit="s") as bar, Client(target, timeout=CALL_TIMEOUT) as client:
        wait_until((load_started + end) / 2, bar)
        started = time.time()
        try:
            operation = client.wait(client.rebuild(catalogs, request_id=f"soak-{started}").name, poll=0.2)
            outcome: dict[str, Any] = {"state": operation.state.name, "generation": operation.generation,
                                       "error": operation.error.message if operation.error else ""}
        except Exception as error:  # the rebuild call itself failed: a finding, not a crash of the bench
            outcome = {"state": "CALL FAILED", "generation": "", "error": f"{type(error).__name__}: {error}"}
        outcome.update(started=started, seconds=round(time.time() - started, 1),
                       finished_before_end=time.time() < end)
        log(f"soak: rebuild {outcome['state']} in {outcome['seconds']} s {outcome['generation']}")
        wait_until(end, bar)
    return outcome


def _expected_state(reports: Sequence[ClientReport]) -> dict[str, Any]:
    live, deleted, uncertain = {}, {}, set()
    for report in reports:
        live.update(report.live)
        deleted.update(report.deleted)
        uncertain |= report.uncertain
    return {"live": {k: v for k, v in live.items() if k not in uncertain},
            "deleted": {k: v for k, v in deleted.items() if k not in uncertain}, "uncertain": len(uncertain)}


def _check(target: str, expected: dict[str, Any], catalog_vectors: int) -> dict[str, Any]:
    """Every acknowledged write visible: live keys are the top hit for their last vector with
    their last metadata, deleted keys are absent, and the vector count adds up."""
    from jointspace.client import Client, hits_from_proto, make_query
    from jointspace.v1 import jointspace_pb2 as pb

    live, deleted = expected["live"], expected["deleted"]
    items = [(key, vector, sequence) for key, (vector, sequence) in live.items()]
    items += [(key, vector, None) for key, vector in deleted.items()]
    lost: list[str] = []
    with Client(target, timeout=120) as client:
        client.wait_ready(timeout=120)
        for start in range(0, len(items), CHECK_BATCH):
            part = items[start : start + CHECK_BATCH]
            request = pb.BatchSearchRequest(requests=[
                pb.SearchRequest(query=make_query(vector=vector), k=1 if sequence else K, modalities=["vector"])
                for _, vector, sequence in part])
            for (key, _, sequence), response in zip(part, client.stub.BatchSearch(request, timeout=120).results):
                hits = hits_from_proto(response)
                if sequence is None and key in [h.key for h in hits]:
                    lost.append(f"{key}: deleted, still served")
                elif sequence is not None and (not hits or hits[0].key != key):
                    lost.append(f"{key}: upserted (write {sequence}), not found")
                elif sequence is not None and hits[0].metadata.get("sequence") != sequence:
                    served = hits[0].metadata.get("sequence")
                    lost.append(f"{key}: serves write {served}, not the last one ({sequence})")
        info = client.info()
    counted = info.size_by_modality.get("vector", 0)
    if counted != catalog_vectors + len(live):
        lost.append(f"vector count {counted}, expected {catalog_vectors} + {len(live)} live keys")
    return {"generation": info.generation, "keys_checked": len(items), "live": len(live),
            "deleted": len(deleted), "lost": len(lost), "first_lost": lost[:5]}


def _latency(values: Sequence[float]) -> dict[str, float]:
    milliseconds = np.asarray(values) * 1000
    return {"p50_ms": round(float(np.percentile(milliseconds, 50)), 2),
            "p99_ms": round(float(np.percentile(milliseconds, 99)), 2),
            "max_ms": round(float(milliseconds.max()), 2)}


def _summary(seconds: float, clients: int, rows: int, dim: int, work: Path, reports: Sequence[ClientReport],
             rebuild: dict[str, Any], rss: dict[str, int], before: dict[str, Any],
             after: dict[str, Any]) -> dict[str, Any]:
    latencies: dict[str, list[float]] = collections.defaultdict(list)
    expected: collections.Counter[tuple[str, str]] = collections.Counter()
    unexpected: collections.Counter[tuple[str, str]] = collections.Counter()
    for report in reports:
        for kind, values in report.latencies.items():
            latencies[kind] += values
        expected.update(report.expected)
        unexpected.update(report.unexpected)
    requests = {kind: len(latencies[kind]) for kind in MIX if latencies[kind]}
    growth = (rss["end"] - rss["start"]) / rss["start"]
    failures = []
    if unexpected:
        failures.append(f"{sum(unexpected.values())} unexpected errors")
    if rebuild["state"] != "SUCCEEDED":
        failures.append(f"the rebuild ended {rebuild['state']}: {rebuild['error']}")
    for name, check in (("before the restart", before), ("after the restart", after)):
        if check["lost"]:
            failures.append(f"{check['lost']} acknowledged writes not served {name}")
    if before["generation"] != after["generation"]:
        failures.append(f"the restart serves {after['generation']}, not {before['generation']}")
    if growth > RSS_GROWTH_TARGET:
        failures.append(f"server RSS grew {growth:.1%} (target: under {RSS_GROWTH_TARGET:.0%})")
    writes = [w for report in reports for w in report.writes]
    return {
        "command": f"jointspace bench soak --seconds {seconds:g} --clients {clients} --vectors {rows}"
                   f" --work {work}",
        "seconds": seconds, "clients": clients, "catalog_vectors": rows, "dim": dim,
        "requests": requests, "requests_total": sum(requests.values()),
        "requests_per_second": round(sum(requests.values()) / seconds, 1),
        "errors": {"expected": {f"{k} {c}": n for (k, c), n in sorted(expected.items())},
                   "unexpected": {f"{k} {c}": n for (k, c), n in sorted(unexpected.items())}},
        "first_unexpected": [m for report in reports for m in report.messages][:5],
        "latency": {kind: _latency(latencies[kind]) for kind in requests},
        "acknowledged_writes": {"upsert": sum(w[1] == "upsert" for w in writes),
                                "delete": sum(w[1] == "delete" for w in writes)},
        "rebuild": {k: v for k, v in rebuild.items() if k != "started"},
        "server_rss_mb": {k: round(v / 2**20, 1) for k, v in rss.items()},
        "rss_growth_percent": round(growth * 100, 2),
        "check_before_restart": before, "check_after_restart": after,
        "targets": {"unexpected_errors": 0, "lost_writes": 0, "rss_growth_percent_under": RSS_GROWTH_TARGET * 100},
        "failures": failures, "passed": not failures,
    }


def format_summary(result: dict[str, Any]) -> str:
    """The figures for a person: requests, errors, latency per kind, memory, checks, verdict."""
    lines = [result["command"],
             f"{result['requests_total']} requests in {result['seconds']:g} s from {result['clients']} client "
             f"processes ({result['requests_per_second']}/s), writes acknowledged: {result['acknowledged_writes']}"]
    for kind, count in result["requests"].items():
        figures = result["latency"][kind]
        lines.append(f"  {kind:<15}{count:>9}  p50 {figures['p50_ms']:>8.2f} ms  p99 {figures['p99_ms']:>8.2f} ms")
    lines.append(f"errors expected: {result['errors']['expected'] or 'none'}; "
                 f"unexpected: {result['errors']['unexpected'] or 'none'}")
    lines += [f"  {message}" for message in result["first_unexpected"]]
    rebuild = result["rebuild"]
    lines.append(f"rebuild: {rebuild['state']} in {rebuild['seconds']} s ({rebuild['generation'] or rebuild['error']})")
    rss = result["server_rss_mb"]
    lines.append(f"server RSS MB: loaded {rss['loaded']}, start {rss['start']}, middle {rss['middle']}, "
                 f"end {rss['end']}, peak {rss['peak']}; growth {result['rss_growth_percent']}%")
    for name in ("check_before_restart", "check_after_restart"):
        check = result[name]
        lines.append(f"{name.replace('_', ' ')}: {check['keys_checked']} keys ({check['live']} live, "
                     f"{check['deleted']} deleted), {check['lost']} lost {check['first_lost'] or ''}".rstrip())
    lines.append("PASSED" if result["passed"] else "FAILED: " + "; ".join(result["failures"]))
    return "\n".join(lines)
