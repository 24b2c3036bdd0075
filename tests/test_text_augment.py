"""Typed variants of text views (jointspace/data/text_augment.py): bare titles, runs of words and
dropped words, added beside the original pair rows."""

from __future__ import annotations

import numpy as np

from jointspace.data.pairs import PairRows
from jointspace.data.text_augment import augment_text, bare_title, typed_variants


def test_bare_titles_drop_years_series_and_genres_and_put_the_article_first():
    assert bare_title("Godfather, The (1972) | crime drama") == "The Godfather"
    assert bare_title("The Hunger Games (The Hunger Games, #1) | Suzanne Collins") == "The Hunger Games"
    assert bare_title("(500) Days of Summer (2009)") == "(500) Days of Summer"
    assert bare_title("seven") == "seven"


def test_variants_are_typed_forms_never_the_text_itself():
    text = "Star Wars: A New Hope (1977) | action adventure"
    variants = typed_variants(text, np.random.default_rng(0), 3)
    assert variants[0] == "Star Wars: A New Hope" and len(set(variants)) == len(variants) <= 3
    words = set("Star Wars: A New Hope".split())
    assert all(v != text and set(v.split()) <= words for v in variants)
    assert typed_variants("seven", np.random.default_rng(0)) == []  # nothing shorter to type


def test_augmented_rows_keep_the_originals_and_the_other_views():
    rows = PairRows({"id": ["m:1", "m:2", "u:3"], "text": ["Heat (1995) | action crime", "seven", None],
                     "ids": [None, None, ["m:1"]]}, [1.0, 2.0, 1.0])
    out = augment_text(rows, seed=1, copies=2)
    assert [out.views[n][:3] for n in rows.views] == [rows.views[n] for n in rows.views]
    added = range(3, len(out))
    assert len(added) >= 1
    assert all(out.views["id"][i] == "m:1" and out.views["text"][i] != rows.views["text"][0]
               and out.weights[i] == 1.0 and out.views["ids"][i] is None for i in added)
    assert out.views["text"][3] == "Heat"
