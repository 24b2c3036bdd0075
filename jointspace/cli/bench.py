"""`bench ...`: quality and speed measurements (jointspace/bench), each printing a report.

The benchmarks train, build and serve for real, so each is imported only when its command runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from jointspace.cli.arguments import EXIT_ERROR, lexical_weights, positive, positive_list, positive_number, recall
from jointspace.cli.index import beam_builder
from jointspace.core.errors import InvalidInput
from jointspace.encoders.impl.id_norms import DEFAULT_NORM, NORMS
from jointspace.encoders.training.config import TrainConfig
from jointspace.server.api.config import ServeConfig


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`commands`: the root parser's subparsers."""
    bench = commands.add_parser("bench", help="measure quality and speed")
    bench_commands = bench.add_subparsers(dest="bench_command", required=True, metavar="COMMAND")
    held_out = bench_commands.add_parser(
        "speakers", help="leave-one-speaker-out audio<->text quality through a real server")
    held_out.add_argument("--source", help="a FSDD folder (default: the subset shipped with jointspace)")
    held_out.add_argument("--speaker", action="append", help="speaker to hold out (repeatable; default all)")
    held_out.add_argument("--epochs", type=positive, default=TrainConfig().epochs,
                          help="default: the train command's")
    held_out.add_argument("--seed", type=int, action="append",
                          help="training seed (repeatable: every speaker under every seed, with a mean "
                               "per seed; default 0)")
    held_out.add_argument("--ensemble", type=positive, default=1, metavar="K",
                          help="train each model as an ensemble of K (train --ensemble; default: %(default)s)")
    held_out.set_defaults(func=cmd_bench_speakers)
    front_end = bench_commands.add_parser(
        "frontend", help="in-graph log-mel vs librosa on the same clips: speed and parity")
    front_end.add_argument("--source", help="a FSDD folder (default: the subset shipped with jointspace)")
    front_end.add_argument("--clips", type=positive, default=512)
    front_end.add_argument("--batch", type=positive, default=64)
    front_end.add_argument("--passes", type=positive, default=5)
    front_end.set_defaults(func=cmd_bench_frontend)
    decoding = bench_commands.add_parser(
        "decode", help="latency an audio query pays for decoding in worker processes")
    decoding.add_argument("--model", required=True)
    decoding.add_argument("--index", required=True, help="an index built with that model")
    decoding.add_argument("--clips", type=positive, default=50, help="spoken-digit clips queried per pass")
    decoding.add_argument("--passes", type=positive, default=5)
    decoding.set_defaults(func=cmd_bench_decode)
    latency = bench_commands.add_parser(
        "queries", help="Search latency of id, history, text, audio and vector queries, split by stage",
        description="Serves MODEL and INDEX with `jointspace serve` (encoder batching on and off) and times "
                    "Search (or Embed) for queries of every modality the model answers, taken from the pair rows: "
                    "p50/p99, server CPU per query, and the shares of decoding, encoding, searching, the rest of "
                    "the server and the wire.")
    latency.add_argument("--model", required=True, type=Path)
    latency.add_argument("--index", required=True, type=Path, help="an index built with that model")
    latency.add_argument("--pairs", required=True, type=Path, nargs="+", help="pair rows to take queries from")
    latency.add_argument("--seconds", type=float, default=5.0, help="per measurement (default: %(default)s)")
    latency.add_argument("--concurrency", default="1,16",
                         help="concurrent client processes, each count measured in turn (default: %(default)s)")
    latency.add_argument("--batching", default="on,off", help="the servers' --encode-batching, compared side by "
                                                               "side (default: %(default)s)")
    latency.add_argument("--workers", type=positive, help="the servers' --workers (default: theirs)")
    latency.add_argument("--call", choices=("search", "embed"), default="search",
                         help="Search (encoder + index) or Embed (the encoder alone) (default: %(default)s)")
    latency.add_argument("--json", action="store_true", help="print the whole report as JSON")
    latency.set_defaults(func=cmd_bench_queries)
    cost = bench_commands.add_parser(
        "overhead", help="per-call cost of the server's interceptors (sequential Search over loopback)")
    cost.add_argument("--model", required=True, type=Path)
    cost.add_argument("--index", required=True, type=Path)
    cost.add_argument("--calls", type=positive, default=3000, help="per server and round")
    cost.add_argument("--rounds", type=positive, default=5)
    cost.set_defaults(func=cmd_bench_overhead)
    serving = bench_commands.add_parser(
        "serve", help="Search / BatchSearch speed over loopback beside the gRPC ceiling, FAISS and peers",
        description="Builds (or reuses from --work) an index of clustered vectors, serves it with `jointspace "
                    "serve` and measures it beside a no-op server on the same stack, FAISS in-process, and "
                    "milvus-lite / chromadb when installed (pip install 'jointspace[peers]').")
    serving.add_argument("--vectors", type=positive, default=1_000_000, help="default: %(default)s")
    serving.add_argument("--dim", type=positive, default=32, help="default: %(default)s")
    serving.add_argument("--work", type=Path,
                         help="keep the model, index and milvus's data here for the next run (chroma reloads)")
    serving.add_argument("--seconds", type=float, default=10.0, help="per measurement (default: %(default)s)")
    serving.add_argument("--target-recall", type=recall, default=0.95, help="recall@10 every engine is tuned to")
    serving.add_argument("--clients", default="1,4,16", help="concurrent client processes (default: %(default)s)")
    serving.add_argument("--batches", default="64,256", help="BatchSearch sizes (default: %(default)s)")
    serving.add_argument("--peers", default="milvus,chroma", help="peers to compare, or none (default: %(default)s)")
    serving.add_argument("--rounds", type=positive, default=1,
                         help="measure each workload this many times, alternating the servers, and report "
                              "medians (default: %(default)s)")
    serving.add_argument("--json", action="store_true", help="print the whole report as JSON")
    serving.set_defaults(func=cmd_bench_serve)
    swap = bench_commands.add_parser(
        "rebuild", help="RebuildIndex and hot swap of a served vector catalog under a steady query loop")
    swap.add_argument("--model", required=True, type=Path, help="any exported model; its dimension is used")
    swap.add_argument("--rows", type=positive, default=1_000_000)
    swap.add_argument("--seconds", type=float, default=30.0, help="query load before the rebuild starts")
    swap.add_argument("--index", default="auto", help="as for index build (default: auto)")
    swap.add_argument("--work", type=Path, help="keep the catalog and index here")
    swap.set_defaults(func=cmd_bench_rebuild)
    lag = bench_commands.add_parser(
        "replicas", help="how far read replicas (serve --role reader) lag behind the writer, under query load",
        description="Builds an index of clustered vectors at the model's dimension, serves it with one writer "
                    "and --readers readers (child processes over one index directory), and times each upsert "
                    "from the writer's acknowledgement until every reader serves it, and a rebuild's swap, "
                    "while each reader is searched without a pause.")
    lag.add_argument("--model", required=True, type=Path, help="any exported model; its dimension is used")
    lag.add_argument("--rows", type=positive, default=100_000, help="default: %(default)s")
    lag.add_argument("--readers", type=positive, default=2, help="default: %(default)s")
    lag.add_argument("--upserts", type=positive, default=100, help="default: %(default)s")
    lag.add_argument("--follow-interval-seconds", type=positive_number, default=ServeConfig.follow_interval_seconds,
                     help="the readers' setting (default: %(default)s)")
    lag.add_argument("--work", type=Path, help="keep the catalog and index here")
    lag.set_defaults(func=cmd_bench_replicas)
    soak_load = bench_commands.add_parser(
        "soak", help="mixed Search/Embed/Upsert/Delete load from client processes plus a rebuild; "
                     "checks errors, memory growth and that no acknowledged write is lost (exit 1 if not)")
    soak_load.add_argument("--seconds", type=float, default=60.0, help="load duration (default: %(default)s)")
    soak_load.add_argument("--clients", type=positive, default=4, help="client processes (default: %(default)s)")
    soak_load.add_argument("--vectors", type=positive, default=100_000,
                           help="clustered vectors in the catalog, beside the films (default: %(default)s)")
    soak_load.add_argument("--work", type=Path, help="keep the model, catalogs and index here (reused next time)")
    soak_load.add_argument("--json", action="store_true", help="print one JSON object")
    soak_load.set_defaults(func=cmd_bench_soak)
    distributed = bench_commands.add_parser(
        "train-distributed", help="training examples/s: one process vs data-parallel workers on loopback")
    distributed.add_argument("--films", type=positive, default=20_000, help="default: %(default)s")
    distributed.add_argument("--users", type=positive, default=40_000, help="default: %(default)s")
    distributed.add_argument("--workers", type=positive, default=2, help="default: %(default)s")
    distributed.add_argument("--steps", type=positive, default=100, help="timed steps (default: %(default)s)")
    distributed.add_argument("--warmup", type=positive, default=10, help="untimed first steps (default: %(default)s)")
    distributed.add_argument("--batch-size", type=positive, default=1024, help="global batch (default: %(default)s)")
    distributed.add_argument("--dim", type=positive, default=32, help="default: %(default)s")
    distributed.add_argument("--json", action="store_true", help="print one JSON object")
    distributed.set_defaults(func=cmd_bench_train_distributed)
    runners = bench_commands.add_parser(
        "build-runners", help="index build by runner and index type: local HNSW, local IVF-HNSW, IVF-HNSW on Dask",
        description="Times the local HNSW build, the local IVF-HNSW build and the IVF-HNSW build on a Dask "
                    "LocalCluster of each --workers count, on one catalog of clustered vectors in shard files; "
                    "recall@10 of each against exact search on held-out queries.")
    runners.add_argument("--rows", type=positive, default=1_000_000, help="catalog rows (default: %(default)s)")
    runners.add_argument("--dim", type=positive, default=32, help="vector dimension (default: %(default)s)")
    runners.add_argument("--shards", type=positive, default=8, help="catalog shard files (default: %(default)s)")
    runners.add_argument("--workers", default="2", help="Dask worker processes, comma-separated (default: 2)")
    runners.add_argument("--target-recall", type=recall, default=0.95)
    runners.add_argument("--work", type=Path, help="keep the catalog, model and indexes here")
    runners.set_defaults(func=cmd_bench_build_runners)
    timed_build = bench_commands.add_parser(
        "build", help="local vs Apache Beam index build of a catalog of clustered vectors",
        description="Times the local and the Beam build of one catalog; Beam options go after --.")
    timed_build.add_argument("--rows", type=positive, default=1_000_000, help="catalog rows (default: %(default)s)")
    timed_build.add_argument("--dim", type=positive, default=32, help="vector dimension (default: %(default)s)")
    timed_build.add_argument("--index", default="auto", help="as for index build (default: auto)")
    timed_build.add_argument("--target-recall", type=recall, default=0.95)
    timed_build.add_argument("--work", type=Path, help="keep the catalog, model and indexes here")
    timed_build.set_defaults(func=cmd_bench_build, takes_pipeline_options=True)
    scaling = bench_commands.add_parser(
        "scale", help="cost per vector, per query and per id at several sizes (docs/scaling.md)",
        description="For each catalog size and index type: build seconds, bytes per vector (file and RSS), "
                    "recall@10 on held-out vectors and single-query searches per second on one thread; then "
                    "training examples/s and peak memory at several id table sizes and dimensions.")
    scaling.add_argument("--sizes", default="1000000,2000000,4000000", help="vectors (default: %(default)s)")
    scaling.add_argument("--dim", type=positive, default=32, help="vector dimension (default: %(default)s)")
    scaling.add_argument("--indexes", default="flat,hnsw,ivf_flat,ivf_pq,ivf_hnsw_pq",
                         help="index types to measure (default: %(default)s)")
    scaling.add_argument("--queries", type=positive, default=1_000, help="held-out queries (default: %(default)s)")
    scaling.add_argument("--target-recall", type=recall, default=0.95)
    scaling.add_argument("--id-tables", default="100000,400000",
                         help="films per training run, users half as many (default: %(default)s)")
    scaling.add_argument("--id-dims", default="32,64", help="training dimensions (default: %(default)s)")
    scaling.add_argument("--train-steps", type=positive, default=40, help="timed steps (default: %(default)s)")
    scaling.add_argument("--warmup", type=positive, default=10, help="untimed first steps (default: %(default)s)")
    scaling.add_argument("--batch-size", type=positive, default=4096, help="default: %(default)s")
    scaling.add_argument("--skip-indexes", action="store_true", help="measure training only")
    scaling.add_argument("--skip-training", action="store_true", help="measure indexes only")
    scaling.add_argument("--json", action="store_true", help="print one JSON object")
    scaling.set_defaults(func=cmd_bench_scale)
    speed = bench_commands.add_parser(
        "train", help="id two-tower training speed and recall: plain TFRS model.fit vs jointspace, side by side")
    speed.add_argument("--films", type=positive, default=1_000_000, help="default: %(default)s")
    speed.add_argument("--users", type=positive, default=500_000, help="default: %(default)s")
    speed.add_argument("--dim", type=positive, default=32, help="default: %(default)s")
    speed.add_argument("--steps", type=positive, default=None,
                       help="timed steps per side (default: one pass over the training rows, the "
                            "warm-up included)")
    speed.add_argument("--warmup", type=positive, default=20, help="untimed first steps (default: %(default)s)")
    speed.add_argument("--batch-size", type=positive, default=4096, help="both sides (default: %(default)s)")
    speed.add_argument("--jointspace-batch-size", type=positive, default=1024,
                       help="jointspace side's batch, a divisor of --batch-size; it then takes more steps "
                            "so that both sides see as many examples (default: %(default)s)")
    speed.add_argument("--val-queries", type=positive, default=5000,
                       help="held-out (user, film) rows for recall (default: %(default)s)")
    speed.add_argument("--learning-rate", type=positive_number, default=0.005,
                       help="jointspace side's (TFRS side: Adagrad 0.1) (default: %(default)s)")
    speed.add_argument("--id-norm", choices=NORMS, default=DEFAULT_NORM,
                       help="jointspace side's id vector length, as in `train` (default: %(default)s)")
    speed.add_argument("--temperature", type=positive_number, default=0.05,
                       help="jointspace side's softmax temperature, as in `train` (default: %(default)s)")
    speed.add_argument("--intra-op-threads", type=positive, default=None,
                       help="both sides' TensorFlow intra-op threads (default: the cores available)")
    speed.add_argument("--inter-op-threads", type=positive, default=None,
                       help="both sides' TensorFlow inter-op threads (default: the cores available)")
    speed.add_argument("--seed", type=int, default=0)
    speed.add_argument("--work", type=Path, help="keep the split and the vectors here")
    speed.add_argument("--json", action="store_true", help="print one JSON object")
    speed.set_defaults(func=cmd_bench_train)
    tutorial = bench_commands.add_parser(
        "tfrs-tutorial", help="the TFRS basic-retrieval tutorial model on user -> film rows, judged as "
                              "`evaluate` judges (seen films kept and removed)")
    tutorial.add_argument("train_file", type=Path, metavar="TRAIN", help="training pair rows (id:user, id)")
    tutorial.add_argument("test_file", type=Path, metavar="TEST", help="held-out pair rows")
    tutorial.add_argument("--epochs", type=positive, default=5, help="(default: %(default)s)")
    tutorial.add_argument("--seed", type=int, default=0)
    tutorial.add_argument("--json", action="store_true", help="print one JSON object")
    tutorial.set_defaults(func=cmd_bench_tfrs_tutorial)

    typed = bench_commands.add_parser(
        "typed-search", help="text queries as people type them: vector, lexical and hybrid search side by side",
        description="Builds an index of the catalogs with MODEL, derives queries from a metadata field of each "
                    "entry with a unique value (bare titles, titles missing a word, titles with a typo) and "
                    "scores recall@1 and recall@10 of the vector side, the lexical side and each fusion rule "
                    "at a few lexical weights, then the Search latency of vector and hybrid queries.")
    typed.add_argument("--model", required=True, type=Path)
    typed.add_argument("catalogs", nargs="+", type=Path, metavar="CATALOG")
    typed.add_argument("--field", default="title", help="metadata field people type (default: %(default)s)")
    typed.add_argument("--weights", type=lexical_weights, default="0.25,0.5,0.75",
                       help="comma-separated lexical weights of each fusion rule (default: %(default)s)")
    typed.add_argument("--seed", type=int, default=0, help="picks the dropped words and typos")
    typed.add_argument("--json", action="store_true", help="print the whole report as JSON")
    typed.set_defaults(func=cmd_bench_typed_search)
    answers = bench_commands.add_parser(
        "answers", help="a BatchSearch answer built message by message against written from FAISS's arrays")
    answers.add_argument("--batches", default="4,16,32,64,128,256",
                         help="comma-separated batch sizes (default: %(default)s)")
    answers.add_argument("--k", type=positive, default=10, help="hits per query (default: %(default)s)")
    answers.add_argument("--passes", type=positive, default=5, help="(default: %(default)s)")
    answers.add_argument("--json", action="store_true", help="print one JSON object")
    answers.set_defaults(func=cmd_bench_answers)


