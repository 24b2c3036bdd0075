"""Training pieces against real TensorFlow: the dimension rule, the accidental-hit mask, pair-type
balancing, and that an exported model gives the same vectors as the trained towers."""

from __future__ import annotations

import numpy as np
import pytest

from jointspace.encoders.training.trainer import _epoch_batches, auto_dim


@pytest.mark.parametrize("values, dim", [(1, 8), (10, 8), (144, 24), (1_024, 64), (4306, 128), (4_096, 128),
                                         (100_000_000, 128)])
def test_auto_dim_is_twice_the_square_root_rounded_to_eight_and_capped(values, dim):
    assert auto_dim(values) == dim


@pytest.mark.parametrize("values, dim", [(10, 8), (610, 8), (2510, 8), (100_000, 16), (10**8, 96)])
def test_without_an_id_table_auto_dim_is_the_fourth_root(values, dim):
    """Audio and text towers share their weights across values: no row per value to size."""
    assert auto_dim(values, id_table=False) == dim


def test_score_mask_hides_repeats_on_either_side_but_keeps_the_positive():
    from jointspace.encoders.training.model import score_mask

    codes_a = np.array([0, 1, 2, 3])   # e.g. unique clips
    codes_b = np.array([7, 7, 8, 9])   # words: rows 0 and 1 say the same word
    mask = score_mask(codes_a, codes_b).numpy()
    assert mask.diagonal().all()
    assert not mask[0, 1] and not mask[1, 0]
    assert mask[0, 2] and mask[2, 3]


def test_small_pair_types_get_a_fair_share_of_batches():
    rng = np.random.default_rng(0)
    big, small = np.arange(10_000), np.arange(10_000, 10_100)
    batches = _epoch_batches([big, small], [100, 100], rng)
    counts = np.bincount([i for i, _ in batches])
    assert counts[0] == 100 and counts[1] == 25  # at least half of an equal share
    assert all(len(b) == 100 for _, b in batches)
    assert set(np.concatenate([b for i, b in batches if i == 1])) == set(small)


def test_training_lowers_the_loss_and_reports_validation(built):
    import json

    history = built.history
    assert len(history) == 4  # the fixture's epochs
    assert all(later < earlier for earlier, later in zip(history, history[1:])), history
    assert history[-1] < 0.95 * history[0], history
    manifest = json.loads((built.model / "manifest.json").read_text())
    assert manifest["training"]["final_loss"] == pytest.approx(history[-1])
    assert manifest["dim"] == 16
    assert set(manifest["encoders"]) == {"id", "text", "audio"}
    assert sorted(manifest["pair_types"]) == ["audio=text", "id=ids", "id=text"]
    assert {"audio->text", "text->audio", "ids->id"} <= set(manifest["metrics"])
    assert 0.0 <= manifest["metrics"]["audio->text"]["recall@1"] <= 1.0
    assert manifest["encoders"]["audio"]["audio"]["sample_rate"] == 16000


def test_the_trained_model_names_the_word_of_its_training_clips_well_above_chance(built):
    """On the clips it was trained on, the spoken digit's word must be the nearest of the ten far
    more often than the one time in ten of a guess: an untrained or broken model stays near it."""
    from jointspace.data.fsdd import DIGIT_WORDS
    from jointspace.encoders.inference import EncoderSet

    encoders = EncoderSet(built.model)
    sounds = encoders.embed("audio", [str(c.path) for c in built.train_clips])
    words = encoders.embed("text", list(DIGIT_WORDS))
    nearest = np.argmax(sounds @ words.T, axis=1)
    recall_at_1 = float(np.mean(nearest == [c.digit for c in built.train_clips]))
    chance = 1 / len(DIGIT_WORDS)
    assert recall_at_1 >= 3 * chance, recall_at_1


def test_exported_savedmodels_are_self_contained(built):
    """Any TensorFlow runtime can call the SavedModels with raw inputs, no jointspace code."""
    import tensorflow as tf

    text = tf.saved_model.load(str(built.model / "text")).signatures["serving_default"]
    out = text(text=tf.constant(["seven", "Seven!", "a brand new word"]))
    vectors = out["embedding"].numpy()
    assert vectors.shape == (3, 16)
    assert np.allclose(vectors[0], vectors[1], atol=1e-6)  # same words after standardisation
    ids = tf.saved_model.load(str(built.model / "id")).signatures["serving_default"]
    out = ids(ids=tf.constant([["m:1", ""], ["m:1", "unknown"]]))
    assert out["known"].numpy().tolist() == [1, 1]
    assert np.allclose(out["embedding"].numpy()[0], out["embedding"].numpy()[1], atol=1e-6)


