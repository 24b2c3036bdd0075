"""TensorBoard scalars for a training run (`train --logdir DIR`).

Kept out of the training loop's code: the loop calls `epoch` and `validation`, and without a
log directory both do nothing. Scalars are `loss` per epoch and `validation/<direction>/<metric>`
(e.g. `validation/audio->text/recall@1`) at the step they were measured. They are written with
TensorFlow's own `tf.summary.write` and the scalars plugin's metadata, because `tf.summary.scalar`
needs the `tensorboard` package, which only the viewer needs.
"""

from __future__ import annotations

from pathlib import Path

from jointspace.encoders.base import tf

_SCALAR = tf.compat.v1.SummaryMetadata(
    plugin_data=tf.compat.v1.SummaryMetadata.PluginData(plugin_name="scalars")
).SerializeToString()


def _scalar(tag: str, value: float, step: int) -> None:
    tf.summary.write(tag, tf.constant(value, tf.float32), step=step, metadata=_SCALAR)


class ScalarLog:
    def __init__(self, logdir: Path | str | None) -> None:
        self.writer = tf.summary.create_file_writer(str(logdir)) if logdir else None

    def epoch(self, epoch: int, loss: float) -> None:
        if self.writer is not None:
            with self.writer.as_default():
                _scalar("loss", loss, epoch)
            self.writer.flush()

    def validation(self, epoch: int, metrics: dict[str, dict[str, float]]) -> None:
        if self.writer is not None:
            with self.writer.as_default():
                for direction, values in metrics.items():
                    for name, value in values.items():
                        _scalar(f"validation/{direction}/{name}", value, epoch)
            self.writer.flush()
