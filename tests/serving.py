"""Helpers for tests that need a server of their own (own settings, port 0), sharing the engine
that a module loaded once: several servers can serve one engine."""

from __future__ import annotations

import contextlib
import shutil
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from jointspace.server.api.config import ServeConfig


@contextlib.contextmanager
def own_server(engine: Any, **settings: Any) -> Iterator[Any]:
    from jointspace.server.api.app import start_configured_server

    config = replace(ServeConfig(), port=0, limits=engine.limits if engine else ServeConfig().limits, **settings)
    running = start_configured_server(config, engine)
    try:
        yield running
    finally:
        running.stop(grace=0)


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    """Every sample of a real /metrics endpoint, keyed by (name, labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@contextlib.contextmanager
def served_copy(built: Any, tmp_path: Path) -> Iterator[tuple[Any, Path]]:
    """A server of its own over a private copy of the session index, so that a test may change
    it: (a ready client, the copy's folder)."""
    from jointspace.client import Client
    from jointspace.server.serving.engine import Engine

    index = tmp_path / "index"
    shutil.copytree(built.index, index)
    with own_server(Engine(built.model, index)) as running, \
            Client(f"127.0.0.1:{running.port}", timeout=60) as client:
        client.wait_ready()
        yield client, index


def jointspace_exe() -> str:
    """The `jointspace` script of this venv, for tests that run the CLI as a user would."""
    return shutil.which("jointspace", path=str(Path(sys.executable).parent)) or "jointspace"