def cmd_bench_speakers(args: argparse.Namespace) -> int:
    from jointspace.bench import speakers

    result = speakers.run(Path(args.source) if args.source else None, args.speaker, args.epochs, args.seed,
                          args.ensemble)
    print(json.dumps(result, indent=2))
    return 0


def cmd_bench_frontend(args: argparse.Namespace) -> int:
    from jointspace.bench import frontend

    result = frontend.run(Path(args.source) if args.source else None, args.clips, args.batch, args.passes)
    print(json.dumps(result, indent=2))
    return 0


def cmd_bench_decode(args: argparse.Namespace) -> int:
    from jointspace.bench import decode

    print(json.dumps(decode.run(Path(args.model), Path(args.index), args.clips, args.passes), indent=2))
    return 0


def cmd_bench_queries(args: argparse.Namespace) -> int:
    from jointspace.bench import queries

    modes = [mode for mode in args.batching.split(",") if mode]
    if not modes or set(modes) - {"on", "off"} or len(set(modes)) < len(modes):
        raise InvalidInput(f"--batching: expected on, off or on,off, got {args.batching!r}")
    report = queries.run(args.model, args.index, args.pairs, args.seconds,
                         positive_list(args.concurrency, "--concurrency"), modes, args.workers, args.call)
    print(json.dumps(report, indent=2) if args.json else queries.format_table(report))
    return 0


