"""The things pair files name, as points of the shared space with a name and a label, for pictures
(`jointspace plot`) and the Embedding Projector (`jointspace export-projector`).

A point's label is the text it is paired with (a clip's word, a film's title), or the text itself
for text views: that is what a person looking at the space wants to see clusters of. Large views
are sampled (seeded), since a picture of a million dots says less than one of a thousand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from jointspace.core.errors import InvalidInput
from jointspace.core.progress import log
from jointspace.data.pairs import PairRows, modality_of, read_pairs
from jointspace.quality.view_values import ViewValues, describe_value, embed_values


@dataclass
class Points:
    vectors: list[np.ndarray] = field(default_factory=list)  # one [n, D] block per view
    views: list[str] = field(default_factory=list)
    modalities: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)

    def matrix(self) -> np.ndarray:
        return np.concatenate(self.vectors) if self.vectors else np.zeros((0, 0), np.float32)

    def __len__(self) -> int:
        return len(self.names)


def _labels(rows: PairRows, values: ViewValues, codes: np.ndarray) -> list[str]:
    """The first text each value is paired with in a row; a text view's values label themselves."""
    if values.modality == "text":
        return list(values.values)
    labels = [""] * len(values)
    for text_view in (v for v in rows.views if modality_of(v) == "text"):
        column = rows.views[text_view]
        for row in np.flatnonzero(codes >= 0).tolist():
            if column[row] is not None and not labels[codes[row]]:
                labels[codes[row]] = column[row]
    return labels


def collect_points(model_dir: Path, pair_files: Sequence[Path], per_view: int, seed: int = 0) -> Points:
    """Every view's distinct values (at most `per_view` of each, drawn with `seed`), embedded."""
    from jointspace.encoders.inference import EncoderSet

    if per_view < 1:
        raise InvalidInput(f"--per-view must be at least 1, got {per_view}")
    rows = read_pairs(pair_files)
    encoders = EncoderSet(model_dir)
    rng = np.random.default_rng(seed)
    points = Points()
    for view in sorted(rows.views):
        values = ViewValues(view)
        if values.modality not in encoders.modalities:
            log(f"skipping view {view}: the model cannot encode {values.modality!r}")
            continue
        codes = values.add_rows(rows)
        labels = _labels(rows, values, codes)
        chosen = np.arange(len(values))
        if len(values) > per_view:
            chosen = np.sort(rng.choice(len(values), per_view, replace=False))
        vectors, ok = embed_values(encoders, values.modality, [values.values[i] for i in chosen],
                                   f"embedding {view}")
        if not ok.all():
            log(f"{view}: {int((~ok).sum())} values the model cannot embed are left out")
        kept = chosen[ok]
        points.vectors.append(vectors[ok])
        points.views += [view] * len(kept)
        points.modalities += [values.modality] * len(kept)
        points.names += [describe_value(values.modality, values.values[i]) for i in kept.tolist()]
        points.labels += [describe_value("text", labels[i]) if labels[i] else "" for i in kept.tolist()]
    if not len(points):
        raise InvalidInput("no value of the pair files could be embedded with this model")
    return points
