"""What a training run is told: `TrainConfig` and its defaults.

Apart from the trainer, which imports TensorFlow, so that the command line can show and use these
defaults without loading it (`jointspace --help` stays fast).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

AUTO_STEPS = 600  # optimizer steps that `epochs=None` trains for (trainer.auto_epochs)
STOPPED_AUTO_EPOCHS = 12  # the fewest `epochs=None` allows when early stopping decides the end


@dataclass
class TrainConfig:
    dim: int | None = None  # None: auto
    epochs: int | None = None  # None: auto_epochs
    batch_size: int = 128
    # Batches of a catalog-softmax pair (`catalog_softmax_max`). Their negatives are the whole
    # catalog whatever the batch, so the batch only sets how many steps a pass takes, and each step
    # embeds and updates the whole catalog once: larger batches pay that less often.
    catalog_batch_size: int = 256
    learning_rate: float = 0.003
    temperature: float = 0.2
    # Sampling-bias (logQ) correction: each candidate's logit loses logq × log(its share of the
    # pair type's training rows), so popular films stop being pushed away just for appearing
    # in many batches as negatives. Training only; 0 turns it off.
    logq: float = 1.0
    # Typed variants of the training rows' texts beside them (bare titles, runs of words, a word
    # dropped: data/text_augment.py), so that a text tower learns what people type.
    augment_text: bool = False
    # History → id pairs: a history's own ids are masked out of its softmax (trainer.bag_members).
    mask_bag_members: bool = True
    # Queries for the plain `id` view are ranked against all its values when it has at most this
    # many (trainer.catalog_side); 0: in-batch candidates only.
    catalog_softmax_max: int = 20_000
    # The catalog softmax's temperature. Softer (0.3) ranks a user's seen films lower and their
    # unseen ones a little lower too: for a service that shows seen items again (re-listening),
    # not for one that removes them (docs/benchmarks.md, "Recommendation quality").
    catalog_temperature: float = 0.2
    validation_split: float = 0.1
    # Early stopping: validations in a row without a better recall@1/@10/@100 that end training (the
    # best weights are kept); None validates only at the end. See encoders/training/early_stopping.py.
    patience: int | None = 3
    # Plateaus that send training back to its best weights at a lower learning rate before the
    # next one stops it (early_stopping.LEARNING_RATE_CUT).
    learning_rate_cuts: int = 1
    # The weights after each epoch from this share of the epochs on are averaged, and the mean is
    # kept unless validation scores it clearly below the best epoch (weight_average.py); 1.0: no
    # average.
    average_from: float = 0.5
    validation_queries: int = 2000  # at most this many rows are held out (the validation's cost)
    max_steps: int | None = None  # stop after this many steps, whatever the epochs (benchmarks)
    seed: int = 0
    pairs: list[tuple[str, str]] | None = None
    pair_weights: dict[str, float] = field(default_factory=dict)
    encoder_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    logdir: str | None = None  # TensorBoard scalars (encoders/training/tensorboard.py)
