"""`index build`: embed catalogs with a model and publish a new index generation, in this process
or as an Apache Beam pipeline (Beam's own options come after `--`), in this process or on a
dask.distributed cluster (`--runner dask`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from jointspace.cli.arguments import positive, recall
from jointspace.core.errors import InvalidInput

DEFAULT_WORKERS = 2


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`commands`: the root parser's subparsers."""
    index = commands.add_parser("index", help="index operations")
    index_commands = index.add_subparsers(dest="index_command", required=True, metavar="COMMAND")
    build = index_commands.add_parser("build", help="embed catalogs and publish a new index generation")
    build.add_argument("catalogs", nargs="+", metavar="CATALOG",
                       help="catalog files; with --runner beam or dask also globs and URLs (gs://, s3://: "
                            "with Beam's extra for that store), e.g. 'shards/part-*.parquet'")
    build.add_argument("--model", required=True, type=Path)
    build.add_argument("--out", required=True, type=Path, metavar="INDEX")
    build.add_argument("--index", default="auto", help="auto, flat, hnsw, ivfhnsw, ivfpq or a FAISS factory string")
    build.add_argument("--target-recall", type=recall,
                       help="recall@10 against exact search that efSearch / nprobe are tuned to reach "
                            "(default: 0.95)")
    build.add_argument("--runner", default="local", choices=["local", "beam", "dask"],
                       help="local: in this process; beam: an Apache Beam pipeline, with Beam's own "
                            "options after -- (default runner: the in-process FnApiRunner); dask: the Beam "
                            "pipeline on a dask.distributed cluster (--workers or --dask-scheduler)")
    build.add_argument("--shard-rows", type=positive,
                       help="beam, dask: consecutive catalog lines per shard (default: 100000)")
    build.add_argument("--workers", type=positive,
                       help="dask: start a local cluster of this many worker processes for the build (default: 2)")
    build.add_argument("--dask-scheduler", metavar="ADDRESS",
                       help="dask: run on this dask.distributed scheduler (e.g. tcp://10.0.0.5:8786) instead; "
                            "its workers must reach the model, the catalogs and --out")
    build.set_defaults(func=cmd_index_build, takes_pipeline_options=True)


def cmd_index_build(args: argparse.Namespace) -> int:
    tuning = {} if args.target_recall is None else {"target_recall": args.target_recall}
    if args.runner != "dask" and (args.workers is not None or args.dask_scheduler is not None):
        raise InvalidInput("--workers and --dask-scheduler need --runner dask")
    if args.runner == "dask" and args.workers is not None and args.dask_scheduler is not None:
        raise InvalidInput("--workers starts a local cluster, --dask-scheduler names one: give one of them")
    if args.runner != "local":
        sharding = {} if args.shard_rows is None else {"shard_rows": args.shard_rows}
        build = beam_builder(dask=args.runner == "dask")
        if args.runner == "dask":
            from jointspace.server.build.dask_cluster import dask_pipeline_args, dask_scheduler

            with dask_scheduler(args.dask_scheduler, args.workers or DEFAULT_WORKERS) as scheduler:
                name = build(args.model, args.catalogs, args.out, args.index, **tuning, **sharding,
                             pipeline_args=[*dask_pipeline_args(scheduler), *args.pipeline_options])
        else:
            name = build(args.model, args.catalogs, args.out, args.index,
                         pipeline_args=args.pipeline_options, **tuning, **sharding)
    else:
        if args.pipeline_options or args.shard_rows is not None:
            raise InvalidInput("Beam options (--shard-rows, options after --) need --runner beam or dask")
        from jointspace.encoders.inference import EncoderSet
        from jointspace.server.build.local_builder import build_generation

        name = build_generation(EncoderSet(args.model), [Path(c) for c in args.catalogs], args.out, args.index,
                                **tuning)
    print(f"{args.out}: generation {name} is live")
    return 0


def beam_builder(dask: bool = False) -> Callable[..., str]:
    """The Beam build, or a one-line answer when the optional extra is not installed (`index build
    --runner beam` or `dask`, `bench build`)."""
    import importlib.util

    if importlib.util.find_spec("apache_beam") is None or (dask and importlib.util.find_spec("distributed") is None):
        raise InvalidInput(f"--runner {'dask' if dask else 'beam'} needs Apache Beam{' and Dask' if dask else ''}: "
                           "pip install 'jointspace[beam]'")
    from jointspace.server.build.beam_builder import build_generation_with_beam

    return build_generation_with_beam
