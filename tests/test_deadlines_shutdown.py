"""Deadlines stop long work between its steps; SIGTERM drains a real `jointspace serve` process."""

from __future__ import annotations

import io
import json
import queue
import re
import signal
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import soundfile
from grpc_health.v1 import health_pb2, health_pb2_grpc

from harness_serve import serve_program
from jointspace.bench.serve_process import ServeProcess
from jointspace.client import Client, make_query
from jointspace.core.deadline import Deadline, check_deadline, deadline_scope
from jointspace.core.errors import Cancelled, DeadlineExceeded
from jointspace.v1 import jointspace_pb2 as pb
from serving import own_server, scrape, value

SERVICE = "jointspace.v1.JointSpace"


def _noise_pcm(seconds: float, rate: int) -> bytes:
    return (np.random.default_rng(0).standard_normal(int(seconds * rate)).astype("<f4") * 0.1).tobytes()


def test_deadline_checks_raise_only_inside_an_expired_call():
    check_deadline("outside any call")  # index builds and the CLI never stop
    with deadline_scope(Deadline.after(60)):
        check_deadline("plenty of time")
    with deadline_scope(Deadline.after(0)):
        with pytest.raises(DeadlineExceeded, match="deadline of 0 s exceeded before decoding"):
            check_deadline("decoding")
    with deadline_scope(Deadline.after(60, is_cancelled=lambda: True)):
        with pytest.raises(Cancelled):
            check_deadline("decoding")
    check_deadline("after the call")  # the scope is gone again


@pytest.fixture(scope="module")
def engine(built):
    from jointspace.server.serving.engine import Engine

    return Engine(built.model, built.index)


def test_server_maximum_applies_when_the_client_sets_no_deadline(engine):
    """The server's 0.05 s cap stops an audio batch that needs far longer (eight 30 s clips at
    44.1 kHz to resample, then the model) before it is done."""
    clips = [make_query(audio=_noise_pcm(30, 44_100), sample_rate=44_100)] * 8
    with own_server(engine, max_deadline_seconds=0.05, metrics_port=0) as running:
        with Client(f"127.0.0.1:{running.port}") as client:
            before = scrape(running.metrics.port)
            with pytest.raises(grpc.RpcError) as raised:
                client.stub.Embed(pb.EmbedRequest(inputs=clips))  # no timeout: the server's applies
            assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert re.fullmatch(r"deadline of 0.05 s exceeded (before "
                                r"(embedding audio queries|decoding audio|running the audio model)"
                                r"|while decoding audio; the decoder was stopped)",  # in its worker
                                raised.value.details())
            assert client.info().size > 0  # and the server goes on serving
            after = scrape(running.metrics.port)
    labels = dict(service=SERVICE, method="Embed", code="DEADLINE_EXCEEDED")
    assert value(after, "jointspace_grpc_requests_total", **labels) - value(
        before, "jointspace_grpc_requests_total", **labels) == 1


def test_audio_batches_check_the_deadline_before_every_clip(engine):
    """Deterministic: the call is 'cancelled' at the fourth check, which must come before the
    third clip is decoded (one check per modality, then one per clip)."""
    checks = []

    def cancelled_at_fourth_check() -> bool:
        checks.append(None)
        return len(checks) >= 4

    clips = [("audio", (_noise_pcm(1, 16_000), 16_000))] * 8
    with deadline_scope(Deadline.after(60, is_cancelled=cancelled_at_fourth_check)):
        with pytest.raises(Cancelled, match="before decoding audio"):
            engine.embed(clips)
    assert len(checks) == 4
    assert engine.embed(clips[:2]).shape[0] == 2  # outside a call nothing stops


def _collect(watch, statuses: queue.Queue) -> None:
    """Each status the watch streams; a failure goes into the queue too, for the test's own
    thread to see (an exception raised here would only end this thread)."""
    try:
        for answer in watch:
            statuses.put(answer.status)
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.CANCELLED:  # we cancel it ourselves
            statuses.put(error)


def _late_calls_until_refused(target: str, within: float = 10) -> grpc.StatusCode | None:
    """New calls until one is turned away, and how. A call that lands in the very instant the server
    stops accepting is one gRPC's core has received but not yet handed to a handler: it cancels
    such calls (CANCELLED) rather than drain them, so that is a moment to try again, not an answer."""
    give_up = time.monotonic() + within
    while time.monotonic() < give_up:
        with Client(target, timeout=5) as late:
            try:
                late.info()
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.CANCELLED:
                    return error.code()
    return None


def _wait_for_file(path: Path, call: grpc.Future, within: float = 120) -> None:
    """Until `path` appears; the bound only turns a server that never gets there into a failure."""
    give_up = time.monotonic() + within
    while not path.is_file():
        assert not call.done(), call.exception()
        assert time.monotonic() < give_up, f"{path.name} did not appear within {within:g} s"
        time.sleep(0.02)


@pytest.mark.slow
def test_sigterm_drains_in_flight_calls_then_exits(built, tmp_path):
    """The call in flight is held inside the server, at the "decoding" pause point of the
    test-only entry point tests/harness_serve.py, until the test has seen the drain; then it is let
    go and must complete. It is in flight by construction, not because it is slow on this machine."""
    config = tmp_path / "serve.toml"
    config.write_text(f"""
[server]
model = "{built.model}"
index = "{built.index}"
port = 0
grace_seconds = 60
[logging]
format = "json"
""")
    clip = io.BytesIO()
    soundfile.write(clip, np.frombuffer(_noise_pcm(1, 8000), "<f4"), 8000, format="WAV", subtype="PCM_16")
    paused, resume = tmp_path / "paused", tmp_path / "resume"
    serve = ServeProcess(["--config", str(config)], program=serve_program(
        "--pause-at", "decoding", "--pause-file", str(paused), "--resume-file", str(resume)))
    try:
        target = f"127.0.0.1:{serve.wait_for('listening on')['port']}"
        serve.wait_for("serving gen-")
        with Client(target, timeout=120) as client:
            client.wait_ready(timeout=30)
            in_flight = client.stub.Embed.future(pb.EmbedRequest(inputs=[make_query(audio=clip.getvalue())]),
                                                 timeout=120)
            _wait_for_file(paused, in_flight)
            statuses: queue.Queue[int | grpc.RpcError] = queue.Queue()
            watch = health_pb2_grpc.HealthStub(client.channel).Watch(health_pb2.HealthCheckRequest(), timeout=120)
            threading.Thread(target=_collect, args=(watch, statuses), daemon=True).start()
            assert statuses.get(timeout=10) == health_pb2.HealthCheckResponse.SERVING

            serve.process.send_signal(signal.SIGTERM)
            assert statuses.get(timeout=10) == health_pb2.HealthCheckResponse.NOT_SERVING
            watch.cancel()  # a watcher is an in-flight call too; the drain would wait for it
            assert _late_calls_until_refused(target) == grpc.StatusCode.UNAVAILABLE
            assert not in_flight.done(), in_flight.exception()
            resume.write_text("go")
            response = in_flight.result(timeout=120)  # ...and the call in flight still completes
        assert response.count == 1 and len(response.vectors) == 4 * response.dim
        assert serve.process.wait(timeout=30) == 0
        messages = [json.loads(line)["message"] for line in serve.lines if line.startswith("{")]
        assert any(m.startswith("stopping: NOT_SERVING") for m in messages) and messages[-1] == "stopped"
    finally:
        if serve.process.poll() is None:
            serve.process.kill()