def cmd_bench_overhead(args: argparse.Namespace) -> int:
    from jointspace.bench import overhead

    print(json.dumps(overhead.run(args.model, args.index, args.calls, args.rounds), indent=2))
    return 0


def cmd_bench_serve(args: argparse.Namespace) -> int:
    from jointspace.bench import serve

    peers = [] if args.peers == "none" else [p for p in args.peers.split(",") if p]
    report = serve.run(args.vectors, args.dim, args.work, args.seconds, args.target_recall,
                       positive_list(args.clients, "--clients"), positive_list(args.batches, "--batches"), peers,
                       rounds=args.rounds)
    print(json.dumps(report, indent=2) if args.json else serve.format_table(report))
    return 0


def cmd_bench_rebuild(args: argparse.Namespace) -> int:
    from jointspace.bench import rebuild

    print(json.dumps(rebuild.run(args.model, args.rows, args.seconds, args.index, args.work), indent=2))
    return 0


def cmd_bench_replicas(args: argparse.Namespace) -> int:
    from jointspace.bench import replicas

    print(json.dumps(replicas.run(args.model, args.rows, args.readers, args.upserts, args.follow_interval_seconds,
                                  args.work), indent=2))
    return 0


def cmd_bench_soak(args: argparse.Namespace) -> int:
    from jointspace.bench import soak

    result = soak.run(args.seconds, args.clients, args.vectors, args.work)
    print(json.dumps(result, indent=2) if args.json else soak.format_summary(result))
    return 0 if result["passed"] else EXIT_ERROR


