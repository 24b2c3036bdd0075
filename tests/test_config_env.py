"""Server settings from JOINTSPACE_* environment variables: precedence flag > env > file > default,
typed parsing with one-line errors naming the variable, the docs table made from the one
definition, and a real `jointspace serve` process configured only by the environment."""

from __future__ import annotations

import argparse
import os
import subprocess
from dataclasses import fields
from pathlib import Path

import grpc
import pytest

from jointspace.bench.serve_process import ServeProcess
from jointspace.cli import build_parser
from jointspace.client import Client
from jointspace.core.errors import InvalidInput
from jointspace.server.api.config import ServeConfig, layered_config
from jointspace.server.api.settings import SETTINGS
from jointspace.server.api.settings_doc import markdown_table
from jointspace.v1 import jointspace_pb2 as pb
from jointspace.v1 import jointspace_pb2_grpc
from serving import jointspace_exe

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "guide.md"


def _flags(*argv: str) -> dict:
    return vars(build_parser().parse_args(["serve", *argv]))


def test_flag_over_environment_over_file_over_default(tmp_path):
    config = tmp_path / "serve.toml"
    config.write_text('[server]\nmodel = "m"\nindex = "i"\nport = 7000\ngrace_seconds = 3\n'
                      '[limits]\nmax_k = 10\nmax_batch = 20\n[logging]\naccess_log = false\n')
    environ = {"JOINTSPACE_CONFIG": str(config), "JOINTSPACE_PORT": "7001", "JOINTSPACE_HOST": "0.0.0.0",
               "JOINTSPACE_ACCESS_LOG": "yes", "JOINTSPACE_LIMIT_MAX_K": "30", "JOINTSPACE_LIMIT_MAX_TEXT_CHARS": "99",
               "JOINTSPACE_MAX_DEADLINE_SECONDS": "2.5", "JOINTSPACE_DATA_DIR": "data"}
    resolved = layered_config(_flags("--port", "7002", "--limit", "max_text_chars=5"), environ)
    assert resolved.port == 7002  # flag over environment over file
    assert resolved.host == "0.0.0.0" and resolved.access_log is True  # environment over file / default
    assert resolved.grace_seconds == 3.0 and resolved.model == tmp_path / "m"  # file over default
    assert resolved.metrics_host == ServeConfig().metrics_host  # default
    assert resolved.max_deadline_seconds == 2.5 and resolved.data_dir == Path("data").absolute()
    assert (resolved.limits.max_k, resolved.limits.max_batch, resolved.limits.max_text_chars) == (30, 20, 5)
    # --config wins over JOINTSPACE_CONFIG; without either, no file is read.
    other = tmp_path / "other.toml"
    other.write_text('[server]\nmodel = "m2"\nindex = "i2"\n')
    assert layered_config(_flags("--config", str(other)), environ).model == tmp_path / "m2"
    assert layered_config(_flags(), {"JOINTSPACE_MODEL": "a", "JOINTSPACE_INDEX": "b"}).port == ServeConfig().port


@pytest.mark.parametrize("variable, text, words", [
    ("JOINTSPACE_PORT", "http", "JOINTSPACE_PORT: expected an integer, got 'http'"),
    ("JOINTSPACE_ACCESS_LOG", "maybe", "JOINTSPACE_ACCESS_LOG: expected true or false"),
    ("JOINTSPACE_GRACE_SECONDS", "nan", "JOINTSPACE_GRACE_SECONDS: expected a number"),
    ("JOINTSPACE_LIMIT_MAX_K", "lots", "JOINTSPACE_LIMIT_MAX_K: expected a number"),
    ("JOINTSPACE_LIMIT_MAX_BATCH", "2.5", "limits.max_batch: must be a whole number"),
    ("JOINTSPACE_LIMIT_MAX_K", "-1", "limits.max_k: must be a positive number"),
    ("JOINTSPACE_TOKENS_FIEL", "tokens.txt", "JOINTSPACE_TOKENS_FIEL: not a setting; did you mean "
                                              "JOINTSPACE_TOKENS_FILE?"),
    ("JOINTSPACE_PORT", "70000", "--port: 70000 is not a port number"),
])
def test_environment_mistakes_name_the_variable(variable, text, words):
    environ = {"JOINTSPACE_MODEL": "m", "JOINTSPACE_INDEX": "i", variable: text}
    with pytest.raises(InvalidInput) as raised:
        layered_config(_flags(), environ)
    assert words in str(raised.value)


def test_other_jointspace_variables_and_empty_ones_are_left_alone():
    environ = {"JOINTSPACE_MODEL": "m", "JOINTSPACE_INDEX": "i", "JOINTSPACE_DEBUG": "1",
               "JOINTSPACE_TOKEN": "secret", "JOINTSPACE_FSDD_DIR": "/x", "JOINTSPACE_PORT": ""}
    assert layered_config(_flags(), environ).port == ServeConfig().port


def test_every_setting_has_one_definition_and_every_form():
    """Each ServeConfig field is a setting, each setting a flag of `serve`, and the guide's table
    is the one the definition makes."""
    assert {s.name for s in SETTINGS} == {f.name for f in fields(ServeConfig)} - {"limits"}
    serve = next(action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction)
                 ).choices["serve"]
    flags = {option for action in serve._actions for option in action.option_strings}
    assert {s.flag for s in SETTINGS} <= flags
    assert markdown_table() in GUIDE.read_text(), "docs/guide.md's settings table is stale: run tools/settings_table.py"


def test_serve_reports_an_environment_mistake_in_one_line(tmp_path):
    env = {**os.environ, "JOINTSPACE_MODEL": "m", "JOINTSPACE_INDEX": "i", "JOINTSPACE_WORKERS": "two"}
    result = subprocess.run([jointspace_exe(), "serve"], capture_output=True, text=True, timeout=60, env=env)
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1 and "JOINTSPACE_WORKERS: expected an integer" in lines[0]


@pytest.mark.slow
def test_a_real_server_configured_only_by_the_environment(built, tmp_path):
    """No flags: model, index, port, log format, metrics and a limit from variables, one limit
    from a file named by JOINTSPACE_CONFIG and overridden by a variable."""
    config = tmp_path / "serve.toml"
    config.write_text("[limits]\nmax_k = 3\nmax_text_chars = 40\n")
    env = {"JOINTSPACE_MODEL": str(built.model), "JOINTSPACE_INDEX": str(built.index), "JOINTSPACE_PORT": "0",
           "JOINTSPACE_LOG_FORMAT": "json", "JOINTSPACE_METRICS_PORT": "0", "JOINTSPACE_CONFIG": str(config),
           "JOINTSPACE_LIMIT_MAX_K": "5"}
    serve = ServeProcess([], env=env)
    try:
        port = serve.wait_for("listening on")["port"]
        serve.wait_for("metrics on")
        with Client(f"127.0.0.1:{port}", timeout=60) as client:
            client.wait_ready(timeout=120)
            assert len(client.search(text="seven", k=5)) == 5  # the variable's max_k, not the file's
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = jointspace_pb2_grpc.JointSpaceStub(channel)
            for request, words in ((pb.SearchRequest(query=pb.Query(text="seven"), k=6), "k: 6"),
                                   (pb.SearchRequest(query=pb.Query(text="x" * 41), k=1), "text: 41 characters")):
                with pytest.raises(grpc.RpcError) as raised:
                    stub.Search(request, timeout=30)
                assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and words in raised.value.details()
    finally:
        serve.process.terminate()
        serve.process.wait(timeout=60)
