"""Audio front end speed: the in-graph log-mel against librosa on the same decoded clips.

Both sides start from the same float32 waveforms (decoding and resampling are shared host work
and are not timed). librosa runs clip by clip, as an offline feature script would; the graph
runs batches of clips of similar length, as the encoder does when it embeds a catalog or a
micro-batch of queries. The two are timed alternately, pass after pass, so that load from other
processes on a shared machine falls on both. Parity is checked on every clip's own frames.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import librosa
import numpy as np

from jointspace.core.progress import log
from jointspace.data import fsdd
from jointspace.encoders.base import tf
from jointspace.encoders.impl.audio_frontend import LOG_FLOOR, AudioConfig, decode_audio, log_mel, pad_batch


def _librosa_log_mel(clip: np.ndarray, config: AudioConfig) -> np.ndarray:
    power = librosa.feature.melspectrogram(
        y=clip, sr=config.sample_rate, n_fft=config.n_fft, hop_length=config.hop_length,
        n_mels=config.n_mels, fmin=config.fmin, fmax=config.fmax,
    )
    return np.log(power + LOG_FLOOR).T


def _length_batches(clips: list[np.ndarray], batch: int) -> list[tuple[np.ndarray, np.ndarray, list[int]]]:
    order = sorted(range(len(clips)), key=lambda i: len(clips[i]))
    batches = []
    for start in range(0, len(order), batch):
        members = order[start : start + batch]
        waveform, lengths = pad_batch([clips[i] for i in members])
        batches.append((waveform, lengths, members))
    return batches


def _timed(run: Callable[[], Any]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def run(source: Path | None, clips_wanted: int, batch: int, passes: int) -> dict[str, Any]:
    config = AudioConfig()
    paths = [c.path for c in fsdd.list_clips(source or fsdd.shipped_fsdd_dir())][:clips_wanted]
    clips = [decode_audio(p, config) for p in paths]
    batches = _length_batches(clips, batch)
    graph = tf.function(
        lambda w: log_mel(w, config), input_signature=[tf.TensorSpec([None, None], tf.float32)]
    )

    def in_graph() -> list[np.ndarray]:
        return [graph(tf.constant(waveform)).numpy() for waveform, _, _ in batches]

    def with_librosa() -> list[np.ndarray]:
        return [_librosa_log_mel(clip, config) for clip in clips]

    graph_out, librosa_out = in_graph(), with_librosa()  # warm-up (tracing) and parity inputs
    worst = 0.0
    for (_, lengths, members), features in zip(batches, graph_out):
        for row, clip_index in enumerate(members):
            frames = config.num_frames(int(lengths[row]))
            reference = librosa_out[clip_index]
            if reference.shape[0] != frames:
                raise RuntimeError(f"{paths[clip_index]}: librosa made {reference.shape[0]} frames, "
                                   f"the graph {frames}")
            worst = max(worst, float(np.abs(features[row, :frames] - reference).max()))
    graph_times, librosa_times = [], []
    for number in range(passes):
        graph_times.append(_timed(in_graph))
        librosa_times.append(_timed(with_librosa))
        log(f"pass {number + 1}/{passes}: graph {graph_times[-1] * 1e3:.0f} ms, "
            f"librosa {librosa_times[-1] * 1e3:.0f} ms")
    graph_rate = len(clips) / statistics.median(graph_times)
    librosa_rate = len(clips) / statistics.median(librosa_times)
    return {
        "clips": len(clips),
        "mean_clip_seconds": round(float(np.mean([len(c) for c in clips])) / config.sample_rate, 3),
        "batch": batch,
        "passes": passes,
        "graph_clips_per_second": round(graph_rate, 1),
        "librosa_clips_per_second": round(librosa_rate, 1),
        "speedup": round(graph_rate / librosa_rate, 2),
        "max_abs_log_mel_difference": float(f"{worst:.3g}"),
        "config": config.to_dict(),
    }
