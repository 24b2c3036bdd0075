"""Typed variants of text views: what people type instead of the full catalog string.

A text tower trained only on "Star Wars (1977) | action adventure sci-fi" learns that string;
people type "star wars", "wars", "star wars adventure". `typed_variants` derives such texts from a
text view: the bare title (the part before " | ", trailing parenthesised parts such as a year or
a series dropped, a trailing ", The" put in front), a run of its words, the title with one word
dropped. `augment_text` adds rows with such variants beside the original pair rows, the other
views unchanged, so the tower also learns to map partial texts to the same place.
"""

from __future__ import annotations

import re

import numpy as np

from jointspace.data.pairs import PairRows, modality_of

_PARENTHESISED = re.compile(r"\s*\([^()]*\)\s*$")
_ARTICLE = re.compile(r"^(.*), (the|a|an)$", re.IGNORECASE)
DEFAULT_COPIES = 2  # typed variants added per text value


def bare_title(text: str) -> str:
    """"Godfather, The (1972) | crime drama" → "The Godfather"; "The Hunger Games (The Hunger
    Games, #1)" → "The Hunger Games"."""
    title = text.split(" | ", 1)[0].strip()
    while True:
        shorter = _PARENTHESISED.sub("", title)
        if shorter == title or not shorter:
            break
        title = shorter
    article = _ARTICLE.match(title)
    return f"{article.group(2)} {article.group(1)}" if article else title


def typed_variants(text: str, rng: np.random.Generator, count: int = DEFAULT_COPIES) -> list[str]:
    """Up to `count` distinct texts a person might type for `text`, none equal to it: the bare
    title first, then random runs of its words and the title with a word dropped."""
    title = bare_title(text)
    words = title.split()
    found = dict.fromkeys([title] if title and title != text else [])
    for _ in range(4 * count):
        if len(found) >= count or len(words) < 2:
            break
        if rng.random() < 0.5:
            start = int(rng.integers(len(words)))
            end = int(rng.integers(start + 1, len(words) + 1))
            variant = " ".join(words[start:end])
        else:
            dropped = int(rng.integers(len(words)))
            variant = " ".join(w for i, w in enumerate(words) if i != dropped)
        if variant and variant != text:
            found.setdefault(variant)
    return list(found)[:count]


def augment_text(rows: PairRows, seed: int = 0, copies: int = DEFAULT_COPIES) -> PairRows:
    """The rows, then for every row with one text view and another view, up to `copies` rows
    whose text is a typed variant (same other views, same weight). Rows without a text view, or
    whose text has no variant, gain nothing."""
    rng = np.random.default_rng(seed)
    text_views = [name for name in rows.views if modality_of(name) == "text"]
    out = PairRows({name: list(column) for name, column in rows.views.items()}, list(rows.weights))
    for i in range(len(rows)):
        present = [name for name in rows.views if rows.views[name][i] is not None]
        texts = [name for name in text_views if name in present]
        if len(texts) != 1 or len(present) < 2:
            continue
        [view] = texts
        for variant in typed_variants(str(rows.views[view][i]), rng, copies):
            for name, column in out.views.items():
                column.append(variant if name == view else rows.views[name][i])
            out.weights.append(rows.weights[i])
    return out
