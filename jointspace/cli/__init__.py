"""The `jointspace` command line.

Errors a user can fix (bad input, missing files, a server's refusal) print one line to stderr and
exit non-zero; a traceback appears only for bugs, or with JOINTSPACE_DEBUG=1. Heavy modules
(TensorFlow, FAISS) are imported inside the commands that need them, so `jointspace query` starts
fast.

Each command group is a module here holding its parsers beside their handlers; this one puts
them under one root parser, runs the command chosen and turns its errors into that one line.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from typing import Any

from jointspace.cli import bench, data, demo, index, pictures, remote, serve, train
from jointspace.cli.arguments import EXIT_ERROR
from jointspace.core.errors import JointspaceError

# gRPC's words when `serve` cannot listen (server/api/app.py may reword them as "cannot listen on"):
# they name neither the likely cause nor the options that choose the address.
_BIND_FAILURE = re.compile(r"(?:Failed to bind to address|cannot listen on) (\S+?)(?:;|$)")


class _CommandParser(argparse.ArgumentParser):
    """A parser that runs a command (it sets `func`) names itself as `command_parser`, so that an
    unknown option is reported with the usage of `bench speakers`, not of `jointspace`.
    Subparsers are made of their parent's class, so every parser below the root is one too."""

    def set_defaults(self, **kwargs: Any) -> None:
        if "func" in kwargs:
            kwargs["command_parser"] = self
        super().set_defaults(**kwargs)


def build_parser() -> argparse.ArgumentParser:
    # Typed as the base class, so that its subparsers are the `_SubParsersAction[ArgumentParser]`
    # every command module's `add_commands` takes (they are `_CommandParser`s all the same).
    parser: argparse.ArgumentParser = _CommandParser(
        prog="jointspace",
        description="One vector space for ids, text and audio, served over gRPC.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # In the order `jointspace --help` lists them: from data to a model, then to a running server.
    demo.add_commands(commands)
    train.add_commands(commands)
    data.add_import_commands(commands)
    pictures.add_commands(commands)
    index.add_commands(commands)
    serve.add_commands(commands)
    remote.add_commands(commands)
    data.add_data_commands(commands)
    bench.add_commands(commands)
    return parser


def _split_pipeline_options(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Everything after the first `--` is for Apache Beam (`index build --runner beam -- ...`)."""
    argv = list(argv)
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1 :]


def main(argv: Sequence[str] | None = None) -> int:
    own, pipeline_options = _split_pipeline_options(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, unknown = parser.parse_known_args(own)
    if unknown:  # said by the command's own parser, whose usage lists what it does take
        args.command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if pipeline_options and not getattr(args, "takes_pipeline_options", False):
        parser.error("options after -- are Apache Beam pipeline options, for `index build --runner beam` "
                     "and `bench build`")
    args.pipeline_options = pipeline_options
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if os.environ.get("JOINTSPACE_DEBUG"):
            raise
        print(f"jointspace: error: {describe_error(error)}", file=sys.stderr)
        return EXIT_ERROR


def describe_error(error: Exception) -> str:
    """One line a user can act on. Unexpected errors still name their type."""
    import grpc

    from jointspace.client.errors import UsageError

    if isinstance(error, grpc.RpcError) and hasattr(error, "code"):
        return f"{error.code().name}: {error.details()}"
    if isinstance(error, (JointspaceError, UsageError)):
        return str(error)
    bind = _BIND_FAILURE.match(str(error)) if isinstance(error, (RuntimeError, OSError)) else None
    if bind:
        return (f"cannot serve on {bind[1]}: the port is in use, or the address is not one of this "
                f"machine's (--host, --port)")
    if isinstance(error, OSError) and error.filename:
        return f"{error.filename}: {error.strerror}"
    message = str(error).strip().splitlines()
    return f"{type(error).__name__}: {message[0] if message else 'no details'} (JOINTSPACE_DEBUG=1 shows the traceback)"
