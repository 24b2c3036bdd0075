"""`train`, `tune-dim` and `evaluate`: models from pair rows, and how good they are.

The training options' defaults are TrainConfig's own, read from encoders/training/config.py
(which imports no TensorFlow); the trainer itself is imported only when a command runs.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from jointspace.cli.arguments import (
    auto_or_positive,
    batch_size,
    epoch_share,
    held_out_share,
    non_negative,
    non_negative_number,
    positive,
    positive_list,
    positive_number,
)
from jointspace.core.errors import InvalidInput
from jointspace.encoders.impl.id_norms import DEFAULT_NORM, NORMS
from jointspace.encoders.training.cluster import DEFAULT_MIN_SHARD_BYTES, read_cluster
from jointspace.encoders.training.config import AUTO_STEPS, STOPPED_AUTO_EPOCHS, TrainConfig
from jointspace.encoders.training.early_stopping import LEARNING_RATE_CUT


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`commands`: the root parser's subparsers."""
    train = commands.add_parser("train", help="train encoders on pair rows and export them")
    train.add_argument("pairs_files", nargs="*", type=Path, metavar="PAIRS",
                       help="JSON Lines, CSV or Parquet pair files (every training task of a cluster "
                            "reads the same ones; a ps task and a parameter-server worker need none)")
    train.add_argument("--out", type=Path, metavar="MODEL",
                       help="the model folder (required; in a cluster only the chief writes it)")
    train.add_argument("--dim", type=auto_or_positive, default=TrainConfig().dim,
                       help="'auto' (default: twice the square root of the distinct values with an id table, "
                            "else the fourth root; 8 to 128) or a dimension")
    train.add_argument("--ensemble", type=positive, default=1, metavar="K",
                       help="train K models (seeds SEED to SEED+K-1) and serve them as one: a score is "
                            "their mean, the space K times as wide, training and queries K times "
                            "the cost (default: %(default)s)")
    _add_training_args(train)
    _add_cluster_args(train)
    train.set_defaults(func=cmd_train)

    dims = commands.add_parser(
        "tune-dim", help="train at several dimensions on a validation split and recommend one")
    dims.add_argument("pairs_files", nargs="+", type=Path, metavar="PAIRS",
                      help="JSON Lines, CSV or Parquet pair files")
    dims.add_argument("--dims", default="8,16,32,64", help="dimensions to try (default: %(default)s)")
    dims.add_argument("--json", action="store_true", help="print one JSON object")
    _add_training_args(dims)
    dims.set_defaults(func=cmd_tune_dim)

    evaluation = commands.add_parser(
        "evaluate", help="recall@k, NDCG and MRR of a model on pair rows beside popularity, co-occurrence "
                                     "and EASE, with seen items kept and removed")
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


def _add_training_args(parser: argparse.ArgumentParser) -> None:
    """Training options shared by `train` and `tune-dim`; `_train_config` reads them back."""
    defaults = TrainConfig()
    parser.add_argument("--epochs", type=auto_or_positive, default=defaults.epochs,
                        help=f"'auto' (default: enough for {AUTO_STEPS} steps, at least "
                             f"{STOPPED_AUTO_EPOCHS} with early stopping, which then ends the run) or a number")
    parser.add_argument("--batch-size", type=batch_size, default=defaults.batch_size)
    parser.add_argument("--catalog-batch-size", type=batch_size, default=defaults.catalog_batch_size,
                        help="batch of the pairs ranked against the whole catalog (--catalog-softmax-max), "
                             "whose negatives do not depend on it (default: %(default)s)")
    parser.add_argument("--learning-rate", type=positive_number, default=defaults.learning_rate)
    parser.add_argument("--temperature", type=positive_number, default=defaults.temperature)
    parser.add_argument("--catalog-temperature", type=positive_number, default=defaults.catalog_temperature,
                        help="temperature of the catalog softmax (--catalog-softmax-max) (default: %(default)s)")
    parser.add_argument("--logq", type=non_negative_number, default=defaults.logq,
                        help="strength of the sampling-bias (logQ) correction, 0 = off (default: %(default)s)")
    parser.add_argument("--catalog-softmax-max", type=non_negative, default=defaults.catalog_softmax_max,
                        metavar="N",
                        help="rank user and history queries against every film (the plain 'id' view) "
                             "when there are at most N; 0 = against the batch only (default: %(default)s)")
    parser.add_argument("--augment-text", action="store_true",
                        help="also train on typed variants of the training texts (bare titles, runs of words, a "
                             "word dropped), so that text queries as people type them find their items")
    parser.add_argument("--id-norm", choices=NORMS, default=DEFAULT_NORM,
                        help="id vectors' length: at most 1, so popular ids can outscore rare ones "
                             "('clip', the default), or exactly 1, every score a cosine ('unit')")
    parser.add_argument("--audio-fmax", type=positive_number, default=None, metavar="HZ",
                        help="top of the audio mel bands (default: half the lowest sample rate the "
                             "training files were recorded at, at most half the model's rate)")
    parser.add_argument("--validation-split", type=held_out_share, default=defaults.validation_split,
                        help="share of the rows held out for validation, in [0, 1), at most "
                             f"{defaults.validation_queries:,} rows (default: %(default)s)")
    parser.add_argument("--patience", type=non_negative, default=defaults.patience,
                        help="stop after this many validations without a better recall@1/@10/@100 and keep the "
                             "best weights; 0 = train all epochs (default: %(default)s)")
    parser.add_argument("--learning-rate-cuts", type=non_negative, default=defaults.learning_rate_cuts,
                        help="times a plateau sends training back to its best weights at "
                             f"{LEARNING_RATE_CUT:g}× the learning rate before the next one stops it "
                             "(default: %(default)s)")
    parser.add_argument("--average-from", type=epoch_share, default=defaults.average_from, metavar="SHARE",
                        help="average the weights after each epoch from this share of the epochs on and keep "
                             "the mean unless validation scores it clearly below the best epoch; 1 = no "
                             "average (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=defaults.seed,
                        help="fixes the validation split, batches, augmentations and initial weights: "
                             "the same seed trains the same model (default: %(default)s)")
    parser.add_argument("--pairs", default=None, help="pair types to train, e.g. 'ids=id,text=id' (default: all)")
    parser.add_argument("--pair-weight", action="append", metavar="VIEW=VIEW:WEIGHT",
                        help="loss weight of a pair type, e.g. 'text=id:0.5' (repeatable; default 1)")
    parser.add_argument("--logdir", default=defaults.logdir,
                        help="write TensorBoard scalars (loss, validation) here")


