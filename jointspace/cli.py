"""The `jointspace` command line.

Errors a user can fix (bad input, missing files, a server's refusal) print one line to stderr and
exit non-zero; a traceback appears only for bugs, or with JOINTSPACE_DEBUG=1. Heavy modules
(TensorFlow, FAISS) are imported inside the commands that need them, so `jointspace query` starts
fast.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from jointspace.core.errors import InvalidInput, JointspaceError

if TYPE_CHECKING:
    from jointspace.client import Client

EXIT_ERROR = 1
EXIT_USAGE = 2
# gRPC's words when `serve` cannot listen (server/api/app.py may reword them as "cannot listen on"):
# they name neither the likely cause nor the options that choose the address.
_BIND_FAILURE = re.compile(r"(?:Failed to bind to address|cannot listen on) (\S+?)(?:;|$)")
ID_NORMS = ("clip", "unit")  # encoders/impl/ids.py NORMS; named here so --help needs no TensorFlow


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def _non_negative(text: str) -> int:
    return 0 if text.strip() == "0" else _positive(text)


def _auto_or_positive(text: str) -> int | None:
    return None if text == "auto" else _positive(text)


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _positive_number(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value:g}")
    return value


def _non_negative_number(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value:g}")
    return value


def _held_out_share(text: str) -> float:
    """A share of rows held out: at least one row must be left to train on."""
    value = _number(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value:g}")
    return value


def _batch_size(text: str) -> int:
    """The in-batch softmax needs another row of the batch as a negative."""
    value = _positive(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be at least 2 (a row's negatives are the batch's other rows), "
                                         f"got {value}")
    return value


def _recall(text: str) -> float:
    value = _number(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value}")
    return value


def _split_pipeline_options(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Everything after the first `--` is for Apache Beam (`index build --runner beam -- ...`)."""
    argv = list(argv)
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1 :]


def _train_config(args: argparse.Namespace) -> Any:
    """The TrainConfig of the options `_add_training_args` defines."""
    from jointspace.data.pairs import parse_pair_spec, parse_pair_weights
    from jointspace.encoders.training.trainer import TrainConfig

    return TrainConfig(
        dim=getattr(args, "dim", None), epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.learning_rate, temperature=args.temperature, logq=args.logq,
        validation_split=args.validation_split, patience=args.patience or None, seed=args.seed,
        pairs=parse_pair_spec(args.pairs),
        pair_weights=parse_pair_weights(args.pair_weight), logdir=args.logdir,
        encoder_settings={"id": {"norm": args.id_norm},
                          "audio": {} if args.audio_fmax is None else {"fmax": args.audio_fmax}},
    )


def cmd_train(args: argparse.Namespace) -> int:
    from jointspace.data.pairs import read_pairs
    from jointspace.encoders.training.export import check_model_out, export_model
    from jointspace.encoders.training.trainer import train_members

    check_model_out(args.out)
    rows = read_pairs(args.pairs_files)
    manifest = export_model(train_members(rows, _train_config(args), args.ensemble), args.out)
    print(f"model {manifest.model_version} (dim {manifest.dim}) written to {args.out}")
    return 0


def cmd_tune_dim(args: argparse.Namespace) -> int:
    from jointspace.data.pairs import read_pairs
    from jointspace.quality.dim_tuning import format_table, tune_dim

    report = tune_dim(read_pairs(args.pairs_files), _train_config(args), _positive_list(args.dims, "--dims"))
    print(json.dumps(report) if args.json else format_table(report))
    return 0


def cmd_index_build(args: argparse.Namespace) -> int:
    tuning = {} if args.target_recall is None else {"target_recall": args.target_recall}
    if args.runner == "beam":
        sharding = {} if args.shard_rows is None else {"shard_rows": args.shard_rows}
        name = _beam_builder()(args.model, args.catalogs, args.out, args.index,
                               pipeline_args=args.pipeline_options, **tuning, **sharding)
    else:
        if args.pipeline_options or args.shard_rows is not None:
            raise InvalidInput("Beam options (--shard-rows, options after --) need --runner beam")
        from jointspace.encoders.inference import EncoderSet
        from jointspace.server.build.local_builder import build_generation

        name = build_generation(EncoderSet(args.model), args.catalogs, args.out, args.index, **tuning)
    print(f"{args.out}: generation {name} is live")
    return 0


def _beam_builder() -> Any:
    """The Beam build, or a one-line answer when the optional extra is not installed."""
    import importlib.util

    if importlib.util.find_spec("apache_beam") is None:
        raise InvalidInput("--runner beam needs Apache Beam: pip install 'jointspace[beam]'")
    from jointspace.server.build.beam_builder import build_generation_with_beam

    return build_generation_with_beam


