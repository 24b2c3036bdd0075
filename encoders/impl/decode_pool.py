"""Audio decoding in worker processes, so that hostile audio cannot take the server down.

libsndfile, the MP3/OGG decoders and soxr are C code reading bytes a client sent. A crash there
(a segfault) would kill the whole server, and a decode that hangs or allocates without end would
hold a worker thread and memory for good. A server therefore decodes every clip in a small pool
of worker processes:

- a worker that dies (a crash) makes that clip INVALID_ARGUMENT, and is replaced;
- a decode that runs past `max_audio_decode_seconds` is killed (RESOURCE_EXHAUSTED), or past the
  call's deadline (DEADLINE_EXCEEDED), and its worker replaced;
- each worker's address space is capped at what it already maps plus `max_audio_decode_mb`
  (`resource.setrlimit`), so a runaway allocation fails there (RESOURCE_EXHAUSTED).

The pool is persistent and warmed when the server starts: a call costs two pipe messages, not a
process (docs/benchmarks.md has the measured cost). Workers come from a "forkserver" (or
"spawn") context, never a plain fork: forking a process that runs TensorFlow and gRPC threads is
unsafe. The forkserver preloads the decoding modules (no TensorFlow), so replacing a worker is a
fork of a small, already-warm process.

Tests reach these paths through jointspace/core/faults.py: with its decoder markers installed in the
server process (by code, never by the environment), content that is exactly one of the markers
makes the worker crash with a real segfault, hang, or allocate without end. Each job carries that
setting to its worker, which has no installed faults of its own. Otherwise (always, outside
tests) the markers are ordinary undecodable bytes.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import signal
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from jointspace.core import faults
from jointspace.core.deadline import current_deadline
from jointspace.core.errors import DeadlineExceeded, InvalidInput, JointspaceError, LimitExceeded, NotReady
from jointspace.core.limits import Limits

logger = logging.getLogger(__name__)

# Waiting for a free worker outside a call (a rebuild embedding a catalog): every decode ends
# within max_audio_decode_seconds, so this is only reached when workers cannot be started at all.
IDLE_WAIT_SECONDS = 120.0


@dataclass(frozen=True)
class _Job:
    source: str | Path | bytes
    sample_rate: int
    pcm_sample_rate: int | None
    limits: Limits
    decode_markers: bool  # faults.decode_markers_enabled() in the server process


def _limit_memory(megabytes: int) -> None:
    """Cap the address space at what the worker maps now plus `megabytes` (soft limit only, so
    the next job can set its own)."""
    try:
        import resource

        with open("/proc/self/statm") as statm:
            mapped = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (ImportError, OSError, ValueError):
        return  # no /proc or no rlimits (not Linux): the time limit still applies
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    soft = mapped + (megabytes << 20)
    resource.setrlimit(resource.RLIMIT_AS, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))


def _decode(job: _Job) -> np.ndarray:
    from jointspace.encoders.impl.audio_decode import decode_to_rate

    if job.decode_markers:
        faults.decode_fault(job.source)
    return decode_to_rate(job.source, job.sample_rate, pcm_sample_rate=job.pcm_sample_rate, limits=job.limits)


def _serve(connection: Connection) -> None:
    """A worker: decode jobs until the pipe closes. Errors travel back as JointspaceErrors."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle
    while True:
        try:
            job: _Job = connection.recv()
        except EOFError:
            return
        _limit_memory(job.limits.max_audio_decode_mb)
        try:
            answer: tuple[bool, Any] = (True, _decode(job))
        except JointspaceError as error:
            answer = (False, error)
        except MemoryError:
            answer = (False, LimitExceeded(
                f"audio: decoding needed more than max_audio_decode_mb ({job.limits.max_audio_decode_mb} MB)"))
        except Exception as error:  # a decoder failing in a way decode_to_rate does not expect
            answer = (False, InvalidInput(f"audio: could not decode the content ({type(error).__name__}: {error})"))
        connection.send(answer)


def _context() -> Any:
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if context.get_start_method() == "forkserver":
        # Workers fork from a process that has imported these (no TensorFlow, no gRPC threads).
        context.set_forkserver_preload(["jointspace.encoders.impl.audio_decode", __name__])
    return context


class _Worker:
    def __init__(self, context: Any) -> None:
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child,), name="jointspace-audio-decoder", daemon=True)
        self.process.start()
        child.close()

    def stop(self) -> None:
        """Kill (a hung decoder ignores anything gentler) and reap."""
        self.process.kill()
        self.process.join(5)
        self.connection.close()

    def death(self) -> str:
        """How the process ended, for the error message: `SIGSEGV`, `exit code 1`."""
        self.process.join(5)
        code = self.process.exitcode
        if code is None:
            return "its pipe broke"
        return f"{signal.Signals(-code).name}" if code < 0 else f"exit code {code}"


