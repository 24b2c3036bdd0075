"""`jointspace bench typed-search`: text queries as people type them, scored for the vector side,
the lexical side and their fusions, side by side.

People ask for a catalog entry by its bare title ("star wars"), by some of its words, or with a
typo, not by the full catalog string a model was trained on ("Star Wars (1977) | action ...").
The queries are derived from a metadata field of each entry (`title` by default), kept only for
entries whose bare title is unique in the catalog, so that exactly one hit is right:

- `title`: the bare title: trailing parenthesised parts dropped ("(1977)", "(Series, #1)"), a
  trailing ", The" moved to the front;
- `words`: the bare title with one of its words dropped (titles of two words or more);
- `typo`: the bare title with one edit (a letter dropped, doubled, changed or two swapped) in its
  longest word of FUZZY_FROM letters or more.

Every query is searched through the engine over a generation built from the catalog, once per
method: the vector side alone, the lexical side alone, and each fusion rule at a few weights. The
latency of one Search (vector against hybrid at the default weight, one query per call, after
a warm-up) is measured in the same process.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jointspace.core.errors import InvalidInput
from jointspace.core.lexical_weight import DEFAULT_LEXICAL_WEIGHT
from jointspace.core.progress import log
from jointspace.data.catalog import CatalogEntry, RowRules, read_catalog
from jointspace.data.text_augment import bare_title
from jointspace.encoders.inference import EncoderSet
from jointspace.server.build.local_builder import build_generation
from jointspace.server.index.fusion import DEFAULT_FUSION, FUSIONS
from jointspace.server.index.lexical_terms import FUZZY_FROM, terms
from jointspace.server.serving.engine import Engine

KINDS = ("title", "words", "typo")
WEIGHTS = (0.25, 0.5, 0.75)
KS = (1, 10)
BATCH = 256
LATENCY_QUERIES = 300


@dataclass(frozen=True)
class Method:
    """One way of answering: `weight` None is the vector side alone (no lexical side asked)."""

    name: str
    weight: float | None
    fusion: str = DEFAULT_FUSION


def methods(weights: Sequence[float] = WEIGHTS) -> list[Method]:
    found = [Method("vector", None), Method("lexical", 1.0)]
    found += [Method(f"{fusion} w={w:g}", w, fusion) for fusion in FUSIONS for w in weights]
    return found


def typed_queries(entries: Sequence[CatalogEntry], field: str, seed: int = 0) -> dict[str, list[tuple[str, str]]]:
    """(query text, the key it should find) per kind, for the entries with a unique bare title."""
    rng = np.random.default_rng(seed)
    titles: dict[tuple[str, ...], list[CatalogEntry]] = {}
    for entry in entries:
        value = entry.metadata.get(field)
        if isinstance(value, str) and terms(bare_title(value)):
            titles.setdefault(tuple(terms(bare_title(value))), []).append(entry)
    queries: dict[str, list[tuple[str, str]]] = {kind: [] for kind in KINDS}
    for words, owners in titles.items():
        if len(owners) != 1:
            continue
        key = owners[0].key
        queries["title"].append((bare_title(owners[0].metadata[field]), key))
        if len(words) >= 2:
            dropped = int(rng.integers(len(words)))
            queries["words"].append((" ".join(w for i, w in enumerate(words) if i != dropped), key))
        longest = max(range(len(words)), key=lambda i: len(words[i]))
        if len(words[longest]) >= FUZZY_FROM:
            typo = _typo(words[longest], rng)
            queries["typo"].append((" ".join(typo if i == longest else w for i, w in enumerate(words)), key))
    return queries


def _typo(word: str, rng: np.random.Generator) -> str:
    """One edit that changes the word: drop, double, change or swap letters."""
    at = int(rng.integers(1, len(word) - 1))  # first and last letters are the ones people get right
    edit = int(rng.integers(4))
    if edit == 0:
        return word[:at] + word[at + 1:]
    if edit == 1:
        return word[:at] + word[at] + word[at:]
    if edit == 2:
        letters = [c for c in "abcdefghijklmnopqrstuvwxyz" if c != word[at]]
        return word[:at] + letters[int(rng.integers(len(letters)))] + word[at + 1:]
    swapped = word[:at] + word[at + 1] + word[at] + word[at + 2:]
    return swapped if swapped != word else word[:at] + word[at + 1:]


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def encodable(engine: Engine, queries: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The queries the model's text encoder can embed (one with no word the tower knows, say in
    a script it never saw, is refused by the vector side, so no method could answer it)."""
    kept: list[tuple[str, str]] = []
    for batch in _batches(queries, BATCH):
        try:
            engine.embed([("text", text) for text, _ in batch])
            kept.extend(batch)
        except InvalidInput:
            kept.extend(q for q in batch if _embeds(engine, q[0]))
    return kept