def test_encoder_set_matches_server_and_rejects_bad_values(built):
    from jointspace.core.errors import InvalidInput, LimitExceeded, NotFound
    from jointspace.core.limits import Limits
    from jointspace.encoders.inference import EncoderSet

    encoders = EncoderSet(built.model, Limits(max_text_chars=20, max_ids=3))
    assert encoders.embed("id", ["m:1"]).shape == (1, 16)
    with pytest.raises(NotFound, match="'zzz' is not in"):
        encoders.embed("id", ["zzz"])
    with pytest.raises(LimitExceeded, match="text"):
        encoders.embed("text", ["x" * 21])
    with pytest.raises(LimitExceeded, match="ids"):
        encoders.embed("ids", [["m:1", "m:2", "m:3", "m:4"]])
    with pytest.raises(InvalidInput, match="cannot encode 'image'"):
        encoders.embed("image", ["x"])
    with pytest.raises(InvalidInput, match="expected 16 values, got 3"):
        encoders.embed("vector", [[1, 2, 3]])


def test_loss_from_one_score_matrix_equals_two_tfrs_retrieval_calls():
    """The symmetric loss reads the b → a direction off the same scores; it must be the figure
    two `tfrs.tasks.Retrieval` calls (one per direction) give, mask and weights included."""
    import tensorflow as tf
    import tensorflow_recommenders as tfrs

    from jointspace.encoders.training.model import JointModel, PairType, score_mask

    class Identity(tf.keras.layers.Layer):
        def call(self, x, training=False):
            return x

    rng = np.random.default_rng(0)
    left, right = rng.normal(size=(6, 4)).astype(np.float32), rng.normal(size=(6, 4)).astype(np.float32)
    codes_a, codes_b = np.array([0, 1, 2, 3, 4, 5]), np.array([0, 0, 1, 2, 3, 4])  # an accidental hit
    weight = rng.uniform(0.5, 2.0, 6).astype(np.float32)
    pair = PairType("x", "y", "e", "e", weight=1.5)
    batch = {"a": left, "b": right, "codes_a": codes_a, "codes_b": codes_b, "weight": weight}
    ours = JointModel({"e": Identity()}, temperature=0.2).pair_loss(pair, batch)
    task, mask = tfrs.tasks.Retrieval(temperature=0.2), score_mask(codes_a, codes_b)
    two_calls = sum(task(q, c, sample_weight=weight, compute_metrics=False, compute_batch_metrics=False,
                         score_mask=mask) for q, c in ((left, right), (right, left)))
    assert np.isclose(float(ours), 1.5 * float(two_calls) / 6, rtol=1e-5)


def _assert_step_matches_one_tape(model, pair, batch) -> list:
    """A step's loss and variable gradients equal one tape's over the whole loss; the step's
    gradients are returned."""
    import tensorflow as tf

    model.pair_loss(pair, batch)
    variables = model.trainable_variables
    with tf.GradientTape() as tape:
        expected_loss = model.pair_loss(pair, batch)
    expected = tape.gradient(expected_loss, variables)
    loss, gradients = model.pair_gradients(pair, batch, variables)
    assert float(loss) == pytest.approx(float(expected_loss), rel=1e-5)
    for ours, theirs in zip(gradients, expected):
        assert np.allclose(tf.convert_to_tensor(ours), tf.convert_to_tensor(theirs), rtol=1e-4, atol=1e-5)
    return gradients


def test_step_gradients_equal_the_tape_gradients_of_the_loss():
    """A step takes the loss's gradient inside XLA and hands it to the towers' tape; the
    variables' gradients must be those of differentiating the whole loss with one tape,
    the sparse embedding rows included."""
    import tensorflow as tf

    from jointspace.encoders.impl.ids import IdEncoder
    from jointspace.encoders.training.model import JointModel, PairType

    encoder = IdEncoder()
    encoder.adapt([f"x{i}" for i in range(50)])
    encoder.dim = 8
    model = JointModel({"id": encoder.build_tower()}, temperature=0.2)
    rng = np.random.default_rng(1)
    users, films = rng.integers(0, 50, 16), rng.integers(0, 50, 16)
    batch = {"a": encoder.prepare("id", [f"x{i}" for i in users]),
             "b": encoder.prepare("id", [f"x{i}" for i in films]),
             "codes_a": users, "codes_b": films, "weight": rng.uniform(0.5, 2, 16).astype(np.float32),
             "log_q_a": rng.uniform(-4, -1, 16).astype(np.float32),
             "log_q_b": rng.uniform(-4, -1, 16).astype(np.float32)}
    pair = PairType("id:user", "id:item", "id", "id", weight=0.7)
    gradients = _assert_step_matches_one_tape(model, pair, batch)
    assert isinstance(gradients[0], tf.IndexedSlices)  # the table's gradient stays sparse rows