def _add_cluster_args(parser: argparse.ArgumentParser) -> None:
    """Training on several processes or machines (encoders/training/distributed.py)."""
    cluster = parser.add_argument_group("cluster", "train with tf.distribute: worker tasks alone train "
                                        "data-parallel; with ps tasks the id tables are split over them")
    cluster.add_argument("--cluster", metavar="SPEC",
                         help="a JSON file (or inline JSON) in TF_CONFIG's form, "
                              "{\"cluster\": {\"worker\": [\"host:port\", ...], ...}, \"task\": {...}} "
                              "(default: the TF_CONFIG environment variable, if set)")
    cluster.add_argument("--role", choices=("chief", "worker", "ps"),
                         help="this process's role (default: the spec's task)")
    cluster.add_argument("--task-index", type=non_negative,
                         help="this process's index in its role (default: the spec's task)")
    cluster.add_argument("--max-shards", type=positive, metavar="N",
                         help="parameter servers: shards per large variable (default: one per ps task)")
    cluster.add_argument("--min-shard-bytes", type=positive, default=DEFAULT_MIN_SHARD_BYTES, metavar="BYTES",
                         help="parameter servers: variables smaller than this stay whole (default: %(default)s)")


def _train_config(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of the options `_add_training_args` defines."""
    from jointspace.data.pairs import parse_pair_spec, parse_pair_weights

    return TrainConfig(
        dim=getattr(args, "dim", None), epochs=args.epochs, batch_size=args.batch_size,
        catalog_batch_size=args.catalog_batch_size, learning_rate=args.learning_rate,
        temperature=args.temperature, logq=args.logq,
        catalog_softmax_max=args.catalog_softmax_max, catalog_temperature=args.catalog_temperature,
        augment_text=args.augment_text,
        validation_split=args.validation_split, patience=args.patience or None,
        learning_rate_cuts=args.learning_rate_cuts, average_from=args.average_from, seed=args.seed,
        pairs=parse_pair_spec(args.pairs),
        pair_weights=parse_pair_weights(args.pair_weight), logdir=args.logdir,
        encoder_settings={"id": {"norm": args.id_norm},
                          "audio": {} if args.audio_fmax is None else {"fmax": args.audio_fmax}},
    )


def cmd_train(args: argparse.Namespace) -> int:
    task = read_cluster(args.cluster, args.role, args.task_index, os.environ)
    if task is not None and not task.trains:
        from jointspace.encoders.training.distributed import serve

        serve(task)
        return 0
    if not args.pairs_files or (args.out is None and (task is None or task.is_chief)):
        raise InvalidInput("train needs PAIRS and --out")
    if task is not None and args.ensemble > 1:
        raise InvalidInput("--ensemble cannot be combined with --cluster or TF_CONFIG")

    from jointspace.data.pairs import read_pairs
    from jointspace.encoders.training.export import check_model_out, export_model
    from jointspace.encoders.training.trainer import train_members

    if args.out is not None and (task is None or task.is_chief):
        check_model_out(args.out)
    rows = read_pairs(args.pairs_files)
    if task is not None:
        from jointspace.encoders.training.distributed import train_on_cluster

        trained = train_on_cluster(task, rows, _train_config(args), args.max_shards, args.min_shard_bytes)
        if trained is None:
            print(f"{task.role} {task.index}: training done; the chief exports the model")
            return 0
        manifest = export_model(trained, args.out)
    else:
        manifest = export_model(train_members(rows, _train_config(args), args.ensemble), args.out)
    print(f"model {manifest.model_version} (dim {manifest.dim}) written to {args.out}")
    return 0


def cmd_tune_dim(args: argparse.Namespace) -> int:
    from jointspace.data.pairs import read_pairs
    from jointspace.quality.dim_tuning import format_table, tune_dim

    report = tune_dim(read_pairs(args.pairs_files), _train_config(args), positive_list(args.dims, "--dims"))
    print(json.dumps(report) if args.json else format_table(report))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from jointspace.data.pairs import parse_pair_spec
    from jointspace.quality.evaluation import evaluate, format_table, parse_ks

    report = evaluate(args.model, args.pairs_files, parse_ks(args.k), args.train or (), parse_pair_spec(args.pairs))
    print(json.dumps(report) if args.json else format_table(report))
    return 0