def cmd_serve(args: argparse.Namespace) -> int:
    from jointspace.server.api.config import ServeConfig, load_config
    from jointspace.core.logs import configure_logging

    config = (load_config(args.config) if args.config else ServeConfig()).with_flags(vars(args)).check()
    configure_logging(config.log_format)
    from jointspace.server.api.app import run_server

    run_server(config)
    return 0


def _add_connection_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", default="127.0.0.1:50051", metavar="HOST:PORT")
    parser.add_argument("--tls", action="store_true", help="connect with TLS, trusting the system's CAs")
    parser.add_argument("--tls-ca", type=Path, metavar="PEM",
                        help="connect with TLS, trusting this CA (the one that signed the server's certificate)")
    parser.add_argument("--tls-cert", type=Path, metavar="PEM", help="client certificate, for mutual TLS")
    parser.add_argument("--tls-key", type=Path, metavar="PEM", help="the client certificate's private key")
    parser.add_argument("--token-file", type=Path, metavar="FILE",
                        help="file holding a bearer token (default: $JOINTSPACE_TOKEN, if set)")


def _connect(args: argparse.Namespace) -> Client:
    from jointspace.client import Client

    token = os.environ.get("JOINTSPACE_TOKEN") or None
    if args.token_file is not None:
        try:
            token = args.token_file.read_text().strip()
        except OSError as error:
            raise InvalidInput(f"--token-file {args.token_file}: {error.strerror}") from None
        if not token:
            raise InvalidInput(f"--token-file {args.token_file}: empty")
    return Client(args.target, timeout=args.timeout, tls=args.tls, tls_ca=args.tls_ca, tls_cert=args.tls_cert,
                  tls_key=args.tls_key, token=token)


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


def _filters(texts: Sequence[str] | None) -> dict[str, list[Any]]:
    """--filter FIELD=VALUE (repeatable; a field given twice matches either value). VALUE is read
    as JSON when it is a number or true/false, else as a string."""
    filters: dict[str, list[Any]] = {}
    for text in texts or ():
        field, sep, value = text.partition("=")
        if not sep or not field:
            raise InvalidInput(f"--filter {text!r}: expected FIELD=VALUE")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        filters.setdefault(field, []).append(parsed if isinstance(parsed, (int, float, bool)) else value)
    return filters


def cmd_query(args: argparse.Namespace) -> int:
    with _connect(args) as client:
        hits = client.search(k=args.k, modalities=args.modality or (), exclude=args.exclude or (),
                             filters=_filters(args.filter), **_query_kwargs(args))
    if args.json:
        print(json.dumps({"hits": [h.to_dict() for h in hits]}))
    else:
        for rank, hit in enumerate(hits, 1):
            meta = f"  {json.dumps(hit.metadata)}" if hit.metadata else ""
            print(f"{rank:3d}. {hit.score:7.4f}  {hit.modality:6s} {hit.key}{meta}")
    return 0


def _server_path(path: Path) -> str:
    """A file that exists here is sent as an absolute path (client and server on one machine);
    anything else as given, for the server to resolve (against its --data-dir, if it has one)."""
    return str(path.resolve()) if path.exists() else str(path)


def _show_progress(name: str) -> Any:
    """A callback for Client.wait: one progress bar per phase of the operation."""
    from jointspace.core.progress import Progress

    shown: dict[str, Any] = {}

    def show(operation: Any) -> None:
        phase = operation.progress.phase
        if shown.get("phase") != phase:
            if shown.get("bar") is not None:
                shown["bar"].close()
            unit = "row" if phase == "embedding" else "step"
            shown.update(phase=phase, bar=Progress(operation.progress.total or None, f"{name}: {phase}", unit=unit))
        bar = shown["bar"]
        if operation.progress.done > bar.done:
            bar.update(operation.progress.done - bar.done)
        if operation.done:
            bar.close()

    return show


