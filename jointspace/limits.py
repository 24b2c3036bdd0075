"""Request limits with safe defaults. One object travels from the server config to every place
that checks input, so a limit is defined once and named the same in every error message."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    max_message_bytes: int = 64 * 1024 * 1024
    max_audio_seconds: float = 60.0
    max_audio_sample_rate: int = 192_000
    max_audio_channels: int = 8
    max_text_chars: int = 10_000
    max_k: int = 1_000
    max_batch: int = 1_024
    max_ids: int = 10_000


DEFAULT_LIMITS = Limits()
