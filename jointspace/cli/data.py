"""`import movielens|audio` and `data synthetic|fsdd`: pair rows and catalogs to train and index.

Two command groups, registered apart: the root help lists `import` beside the training commands
and `data` beside the server ones.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from jointspace.cli.arguments import positive


def add_import_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`commands`: the root parser's subparsers."""
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
    movielens.add_argument("--max-history", type=positive, default=None,
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


def add_data_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`commands`: the root parser's subparsers."""
    data = commands.add_parser("data", help="make example data files")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    synth = data_commands.add_parser("synthetic", help="collaborative-filtering data with hidden tastes")
    synth.add_argument("--films", type=positive, default=2000)
    synth.add_argument("--users", type=positive, default=3000)
    synth.add_argument("--mean-history", type=positive, default=20, help="mean films per user")
    synth.add_argument("--max-history", type=positive, default=200, help="most films per user (default: %(default)s)")
    synth.add_argument("--tastes", type=positive, default=20, help="hidden taste clusters (default: %(default)s)")
    synth.add_argument("--popular-share", type=float, default=0.0,
                       help="share of watches drawn from one global popularity ranking, in [0, 1) "
                            "(default: 0; MovieLens-100K-like: 0.3, see docs/benchmarks.md)")
    synth.add_argument("--popular-exponent", type=float, default=1.0,
                       help="Zipf exponent of that ranking (default: %(default)s; MovieLens-100K-like: 2)")
    synth.add_argument("--popular-offset", type=float, default=0.0, metavar="FILMS",
                       help="flat head of that ranking: rank r weighs (r + 1.5 + FILMS)^-exponent "
                            "(default: %(default)s; MovieLens-100K-like: 80)")
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


def cmd_data_synthetic(args: argparse.Namespace) -> int:
    from jointspace.data import synthetic

    data = synthetic.generate(synthetic.SyntheticConfig(
        n_films=args.films, n_users=args.users, n_tastes=args.tastes, mean_history=args.mean_history,
        seed=args.seed, popular_share=args.popular_share, popular_exponent=args.popular_exponent,
        popular_offset=args.popular_offset, max_history=args.max_history))
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
