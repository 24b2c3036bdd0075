"""Hostile audio through real gRPC: a decoder that crashes, hangs or eats memory is stopped in its
worker process (encoders/impl/decode_pool.py) with a proper status, and the next query succeeds;
non-finite samples are refused and silence is a valid clip."""

from __future__ import annotations

import io
import os

import grpc
import numpy as np
import pytest
import soundfile
from grpc_health.v1 import health_pb2, health_pb2_grpc

from jointspace.client import Client, make_query
from jointspace.core.errors import InvalidInput, LimitExceeded
from jointspace.core.faults import DECODE_HANG, DECODE_MEMORY, DECODE_SEGFAULT, Faults, injected
from jointspace.core.limits import Limits
from jointspace.encoders.impl.decode_pool import DecodePool, shared_pool
from jointspace.v1 import jointspace_pb2 as pb
from serving import own_server


def _wav(samples: np.ndarray, rate: int = 8000, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


def _search_audio(client, content: bytes, timeout: float = 30.0, sample_rate: int = 0) -> pb.SearchResponse:
    request = pb.SearchRequest(query=make_query(audio=content, sample_rate=sample_rate or None), k=3)
    return client.stub.Search(request, timeout=timeout)


def _status(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value.code(), raised.value.details()


def _serving(server: str) -> bool:
    with grpc.insecure_channel(server) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    return answer.status == health_pb2.HealthCheckResponse.SERVING


@pytest.fixture()
def clip(built) -> bytes:
    return built.indexed_clips[0].path.read_bytes()


@pytest.fixture()
def faults():
    with injected(Faults(decode_markers=True)):
        yield


def test_a_decoder_crash_is_invalid_argument_and_the_next_query_succeeds(server, client, clip, faults):
    code, message = _status(lambda: _search_audio(client, DECODE_SEGFAULT))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "decoder crashed" in message and "SIGSEGV" in message
    assert len(_search_audio(client, clip).hits) == 3
    assert _serving(server)


def test_a_hung_decoder_is_stopped_at_the_deadline(built, client, clip, faults):
    """The server's own cap sets the deadline and the client waits longer, so the status comes
    from the server, and its message says which limit stopped the decoder: no clock reading."""
    from jointspace.server.serving.engine import Engine

    assert len(_search_audio(client, clip).hits) == 3  # a decoder is idle: the hang starts at once
    with own_server(Engine(built.model, built.index), max_deadline_seconds=2.0) as running, \
            Client(f"127.0.0.1:{running.port}", timeout=60) as capped:
        code, message = _status(lambda: _search_audio(capped, DECODE_HANG, timeout=60))
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert message == "deadline of 2 s exceeded while decoding audio; the decoder was stopped"
    # Every worker hangs in turn and is replaced: the pool (one per process) never runs out.
    for _ in range(shared_pool().size + 1):
        _status(lambda: _search_audio(client, DECODE_HANG, timeout=0.5))
    assert len(_search_audio(client, clip).hits) == 3


def test_a_decoder_that_eats_memory_is_resource_exhausted(server, client, clip, faults):
    code, message = _status(lambda: _search_audio(client, DECODE_MEMORY))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_audio_decode_mb" in message
    assert len(_search_audio(client, clip).hits) == 3


def test_markers_are_plain_bad_bytes_without_the_test_hook(server, client):
    code, message = _status(lambda: _search_audio(client, DECODE_SEGFAULT))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "could not decode" in message


def test_audio_is_decoded_outside_the_server_process(server, client, clip):
    pool = shared_pool()
    assert pool is not None
    _search_audio(client, clip)
    worker = pool._idle.get(timeout=10)
    try:
        assert worker.process.pid != os.getpid() and worker.process.is_alive()
    finally:
        pool._idle.put(worker)


@pytest.mark.parametrize("samples", [
    np.float32([0.1, np.nan, -0.1] * 100),
    np.float32([0.1, np.inf, -0.1] * 100),
], ids=["nan", "inf"])
def test_non_finite_samples_are_invalid_argument(client, samples):
    for content, rate in ((_wav(samples, subtype="FLOAT"), 0), (samples.astype("<f4").tobytes(), 8000)):
        code, message = _status(lambda content=content, rate=rate: _search_audio(client, content, sample_rate=rate))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "finite" in message


def test_silence_is_a_valid_clip_with_a_unit_embedding(client):
    silent_file = _wav(np.zeros(8000, np.int16))
    silent_pcm = np.zeros(16000, "<f4").tobytes()
    vectors = client.embed([make_query(audio=silent_file), make_query(audio=silent_pcm, sample_rate=16000)])
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    hits = _search_audio(client, silent_file).hits
    assert len(hits) == 3 and all(np.isfinite(h.score) for h in hits)


def test_a_decode_over_its_time_limit_is_resource_exhausted_and_its_worker_replaced(built, faults):
    pool = DecodePool(1)
    try:
        tight = Limits(max_audio_decode_seconds=0.5)
        with pytest.raises(LimitExceeded, match=r"max_audio_decode_seconds \(0\.5 s\); the decoder was stopped"):
            pool.decode(DECODE_HANG, 16000, None, tight)
        clip = pool.decode(built.indexed_clips[0].path, 16000, None, tight)
        assert clip.dtype == np.float32 and clip.size > 1000
        with pytest.raises(InvalidInput, match="Format not recognised"):
            pool.decode(b"not audio at all" * 8, 16000, None, tight)
    finally:
        pool.close()


def test_bench_decode_reports_both_latencies(built):
    from jointspace.bench import decode

    result = decode.run(built.model, built.index, clips=3, passes=1)
    assert result["clips"] == 3 and result["passes"] == 1
    for what in ("search_median_ms", "decode_median_ms"):
        figures = result[what]
        assert figures["pool"] > 0 and figures["in_process"] > 0
        assert figures["added_by_pool"] == pytest.approx(figures["pool"] - figures["in_process"], abs=1e-3)
    assert shared_pool() is not None  # the session server's pool is back
