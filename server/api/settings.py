"""The server's settings, defined once: each one's name, type, place in the TOML file and meaning.

`serve`'s flags, its environment variables (`JOINTSPACE_<NAME>`), the config file's keys and the
table in docs/guide.md are all made from `SETTINGS`, so a setting cannot be reachable one way and
missing another, or documented differently from what it does. The request limits
(`jointspace.core.limits.Limits`) are settings too: `--limit NAME=VALUE`,
`JOINTSPACE_LIMIT_<NAME>`, `[limits] name`.

Precedence, highest first: flag, environment, file, default (config.py applies them).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from jointspace.core.errors import InvalidInput
from jointspace.core.limits import Limits
from jointspace.core.logs import FORMATS

ENV_PREFIX = "JOINTSPACE_"
LIMIT_ENV_PREFIX = "JOINTSPACE_LIMIT_"
CONFIG_ENV = "JOINTSPACE_CONFIG"  # the settings file, when --config is not given

ROLES = ("writer", "reader")  # serve --role
TYPE_NAMES = {Path: "a path", str: "a string", int: "an integer", float: "a number", bool: "true or false"}
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


@dataclass(frozen=True)
class Setting:
    name: str  # ServeConfig's field
    section: str  # the TOML file's [section]
    key: str  # the key in that section
    kind: type  # Path, str, int, float or bool
    help: str
    choices: tuple[str, ...] = ()
    computed_default: str = ""  # in words, for a default computed when the server starts

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


SETTINGS: tuple[Setting, ...] = (
    Setting("model", "server", "model", Path, "exported model folder (required)"),
    Setting("index", "server", "index", Path, "index directory (required)"),
    Setting("host", "server", "host", str, "address to bind (the default is loopback only)"),
    Setting("port", "server", "port", int, "gRPC port; 0 picks a free one"),
    Setting("workers", "server", "workers", int, "threads serving calls", computed_default="one per usable core"),
    Setting("max_concurrent_rpcs", "server", "max_concurrent_rpcs", int,
            "calls beyond this many get RESOURCE_EXHAUSTED"),
    Setting("data_dir", "server", "data_dir", Path, "refuse models, indexes and catalogs outside this directory"),
    Setting("max_deadline_seconds", "server", "max_deadline_seconds", float,
            "longest a call may run, also when the client sets no deadline"),
    Setting("request_read_timeout_seconds", "server", "request_read_timeout_seconds", float,
            "cancel a call whose request has not arrived within this long"),
    Setting("grace_seconds", "server", "grace_seconds", float, "on SIGTERM, in-flight calls get this long to finish"),
    Setting("keep_generations", "server", "keep_generations", int,
            "index generations kept on disk after a rebuild, the live one included (at least 2)"),
    Setting("encode_batching", "server", "encode_batching", str,
            "share one encoder call among the queries of concurrent requests", ("on", "off")),
    Setting("role", "server", "role", str,
            "writer (one per index directory) or reader: a read replica that follows the writer and "
            "refuses changes", ROLES),
    Setting("follow_interval_seconds", "server", "follow_interval_seconds", float,
            "a reader checks the index directory for the writer's generations and changes this often"),
    Setting("tls_cert", "tls", "cert", Path, "serve TLS with this PEM certificate (chain)"),
    Setting("tls_key", "tls", "key", Path, "the certificate's PEM private key"),
    Setting("tls_client_ca", "tls", "client_ca", Path, "mutual TLS: require client certificates signed by this CA"),
    Setting("tokens_file", "auth", "tokens_file", Path, "bearer-token auth: lines of 'read TOKEN' or 'write TOKEN'"),
    Setting("metrics_port", "metrics", "port", int, "serve Prometheus /metrics on this port (default: off)"),
    Setting("metrics_host", "metrics", "host", str, "address for /metrics"),
    Setting("log_format", "logging", "format", str, "log lines as plain text or JSON", FORMATS),
    Setting("access_log", "logging", "access_log", bool, "log every call"),
)

SECTIONS: dict[str, dict[str, Setting]] = {}
for _setting in SETTINGS:
    SECTIONS.setdefault(_setting.section, {})[_setting.key] = _setting


def parse_text(text: str, kind: type, where: str) -> Any:
    """A setting's value from text (an environment variable's); InvalidInput naming `where`."""
    if kind is bool:
        word = text.strip().lower()
        if word in _TRUE | _FALSE:
            return word in _TRUE
    elif kind is int:
        try:
            return int(text)
        except ValueError:
            pass
    elif kind is float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if math.isfinite(value):
            return value
    else:
        return Path(text).absolute() if kind is Path else text
    raise InvalidInput(f"{where}: expected {TYPE_NAMES[kind]}, got {text!r:.60}")


def parse_limit_text(text: str, where: str) -> int | float:
    """A request limit's value from text: a whole number stays an int (Limits checks the type)."""
    try:
        return int(text)
    except ValueError:
        value: float = parse_text(text, float, where)
        return value


def from_environment(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, int | float]]:
    """(settings, limits) that `JOINTSPACE_*` variables set, typed. An empty variable counts as
    unset (a template that expands an unset variable writes one). A variable one letter or so
    away from a setting's name is refused: a misspelt JOINTSPACE_TOKENS_FIEL must not silently
    leave auth off. Other JOINTSPACE_* variables (JOINTSPACE_DEBUG, JOINTSPACE_TOKEN) belong to
    other parts of the program and are left alone."""
    by_env = {setting.env: setting for setting in SETTINGS}
    limit_names = {LIMIT_ENV_PREFIX + item.name.upper(): item.name for item in fields(Limits)}
    settings: dict[str, Any] = {}
    limits: dict[str, int | float] = {}
    for variable, text in sorted(environ.items()):
        if not variable.startswith(ENV_PREFIX) or not text or variable == CONFIG_ENV:
            continue
        if variable in by_env:
            setting = by_env[variable]
            settings[setting.name] = parse_text(text, setting.kind, variable)
        elif variable in limit_names:
            limits[limit_names[variable]] = parse_limit_text(text, variable)
        else:
            near = difflib.get_close_matches(variable, [*by_env, *limit_names], n=1, cutoff=0.9)
            if near:
                raise InvalidInput(f"{variable}: not a setting; did you mean {near[0]}?")
    return settings, limits
