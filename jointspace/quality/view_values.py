"""The distinct values of pair-row views and their vectors under an exported model.

Evaluation, the 2-D map and the Embedding Projector export all start from the same question:
which things does this data name, and where does the model put them? A value that the model
cannot embed (an id outside its vocabulary, a text without known words, an unreadable clip) is
reported as missing instead of aborting the whole run, because held-out data is expected to
contain a few of them and they must be counted, not hidden.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jointspace.core.errors import JointspaceError
from jointspace.core.progress import Progress
from jointspace.data.pairs import PairRows, modality_of

EMBED_BATCH = 256


def value_key(value: Any) -> Hashable:
    """Bags of ids are lists in pair rows; as tuples they can key a dict."""
    return tuple(value) if isinstance(value, list) else value


@dataclass
class ViewValues:
    """Distinct values of one view, numbered in first-seen order across every file added."""

    view: str
    values: list[Any] = field(default_factory=list)
    number: dict[Hashable, int] = field(default_factory=dict)

    @property
    def modality(self) -> str:
        return modality_of(self.view)

    def add_rows(self, rows: PairRows) -> np.ndarray:
        """Number the view's values in `rows`; returns each row's number (-1 where absent)."""
        codes = np.full(len(rows), -1, np.int64)
        for row, value in enumerate(rows.views.get(self.view, ())):
            if value is not None:
                codes[row] = self.number.setdefault(value_key(value), len(self.number))
                if codes[row] == len(self.values):
                    self.values.append(value)
        return codes

    def __len__(self) -> int:
        return len(self.values)


def embed_values(encoders: Any, modality: str, values: Sequence[Any],
                 description: str) -> tuple[np.ndarray, np.ndarray]:
    """(vectors [n, D], ok [n]): rows the model could not embed are zero and not ok.

    `encoders` is an `EncoderSet`. A batch that fails is split in halves until the values at
    fault are found, so a few unknown values cost a few extra calls, not one call per value.
    """
    vectors = np.zeros((len(values), encoders.dim), np.float32)
    ok = np.zeros(len(values), bool)

    def embed(begin: int, end: int) -> None:
        try:
            vectors[begin:end] = encoders.embed(modality, list(values[begin:end]))
            ok[begin:end] = True
        except JointspaceError:
            if end - begin > 1:
                middle = (begin + end) // 2
                embed(begin, middle)
                embed(middle, end)

    with Progress(len(values), description, unit="value") as progress:
        for begin in range(0, len(values), EMBED_BATCH):
            end = min(begin + EMBED_BATCH, len(values))
            embed(begin, end)
            progress.update(end - begin)
    return vectors, ok


def describe_value(modality: str, value: Any, width: int = 80) -> str:
    """One line naming a value: the id, the text, the file name of a clip, a bag's first ids."""
    if isinstance(value, list):
        shown = " ".join(value[:5])
        text = f"{shown} (+{len(value) - 5})" if len(value) > 5 else shown
    elif modality == "audio":
        text = Path(value).name
    else:
        text = str(value)
    text = " ".join(text.split())  # no tabs or newlines: the value goes into TSV cells and legends
    return text if len(text) <= width else text[: width - 1] + "…"
