"""Server settings (TOML file, flags, defaults) and every request limit through real gRPC."""

from __future__ import annotations

import io
import subprocess
from dataclasses import replace
from pathlib import Path

import grpc
import numpy as np
import pytest
import soundfile

from jointspace.client import Client, make_query
from jointspace.core.errors import InvalidInput, NotFound
from jointspace.core.limits import DEFAULT_LIMITS, Limits, parse_limit_assignment
from jointspace.server.api.config import ServeConfig, load_config
from jointspace.v1 import jointspace_pb2 as pb
from serving import jointspace_exe, own_server

DIM = 16
TIGHT = Limits(max_message_bytes=1 << 20, max_audio_seconds=2.0, max_request_audio_seconds=3.0,
               max_audio_sample_rate=48_000, max_text_chars=50, max_k=20, max_batch=4, max_ids=5,
               max_exclude_keys=3)


def _pcm(seconds: float, rate: int = 16_000) -> pb.Query:
    samples = np.random.default_rng(0).standard_normal(int(seconds * rate)).astype("<f4") * 0.1
    return make_query(audio=samples.tobytes(), sample_rate=rate)


def _wav(seconds: float, rate: int) -> bytes:
    out = io.BytesIO()
    soundfile.write(out, np.zeros(int(seconds * rate), np.float32), rate, format="WAV")
    return out.getvalue()


# --- config file and flags ---------------------------------------------------------------------

def test_config_file_sets_everything_and_flags_override_it(tmp_path):
    path = tmp_path / "conf" / "serve.toml"
    path.parent.mkdir()
    path.write_text("""
[server]
model = "m"
index = "/abs/index"
port = 7000
max_deadline_seconds = 5
data_dir = ".."
[limits]
max_k = 100
max_audio_seconds = 30
[tls]
cert = "s.pem"
key = "s.key"
[auth]
tokens_file = "tokens.txt"
[metrics]
port = 9464
[logging]
format = "json"
access_log = true
""")
    config = load_config(path)
    folder = path.parent.absolute()
    assert config.model == folder / "m" and config.index == Path("/abs/index")
    assert config.data_dir == folder / ".." and config.tls_cert == folder / "s.pem"
    assert (config.port, config.max_deadline_seconds, config.metrics_port) == (7000, 5.0, 9464)
    assert config.log_format == "json" and config.access_log is True
    assert config.limits == replace(DEFAULT_LIMITS, max_k=100, max_audio_seconds=30.0)
    assert config.host == "127.0.0.1"  # untouched default: loopback only

    flags = {"port": 0, "host": None, "model": "other", "limit": ["max_k=7"], "func": print}
    overridden = config.with_flags(flags).check()
    assert overridden.port == 0 and overridden.host == "127.0.0.1"
    assert overridden.model == Path("other").absolute()
    assert overridden.limits.max_k == 7 and overridden.limits.max_audio_seconds == 30.0


@pytest.mark.parametrize("text, words", [
    ("[server]\nprot = 1\n", "[server] prot: unknown setting"),
    ("[auth]\ntokens_fiel = 'x'\n", "[auth] tokens_fiel: unknown setting"),
    ("[sever]\nport = 1\n", "unknown section [sever]"),
    ("[server]\nport = '50051'\n", "[server] port: expected an integer"),
    ("[logging]\naccess_log = 1\n", "[logging] access_log: expected true or false"),
    ("[limits]\nmax_k = 0\n", "limits.max_k: must be a positive number"),
    ("[limits]\nmax_kay = 3\n", "unknown limit max_kay"),
    ("[server\n", "not valid TOML"),
])
def test_config_mistakes_name_the_setting(tmp_path, text, words):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(InvalidInput) as raised:
        load_config(path)
    assert words in str(raised.value)


@pytest.mark.parametrize("changes, words", [
    ({"model": None}, "--model: required"),
    ({"tls_cert": Path("c.pem")}, "--tls-cert and --tls-key"),
    ({"tls_client_ca": Path("ca.pem")}, "--tls-client-ca: mutual TLS needs"),
    ({"port": 70000}, "--port: 70000 is not a port number"),
    ({"max_deadline_seconds": 0}, "--max-deadline-seconds: must be positive"),
    ({"log_format": "xml"}, "--log-format"),
])
def test_settings_that_cannot_make_a_server_are_refused(changes, words):
    config = replace(ServeConfig(), model=Path("m"), index=Path("i"))
    with pytest.raises(InvalidInput, match=words.replace("[", r"\[")):
        replace(config, **changes).check()


def test_limits_from_the_command_line():
    assert parse_limit_assignment("max_k=100") == ("max_k", 100)
    assert parse_limit_assignment("max_audio_seconds=2.5") == ("max_audio_seconds", 2.5)
    for bad in ("max_k", "=3", "max_k=lots"):
        with pytest.raises(InvalidInput):
            parse_limit_assignment(bad)
    with pytest.raises(InvalidInput, match="whole number"):
        DEFAULT_LIMITS.with_values({"max_batch": 2.5})
    with pytest.raises(InvalidInput, match="below 2 GiB"):
        Limits(max_message_bytes=1 << 31)


