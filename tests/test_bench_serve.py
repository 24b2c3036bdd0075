"""`jointspace bench serve` at a tiny size: the real server, the no-op ceiling and FAISS measured
in one run, a report whose ratios come from its own figures (the no-op ceiling answering every
Search and BatchSearch without error); peers skip with a reason when they cannot run; the
hidden-row selector is reused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

from jointspace.bench import serve
from jointspace.bench.peers import Peer
from jointspace.bench.searchers import recall_at_k
from jointspace.v1 import jointspace_pb2 as pb


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench-serve")


@pytest.fixture(scope="module")
def report(built, work: Path) -> dict:
    return serve.run(vectors=2_000, work=work, seconds=0.3, clients=(1, 2), batches=(64,), peers=(),
                     model=built.model)


def test_report_measures_every_workload_on_every_engine(report: dict) -> None:
    workloads = ["search_1_clients", "search_2_clients", "batch_64"]
    assert list(report["jointspace"]) == workloads and list(report["ceiling"]) == workloads
    assert list(report["ceiling_faiss"]) == workloads
    assert set(report["faiss"]) >= {"search_1_clients", "batch_64"}
    for figures in [*report["jointspace"].values(), *report["ceiling"].values(), *report["ceiling_faiss"].values()]:
        assert figures["qps"] > 0 and figures["calls"] > 0 and figures["errors"] == 0
        assert 0 < figures["p50_ms"] <= figures["p99_ms"]
        assert figures["server_cpu_us_per_call"] > 0  # the server process did work for its calls
    assert report["jointspace"]["batch_64"]["batch"] == 64
    assert report["jointspace"]["batch_64"]["clients"] == report["cpu_cores"]  # throughput: one client per core
    assert 0.95 <= report["recall"] <= 1.0  # exact search at this size: only float rounding may differ
    assert report["dim"] == 16 and report["index"]["file_bytes"] > 2_000 * 16 * 4


def test_ratios_come_from_the_measured_figures(report: dict) -> None:
    mine, ceiling, floor = report["jointspace"], report["ceiling"], report["faiss"]
    searching = report["ceiling_faiss"]
    for workload, ratio in report["ratios"]["vs_ceiling"].items():
        assert ratio == pytest.approx(mine[workload]["qps"] / ceiling[workload]["qps"], abs=1e-3)
        assert report["ratios"]["vs_ceiling_faiss"][workload] == pytest.approx(
            mine[workload]["qps"] / searching[workload]["qps"], abs=1e-3)
        assert report["ratios"]["ceiling_faiss_vs_ceiling"][workload] == pytest.approx(
            searching[workload]["qps"] / ceiling[workload]["qps"], abs=1e-3)
    assert report["ratios"]["vs_faiss"]["batch_64"] == pytest.approx(
        mine["batch_64"]["qps"] / floor["batch_64"]["qps"], abs=1e-3)
    memory = report["memory"]
    assert memory["server_rss_bytes"] > 0 and memory["base_rss_bytes"] > 0
    target = report["targets"]["single_qps_16_clients_vs_ceiling"]
    assert target["measured"] == report["ratios"]["vs_ceiling"]["search_2_clients"]  # the most clients run
    assert target["met"] == (target["measured"] >= 0.8)
    assert report["targets"]["single_qps_16_clients_vs_peers"]["met"] is None  # no peer ran: not measured
    table = serve.format_table(report)
    assert "search_2_clients" in table and "vs ceiling" in table and "server CPU us/call" in table
    assert "target batch_qps_vs_faiss" in table
    assert "vs ceiling+FAISS" in table and "of the ceiling at search_2_clients" in table


def test_a_peer_below_the_target_recall_is_shown_but_not_compared(report: dict) -> None:
    """Speeds are compared at the same recall: a peer whose tuning never reached it must not
    count toward the "≥ 3× the peers" target, whatever its speed."""
    import copy

    figures = {w: dict(f, qps=f["qps"] / 10) for w, f in report["jointspace"].items() if w.startswith("search_")}
    slow = {"tuning": {"ef_search": 2048, "recall": 0.7, "target_missed": True}, "recall": 0.7,
            "load_seconds": 1.0, "rss_bytes": 2**20, **figures}
    both = copy.deepcopy(report)
    both["peers"] = {"milvus": {**slow, "tuning": {"ef_search": 64, "recall": 0.96}, "recall": 0.96}, "chroma": slow}
    both["ratios"] = serve.ratios(both)
    target = serve.targets(both)["single_qps_16_clients_vs_peers"]
    assert target["measured"] == pytest.approx(10, rel=1e-2)  # milvus only
    assert target["met"] is None and target["not_measured"] == ["chroma"]
    assert "chroma: recall@10 0.7 at ef_search 2048 (below the target" in serve.format_table(both)


def test_a_peer_that_cannot_run_is_skipped_with_its_reason(tmp_path: Path) -> None:
    class Missing(Peer):
        name, module = "missing", "jointspace_no_such_module"

    assert "jointspace_no_such_module is not installed" in Missing(tmp_path).unavailable()
    skipped = serve._peer("nosuch", tmp_path, np.zeros((1, 4), np.float32), np.zeros((1, 4), np.float32),
                          np.zeros((1, 10), np.int64), 0.95, (1,), 0.1)
    assert skipped == {"skipped": "unknown peer 'nosuch'; known: milvus, chroma"}


def test_recall_counts_the_exact_rows_found() -> None:
    exact = np.array([[1, 2], [3, 4]])
    assert recall_at_k([["v:1", "v:9"], ["v:4", "v:3"]], exact) == 0.75


def test_the_hidden_row_selector_is_built_once_per_set_of_hidden_rows() -> None:
    from jointspace.server.index.searching import _all_but, nearest

    vectors = np.eye(8, dtype=np.float32)
    index = faiss.IndexFlatIP(8)
    index.add(vectors)
    hidden = frozenset({0, 1})
    _, rows = nearest(index, vectors[:1], 3, None, hidden)
    assert 0 not in rows[0] and 1 not in rows[0] and len(rows[0]) == 3
    assert _all_but(hidden) is _all_but(hidden)
    _, again = nearest(index, vectors[:1], 3, None, frozenset({0}))
    assert 0 not in again[0] and 1 in again[0]  # a new set of hidden rows gets its own selector


def test_the_searching_ceiling_runs_the_faiss_search_of_each_query(report: dict, work: Path) -> None:
    """The no-op server with --index does each call's FAISS search (all of a batch's queries in
    one) on the served index, and answers with what it found, as jointspace would."""
    from jointspace.bench.noop_server import NoopService

    class Recording:
        """The index, with each search's (query count, width) and k recorded, by either FAISS call."""

        def __init__(self, index: faiss.Index) -> None:
            self.index, self.d, self.calls = index, index.d, []

        def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
            self.calls.append((vectors.shape, k))
            return self.index.search(vectors, k)

        def search_c(self, count: int, vectors: Any, k: int, scores: Any, rows: Any, params: Any) -> None:
            self.calls.append(((count, self.d), k))
            self.index.search_c(count, vectors, k, scores, rows, params)

    service = NoopService(3, work / "index")
    assert service.index.ntotal == 2_000
    service.index = recording = Recording(service.index)
    vector = np.ones(report["dim"], "<f4")
    request = pb.SearchRequest(query=pb.Query(vector=pb.Vector(f32=vector.tobytes())), k=3)
    answer = service.Search(request, None)
    scores, rows = recording.index.search(vector[None], 3)
    assert [hit.key for hit in answer.hits] == [f"v:{row}" for row in rows[0]]
    # cosines, as jointspace answers: the query scaled to unit length first
    assert [hit.score for hit in answer.hits] == pytest.approx(scores[0] / np.linalg.norm(vector), rel=1e-5)
    assert {hit.modality for hit in answer.hits} == {"vector"} and answer.generation.startswith("gen-")
    batch = service.BatchSearch(pb.BatchSearchRequest(requests=[request] * 5), None)
    assert [list(result.hits) for result in batch.results] == [list(answer.hits)] * 5
    assert recording.calls[:2] == [((1, report["dim"]), 3), ((5, report["dim"]), 3)]


