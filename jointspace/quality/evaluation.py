"""`jointspace evaluate`: retrieval quality of an exported model on pair rows, next to a
popularity baseline.

For every pair type in the rows and both of its directions (`id:user -> id`, `id -> id:user`),
each distinct query value is embedded and ranked against the full candidate set of the result
view: every distinct value of that view in the evaluated files and in the `--train` files, so a
film only seen in training still competes. A candidate is relevant to a query when a row pairs
them; a query with several relevant candidates (a user's held-out films) counts each of them, so
recall@k is TFRS's top-k accuracy per held-out row (jointspace/core/retrieval_metrics.py has the exact rules).

The popularity baseline shows every query the same list: candidates by how often they are the
result of that direction in the `--train` rows, or in the evaluated rows themselves when no
training rows of that pair type are given (which flatters it). A model that does not beat it
has learnt little beyond popularity. Where the query is a user or a history of ids and the
results are ids, and `--train` rows are given, the item co-occurrence baseline
(jointspace/quality/cooccurrence.py) is shown too: the stronger bar for a recommender.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jointspace.core.errors import InvalidInput
from jointspace.core.retrieval_metrics import MISSING, Trials, model_ranks, popularity_ranks, summarize
from jointspace.data.pairs import PairRows, read_pairs
from jointspace.quality.cooccurrence import cooccurrence_counts, cooccurrence_ranks, item_matrix, pair_matrix
from jointspace.quality.view_values import ViewValues, embed_values

DEFAULT_KS = (1, 10, 100)


def parse_ks(text: str) -> tuple[int, ...]:
    """`"1,10,100"` to (1, 10, 100)."""
    try:
        ks = tuple(sorted({int(k) for k in text.split(",") if k.strip()}))
    except ValueError:
        raise InvalidInput(f"--k {text!r}: expected comma-separated integers") from None
    if not ks or ks[0] < 1:
        raise InvalidInput(f"--k {text!r}: expected positive integers")
    return ks


@dataclass
class _View:
    """One view's candidates (evaluated values first, then training-only ones) and vectors."""

    values: ViewValues
    codes: np.ndarray  # per evaluated row
    train_codes: np.ndarray | None  # per training row
    vectors: np.ndarray
    ok: np.ndarray


def _directions(rows: PairRows, pairs: Sequence[tuple[str, str]] | None) -> list[tuple[str, str]]:
    return [d for a, b in rows.pair_types(pairs) for d in ((a, b), (b, a))]


def _trials(query: _View, result: _View) -> tuple[Trials, np.ndarray]:
    """Distinct (query value, result value) pairs of the evaluated rows, and the query values."""
    both = (query.codes >= 0) & (result.codes >= 0)
    pairs = np.unique(np.stack([query.codes[both], result.codes[both]], axis=1), axis=0)
    query_values, query_index = np.unique(pairs[:, 0], return_inverse=True)
    return Trials(query_index.ravel(), pairs[:, 1], len(query_values)), query_values


def _target_counts(query_codes: np.ndarray, result_codes: np.ndarray, size: int) -> np.ndarray:
    targets = result_codes[(query_codes >= 0) & (result_codes >= 0)]
    return np.bincount(targets, minlength=size).astype(np.float64)


def _popularity(query: _View, result: _View) -> tuple[np.ndarray, str]:
    """How often each candidate is the result of this direction in the training rows, or in the
    evaluated rows when the training rows have no pair of this type."""
    if query.train_codes is not None and result.train_codes is not None:
        counts = _target_counts(query.train_codes, result.train_codes, len(result.values))
        if counts.any():
            return counts, "train"
    return _target_counts(query.codes, result.codes, len(result.values)), "evaluated"


def _query_items(query: _View, result: _View, targets: Any) -> Any:
    """Each query value's items as result candidates: a history's ids, or the results a user
    is paired with in the training rows (`targets`)."""
    if query.values.modality == "ids":
        number = result.values.number
        return item_matrix([np.array([number[i] for i in bag if i in number], np.int64)
                            for bag in query.values.values], len(result.values))
    items = targets.copy()
    items.data[:] = 1.0
    return items


def _cooccurrence(query: _View, result: _View, trials: Trials, query_values: np.ndarray,
                  ks: Sequence[int]) -> dict[str, float] | None:
    """The co-occurrence baseline's figures, or None where it does not apply (see the module
    docstring) or would be too large to compute."""
    if (result.values.modality != "id" or query.values.modality not in ("id", "ids")
            or query.train_codes is None or result.train_codes is None):
        return None
    both = (query.train_codes >= 0) & (result.train_codes >= 0)
    if not both.any():
        return None
    targets = pair_matrix(query.train_codes[both], result.train_codes[both],
                          (len(query.values), len(result.values)))
    items = _query_items(query, result, targets)
    counts = cooccurrence_counts(items, targets) if items.nnz else None
    if counts is None:
        return None
    ranks = cooccurrence_ranks(items[query_values], counts, trials)
    return summarize(ranks, trials, ks, len(result.values))


