"""Audio front end: host-side decoding and resampling, in-graph mel features.

Decoding stays on the host (soundfile, soxr) because TensorFlow cannot read every container and
because a hostile file must be rejected from its header before any sample is decoded. Everything
from the waveform on runs in TensorFlow so that an exported SavedModel computes its own features.
The mel filterbank is librosa's own (`librosa.filters.mel`, Slaney) frozen into the graph, and
librosa's centred, zero-padded framing is reproduced explicitly: tf.signal's own mel matrix and
framing differ from librosa by ~6e-3 (PITFALLS.md), this matches it to float rounding, so features
computed with librosa offline and in a served model agree.
"""

from __future__ import annotations

import functools
import io
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import librosa
import numpy as np
import soundfile
import soxr

import jointspace  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
import tensorflow as tf
from jointspace.errors import InvalidInput, LimitExceeded, NotFound
from jointspace.limits import DEFAULT_LIMITS, Limits

LOG_FLOOR = 1e-6
MAX_SAMPLE_MAGNITUDE = 1e6  # float PCM is normally within ±1; int16 scale fits easily


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


def _reason(error: Exception) -> str:
    """libsndfile's own words ("Format not recognised."), without the object repr around them."""
    text = getattr(error, "error_string", None) or str(error).strip()
    lines = text.splitlines()
    return lines[-1] if lines else type(error).__name__


def _check_rate(rate: int, limits: Limits) -> None:
    if rate <= 0:
        raise InvalidInput(f"audio: sample rate must be positive, not {rate}")
    if rate > limits.max_audio_sample_rate:
        raise LimitExceeded(
            f"audio: sample rate {rate} Hz is over max_audio_sample_rate ({limits.max_audio_sample_rate} Hz)"
        )


def _check_duration(num_samples: int, rate: int, limits: Limits) -> None:
    seconds = num_samples / rate
    if seconds > limits.max_audio_seconds:
        raise LimitExceeded(
            f"audio: {seconds:.2f} s is over max_audio_seconds ({limits.max_audio_seconds:g} s)"
        )


def _check_header(info: Any, limits: Limits) -> None:
    _check_rate(info.samplerate, limits)
    if info.channels > limits.max_audio_channels:
        raise LimitExceeded(
            f"audio: {info.channels} channels is over max_audio_channels ({limits.max_audio_channels})"
        )
    _check_duration(info.frames, info.samplerate, limits)


def _decode_file(source: str | io.BytesIO, limits: Limits) -> tuple[np.ndarray, int]:
    try:
        info = soundfile.info(source)
    except (soundfile.SoundFileError, RuntimeError) as error:
        if isinstance(source, str):
            return _decode_with_librosa(source, limits, error)
        raise InvalidInput(f"audio: could not decode the content ({_reason(error)})") from None
    _check_header(info, limits)
    if isinstance(source, io.BytesIO):
        source.seek(0)
    try:
        samples, rate = soundfile.read(source, dtype="float32", always_2d=True)
    except (soundfile.SoundFileError, RuntimeError) as error:
        raise InvalidInput(f"audio: could not decode the content ({_reason(error)})") from None
    return samples.mean(axis=1, dtype=np.float32), int(rate)


def _decode_with_librosa(path: str, limits: Limits, first_error: Exception) -> tuple[np.ndarray, int]:
    """Containers libsndfile lacks: audioread has no cheap header check, so read at most one
    second past the limit and judge the duration from what came back."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # librosa's "PySoundFile failed" notice
            samples, rate = librosa.load(path, sr=None, mono=True, duration=limits.max_audio_seconds + 1)
    except Exception:
        raise InvalidInput(
            f"audio: could not decode {Path(path).name} ({_reason(first_error)})"
        ) from None
    _check_rate(int(rate), limits)
    _check_duration(len(samples), int(rate), limits)
    return np.asarray(samples, dtype=np.float32), int(rate)


def decode_audio(
    source: str | Path | bytes,
    config: AudioConfig,
    *,
    pcm_sample_rate: int | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> np.ndarray:
    """Mono float32 at `config.sample_rate` from a file path, file bytes, or raw little-endian
    float32 PCM (`pcm_sample_rate` given). Every limit is checked before samples are decoded."""
    if pcm_sample_rate is not None:
        if not isinstance(source, (bytes, bytearray, memoryview)):
            raise InvalidInput("audio: raw PCM must be given as bytes")
        if len(source) % 4:
            raise InvalidInput(f"audio: raw PCM of {len(source)} bytes is not whole float32 samples")
        _check_rate(pcm_sample_rate, limits)
        _check_duration(len(source) // 4, pcm_sample_rate, limits)
        samples, rate = np.frombuffer(source, dtype="<f4").astype(np.float32), pcm_sample_rate
    elif isinstance(source, (bytes, bytearray, memoryview)):
        if not len(source):
            raise InvalidInput("audio: contains no samples")
        samples, rate = _decode_file(io.BytesIO(source), limits)
    else:
        path = Path(source)
        if not path.is_file():
            raise NotFound(f"audio: {path}: no such file")
        samples, rate = _decode_file(str(path), limits)
    if samples.size == 0:
        raise InvalidInput("audio: contains no samples")
    if not np.isfinite(samples).all():
        raise InvalidInput("audio: samples must be finite (no NaN or Inf)")
    if np.abs(samples).max() > MAX_SAMPLE_MAGNITUDE:
        # Their power would overflow float32 and turn the embedding into NaN.
        raise InvalidInput(f"audio: sample values must lie within ±{MAX_SAMPLE_MAGNITUDE:g}")
    if rate != config.sample_rate:
        samples = soxr.resample(samples, rate, config.sample_rate, quality="HQ")
        if samples.size == 0:  # downsampling a clip shorter than one output period
            samples = np.zeros(1, np.float32)
    return np.ascontiguousarray(samples, dtype=np.float32)


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
