"""The audio front end against librosa on real recordings (FSDD, 8 kHz WAV), and its rejection of
bad input. Parity matters because features computed offline and in the exported model must agree."""

from __future__ import annotations

import io
import os
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile

from jointspace.core.errors import InvalidInput, LimitExceeded, NotFound
from jointspace.core.limits import Limits
from jointspace.encoders.impl.audio_frontend import (
    AudioConfig,
    decode_audio,
    frame_mask,
    log_mel,
    mel_power_spectrogram,
    pad_batch,
)

CONFIG = AudioConfig()
CLIPS = ["7_theo_3.wav", "0_george_0.wav", "3_jackson_11.wav", "9_nicolas_10.wav", "5_yweweler_7.wav"]


@pytest.fixture(scope="session")
def fsdd_dir() -> Path:
    """The clips shipped with the package (always there); JOINTSPACE_FSDD_DIR points elsewhere."""
    from jointspace.data.fsdd import shipped_fsdd_dir

    return Path(os.environ.get("JOINTSPACE_FSDD_DIR", shipped_fsdd_dir() / "recordings"))


def librosa_mel(y: np.ndarray, config: AudioConfig) -> np.ndarray:
    """librosa's result as [frames, n_mels]."""
    return librosa.feature.melspectrogram(
        y=y, sr=config.sample_rate, n_fft=config.n_fft, hop_length=config.hop_length,
        n_mels=config.n_mels, fmin=config.fmin, fmax=config.fmax,
    ).T


def assert_parity(ours: np.ndarray, expected: np.ndarray) -> None:
    assert ours.shape == expected.shape
    scale = max(float(expected.max()), 1e-12)
    assert float(np.abs(ours - expected).max()) / scale < 1e-4


@pytest.mark.parametrize("name", CLIPS)
def test_mel_matches_librosa_on_real_clips(fsdd_dir: Path, name: str) -> None:
    y = decode_audio(fsdd_dir / name, CONFIG)
    ours = mel_power_spectrogram(y[None, :], CONFIG).numpy()[0]
    assert ours.shape[0] == CONFIG.num_frames(len(y))
    assert_parity(ours, librosa_mel(y, CONFIG))


def test_mel_matches_librosa_with_fmin_fmax(fsdd_dir: Path) -> None:
    config = AudioConfig(sample_rate=8000, n_fft=256, hop_length=80, n_mels=40, fmin=50.0, fmax=3800.0)
    y = decode_audio(fsdd_dir / CLIPS[0], config)
    assert_parity(mel_power_spectrogram(y[None, :], config).numpy()[0], librosa_mel(y, config))


@pytest.mark.parametrize("length", [1, 100, 511])
def test_mel_matches_librosa_on_clips_shorter_than_n_fft(fsdd_dir: Path, length: int) -> None:
    y = decode_audio(fsdd_dir / CLIPS[0], CONFIG)[2000 : 2000 + length]
    ours = mel_power_spectrogram(y[None, :], CONFIG).numpy()[0]
    assert ours.shape[0] == CONFIG.num_frames(length)
    with pytest.warns(UserWarning, match="too large"):  # librosa's own note about n_fft
        expected = librosa_mel(y, CONFIG)
    assert_parity(ours, expected)


def test_padded_batch_matches_each_clip_alone(fsdd_dir: Path) -> None:
    clips = [decode_audio(fsdd_dir / name, CONFIG) for name in CLIPS]
    batch, lengths = pad_batch(clips)
    features = mel_power_spectrogram(batch, CONFIG).numpy()
    mask = frame_mask(lengths, features.shape[1], CONFIG).numpy()
    for row, clip in enumerate(clips):
        frames = CONFIG.num_frames(len(clip))
        assert mask[row].sum() == frames and mask[row, :frames].all()
        # The last real frames see padding zeros exactly as librosa's centring zeros.
        assert_parity(features[row, :frames], librosa_mel(clip, CONFIG))


def test_frame_mask_counts() -> None:
    mask = frame_mask(np.array([1, 159, 160, 480], np.int32), 5, CONFIG).numpy()
    assert mask.dtype == bool and mask.shape == (4, 5)
    assert mask.sum(axis=1).tolist() == [1, 1, 2, 4]
    assert mask[3].tolist() == [True, True, True, True, False]


def test_pad_batch_shapes() -> None:
    batch, lengths = pad_batch([np.ones(3, np.float32), np.ones(1, np.float32)])
    assert batch.dtype == np.float32 and batch.shape == (2, 3)
    assert lengths.dtype == np.int32 and lengths.tolist() == [3, 1]
    assert batch[1].tolist() == [1.0, 0.0, 0.0]
    assert pad_batch([])[0].shape == (0, 1)


def test_config_round_trip_and_validation() -> None:
    config = AudioConfig(sample_rate=8000, fmax=3000.0)
    assert AudioConfig.from_dict(config.to_dict()) == config
    with pytest.raises(InvalidInput, match="unknown"):
        AudioConfig.from_dict({**config.to_dict(), "window": "hamming"})
    with pytest.raises(InvalidInput, match="n_fft"):
        AudioConfig(n_fft=511)
    with pytest.raises(InvalidInput, match="fmax"):
        AudioConfig(sample_rate=8000, fmax=5000.0)