def cmd_bench_build_runners(args: argparse.Namespace) -> int:
    workers = positive_list(args.workers, "--workers")
    beam_builder(dask=True)  # refuses in one line when Beam or Dask is not installed, before any work
    from jointspace.bench import build_runners

    result = build_runners.run(args.rows, args.dim, args.shards, workers, args.target_recall, args.work)
    print(json.dumps(result, indent=2))
    return 0


def cmd_bench_build(args: argparse.Namespace) -> int:
    beam_builder()  # refuses in one line when Beam is not installed, before any work
    from jointspace.bench import build

    result = build.run(args.rows, args.dim, args.index, args.target_recall, args.pipeline_options, args.work)
    print(json.dumps(result, indent=2))
    return 0


def cmd_bench_scale(args: argparse.Namespace) -> int:
    from jointspace.bench import scale

    kinds = [kind.strip() for kind in args.indexes.split(",") if kind.strip()]
    known = list(scale.index_types(1, args.dim))
    unknown = [kind for kind in kinds if kind not in known]
    if unknown or not kinds:
        raise InvalidInput(f"--indexes: unknown {', '.join(unknown) or 'none given'}; known: {', '.join(known)}")
    sizes = [] if args.skip_indexes else positive_list(args.sizes, "--sizes")
    films = [] if args.skip_training else positive_list(args.id_tables, "--id-tables")
    result = scale.run(sizes, args.dim, kinds, args.queries, args.target_recall, films,
                       positive_list(args.id_dims, "--id-dims"), args.train_steps, args.warmup, args.batch_size)
    print(json.dumps(result, indent=2) if args.json else scale.table(result))
    return 0


