"""Half-open calls against a real server over loopback: HTTP/2 streams that send their HEADERS
(and perhaps part of a body) but never the rest of the request. They must hold no worker, so
health and well-behaved calls keep being answered however many there are; unauthenticated ones
are refused without waiting for a body; each of the others is cancelled once the server's
request-read timeout has passed.

A gRPC client always sends its whole request, so a raw HTTP/2 client (h2) plays the attacker.
Time bounds here are generous on purpose: an answer takes milliseconds, and a bound only has to
separate "answered while the stalled calls were held" from "answered once they were dropped",
which the tests check directly (the stalled streams are still open after the answer).
"""

from __future__ import annotations

import contextlib
import queue
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import h2.config
import h2.connection
import h2.events
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from jointspace.bench.noop_server import NoopService
from jointspace.cli import build_parser
from jointspace.core.deadline import check_deadline
from jointspace.core.errors import InvalidInput, JointspaceError
from jointspace.server.api.config import ServeConfig, load_config
from jointspace.v1 import jointspace_pb2 as pb
from jointspace.v1 import jointspace_pb2_grpc as pb_grpc
from serving import own_server, scrape, value

SEARCH = "/jointspace.v1.JointSpace/Search"
INFO = "/jointspace.v1.JointSpace/GetIndexInfo"
HEALTH = "/grpc.health.v1.Health/Check"
REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"  # a request stream
# An answer takes milliseconds even on a loaded 2-core machine; this only has to stay far below
# HELD, so that an answer cannot have waited for the stalled calls to be dropped.
ANSWER_WITHIN = 30.0
HELD = 600.0  # a request-read timeout that outlasts every test that keeps its stalled calls
WORKERS = 2
RESET = "RST_STREAM"
DEADLINE_EXCEEDED = grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED.value[0]
TOKEN = "stalled-streams-test-token-0123456789"


def partial_body(promised: int, sent: int) -> bytes:
    """A gRPC message frame whose length prefix promises `promised` bytes, of which `sent` come."""
    return b"\x00" + struct.pack(">I", promised) + b"\x08" * sent


class RawConnection:
    """One HTTP/2 connection that speaks just enough gRPC to start calls and never finish them,
    and records how the server ends each stream: its grpc-status, or RST_STREAM."""

    def __init__(self, port: int) -> None:
        self.socket = socket.create_connection(("127.0.0.1", port))
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.ended: dict[int, int | str] = {}
        self.pings_acked = 0
        self.failure: BaseException | None = None
        self.changed = threading.Condition()
        with self.changed:
            self.h2.initiate_connection()
            self._flush()
        threading.Thread(target=self._read, daemon=True).start()

    def stall(self, path: str, timeout: str | None = None, token: str | None = None, body: bytes = b"") -> int:
        """Open a call on `path`, send `body` (not a whole request), and never end the stream."""
        headers = [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "127.0.0.1"),
                   ("content-type", "application/grpc"), ("te", "trailers")]
        if timeout is not None:
            headers.append(("grpc-timeout", timeout))
        if token is not None:
            headers.append(("authorization", f"Bearer {token}"))
        with self.changed:
            stream = self.h2.get_next_available_stream_id()
            self.h2.send_headers(stream, headers)
            if body:
                self.h2.send_data(stream, body)
            self._flush()
        return stream

    def sync(self) -> None:
        """Return once the server has read everything sent so far (a PING is answered in order)."""
        with self.changed:
            wanted = self.pings_acked + 1
            self.h2.ping(b"stalled!")
            self._flush()
            assert self.changed.wait_for(lambda: self.pings_acked >= wanted or self.failure, ANSWER_WITHIN)
            assert self.failure is None, self.failure

    def open_streams(self, streams: list[int]) -> list[int]:
        with self.changed:
            assert self.failure is None, self.failure
            return [s for s in streams if s not in self.ended]

    def wait_ended(self, streams: list[int], within: float) -> dict[int, int | str]:
        with self.changed:
            self.changed.wait_for(lambda: self.failure or all(s in self.ended for s in streams), within)
            assert self.failure is None, self.failure
            missing = [s for s in streams if s not in self.ended]
            assert not missing, f"{len(missing)} of {len(streams)} stalled streams still open after {within} s"
            return {s: self.ended[s] for s in streams}

    def close(self) -> None:
        self.socket.close()

    def _flush(self) -> None:
        self.socket.sendall(self.h2.data_to_send())

    def _read(self) -> None:
        try:
            while data := self.socket.recv(65536):
                with self.changed:
                    for event in self.h2.receive_data(data):
                        self._on(event)
                    self._flush()
                    self.changed.notify_all()
            raise ConnectionError("the server closed the connection")
        except BaseException as error:  # reported by the next wait
            with self.changed:
                self.failure = self.failure or error
                self.changed.notify_all()

    def _on(self, event: h2.events.Event) -> None:
        if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
            status = dict(event.headers).get("grpc-status")
            if status is not None:
                self.ended.setdefault(event.stream_id, int(status))
        elif isinstance(event, h2.events.StreamReset):
            self.ended.setdefault(event.stream_id, RESET)
        elif isinstance(event, h2.events.DataReceived):
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.PingAckReceived):
            self.pings_acked += 1
        elif isinstance(event, h2.events.ConnectionTerminated):
            raise ConnectionError(f"the server ended the connection: {event.error_code!r}")


