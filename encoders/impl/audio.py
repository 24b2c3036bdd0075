"""Audio clips: log-mel features in the graph, a small convolutional net, masked pooling.

Decoding and resampling need librosa/soundfile and stay on the host (`audio_frontend`); every
step after the waveform runs in TensorFlow, so the exported SavedModel takes float32 waveforms at
the manifest's rate. Training computes the log-mel features once up front instead of each epoch:
they are the costly, deterministic part, and SpecAugment on the features gives the variation.
Speed perturbation (tempo and pitch together), a random warp of the mel axis (formants move
as between voices), a dynamic-range floor and per-clip normalisation are what carry the model to
voices it never heard: on spoken digits with one speaker held out each of them raised audio →
text recall@1 (docs/guide.md, "Model", names each step; docs/benchmarks.md, "Held-out-speaker
quality", has today's figures and what was tried and not kept).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from jointspace.core.deadline import check_deadline
from jointspace.core.errors import InvalidInput, LimitExceeded
from jointspace.core.limits import DEFAULT_LIMITS, Limits
from jointspace.core.progress import log
from jointspace.core.stages import DECODE, timed
from jointspace.encoders.base import (
    Arrays,
    Encoder,
    EncoderPlugin,
    ServingEncoder,
    join_members,
    l2_normalize,
    load_serving,
    save_serving,
    tf,
)
from jointspace.encoders.impl.audio_decode import recorded_sample_rate
from jointspace.encoders.impl.audio_frontend import AudioConfig, decode_audio, log_mel, pad_batch
from jointspace.encoders.impl.decode_pool import shared_pool

# Padded audio the model sees in one call; longer batches are split (bounds the memory of one call).
PADDED_SECONDS_PER_CALL = 120.0


def _span_mask(batch: tf.Tensor, length: tf.Tensor, max_width: int) -> tf.Tensor:
    """One random span per row, [batch, length] with 0 inside the span and 1 elsewhere."""
    width = tf.random.uniform([batch, 1], 0, max_width + 1, dtype=tf.int32)
    room = tf.cast(tf.maximum(length - width, 1), tf.float32)
    start = tf.cast(tf.random.uniform([batch, 1]) * room, tf.int32)
    position = tf.range(length)[None, :]
    return tf.cast((position < start) | (position >= start + width), tf.float32)


def _warp_bands(x: tf.Tensor, max_warp: float) -> tf.Tensor:
    """Stretch or squeeze each clip's mel axis by a random factor in [1 - max_warp, 1 + max_warp]
    (vocal tract length perturbation): formants move as they do between voices, tempo stays."""
    bands = x.shape[2]
    factor = tf.random.uniform([tf.shape(x)[0], 1], 1.0 - max_warp, 1.0 + max_warp)
    source = tf.clip_by_value(tf.range(bands, dtype=tf.float32)[None, :] * factor, 0.0, bands - 1.0)
    low = tf.cast(tf.floor(source), tf.int32)
    high = tf.minimum(low + 1, bands - 1)
    weight = (source - tf.floor(source))[:, None, :]
    return (tf.gather(x, low, axis=2, batch_dims=1) * (1.0 - weight)
            + tf.gather(x, high, axis=2, batch_dims=1) * weight)


def _colour_channel(x: tf.Tensor, max_gain: float) -> tf.Tensor:
    """Add a random smooth curve over the mel axis to each clip (the first three cosines, each
    with a gain up to ±max_gain in normalised log-mel units): microphones and rooms tilt and
    bend the spectrum, and a model that heard five voices through five channels learns those."""
    bands = x.shape[2]
    position = tf.range(bands, dtype=tf.float32) / max(bands - 1, 1)
    basis = tf.stack([tf.cos(np.pi * order * position) for order in (1, 2, 3)])
    gains = tf.random.uniform([tf.shape(x)[0], 3], -max_gain, max_gain)
    return x + tf.matmul(gains, basis)[:, None, :]


class AudioTower(tf.keras.layers.Layer):
    def __init__(self, config: AudioConfig, dim: int, channels: Sequence[int], hidden: int,
                 band_warp: float = 0.0, dynamic_range_db: float = 0.0, channel_gain: float = 0.0,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.band_warp = band_warp
        self.channel_gain = channel_gain
        self.dynamic_range = dynamic_range_db * np.log(10.0) / 10.0  # in natural-log power units
        self.blocks = [
            (
                tf.keras.layers.Conv2D(c, 3, padding="same", use_bias=False),
                tf.keras.layers.BatchNormalization(),
                tf.keras.layers.MaxPool2D(2, padding="same"),
            )
            for c in channels
        ]
        self.hidden = tf.keras.layers.Dense(hidden, activation="relu")
        self.projection = tf.keras.layers.Dense(dim)

    def features(self, waveform: tf.Tensor, num_samples: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return log_mel(waveform, self.config), 1 + num_samples // self.config.hop_length

    def call(self, inputs: tuple[tf.Tensor, tf.Tensor], training: bool = False) -> tf.Tensor:
        logmel, frames = inputs
        shape = tf.shape(logmel)
        mask = tf.sequence_mask(frames, shape[1], dtype=tf.float32)[..., None]
        if self.dynamic_range:
            # Everything more than dynamic_range below the clip's loudest bin is floor: the
            # noise floor differs between microphones and rooms, the words do not.
            peak = tf.reduce_max(logmel * mask - (1.0 - mask) * 1e4, axis=[1, 2], keepdims=True)
            logmel = tf.maximum(logmel, peak - self.dynamic_range)
        # One mean and variance per clip (over its own frames and all bands): removes loudness and
        # channel gain but keeps the spectral shape, which carries the vowels of short words.
        count = tf.maximum(tf.reduce_sum(mask, axis=[1, 2], keepdims=True) * tf.cast(shape[2], tf.float32), 1.0)
        mean = tf.reduce_sum(logmel * mask, axis=[1, 2], keepdims=True) / count
        var = tf.reduce_sum(tf.square(logmel - mean) * mask, axis=[1, 2], keepdims=True) / count
        x = (logmel - mean) * tf.math.rsqrt(var + 1e-3) * mask
        if training:
            if self.band_warp:
                x = _warp_bands(x, self.band_warp) * mask
            if self.channel_gain:
                x = _colour_channel(x, self.channel_gain) * mask
            x *= _span_mask(shape[0], shape[1], 12)[..., None]
            x *= _span_mask(shape[0], shape[2], 6)[:, None, :]
        x = x[..., None]
        mask = mask[..., 0]
        for conv, norm, pool in self.blocks:
            # Zero the frames past the clip after every block: batch normalisation turns padding
            # into non-zero activations that the next convolution would read into the clip's last
            # frames, which made a clip's embedding depend on the longest clip in its batch.
            x = tf.nn.relu(norm(conv(x), training=training)) * mask[:, :, None, None]
            x = pool(x)
            mask = tf.nn.max_pool1d(mask[..., None], 2, 2, "SAME")[..., 0]
        x = tf.reshape(x, [shape[0], tf.shape(x)[1], x.shape[2] * x.shape[3]])
        x = self.hidden(x)
        weights = mask[..., None]
        mean_pool = tf.reduce_sum(x * weights, axis=1) / tf.maximum(tf.reduce_sum(weights, 1), 1.0)
        max_pool = tf.reduce_max(x * weights - (1.0 - weights) * 1e4, axis=1)
        return l2_normalize(self.projection(tf.concat([mean_pool, max_pool], axis=-1)))


def audio_config(settings: dict[str, Any], paths: Sequence[Any]) -> AudioConfig:
    """The front end's settings; without an explicit `fmax`, the mel bands stop where the
    training files' recordings do (`recorded_band`)."""
    fields = AudioConfig.__dataclass_fields__
    config = AudioConfig(**{k: v for k, v in settings.items() if k in fields})
    if "fmax" in settings:
        return config
    return replace(config, fmax=recorded_band(paths, config))


