"""Training the joint model on pair rows.

The loop is our own rather than `model.fit` because one step trains one pair type, and pair types
have different towers and input shapes: each gets its own compiled step, and batches of all pair
types are interleaved at random within an epoch in proportion to their size.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp

from jointspace.core.errors import InvalidInput
from jointspace.core.progress import Progress, log
from jointspace.core.retrieval_metrics import Trials, vector_metrics
from jointspace.core.sparse import item_matrix, pair_matrix
from jointspace.data.pairs import PairRows, modality_of
from jointspace.data.text_augment import augment_text
from jointspace.encoders import registry
from jointspace.encoders.base import Arrays, Encoder, tf
from jointspace.encoders.training.config import AUTO_STEPS, STOPPED_AUTO_EPOCHS, TrainConfig
from jointspace.encoders.training.early_stopping import SCORE_KS, EarlyStopping, Verdict, validation_score
from jointspace.encoders.training.model import JointModel, PairType
from jointspace.encoders.training.optimizers import LazyAdam
from jointspace.encoders.training.tensorboard import ScalarLog
from jointspace.encoders.training.weight_average import WeightAverage, allowed_shortfall, average_start

MIN_AUTO_EPOCHS, MAX_AUTO_EPOCHS = 3, 300
VALIDATION_STEPS = 100  # at least this many steps between two validations for early stopping


MAX_AUTO_DIM = 128


def auto_dim(num_values: int, id_table: bool = True) -> int:
    """D ≈ 2√(distinct values) when the model has an id table, the fourth root when every tower
    reads content (audio, text); a multiple of 8, from 8 to MAX_AUTO_DIM.

    An id table learns one row per value, and the fourth root, the common rule of thumb, picked 8
    for MovieLens-100K's 4,300 users, films and titles, where 64 served users' unseen films far
    better, on the real ratings and on the generated ones, and since the catalog softmax 96 and
    128 better again at top 100 than 64 (docs/benchmarks.md, "Dimension"). Content towers share
    their weights across values: on FSDD's 2,510 clips and digit words the square root's 48 held
    a new voice's recall@1 well below the fourth root's 8 (docs/benchmarks.md, "Held-out-speaker
    quality"). The cap bounds the tables and the index of a large catalog: `tune-dim` measures
    past it."""
    root = 2 * num_values**0.5 if id_table else num_values**0.25
    return min(MAX_AUTO_DIM, max(8, 8 * round(root / 8)))


def encoders_dim(encoders: dict[str, Encoder]) -> int:
    """`auto_dim` of these encoders' distinct values."""
    return auto_dim(sum(e.num_values() for e in encoders.values()), "id" in encoders)


@dataclass
class ViewData:
    """One view's prepared arrays for the rows that have it. `position[row]` indexes the arrays
    (-1 where the row lacks the view); `codes[row]` numbers distinct values, so equal values get
    equal codes (for accidental hits and for relevance in evaluation)."""

    arrays: Arrays
    position: np.ndarray
    codes: np.ndarray

    def take(self, rows: np.ndarray) -> Arrays:
        at = self.position[rows]
        return {k: v[at] for k, v in self.arrays.items()}


@dataclass
class TrainedModel:
    encoders: dict[str, Encoder]
    towers: dict[str, tf.keras.layers.Layer]
    pair_types: list[PairType]
    dim: int
    config: TrainConfig
    metrics: dict[str, dict[str, float]]
    history: list[float]
    weights: str = ""  # which weights the run returns: "epoch 7", or "mean of epochs 6-12" (weight_average.py)


def _value_key(value: Any) -> str:
    return "\x1f".join(value) if isinstance(value, list) else str(value)


def _view_data(encoder: Encoder, view: str, values: list[Any]) -> ViewData:
    present = np.array([v is not None for v in values])
    rows = np.flatnonzero(present)
    position = np.full(len(values), -1, np.int64)
    position[rows] = np.arange(len(rows))
    arrays = encoder.prepare(modality_of(view), [values[i] for i in rows])
    codes = np.full(len(values), -1, np.int64)
    # An object array: a fixed-width string array makes every value as wide as the longest one.
    keys = np.array([_value_key(values[i]) for i in rows], dtype=object)
    _, codes[rows] = np.unique(keys, return_inverse=True)
    return ViewData(arrays, position, codes)


def _make_encoders(rows: PairRows, views: set[str], config: TrainConfig) -> dict[str, Encoder]:
    encoders: dict[str, Encoder] = {}
    values: dict[str, list[Any]] = {}
    for view in sorted(views):
        plugin = registry.for_modality(modality_of(view))
        if plugin.name not in encoders:
            encoders[plugin.name] = plugin.encoder_class(config.encoder_settings.get(plugin.name))
        values.setdefault(plugin.name, []).extend(v for v in rows.views[view] if v is not None)
    for name, encoder in encoders.items():
        encoder.adapt(values[name])
    return encoders


def log_frequencies(codes: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Per row, the log of its value's share of `rows` (the value's in-batch sampling
    probability when batches are drawn from `rows`); 0 for rows outside them."""
    counts = np.bincount(codes[rows], minlength=int(codes.max()) + 1)
    out = np.zeros(len(codes), np.float32)
    out[rows] = np.log(counts[codes[rows]] / len(rows))
    return out


def _bag_side(a: str, b: str) -> str | None:
    """Which view of a pair is a bag of the other's ids (see `bag_members`)."""
    sides = {"a": (modality_of(a), modality_of(b)), "b": (modality_of(b), modality_of(a))}
    return next((side for side, kinds in sides.items() if kinds == ("ids", "id")), None)


def catalog_side(a: str, b: str, catalog_values: int, limit: int) -> str | None:
    """Which view of a pair is the catalog that the other view's queries are ranked against in
    full (the catalog softmax), or None (in-batch candidates both ways).

    The catalog is the items a recommender shows: the plain `id` view, asked for by a user, a
    history or another id view, when it has at most `limit` distinct values (`catalog_values`). In-batch
    candidates are drawn by popularity, so the items a batch rarely holds are never pushed down
    and crowd a user's top 100; ranking against every item costs a [batch, items] product per
    step, which bounds `limit`. The other direction (items asking for users) stays in-batch."""
    for side, view, other in (("b", b, a), ("a", a, b)):
        if view == "id" and other != view and modality_of(other) in ("id", "ids") and 0 < catalog_values <= limit:
            return side
    return None


@dataclass
class Catalog:
    """A pair's catalog side (`catalog_side`): every distinct value its training rows hold there,
    each a candidate of the other side's queries."""

    arrays: Arrays  # the candidates' prepared values, one row each
    position: np.ndarray  # per row: its catalog value's candidate number (-1 outside the pair's rows)
    partners: sp.csr_matrix  # query codes × candidates: paired by a training row
    by_table_index: np.ndarray  # an id's table index -> its candidate number, -1 if none

    @classmethod
    def of(cls, pair: PairType, data: dict[str, ViewData], rows: np.ndarray) -> Catalog:
        side, query = (data[pair.b], data[pair.a]) if pair.catalog == "b" else (data[pair.a], data[pair.b])
        codes, first = np.unique(side.codes[rows], return_index=True)
        position = np.full(len(side.codes), -1, np.int64)
        position[rows] = np.searchsorted(codes, side.codes[rows])
        partners = pair_matrix(query.codes[rows], position[rows], (int(query.codes.max()) + 1, len(codes)),
                               binary=True)
        arrays = side.take(rows[first])
        table = arrays["index"][:, 0]
        by_table_index = np.full(int(table.max()) + 1, -1, np.int64)
        by_table_index[table] = np.arange(len(table))
        return cls(arrays, position, partners, by_table_index)

    def terms(self, query_codes: np.ndarray, rows: np.ndarray, bags: np.ndarray | None) -> dict[str, Any]:
        """A batch's catalog, each row's target among it, and the candidates left out of each
        row's softmax: the query's other training partners and, for a history, its own ids
        (neither is shown to it when serving: `exclude_query_ids`, `seen_ids`)."""
        target = self.position[rows]
        mask = self.partners[query_codes].toarray() > 0
        if bags is not None:
            known = (bags > 0) & (bags < len(self.by_table_index))
            member = np.where(known, self.by_table_index[np.where(known, bags, 0)], -1)
            at, slot = np.nonzero(member >= 0)
            mask[at, member[at, slot]] = True
        mask[np.arange(len(rows)), target] = False
        return {"catalog": self.arrays, "catalog_target": target.astype(np.int32), "catalog_mask": mask}


def _batch(pair: PairType, data: dict[str, ViewData], weights: np.ndarray, rows: np.ndarray,
           log_q: tuple[np.ndarray, np.ndarray] | None = None, catalog: Catalog | None = None) -> dict:
    query = "a" if pair.catalog == "b" else "b"
    # A catalog pair embeds its query side only: its targets are rows of the catalog.
    sides = ("a", "b") if catalog is None else (query,)
    batch: dict[str, Any] = {side: data[getattr(pair, side)].take(rows) for side in sides}
    batch.update(codes_a=data[pair.a].codes[rows], codes_b=data[pair.b].codes[rows], weight=weights[rows])
    if log_q is not None:
        batch["log_q_a"], batch["log_q_b"] = log_q[0][rows], log_q[1][rows]
    if catalog is not None:  # the catalog's mask also leaves out a bag's members
        batch.update(catalog.terms(batch[f"codes_{query}"], rows,
                                   batch[query]["index"] if pair.bags == query else None))
    elif pair.bags == "a":
        batch["members"] = bag_members(batch["a"]["index"], batch["b"]["index"])
    elif pair.bags == "b":
        batch["members"] = bag_members(batch["b"]["index"], batch["a"]["index"]).T
    return batch


def bag_members(bags: np.ndarray, items: np.ndarray) -> np.ndarray:
    """[batch, batch]: True where row j's item is one of row i's bag (table indices, 0 = pad).

    A history should not be trained to retrieve its own films: they are never recommended to
    it (`exclude_query_ids`), so as negatives they push the history away from its own tastes,
    and as positives they would teach nothing the service shows."""
    item = items[:, 0]
    members = (bags[:, :, None] == item[None, None, :]).any(axis=1)
    members &= item[None, :] != 0
    np.fill_diagonal(members, False)
    return members


def _batch_counts(pair_rows: list[np.ndarray], batch_sizes: list[int]) -> list[int]:
    """Batches per epoch of each pair type: its own share, but at least half of an equal share.
    A small pair type (600 spoken clips beside 100,000 watch histories) would otherwise get a
    handful of steps per epoch and never be learnt; its rows are then cycled more than once."""
    own = [max(len(rows) // size, 1) for rows, size in zip(pair_rows, batch_sizes)]
    floor = sum(own) // (2 * len(pair_rows))
    return [max(count, floor) for count in own]


def auto_epochs(batches_per_epoch: int, early_stopping: bool = False) -> int:
    """Epochs enough for AUTO_STEPS optimizer steps. What a model learns depends on the steps it
    takes, not on the passes over the data: 30 epochs of 600 clips (120 steps) left a held-out
    voice's recall@1 far below what 120 epochs (480 steps) of the same clips reached. With early
    stopping, at least STOPPED_AUTO_EPOCHS, and validation says when to stop: on MovieLens-like
    ratings, users' unseen films kept improving for 7 to 10 passes, where the step rule gave 3."""
    least = STOPPED_AUTO_EPOCHS if early_stopping else MIN_AUTO_EPOCHS
    return min(max(-(-AUTO_STEPS // max(batches_per_epoch, 1)), least), MAX_AUTO_EPOCHS)


Batches = list[tuple[int, np.ndarray]]  # (pair type, rows) per step


class Distribution(Protocol):
    """What the loop asks of a tf.distribute strategy (training/distributed.py): the rows a
    process takes of each batch, and the step as it runs there. The caller holds the scope."""

    def shard_batches(self, batches: Batches) -> Batches: ...

    def step(self, update: Callable[[dict], tf.Tensor]) -> Callable[[dict], tf.Tensor]: ...


def _epoch_batches(pair_rows: list[np.ndarray], batch_sizes: list[int], rng: np.random.Generator) -> Batches:
    """One epoch's (pair type, rows) batches in random order (see `_batch_counts`)."""
    batches = []
    counts = _batch_counts(pair_rows, batch_sizes)
    for index, (rows, count, batch_size) in enumerate(zip(pair_rows, counts, batch_sizes)):
        passes = -(-count * batch_size // max(len(rows), 1))
        order = np.concatenate([rng.permutation(rows) for _ in range(passes)])
        size = min(batch_size, len(rows))
        batches += [(index, order[s * size : (s + 1) * size]) for s in range(count)]
    rng.shuffle(batches)
    return [(i, b) for i, b in batches if len(b) >= 2]


def check_steps(pair_rows: list[np.ndarray], batch_sizes: list[int], rows: int, held_out: int) -> None:
    """Refuse a run that would take no step (one row, a batch of one, every row held out): it
    would write an untrained model as if it were trained. A step needs two rows of one pair type
    (each row's negatives are the batch's other rows)."""
    if any(size >= 2 and len(members) >= 2 for members, size in zip(pair_rows, batch_sizes)):
        return
    raise InvalidInput(f"no training step: {rows - held_out} of {rows} rows left for training after "
                       f"holding out {held_out} for validation, batch size {min(batch_sizes)}; a step needs a "
                       f"batch of at least 2 rows of one pair type")


def check_loss(loss: float, epoch: int, step: int) -> None:
    """A non-finite loss means the weights are (or are about to be) NaN: every vector of such a
    model is NaN, and it would score and serve as if it were fine."""
    if not math.isfinite(loss):
        raise InvalidInput(f"training diverged: the loss became {loss} at epoch {epoch}, step {step}; "
                           f"lower --learning-rate, raise --temperature or check the rows' weights")


def check_finite_weights(model: JointModel) -> None:
    """The last step's update is never seen by a loss: check the weights it left."""
    if not all(bool(tf.reduce_all(tf.math.is_finite(v))) for v in model.trainable_variables):
        raise InvalidInput("training diverged: the last step left non-finite weights; "
                           "lower --learning-rate or raise --temperature")


def _make_step(model: JointModel, pair: PairType, optimizer: Any,
               distribution: Distribution | None = None) -> Callable[[dict], tf.Tensor]:
    towers = {pair.encoder_a, pair.encoder_b}
    variables = [v for name in sorted(towers) for v in model.towers[name].trainable_variables]

    def step(batch: dict) -> tf.Tensor:
        loss, gradients = model.pair_gradients(pair, batch, variables)
        optimizer.apply_gradients(zip(gradients, variables))
        return loss

    return tf.function(step, reduce_retracing=True) if distribution is None else distribution.step(step)


def embed_arrays(tower: tf.keras.layers.Layer, arrays: Arrays, batch_size: int = 1024) -> np.ndarray:
    """Unit vectors for prepared arrays, in batches to bound memory."""
    count = len(next(iter(arrays.values())))
    chunks = [
        tower({k: v[start : start + batch_size] for k, v in arrays.items()}, training=False).numpy()
        for start in range(0, count, batch_size)
    ]
    return np.concatenate(chunks).astype(np.float32)


def validation_metrics(
    model: JointModel, pairs: list[PairType], data: dict[str, ViewData], val_rows: np.ndarray
) -> dict[str, dict[str, float]]:
    """For each pair type in both directions: held-out rows' queries against every distinct value
    of the other view. Where the service leaves seen items out (an id or a history asking for
    ids: `exclude_query_ids`, `seen_ids`), so does validation: the query's training partners and
    a history's own ids are not shown, and the held-out rows' partners are relevant. Elsewhere a
    candidate is relevant if any row pairs it with the query. A bag (a history) is only ever a
    query, never an indexed item, so no direction ranks bags: film → history ranked every distinct
    history of the training rows (tens of thousands), cost more than the rest of validation
    together, and its near-zero recall, weighted by its pairs, all but made the score."""
    results = {}
    training = np.ones(len(next(iter(data.values())).codes), bool)
    training[val_rows] = False
    for pair in pairs:
        for q_view, q_enc, c_view, c_enc, bag in (
            (pair.a, pair.encoder_a, pair.b, pair.encoder_b, pair.bags == "a"),
            (pair.b, pair.encoder_b, pair.a, pair.encoder_a, pair.bags == "b"),
        ):
            if modality_of(c_view) == "ids":
                continue
            rows = np.flatnonzero((data[q_view].codes >= 0) & (data[c_view].codes >= 0))
            queries = np.intersect1d(val_rows, rows)
            if len(queries) == 0:
                continue
            c_codes, first = np.unique(data[c_view].codes[rows], return_index=True)
            seen_removed = modality_of(c_view) == "id" and modality_of(q_view) in ("id", "ids")
            partners = _partners(data[q_view].codes, np.searchsorted(c_codes, data[c_view].codes[rows]),
                                 rows, ~training[rows] if seen_removed else np.ones(len(rows), bool))
            q_codes = data[q_view].codes[queries]
            trials = Trials.from_relevant([partners[0].get(int(q), ()) for q in q_codes])
            seen = None
            if seen_removed:
                seen_rows = [sorted(partners[1].get(int(q), ())) for q in q_codes]
                if bag:
                    members = _bag_candidates(data[q_view].take(queries)["index"],
                                              data[c_view].take(rows[first])["index"][:, 0])
                    seen_rows = [s + m for s, m in zip(seen_rows, members)]
                seen = item_matrix([np.array(r, np.int64) for r in seen_rows], len(c_codes))
            q_vectors = embed_arrays(model.towers[q_enc], data[q_view].take(queries))
            c_vectors = embed_arrays(model.towers[c_enc], data[c_view].take(rows[first]))
            results[f"{q_view}->{c_view}"] = {**vector_metrics(q_vectors, c_vectors, trials, seen, SCORE_KS),
                                               "pairs": float(len(trials.query)),
                                               "candidates": float(len(c_codes))}
    return results


def _partners(q_codes: np.ndarray, candidates: np.ndarray, rows: np.ndarray,
              relevant: np.ndarray) -> tuple[dict[int, set[int]], dict[int, set[int]]]:
    """Per query value, the candidates that `rows[relevant]` pair it with, and those the other
    rows do."""
    found: tuple[dict[int, set[int]], dict[int, set[int]]] = ({}, {})
    for q, c, counted in zip(q_codes[rows].tolist(), candidates.tolist(), relevant.tolist()):
        found[0 if counted else 1].setdefault(q, set()).add(c)
    return found


def _bag_candidates(bags: np.ndarray, candidates: np.ndarray) -> list[list[int]]:
    """Per bag, the candidates (by position) whose table index is one of its members."""
    position = {int(t): i for i, t in enumerate(candidates.tolist())}
    return [[position[t] for t in bag if t in position] for bag in bags.tolist()]


def _with_typed_texts(rows: PairRows, train_rows: np.ndarray, seed: int) -> tuple[PairRows, np.ndarray]:
    """The rows with typed variants of the training rows' texts appended (data/text_augment.py),
    and the training rows with them: held-out rows are never augmented, so no variant of a
    validation text is trained on."""
    training = PairRows({name: [column[i] for i in train_rows.tolist()] for name, column in rows.views.items()},
                        [rows.weights[i] for i in train_rows.tolist()])
    added = augment_text(training, seed)
    out = PairRows({name: column + added.views[name][len(training):] for name, column in rows.views.items()},
                   rows.weights + added.weights[len(training):])
    return out, np.concatenate([train_rows, np.arange(len(rows), len(out))])


def train(rows: PairRows, config: TrainConfig, on_step: Callable[[int, int], None] | None = None,
          distribution: Distribution | None = None) -> TrainedModel:
    """Train and validate. `on_step(steps, examples)`, if given, is called after every step
    with the totals so far (the training benchmark times steps with it); examples are this
    process's own. `distribution`: this process's part in a cluster (training/distributed.py),
    called inside its strategy's scope."""
    rng = np.random.default_rng(config.seed)
    # Python's and NumPy's global generators too, not only TensorFlow's: Keras draws the seeds
    # of unseeded initializers from Python's `random`, so the same seed gave different models.
    tf.keras.utils.set_random_seed(config.seed)
    order = rng.permutation(len(rows))
    held_out = int(len(rows) * config.validation_split)
    # Validation scores a sample of the held-out rows; the rest are trained on: a row held out
    # and never scored would be one less to learn from, which costs users' top 100 most.
    sample = rng.permutation(order[:held_out])
    val_rows = np.sort(sample[: config.validation_queries])
    train_rows = np.concatenate([order[held_out:], sample[config.validation_queries:]])
    val_count = len(val_rows)
    if config.augment_text:
        rows, train_rows = _with_typed_texts(rows, train_rows, config.seed)
    view_pairs = rows.pair_types(config.pairs)
    views = {v for pair in view_pairs for v in pair}
    encoders = _make_encoders(rows, views, config)
    num_values = sum(e.num_values() for e in encoders.values())
    dim = config.dim or encoders_dim(encoders)
    log(f"training: {len(rows)} rows, pair types {', '.join(f'{a}={b}' for a, b in view_pairs)}, "
        f"{num_values} distinct values, dim {dim}{'' if config.dim else ' (auto)'}")
    catalog_values = len({v for v in rows.views["id"] if v is not None}) if "id" in views else 0
    pairs = []
    for a, b in view_pairs:
        name = f"{a}={b}"
        pairs.append(PairType(a, b, registry.for_modality(modality_of(a)).name,
                              registry.for_modality(modality_of(b)).name,
                              config.pair_weights.get(name, 1.0),
                              bags=_bag_side(a, b) if config.mask_bag_members else None,
                              catalog=catalog_side(a, b, catalog_values, config.catalog_softmax_max)))
    unknown = set(config.pair_weights) - {p.name for p in pairs}
    if unknown:
        raise InvalidInput(f"pair weights name unknown pair types: {', '.join(sorted(unknown))}")

    with Progress(len(views), "preparing views", unit="view") as progress:
        data = {}
        for view in sorted(views):
            data[view] = _view_data(encoders[registry.for_modality(modality_of(view)).name],
                                    view, rows.views[view])
            progress.update()
    for encoder in encoders.values():
        encoder.dim = dim
    towers = {name: encoder.build_tower() for name, encoder in encoders.items()}
    model = JointModel(towers, config.temperature, config.catalog_temperature)
    optimizer = LazyAdam(config.learning_rate)

    weights = np.asarray(rows.weights, np.float32)
    pair_rows = [
        train_rows[(data[p.a].position[train_rows] >= 0) & (data[p.b].position[train_rows] >= 0)]
        for p in pairs
    ]
    batch_sizes = [config.catalog_batch_size if p.catalog else config.batch_size for p in pairs]
    check_steps(pair_rows, batch_sizes, len(rows), val_count)
    log_q = [(config.logq * log_frequencies(data[p.a].codes, members),
              config.logq * log_frequencies(data[p.b].codes, members)) if config.logq else None
             for p, members in zip(pairs, pair_rows)]
    catalogs = [Catalog.of(p, data, members) if p.catalog else None for p, members in zip(pairs, pair_rows)]
    for pair, members, catalog in zip(pairs, pair_rows, catalogs):  # every tower's variables before tracing
        model.pair_loss(pair, _batch(pair, data, weights, members[:2], catalog=catalog), training=False)
    optimizer.build(model.trainable_variables)  # one optimizer, steps update disjoint subsets
    steps = [_make_step(model, p, optimizer, distribution) for p in pairs]
    epochs = config.epochs
    if epochs is None:
        epochs = auto_epochs(sum(_batch_counts(pair_rows, batch_sizes)), bool(config.patience and val_count))
        config = replace(config, epochs=epochs)
        log(f"training for up to {epochs} epochs (auto: at least {AUTO_STEPS} steps)")
    history = []
    scalars = ScalarLog(config.logdir)
    stopping = (EarlyStopping(model, config.patience, config.learning_rate_cuts) if config.patience and val_count
                else None)
    # Without validation nothing could tell whether the mean is better, so it is never taken.
    average = WeightAverage(model, average_start(epochs, config.average_from)) if stopping is not None else None
    validate_every = -(-VALIDATION_STEPS // sum(_batch_counts(pair_rows, batch_sizes)))
    done_steps = done_examples = 0
    for epoch in range(1, epochs + 1):
        batches = _epoch_batches(pair_rows, batch_sizes, rng)
        if distribution is not None:
            batches = distribution.shard_batches(batches)
        if config.max_steps is not None:
            batches = batches[: config.max_steps - done_steps]
        total = 0.0
        progress = Progress(len(batches), f"epoch {epoch}/{config.epochs}", unit="batch")
        for index, batch_rows in batches:
            loss = float(steps[index](_batch(pairs[index], data, weights, batch_rows, log_q[index],
                                             catalogs[index])))
            check_loss(loss, epoch, done_steps + 1)
            total += loss
            progress.update(loss=f"{loss:.3f}")
            done_steps, done_examples = done_steps + 1, done_examples + len(batch_rows)
            if on_step is not None:
                on_step(done_steps, done_examples)
        history.append(total / max(len(batches), 1))
        progress.close(loss=f"{history[-1]:.4f}")
        if average is not None:
            average.add(epoch)
        scalars.epoch(epoch, history[-1])
        last = epoch == config.epochs or done_steps == config.max_steps
        if stopping is not None and (epoch % validate_every == 0 or last):
            metrics = validation_metrics(model, pairs, data, val_rows)
            scalars.validation(epoch, metrics)
            verdict = stopping.check(epoch, metrics)
            if verdict is Verdict.CUT:
                stopping.cut(optimizer)
                log(f"no better validation recall for {config.patience} validations after epoch {epoch}: back to "
                    f"epoch {stopping.best_epoch}'s weights, learning rate {float(optimizer.learning_rate):.2g}")
            elif verdict is Verdict.STOP:
                log(f"early stop after epoch {epoch}: no better validation recall for "
                    f"{config.patience} validations; keeping epoch {stopping.best_epoch}")
                break
        if last:
            break

    if stopping is not None:
        stopping.restore()
        metrics = stopping.best_metrics
        kept = f"epoch {stopping.best_epoch}"
        if average is not None and average.count > 1:
            averaged = average.keep_unless_worse(metrics, lambda: validation_metrics(model, pairs, data, val_rows))
            if averaged is not None:
                metrics, kept = averaged, average.describe()
            log(f"weights kept: {kept} (validation: the {average.describe()} {validation_score(average.scored):.4f}, "
                f"epoch {stopping.best_epoch} {stopping.best_score:.4f}; the mean is kept down to "
                f"{allowed_shortfall(stopping.best_metrics):.4f} below the best epoch)")
    else:
        metrics = validation_metrics(model, pairs, data, val_rows) if val_count else {}
        scalars.validation(epochs, metrics)
        kept = f"epoch {len(history)}"
    check_finite_weights(model)
    for direction, values in metrics.items():
        log(f"validation {direction}: " + ", ".join(f"{k} {v:.3f}" for k, v in values.items()
                                                     if k.startswith("recall@") or k == "mrr"))
    return TrainedModel(encoders, towers, pairs, dim, config, metrics, history, kept)


def train_members(rows: PairRows, config: TrainConfig, members: int = 1) -> list[TrainedModel]:
    """`members` models that differ only in their seed (initial weights, validation split, batch
    order), for `export_model` to serve as one.

    Two seeds of the same code score a held-out voice differently on spoken digits: a model's
    errors on what it has never heard are partly the luck of its draw, and the mean of several
    draws' scores cancels some of that luck (docs/benchmarks.md, "Held-out-speaker quality": the
    spread between seeds, and three members against one), at `members` times the training cost
    and the model work of a query."""
    if members < 1:
        raise InvalidInput(f"an ensemble needs at least one member, not {members}")
    trained = []
    for member in range(members):
        if members > 1:
            log(f"ensemble member {member + 1}/{members} (seed {config.seed + member})")
        trained.append(train(rows, replace(config, seed=config.seed + member)))
    return trained