class DecodePool:
    """`size` worker processes, started in the background; `decode` blocks until one is free."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._context = _context()
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._closed = False
        self._starters: list[threading.Thread] = []
        self._start_in_background(size)

    def _start_in_background(self, count: int) -> None:
        starter = threading.Thread(target=self._start_workers, args=(count,), name="jointspace-decoder-start",
                                   daemon=True)
        self._starters = [t for t in self._starters if t.is_alive()] + [starter]
        starter.start()

    def _start_workers(self, count: int) -> None:
        for _ in range(count):
            try:
                worker = _Worker(self._context)
            except Exception:
                logger.exception("could not start an audio decoder process")
                return
            self._release(worker)

    def decode(self, source: str | Path | bytes, sample_rate: int, pcm_sample_rate: int | None,
               limits: Limits) -> np.ndarray:
        """As `audio_decode.decode_to_rate`, in a worker process, within the call's deadline and
        `limits.max_audio_decode_seconds`."""
        if self._closed:
            raise NotReady("the audio decoder pool is closed (the server is stopping)")
        faults.pause_point("decoding")
        deadline = current_deadline()
        try:
            worker = self._idle.get(timeout=IDLE_WAIT_SECONDS if deadline is None else deadline.remaining())
        except queue.Empty:
            if deadline is not None:
                raise DeadlineExceeded(f"deadline of {deadline.seconds:g} s exceeded while waiting for a free "
                                       f"audio decoder ({self.size} decode in parallel)") from None
            raise NotReady("no audio decoder process could be started; see the server log") from None
        job = _Job(source, sample_rate, pcm_sample_rate, limits, faults.decode_markers_enabled())
        budget = limits.max_audio_decode_seconds
        remaining = None if deadline is None else deadline.remaining()
        deadline_binds = remaining is not None and remaining < budget
        try:
            worker.connection.send(job)
            finished = worker.connection.poll(remaining if deadline_binds else budget)
            # The worker answers (True, samples) or (False, the exception it raised).
            reply: tuple[bool, Any] = worker.connection.recv() if finished else (False, None)
            ok, value = reply
        except (EOFError, OSError):
            self._replace(worker)
            raise InvalidInput(f"audio: the decoder crashed on this content ({worker.death()}); the "
                               f"content was refused, the server goes on") from None
        if not finished:
            self._replace(worker)
            if deadline_binds and deadline is not None:
                raise DeadlineExceeded(f"deadline of {deadline.seconds:g} s exceeded while decoding audio; "
                                       f"the decoder was stopped")
            raise LimitExceeded(f"audio: decoding took longer than max_audio_decode_seconds ({budget:g} s); "
                                f"the decoder was stopped")
        self._release(worker)
        if not ok:
            raise value
        return value

    def _release(self, worker: _Worker) -> None:
        if self._closed:
            worker.stop()
        else:
            self._idle.put(worker)

    def _replace(self, worker: _Worker) -> None:
        """Kill a worker that crashed or ran away and start another in the background."""
        worker.stop()
        if not self._closed:
            self._start_in_background(1)

    def close(self) -> None:
        """Stop every worker, those still starting included: a process that exits while a worker
        is still reading its start-up data from the pipe leaves that worker printing a traceback."""
        self._closed = True
        for starter in list(self._starters):
            starter.join(10)  # a worker started after this point is stopped by _release
        while True:
            try:
                self._idle.get_nowait().stop()
            except queue.Empty:
                return


_shared: DecodePool | None = None
_shared_lock = threading.Lock()


def default_size() -> int:
    """Two to four: decoding a clip takes a millisecond or so, the model call after it longer."""
    return max(2, min(4, os.cpu_count() or 1))


def start_shared_pool(size: int | None = None) -> DecodePool:
    """The process's pool, started (in the background) on the first call; a server calls this
    at start, after which every audio decode of the process goes through it."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = DecodePool(size or default_size())
        return _shared


def shared_pool() -> DecodePool | None:
    """The pool if a server started one; None in the CLI, training and index builds, which
    decode files their own user chose, in process."""
    return _shared


def stop_shared_pool() -> None:
    """Close the process's pool: decoding is in process again (benchmarks compare the two)."""
    global _shared
    with _shared_lock:
        pool, _shared = _shared, None
    if pool is not None:
        pool.close()
