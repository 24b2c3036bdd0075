"""`jointspace evaluate`: retrieval quality of an exported model on pair rows, beside the
baselines a recommender team would try first, every scorer under one rule.

For every pair type in the rows and both of its directions (`id:user -> id`, `id -> id:user`),
each distinct query value is ranked against the full candidate set of the result view: every
distinct value of that view in the evaluated files and in the `--train` files, so a film only seen
in training still competes. A candidate is relevant to a query when a row pairs them
(jointspace/core/retrieval_metrics.py has the metrics' exact rules).

Every figure is reported two ways, for every scorer alike (`score_ranks` ranks them all):
- **seen kept**: all candidates compete (TFRS's top-k accuracy, per held-out row);
- **seen removed**: what a deployed recommender shows. The query's own items never come back:
  the candidates the query value is paired with in the `--train` rows (a user's training films)
  and, for a history, its own ids. The service does the same with `exclude_query_ids` and
  `seen_ids` on Search.

Scorers: the model; popularity (candidates by how often they are the result of that direction in
the `--train` rows, or in the evaluated rows themselves when no training rows of that pair type
are given, which flatters it); and where the query is a user or a history of ids, the results are
ids and `--train` rows are given, item co-occurrence (jointspace/quality/cooccurrence.py) and EASE
(jointspace/quality/ease.py), the strongest of them. A baseline that cannot run says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from jointspace.core.errors import InvalidInput
from jointspace.core.retrieval_metrics import (
    ScoreRows,
    Trials,
    inner_products,
    list_scores,
    score_ranks,
    summarize,
)
from jointspace.core.sparse import item_matrix, pair_matrix
from jointspace.data.pairs import PairRows, read_pairs
from jointspace.quality.cooccurrence import cooccurrence_counts, cooccurrence_scores
from jointspace.quality.ease import MAX_ITEMS, fit_ease
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


def _partners(query: _View, result: _View) -> sp.csr_matrix | None:
    """Query values × candidates: how often the training rows pair them; None without them."""
    if query.train_codes is None or result.train_codes is None:
        return None
    both = (query.train_codes >= 0) & (result.train_codes >= 0)
    return pair_matrix(query.train_codes[both], result.train_codes[both], (len(query.values), len(result.values)))


def _members(query: _View, result: _View) -> sp.csr_matrix | None:
    """A history's own ids as candidates of an id view (None for other query views)."""
    if query.values.modality != "ids" or result.values.modality != "id":
        return None
    number = result.values.number
    return item_matrix([np.array([number[i] for i in bag if i in number], np.int64)
                        for bag in query.values.values], len(result.values))


def _either(*matrices: sp.csr_matrix | None) -> sp.csr_matrix | None:
    """The 0/1 union of the given matrices."""
    present = [m for m in matrices if m is not None]
    if not present:
        return None
    union = sum(present[1:], present[0]).tocsr()
    union.data[:] = 1.0
    return union


def _item_sets(items: sp.csr_matrix, partners: sp.csr_matrix, owners: sp.csr_matrix | None) -> sp.csr_matrix:
    """EASE's training sets: each owner's items when the rows say who owns them (a user's
    training films, for a history query), otherwise each training query's items with its
    targets; repeated sets once. A user's histories nest (each rating's history holds the
    previous one), so as sets they would weigh a user by the square of their ratings."""
    sets = owners if owners is not None and owners.nnz else _either(items, partners)
    assert sets is not None
    sets = sets[np.flatnonzero(sets.getnnz(axis=1))]
    sets.sort_indices()
    keys = [sets.indices[a:b].tobytes() for a, b in zip(sets.indptr[:-1], sets.indptr[1:])]
    _, first = np.unique(np.array(keys, dtype=object), return_index=True)
    return sets[np.sort(first)]


def _item_baselines(query: _View, result: _View, partners: sp.csr_matrix | None, owners: sp.csr_matrix | None,
                    query_values: np.ndarray) -> tuple[dict[str, ScoreRows], dict[str, str], dict[str, Any]]:
    """Co-occurrence and EASE scorers where they apply, the reasons of those that do not, and
    EASE's chosen λ."""
    names = ("cooccurrence", "ease")
    if result.values.modality != "id" or query.values.modality not in ("id", "ids"):
        return {}, {}, {}
    if partners is None or not partners.nnz:
        return {}, {n: "needs --train rows of this pair type" for n in names}, {}
    members = _members(query, result)
    items = members if members is not None else _either(partners)
    assert items is not None
    scorers: dict[str, ScoreRows] = {}
    skipped: dict[str, str] = {}
    counts = cooccurrence_counts(items, partners) if items.nnz else None
    if counts is None:
        skipped["cooccurrence"] = "too many co-occurrences to count" if items.nnz else "no query has items"
    else:
        scorers["cooccurrence"] = cooccurrence_scores(items[query_values], counts)
    extra: dict[str, Any] = {}
    if len(result.values) > MAX_ITEMS:
        skipped["ease"] = f"{len(result.values)} candidates, more than the {MAX_ITEMS} of a dense inverse"
    else:
        ease = fit_ease(_item_sets(items, partners, owners))
        scorers["ease"] = ease.scores(items[query_values])
        extra = {"ease_lambda": ease.regularization,
                 "ease_validation": {f"{value:g}": score for value, score in ease.validation.items()}}
    return scorers, skipped, extra


