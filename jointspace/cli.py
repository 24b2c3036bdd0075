"""The `jointspace` command line.

Errors a user can fix (bad input, missing files, a server's refusal) print one line to stderr and
exit non-zero; a traceback appears only for bugs, or with JOINTSPACE_DEBUG=1. Heavy modules
(TensorFlow, FAISS) are imported inside the commands that need them, so `jointspace query` starts
fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from jointspace.errors import InvalidInput, JointspaceError

EXIT_ERROR = 1
EXIT_USAGE = 2


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def _dim(text: str) -> int | None:
    return None if text == "auto" else _positive(text)


def cmd_train(args: argparse.Namespace) -> int:
    from jointspace.data.pairs import parse_pair_spec, read_pairs
    from jointspace.encoders.export import export_model
    from jointspace.encoders.training import TrainConfig, train

    rows = read_pairs(args.pairs_files)
    config = TrainConfig(
        dim=args.dim, epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.learning_rate, temperature=args.temperature,
        validation_split=args.validation_split, seed=args.seed, pairs=parse_pair_spec(args.pairs),
    )
    manifest = export_model(train(rows, config), args.out)
    print(f"model {manifest['model_version']} (dim {manifest['dim']}) written to {args.out}")
    return 0


def cmd_index_build(args: argparse.Namespace) -> int:
    if args.runner != "local":
        raise InvalidInput(f"--runner {args.runner}: only the local runner is available in this version")
    from jointspace.encoders.inference import EncoderSet
    from jointspace.server.builder import build_generation

    name = build_generation(EncoderSet(args.model), args.catalogs, args.out, args.index)
    print(f"{args.out}: generation {name} is live")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from jointspace.server.app import serve_until_signal, start_server
    from jointspace.server.engine import Engine

    running = start_server(Engine(args.model, args.index), args.host, args.port, args.workers)
    info = running.engine.info()
    print(f"serving {info['generation']} ({info['size']} entries, dim {info['dim']}) on "
          f"{args.host}:{running.port}; Ctrl-C to stop", file=sys.stderr, flush=True)
    serve_until_signal(running)
    print("stopped", file=sys.stderr)
    return 0


def _query_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    if args.ids is not None:
        return {"ids": [i for i in args.ids.split(",") if i]}
    if args.audio is not None:
        path = Path(args.audio)
        if not path.is_file():
            raise InvalidInput(f"--audio {args.audio}: no such file")
        return {"audio_path": path}
    if args.vector is not None:
        try:
            return {"vector": [float(x) for x in args.vector.split(",")]}
        except ValueError:
            raise InvalidInput("--vector: expected comma-separated numbers") from None
    return {"id": args.id} if args.id is not None else {"text": args.text}


def cmd_query(args: argparse.Namespace) -> int:
    from jointspace.client import Client

    with Client(args.target, timeout=args.timeout) as client:
        hits = client.search(k=args.k, modalities=args.modality or (), exclude=args.exclude or (),
                             **_query_kwargs(args))
    if args.json:
        print(json.dumps({"hits": [h.to_dict() for h in hits]}))
    else:
        for rank, hit in enumerate(hits, 1):
            meta = f"  {json.dumps(hit.metadata)}" if hit.metadata else ""
            print(f"{rank:3d}. {hit.score:7.4f}  {hit.modality:6s} {hit.key}{meta}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from jointspace.client import Client

    with Client(args.target, timeout=args.timeout) as client:
        info = client.info()
    print(json.dumps(info, indent=None if args.json else 2))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from jointspace.demo import run_demo

    run_demo(Path(args.out), port=args.port, epochs=args.epochs, keep_serving=args.keep_serving)
    return 0


def cmd_data_synthetic(args: argparse.Namespace) -> int:
    from jointspace.data import synthetic

    data = synthetic.generate(synthetic.SyntheticConfig(n_films=args.films, n_users=args.users, seed=args.seed))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pairs = synthetic.write_pairs(data, out / "pairs.jsonl")
    catalog = synthetic.write_catalog(data, out / "catalog.jsonl")
    print(f"{out}: {pairs} pair rows (pairs.jsonl), {catalog} catalog rows (catalog.jsonl)")
    return 0


def cmd_data_fsdd(args: argparse.Namespace) -> int:
    from jointspace.data import fsdd

    clips = fsdd.list_clips(Path(args.source) if args.source else fsdd.shipped_fsdd_dir())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train, held_out = fsdd.split_by_speaker(clips, args.hold_out) if args.hold_out else (clips, [])
    lines = [f"{fsdd.write_pairs(train, out / 'pairs.jsonl')} pair rows (pairs.jsonl)"]
    indexed = held_out or clips
    lines.append(f"{fsdd.write_catalog(indexed, out / 'catalog.jsonl')} catalog rows (catalog.jsonl)")
    print(f"{out}: " + ", ".join(lines))
    return 0


def cmd_bench_speakers(args: argparse.Namespace) -> int:
    from jointspace.bench import speakers

    result = speakers.run(Path(args.source) if args.source else None, args.speaker, args.epochs)
    print(json.dumps(result, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jointspace",
        description="One vector space for ids, text and audio, served over gRPC.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="train on the shipped data, build, serve, show example queries")
    demo.add_argument("--out", default="jointspace-demo", help="working directory (default: %(default)s)")
    demo.add_argument("--port", type=int, default=50051)
    demo.add_argument("--epochs", type=_positive, default=None, help="override the demo's epochs")
    demo.add_argument("--keep-serving", action="store_true", help="keep the server up after the examples")
    demo.set_defaults(func=cmd_demo)

    train = commands.add_parser("train", help="train encoders on pair rows and export them")
    train.add_argument("pairs_files", nargs="+", type=Path, metavar="PAIRS", help="JSON Lines or CSV pair files")
    train.add_argument("--out", required=True, type=Path, metavar="MODEL")
    train.add_argument("--dim", type=_dim, default=None, help="'auto' (default) or a dimension")
    train.add_argument("--epochs", type=_positive, default=30)
    train.add_argument("--batch-size", type=_positive, default=128)
    train.add_argument("--learning-rate", type=float, default=0.003)
    train.add_argument("--temperature", type=float, default=0.2)
    train.add_argument("--validation-split", type=float, default=0.1)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--pairs", default=None, help="pair types to train, e.g. 'ids=id,text=id' (default: all)")
    train.set_defaults(func=cmd_train)

    index = commands.add_parser("index", help="index operations")
    index_commands = index.add_subparsers(dest="index_command", required=True, metavar="COMMAND")
    build = index_commands.add_parser("build", help="embed catalogs and publish a new index generation")
    build.add_argument("catalogs", nargs="+", type=Path, metavar="CATALOG")
    build.add_argument("--model", required=True, type=Path)
    build.add_argument("--out", required=True, type=Path, metavar="INDEX")
    build.add_argument("--index", default="auto", help="auto, flat, hnsw, ivfpq or a FAISS factory string")
    build.add_argument("--runner", default="local", choices=["local", "beam"])
    build.set_defaults(func=cmd_index_build)

    serve = commands.add_parser("serve", help="serve a model and its index over gRPC")
    serve.add_argument("--model", required=True, type=Path)
    serve.add_argument("--index", required=True, type=Path)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    serve.add_argument("--port", type=int, default=50051)
    serve.add_argument("--workers", type=_positive, default=8)
    serve.set_defaults(func=cmd_serve)

    query = commands.add_parser("query", help="search a running server")
    query.add_argument("--target", default="127.0.0.1:50051", metavar="HOST:PORT")
    kind = query.add_mutually_exclusive_group(required=True)
    kind.add_argument("--id")
    kind.add_argument("--ids", help="comma-separated ids, e.g. a watch history")
    kind.add_argument("--text")
    kind.add_argument("--audio", metavar="FILE")
    kind.add_argument("--vector", help="comma-separated floats")
    query.add_argument("-k", type=int, default=10)
    query.add_argument("--modality", action="append", help="result modality (repeatable; default all)")
    query.add_argument("--exclude", action="append", metavar="KEY", help="key never to return (repeatable)")
    query.add_argument("--json", action="store_true", help='print {"hits": [...]}')
    query.add_argument("--timeout", type=float, default=30.0, help="deadline in seconds")
    query.set_defaults(func=cmd_query)

    info = commands.add_parser("info", help="what a running server serves")
    info.add_argument("--target", default="127.0.0.1:50051", metavar="HOST:PORT")
    info.add_argument("--json", action="store_true")
    info.add_argument("--timeout", type=float, default=10.0)
    info.set_defaults(func=cmd_info)

    data = commands.add_parser("data", help="make example data files")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    synth = data_commands.add_parser("synthetic", help="collaborative-filtering data with hidden tastes")
    synth.add_argument("--films", type=_positive, default=2000)
    synth.add_argument("--users", type=_positive, default=3000)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--out", required=True, type=Path)
    synth.set_defaults(func=cmd_data_synthetic)
    spoken = data_commands.add_parser("fsdd", help="spoken-digit pairs (audio=text) and catalog")
    spoken.add_argument("--source", help="a FSDD folder (default: the subset shipped with jointspace)")
    spoken.add_argument("--hold-out", metavar="SPEAKER", help="train on the others, index this speaker")
    spoken.add_argument("--out", required=True, type=Path)
    spoken.set_defaults(func=cmd_data_fsdd)
    bench = commands.add_parser("bench", help="measure quality and speed")
    bench_commands = bench.add_subparsers(dest="bench_command", required=True, metavar="COMMAND")
    held_out = bench_commands.add_parser(
        "speakers", help="leave-one-speaker-out audio<->text quality through a real server")
    held_out.add_argument("--source", help="a FSDD folder (default: the subset shipped with jointspace)")
    held_out.add_argument("--speaker", action="append", help="speaker to hold out (repeatable; default all)")
    held_out.add_argument("--epochs", type=_positive, default=None, help="default: the train command's")
    held_out.set_defaults(func=cmd_bench_speakers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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

    if isinstance(error, grpc.RpcError) and hasattr(error, "code"):
        return f"{error.code().name}: {error.details()}"
    if isinstance(error, JointspaceError):
        return str(error)
    if isinstance(error, OSError) and error.filename:
        return f"{error.filename}: {error.strerror}"
    message = str(error).strip().splitlines()
    return f"{type(error).__name__}: {message[0] if message else 'no details'} (JOINTSPACE_DEBUG=1 shows the traceback)"


if __name__ == "__main__":
    sys.exit(main())
