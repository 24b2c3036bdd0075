"""`serve`: a model and its index over gRPC.

Every option defaults to None, so that `ServeConfig.with_flags` can tell a given flag from one
left to the --config file; the defaults the help shows are ServeConfig's own. The server itself
(gRPC, FAISS, TensorFlow) is imported only when the command runs.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from jointspace.cli.arguments import positive
from jointspace.core.logs import FORMATS, configure_logging
from jointspace.server.api.config import ServeConfig, load_config


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`commands`: the root parser's subparsers."""
    # Read off the fields rather than made: ServeConfig() would compute `workers`' default
    # (os.sched_getaffinity, Linux only) for every command's --help.
    defaults = argparse.Namespace(**{field.name: field.default for field in fields(ServeConfig)})
    serve = commands.add_parser(
        "serve", help="serve a model and its index over gRPC",
        description="Flags override the --config file, which overrides the defaults shown.")
    serve.add_argument("--config", type=Path, metavar="TOML", help="settings file (see docs/guide.md)")
    serve.add_argument("--model", type=Path, help="required here or in the config file")
    serve.add_argument("--index", type=Path, help="required here or in the config file")
    serve.add_argument("--host", help=f"address to bind (default: {defaults.host}, loopback only)")
    serve.add_argument("--port", type=int, help=f"default: {defaults.port}; 0 picks a free port")
    serve.add_argument("--workers", type=positive, help="threads serving calls (default: one per CPU core)")
    serve.add_argument("--max-concurrent-rpcs", type=positive,
                       help=f"calls beyond this get RESOURCE_EXHAUSTED (default: {defaults.max_concurrent_rpcs})")
    serve.add_argument("--data-dir", type=Path, help="refuse models, indexes and catalogs outside this directory")
    serve.add_argument("--max-deadline-seconds", type=float,
                       help="longest a call may run, also when the client sets no deadline "
                            f"(default: {defaults.max_deadline_seconds:g})")
    serve.add_argument("--request-read-timeout-seconds", type=float,
                       help="cancel a call whose request has not arrived within this long "
                            f"(default: {defaults.request_read_timeout_seconds:g})")
    serve.add_argument("--grace-seconds", type=float,
                       help="on SIGTERM, in-flight calls get this long to finish "
                            f"(default: {defaults.grace_seconds:g})")
    serve.add_argument("--limit", action="append", metavar="NAME=VALUE",
                       help="request limit, e.g. max_k=100 (repeatable; names in jointspace/core/limits.py)")
    serve.add_argument("--tls-cert", type=Path, metavar="PEM", help="serve TLS with this certificate (chain)")
    serve.add_argument("--tls-key", type=Path, metavar="PEM", help="the certificate's private key")
    serve.add_argument("--tls-client-ca", type=Path, metavar="PEM",
                       help="mutual TLS: require client certificates signed by this CA")
    serve.add_argument("--tokens-file", type=Path, metavar="FILE",
                       help="bearer-token auth: lines of 'read TOKEN' or 'write TOKEN'")
    serve.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on this port (default: off)")
    serve.add_argument("--metrics-host", help=f"address for /metrics (default: {defaults.metrics_host})")
    serve.add_argument("--log-format", choices=FORMATS, help=f"default: {defaults.log_format}")
    serve.add_argument("--access-log", action="store_true", default=None, help="log every call")
    serve.add_argument("--keep-generations", type=positive,
                       help="index generations kept on disk after a rebuild, the live one included "
                            f"(default: {defaults.keep_generations}, at least 2)")
    serve.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    config = (load_config(args.config) if args.config else ServeConfig()).with_flags(vars(args)).check()
    configure_logging(config.log_format)
    from jointspace.server.api.app import run_server

    run_server(config)
    return 0