@contextlib.contextmanager
def raw_connection(port: int) -> Iterator[RawConnection]:
    connection = RawConnection(port)
    try:
        yield connection
    finally:
        connection.close()


@contextlib.contextmanager
def noop_server(**settings: Any) -> Iterator[Any]:
    """The real server stack with `WORKERS` workers, answering Search from prebuilt hits."""
    with own_server(None, **{"workers": WORKERS, **settings}) as running:
        running.answer_with(NoopService(k=3))
        yield running


@pytest.fixture(scope="module")
def tokens_file(tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = tmp_path_factory.mktemp("stalled") / "tokens.txt"
    path.write_text(f"read {TOKEN}\n")
    return path


def _metadata(token: str | None) -> list[tuple[str, str]] | None:
    return None if token is None else [("authorization", f"Bearer {token}")]


def health_status(port: int) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=ANSWER_WITHIN).status


def search_hits(port: int, token: str | None = None) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        response = pb_grpc.JointSpaceStub(channel).Search(pb.SearchRequest(k=3), timeout=ANSWER_WITHIN,
                                                          metadata=_metadata(token))
    return len(response.hits)


def assert_answered_while_held(port: int, connection: RawConnection, stalled: list[int],
                               token: str | None = None) -> None:
    """Health and a normal Search are answered, and every stalled call was held meanwhile."""
    connection.sync()
    assert health_status(port) == health_pb2.HealthCheckResponse.SERVING
    assert search_hits(port, token) == 3
    assert connection.open_streams(stalled) == stalled


@pytest.mark.parametrize("path", [SEARCH, HEALTH], ids=["search", "health"])
@pytest.mark.parametrize("timeout", [None, "100S"], ids=["no-deadline", "deadline"])
@pytest.mark.parametrize("body", [b"", partial_body(100, 10)], ids=["headers-only", "partial-body"])
def test_stalled_calls_hold_no_worker(path, timeout, body):
    """More stalled calls than workers: other calls still get through."""
    with noop_server(request_read_timeout_seconds=HELD) as running, raw_connection(running.port) as connection:
        stalled = [connection.stall(path, timeout, body=body) for _ in range(3 * WORKERS)]
        assert_answered_while_held(running.port, connection, stalled)


