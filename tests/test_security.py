"""TLS, mutual TLS and bearer tokens against real servers with certificates made here; the data
directory that confines what the server loads."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.longrunning import operations_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

import pki
from jointspace.client import Client
from jointspace.core.errors import InvalidInput, NotFound, PermissionDenied
from jointspace.server.api.auth import Tokens, required_role
from jointspace.server.index.data_dir import DataDir
from jointspace.v1 import jointspace_pb2 as pb
from serving import jointspace_exe, own_server

WRITE_METHODS = ("Upsert", "Delete", "RebuildIndex", "CancelOperation")
WRITE_REQUESTS = {"Upsert": pb.UpsertRequest(), "Delete": pb.DeleteRequest(),
                  "RebuildIndex": pb.RebuildIndexRequest(),
                  "CancelOperation": operations_pb2.CancelOperationRequest()}


def _stub(client: Client, method: str) -> Any:
    """The stub of the service that offers `method`: JointSpace, or google.longrunning.Operations."""
    return client.operations_stub if method == "CancelOperation" else client.stub


@pytest.fixture(scope="module")
def engine(built, tmp_path_factory):
    """Over a copy of the index: write tokens get through to methods that change it."""
    from jointspace.server.serving.engine import Engine

    index = tmp_path_factory.mktemp("security") / "index"
    shutil.copytree(built.index, index)
    return Engine(built.model, index)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    ca = pki.authority(folder, "jointspace-test-ca")
    other = pki.authority(folder, "someone-else-ca")
    return {
        "ca": ca.cert,
        "server": ca.issue(folder, "server", server=True),
        "client": ca.issue(folder, "client", server=False),
        "stranger": other.issue(folder, "stranger", server=False),
    }


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    read, write = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    path = tmp_path_factory.mktemp("auth") / "tokens.txt"
    path.write_text(f"# roles\nread {read}\nwrite {write}  # the operator\n")
    return {"file": path, "read": read, "write": write}


def _code(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value.code()


# --- TLS ---------------------------------------------------------------------------------------

def test_tls_serves_clients_that_trust_the_ca(engine, certs):
    server = certs["server"]
    with own_server(engine, tls_cert=server.cert, tls_key=server.key) as running:
        target = f"127.0.0.1:{running.port}"
        with Client(target, timeout=10, tls_ca=certs["ca"]) as client:
            assert client.search(text="seven", k=2)
        with Client(target, timeout=3) as plaintext:
            assert _code(lambda: plaintext.search(text="seven", k=1)) == grpc.StatusCode.UNAVAILABLE
        with Client(target, timeout=3, tls_ca=certs["stranger"].cert) as distrusting:
            assert _code(lambda: distrusting.search(text="seven", k=1)) == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_requires_a_client_certificate_from_the_client_ca(engine, certs):
    server, client_cert, stranger = certs["server"], certs["client"], certs["stranger"]
    with own_server(engine, tls_cert=server.cert, tls_key=server.key, tls_client_ca=certs["ca"]) as running:
        target = f"127.0.0.1:{running.port}"
        with Client(target, timeout=10, tls_ca=certs["ca"], tls_cert=client_cert.cert,
                    tls_key=client_cert.key) as client:
            assert client.search(text="seven", k=2)
        with Client(target, timeout=3, tls_ca=certs["ca"]) as anonymous:
            assert _code(lambda: anonymous.search(text="seven", k=1)) == grpc.StatusCode.UNAVAILABLE
        with Client(target, timeout=3, tls_ca=certs["ca"], tls_cert=stranger.cert, tls_key=stranger.key) as other:
            assert _code(lambda: other.search(text="seven", k=1)) == grpc.StatusCode.UNAVAILABLE


def test_tls_files_are_checked_before_serving(engine, certs, tmp_path):
    server = certs["server"]
    with pytest.raises(InvalidInput, match="--tls-key .*PRIVATE KEY"):
        with own_server(engine, tls_cert=server.cert, tls_key=server.cert):
            pass
    with pytest.raises(InvalidInput, match="not a usable pair .*KEY_VALUES_MISMATCH"):
        with own_server(engine, tls_cert=server.cert, tls_key=certs["client"].key):
            pass
    with pytest.raises(NotFound, match="--tls-cert .*no such file"):
        with own_server(engine, tls_cert=tmp_path / "missing.pem", tls_key=server.key):
            pass


# --- bearer tokens -----------------------------------------------------------------------------

def test_calls_without_a_valid_token_are_unauthenticated(engine, tokens):
    with own_server(engine, tokens_file=tokens["file"]) as running:
        target = f"127.0.0.1:{running.port}"
        with Client(target, timeout=10) as anonymous:
            assert _code(lambda: anonymous.search(text="seven", k=1)) == grpc.StatusCode.UNAUTHENTICATED
            assert _code(lambda: anonymous.info()) == grpc.StatusCode.UNAUTHENTICATED
            # Health stays open for load balancers; wait_ready relies on it.
            anonymous.wait_ready(timeout=10)
            status = health_pb2_grpc.HealthStub(anonymous.channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert status.status == health_pb2.HealthCheckResponse.SERVING
        with Client(target, timeout=10, token="not-" + tokens["read"]) as forged:
            assert _code(lambda: forged.search(text="seven", k=1)) == grpc.StatusCode.UNAUTHENTICATED
        with Client(target, timeout=10, token=tokens["read"]) as reader:
            assert reader.search(text="seven", k=1)


@pytest.mark.parametrize("method", WRITE_METHODS)
def test_read_tokens_cannot_change_the_index(engine, tokens, method):
    with own_server(engine, tokens_file=tokens["file"]) as running:
        target = f"127.0.0.1:{running.port}"
        with Client(target, timeout=10, token=tokens["read"]) as reader:
            call = getattr(_stub(reader, method), method)
            with pytest.raises(grpc.RpcError) as raised:
                call(WRITE_REQUESTS[method], timeout=10)
            assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert method in raised.value.details()
        with Client(target, timeout=10, token=tokens["write"]) as writer:
            # Past auth the method's own answer comes back (for these empty requests, usually a
            # complaint about the request; whatever the lifecycle code says, not an auth refusal).
            try:
                getattr(_stub(writer, method), method)(WRITE_REQUESTS[method], timeout=10)
            except grpc.RpcError as error:
                assert error.code() not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
            assert writer.search(text="seven", k=1)


def test_methods_are_write_only_unless_listed_as_reads():
    assert required_role("jointspace.v1.JointSpace", "Search") == "read"
    assert required_role("jointspace.v1.JointSpace", "GetEntries") == "read"
    assert required_role("google.longrunning.Operations", "GetOperation") == "read"
    assert required_role("jointspace.v1.JointSpace", "SomeFutureMethod") == "write"
    assert required_role("google.longrunning.Operations", "CancelOperation") == "write"
    assert all(required_role("jointspace.v1.JointSpace", m) == "write" for m in WRITE_METHODS[:-1])


@pytest.mark.parametrize("content, words", [
    ("admin 0123456789abcdef0123\n", ":1: expected 'read TOKEN'"),
    ("read short\n", ":1: token shorter than 16"),
    ("# nothing\n\n", "no tokens"),
    ("read 0123456789abcdef0123\nwrite 0123456789abcdef0123\n", ":2: the same token appears with two roles"),
])
def test_bad_tokens_files_are_refused_with_the_line(tmp_path, content, words):
    path = tmp_path / "tokens.txt"
    path.write_text(content)
    with pytest.raises(InvalidInput, match=words):
        Tokens.read(path)


def test_cli_query_sends_the_token_and_trusts_the_ca(engine, certs, tokens, tmp_path):
    server = certs["server"]
    token_file = tmp_path / "token"
    token_file.write_text(tokens["read"] + "\n")
    exe = jointspace_exe()
    with own_server(engine, tls_cert=server.cert, tls_key=server.key, tokens_file=tokens["file"]) as running:
        base = [exe, "query", "--target", f"127.0.0.1:{running.port}", "--text", "seven", "-k", "2", "--json",
                "--tls-ca", str(certs["ca"])]
        environment = {k: v for k, v in os.environ.items() if k != "JOINTSPACE_TOKEN"}
        ok = subprocess.run([*base, "--token-file", str(token_file)], capture_output=True, text=True,
                            timeout=60, env=environment)
        refused = subprocess.run(base, capture_output=True, text=True, timeout=60, env=environment)
        from_env = subprocess.run(base, capture_output=True, text=True, timeout=60,
                                  env={**environment, "JOINTSPACE_TOKEN": tokens["read"]})
    assert ok.returncode == 0, ok.stderr
    assert len(__import__("json").loads(ok.stdout)["hits"]) == 2
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [refused.stderr.strip()]  # one line, no traceback
    assert refused.stderr.startswith("jointspace: error: UNAUTHENTICATED")
    assert from_env.returncode == 0, from_env.stderr


# --- data directory ----------------------------------------------------------------------------

def test_confine_accepts_paths_inside_and_refuses_escapes(tmp_path):
    root = tmp_path / "data"
    (root / "catalogs").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (root / "link-out").symlink_to(tmp_path / "outside")
    data_dir = DataDir(root)
    assert data_dir.confine("catalogs/a.jsonl") == (root / "catalogs/a.jsonl").resolve()
    assert data_dir.confine(root / "catalogs") == (root / "catalogs").resolve()
    for escape in ("../outside/a.jsonl", tmp_path / "outside", "link-out/a.jsonl", "/etc/passwd"):
        with pytest.raises(PermissionDenied, match="outside the server's data directory") as raised:
            data_dir.confine(escape, "sources[0]")
        assert "sources[0]" in str(raised.value) and str(root) not in str(raised.value)
    assert DataDir(None).confine("x/y") == Path("x/y").resolve()


def test_engine_refuses_a_model_or_index_outside_the_data_dir(built, tmp_path):
    from jointspace.server.serving.engine import Engine

    data_dir = DataDir(built.root)  # holds both
    assert Engine(built.model, built.index, data_dir=data_dir).info()["size"] > 0
    with pytest.raises(PermissionDenied, match="^index "):
        Engine(built.model, tmp_path, data_dir=data_dir)
    with pytest.raises(PermissionDenied, match="^model "):
        Engine(tmp_path, built.index, data_dir=data_dir)


def test_serve_refuses_paths_outside_data_dir_in_one_line(built, tmp_path):
    exe = jointspace_exe()
    result = subprocess.run([exe, "serve", "--model", str(built.model), "--index", str(built.index),
                             "--data-dir", str(tmp_path), "--port", "0"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("jointspace: error:") and "outside the server's data directory" in last
    assert "Traceback" not in result.stderr