def recorded_band(paths: Sequence[Any], config: AudioConfig) -> float | None:
    """Half the lowest rate any of `paths` was recorded at, where that is below the model's own
    Nyquist frequency; otherwise `config.fmax`.

    A file recorded at 8 kHz and resampled to 16 kHz has nothing above 4 kHz, so with the bands
    spread up to 8 kHz a quarter of them held only the floor in training, and a wide-band query
    would fill bands the model never learned from: the same word would embed differently by how
    it was recorded. Stopping at the lowest recorded rate fills every band of every clip; on
    spoken digits with a speaker held out it raised recall@1 (docs/benchmarks.md)."""
    lowest = min(filter(None, map(recorded_sample_rate, set(map(str, paths)))), default=None)
    if lowest is None or lowest >= config.sample_rate or lowest / 2 <= config.fmin:
        return config.fmax
    log(f"audio: the training files were recorded at {lowest} Hz or more; "
        f"mel bands stop at {lowest / 2:g} Hz")
    return lowest / 2


class AudioEncoder(Encoder):
    name = "audio"
    modalities = ("audio",)

    def adapt(self, values: Sequence[Any]) -> None:
        self.config = audio_config(self.settings, values)
        self.train_seconds = float(self.settings.get("train_seconds", 1.0))
        self.channels = tuple(self.settings.get("channels", (16, 32, 64)))
        self.hidden = int(self.settings.get("hidden", 128))
        self.band_warp = float(self.settings.get("band_warp", 0.1))
        self.dynamic_range_db = float(self.settings.get("dynamic_range_db", 50.0))
        self.channel_gain = float(self.settings.get("channel_gain", 0.3))
        # Speed perturbation changes tempo and pitch together, the cheapest stand-in for voices
        # the model has not heard. The first factor must be 1.0: evaluation uses variant 0.
        self.speed_factors = (1.0, *self.settings.get("speed_factors", (0.85, 0.92, 1.08, 1.15)))
        self.distinct_clips = len(set(map(str, values)))

    def num_values(self) -> int:
        return self.distinct_clips

    def prepare(self, modality: str, values: Sequence[Any]) -> Arrays:
        """Decode every clip once and keep log-mel features cut to `train_seconds`, for the clip
        as recorded (variant 0) and sped up or slowed down by each `speed_factors` entry."""
        max_samples = int(self.train_seconds * self.config.sample_rate)
        max_frames = self.config.num_frames(max_samples)
        variants = len(self.speed_factors)
        logmels = np.zeros((len(values), variants, max_frames, self.config.n_mels), np.float32)
        frames = np.zeros((len(values), variants), np.int32)
        chunk = 256
        for start in range(0, len(values), chunk):
            clips = [decode_audio(v, self.config) for v in values[start : start + chunk]]
            for variant, factor in enumerate(self.speed_factors):
                changed = [_change_speed(c, factor, self.config.sample_rate)[:max_samples] for c in clips]
                waveform, lengths = pad_batch(changed)
                features = log_mel(tf.constant(waveform), self.config).numpy()
                width = min(features.shape[1], max_frames)
                logmels[start : start + len(clips), variant, :width] = features[:, :width]
                frames[start : start + len(clips), variant] = [self.config.num_frames(n) for n in lengths]
        return {"logmel": logmels, "frames": frames}

    def build_tower(self) -> tf.keras.layers.Layer:
        tower = AudioTower(self.config, self.dim, self.channels, self.hidden, self.band_warp,
                           self.dynamic_range_db, self.channel_gain, name="audio_tower")
        return _FeatureView(tower)

    def export(self, towers: Sequence[tf.keras.layers.Layer], path: Path) -> dict[str, Any]:
        inners: list[AudioTower] = [tower.inner for tower in towers]

        @tf.function(input_signature=[
            tf.TensorSpec([None, None], tf.float32, name="waveform"),
            tf.TensorSpec([None], tf.int32, name="num_samples"),
        ])
        def serve(waveform: tf.Tensor, num_samples: tf.Tensor) -> dict[str, tf.Tensor]:
            features = inners[0].features(waveform, num_samples)  # one front end for every member
            return {"embedding": join_members([inner(features, training=False) for inner in inners])}

        save_serving(path, inners, serve)
        return {"audio": self.config.to_dict()}


