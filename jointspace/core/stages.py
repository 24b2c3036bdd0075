"""Where a query's time goes inside the server: decoding, encoding, searching.

The steps that take a query's time live in different layers (audio decoding in the encoders, the
index search in the server), and the place that reports them (Prometheus, in the API layer)
must not be imported by them. So each step times itself with `timed(stage)` and hands the
seconds to whatever observer the server installed; with none installed (the CLI, index builds,
a server without `--metrics-port`) a step costs one check.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

DECODE = "decode"  # audio bytes to samples, in the decode pool's worker processes
EMBED = "embed"  # a request's values to vectors: decoding, waiting for a batch, the model call
SEARCH = "search"  # the index and the online changes, exclusions and filters
STAGES = (DECODE, EMBED, SEARCH)

Observer = Callable[[str, float], None]
_observers: list[Observer] = []


def observe_stages(observer: Observer) -> None:
    """Call `observer(stage, seconds)` after every timed step of this process from now on."""
    if observer not in _observers:
        _observers.append(observer)


_UNTIMED = contextlib.nullcontext()


class _Timer:
    """A class, not a generator context manager: it runs on every Search."""

    __slots__ = ("stage", "started")

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.started = 0.0

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, *exc_info: object) -> None:
        seconds = time.perf_counter() - self.started
        for observer in _observers:
            observer(self.stage, seconds)


def timed(stage: str) -> contextlib.AbstractContextManager[None]:
    """Time the block as `stage` (one of STAGES), also when it raises."""
    return _Timer(stage) if _observers else _UNTIMED
