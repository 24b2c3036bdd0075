"""The catalog softmax: user and history queries ranked against every film in training."""

from __future__ import annotations

import numpy as np
import pytest

from jointspace.data.pairs import PairRows
from jointspace.encoders.training.trainer import Catalog, ViewData, catalog_side


@pytest.mark.parametrize(("a", "b", "values", "expected"), [
    ("id:user", "id", 100, "b"),  # a user asks for films
    ("id", "ids", 100, "a"),  # a history asks for films
    ("id", "id:user", 100, "a"),
    ("id", "text", 100, None),  # titles keep in-batch candidates
    ("id:user", "id:item", 100, None),  # no plain `id` view: nothing says which side is the catalog
    ("id:user", "id", 30_000, None),  # over the limit
    ("id:user", "id", 0, None),
])
def test_the_catalog_is_the_plain_id_view_asked_for_by_ids(a, b, values, expected):
    assert catalog_side(a, b, values, limit=20_000) == expected


def _view(codes: list[int], index: list[list[int]]) -> ViewData:
    codes_array = np.array(codes)
    return ViewData({"index": np.array(index, np.int32)}, np.arange(len(codes)), codes_array)


def test_a_rows_mask_holds_its_querys_other_partners_and_its_bags_members_never_its_target():
    from jointspace.encoders.training.model import PairType

    # rows: (user 0, film t5), (user 0, film t6), (user 1, film t5), (user 1, film t7); a film's
    # table index is its `index`, its code numbers distinct films.
    films = _view([0, 1, 0, 2], [[5], [6], [5], [7]])
    users = _view([0, 0, 1, 1], [[1], [1], [2], [2]])
    pair = PairType("id:user", "id", "id", "id", catalog="b")
    catalog = Catalog.of(pair, {"id:user": users, "id": films}, np.arange(4))
    assert catalog.arrays["index"][:, 0].tolist() == [5, 6, 7]  # one candidate per distinct film
    terms = catalog.terms(users.codes, np.arange(4), bags=None)
    assert terms["catalog_target"].tolist() == [0, 1, 0, 2]
    assert terms["catalog_mask"].tolist() == [[False, True, False],  # user 0's other film is no negative
                                              [True, False, False],
                                              [False, False, True],
                                              [True, False, False]]
    history = np.array([[6, 7, 0], [0, 0, 0], [9, 5, 0], [5, 0, 0]])  # 0 pads, 9 is no film
    with_bags = catalog.terms(users.codes, np.arange(4), bags=history)["catalog_mask"]
    assert with_bags[0].tolist() == [False, True, True]
    assert with_bags[2].tolist() == [False, False, True]  # its own target stays its positive
    assert with_bags[3].tolist() == [True, False, False]


def test_the_catalog_loss_is_the_full_softmax_over_the_unmasked_candidates():
    import tensorflow as tf

    from jointspace.encoders.training.model import catalog_loss

    rng = np.random.default_rng(0)
    queries, catalog = rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(6, 3)).astype(np.float32)
    target = np.array([0, 5, 2, 2], np.int32)
    mask = rng.random((4, 6)) < 0.4
    mask[np.arange(4), target] = False
    ours = catalog_loss(tf.constant(queries), tf.constant(catalog), tf.constant(target), tf.constant(mask), 0.2)
    scores = queries.astype(np.float64) @ catalog.T / 0.2
    expected = [np.log(np.exp(row[~m]).sum()) - row[t] for row, m, t in zip(scores, mask, target)]
    assert np.allclose(ours.numpy(), expected, rtol=1e-4)


@pytest.mark.parametrize("side", ["a", "b"])
def test_a_catalog_pair_is_trained_towards_its_catalog_only(side):
    """Its loss is the weighted catalog softmax of the other side's queries: the batch's own
    films are not embedded at all (they are rows of the catalog), so no way back (film → user)."""
    import tensorflow as tf

    from jointspace.encoders.training.model import JointModel, PairType, catalog_loss

    rng = np.random.default_rng(1)
    users, catalog = (rng.normal(size=shape).astype(np.float32) for shape in [(4, 3), (6, 3)])
    films = rng.normal(size=(4, 3)).astype(np.float32)
    towers = {"user": tf.keras.layers.Lambda(lambda x: x), "film": tf.keras.layers.Lambda(lambda x: 2.0 * x)}
    pair = (PairType("id:user", "id", "user", "film", catalog="b") if side == "b"
            else PairType("id", "id:user", "film", "user", catalog="a"))
    batch = {"weight": tf.constant([1.0, 0.5, 2.0, 1.0]), "catalog_target": tf.constant([0, 5, 2, 2], tf.int32),
             "catalog_mask": tf.constant(rng.random((4, 6)) < 0.3), "codes_a": tf.range(4), "codes_b": tf.range(4),
             "catalog": catalog, **({"a": users, "b": films} if side == "b" else {"a": films, "b": users})}
    expected = tf.reduce_sum(batch["weight"] * catalog_loss(users, 2.0 * catalog, batch["catalog_target"],
                                                           batch["catalog_mask"], 0.2))
    model = JointModel(towers, temperature=0.2)
    assert np.isclose(model.pair_loss(pair, batch).numpy(), expected.numpy() / 4)


def test_training_ranks_users_against_every_film_and_still_validates():
    """A real run on rows with users and histories: the catalog pairs train and validate."""
    from jointspace.encoders.training.config import TrainConfig
    from jointspace.encoders.training.trainer import train

    rng = np.random.default_rng(3)
    views: dict[str, list] = {"id:user": [], "id": [], "ids": []}
    for user in range(40):
        films = [f"m{f}" for f in rng.choice(60, 8, replace=False)]
        for i, film in enumerate(films):
            for query, value in [("id:user", f"u{user}")] + ([("ids", films[:i])] if i else []):
                for view in views:
                    views[view].append(value if view == query else film if view == "id" else None)
    rows = PairRows(views, [1.0] * len(views["id"]))
    steps: list[tuple[int, int]] = []
    trained = train(rows, TrainConfig(dim=8, epochs=2, batch_size=32, catalog_batch_size=64, patience=None),
                    on_step=lambda done, examples: steps.append((done, examples)))
    # every pair type here is a catalog pair: its batches are catalog_batch_size rows, not batch_size
    assert steps and all(examples == 64 * done for done, examples in steps)
    assert {p.name: p.catalog for p in trained.pair_types} == {"id=id:user": "a", "id=ids": "a"}
    assert set(trained.metrics) == {"id->id:user", "id:user->id", "ids->id"}  # bags are never candidates
    off = train(rows, TrainConfig(dim=8, epochs=1, batch_size=32, patience=None, catalog_softmax_max=0))
    assert all(p.catalog is None for p in off.pair_types)