def _direction(query: _View, result: _View, ks: Sequence[int]) -> dict[str, Any]:
    trials, query_values = _trials(query, result)
    # The model ranks among the candidates it can embed; the others can still be relevant, and
    # then count as misses.
    embedded = np.flatnonzero(result.ok)
    renumber = np.full(len(result.values), MISSING, np.int64)
    renumber[embedded] = np.arange(len(embedded))
    model_trials = Trials(trials.query, renumber[trials.target], trials.num_queries)
    ranks = model_ranks(query.vectors[query_values], result.vectors[embedded], model_trials,
                        query_ok=query.ok[query_values])
    counts, source = _popularity(query, result)
    return {
        "queries": trials.num_queries,
        "pairs": len(trials.query),
        "candidates": len(result.values),
        "unembedded_queries": int((~query.ok[query_values]).sum()),
        "unembedded_candidates": int(len(result.values) - len(embedded)),
        "model": summarize(ranks, model_trials, ks, len(embedded)),
        "popularity": summarize(popularity_ranks(counts, trials), trials, ks, len(result.values)),
        "popularity_from": source,
        "cooccurrence": _cooccurrence(query, result, trials, query_values, ks),
    }


def evaluate(model_dir: Path, pair_files: Sequence[Path], ks: Sequence[int] = DEFAULT_KS,
             train_files: Sequence[Path] = (), pairs: Sequence[tuple[str, str]] | None = None) -> dict[str, Any]:
    """Every direction's metrics for the model and the popularity baseline, as one JSON-able
    object; `pairs` restricts the pair types (both directions of each are evaluated)."""
    from jointspace.encoders.inference import EncoderSet

    rows = read_pairs(pair_files)
    train_rows = read_pairs(train_files) if train_files else None
    encoders = EncoderSet(model_dir)
    directions = _directions(rows, pairs)
    if not directions:
        raise InvalidInput("no row of the evaluated files has two views")
    views: dict[str, _View] = {}
    for name in sorted({v for d in directions for v in d}):
        values = ViewValues(name)
        if values.modality not in encoders.modalities:
            raise InvalidInput(f"view {name}: the model cannot encode {values.modality!r}; it knows "
                               f"{', '.join(encoders.modalities)}")
        codes = values.add_rows(rows)
        train_codes = values.add_rows(train_rows) if train_rows is not None else None
        vectors, ok = embed_values(encoders, values.modality, values.values, f"embedding {name}")
        views[name] = _View(values, codes, train_codes, vectors, ok)
    return {
        "model": str(model_dir),
        "model_version": encoders.version,
        "dim": encoders.dim,
        "pair_files": [str(p) for p in pair_files],
        "train_files": [str(p) for p in train_files],
        "k": list(ks),
        "directions": {f"{q}->{r}": _direction(views[q], views[r], ks) for q, r in directions},
    }


def format_table(report: dict[str, Any]) -> str:
    """The report as a fixed-width table, model and popularity rows one above the other."""
    ks = report["k"]
    metrics = [f"recall@{k}" for k in ks] + [f"precision@{k}" for k in ks] + ["mrr"]
    headers = [f"R@{k}" for k in ks] + [f"P@{k}" for k in ks] + ["MRR"]
    width = max([len("direction")] + [len(d) for d in report["directions"]])
    lines = [
        f"model {report['model_version']} (dim {report['dim']}) on {', '.join(report['pair_files'])}",
        f"{'direction':<{width}}  {'queries':>8} {'pairs':>8} {'cands':>8}  {'scorer':<11}"
        + "".join(f" {h:>7}" for h in headers),
    ]
    notes = []
    for name, result in report["directions"].items():
        counted_on_train = result["popularity_from"] == "train"
        lines.append(f"{name:<{width}}  {result['queries']:>8} {result['pairs']:>8} {result['candidates']:>8}"
                     f"  {'model':<11}" + "".join(f" {result['model'][m]:>7.4f}" for m in metrics))
        lines.append(" " * (width + 28) + f"  {'popularity' + ('' if counted_on_train else '*'):<11}"
                     + "".join(f" {result['popularity'][m]:>7.4f}" for m in metrics))
        if result["cooccurrence"]:
            lines.append(" " * (width + 28) + f"  {'co-occur.':<11}"
                         + "".join(f" {result['cooccurrence'][m]:>7.4f}" for m in metrics))
        if result["unembedded_queries"] or result["unembedded_candidates"]:
            notes.append(f"{name}: {result['unembedded_queries']} queries and "
                         f"{result['unembedded_candidates']} candidates unknown to the model "
                         f"(their pairs count as misses)")
    if any(r["cooccurrence"] for r in report["directions"].values()):
        notes.append("co-occur.: films scored by co-occurrence with the query's own (history or "
                     "training) films, which are ranked last")
    if any(r["popularity_from"] != "train" for r in report["directions"].values()):
        notes.append("popularity*: counted on the evaluated rows themselves (optimistic); "
                     "pass --train to count on training rows")
    return "\n".join(lines + notes)
