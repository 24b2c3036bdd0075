"""`plot` and `export-projector`: the shared space as a picture, or as files for TensorBoard's
Embedding Projector. Both sample the same points (quality/points.py), so they take the same options."""

from __future__ import annotations

import argparse
from pathlib import Path

from jointspace.cli.arguments import positive


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`commands`: the root parser's subparsers."""
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
        picture.add_argument("--per-view", type=positive, default=default_per_view,
                             help="at most this many values of each view, sampled (default: %(default)s)")
        picture.add_argument("--seed", type=int, default=0)
        picture.set_defaults(func=func)


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
