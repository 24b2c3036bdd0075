"""Fault injection for tests: installed by a function call, never by the environment.

Tests reach the failure paths of a real server through real gRPC: a write that fails as on a full
disk, a thread stopped at a named point (so that a kill lands between two steps of a rebuild, or
a call stays in flight while the server drains), a decoder that crashes, hangs or eats memory.
These hooks used to be read from environment variables, so a production server that inherited
such a variable would have failed its writes, hung, or let any client crash its decoders. Now
only `install` enables them, and no production entry point calls it: tests call it in process,
and tests/harness_serve.py, a test-only entry point, calls it before the normal CLI when a test
needs a faulty server process. With nothing installed (always, outside tests), a hook costs one
attribute read.

The production code names its hooks:
- write sites (server/index/write_sites.py): "journal", "index", "store", "manifest", "current";
- pause points: a rebuild's phases as operations.py reports them ("embedding" after the first
  batch, "indexing" after the first FAISS file, "placed", "validating", "swapping"), "live"
  (`CURRENT` names the new generation, the server has not swapped to it yet) and "decoding"
  (an audio clip is about to be sent to a decoder process, encoders/impl/decode_pool.py) and
  "encoding" (a model call shared by concurrent requests is about to run,
  server/serving/encode_batcher.py);
- decoder markers: content that is exactly one of the DECODE_* byte strings.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

DECODE_SEGFAULT = b"jointspace-test:segfault"
DECODE_HANG = b"jointspace-test:hang"
DECODE_MEMORY = b"jointspace-test:memory"


class Pause:
    """A pause hook: the first thread to reach its point sets `reached` and waits until `resume`
    is set; later arrivals pass, because a batch reaches some points once per item."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.resume = threading.Event()
        self._taken = threading.Lock()  # acquired once, by the first arrival, and kept

    def __call__(self) -> None:
        if not self._taken.acquire(blocking=False):
            return
        self.reached.set()
        self.resume.wait()


@dataclass(frozen=True)
class Faults:
    """What is injected. `pauses` maps a pause point to the hook its thread calls there."""

    failing_writes: frozenset[str] = frozenset()
    pauses: Mapping[str, Callable[[], None]] = field(default_factory=dict)
    decode_markers: bool = False


_installed = Faults()  # nothing


def install(faults: Faults) -> Faults:
    """Inject `faults` from now on, in this process; returns what was installed before."""
    global _installed
    previous, _installed = _installed, faults
    return previous


@contextmanager
def injected(faults: Faults) -> Iterator[Faults]:
    """`faults` for the block. On the way out every `Pause` is resumed, so that a test that fails
    while a thread waits at a point does not leave that thread (a rebuild, a call) hanging."""
    previous = install(faults)
    try:
        yield faults
    finally:
        install(previous)
        for hook in faults.pauses.values():
            if isinstance(hook, Pause):
                hook.resume.set()


def fail_write(site: str) -> None:
    """Raise ENOSPC, as a full disk would, if `site` is to fail."""
    if site in _installed.failing_writes:
        raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (injected at the {site} write)")


def pause_point(name: str) -> None:
    """Call the hook installed for point `name`, if any."""
    hook = _installed.pauses.get(name)
    if hook is not None:
        hook()


def decode_markers_enabled() -> bool:
    """Whether the decoder markers act; a decode job carries the answer to its worker process,
    which has no installed faults of its own."""
    return _installed.decode_markers


def decode_fault(content: object) -> None:
    """In a decoder process whose job enabled the markers: crash with a real segfault, hang, or
    allocate without end, as a decoder bug would."""
    if content == DECODE_SEGFAULT:
        import ctypes

        ctypes.string_at(0)  # reads address 0: SIGSEGV
    elif content == DECODE_HANG:
        threading.Event().wait()
    elif content == DECODE_MEMORY:
        hog = []
        while True:
            hog.append(bytearray(64 << 20))
