"""`bench tfrs-tutorial`: the TFRS basic-retrieval tutorial model on pair rows, judged by the same
rule as `jointspace evaluate`.

The tutorial is the first model a recommender team builds with TFRS: a user id embedding and a
film id embedding of 32, `tfrs.tasks.Retrieval` (in-batch softmax), Adagrad 0.1, batches of
8,192, a few epochs. It is trained here on the `id:user` → `id` rows of the training file and
ranked after every epoch over every value of the `id` view in both files, seen films kept and
removed, by `score_ranks`: the figures compare with `evaluate`'s rows for the same files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from jointspace.core.errors import InvalidInput
from jointspace.core.progress import log
from jointspace.core.retrieval_metrics import Trials, inner_products, score_ranks, summarize
from jointspace.core.sparse import pair_matrix
from jointspace.data.pairs import PairRows, read_pairs

USER_VIEW, FILM_VIEW = "id:user", "id"
DIM, LEARNING_RATE, BATCH_SIZE = 32, 0.1, 8192
KS = (10, 100)


def _pairs(rows: PairRows, users: dict[str, int], films: dict[str, int]) -> np.ndarray:
    """(user, film) numbers of the rows that have both views."""
    both = [(u, f) for u, f in zip(rows.views.get(USER_VIEW, ()), rows.views.get(FILM_VIEW, ()))
            if u is not None and f is not None]
    return np.array([(users[u], films[f]) for u, f in both], np.int64).reshape(-1, 2)


def run(train_file: Path, test_file: Path, epochs: int = 5, seed: int = 0) -> dict[str, Any]:
    """Per epoch, R@k with seen films kept and removed over the held-out (user, film) rows."""
    import tensorflow_recommenders as tfrs

    from jointspace.encoders.base import tf

    train_rows, test_rows = read_pairs([train_file]), read_pairs([test_file])
    if USER_VIEW not in train_rows.views or USER_VIEW not in test_rows.views:
        raise InvalidInput(f"bench tfrs-tutorial needs {USER_VIEW}={FILM_VIEW} rows in both files")
    names = {view: sorted({v for rows in (train_rows, test_rows) for v in rows.views.get(view, ()) if v is not None})
             for view in (USER_VIEW, FILM_VIEW)}
    numbers = {view: {v: i for i, v in enumerate(values)} for view, values in names.items()}
    train = _pairs(train_rows, numbers[USER_VIEW], numbers[FILM_VIEW])
    test = _pairs(test_rows, numbers[USER_VIEW], numbers[FILM_VIEW])
    users, films = np.array(names[USER_VIEW], object), np.array(names[FILM_VIEW], object)
    tf.keras.utils.set_random_seed(seed)

    def tower(vocabulary: np.ndarray) -> Any:
        return tf.keras.Sequential([tf.keras.layers.StringLookup(vocabulary=list(vocabulary), mask_token=None),
                                    tf.keras.layers.Embedding(len(vocabulary) + 1, DIM)])

    class Tutorial(tfrs.Model):
        def __init__(self) -> None:
            super().__init__()
            self.user, self.film, self.task = tower(users), tower(films), tfrs.tasks.Retrieval()

        def compute_loss(self, batch: dict[str, Any], training: bool = False) -> Any:
            return self.task(self.user(batch["user"]), self.film(batch["film"]), compute_metrics=False)

    model = Tutorial()
    model.compile(optimizer=tf.keras.optimizers.Adagrad(LEARNING_RATE))
    columns = {"user": users[train[:, 0]].astype(str), "film": films[train[:, 1]].astype(str)}
    data = (tf.data.Dataset.from_tensor_slices(columns)
            .shuffle(len(train), seed=seed, reshuffle_each_iteration=False).batch(BATCH_SIZE).cache())
    queries, query_index = np.unique(test[:, 0], return_inverse=True)
    trials = Trials(query_index.ravel(), test[:, 1], len(queries))
    seen = pair_matrix(train[:, 0], train[:, 1], (len(users), len(films)), binary=True)[queries]
    results = []
    for epoch in range(1, epochs + 1):
        model.fit(data, epochs=1, verbose=0)
        ranks = score_ranks(inner_products(model.user(users[queries].astype(str)).numpy(),
                                            model.film(films.astype(str)).numpy()),
                            trials, len(films), {"kept": None, "removed": seen})
        figures = {mode: summarize(r, trials, KS, len(films)) for mode, r in ranks.items()}
        log(f"tfrs tutorial epoch {epoch}: " + ", ".join(
            f"{mode} " + " / ".join(f"{f[f'recall@{k}']:.4f}" for k in KS) for mode, f in figures.items()))
        results.append({"epoch": epoch, **figures})
    return {"users": len(users), "films": len(films), "train_pairs": len(train), "test_pairs": len(test),
            "dim": DIM, "batch_size": BATCH_SIZE, "learning_rate": LEARNING_RATE, "epochs": results}


def table(result: dict[str, Any]) -> str:
    """One line per epoch: R@10 and R@100 with seen films kept and removed."""
    lines = [f"TFRS basic-retrieval tutorial model: {result['users']} users, {result['films']} films, "
             f"{result['train_pairs']} training and {result['test_pairs']} held-out pairs",
             f"{'epoch':>5}" + "".join(f"{f'{mode} R@{k}':>16}" for mode in ("kept", "removed") for k in KS)]
    for row in result["epochs"]:
        lines.append(f"{row['epoch']:>5}" + "".join(f"{row[mode][f'recall@{k}']:>16.4f}"
                                                    for mode in ("kept", "removed") for k in KS))
    return "\n".join(lines)