def test_many_stalled_calls_with_default_limits():
    """Past the default limit of 64 concurrent calls, on two connections."""
    with noop_server(request_read_timeout_seconds=HELD) as running, raw_connection(running.port) as first, \
            raw_connection(running.port) as second:
        held = {c: [c.stall(path) for _ in range(40) for path in (SEARCH, HEALTH)] for c in (first, second)}
        for connection, stalled in held.items():
            assert_answered_while_held(running.port, connection, stalled)


def test_stalled_calls_are_cancelled_after_the_read_timeout():
    timeout = 0.5
    with noop_server(request_read_timeout_seconds=timeout, metrics_port=0) as running, \
            raw_connection(running.port) as connection:
        before = scrape(running.metrics.port)
        started = time.monotonic()
        stalled = [connection.stall(path, deadline, body=body)
                   for path in (SEARCH, HEALTH, REFLECTION) for deadline in (None, "100S")
                   for body in (b"", partial_body(100, 10), b"\x00\x00")]
        ended = connection.wait_ended(stalled, within=ANSWER_WITHIN + timeout)
        assert time.monotonic() - started >= timeout  # the server waited that long first
        assert set(ended.values()) == {DEADLINE_EXCEEDED}
        assert health_status(running.port) == health_pb2.HealthCheckResponse.SERVING
        after = scrape(running.metrics.port)
    exceeded = dict(service="jointspace.v1.JointSpace", method="Search", code="DEADLINE_EXCEEDED")
    assert value(after, "jointspace_grpc_requests_total", **exceeded) - value(
        before, "jointspace_grpc_requests_total", **exceeded) == len(stalled) // 3
    assert value(after, "jointspace_grpc_requests_in_flight", service=exceeded["service"], method="Search") == 0


def test_unauthenticated_stalled_calls_are_refused_at_once(tokens_file):
    """Refused without waiting for their bodies; authenticated and health ones are held."""
    with noop_server(request_read_timeout_seconds=HELD, tokens_file=tokens_file) as running, \
            raw_connection(running.port) as connection:
        refused = [connection.stall(path, body=body, token=token)
                   for path in (SEARCH, INFO) for token in (None, "not-" + TOKEN)
                   for body in (b"", partial_body(100, 10))
                   for _ in range(2 * WORKERS)]
        held = [connection.stall(SEARCH, token=TOKEN) for _ in range(2 * WORKERS)]
        held += [connection.stall(HEALTH) for _ in range(2 * WORKERS)]
        assert set(connection.wait_ended(refused, within=ANSWER_WITHIN).values()) == {UNAUTHENTICATED}
        assert_answered_while_held(running.port, connection, held, token=TOKEN)


@pytest.mark.parametrize("path", [SEARCH, HEALTH], ids=["search", "health"])
@pytest.mark.parametrize("body", [b"\xff", b"\x0a\x05ab", b"\x08" + b"\x80" * 10],
                         ids=["bad-tag", "short-field", "long-varint"])
def test_undecodable_requests_are_invalid_argument(path, body):
    with noop_server() as running, grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        call = channel.unary_unary(path)  # bytes as they are, no serializer
        with pytest.raises(grpc.RpcError) as raised:
            call(body, timeout=ANSWER_WITHIN)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert len(raised.value.details()) < 100 and "Exception" not in raised.value.details()
        assert health_status(running.port) == health_pb2.HealthCheckResponse.SERVING


def test_a_call_without_a_request_is_invalid_argument():
    with noop_server() as running, grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        call = channel.stream_unary(SEARCH)  # ends its stream without sending a message
        with pytest.raises(grpc.RpcError) as raised:
            call(iter([]), timeout=ANSWER_WITHIN)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_the_read_timeout_is_a_setting(tmp_path):
    config = tmp_path / "serve.toml"
    config.write_text("[server]\nrequest_read_timeout_seconds = 2.5\n")
    assert load_config(config).request_read_timeout_seconds == 2.5
    args = build_parser().parse_args(["serve", "--request-read-timeout-seconds", "4"])
    assert ServeConfig().with_flags(vars(args)).request_read_timeout_seconds == 4.0
    assert ServeConfig().request_read_timeout_seconds > 0
    with pytest.raises(InvalidInput, match="--request-read-timeout-seconds: must be positive"):
        ServeConfig(model=tmp_path, index=tmp_path, request_read_timeout_seconds=0).check()


