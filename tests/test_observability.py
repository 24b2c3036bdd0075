"""Metrics scraped from the real HTTP endpoint after real gRPC calls, JSON logs, readiness."""

from __future__ import annotations

import io
import json
import logging
import shutil
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from jointspace.client import Client, DeadlineExceeded, OperationState
from jointspace.core.faults import Faults, Pause, injected
from jointspace.core.logs import configure_logging
from jointspace.v1 import jointspace_pb2 as pb
from serving import own_server, scrape, value

SERVICE = "jointspace.v1.JointSpace"


@pytest.fixture(scope="module")
def engine(built):
    from jointspace.server.serving.engine import Engine

    return Engine(built.model, built.index)


def _health(target: str) -> int:
    with grpc.insecure_channel(target) as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10).status


def test_metrics_count_calls_and_latency_by_method_and_status(engine):
    with own_server(engine, metrics_port=0) as running, Client(f"127.0.0.1:{running.port}") as client:
        port = running.metrics.port
        before = scrape(port)
        client.search(text="seven", k=3)
        client.search(id="m:5", k=2)
        with pytest.raises(grpc.RpcError) as raised:
            client.search(text="seven", k=0)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        client.info()
        after = scrape(port)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    ok = dict(service=SERVICE, method="Search", code="OK")
    assert delta("jointspace_grpc_requests_total", **ok) == 2
    assert delta("jointspace_grpc_requests_total", service=SERVICE, method="Search", code="INVALID_ARGUMENT") == 1
    assert delta("jointspace_grpc_requests_total", service=SERVICE, method="GetIndexInfo", code="OK") == 1
    assert delta("jointspace_grpc_request_duration_seconds_count", **ok) == 2
    assert delta("jointspace_grpc_request_duration_seconds_sum", **ok) > 0
    buckets = sorted((float(dict(labels)["le"]), v) for (name, labels), v in after.items()
                     if name == "jointspace_grpc_request_duration_seconds_bucket"
                     and {k: v for k, v in labels if k != "le"} == ok)
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative
    assert buckets[-1] == (float("inf"), value(after, "jointspace_grpc_request_duration_seconds_count", **ok))
    assert value(after, "jointspace_grpc_requests_in_flight", service=SERVICE, method="Search") == 0


def test_stock_grpc_metrics_carry_the_grpc_ecosystem_names_and_labels(engine):
    """The names, labels and code spelling of go-grpc-prometheus, which stock dashboards query,
    for unary calls and for a server-streaming one (health Watch, cancelled by the client)."""
    with own_server(engine, metrics_port=0) as running, Client(f"127.0.0.1:{running.port}") as client:
        port = running.metrics.port
        before = scrape(port)
        client.search(text="seven", k=3)
        with pytest.raises(grpc.RpcError):
            client.search(text="seven", k=0)
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            with pytest.raises(grpc.RpcError):  # no request at all: nothing received, nothing sent
                channel.stream_unary(f"/{SERVICE}/Search")(iter(()), timeout=10)
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=10)
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
            watch.cancel()
        after = _settled(port, "grpc_server_handled_total", grpc_type="server_stream",
                         grpc_service="grpc.health.v1.Health", grpc_method="Watch", grpc_code="Canceled")

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    search = dict(grpc_type="unary", grpc_service=SERVICE, grpc_method="Search")
    assert delta("grpc_server_started_total", **search) == 3
    assert delta("grpc_server_handled_total", **search, grpc_code="OK") == 1
    assert delta("grpc_server_handled_total", **search, grpc_code="InvalidArgument") == 2
    assert delta("grpc_server_handling_seconds_count", **search) == 3
    assert delta("grpc_server_handling_seconds_sum", **search) > 0
    assert delta("grpc_server_msg_received_total", **search) == 2
    assert delta("grpc_server_msg_sent_total", **search) == 1
    watch_labels = dict(grpc_type="server_stream", grpc_service="grpc.health.v1.Health", grpc_method="Watch")
    assert delta("grpc_server_started_total", **watch_labels) == 1
    assert delta("grpc_server_msg_received_total", **watch_labels) == 1
    assert delta("grpc_server_msg_sent_total", **watch_labels) >= 1
    # The project's own names count the same calls.
    assert delta("jointspace_grpc_requests_total", service=SERVICE, method="Search", code="INVALID_ARGUMENT") == 2


def _settled(port, name, **labels):
    """A scrape once the sample `name{labels}` is there: a cancelled stream ends on the server a
    moment after the client has let go of it."""
    for _ in range(200):
        samples = scrape(port)
        if value(samples, name, **labels):
            return samples
        time.sleep(0.05)
    raise AssertionError(f"{name}{labels} never appeared")


