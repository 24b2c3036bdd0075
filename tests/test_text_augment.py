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


def test_training_augments_only_the_training_rows():
    """`train --augment-text`: variants of training texts join the training rows; a held-out
    row's text never does, so validation still measures texts the model has not seen."""
    from jointspace.encoders.training.trainer import _with_typed_texts

    titles = [f"Film Number {i} Of Ours ({1990 + i}) | drama" for i in range(10)]
    rows = PairRows({"id": [f"m:{i}" for i in range(10)], "text": list(titles)}, [1.0] * 10)
    train_rows = np.array([0, 2, 4, 6, 8])
    augmented, trained = _with_typed_texts(rows, train_rows, seed=0)
    assert augmented.views["text"][:10] == titles and len(augmented) > 10
    assert trained[:5].tolist() == train_rows.tolist() and trained[5:].tolist() == list(range(10, len(augmented)))
    added_ids = set(augmented.views["id"][10:])
    assert added_ids == {f"m:{i}" for i in train_rows}  # no variant of m:1, m:3, ... (held out)
    assert "Film Number 4 Of Ours" in augmented.views["text"][10:]


def test_train_with_augmented_texts_end_to_end(tmp_path):
    """The flag through the command: a model trains and exports with the variants."""
    import json

    from jointspace.cli import main

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"id": f"m:{i}", "text": f"Title {i} Words Here ({1990 + i}) | drama"}) + "\n"
                             for i in range(40)))
    assert main(["train", str(pairs), "--out", str(tmp_path / "model"), "--dim", "8", "--epochs", "1",
                 "--batch-size", "8", "--augment-text"]) == 0
    assert (tmp_path / "model" / "manifest.json").is_file()
