"""`index build`: embed catalogs with a model and publish a new index generation, in this process
or as an Apache Beam pipeline (Beam's own options come after `--`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from jointspace.cli.arguments import positive, recall
from jointspace.core.errors import InvalidInput


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`commands`: the root parser's subparsers."""
    index = commands.add_parser("index", help="index operations")
    index_commands = index.add_subparsers(dest="index_command", required=True, metavar="COMMAND")
    build = index_commands.add_parser("build", help="embed catalogs and publish a new index generation")
    build.add_argument("catalogs", nargs="+", type=Path, metavar="CATALOG")
    build.add_argument("--model", required=True, type=Path)
    build.add_argument("--out", required=True, type=Path, metavar="INDEX")
    build.add_argument("--index", default="auto", help="auto, flat, hnsw, ivfpq or a FAISS factory string")
    build.add_argument("--target-recall", type=recall,
                       help="recall@10 against exact search that efSearch / nprobe are tuned to reach "
                            "(default: 0.95)")
    build.add_argument("--runner", default="local", choices=["local", "beam"],
                       help="local: in this process; beam: an Apache Beam pipeline, with Beam's own "
                            "options after -- (default runner: the in-process FnApiRunner)")
    build.add_argument("--shard-rows", type=positive,
                       help="beam: consecutive catalog lines per shard (default: 100000)")
    build.set_defaults(func=cmd_index_build, takes_pipeline_options=True)


def cmd_index_build(args: argparse.Namespace) -> int:
    tuning = {} if args.target_recall is None else {"target_recall": args.target_recall}
    if args.runner == "beam":
        sharding = {} if args.shard_rows is None else {"shard_rows": args.shard_rows}
        name = beam_builder()(args.model, args.catalogs, args.out, args.index,
                              pipeline_args=args.pipeline_options, **tuning, **sharding)
    else:
        if args.pipeline_options or args.shard_rows is not None:
            raise InvalidInput("Beam options (--shard-rows, options after --) need --runner beam")
        from jointspace.encoders.inference import EncoderSet
        from jointspace.server.build.local_builder import build_generation

        name = build_generation(EncoderSet(args.model), args.catalogs, args.out, args.index, **tuning)
    print(f"{args.out}: generation {name} is live")
    return 0


def beam_builder() -> Callable[..., str]:
    """The Beam build, or a one-line answer when the optional extra is not installed (`index build
    --runner beam`, `bench build`)."""
    import importlib.util

    if importlib.util.find_spec("apache_beam") is None:
        raise InvalidInput("--runner beam needs Apache Beam: pip install 'jointspace[beam]'")
    from jointspace.server.build.beam_builder import build_generation_with_beam

    return build_generation_with_beam
