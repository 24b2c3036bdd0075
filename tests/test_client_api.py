"""The Python clients against real servers: the sync and asyncio clients answer alike, errors come
back as typed exceptions naming the field, retries follow the channel's service config, and the
API's conventions (entries by key, a minimum score, paged operations, error details, INTERNAL
answers by error id) hold end to end."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from google.longrunning import operations_pb2, operations_pb2_grpc

from jointspace.client import (
    AsyncClient,
    Client,
    DeadlineExceeded,
    Entry,
    IndexInfo,
    Internal,
    InvalidArgument,
    Operation,
    OperationState,
    ResourceExhausted,
    Unavailable,
    make_catalog_entry,
)
from jointspace.client.errors import from_rpc_error
from jointspace.client.wire import upsert_batches
from jointspace.core.faults import Faults, Pause, injected
from jointspace.core.limits import Limits
from jointspace.v1 import jointspace_pb2 as pb
from jointspace.v1 import jointspace_pb2_grpc as pb_grpc
from serving import own_server

DIM = 16


def _engine(built: Any, index: Path, **settings: Any) -> Any:
    from jointspace.server.serving.engine import Engine

    return Engine(built.model, index, **settings)


@pytest.fixture()
def own(built, tmp_path):
    """A server of its own over a private copy of the session index, with its access log on (the
    record of every attempt a client made), and its address."""
    index = tmp_path / "index"
    shutil.copytree(built.index, index)
    with own_server(_engine(built, index), access_log=True) as running:
        yield f"127.0.0.1:{running.port}"


def _vectors(count: int, seed: int = 0) -> list[list[float]]:
    return np.random.default_rng(seed).normal(size=(count, DIM)).round(4).tolist()


def test_sync_and_async_clients_return_the_same_typed_answers(server, client):
    queries: list[dict[str, Any]] = [{"text": "seven"}, {"id": "m:3"}, {"ids": ["m:1", "m:2"]}]

    async def with_async() -> tuple[Any, ...]:
        async with AsyncClient(server, timeout=30) as aio:
            await aio.wait_ready()
            return (await aio.info(), await aio.search(text="seven", k=5),
                    await aio.batch_search(queries, k=4, modalities=["id"], exclude=["m:9"], filters={"taste": [1, 2]}),
                    await aio.get_entries(["m:3", "nope"]))

    info, hits, batch, entries = asyncio.run(with_async())
    assert isinstance(info, IndexInfo) and info == client.info()
    assert hits == client.search(text="seven", k=5) and len(hits) == 5
    assert batch == client.batch_search(queries, k=4, modalities=["id"], exclude=["m:9"], filters={"taste": [1, 2]})
    assert entries == client.get_entries(["m:3", "nope"])


def test_batch_search_applies_filters_and_exclusions_to_every_query(client):
    queries: list[dict[str, Any]] = [{"id": "m:3"}, {"text": "seven"}]
    batch = client.batch_search(queries, k=5, modalities=["id"], exclude=["m:3"], filters={"taste": [1, 2]})
    alone = [client.search(k=5, modalities=["id"], exclude=["m:3"], filters={"taste": [1, 2]}, **q) for q in queries]
    assert batch == alone
    hits = [hit for result in batch for hit in result]
    assert hits and all(h.key != "m:3" and h.metadata["taste"] in (1, 2) for h in hits)


def test_min_score_keeps_the_hits_at_or_above_it(client):
    hits = client.search(text="seven", k=10)
    threshold = (hits[2].score + hits[3].score) / 2 if hits[2].score > hits[3].score else hits[2].score
    kept = client.search(text="seven", k=10, min_score=threshold)
    assert kept == [h for h in hits if h.score >= threshold] and 0 < len(kept) < len(hits)
    assert client.search(text="seven", k=10, min_score=1.5) == []
    [batch] = client.batch_search([{"text": "seven"}], k=10, min_score=threshold)
    assert batch == kept
    with pytest.raises(InvalidArgument) as raised:
        client.search(text="seven", k=10, min_score=float("nan"))
    assert raised.value.field == "min_score"


def test_bad_requests_raise_typed_exceptions_naming_the_field(client):
    cases = {
        "k": lambda: client.search(text="seven", k=0),
        "query.text": lambda: client.search(text=" ", k=3),
        "filters[0].any_of[0]": lambda: client.search(text="seven", k=1, filters={"taste": [{"a": 1}]}),
        "keys": lambda: client.get_entries([]),
        "entries[0].key": lambda: client.upsert([{"text": "x"}]),
    }
    for field, call in cases.items():
        with pytest.raises(InvalidArgument) as raised:
            call()
        error = raised.value
        assert (error.field, error.violations[0].field) == (field, field), error
        assert error.reason == "INVALID_INPUT" and error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert isinstance(error, grpc.RpcError) and error.details().startswith(f"{field}: ")
    with pytest.raises(ResourceExhausted) as over:
        client.search(text="seven", k=10**6)
    assert over.value.field == "k" and over.value.reason == "LIMIT_EXCEEDED"


def test_async_errors_are_typed_too(server):
    async def bad_search() -> InvalidArgument:
        async with AsyncClient(server, timeout=30) as aio:
            try:
                await aio.search(text="seven", k=0)
            except InvalidArgument as error:
                return error
        raise AssertionError("no error")

    assert asyncio.run(bad_search()).field == "k"


def _catalog_entry(built: Any, key: str) -> Entry:
    rows = (json.loads(line) for line in built.catalog.read_text().splitlines())
    row = next(r for r in rows if r["key"] == key)
    kind = next(k for k in ("id", "text", "audio", "vector") if k in row)
    return Entry(key, kind, row.get("metadata", {}))


def test_get_entries_follow_the_online_changes(own, built):
    with Client(own, timeout=30) as client:
        client.wait_ready()
        assert client.get_entries(["m:3", "m:5"]) == [_catalog_entry(built, "m:3"), _catalog_entry(built, "m:5")]
        client.upsert([{"key": "m:3", "vector": [1.0] * DIM, "metadata": {"note": "moved"}},
                       {"key": "new", "text": "seven", "metadata": {"n": 1}}])
        client.delete(["m:4"])
        assert client.get_entries(["new", "m:3", "m:4", "m:5", "new"]) == [
            Entry("new", "text", {"n": 1}), Entry("m:3", "vector", {"note": "moved"}), _catalog_entry(built, "m:5")]
        raw = client.stub.GetEntries(pb.GetEntriesRequest(keys=["m:4", "nope", "new"]), timeout=30)
        assert list(raw.missing_keys) == ["m:4", "nope"] and [e.key for e in raw.entries] == ["new"]


def test_large_upserts_are_split_under_the_servers_batch_limit(built, tmp_path):
    index = tmp_path / "index"
    shutil.copytree(built.index, index)
    rows = [{"key": f"u:{i}", "vector": v} for i, v in enumerate(_vectors(10))]
    with own_server(_engine(built, index, limits=Limits(max_batch=4))) as running:
        target = f"127.0.0.1:{running.port}"
        with Client(target, timeout=30) as unaware, pytest.raises(ResourceExhausted) as refused:
            unaware.upsert(rows)
        assert refused.value.field == "entries"
        with Client(target, timeout=30, max_batch=4) as client:
            assert client.upsert(rows, request_id="bulk-1") == 10
            assert client.upsert(rows, request_id="bulk-1") == 10  # each part answered again, not applied
            keys = [r["key"] for r in rows]
            assert [e.key for part in (keys[:4], keys[4:8], keys[8:]) for e in client.get_entries(part)] == keys


def test_upsert_batches_stay_under_the_message_limit():
    entries = [make_catalog_entry({"key": f"k{i}", "text": "x" * 20_000}) for i in range(40)]
    limit = 200_000
    batches = list(upsert_batches(entries, limit, 1_000))
    assert [e for batch in batches for e in batch] == entries and len(batches) > 1
    assert all(pb.UpsertRequest(entries=batch, request_id="r" * 64).ByteSize() < limit for batch in batches)


def _attempts(caplog: pytest.LogCaptureFixture, client: Client, method: str) -> list[str]:
    """The access log's records of `method`'s attempts so far. A record is written as a call
    ends, after its status went out: a GetIndexInfo made now is logged after all of them."""
    client.info()
    for _ in range(1_000):
        messages = [r.getMessage() for r in caplog.records if r.name == "jointspace.access"]
        if any("/GetIndexInfo " in m for m in messages):
            return [m for m in messages if f"/{method} " in m]
        time.sleep(0.01)
    raise AssertionError("the access log never showed the GetIndexInfo call")


def test_writes_and_reads_are_retried_on_unavailable_only(own, caplog):
    caplog.set_level(logging.INFO, logger="jointspace.access")
    entry = {"key": "probe", "vector": [1.0] * DIM}
    with Client(own, timeout=30) as client:
        client.wait_ready()
        with injected(Faults(failing_writes=frozenset({"journal"}))), pytest.raises(Unavailable) as failed:
            client.upsert([entry])
        attempts = _attempts(caplog, client, "Upsert")
        assert len(attempts) == 4 and all("UNAVAILABLE" in a for a in attempts)  # maxAttempts of the policy
        assert failed.value.retry_delay and failed.value.reason == "STORAGE_ERROR"
        caplog.clear()
        with pytest.raises(InvalidArgument):
            client.search(text="seven", k=0)
        assert len(_attempts(caplog, client, "Search")) == 1  # a refusal is not retried
        assert client.upsert([entry]) == 1
    caplog.clear()
    with Client(own, timeout=30, retries=False) as once:
        with injected(Faults(failing_writes=frozenset({"journal"}))), pytest.raises(Unavailable):
            once.upsert([entry])
        assert len(_attempts(caplog, once, "Upsert")) == 1


def test_internal_errors_carry_an_id_that_the_server_logged(client, built, caplog):
    secret = "/srv/secret/path exploded"

    def boom() -> None:
        raise RuntimeError(secret)

    with injected(Faults(pauses={"decoding": boom})), pytest.raises(Internal) as raised:
        client.search(audio_path=built.indexed_clips[0].path, k=1)
    error = raised.value
    assert error.error_id and error.error_id in error.details() and secret not in error.details()
    logged = [r for r in caplog.records if error.error_id in r.getMessage()]
    assert logged and secret in str(logged[0].exc_info[1])
    assert client.search(text="seven", k=1)  # and the server goes on serving


def _rebuild_catalog(path: Path) -> Path:
    path.write_text("".join(json.dumps({"key": f"v:{i}", "vector": v}) + "\n" for i, v in enumerate(_vectors(20))))
    return path


def test_operations_are_listed_in_pages_and_waited_for_with_a_timeout(own, tmp_path):
    catalog = _rebuild_catalog(tmp_path / "vectors.jsonl")
    with Client(own, timeout=60) as client:
        client.wait_ready()
        names = [client.wait(client.rebuild([catalog]).name, poll=0.02).name for _ in range(3)]
        listed = list(client.operations(page_size=2))
        assert [o.name for o in listed] == names[::-1] and all(isinstance(o, Operation) for o in listed)
        standard = operations_pb2_grpc.OperationsStub(client.channel)  # google.longrunning's own stub
        first = standard.ListOperations(operations_pb2.ListOperationsRequest(page_size=2), timeout=30)
        assert len(first.operations) == 2 and first.next_page_token
        last = standard.ListOperations(
            operations_pb2.ListOperationsRequest(page_size=2, page_token=first.next_page_token), timeout=30)
        assert [o.name for o in last.operations] == names[:1] and not last.next_page_token
        with pytest.raises(grpc.RpcError) as bad_token:
            standard.ListOperations(operations_pb2.ListOperationsRequest(page_token="not a token!"), timeout=30)
        assert from_rpc_error(bad_token.value).field == "page_token"  # the details of a plain gRPC error

        with injected(Faults(pauses={"indexing": Pause()})) as faults:
            started = client.rebuild([catalog])
            assert faults.pauses["indexing"].reached.wait(120)
            with pytest.raises(DeadlineExceeded):
                client.wait(started.name, poll=0.05, timeout=0.2)
            assert not client.operation(started.name).done  # the operation went on
            faults.pauses["indexing"].resume.set()
            assert client.wait(started.name, poll=0.02, timeout=120).state == OperationState.SUCCEEDED


def test_a_generic_long_running_operation_helper_follows_a_rebuild(own, tmp_path):
    """google-api-core's operation helper, which knows nothing of jointspace, polls the server's
    google.longrunning.Operations service and unpacks the typed response and metadata."""
    from google.api_core import exceptions, operation, operations_v1

    catalog = _rebuild_catalog(tmp_path / "vectors.jsonl")
    channel = grpc.insecure_channel(own)
    try:
        stub = pb_grpc.JointSpaceStub(channel)
        started = stub.RebuildIndex(pb.RebuildIndexRequest(catalog_paths=[str(catalog)]), timeout=30)
        future = operation.from_gapic(started, operations_v1.OperationsClient(channel), pb.RebuildIndexResponse,
                                      metadata_type=pb.RebuildIndexMetadata)
        result = future.result(timeout=120)
        assert result.generation and future.metadata.state == pb.RebuildIndexMetadata.SUCCEEDED
        assert stub.GetIndexInfo(pb.GetIndexInfoRequest(), timeout=30).generation == result.generation
        failing = stub.RebuildIndex(pb.RebuildIndexRequest(catalog_paths=[str(catalog)], index_type="IVF4096,Flat"),
                                    timeout=30)
        with pytest.raises(exceptions.GoogleAPICallError) as failed:
            operation.from_gapic(failing, operations_v1.OperationsClient(channel), pb.RebuildIndexResponse,
                                 metadata_type=pb.RebuildIndexMetadata).result(timeout=120)
        assert failed.value.grpc_status_code != grpc.StatusCode.OK and failed.value.message
    finally:
        channel.close()