def _embeds(engine: Engine, text: str) -> bool:
    try:
        engine.embed([("text", text)])
    except InvalidInput:
        return False
    return True


def score(engine: Engine, queries: Sequence[tuple[str, str]], method: Method,
          modalities: Sequence[str]) -> dict[str, float]:
    """recall@k (the one right key among the top k) and MRR over top max(KS)."""
    ranks = []
    for batch in _batches(queries, BATCH):
        found = engine.search([("text", text) for text, _ in batch], max(KS), modalities,
                              lexical_weight=method.weight, fusion=method.fusion)
        for (_, key), hits in zip(batch, found):
            keys = [hit.key for hit in hits]
            ranks.append(keys.index(key) + 1 if key in keys else 0)
    ranked = np.asarray(ranks)
    result = {f"recall@{k}": float(((ranked > 0) & (ranked <= k)).mean()) for k in KS}
    result["mrr"] = float(np.where(ranked > 0, 1.0 / np.maximum(ranked, 1), 0.0).mean())
    return result


def latency_ms(engine: Engine, texts: Sequence[str], weight: float | None, modalities: Sequence[str]) -> float:
    """Median milliseconds of one Search through the engine (embedding included)."""
    for text in texts[:20]:
        engine.search([("text", text)], max(KS), modalities, lexical_weight=weight)
    times = []
    for text in texts:
        started = time.perf_counter()
        engine.search([("text", text)], max(KS), modalities, lexical_weight=weight)
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1000)


def run(model_dir: Path, catalogs: Sequence[Path], field: str = "title", weights: Sequence[float] = WEIGHTS,
        seed: int = 0) -> dict[str, Any]:
    """Build a generation of the catalogs with the model in a temporary folder, then score every
    kind of typed query with every method."""
    encoders = EncoderSet(model_dir)
    entries = read_catalog(catalogs, RowRules(encoders.limits))
    queries = typed_queries(entries, field, seed)
    if not queries["title"]:
        raise InvalidInput(f"--field {field}: no catalog entry has a text value of its own in this field")
    modalities = sorted({e.modality for e in entries if isinstance(e.metadata.get(field), str)})
    with tempfile.TemporaryDirectory(prefix="typed-search-") as scratch:
        root = Path(scratch) / "index"
        build_generation(encoders, catalogs, root)
        engine = Engine(model_dir, root)
        queries = {kind: encodable(engine, found) for kind, found in queries.items()}
        scores: dict[str, dict[str, dict[str, float]]] = {}
        for method in methods(weights):
            log(f"typed search: {method.name}")
            scores[method.name] = {kind: score(engine, queries[kind], method, modalities)
                                   for kind in KINDS if queries[kind]}
        texts = [text for text, _ in queries["title"][:LATENCY_QUERIES]]
        latency = {"vector": latency_ms(engine, texts, None, modalities),
                   "hybrid": latency_ms(engine, texts, DEFAULT_LEXICAL_WEIGHT, modalities)}
    return {"queries": {kind: len(queries[kind]) for kind in KINDS}, "entries": len(entries), "field": field,
            "scores": scores, "search_ms_p50": latency,
            "default": {"weight": DEFAULT_LEXICAL_WEIGHT, "fusion": DEFAULT_FUSION}}


def report(result: dict[str, Any]) -> str:
    """A table: one row per method, recall@1 / recall@10 per kind of query."""
    kinds = [kind for kind in KINDS if result["queries"][kind]]
    lines = [f"typed search over {result['entries']} entries, metadata field {result['field']!r}; queries: "
             + ", ".join(f"{kind} {result['queries'][kind]}" for kind in kinds),
             f"{'method':16s}" + "".join(f"  {kind + ' R@1':>11s} {kind + ' R@10':>11s}" for kind in kinds)]
    for name, by_kind in result["scores"].items():
        lines.append(f"{name:16s}" + "".join(
            f"  {by_kind[kind]['recall@1']:11.3f} {by_kind[kind]['recall@10']:11.3f}" for kind in kinds))
    latency = result["search_ms_p50"]
    default = result["default"]
    lines.append(f"Search p50 (in process, k=10): vector {latency['vector']:.2f} ms, hybrid "
                 f"({default['fusion']} w={default['weight']:g}) {latency['hybrid']:.2f} ms, "
                 f"+{latency['hybrid'] - latency['vector']:.2f} ms")
    return "\n".join(lines)