def cmd_bench_train(args: argparse.Namespace) -> int:
    from jointspace.bench import train

    own = train.OwnSide(args.jointspace_batch_size, args.learning_rate, args.id_norm, args.temperature)
    result = train.run(args.films, args.users, args.dim, args.steps, args.batch_size, args.warmup,
                       args.val_queries, own, args.seed, args.work, args.intra_op_threads,
                       args.inter_op_threads)
    print(json.dumps(result, indent=2) if args.json else train.table(result))
    return 0


def cmd_bench_train_distributed(args: argparse.Namespace) -> int:
    from jointspace.bench import train_distributed

    result = train_distributed.run(args.films, args.users, args.workers, args.steps, args.warmup,
                                   args.batch_size, args.dim)
    print(json.dumps(result, indent=2) if args.json else train_distributed.table(result))
    return 0


def cmd_bench_typed_search(args: argparse.Namespace) -> int:
    from jointspace.quality import typed_search

    result = typed_search.run(args.model, args.catalogs, args.field, args.weights, args.seed)
    print(json.dumps(result, indent=2) if args.json else typed_search.report(result))
    return 0


def cmd_bench_tfrs_tutorial(args: argparse.Namespace) -> int:
    from jointspace.bench import tfrs_tutorial

    result = tfrs_tutorial.run(args.train_file, args.test_file, args.epochs, args.seed)
    print(json.dumps(result, indent=2) if args.json else tfrs_tutorial.table(result))
    return 0


def cmd_bench_answers(args: argparse.Namespace) -> int:
    from jointspace.bench import answers

    report = answers.run(positive_list(args.batches, "--batches"), args.k, passes=args.passes)
    print(json.dumps(report, indent=2) if args.json else answers.table(report))
    return 0