def test_decode_from_path_resamples(fsdd_dir: Path) -> None:
    path = fsdd_dir / CLIPS[0]
    native, rate = soundfile.read(path, dtype="float32")
    assert rate == 8000
    y = decode_audio(path, CONFIG)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - 2 * len(native)) <= 1
    assert decode_audio(str(path), AudioConfig(sample_rate=8000)).tolist() == native.tolist()


def test_decode_from_wav_bytes_equals_path(fsdd_dir: Path) -> None:
    path = fsdd_dir / CLIPS[1]
    np.testing.assert_array_equal(decode_audio(path.read_bytes(), CONFIG), decode_audio(path, CONFIG))


def test_decode_raw_pcm_is_resampled(fsdd_dir: Path) -> None:
    native, rate = soundfile.read(fsdd_dir / CLIPS[0], dtype="float32")
    y = decode_audio(native.astype("<f4").tobytes(), CONFIG, pcm_sample_rate=rate)
    np.testing.assert_array_equal(y, decode_audio(fsdd_dir / CLIPS[0], CONFIG))
    with pytest.raises(InvalidInput, match="whole float32"):
        decode_audio(b"\x00" * 6, CONFIG, pcm_sample_rate=rate)


def test_stereo_is_downmixed(tmp_path: Path) -> None:
    t = np.arange(1600) / 16000
    left, right = np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 660 * t)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    y = decode_audio(path, CONFIG)
    np.testing.assert_allclose(y, (left + right) / 2, atol=1e-6)


def test_one_sample_clip_is_valid() -> None:
    y = decode_audio(np.float32([0.25]).tobytes(), CONFIG, pcm_sample_rate=16000)
    assert y.tolist() == [0.25]
    assert log_mel(y[None, :], CONFIG).shape == (1, 1, CONFIG.n_mels)


def test_silence_gives_finite_log_mel() -> None:
    y = decode_audio(np.zeros(16000, "<f4").tobytes(), CONFIG, pcm_sample_rate=16000)
    features = log_mel(y[None, :], CONFIG).numpy()
    assert features.shape == (1, CONFIG.num_frames(16000), CONFIG.n_mels)
    assert np.isfinite(features).all()


def test_undecodable_bytes_are_invalid() -> None:
    with pytest.raises(InvalidInput, match=r"^audio: could not decode .*\(Format not recognised"):
        decode_audio(b"this is not a sound file" * 10, CONFIG)


def test_empty_input_is_invalid() -> None:
    with pytest.raises(InvalidInput, match="^audio: contains no samples"):
        decode_audio(b"", CONFIG)
    with pytest.raises(InvalidInput, match="^audio: contains no samples"):
        decode_audio(b"", CONFIG, pcm_sample_rate=16000)


def test_wav_with_no_frames_is_invalid() -> None:
    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros(0, np.float32), 16000, format="WAV")
    with pytest.raises(InvalidInput, match="^audio: contains no samples"):
        decode_audio(buffer.getvalue(), CONFIG)


def test_duration_limit_is_checked_before_decoding(fsdd_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded despite the header")

    monkeypatch.setattr(soundfile, "read", no_decoding)
    path = fsdd_dir / CLIPS[0]
    limits = Limits(max_audio_seconds=0.1)
    with pytest.raises(LimitExceeded, match="^audio: .*max_audio_seconds"):
        decode_audio(path, CONFIG, limits=limits)
    with pytest.raises(LimitExceeded, match="max_audio_seconds"):
        decode_audio(path.read_bytes(), CONFIG, limits=limits)
    with pytest.raises(LimitExceeded, match="max_audio_seconds"):
        decode_audio(np.zeros(1601, "<f4").tobytes(), CONFIG, pcm_sample_rate=16000, limits=limits)


def test_channel_and_rate_limits(tmp_path: Path) -> None:
    path = tmp_path / "wide.wav"
    soundfile.write(path, np.zeros((100, 3), np.float32), 16000)
    with pytest.raises(LimitExceeded, match="max_audio_channels"):
        decode_audio(path, CONFIG, limits=Limits(max_audio_channels=2))
    with pytest.raises(LimitExceeded, match="max_audio_sample_rate"):
        decode_audio(path, CONFIG, limits=Limits(max_audio_sample_rate=8000))


def test_non_finite_pcm_is_invalid() -> None:
    with pytest.raises(InvalidInput, match="^audio: .*finite"):
        decode_audio(np.float32([0.0, np.nan, 0.1]).tobytes(), CONFIG, pcm_sample_rate=16000)
    with pytest.raises(InvalidInput, match="finite"):
        decode_audio(np.float32([np.inf]).tobytes(), CONFIG, pcm_sample_rate=16000)


def test_missing_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="^audio: "):
        decode_audio(tmp_path / "absent.wav", CONFIG)


def test_non_audio_file_is_invalid(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("not audio at all\n" * 50)
    with pytest.raises(InvalidInput, match="^audio: could not decode notes.wav"):
        decode_audio(path, CONFIG)


def test_huge_sample_values_are_rejected_before_they_overflow() -> None:
    pcm = np.full(800, 1e30, dtype="<f4").tobytes()
    with pytest.raises(InvalidInput, match="within"):
        decode_audio(pcm, CONFIG, pcm_sample_rate=8000)