# --- the work pool ------------------------------------------------------------------------------

class Blocking(NoopService):
    """Search holds its worker thread until released, checking its deadline as real work does."""

    def __init__(self) -> None:
        super().__init__(k=3)
        self.release = threading.Event()
        self.started = threading.Semaphore(0)
        self.stopped: queue.Queue[str] = queue.Queue()

    def Search(self, request: pb.SearchRequest, context: Any) -> pb.SearchResponse:
        self.started.release()
        try:
            while not self.release.wait(0.01):
                check_deadline("waiting")
        except JointspaceError as error:
            self.stopped.put(type(error).__name__)
            raise
        return self.response


def test_calls_beyond_the_limit_are_refused_while_health_is_answered():
    service = Blocking()
    with own_server(None, workers=WORKERS, max_concurrent_rpcs=WORKERS) as running, \
            grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        running.answer_with(service)
        search = pb_grpc.JointSpaceStub(channel).Search
        busy = [search.future(pb.SearchRequest(k=3), timeout=ANSWER_WITHIN) for _ in range(WORKERS)]
        for _ in busy:
            assert service.started.acquire(timeout=ANSWER_WITHIN)
        with pytest.raises(grpc.RpcError) as raised:
            search(pb.SearchRequest(k=3), timeout=ANSWER_WITHIN)
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert health_status(running.port) == health_pb2.HealthCheckResponse.SERVING
        service.release.set()
        assert [len(call.result(timeout=ANSWER_WITHIN).hits) for call in busy] == [3] * WORKERS


def test_a_cancelled_call_stops_its_work():
    service = Blocking()
    with noop_server() as running, grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        running.answer_with(service)
        call = pb_grpc.JointSpaceStub(channel).Search.future(pb.SearchRequest(k=3))  # no deadline
        assert service.started.acquire(timeout=ANSWER_WITHIN)
        call.cancel()
        assert service.stopped.get(timeout=ANSWER_WITHIN) == "Cancelled"


# --- generated mixes -------------------------------------------------------------------------

partial_bodies = st.one_of(
    st.just(b""),
    st.integers(1, 4).map(lambda n: b"\x00\x00\x00\x00"[:n]),  # not even the whole length prefix
    st.integers(1, 10_000).flatmap(lambda promised: st.integers(0, promised - 1).map(
        lambda sent: partial_body(promised, sent))),
)
stalls = st.tuples(st.sampled_from([SEARCH, INFO, HEALTH, REFLECTION]), st.sampled_from([None, "100S", "10M"]),
                   st.sampled_from([None, TOKEN, "not-" + TOKEN]), partial_bodies)


@pytest.fixture(scope="module")
def guarded(tokens_file):
    with noop_server(request_read_timeout_seconds=HELD, tokens_file=tokens_file) as running:
        yield running


# Each example starts up to 90 calls on a real server; a failing one waits ANSWER_WITHIN seconds,
# so a few fixed examples and no shrinking.
@settings(max_examples=6, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate])
@given(mix=st.lists(stalls, min_size=1, max_size=90))
def test_health_stays_answerable_under_generated_stalled_mixes(guarded, mix):
    with raw_connection(guarded.port) as connection:
        streams = [connection.stall(*stall) for stall in mix]
        connection.sync()
        assert health_status(guarded.port) == health_pb2.HealthCheckResponse.SERVING
        assert search_hits(guarded.port, TOKEN) == 3
        held = [s for s, (path, _, token, _) in zip(streams, mix) if path == HEALTH or token == TOKEN]
        assert connection.open_streams(held) == held
