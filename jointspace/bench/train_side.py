"""One side of `jointspace bench train`, run in its own process so that its peak memory is its own.

`python -m jointspace.bench.train_side SIDE DATA.npz OUT_DIR SETTINGS_JSON` trains on the
(user, film) rows in DATA.npz, times the steps after the warm-up, and writes `result.json`
(examples/second, peak RSS) and `vectors.npz` (the validation users' and every film's vectors)
to OUT_DIR. SIDE is `tfrs` (the plain TFRS loop of the TFRS basic-retrieval tutorial, as the
issue describes it) or `jointspace` (the `train` command's own code path).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import jointspace  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)

EMBED_BATCH = 65_536


class StepTimer:
    """Examples/second between the end of the warm-up steps and the end of the last step, by the
    clock and by the process's CPU time (on a machine that other jobs load, the clock's figure
    counts their time too; the CPU time's counts only this side's work)."""

    def __init__(self, warmup: int, last: int) -> None:
        self.warmup, self.last = warmup, last
        self.start: tuple[float, float, int] | None = None
        self.end: tuple[float, float, int] | None = None

    def __call__(self, steps: int, examples: int) -> None:
        if steps == self.warmup:
            self.start = (time.perf_counter(), time.process_time(), examples)
        if steps == self.last:
            self.end = (time.perf_counter(), time.process_time(), examples)

    def result(self) -> dict[str, float]:
        if self.start is None or self.end is None:
            raise RuntimeError("training ended before the timed steps were done")
        seconds, cpu_seconds, examples = (end - start for start, end in zip(self.start, self.end))
        return {"timed_seconds": seconds, "timed_cpu_seconds": cpu_seconds, "timed_examples": examples,
                "examples_per_second": examples / seconds, "examples_per_cpu_second": examples / cpu_seconds}


def _names(prefix: str, numbers: np.ndarray) -> np.ndarray:
    return np.char.add(prefix, numbers.astype(str))


def _in_batches(embed: Callable[[np.ndarray], np.ndarray], values: np.ndarray) -> np.ndarray:
    return np.concatenate([embed(values[s : s + EMBED_BATCH]) for s in range(0, len(values), EMBED_BATCH)])


Vectors = tuple[np.ndarray, np.ndarray]  # validation users', every film's


def run_tfrs(data: dict[str, np.ndarray], settings: dict[str, Any], timer: StepTimer) -> Vectors:
    """tfrs.tasks.Retrieval without metrics, two Sequential(StringLookup, Embedding) towers,
    Adagrad(0.1), `model.fit` over a shuffled, batched tf.data pipeline."""
    import tensorflow as tf
    import tensorflow_recommenders as tfrs

    users, films = _names("u:", data["train_user"]), _names("m:", data["train_film"])
    dim = settings["dim"]

    def tower(vocabulary: np.ndarray) -> tf.keras.Model:
        return tf.keras.Sequential([
            tf.keras.layers.StringLookup(vocabulary=vocabulary, mask_token=None),
            tf.keras.layers.Embedding(len(vocabulary) + 1, dim),
        ])

    class Model(tfrs.Model):
        def __init__(self) -> None:
            super().__init__()
            self.user_model = tower(np.unique(users))
            self.film_model = tower(np.unique(films))
            self.task = tfrs.tasks.Retrieval()

        def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
            return self.task(self.user_model(features["user"]), self.film_model(features["film"]),
                             compute_metrics=False)

    class Timing(tf.keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            timer(batch + 1, (batch + 1) * settings["batch_size"])

    order = np.random.default_rng(settings["seed"]).permutation(len(users))
    dataset = (tf.data.Dataset.from_tensor_slices({"user": users[order], "film": films[order]})
               .batch(settings["batch_size"], drop_remainder=True).repeat().prefetch(tf.data.AUTOTUNE))
    model = Model()
    model.compile(optimizer=tf.keras.optimizers.Adagrad(learning_rate=0.1))
    model.fit(dataset, epochs=1, steps_per_epoch=timer.last, verbose=0, callbacks=[Timing()])
    user_vectors = _in_batches(lambda v: model.user_model(tf.constant(v)).numpy(),
                               _names("u:", data["val_user"]))
    film_vectors = _in_batches(lambda v: model.film_model(tf.constant(v)).numpy(),
                               _names("m:", np.arange(int(data["n_films"]))))
    return user_vectors, film_vectors


def run_jointspace(data: dict[str, np.ndarray], settings: dict[str, Any], timer: StepTimer) -> Vectors:
    """`jointspace train`'s code path on `{"id:user": ..., "id:item": ...}` rows; validation is
    the benchmark's own (the same held-out rows for both sides), so the trainer holds none out."""
    from jointspace.data.pairs import PairRows
    from jointspace.encoders.training.config import TrainConfig
    from jointspace.encoders.training.trainer import embed_arrays, train

    rows = PairRows({"id:user": _names("u:", data["train_user"]).tolist(),
                     "id:item": _names("m:", data["train_film"]).tolist()},
                    [1.0] * len(data["train_user"]))
    own = settings["jointspace"]
    batches_per_epoch = max(len(rows) // own["batch_size"], 1)
    config = TrainConfig(
        dim=settings["dim"], batch_size=own["batch_size"], learning_rate=own["learning_rate"],
        temperature=own["temperature"],
        epochs=-(-timer.last // batches_per_epoch), max_steps=timer.last, validation_split=0.0,
        patience=None, seed=settings["seed"], encoder_settings={"id": {"norm": own["id_norm"]}},
    )
    trained = train(rows, config, on_step=timer)
    encoder, tower = trained.encoders["id"], trained.towers["id"]

    def embed(values: np.ndarray) -> np.ndarray:
        return embed_arrays(tower, encoder.prepare("id", values.tolist()), EMBED_BATCH)

    return embed(_names("u:", data["val_user"])), embed(_names("m:", np.arange(int(data["n_films"]))))


SIDES = {"tfrs": run_tfrs, "jointspace": run_jointspace}


def own_batch_size(side: str, settings: dict[str, Any]) -> int:
    """The TFRS side always trains with `batch_size` (the issue's 4096); jointspace's may be a
    divisor of it, and then takes proportionally more steps, so both sides see as many examples."""
    return int(settings["jointspace"]["batch_size"] if side == "jointspace" else settings["batch_size"])


def set_threads(settings: dict[str, Any]) -> list[int]:
    """Both sides' TensorFlow thread pools, set alike before the first op runs; returns them as
    TensorFlow reports them back (intra-op, inter-op)."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(settings["intra_op_threads"])
    tf.config.threading.set_inter_op_parallelism_threads(settings["inter_op_threads"])
    return [tf.config.threading.get_intra_op_parallelism_threads(),
            tf.config.threading.get_inter_op_parallelism_threads()]


def main(argv: list[str]) -> int:
    side, data_path, out, settings_text = argv
    settings = json.loads(settings_text)
    threads = set_threads(settings)
    with np.load(data_path) as archive:
        data = {name: archive[name] for name in archive.files}
    scale = settings["batch_size"] // own_batch_size(side, settings)
    timer = StepTimer(settings["warmup"] * scale, (settings["warmup"] + settings["steps"]) * scale)
    user_vectors, film_vectors = SIDES[side](data, settings, timer)
    out_dir = Path(out)
    np.savez(out_dir / "vectors.npz", users=user_vectors.astype(np.float32),
             films=film_vectors.astype(np.float32))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    (out_dir / "result.json").write_text(json.dumps({**timer.result(), "peak_rss_mb": peak_mb,
                                                     "threads": threads}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
