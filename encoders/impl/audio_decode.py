"""Host-side audio decoding: bytes, a file or raw PCM to mono float32 at a given rate.

Kept apart from the in-graph front end (audio_frontend.py) and free of TensorFlow so that a
decoder worker process (decode_pool.py) can import it in a fraction of a second. A hostile file
is rejected from its header (`soundfile.info`) before any sample is decoded: a tiny header can
claim gigabytes of samples, and a decoder allocates what the header claims.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import soxr

from jointspace.core.errors import InvalidInput, LimitExceeded, NotFound
from jointspace.core.limits import DEFAULT_LIMITS, Limits

MAX_SAMPLE_MAGNITUDE = 1e6  # float PCM is normally within ±1; int16 scale fits easily


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
    second past the limit and judge the duration from what came back. librosa is imported here
    only: it is slow to import and a decoder worker seldom needs it."""
    import librosa

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


def recorded_sample_rate(path: str | Path) -> int | None:
    """The rate a file was recorded at, read from its header alone; None where libsndfile cannot
    read the header (such a file still decodes, through librosa)."""
    try:
        return int(soundfile.info(str(path)).samplerate)
    except (soundfile.SoundFileError, RuntimeError):
        return None


def decode_to_rate(
    source: str | Path | bytes,
    sample_rate: int,
    *,
    pcm_sample_rate: int | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> np.ndarray:
    """Mono float32 at `sample_rate` from a file path, file bytes, or raw little-endian float32
    PCM (`pcm_sample_rate` given). Every limit is checked before samples are decoded; samples
    must be finite (NaN or Inf would turn the embedding into NaN). Silence is valid audio."""
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
    if rate != sample_rate:
        samples = soxr.resample(samples, rate, sample_rate, quality="HQ")
        if samples.size == 0:  # downsampling a clip shorter than one output period
            samples = np.zeros(1, np.float32)
    return np.ascontiguousarray(samples, dtype=np.float32)
