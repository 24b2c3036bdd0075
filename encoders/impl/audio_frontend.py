"""Audio front end: in-graph mel features over waveforms decoded on the host (audio_decode.py).

Decoding stays on the host (soundfile, soxr) because TensorFlow cannot read every container and
because a hostile file must be rejected from its header before any sample is decoded. Everything
from the waveform on runs in TensorFlow so that an exported SavedModel computes its own features.
The mel filterbank is librosa's own (`librosa.filters.mel`, Slaney) frozen into the graph, and
librosa's centred, zero-padded framing is reproduced explicitly: tf.signal's own mel matrix (HTK
mel scale, no Slaney area normalisation) and framing (not centred) differ from librosa's, while
this matches it to float rounding (tests/test_audio_frontend.py), so features computed with
librosa offline and in a served model agree.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import librosa
import numpy as np
import tensorflow as tf

import jointspace  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from jointspace.core.errors import InvalidInput
from jointspace.core.limits import DEFAULT_LIMITS, Limits
from jointspace.encoders.impl.audio_decode import decode_to_rate

LOG_FLOOR = 1e-6


@dataclass(frozen=True)
class AudioConfig:
    sample_rate: int = 16000
    n_fft: int = 512
    hop_length: int = 160
    n_mels: int = 64
    fmin: float = 0.0
    fmax: float | None = None  # None: sample_rate / 2

    def __post_init__(self) -> None:
        # An odd n_fft would shift librosa's frame count to 1 + (n - 1) // hop and leave a
        # zero-sample clip shorter than one frame; nobody needs one, so refuse it.
        if self.sample_rate <= 0 or self.hop_length <= 0 or self.n_mels <= 0:
            raise InvalidInput("audio: sample_rate, hop_length and n_mels must be positive")
        if self.n_fft <= 0 or self.n_fft % 2:
            raise InvalidInput(f"audio: n_fft must be a positive even number, not {self.n_fft}")
        top = self.sample_rate / 2 if self.fmax is None else self.fmax
        if not 0 <= self.fmin < top <= self.sample_rate / 2:
            raise InvalidInput(
                f"audio: need 0 <= fmin < fmax <= sample_rate / 2, got fmin={self.fmin}, fmax={top}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> AudioConfig:
        """Unknown keys are refused: a manifest from a newer version could describe features
        this code would silently compute differently."""
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise InvalidInput(f"audio: unknown config fields {sorted(unknown)}")
        return cls(**values)

    def num_frames(self, num_samples: int) -> int:
        """librosa's centred framing: one frame per hop, plus one."""
        return 1 + num_samples // self.hop_length


@functools.lru_cache(maxsize=16)
def _mel_filters(config: AudioConfig) -> np.ndarray:
    """[n_fft // 2 + 1, n_mels]; cached because eager callers would rebuild it per batch."""
    filters = librosa.filters.mel(
        sr=config.sample_rate, n_fft=config.n_fft, n_mels=config.n_mels,
        fmin=config.fmin, fmax=config.fmax,
    )
    return np.ascontiguousarray(filters.T, dtype=np.float32)


def decode_audio(
    source: str | Path | bytes,
    config: AudioConfig,
    *,
    pcm_sample_rate: int | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> np.ndarray:
    """Mono float32 at `config.sample_rate` from a file path, file bytes, or raw little-endian
    float32 PCM (`pcm_sample_rate` given); see `audio_decode.decode_to_rate`."""
    return decode_to_rate(source, config.sample_rate, pcm_sample_rate=pcm_sample_rate, limits=limits)


def pad_batch(waveforms: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Clips of different lengths into one [batch, max_len] float32 tensor (at least one sample
    wide, so an empty batch still has a valid shape) plus their int32 lengths for masking."""
    lengths = np.array([len(w) for w in waveforms], dtype=np.int32)
    batch = np.zeros((len(waveforms), int(lengths.max(initial=1))), np.float32)
    for row, waveform in enumerate(waveforms):
        batch[row, : len(waveform)] = waveform
    return batch, lengths


def mel_power_spectrogram(waveform: tf.Tensor | np.ndarray, config: AudioConfig) -> tf.Tensor:
    """[batch, samples] float32 to [batch, frames, n_mels], equal to
    librosa.feature.melspectrogram with the same parameters (transposed).

    librosa centres frames by zero-padding n_fft // 2 on both sides; with an even n_fft that
    leaves n + n_fft >= n_fft samples, so even a one-sample clip fills exactly 1 + n // hop
    frames and no further padding is needed.
    """
    waveform = tf.convert_to_tensor(waveform, tf.float32)
    half = config.n_fft // 2
    centred = tf.pad(waveform, [[0, 0], [half, half]])
    stft = tf.signal.stft(
        centred, frame_length=config.n_fft, frame_step=config.hop_length, fft_length=config.n_fft,
        window_fn=tf.signal.hann_window, pad_end=False,
    )
    # re² + im² rather than |z|²: no square root to round, and cheaper.
    power = tf.square(tf.math.real(stft)) + tf.square(tf.math.imag(stft))
    return tf.matmul(power, tf.constant(_mel_filters(config)))


def log_mel(waveform: tf.Tensor | np.ndarray, config: AudioConfig) -> tf.Tensor:
    """Log compresses the dynamic range; the floor keeps silence finite."""
    return tf.math.log(mel_power_spectrogram(waveform, config) + LOG_FLOOR)


def frame_mask(
    num_samples: tf.Tensor | np.ndarray, num_frames_total: int | tf.Tensor, config: AudioConfig
) -> tf.Tensor:
    """[batch, frames] bool, True where a frame belongs to the clip's own length, so pooling over
    a zero-padded batch ignores the padding."""
    frames = 1 + tf.cast(num_samples, tf.int32) // config.hop_length
    return tf.sequence_mask(frames, num_frames_total)