def test_serve_reports_config_errors_in_one_line(tmp_path):
    exe = jointspace_exe()
    path = tmp_path / "serve.toml"
    path.write_text("[limits]\nmax_k = -1\n")
    for args, words in ((["--config", str(path)], "limits.max_k"),
                        (["--config", str(tmp_path / "none.toml")], "no such file"),
                        (["--model", "m", "--index", "i", "--limit", "max_k=x"], "is not a number")):
        result = subprocess.run([exe, "serve", *args], capture_output=True, text=True, timeout=60)
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], result.stderr


def test_missing_config_file_is_not_found(tmp_path):
    with pytest.raises(NotFound):
        load_config(tmp_path / "nothing.toml")


# --- limits through real gRPC ------------------------------------------------------------------

@pytest.fixture(scope="module")
def tight(built):
    from jointspace.server.serving.engine import Engine

    with own_server(Engine(built.model, built.index, TIGHT)) as running:
        with Client(f"127.0.0.1:{running.port}", timeout=30) as client:
            yield client


def _search(query: pb.Query, k: int = 3, **fields) -> pb.SearchRequest:
    return pb.SearchRequest(query=query, k=k, **fields)


EXHAUSTED, INVALID = grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INVALID_ARGUMENT
LIMIT_CASES = {
    "k over max_k": ("Search", _search(make_query(text="one"), k=21), EXHAUSTED, "k: 21"),
    "k zero": ("Search", _search(make_query(text="one"), k=0), INVALID, "k: must be at least 1"),
    "k negative": ("Search", _search(make_query(text="one"), k=-5), INVALID, "k: must be at least 1"),
    "long text": ("Search", _search(make_query(text="x" * 51)), EXHAUSTED, "text: 51 characters"),
    "big bag": ("Search", _search(make_query(ids=[f"m:{i}" for i in range(6)])), EXHAUSTED, "ids: 6 ids"),
    "many excludes": ("Search", _search(make_query(id="m:1"), exclude_keys=["a", "b", "c", "d"]),
                      EXHAUSTED, "exclude_keys: 4 keys, over max_exclude_keys (3)"),
    "big embed batch": ("Embed", pb.EmbedRequest(inputs=[make_query(text="one")] * 5), EXHAUSTED, "inputs: 5"),
    "big search batch": ("BatchSearch", pb.BatchSearchRequest(requests=[_search(make_query(text="one"))] * 5),
                         EXHAUSTED, "requests: 5"),
    "long clip": ("Search", _search(_pcm(2.5)), EXHAUSTED, "max_audio_seconds"),
    "long file": ("Search", _search(make_query(audio=_wav(2.5, 8000))), EXHAUSTED, "max_audio_seconds"),
    "high rate": ("Search", _search(make_query(audio=_wav(0.1, 96_000))), EXHAUSTED, "max_audio_sample_rate"),
    "clips add up": ("Embed", pb.EmbedRequest(inputs=[_pcm(1.8), _pcm(1.8)]), EXHAUSTED,
                     "max_request_audio_seconds"),
    "big message": ("Search", _search(make_query(id="m:" + "9" * (1 << 20))), EXHAUSTED, "larger than max"),
    "short vector": ("Search", _search(make_query(vector=[1.0] * (DIM - 1))), INVALID, "expected 16 values, got 15"),
    "NaN vector": ("Search", _search(make_query(vector=[float("nan")] + [0.0] * (DIM - 1))), INVALID, "finite"),
    "Inf vector": ("Search", _search(make_query(vector=[float("inf")] + [0.0] * (DIM - 1))), INVALID, "finite"),
}


@pytest.mark.parametrize("case", LIMIT_CASES)
def test_every_limit_answers_with_its_status_and_field(tight, case):
    method, request, code, words = LIMIT_CASES[case]
    with pytest.raises(grpc.RpcError) as raised:
        getattr(tight.stub, method)(request, timeout=30)
    assert raised.value.code() == code
    assert words in raised.value.details()
    assert tight.search(text="one", k=1)  # and the server keeps serving


def test_requests_at_the_limits_pass(tight):
    assert len(tight.search(text="x" * 50, k=20)) == 20
    assert tight.embed([_pcm(1.5), _pcm(1.5)]).shape == (2, DIM)
    assert len(tight.batch_search([make_query(text="one")] * 4, k=2)) == 4
    hits = tight.search(id="m:1", k=5, modalities=["id"], exclude=["m:1", "m:2", "m:3"])
    assert len(hits) == 5 and not {"m:1", "m:2", "m:3"} & {h.key for h in hits}


def test_repeated_result_modalities_give_each_hit_once(tight):
    hits = tight.search(id="m:1", k=10, modalities=["id", "id", "audio", "id"])
    assert len(hits) == 10 and len({h.key for h in hits}) == 10