def _owners(query: _View, result: _View, views: dict[str, _View]) -> sp.csr_matrix | None:
    """For a history query over ids: which ids each user (another id view paired with the same
    results in the training rows, e.g. `id:user`) owns; None when the rows name no users."""
    if query.values.modality != "ids" or result.values.modality != "id" or result.train_codes is None:
        return None
    for view in views.values():
        if view is not result and view.values.modality == "id" and view.train_codes is not None:
            both = (view.train_codes >= 0) & (result.train_codes >= 0)
            if both.any():
                return pair_matrix(view.train_codes[both], result.train_codes[both],
                                   (len(view.values), len(result.values)), binary=True)
    return None


def _direction(query: _View, result: _View, ks: Sequence[int], owners: sp.csr_matrix | None) -> dict[str, Any]:
    trials, query_values = _trials(query, result)
    candidates = len(result.values)
    partners = _partners(query, result)
    seen = _either(partners, _members(query, result))
    counts, source = _popularity(query, result)
    popular = list_scores(counts)
    scorers: dict[str, ScoreRows] = {
        "model": inner_products(query.vectors[query_values], result.vectors, query.ok[query_values], result.ok),
        "popularity": lambda rows: np.broadcast_to(popular, (len(rows), candidates)),
    }
    baselines, skipped, extra = _item_baselines(query, result, partners, owners, query_values)
    scorers.update(baselines)
    exclusions = {"kept": None, "removed": None if seen is None else seen[query_values]}
    figures: dict[str, dict[str, dict[str, float]]] = {mode: {} for mode in exclusions}
    for name, scores_of in scorers.items():
        for mode, ranks in score_ranks(scores_of, trials, candidates, exclusions).items():
            figures[mode][name] = summarize(ranks, trials, ks, candidates)
    return {
        "queries": trials.num_queries,
        "pairs": len(trials.query),
        "candidates": candidates,
        "unembedded_queries": int((~query.ok[query_values]).sum()),
        "unembedded_candidates": int((~result.ok).sum()),
        "popularity_from": source,
        "seen_per_query": float(exclusions["removed"].getnnz() / max(trials.num_queries, 1))
        if exclusions["removed"] is not None else 0.0,
        **figures,
        "skipped": skipped,
        **extra,
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
        "directions": {f"{q}->{r}": _direction(views[q], views[r], ks, _owners(views[q], views[r], views))
                       for q, r in directions},
    }


SCORER_LABELS = {"model": "model", "popularity": "popularity", "cooccurrence": "co-occur.", "ease": "EASE"}
MODE_LABELS = {"kept": "seen kept", "removed": "seen removed"}


def format_table(report: dict[str, Any]) -> str:
    """The report as a fixed-width table: per direction, seen kept then seen removed, one row per
    scorer. R@k is per held-out pair (TFRS's top-k accuracy), QR@k and N@k (NDCG) per query."""
    ks = report["k"]
    metrics = ([f"recall@{k}" for k in ks] + [f"query_recall@{k}" for k in ks]
               + [f"ndcg@{k}" for k in ks] + ["mrr"])
    headers = [f"R@{k}" for k in ks] + [f"QR@{k}" for k in ks] + [f"N@{k}" for k in ks] + ["MRR"]
    width = max([len("direction")] + [len(d) for d in report["directions"]])
    lines = [
        f"model {report['model_version']} (dim {report['dim']}) on {', '.join(report['pair_files'])}",
        f"{'direction':<{width}}  {'queries':>8} {'pairs':>8} {'cands':>8}  {'seen':<8} {'scorer':<11}"
        + "".join(f" {h:>7}" for h in headers),
    ]
    notes = []
    for name, result in report["directions"].items():
        first = f"{name:<{width}}  {result['queries']:>8} {result['pairs']:>8} {result['candidates']:>8}"
        for mode in MODE_LABELS:
            for scorer, figures in result[mode].items():
                label = SCORER_LABELS[scorer]
                if scorer == "popularity" and result["popularity_from"] != "train":
                    label += "*"
                lines.append(f"{first:<{width + 28}}  {mode:<8} {label:<11}"
                             + "".join(f" {figures[m]:>7.4f}" for m in metrics))
                first = ""
        for scorer, reason in result["skipped"].items():
            notes.append(f"{name}: no {SCORER_LABELS[scorer]} row: {reason}")
        if "ease_lambda" in result:
            notes.append(f"{name}: EASE λ = {result['ease_lambda']:g}, chosen on held-out training sets")
        if result["unembedded_queries"] or result["unembedded_candidates"]:
            notes.append(f"{name}: {result['unembedded_queries']} queries and "
                         f"{result['unembedded_candidates']} candidates unknown to the model "
                         f"(their pairs count as misses)")
    notes.append("seen removed: the query's training partners (and a history's own ids) are never "
                 "shown, for every scorer alike")
    if any(r["popularity_from"] != "train" for r in report["directions"].values()):
        notes.append("popularity*: counted on the evaluated rows themselves (optimistic); "
                     "pass --train to count on training rows")
    return "\n".join(lines + notes)
