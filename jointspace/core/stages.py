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
from collections.abc import Callable, Iterator

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


@contextlib.contextmanager
def timed(stage: str) -> Iterator[None]:
    """Time the block as `stage` (one of STAGES), also when it raises."""
    if not _observers:
        yield
        return
    started = time.perf_counter()
    try:
        yield
    finally:
        seconds = time.perf_counter() - started
        for observer in _observers:
            observer(stage, seconds)
