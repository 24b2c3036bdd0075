"""Long-running operations of one index: started, watched, listed and cancelled by name.

One operation runs at a time per index, in a background thread: a second request while one runs
is refused with ABORTED naming the running one (rather than queued: a queued rebuild of a catalog
that the running one already covers is wasted work, and the caller can decide whether to wait,
cancel, or retry). Repeating a request id returns the operation it started.

Cancellation is cooperative: the work calls `OperationControl.report` between batches, and that
raises `Cancelled` once a cancel was asked for; the builder then removes its staging folder, so
a cancelled rebuild publishes nothing. Once the work passes its point of no return (rebuild.py:
the switch of `CURRENT`), a cancel is too late and the operation finishes.

Operations live in memory: after a restart they are gone (GetOperation answers NOT_FOUND), and a
rebuild that was running is not resumed; its partial files are removed at start.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from jointspace.core.errors import (
    Aborted,
    Cancelled,
    InvalidInput,
    JointspaceError,
    NotFound,
    log_internal,
    quoted,
)
from jointspace.core.faults import pause_point

logger = logging.getLogger(__name__)

RUNNING, SUCCEEDED, FAILED, CANCELLED = "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"
KEEP_FINISHED = 100


@dataclass(frozen=True)
class OperationStatus:
    """A consistent snapshot of one operation, safe to read while the work goes on."""

    name: str
    state: str = RUNNING
    phase: str = "queued"
    done: int = 0
    total: int = 0
    error: JointspaceError | None = None  # FAILED or CANCELLED: what went wrong
    generation: str = ""  # SUCCEEDED: the generation that went live
    validation: dict[str, Any] | None = None  # a gated rebuild's measurement
    request_id: str = ""
    created: float = field(default_factory=time.time)

    @property
    def finished(self) -> bool:
        return self.state != RUNNING


class RebuildObserver(Protocol):
    """Who else hears of rebuilds (the API layer's Prometheus metrics): set on `Operations`, so
    that this layer reports without knowing who listens."""

    def progress(self, done: int, total: int | None) -> None: ...

    def finished(self, outcome: str) -> None: ...


class Unobserved:
    def progress(self, done: int, total: int | None) -> None:
        pass

    def finished(self, outcome: str) -> None:
        pass


class OperationControl:
    """What the work sees of its operation: progress reports, which are also where a cancel
    takes effect, and a place for the gate's figures."""

    def __init__(self, registry: Operations, name: str) -> None:
        self._registry, self.name = registry, name
        self.cancel_requested = threading.Event()
        self.committed = False  # past the point of no return: cancel no longer applies

    def report(self, phase: str, done: int, total: int) -> None:
        self.check_cancelled()
        self._registry._update(self.name, phase=phase, done=done, total=total)
        self._registry.observer.progress(done, total)
        if done or not total:  # counted phases pause after their first step, others at their start
            pause_point(phase)

    def check_cancelled(self) -> None:
        if self.cancel_requested.is_set() and not self.committed:
            raise Cancelled(f"operation {self.name} was cancelled; nothing was published")

    def record_validation(self, figures: dict[str, Any]) -> None:
        self._registry._update(self.name, validation=figures)


class Operations:
    def __init__(self, keep_finished: int = KEEP_FINISHED) -> None:
        self._lock = threading.Lock()
        self._statuses: dict[str, OperationStatus] = {}  # insertion order: oldest first
        self._controls: dict[str, OperationControl] = {}
        self._keep_finished = keep_finished
        self.observer: RebuildObserver = Unobserved()

    def start(self, work: Callable[[OperationControl], str], request_id: str = "") -> OperationStatus:
        """Run `work` in a thread; it returns the generation that went live."""
        with self._lock:
            for status in self._statuses.values():
                if request_id and status.request_id == request_id:
                    return status
            running = next((s for s in self._statuses.values() if not s.finished), None)
            if running is not None:
                raise Aborted(f"operation {running.name} is already rebuilding this index ({running.phase}, "
                              f"{running.done}/{running.total}); wait for it or cancel it, then retry")
            name = f"operations/rebuild-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
            status = OperationStatus(name, request_id=request_id)
            control = OperationControl(self, name)
            self._statuses[name], self._controls[name] = status, control
            self._forget_old()
        threading.Thread(target=self._run, args=(work, control), name="jointspace-rebuild", daemon=True).start()
        return status

    def _run(self, work: Callable[[OperationControl], str], control: OperationControl) -> None:
        try:
            generation = work(control)
        except Cancelled as error:
            self._finish(control.name, CANCELLED, error=error)
        except JointspaceError as error:
            self._finish(control.name, FAILED, error=error)
        except Exception as error:  # a bug: the operation fails, the server goes on serving
            self._finish(control.name, FAILED, error=log_internal(logger, f"operation {control.name}", error))
        else:
            self._finish(control.name, SUCCEEDED, generation=generation)

    def _finish(self, name: str, state: str, **values: Any) -> None:
        self._update(name, state=state, **values)
        self.observer.finished(state.lower())
        status = self.get(name)
        logger.info("operation %s: %s%s", name, state.lower(),
                    f" ({status.error})" if status.error else f", {status.generation} is live")

    def _update(self, name: str, **values: Any) -> None:
        with self._lock:
            self._statuses[name] = replace(self._statuses[name], **values)

    def _forget_old(self) -> None:
        finished = [n for n, s in self._statuses.items() if s.finished]
        for name in finished[: max(0, len(finished) - self._keep_finished)]:
            del self._statuses[name], self._controls[name]

    def get(self, name: str) -> OperationStatus:
        if not name:
            raise InvalidInput("name: empty; give an operation name as RebuildIndex returned it")
        with self._lock:
            status = self._statuses.get(name)
        if status is None:
            raise NotFound(f"name: no operation {quoted(name)} on this server (operations are kept in memory "
                           f"for the last {self._keep_finished} finished ones, and not across restarts)")
        return status

    def list(self) -> list[OperationStatus]:
        """Newest first."""
        with self._lock:
            return list(reversed(self._statuses.values()))

    def cancel(self, name: str) -> OperationStatus:
        """Ask a running operation to stop; a finished one is returned as it is."""
        status = self.get(name)
        if not status.finished:
            self._controls[name].cancel_requested.set()
        return self.get(name)
