"""Audio front end: host-side decoding and resampling, in-graph log-mel features.

Decoding stays on the host (soundfile, soxr) because TensorFlow cannot read every container and
because a hostile file must be rejected from its header before any sample is decoded. Everything
from the waveform on runs in TensorFlow so that the exported SavedModel computes features itself.
The mel filterbank is librosa's own (`librosa.filters.mel`, Slaney) frozen into the graph, with
librosa's centred, zero-padded framing reproduced explicitly: tf.signal's own mel matrix and
framing differ from librosa by ~6e-3 (PITFALLS.md), ours matches to float rounding.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import librosa
import numpy as np
import soundfile
import soxr

from jointspace.encoders.base import tf
from jointspace.errors import InvalidInput, LimitExceeded, NotFound
from jointspace.limits import DEFAULT_LIMITS, Limits

LOG_FLOOR = 1e-6


@dataclass(frozen=True)
class AudioConfig:
    sample_rate: int = 16000
    n_fft: int = 512
    hop_length: int = 160
    n_mels: int = 64
    fmin: float = 0.0
    fmax: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "AudioConfig":
        return cls(**{k: values[k] for k in cls.__dataclass_fields__ if k in values})

    def num_frames(self, num_samples: int) -> int:
        """librosa's centred framing: one frame per hop, plus one."""
        return 1 + num_samples // self.hop_length

    def mel_matrix(self) -> np.ndarray:
        """[n_fft // 2 + 1, n_mels], librosa's Slaney filterbank."""
        return librosa.filters.mel(
            sr=self.sample_rate, n_fft=self.n_fft, n_mels=self.n_mels, fmin=self.fmin, fmax=self.fmax
        ).T.astype(np.float32)


def _check_header(info: Any, limits: Limits) -> None:
    if info.samplerate <= 0 or info.samplerate > limits.max_audio_sample_rate:
        raise LimitExceeded(
            f"audio: sample rate {info.samplerate} Hz is outside 1..{limits.max_audio_sample_rate}"
        )
    if info.channels > limits.max_audio_channels:
        raise LimitExceeded(f"audio: {info.channels} channels, over the limit of {limits.max_audio_channels}")
    seconds = info.frames / info.samplerate
    if seconds > limits.max_audio_seconds:
        raise LimitExceeded(
            f"audio: {seconds:.1f} s long, over the limit of {limits.max_audio_seconds:g} s"
        )


def _decode_file(source: Any, limits: Limits) -> tuple[np.ndarray, int]:
    try:
        info = soundfile.info(source)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as error:
        if isinstance(source, (str, Path)):
            return _decode_with_librosa(Path(source), limits, error)
        raise InvalidInput(f"audio: could not decode ({_reason(error)})") from None
    _check_header(info, limits)
    if hasattr(source, "seek"):
        source.seek(0)
    try:
        samples, rate = soundfile.read(source, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError) as error:
        raise InvalidInput(f"audio: could not decode ({_reason(error)})") from None
    return samples.mean(axis=1), rate


def _decode_with_librosa(path: Path, limits: Limits, first_error: Exception) -> tuple[np.ndarray, int]:
    """Containers libsndfile lacks (some MP3 builds): librosa's fallback, with the duration limit
    applied while reading rather than after."""
    try:
        samples, rate = librosa.load(path, sr=None, mono=True, duration=limits.max_audio_seconds + 1)
    except Exception:
        raise InvalidInput(f"audio: could not decode {path.name} ({_reason(first_error)})") from None
    if len(samples) / rate > limits.max_audio_seconds:
        raise LimitExceeded(f"audio: longer than the limit of {limits.max_audio_seconds:g} s")
    return samples.astype(np.float32), int(rate)


def _reason(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[-1] if text else type(error).__name__


def decode_audio(
    source: str | Path | bytes,
    config: AudioConfig,
    *,
    pcm_sample_rate: int | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> np.ndarray:
    """Mono float32 at `config.sample_rate` from a file path, file bytes, or raw float32 PCM."""
    if pcm_sample_rate is not None:
        if not isinstance(source, (bytes, bytearray)):
            raise InvalidInput("audio: raw PCM must be given as bytes")
        if len(source) % 4:
            raise InvalidInput(f"audio: raw PCM of {len(source)} bytes is not whole float32 samples")
        if pcm_sample_rate <= 0 or pcm_sample_rate > limits.max_audio_sample_rate:
            raise LimitExceeded(
                f"audio: sample rate {pcm_sample_rate} Hz is outside 1..{limits.max_audio_sample_rate}"
            )
        if len(source) / 4 / pcm_sample_rate > limits.max_audio_seconds:
            raise LimitExceeded(f"audio: longer than the limit of {limits.max_audio_seconds:g} s")
        samples, rate = np.frombuffer(source, dtype="<f4").astype(np.float32), pcm_sample_rate
    elif isinstance(source, (bytes, bytearray)):
        if not source:
            raise InvalidInput("audio: content is empty")
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
    if rate != config.sample_rate:
        samples = soxr.resample(samples, rate, config.sample_rate, quality="HQ").astype(np.float32)
        if samples.size == 0:  # a clip shorter than one output sample
            samples = np.zeros(1, np.float32)
    return np.ascontiguousarray(samples, dtype=np.float32)


def pad_batch(waveforms: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pad clips into [batch, max_len] float32 and their lengths (int32)."""
    lengths = np.array([len(w) for w in waveforms], dtype=np.int32)
    batch = np.zeros((len(waveforms), max(1, int(lengths.max(initial=1)))), np.float32)
    for row, waveform in enumerate(waveforms):
        batch[row, : len(waveform)] = waveform
    return batch, lengths


def mel_power_spectrogram(waveform: tf.Tensor, config: AudioConfig) -> tf.Tensor:
    """[batch, samples] → [batch, frames, n_mels], equal to librosa.feature.melspectrogram with
    the same parameters (centred frames, zero padding, periodic Hann, power 2, Slaney mels)."""
    waveform = tf.convert_to_tensor(waveform, tf.float32)
    num_samples = tf.shape(waveform)[1]
    frames = 1 + num_samples // config.hop_length
    half = config.n_fft // 2
    # Centre like librosa, then pad the end so that even a one-sample clip fills a whole frame;
    # the surplus frames are cut off below.
    needed = (frames - 1) * config.hop_length + config.n_fft
    padded = tf.pad(waveform, [[0, 0], [half, tf.maximum(needed - num_samples - half, half)]])
    stft = tf.signal.stft(padded, frame_length=config.n_fft, frame_step=config.hop_length,
                          fft_length=config.n_fft, window_fn=tf.signal.hann_window, pad_end=False)
    power = tf.square(tf.abs(stft))[:, :frames]
    return tf.tensordot(power, tf.constant(config.mel_matrix()), axes=1)


def log_mel(waveform: tf.Tensor, config: AudioConfig) -> tf.Tensor:
    return tf.math.log(mel_power_spectrogram(waveform, config) + LOG_FLOOR)


def frame_mask(num_samples: tf.Tensor, num_frames_total: tf.Tensor, config: AudioConfig) -> tf.Tensor:
    """[batch, frames] True where a frame belongs to the clip's own length (padded batches)."""
    return tf.sequence_mask(1 + num_samples // config.hop_length, num_frames_total)
