"""`serve`: a model and its index over gRPC.

The flags are made from the settings' single definition (server/api/settings.py), like the
environment variables and config-file keys. Every flag defaults to None, so that
`ServeConfig.with_flags` can tell a given flag from one left to the environment or the file; the
defaults the help shows are ServeConfig's own. The server itself (gRPC, FAISS, TensorFlow) is
imported only when the command runs.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from jointspace.core.logs import configure_logging
from jointspace.server.api.config import layered_config
from jointspace.server.api.settings import CONFIG_ENV, LIMIT_ENV_PREFIX, SETTINGS, Setting
from jointspace.server.api.settings_doc import default_text


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`commands`: the root parser's subparsers."""
    serve = commands.add_parser(
        "serve", help="serve a model and its index over gRPC",
        description="Flags override JOINTSPACE_* environment variables, which override the --config file, "
                    "which overrides the defaults shown. Every setting, in every form: docs/guide.md.")
    serve.add_argument("--config", type=Path, metavar="TOML", help=f"settings file (default: ${CONFIG_ENV})")
    for setting in SETTINGS:
        _add_flag(serve, setting)
    serve.add_argument("--limit", action="append", metavar="NAME=VALUE",
                       help=f"request limit, e.g. max_k=100 (repeatable; also {LIMIT_ENV_PREFIX}<NAME>; "
                            "names in jointspace/core/limits.py)")
    serve.set_defaults(func=cmd_serve)


def _add_flag(parser: argparse.ArgumentParser, setting: Setting) -> None:
    default = default_text(setting)
    help_text = f"{setting.help}; ${setting.env}" + (f" (default: {default})" if default else "")
    if setting.kind is bool:
        parser.add_argument(setting.flag, action="store_true", default=None, help=help_text)
        return
    parser.add_argument(setting.flag, type=setting.kind, choices=setting.choices or None,
                        metavar=_metavar(setting), help=help_text)


def _metavar(setting: Setting) -> str | None:
    if setting.choices:
        return None  # argparse shows them
    if setting.section == "tls":
        return "PEM"
    return {Path: "PATH", int: "N", float: "SECONDS"}.get(setting.kind, setting.key.upper())


def cmd_serve(args: argparse.Namespace) -> int:
    config = layered_config(vars(args), os.environ)
    configure_logging(config.log_format)
    from jointspace.server.api.app import run_server

    run_server(config)
    return 0