@pytest.mark.parametrize("k", [5, 100])
def test_batches_over_an_index_without_metadata_are_answered_as_each_query_alone(report: dict, built,
                                                                                 work: Path, k: int) -> None:
    """The served benchmark index has one modality and no metadata: its answers come straight
    from FAISS's arrays, for a large batch written without a message per hit (answer_bytes.py); a plain
    batch of vectors is searched as one matrix. Whatever the path, a query's answer in a batch is
    its answer alone, thresholds included."""
    import grpc

    from jointspace.server.api.convert import WIRE_FROM_HITS
    from jointspace.server.serving.engine import Engine
    from jointspace.v1 import jointspace_pb2_grpc as pb_grpc
    from serving import own_server

    vectors = np.random.default_rng(8).normal(size=(9, report["dim"])).astype("<f4")
    plain = [pb.SearchRequest(query=pb.Query(vector=pb.Vector(f32=v.tobytes())), k=k) for v in vectors]
    thresholds = [pb.SearchRequest(query=r.query, k=k, modalities=["vector"], min_score=0.1 * (i % 3))
                  for i, r in enumerate(plain)]
    assert (len(plain) * k >= WIRE_FROM_HITS) is (k == 100)
    with own_server(Engine(built.model, work / "index")) as running, \
            grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        stub = pb_grpc.JointSpaceStub(channel)
        for requests in (plain, thresholds):
            batch = stub.BatchSearch(pb.BatchSearchRequest(requests=requests), timeout=30)
            assert list(batch.results) == [stub.Search(request, timeout=30) for request in requests]
        assert all(len(result.hits) == k for result in stub.BatchSearch(
            pb.BatchSearchRequest(requests=plain), timeout=30).results)
        assert {hit.modality for hit in batch.results[0].hits} == {"vector"}
        assert all(hit.score >= 0.2 for hit in batch.results[2].hits)