def cmd_rebuild(args: argparse.Namespace) -> int:
    import grpc

    with _connect(args) as client:
        operation = client.rebuild([_server_path(c) for c in args.catalogs], args.index,
                                   _server_path(args.model) if args.model else None,
                                   _server_path(args.validation_pairs) if args.validation_pairs else None,
                                   args.min_recall, args.validation_k,
                                   includes_changes_through=args.includes_changes_through)
        if not args.wait:
            print(operation.name)
            return 0
        operation = client.wait(operation.name, on_progress=_show_progress(operation.name))
    gate = operation.validation
    figures = f" (recall@{gate.k} {gate.recall:.3f} over {gate.pairs} pairs)" if operation.HasField("validation") else ""
    if operation.HasField("error"):
        code = next((c.name for c in grpc.StatusCode if c.value[0] == operation.error.code), operation.error.code)
        raise JointspaceError(f"{operation.name} {type(operation).State.Name(operation.state).lower()}: "
                              f"{code}: {operation.error.message}{figures}")
    print(f"{operation.name}: {operation.generation} is live{figures}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    with _connect(args) as client:
        info = client.info()
    print(json.dumps(info, indent=None if args.json else 2))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from jointspace.demo import run_demo

    run_demo(Path(args.out), port=args.port, epochs=args.epochs, keep_serving=args.keep_serving)
    return 0


def cmd_data_synthetic(args: argparse.Namespace) -> int:
    from jointspace.data import synthetic

    data = synthetic.generate(synthetic.SyntheticConfig(
        n_films=args.films, n_users=args.users, n_tastes=args.tastes, mean_history=args.mean_history,
        seed=args.seed, popular_share=args.popular_share, popular_exponent=args.popular_exponent,
        max_history=args.max_history))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.movielens:
        ratings, items = synthetic.write_movielens(data, out)
        print(f"{out}: {len(data.event_film)} ratings ({ratings.name}), {args.films} films ({items.name})")
        return 0
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


def cmd_evaluate(args: argparse.Namespace) -> int:
    from jointspace.data.pairs import parse_pair_spec
    from jointspace.quality.evaluation import evaluate, format_table, parse_ks

    report = evaluate(args.model, args.pairs_files, parse_ks(args.k), args.train or (), parse_pair_spec(args.pairs))
    print(json.dumps(report) if args.json else format_table(report))
    return 0


def _print_written(out: Path, counts: dict[str, Any]) -> None:
    print(f"{out}: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items()))


def cmd_import_movielens(args: argparse.Namespace) -> int:
    from jointspace.data.movielens import import_movielens

    _print_written(args.out, import_movielens(
        args.ratings, args.items, args.out, split=args.split, test_fraction=args.test_fraction,
        seed=args.seed, history=args.history, max_history=args.max_history, rating_weight=args.rating_weight))
    return 0


def cmd_import_audio(args: argparse.Namespace) -> int:
    from jointspace.data.audio_folder import import_audio

    _print_written(args.out, import_audio(
        args.folder, args.out, labels=args.labels, pattern=args.pattern, split=args.split,
        group_by=args.group_by, test_groups=args.test_group or (), test_fraction=args.test_fraction,
        seed=args.seed))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from jointspace.quality.points import collect_points
    from jointspace.quality.space_map import plot_map

    points = collect_points(args.model, args.pairs_files, args.per_view, args.seed)
    plot_map(points, args.out, f"{args.model.name}: {len(points)} points, PCA of the shared space")
    print(f"{args.out}: {len(points)} points")
    return 0


def cmd_export_projector(args: argparse.Namespace) -> int:
    from jointspace.quality.points import collect_points
    from jointspace.quality.projector import export_projector

    points = collect_points(args.model, args.pairs_files, args.per_view, args.seed)
    written = export_projector(points, args.out, args.model.name)
    print(f"{args.out}: {written['points']} points of dim {written['dim']} "
          f"(tensorboard --logdir {args.out}, or load the TSVs at projector.tensorflow.org)")
    return 0


def cmd_bench_build(args: argparse.Namespace) -> int:
    _beam_builder()
    from jointspace.bench import build

    result = build.run(args.rows, args.dim, args.index, args.target_recall, args.pipeline_options, args.work)
    print(json.dumps(result, indent=2))
    return 0


def cmd_bench_train(args: argparse.Namespace) -> int:
    from jointspace.bench import train

    result = train.run(args.films, args.users, args.dim, args.steps, args.batch_size, args.warmup,
                       args.val_queries, args.learning_rate, args.seed, args.work, args.jointspace_batch_size,
                       args.id_norm, args.temperature)
    print(json.dumps(result, indent=2) if args.json else train.table(result))
    return 0


def cmd_bench_rebuild(args: argparse.Namespace) -> int:
    from jointspace.bench import rebuild

    print(json.dumps(rebuild.run(args.model, args.rows, args.seconds, args.index, args.work), indent=2))
    return 0


def cmd_bench_soak(args: argparse.Namespace) -> int:
    from jointspace.bench import soak

    result = soak.run(args.seconds, args.clients, args.vectors, args.work)
    print(json.dumps(result, indent=2) if args.json else soak.format_summary(result))
    return 0 if result["passed"] else EXIT_ERROR


def cmd_bench_serve(args: argparse.Namespace) -> int:
    from jointspace.bench import serve

    peers = [] if args.peers == "none" else [p for p in args.peers.split(",") if p]
    report = serve.run(args.vectors, args.dim, args.work, args.seconds, args.target_recall,
                       _positive_list(args.clients, "--clients"), _positive_list(args.batches, "--batches"), peers)
    print(json.dumps(report, indent=2) if args.json else serve.format_table(report))
    return 0


def _positive_list(text: str, flag: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InvalidInput(f"{flag}: expected comma-separated whole numbers, got {text!r}") from None
    if not values or min(values) <= 0:
        raise InvalidInput(f"{flag}: expected positive numbers, got {text!r}")
    return values


def cmd_bench_queries(args: argparse.Namespace) -> int:
    from jointspace.bench import queries

    report = queries.run(args.model, args.index, args.pairs, args.seconds, _positive_list(args.clients, "--clients"))
    print(json.dumps(report, indent=2) if args.json else queries.format_table(report))
    return 0


def cmd_bench_overhead(args: argparse.Namespace) -> int:
    from jointspace.bench import overhead

    print(json.dumps(overhead.run(args.model, args.index, args.calls, args.rounds), indent=2))
    return 0


def _add_training_args(parser: argparse.ArgumentParser) -> None:
    """Training options shared by `train` and `tune-dim` (defaults: encoders/training/trainer.py)."""
    parser.add_argument("--epochs", type=_auto_or_positive, default=None,
                        help="'auto' (default: enough for 600 steps) or a number")
    parser.add_argument("--batch-size", type=_batch_size, default=128)
    parser.add_argument("--learning-rate", type=_positive_number, default=0.003)
    parser.add_argument("--temperature", type=_positive_number, default=0.2)
    parser.add_argument("--logq", type=_non_negative_number, default=1.0,
                        help="strength of the sampling-bias (logQ) correction, 0 = off (default: %(default)s)")
    parser.add_argument("--id-norm", choices=ID_NORMS, default="clip",
                        help="id vectors' length: at most 1, so popular ids can outscore rare ones "
                             "('clip', the default), or exactly 1, every score a cosine ('unit')")
    parser.add_argument("--audio-fmax", type=_positive_number, default=None, metavar="HZ",
                        help="top of the audio mel bands (default: half the lowest sample rate the "
                             "training files were recorded at, at most half the model's rate)")
    parser.add_argument("--validation-split", type=_held_out_share, default=0.1,
                        help="share of the rows held out for validation, in [0, 1) (default: %(default)s)")
    parser.add_argument("--patience", type=_non_negative, default=3,
                        help="stop after this many validations without a better recall@1+@10 and keep the "
                             "best weights; 0 = train all epochs (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="fixes the validation split, batches, augmentations and initial weights: "
                             "the same seed trains the same model (default: %(default)s)")
    parser.add_argument("--pairs", default=None, help="pair types to train, e.g. 'ids=id,text=id' (default: all)")
    parser.add_argument("--pair-weight", action="append", metavar="VIEW=VIEW:WEIGHT",
                        help="loss weight of a pair type, e.g. 'text=id:0.5' (repeatable; default 1)")
    parser.add_argument("--logdir", default=None, help="write TensorBoard scalars (loss, validation) here")


class _CommandParser(argparse.ArgumentParser):
    """A parser that runs a command (it sets `func`) names itself as `command_parser`, so that an
    unknown option is reported with the usage of `bench speakers`, not of `jointspace`.
    Subparsers are made of their parent's class, so every parser below the root is one too."""

    def set_defaults(self, **kwargs: Any) -> None:
        if "func" in kwargs:
            kwargs["command_parser"] = self
        super().set_defaults(**kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = _CommandParser(
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
    train.add_argument("--dim", type=_auto_or_positive, default=None,
                       help="'auto' (default: the fourth root of the distinct values) or a dimension")
    train.add_argument("--ensemble", type=_positive, default=1, metavar="K",
                       help="train K models (seeds SEED to SEED+K-1) and serve them as one: a score is "
                            "their mean, the space K times as wide, training and queries K times "
                            "the cost (default: %(default)s)")
    _add_training_args(train)
    train.set_defaults(func=cmd_train)

    dims = commands.add_parser(
        "tune-dim", help="train at several dimensions on a validation split and recommend one")
    dims.add_argument("pairs_files", nargs="+", type=Path, metavar="PAIRS", help="JSON Lines or CSV pair files")
    dims.add_argument("--dims", default="8,16,32,64", help="dimensions to try (default: %(default)s)")
    dims.add_argument("--json", action="store_true", help="print one JSON object")
    _add_training_args(dims)
    dims.set_defaults(func=cmd_tune_dim)

    evaluation = commands.add_parser(
        "evaluate", help="recall@k and MRR of a model on pair rows, beside a popularity baseline")
    evaluation.add_argument("model", type=Path, metavar="MODEL")
    evaluation.add_argument("pairs_files", nargs="+", type=Path, metavar="PAIRS", help="held-out pair rows")
    evaluation.add_argument("--k", default="1,10,100", help="cut-offs (default: %(default)s)")
    evaluation.add_argument("--train", action="append", type=Path, metavar="PAIRS",
                            help="training pair rows: their values join the candidates and the popularity "
                                 "baseline counts on them (repeatable)")
    evaluation.add_argument("--pairs", default=None, help="pair types to evaluate, both ways, e.g. "
                            "'id:user=id,ids=id' (default: all in the rows)")
    evaluation.add_argument("--json", action="store_true", help="print one JSON object")
    evaluation.set_defaults(func=cmd_evaluate)

    importers = commands.add_parser("import", help="turn common data layouts into pair rows and catalogs")
    import_commands = importers.add_subparsers(dest="import_command", required=True, metavar="COMMAND")
    movielens = import_commands.add_parser(
        "movielens", help="MovieLens-100K-style ratings (user item rating timestamp) and item file")
    movielens.add_argument("ratings", type=Path, metavar="RATINGS", help="e.g. u.data (tab-separated)")
    movielens.add_argument("--items", required=True, type=Path, help="e.g. u.item (id|title|...|genre flags)")
    movielens.add_argument("--out", required=True, type=Path, metavar="DIR")
    movielens.add_argument("--split", default="random", choices=["random", "time"])
    movielens.add_argument("--test-fraction", type=float, default=0.2)
    movielens.add_argument("--seed", type=int, default=42)
    movielens.add_argument("--history", default="earlier", choices=["earlier", "all"],
                           help="a rating's history: the user's training films before it, or all others")
    movielens.add_argument("--max-history", type=_positive, default=None,
                           help="films per history (default: 50 newest for --history earlier, 200 for all)")
    movielens.add_argument("--rating-weight", action="store_true", help="use the rating as the row weight")
    movielens.set_defaults(func=cmd_import_movielens)
    audio = import_commands.add_parser("audio", help="a folder of labelled audio files (audio = text rows)")
    audio.add_argument("folder", type=Path, metavar="FOLDER")
    audio.add_argument("--out", required=True, type=Path, metavar="DIR")
    labels = audio.add_mutually_exclusive_group()
    labels.add_argument("--labels", type=Path, metavar="CSV", help="path,label[,group] (default: file names)")
    labels.add_argument("--pattern", help="regex with (?P<label>...) for file names without suffix "
                                          "(default: FSDD's DIGIT_SPEAKER_TAKE)")
    audio.add_argument("--split", default="random", choices=["random", "group"])
    audio.add_argument("--group-by", default=None, help="group field (default: group, else speaker)")
    audio.add_argument("--test-group", action="append", metavar="NAME", help="group to hold out (repeatable)")
    audio.add_argument("--test-fraction", type=float, default=0.2)
    audio.add_argument("--seed", type=int, default=42)
    audio.set_defaults(func=cmd_import_audio)

    for name, func, default_per_view, help_text in (
        ("plot", cmd_plot, 1000, "a 2-D map (PCA) of the shared space as a picture"),
        ("export-projector", cmd_export_projector, 10_000,
         "vectors.tsv + metadata.tsv + projector_config.pbtxt for TensorBoard's Embedding Projector"),
    ):
        picture = commands.add_parser(name, help=help_text)
        picture.add_argument("model", type=Path, metavar="MODEL")
        picture.add_argument("pairs_files", nargs="+", type=Path, metavar="PAIRS")
        picture.add_argument("--out", required=True, type=Path,
                             metavar="FILE" if name == "plot" else "DIR")
        picture.add_argument("--per-view", type=_positive, default=default_per_view,
                             help="at most this many values of each view, sampled (default: %(default)s)")
        picture.add_argument("--seed", type=int, default=0)
        picture.set_defaults(func=func)

    index = commands.add_parser("index", help="index operations")
    index_commands = index.add_subparsers(dest="index_command", required=True, metavar="COMMAND")
    build = index_commands.add_parser("build", help="embed catalogs and publish a new index generation")
    build.add_argument("catalogs", nargs="+", type=Path, metavar="CATALOG")
    build.add_argument("--model", required=True, type=Path)
    build.add_argument("--out", required=True, type=Path, metavar="INDEX")
    build.add_argument("--index", default="auto", help="auto, flat, hnsw, ivfpq or a FAISS factory string")
    build.add_argument("--target-recall", type=_recall,
                       help="recall@10 against exact search that efSearch / nprobe are tuned to reach "
                            "(default: 0.95)")
    build.add_argument("--runner", default="local", choices=["local", "beam"],
                       help="local: in this process; beam: an Apache Beam pipeline, with Beam's own "
                            "options after -- (default runner: the in-process FnApiRunner)")
    build.add_argument("--shard-rows", type=_positive,
                       help="beam: consecutive catalog lines per shard (default: 100000)")
    build.set_defaults(func=cmd_index_build, takes_pipeline_options=True)

    serve = commands.add_parser(
        "serve", help="serve a model and its index over gRPC",
        description="Flags override the --config file, which overrides the defaults shown.")
    serve.add_argument("--config", type=Path, metavar="TOML", help="settings file (see docs/guide.md)")
    serve.add_argument("--model", type=Path, help="required here or in the config file")
    serve.add_argument("--index", type=Path, help="required here or in the config file")
    serve.add_argument("--host", help="address to bind (default: 127.0.0.1, loopback only)")
    serve.add_argument("--port", type=int, help="default: 50051; 0 picks a free port")
    serve.add_argument("--workers", type=_positive, help="threads serving calls (default: one per CPU core)")
    serve.add_argument("--max-concurrent-rpcs", type=_positive,
                       help="calls beyond this get RESOURCE_EXHAUSTED (default: 64)")
    serve.add_argument("--data-dir", type=Path, help="refuse models, indexes and catalogs outside this directory")
    serve.add_argument("--max-deadline-seconds", type=float,
                       help="longest a call may run, also when the client sets no deadline (default: 60)")
    serve.add_argument("--request-read-timeout-seconds", type=float,
                       help="cancel a call whose request has not arrived within this long (default: 10)")
    serve.add_argument("--grace-seconds", type=float,
                       help="on SIGTERM, in-flight calls get this long to finish (default: 10)")
    serve.add_argument("--limit", action="append", metavar="NAME=VALUE",
                       help="request limit, e.g. max_k=100 (repeatable; names in jointspace/core/limits.py)")
    serve.add_argument("--tls-cert", type=Path, metavar="PEM", help="serve TLS with this certificate (chain)")
    serve.add_argument("--tls-key", type=Path, metavar="PEM", help="the certificate's private key")
    serve.add_argument("--tls-client-ca", type=Path, metavar="PEM",
                       help="mutual TLS: require client certificates signed by this CA")
    serve.add_argument("--tokens-file", type=Path, metavar="FILE",
                       help="bearer-token auth: lines of 'read TOKEN' or 'write TOKEN'")
    serve.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on this port (default: off)")
    serve.add_argument("--metrics-host", help="address for /metrics (default: 127.0.0.1)")
    serve.add_argument("--log-format", choices=["text", "json"], help="default: text")
    serve.add_argument("--access-log", action="store_true", default=None, help="log every call")
    serve.add_argument("--keep-generations", type=_positive,
                       help="index generations kept on disk after a rebuild, the live one included "
                            "(default: 3, at least 2)")
    serve.set_defaults(func=cmd_serve)

    query = commands.add_parser("query", help="search a running server")
    _add_connection_args(query)
    kind = query.add_mutually_exclusive_group(required=True)
    kind.add_argument("--id")
    kind.add_argument("--ids", help="comma-separated ids, e.g. a watch history")
    kind.add_argument("--text")
    kind.add_argument("--audio", metavar="FILE")
    kind.add_argument("--vector", help="comma-separated floats")
    query.add_argument("-k", type=int, default=10)
    query.add_argument("--modality", action="append", help="result modality (repeatable; default all)")
    query.add_argument("--exclude", action="append", metavar="KEY", help="key never to return (repeatable)")
    query.add_argument("--filter", action="append", metavar="FIELD=VALUE",
                       help="only hits whose metadata FIELD is VALUE (repeatable; one field twice: either value)")
    query.add_argument("--json", action="store_true", help='print {"hits": [...]}')
    query.add_argument("--timeout", type=float, default=30.0, help="deadline in seconds")
    query.set_defaults(func=cmd_query)

    rebuild = commands.add_parser(
        "rebuild", help="rebuild a running server's index from catalog files, without stopping it",
        description="Catalog, model and validation paths are read by the server; files that exist here are "
                    "sent as absolute paths. A second rebuild while one runs is refused (ABORTED).")
    _add_connection_args(rebuild)
    rebuild.add_argument("catalogs", nargs="+", type=Path, metavar="CATALOG")
    rebuild.add_argument("--index", default="", help="auto (default), flat, hnsw, ivfpq or a FAISS factory string")
    rebuild.add_argument("--model", type=Path, metavar="DIR",
                         help="embed with this model and switch model and index together")
    rebuild.add_argument("--validation-pairs", type=Path, metavar="FILE",
                         help='gate: rows of {"key": ..., <query field>: ...}; swap only if recall is reached')
    rebuild.add_argument("--min-recall", type=float, default=0.0, help="gate: minimum recall@k, in (0, 1]")
    rebuild.add_argument("--validation-k", type=int, default=0, help="gate: k (default: 10)")
    rebuild.add_argument("--includes-changes-through", type=int, default=0, metavar="N",
                         help="the catalogs already hold the online changes up to number N (the last_change "
                              "`jointspace info` showed when they were exported): those are not carried over "
                              "(default 0: every online change is carried over)")
    rebuild.add_argument("--wait", action="store_true", help="show progress until it is done; exit 1 if it fails")
    rebuild.add_argument("--timeout", type=float, default=30.0, help="deadline of each call, in seconds")
    rebuild.set_defaults(func=cmd_rebuild)

    info = commands.add_parser("info", help="what a running server serves")
    _add_connection_args(info)
    info.add_argument("--json", action="store_true")
    info.add_argument("--timeout", type=float, default=10.0)
    info.set_defaults(func=cmd_info)

    data = commands.add_parser("data", help="make example data files")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    synth = data_commands.add_parser("synthetic", help="collaborative-filtering data with hidden tastes")
    synth.add_argument("--films", type=_positive, default=2000)
    synth.add_argument("--users", type=_positive, default=3000)
    synth.add_argument("--mean-history", type=_positive, default=20, help="mean films per user")
    synth.add_argument("--max-history", type=_positive, default=200, help="most films per user (default: %(default)s)")
    synth.add_argument("--tastes", type=_positive, default=20, help="hidden taste clusters (default: %(default)s)")
    synth.add_argument("--popular-share", type=float, default=0.0,
                       help="share of watches drawn from one global popularity ranking, in [0, 1) "
                            "(default: 0; MovieLens-100K-like: 0.4, see docs/benchmarks.md)")
    synth.add_argument("--popular-exponent", type=float, default=1.0,
                       help="Zipf exponent of that ranking (default: %(default)s)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--movielens", action="store_true",
                       help="write MovieLens-100K files (u.data, u.item) instead of pair rows")
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
    held_out.add_argument("--seed", type=int, action="append",
                          help="training seed (repeatable: every speaker under every seed, with a mean "
                               "per seed; default 0)")
    held_out.add_argument("--ensemble", type=_positive, default=1, metavar="K",
                          help="train each model as an ensemble of K (train --ensemble; default: %(default)s)")
    held_out.set_defaults(func=cmd_bench_speakers)
    front_end = bench_commands.add_parser(
        "frontend", help="in-graph log-mel vs librosa on the same clips: speed and parity")
    front_end.add_argument("--source", help="a FSDD folder (default: the subset shipped with jointspace)")
    front_end.add_argument("--clips", type=_positive, default=512)
    front_end.add_argument("--batch", type=_positive, default=64)
    front_end.add_argument("--passes", type=_positive, default=5)
    front_end.set_defaults(func=cmd_bench_frontend)
    decoding = bench_commands.add_parser(
        "decode", help="latency an audio query pays for decoding in worker processes")
    decoding.add_argument("--model", required=True)
    decoding.add_argument("--index", required=True, help="an index built with that model")
    decoding.add_argument("--clips", type=_positive, default=50, help="spoken-digit clips queried per pass")
    decoding.add_argument("--passes", type=_positive, default=5)
    decoding.set_defaults(func=cmd_bench_decode)
    latency = bench_commands.add_parser(
        "queries", help="end-to-end latency of id, history, text, audio and vector queries (Embed and Search)",
        description="Serves MODEL and INDEX with `jointspace serve` and times Embed (encoder alone) and Search "
                    "(encoder + index) for queries of every modality the model answers, taken from the pair rows.")
    latency.add_argument("--model", required=True, type=Path)
    latency.add_argument("--index", required=True, type=Path, help="an index built with that model")
    latency.add_argument("--pairs", required=True, type=Path, nargs="+", help="pair rows to take queries from")
    latency.add_argument("--seconds", type=float, default=5.0, help="per measurement (default: %(default)s)")
    latency.add_argument("--clients", default="1,4", help="concurrent client processes (default: %(default)s)")
    latency.add_argument("--json", action="store_true", help="print the whole report as JSON")
    latency.set_defaults(func=cmd_bench_queries)
    cost = bench_commands.add_parser(
        "overhead", help="per-call cost of the server's interceptors (sequential Search over loopback)")
    cost.add_argument("--model", required=True, type=Path)
    cost.add_argument("--index", required=True, type=Path)
    cost.add_argument("--calls", type=_positive, default=3000, help="per server and round")
    cost.add_argument("--rounds", type=_positive, default=5)
    cost.set_defaults(func=cmd_bench_overhead)
    serving = bench_commands.add_parser(
        "serve", help="Search / BatchSearch speed over loopback beside the gRPC ceiling, FAISS and peers",
        description="Builds (or reuses from --work) an index of clustered vectors, serves it with `jointspace "
                    "serve` and measures it beside a no-op server on the same stack, FAISS in-process, and "
                    "milvus-lite / chromadb when installed (pip install 'jointspace[peers]').")
    serving.add_argument("--vectors", type=_positive, default=1_000_000, help="default: %(default)s")
    serving.add_argument("--dim", type=_positive, default=32, help="default: %(default)s")
    serving.add_argument("--work", type=Path,
                         help="keep the model, index and milvus's data here for the next run (chroma reloads)")
    serving.add_argument("--seconds", type=float, default=10.0, help="per measurement (default: %(default)s)")
    serving.add_argument("--target-recall", type=_recall, default=0.95, help="recall@10 every engine is tuned to")
    serving.add_argument("--clients", default="1,4,16", help="concurrent client processes (default: %(default)s)")
    serving.add_argument("--batches", default="64,256", help="BatchSearch sizes (default: %(default)s)")
    serving.add_argument("--peers", default="milvus,chroma", help="peers to compare, or none (default: %(default)s)")
    serving.add_argument("--json", action="store_true", help="print the whole report as JSON")
    serving.set_defaults(func=cmd_bench_serve)
    swap = bench_commands.add_parser(
        "rebuild", help="RebuildIndex and hot swap of a served vector catalog under a steady query loop")
    swap.add_argument("--model", required=True, type=Path, help="any exported model; its dimension is used")
    swap.add_argument("--rows", type=_positive, default=1_000_000)
    swap.add_argument("--seconds", type=float, default=30.0, help="query load before the rebuild starts")
    swap.add_argument("--index", default="auto", help="as for index build (default: auto)")
    swap.add_argument("--work", type=Path, help="keep the catalog and index here")
    swap.set_defaults(func=cmd_bench_rebuild)
    soak_load = bench_commands.add_parser(
        "soak", help="mixed Search/Embed/Upsert/Delete load from client processes plus a rebuild; "
                     "checks errors, memory growth and that no acknowledged write is lost (exit 1 if not)")
    soak_load.add_argument("--seconds", type=float, default=60.0, help="load duration (default: %(default)s)")
    soak_load.add_argument("--clients", type=_positive, default=4, help="client processes (default: %(default)s)")
    soak_load.add_argument("--vectors", type=_positive, default=100_000,
                           help="clustered vectors in the catalog, beside the films (default: %(default)s)")
    soak_load.add_argument("--work", type=Path, help="keep the model, catalogs and index here (reused next time)")
    soak_load.add_argument("--json", action="store_true", help="print one JSON object")
    soak_load.set_defaults(func=cmd_bench_soak)
    timed_build = bench_commands.add_parser(
        "build", help="local vs Apache Beam index build of a catalog of clustered vectors",
        description="Times the local and the Beam build of one catalog; Beam options go after --.")
    timed_build.add_argument("--rows", type=_positive, default=1_000_000, help="catalog rows (default: %(default)s)")
    timed_build.add_argument("--dim", type=_positive, default=32, help="vector dimension (default: %(default)s)")
    timed_build.add_argument("--index", default="auto", help="as for index build (default: auto)")
    timed_build.add_argument("--target-recall", type=_recall, default=0.95)
    timed_build.add_argument("--work", type=Path, help="keep the catalog, model and indexes here")
    timed_build.set_defaults(func=cmd_bench_build, takes_pipeline_options=True)
    speed = bench_commands.add_parser(
        "train", help="id two-tower training speed and recall: plain TFRS model.fit vs jointspace, side by side")
    speed.add_argument("--films", type=_positive, default=1_000_000, help="default: %(default)s")
    speed.add_argument("--users", type=_positive, default=500_000, help="default: %(default)s")
    speed.add_argument("--dim", type=_positive, default=32, help="default: %(default)s")
    speed.add_argument("--steps", type=_positive, default=1000, help="timed steps per side (default: %(default)s)")
    speed.add_argument("--warmup", type=_positive, default=20, help="untimed first steps (default: %(default)s)")
    speed.add_argument("--batch-size", type=_positive, default=4096, help="both sides (default: %(default)s)")
    speed.add_argument("--jointspace-batch-size", type=_positive, default=None,
                       help="jointspace side's batch, a divisor of --batch-size; it then takes more steps "
                            "so that both sides see as many examples (default: --batch-size)")
    speed.add_argument("--val-queries", type=_positive, default=5000,
                       help="held-out (user, film) rows for recall (default: %(default)s)")
    speed.add_argument("--learning-rate", type=_positive_number, default=0.05,
                       help="jointspace side's (TFRS side: Adagrad 0.1) (default: %(default)s)")
    speed.add_argument("--id-norm", choices=ID_NORMS, default="clip",
                       help="jointspace side's id vector length, as in `train` (default: %(default)s)")
    speed.add_argument("--temperature", type=_positive_number, default=0.2,
                       help="jointspace side's softmax temperature, as in `train` (default: %(default)s)")
    speed.add_argument("--seed", type=int, default=0)
    speed.add_argument("--work", type=Path, help="keep the split and the vectors here")
    speed.add_argument("--json", action="store_true", help="print one JSON object")
    speed.set_defaults(func=cmd_bench_train)
    return parser


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

    if isinstance(error, grpc.RpcError) and hasattr(error, "code"):
        return f"{error.code().name}: {error.details()}"
    if isinstance(error, JointspaceError):
        return str(error)
    bind = _BIND_FAILURE.match(str(error)) if isinstance(error, (RuntimeError, OSError)) else None
    if bind:
        return (f"cannot serve on {bind[1]}: the port is in use, or the address is not one of this "
                f"machine's (--host, --port)")
    if isinstance(error, OSError) and error.filename:
        return f"{error.filename}: {error.strerror}"
    message = str(error).strip().splitlines()
    return f"{type(error).__name__}: {message[0] if message else 'no details'} (JOINTSPACE_DEBUG=1 shows the traceback)"


if __name__ == "__main__":
    sys.exit(main())