def test_catalog_gradients_of_a_step_equal_the_tape_gradients_of_the_loss():
    """The catalog's embeddings join the XLA-differentiated embeddings; the variables' gradients
    must still be those of one tape over the whole loss, at the catalog's own temperature."""
    from jointspace.encoders.impl.ids import IdEncoder
    from jointspace.encoders.training.model import JointModel, PairType, catalog_loss
    from jointspace.encoders.training.trainer import Catalog, ViewData

    encoder = IdEncoder()
    encoder.adapt([f"u{i}" for i in range(20)] + [f"m{i}" for i in range(30)])
    encoder.dim = 8
    model = JointModel({"id": encoder.build_tower()}, temperature=0.2, catalog_temperature=0.5)
    rng = np.random.default_rng(2)
    users, films = rng.integers(0, 20, 16), rng.integers(0, 30, 16)
    data = {"id:user": ViewData(encoder.prepare("id", [f"u{i}" for i in users]), np.arange(16), users),
            "id": ViewData(encoder.prepare("id", [f"m{i}" for i in films]), np.arange(16), films)}
    pair = PairType("id:user", "id", "id", "id", weight=0.7, catalog="b")
    catalog = Catalog.of(pair, data, np.arange(16))
    batch = {"a": data["id:user"].arrays, "b": data["id"].arrays, "codes_a": users, "codes_b": films,
             "weight": rng.uniform(0.5, 2, 16).astype(np.float32),
             **catalog.terms(users, np.arange(16), bags=None)}
    _assert_step_matches_one_tape(model, pair, batch)
    queries, films_embedded = model.embed_pair(pair, batch, training=True)
    at_half = catalog_loss(queries, films_embedded, batch["catalog_target"], batch["catalog_mask"], 0.5)
    assert float(model.pair_loss(pair, batch)) == pytest.approx(0.7 / 16 * float(np.sum(batch["weight"] * at_half)),
                                                               rel=1e-5)


def test_prepared_id_indices_equal_the_towers_own_lookup():
    """`prepare` finds vocabulary ids without TensorFlow; pads, unknown ids (hashed buckets) and
    over-long bags (cut to their newest ids) must still land where the tower's lookup puts them."""
    from jointspace.encoders.impl.ids import IdEncoder, pad_bags, string_lookup

    encoder = IdEncoder({"max_bag": 3, "oov_buckets": 4})
    encoder.adapt(["m:1", "m:2", "m:3", ["m:4", "m:5"]])
    bags = [["m:1"], ["m:2", "new:a"], [], ["m:1", "m:2", "m:3", "m:4", "new:b"], ["new:c"]]
    lookup = string_lookup(encoder.vocabulary, encoder.oov_buckets)
    expected = lookup(pad_bags(bags, encoder.max_bag)).numpy()
    assert np.array_equal(encoder.prepare("ids", bags)["index"], expected)
    assert expected[3].tolist()[:2] == lookup(np.array(["m:3", "m:4"])).numpy().tolist()  # newest three kept
    singles = ["m:3", "unknown", "m:1"]
    assert np.array_equal(encoder.prepare("id", singles)["index"], lookup(pad_bags([[v] for v in singles])).numpy())


def test_the_same_seed_trains_the_same_model_and_another_seed_does_not():
    """`train --seed` must reproduce a model: same losses, same vectors. Keras seeds unseeded
    initializers from Python's `random`, which `tf.random.set_seed` alone leaves unseeded."""
    from jointspace.data.pairs import PairRows
    from jointspace.encoders.training.config import TrainConfig
    from jointspace.encoders.training.trainer import embed_arrays, train

    films = [f"m:{i}" for i in range(40)]
    words = ["alpha", "beta", "gamma", "delta"]
    rows = PairRows({"id": films * 2, "text": [f"{words[i % 4]} film {i % 40}" for i in range(80)]},
                    [1.0] * 80)

    def trained(seed: int) -> tuple[list[float], np.ndarray]:
        model = train(rows, TrainConfig(dim=8, epochs=2, batch_size=16, validation_split=0.0, seed=seed))
        encoder = model.encoders["id"]
        return model.history, embed_arrays(model.towers["id"], encoder.prepare("id", films))

    first_loss, first = trained(3)
    again_loss, again = trained(3)
    _, other = trained(4)
    assert first_loss == again_loss
    assert np.array_equal(first, again)
    assert not np.allclose(first, other)
