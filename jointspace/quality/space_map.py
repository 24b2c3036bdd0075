"""`jointspace plot`: a 2-D picture of the shared space.

The projection is PCA (numpy SVD): linear, deterministic and fast, so two pictures of the same
model are comparable and distances along the axes mean something, which t-SNE/UMAP do not give.
Markers tell the modality (view); colours tell the label when there are few enough labels to tell
apart (spoken digits: ten words), else the view. Text points are annotated when there are few.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from jointspace.quality.points import Points

MAX_COLOURED_LABELS = 12
MAX_ANNOTATIONS = 40
MARKERS = {"id": "o", "ids": "s", "text": "^", "audio": "D"}


def project_2d(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(points [n, 2], share of variance of each axis [2]) by PCA."""
    centred = vectors - vectors.mean(axis=0, keepdims=True)
    _, singular, axes = np.linalg.svd(centred, full_matrices=False)
    variance = singular**2
    share = variance[:2] / max(float(variance.sum()), 1e-12)
    projected = centred @ axes[:2].T
    if projected.shape[1] < 2:  # a one-dimensional space still gets a picture
        projected = np.pad(projected, ((0, 0), (0, 2 - projected.shape[1])))
        share = np.pad(share, (0, 2 - len(share)))
    return projected, share


def plot_map(points: Points, out: Path, title: str) -> None:
    """Write the picture (PNG, or any format matplotlib knows by the suffix)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    xy, share = project_2d(points.matrix())
    labels = Counter(label for label in points.labels if label)
    by_label = 0 < len(labels) <= MAX_COLOURED_LABELS
    keys = sorted(labels) if by_label else sorted(set(points.views))
    colours = {key: plt.get_cmap("tab20" if len(keys) > 10 else "tab10")(i % 20) for i, key in enumerate(keys)}
    figure, axes = plt.subplots(figsize=(9, 8), dpi=110)
    views = np.asarray(points.views)
    for view in sorted(set(points.views)):
        at = np.flatnonzero(views == view)
        colour = [colours.get(points.labels[i] if by_label else view, (0.6, 0.6, 0.6, 1.0)) for i in at]
        axes.scatter(xy[at, 0], xy[at, 1], c=colour, s=14 if len(points) < 2000 else 4,
                     marker=MARKERS.get(view.split(":", 1)[0], "o"), alpha=0.8, linewidths=0,
                     label=f"{view} ({len(at)})")
    text_points = [i for i, m in enumerate(points.modalities) if m == "text"]
    if len(text_points) <= MAX_ANNOTATIONS:
        for i in text_points:
            axes.annotate(points.names[i][:30], xy[i], fontsize=7, alpha=0.9)
    modality_legend = axes.legend(loc="upper left", fontsize=8, title="view", markerscale=1.5)
    if by_label:
        axes.add_artist(modality_legend)
        handles = [plt.Line2D([], [], marker="o", linestyle="", color=colours[key]) for key in keys]
        axes.legend(handles, [k[:30] for k in keys], loc="upper right", fontsize=7, title="label")
    axes.set_title(title, fontsize=10)
    axes.set_xlabel(f"PC 1 ({share[0]:.0%} of variance)")
    axes.set_ylabel(f"PC 2 ({share[1]:.0%} of variance)")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    plt.close(figure)
