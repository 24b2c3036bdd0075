"""The audio tower's answer for a clip must not depend on the other clips in its batch: a
catalog build, a Beam build and a served query batch the same clip with different neighbours,
and all of them must put it at the same point of the space."""

from __future__ import annotations

import numpy as np

from jointspace.data import fsdd
from jointspace.encoders.audio import AudioTower
from jointspace.encoders.audio_frontend import AudioConfig, decode_audio, log_mel, pad_batch
from jointspace.encoders.base import tf


def test_embedding_of_a_clip_does_not_depend_on_its_batch(clips: list[fsdd.Clip]) -> None:
    config = AudioConfig(n_mels=40)
    short, other = (decode_audio(c.path, config) for c in clips[:2])
    long_clip = np.concatenate([other] * 4)
    alone, _ = pad_batch([short])
    batched, _ = pad_batch([short, long_clip])
    frames = config.num_frames(len(short))
    tower = AudioTower(config, 16, (16, 32, 64), 64)
    tower((log_mel(alone, config), tf.constant([frames])))
    # Trained statistics are never zero; random ones make padding visible as a trained model would.
    rng = np.random.default_rng(0)
    for variable in tower.weights:
        if any(part in variable.name for part in ("beta", "moving_mean")):
            variable.assign(rng.normal(size=variable.shape).astype(np.float32))
    by_itself = tower((log_mel(alone, config), tf.constant([frames])), training=False).numpy()[0]
    beside_long = tower(
        (log_mel(batched, config), tf.constant([frames, config.num_frames(len(long_clip))])), training=False
    ).numpy()[0]
    np.testing.assert_allclose(by_itself, beside_long, atol=1e-5)
