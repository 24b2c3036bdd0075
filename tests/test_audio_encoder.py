"""The audio tower's answer for a clip must not depend on the other clips in its batch: a
catalog build, a Beam build and a served query batch the same clip with different neighbours,
and all of them must put it at the same point of the space."""

from __future__ import annotations

import numpy as np

from jointspace.data import fsdd
from jointspace.encoders.base import tf
from jointspace.encoders.impl.audio import AudioTower
from jointspace.encoders.impl.audio_frontend import AudioConfig, decode_audio, log_mel, pad_batch


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


def test_channel_colouring_is_one_smooth_bounded_curve_per_clip() -> None:
    """The training-time channel augmentation adds, to every frame of a clip, the same curve over
    the mel bands: a tilt or bend the size of `max_gain` per cosine, never noise within a clip."""
    from jointspace.encoders.impl.audio import _colour_channel

    tf.random.set_seed(1)
    x = tf.random.normal([4, 30, 40])
    added = (_colour_channel(x, 0.3) - x).numpy()
    np.testing.assert_allclose(added, np.broadcast_to(added[:, :1], added.shape), atol=1e-6)
    curves = added[:, 0]
    assert np.abs(curves).max() <= 3 * 0.3 + 1e-6
    assert np.abs(np.diff(curves, axis=1)).max() < 0.15  # smooth: small steps between bands
    assert np.abs(curves).max() > 0.05 and not np.allclose(curves[0], curves[1])  # random per clip


def test_mel_bands_stop_where_the_training_recordings_do(tmp_path, clips: list[fsdd.Clip]) -> None:
    """FSDD is recorded at 8 kHz and the model runs at 16 kHz: bands above 4 kHz would only ever
    hold the floor in training, so the front end stops there unless told otherwise."""
    import soundfile

    from jointspace.encoders.impl.audio import AudioEncoder, audio_config

    wide = tmp_path / "wide.wav"
    soundfile.write(wide, np.zeros(22050, np.float32), 22050)
    narrow = [str(c.path) for c in clips[:3]]
    assert audio_config({}, narrow + [str(wide)]).fmax == 4000.0
    assert audio_config({}, [str(wide)]).fmax is None  # above the model's 16 kHz: every band is filled
    assert audio_config({"fmax": 3000.0}, narrow).fmax == 3000.0  # an explicit setting wins
    assert audio_config({}, [str(tmp_path / "unreadable.mp3")]).fmax is None
    encoder = AudioEncoder({})
    encoder.adapt(narrow)
    assert encoder.config.fmax == 4000.0
