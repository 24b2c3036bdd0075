"""`demo`: train on the shipped data, build an index, serve it and show example queries
(jointspace/demo.py), the first command a new user runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from jointspace.cli.arguments import positive


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`commands`: the root parser's subparsers."""
    demo = commands.add_parser("demo", help="train on the shipped data, build, serve, show example queries")
    demo.add_argument("--out", default="jointspace-demo", help="working directory (default: %(default)s)")
    demo.add_argument("--port", type=int, default=50051)
    demo.add_argument("--epochs", type=positive, default=None, help="override the demo's epochs")
    demo.add_argument("--keep-serving", action="store_true", help="keep the server up after the examples")
    demo.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from jointspace.demo import run_demo

    run_demo(Path(args.out), port=args.port, epochs=args.epochs, keep_serving=args.keep_serving)
    return 0