def test_metrics_describe_the_served_index(engine):
    info = engine.info()
    with own_server(engine, metrics_port=0) as running:
        samples = scrape(running.metrics.port)
    assert value(samples, "jointspace_ready") == 1
    assert value(samples, "jointspace_index_generation") == int(info["generation"].split("-")[1])
    assert value(samples, "jointspace_index_dim") == info["dim"]
    for modality, count in info["size_by_modality"].items():
        assert value(samples, "jointspace_index_size", modality=modality) == count
    assert value(samples, "jointspace_index_info", generation=info["generation"],
                 model_version=info["model_version"], index_type=info["index_type"]) == 1
    assert value(samples, "process_resident_memory_bytes") > 0


def test_a_real_rebuild_reports_its_progress_at_the_endpoint(built, tmp_path):
    """Scraped while a rebuild of the shared catalog stands still after embedding its first batch
    (a pause point, jointspace/core/faults.py), then once it has succeeded."""
    from jointspace.server.serving.engine import Engine

    index = tmp_path / "index"
    shutil.copytree(built.index, index)
    catalog_rows = len(built.catalog.read_text().splitlines())
    embedded = Pause()
    with own_server(Engine(built.model, index), metrics_port=0) as running, \
            Client(f"127.0.0.1:{running.port}", timeout=60) as client, \
            injected(Faults(pauses={"embedding": embedded})):
        before = scrape(running.metrics.port)
        operation = client.rebuild([built.catalog])
        assert embedded.reached.wait(120), "the rebuild never embedded a batch"
        during = scrape(running.metrics.port)
        embedded.resume.set()
        assert client.wait(operation.name, poll=0.05).state == OperationState.SUCCEEDED
        after = scrape(running.metrics.port)
    done, total = value(during, "jointspace_rebuild_items_done"), value(during, "jointspace_rebuild_items_total")
    assert total == catalog_rows and 0 < done < total  # the first batch of several modalities
    assert value(during, "jointspace_rebuild_progress_ratio") == pytest.approx(done / total)
    succeeded = [value(at, "jointspace_rebuilds_total", outcome="succeeded") for at in (before, during, after)]
    assert succeeded[1] == succeeded[0] and succeeded[2] == succeeded[0] + 1


def test_health_is_not_serving_until_an_engine_is_attached(engine):
    with own_server(None, metrics_port=0) as running:
        target = f"127.0.0.1:{running.port}"
        assert _health(target) == health_pb2.HealthCheckResponse.NOT_SERVING
        assert value(scrape(running.metrics.port), "jointspace_ready") == 0
        with Client(target, timeout=10) as client:
            with pytest.raises(grpc.RpcError) as raised:
                client.search(text="seven", k=1)
            assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "loading" in raised.value.details()
            running.attach(engine)
            client.wait_ready(timeout=10)
            assert _health(target) == health_pb2.HealthCheckResponse.SERVING
            assert client.search(text="seven", k=1)
        assert value(scrape(running.metrics.port), "jointspace_ready") == 1


def test_wait_ready_gives_up_on_a_server_that_never_loads():
    with own_server(None) as running, Client(f"127.0.0.1:{running.port}") as client:
        with pytest.raises(DeadlineExceeded):
            client.wait_ready(timeout=0.5)


@pytest.fixture()
def json_log():
    """The `jointspace` loggers as JSON lines into a buffer, restored afterwards."""
    logger = logging.getLogger("jointspace")
    saved = logger.handlers[:], logger.level, logger.propagate
    buffer = io.StringIO()
    configure_logging("json", stream=buffer)
    try:
        yield buffer
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved


def test_access_log_writes_one_json_object_per_call(engine, json_log):
    with own_server(engine, access_log=True) as running, Client(f"127.0.0.1:{running.port}") as client:
        client.search(text="seven", k=2)
        with pytest.raises(grpc.RpcError):
            client.stub.Search(pb.SearchRequest(k=2), timeout=10)
    records = [json.loads(line) for line in json_log.getvalue().splitlines()]
    calls = [r for r in records if r["logger"] == "jointspace.access" and r.get("method") == "Search"]
    assert [r["code"] for r in calls] == ["OK", "INVALID_ARGUMENT"]
    for record in calls:
        assert record["service"] == SERVICE and record["level"] == "info"
        assert record["duration_ms"] >= 0 and "127.0.0.1" in record["peer"]
        assert record["time"].endswith("+00:00")


def test_json_log_carries_exceptions_and_progress_lines(json_log):
    from jointspace.core.progress import log

    log("removed leftovers of interrupted builds: .staging-1")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("jointspace.server").exception("Search failed")
    first, second = (json.loads(line) for line in json_log.getvalue().splitlines())
    assert first["message"].startswith("removed leftovers") and first["level"] == "info"
    assert second["level"] == "error" and "ValueError: boom" in second["exception"]


def test_overhead_bench_measures_every_server(built):
    from jointspace.bench import overhead

    result = overhead.run(built.model, built.index, calls=20, rounds=1)
    assert set(result["sequential_search_per_second"]) == {"bare", "default", "metrics+auth"}
    assert all(rate > 0 for rate in result["sequential_search_per_second"].values())
    assert result["relative_to_bare"]["bare"] == 1.0
    assert result["command"].startswith("jointspace bench overhead")