def test_faiss_in_process_is_measured_once_per_round(report: dict, work: Path) -> None:
    queries = np.random.default_rng(0).normal(size=(50, report["dim"])).astype(np.float32)
    floor = serve._faiss_floor(work / "index", queries, [8], 0.05, rounds=2)
    assert set(floor) == {"threads", "search_1_clients", "batch_8"}
    assert all(len(floor[name]["qps_rounds"]) == 2 and floor[name]["qps"] > 0
               for name in ("search_1_clients", "batch_8"))


def test_rounds_give_each_figure_its_median_and_keep_every_rate() -> None:
    rounds = [{"clients": 4, "batch": 1, "qps": q, "calls": c, "p50_ms": p, "p99_ms": 2 * p, "errors": 0,
               "server_cpu_us_per_call": cpu}
              for q, c, p, cpu in ((900.0, 4500, 1.0, 610), (700.0, 3500, 1.4, 700), (800.0, 4000, 1.2, 650))]
    figures = serve.median_figures(rounds)
    assert figures["qps"] == 800.0 and figures["server_cpu_us_per_call"] == 650 and figures["p99_ms"] == 2.4
    assert figures["calls"] == 12_000 and figures["clients"] == 4 and figures["batch"] == 1
    assert figures["qps_rounds"] == [900.0, 700.0, 800.0]
    assert serve.median_figures(rounds[:1]) == rounds[0]  # one round: its figures as measured


def test_servers_are_compared_round_by_round() -> None:
    """A ratio between two servers is the median of their ratios within each round: the first
    server's fast round must not be set against the other's slow one."""
    mine = serve.median_figures([{"qps": q, "server_cpu_us_per_call": c} for q, c in ((1000.0, 500), (600.0, 900),
                                                                                      (800.0, 700))])
    other = serve.median_figures([{"qps": q, "server_cpu_us_per_call": c} for q, c in ((1100.0, 450), (500.0, 1000),
                                                                                       (900.0, 600))])
    assert mine["cpu_rounds"] == [500, 900, 700]
    assert serve.paired(mine, other, "qps") == pytest.approx(1000 / 1100)  # rounds: 0.909, 1.2, 0.889
    assert serve.paired(mine, other, "server_cpu_us_per_call") == pytest.approx(1.111, abs=1e-3)
    assert mine["qps"] / other["qps"] == pytest.approx(800 / 900)  # what the medians alone would say
    assert serve.paired({"qps": 800.0}, {"qps": 1000.0}, "qps") == 0.8  # one round each: the plain ratio


def test_each_server_opens_a_round_in_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[str] = []

    def load(target: Any, *args: Any) -> Any:
        order.append(target)
        return serve.LoadResult(1, 1, 100.0, 10, 1.0, 2.0, 0)

    class Server:
        def __init__(self, name: str) -> None:
            self.target, self.pid, self.address = name, 0, name

    monkeypatch.setattr(serve, "run_load", load)
    monkeypatch.setattr(serve, "cpu_seconds", lambda pid: float(len(order)))
    results = serve._alternate([Server("a"), Server("b"), Server("c")], np.zeros((4, 2)), (1,), (), 1.0, rounds=3)
    assert order == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert [r["search_1_clients"]["qps_rounds"] for r in results] == [[100.0] * 3] * 3


def test_the_searching_ceiling_checks_each_query_as_jointspace_does(report: dict, work: Path) -> None:
    """The reference must do the work jointspace must: a query it cannot answer as asked is
    refused, not searched."""
    import grpc

    from jointspace.bench.noop_server import NoopService

    class Aborted(Exception):
        pass

    class Context:
        def abort(self, code: grpc.StatusCode, message: str) -> None:
            self.code, self.message = code, message
            raise Aborted

    service = NoopService(3, work / "index")
    width = service.index.d
    good = pb.Query(vector=pb.Vector(f32=np.ones(width, "<f4").tobytes()))
    for request, words in [
        (pb.SearchRequest(query=pb.Query(vector=pb.Vector(f32=np.zeros(width, "<f4").tobytes())), k=3), "zero"),
        (pb.SearchRequest(query=pb.Query(vector=pb.Vector(f32=np.full(width, np.nan, "<f4").tobytes())), k=3),
         "finite"),
        (pb.SearchRequest(query=good, k=5_000), "over the limit"),
        (pb.SearchRequest(query=good, k=3, exclude_keys=["v:1"]), "plain vector queries"),
        (pb.SearchRequest(query=pb.Query(vector=pb.Vector(f32=b"1234")), k=3), "plain vector queries"),
    ]:
        context = Context()
        with pytest.raises(Aborted):
            service.Search(request, context)
        assert context.code == grpc.StatusCode.INVALID_ARGUMENT and words in context.message
