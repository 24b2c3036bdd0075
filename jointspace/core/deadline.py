"""The current call's deadline, visible to code deep below the service without passing it along.

A thread serving a gRPC call cannot be interrupted, so long work (decoding a batch of audio
clips, then running the model) checks `check_deadline(step)` between its steps and gives up with
DEADLINE_EXCEEDED (or CANCELLED when the client went away) instead of computing an answer nobody
waits for. The deadline lives in a context variable: the server's work pool sets it around each call
(`server/api/app.py`, `work_deadline`), code outside a call (index builds, the CLI) sees none and never stops.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from jointspace.core.errors import Cancelled, DeadlineExceeded


def _never() -> bool:
    return False


@dataclass(frozen=True)
class Deadline:
    expires_at: float  # time.monotonic()
    seconds: float  # the budget it started with, for messages
    is_cancelled: Callable[[], bool] = _never

    @classmethod
    def after(cls, seconds: float, is_cancelled: Callable[[], bool] = _never) -> Deadline:
        return cls(time.monotonic() + seconds, seconds, is_cancelled)

    def remaining(self) -> float:
        return max(self.expires_at - time.monotonic(), 0.0)

    def check(self, step: str) -> None:
        if self.is_cancelled():
            raise Cancelled(f"the client cancelled the call before {step}")
        if time.monotonic() >= self.expires_at:
            raise DeadlineExceeded(f"deadline of {self.seconds:g} s exceeded before {step}")


_current: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar("jointspace_deadline", default=None)


@contextlib.contextmanager
def deadline_scope(deadline: Deadline) -> Iterator[Deadline]:
    token = _current.set(deadline)
    try:
        yield deadline
    finally:
        _current.reset(token)


def check_deadline(step: str) -> None:
    """Raise DeadlineExceeded / Cancelled if the current call is over; no-op outside a call."""
    deadline = _current.get()
    if deadline is not None:
        deadline.check(step)


def current_deadline() -> Deadline | None:
    """The current call's deadline, None outside a call: for a step that waits on something else
    (a decoder process) and must stop waiting in time."""
    return _current.get()