def _change_speed(samples: np.ndarray, factor: float, rate: int) -> np.ndarray:
    if factor == 1.0:
        return samples
    return soxr.resample(samples, rate, rate / factor).astype(np.float32)


class _FeatureView(tf.keras.layers.Layer):
    """Training-time face of the audio tower: feeds precomputed log-mel features, a random speed
    variant of each clip in training and the clip as recorded otherwise."""

    def __init__(self, inner: AudioTower, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.inner = inner

    def call(self, inputs: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        logmel, frames = inputs["logmel"], inputs["frames"]
        if training:
            choice = tf.random.uniform([tf.shape(frames)[0]], 0, tf.shape(frames)[1], dtype=tf.int32)
        else:
            choice = tf.zeros([tf.shape(frames)[0]], tf.int32)
        logmel = tf.gather(logmel, choice, axis=1, batch_dims=1)
        frames = tf.gather(frames, choice, axis=1, batch_dims=1)
        return self.inner((logmel, frames), training=training)


class ServingAudioEncoder(ServingEncoder):
    """Request values are `(content: bytes | path, pcm_sample_rate: int | None)` pairs."""

    modalities = AudioEncoder.modalities

    def __init__(self, path: Path, entry: dict[str, Any], limits: Limits = DEFAULT_LIMITS) -> None:
        self.signature = load_serving(path)
        self.config = AudioConfig.from_dict(entry["audio"])
        self.limits = limits

    def decode(self, value: Any) -> np.ndarray:
        content, rate = value if isinstance(value, tuple) else (value, None)
        if isinstance(content, (bytes, bytearray)) and not content:
            raise InvalidInput("audio: content is empty")
        pool = shared_pool()  # a server's: hostile content must not crash or stall the server
        if pool is not None:
            return pool.decode(bytes(content) if isinstance(content, bytearray) else content,
                               self.config.sample_rate, rate, self.limits)
        return decode_audio(content, self.config, pcm_sample_rate=rate, limits=self.limits)

    def embed(self, modality: str, values: Sequence[Any]) -> np.ndarray:
        return self.embed_prepared(modality, self.prepare(modality, values))

    def prepare(self, modality: str, values: Sequence[Any]) -> list[Any]:
        """The request's clips decoded, within the request's budget of audio seconds."""
        rate = self.config.sample_rate
        budget = self.limits.max_request_audio_seconds * rate
        clips: list[Any] = []
        total = 0
        for value in values:
            check_deadline("decoding audio")
            with timed(DECODE):
                clips.append(self.decode(value))
            total += len(clips[-1])
            if total > budget:
                raise LimitExceeded(f"audio: the request's clips last more than max_request_audio_seconds "
                                    f"({self.limits.max_request_audio_seconds:g} s) together")
        return clips

    def embed_prepared(self, modality: str, clips: Sequence[Any]) -> np.ndarray:
        """Decoded clips (float32 samples at the model's rate) to vectors, in calls of similar lengths."""
        rate = self.config.sample_rate
        out: dict[int, np.ndarray] = {}
        for group in padded_groups([len(c) for c in clips], int(PADDED_SECONDS_PER_CALL * rate)):
            check_deadline("running the audio model")
            waveform, lengths = pad_batch([clips[i] for i in group])
            result = self.signature(waveform=tf.constant(waveform), num_samples=tf.constant(lengths))
            for i, row in zip(group, result["embedding"].numpy()):
                out[i] = row
        return np.stack([out[i] for i in range(len(clips))])


def padded_groups(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Positions grouped by length so that each group, padded to its longest clip, stays within
    `budget` samples: one 60 s clip among a thousand short ones must not pad them all to 60 s."""
    groups: list[list[int]] = []
    for position in sorted(range(len(lengths)), key=lengths.__getitem__):
        group = groups[-1] if groups else None
        if group is None or (len(group) + 1) * lengths[position] > budget:
            groups.append([position])
        else:
            group.append(position)
    return groups


PLUGIN = EncoderPlugin(AudioEncoder.name, AudioEncoder.modalities, AudioEncoder, ServingAudioEncoder)
