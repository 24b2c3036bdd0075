"""Server settings (`ServeConfig`): safe defaults, a TOML file (`serve --config FILE` or
$JOINTSPACE_CONFIG), `JOINTSPACE_*` environment variables, then command-line flags; each layer
overrides the one before. What each setting is, and its name in every layer, is settings.py's.

    [server]
    model = "model"                 # paths are relative to this file
    index = "index"
    host = "127.0.0.1"
    port = 50051
    data_dir = "/srv/jointspace"    # refuse models, indexes and catalogs outside it
    max_deadline_seconds = 60       # per call; also when the client sets no deadline
    request_read_timeout_seconds = 10  # a call whose request has not arrived by then is cancelled
    grace_seconds = 10              # SIGTERM: in-flight calls get this long
    keep_generations = 3            # index generations kept on disk after a rebuild (at least 2)
    role = "reader"                 # a read replica of the writer's index directory

    [limits]                        # any field of jointspace.core.limits.Limits
    max_k = 100

    [tls]
    cert = "server.pem"
    key = "server.key"
    client_ca = "clients-ca.pem"    # mutual TLS

    [auth]
    tokens_file = "tokens.txt"

    [metrics]
    port = 9464

    [logging]
    format = "json"
    access_log = true

Unknown sections and keys are errors: a misspelt `tokens_fiel` must not silently turn auth off.
The same file as environment variables (containers and Kubernetes set those):

    JOINTSPACE_MODEL=/srv/model JOINTSPACE_INDEX=/srv/index JOINTSPACE_HOST=0.0.0.0
    JOINTSPACE_METRICS_PORT=9464 JOINTSPACE_LOG_FORMAT=json JOINTSPACE_LIMIT_MAX_K=100
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from jointspace.core.errors import InvalidInput, NotFound
from jointspace.core.limits import DEFAULT_LIMITS, Limits, parse_limit_assignment
from jointspace.core.logs import FORMATS
from jointspace.server.api.settings import CONFIG_ENV, ROLES, SECTIONS, TYPE_NAMES, from_environment

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the 3.10 backport has the same API
    import tomli as tomllib


def default_workers() -> int:
    """Threads running the service's methods: one per usable core. A vector query is CPU-bound
    Python around a FAISS call, and more threads than cores only fight over the GIL: on 2 cores
    with 16 clients, 8 threads spent more server CPU per call than 2 threads (docs/benchmarks.md,
    "Serving speed", "Why one worker thread per core"). Raise it (`--workers`) where many calls
    wait on slow audio decoding instead."""
    return max(2, len(os.sched_getaffinity(0)))


@dataclass(frozen=True)
class ServeConfig:
    model: Path | None = None
    index: Path | None = None
    host: str = "127.0.0.1"
    port: int = 50051
    workers: int = field(default_factory=default_workers)
    # Calls with their request in hand (running or waiting for a worker) beyond this many get
    # RESOURCE_EXHAUSTED instead of queueing without bound. Calls still waiting for their request
    # hold no worker and do not count: request_read_timeout_seconds bounds them.
    max_concurrent_rpcs: int = 64
    data_dir: Path | None = None
    max_deadline_seconds: float = 60.0
    # A call whose request (each message, for a request stream) has not arrived within this many
    # seconds is cancelled (DEADLINE_EXCEEDED): a client that opens calls and never sends their
    # requests cannot pile them up. Long enough for the largest request over a slow link.
    request_read_timeout_seconds: float = 10.0
    grace_seconds: float = 10.0
    keep_generations: int = 3
    encode_batching: str = "on"  # or "off" (server/serving/encode_batcher.py)
    # A reader follows the writer's index directory and refuses changes (server/serving/follower.py).
    role: str = "writer"
    follow_interval_seconds: float = 0.2
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    tokens_file: Path | None = None
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    log_format: str = "text"
    access_log: bool = False
    limits: Limits = field(default_factory=lambda: DEFAULT_LIMITS)

    def check(self) -> ServeConfig:
        """Self, if the settings make a server; else InvalidInput naming the flag."""
        for name in ("model", "index"):
            if getattr(self, name) is None:
                raise InvalidInput(f"--{name}: required (or JOINTSPACE_{name.upper()}, or [server] {name} "
                                   "in the --config file)")
        for name in ("port", "metrics_port"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 65535:
                raise InvalidInput(f"--{name.replace('_', '-')}: {value} is not a port number")
        for name in ("workers", "max_concurrent_rpcs", "max_deadline_seconds", "request_read_timeout_seconds",
                     "follow_interval_seconds"):
            if getattr(self, name) <= 0:
                raise InvalidInput(f"--{name.replace('_', '-')}: must be positive")
        if self.grace_seconds < 0:
            raise InvalidInput("--grace-seconds: must not be negative")
        if self.log_format not in FORMATS:
            raise InvalidInput(f"--log-format: {self.log_format!r}; choose {' or '.join(FORMATS)}")
        if self.encode_batching not in ("on", "off"):
            raise InvalidInput(f"--encode-batching: {self.encode_batching!r}; choose on or off")
        if self.role not in ROLES:
            raise InvalidInput(f"--role: {self.role!r}; choose {' or '.join(ROLES)}")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise InvalidInput("--tls-cert and --tls-key: give both or neither")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise InvalidInput("--tls-client-ca: mutual TLS needs --tls-cert and --tls-key too")
        return self

    def with_environment(self, environ: Mapping[str, str]) -> ServeConfig:
        """`JOINTSPACE_*` variables override the file (settings.py parses and names them)."""
        values, limits = from_environment(environ)
        return replace(self, **values, limits=self.limits.with_values(limits, "JOINTSPACE_LIMIT_*"))

    def with_flags(self, flags: Mapping[str, Any]) -> ServeConfig:
        """Flags that were given (not None) override the environment and the file; `limit` holds
        "NAME=VALUE" texts."""
        names = {f.name for f in fields(self)} - {"limits"}
        given = {k: v for k, v in flags.items() if k in names and v is not None}
        for key in ("model", "index", "data_dir", "tls_cert", "tls_key", "tls_client_ca", "tokens_file"):
            if key in given:
                given[key] = Path(given[key]).absolute()
        assignments = dict(parse_limit_assignment(text) for text in flags.get("limit") or ())
        limits = self.limits.with_values(assignments, "--limit")
        return replace(self, **given, limits=limits)


def _typed(value: Any, kind: type, where: str, base: Path) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    wanted: type[Any] = str if kind is Path else kind
    if not isinstance(value, wanted) or (kind is int and isinstance(value, bool)):
        raise InvalidInput(f"{where}: expected {TYPE_NAMES[kind]}, got {value!r}")
    return base / value if kind is Path else value


def load_config(path: Path) -> ServeConfig:
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise NotFound(f"--config {path}: no such file") from None
    except tomllib.TOMLDecodeError as error:
        raise InvalidInput(f"--config {path}: not valid TOML ({error})") from None
    base = path.absolute().parent
    values: dict[str, Any] = {}
    limits = DEFAULT_LIMITS
    for section, table in document.items():
        if section == "limits" and isinstance(table, dict):
            limits = limits.with_values(table, f"{path} [limits]")
            continue
        if section not in SECTIONS or not isinstance(table, dict):
            raise InvalidInput(f"{path}: unknown section [{section}]; known: "
                               f"{', '.join(f'[{s}]' for s in [*SECTIONS, 'limits'])}")
        for key, value in table.items():
            if key not in SECTIONS[section]:
                raise InvalidInput(f"{path} [{section}] {key}: unknown setting; known: "
                                   f"{', '.join(SECTIONS[section])}")
            setting = SECTIONS[section][key]
            values[setting.name] = _typed(value, setting.kind, f"{path} [{section}] {key}", base)
    return ServeConfig(**values, limits=limits)


def layered_config(flags: Mapping[str, Any], environ: Mapping[str, str]) -> ServeConfig:
    """The settings `serve` runs with: flags over the environment over the file (`--config`, else
    $JOINTSPACE_CONFIG) over the defaults, checked."""
    path = flags.get("config") or environ.get(CONFIG_ENV) or None
    config = load_config(Path(path)) if path else ServeConfig()
    return config.with_environment(environ).with_flags(flags).check()
