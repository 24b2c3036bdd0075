"""One model call for the queries of concurrent requests.

A SavedModel call has a fixed cost that dwarfs the per-value work at query sizes, so requests of
one encoder that arrive while its call runs wait for it and then go together in the next call.
Nothing waits when the server is idle: a request that finds no call running runs at once, alone.
Per-request work (the checks, audio decoding) stays on each request's own thread, in parallel;
only the model call is shared. The thread whose request heads the queue runs the shared call,
so no thread of its own is needed and each call runs under a waiting request's deadline.

A failed shared call does not say whose value caused it (one unknown id fails the whole call),
so each request of a failed batch runs again alone, on its own thread and under its own
deadline, and gets its own answer or error: one bad request never fails the others.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jointspace.core.faults import pause_point
from jointspace.encoders.base import ServingEncoder
from jointspace.encoders.inference import VECTOR, EncoderSet


@dataclass(eq=False)
class _Ask:
    """One request's prepared values, and how its thread learns what became of them."""

    prepared: list[Any]
    woken: threading.Event = field(default_factory=threading.Event)
    lead: bool = False  # this request's thread runs the next shared call
    vectors: np.ndarray | None = None
    error: BaseException | None = None  # of a call that ran this request alone
    alone: bool = False  # its shared call failed: run it again by itself


class EncodeBatcher:
    """Shares model calls among concurrent `embed` calls of the same encoder, at most
    `max_values` values in one call (a request with more runs alone)."""

    def __init__(self, max_values: int) -> None:
        self.max_values = max_values
        self._lock = threading.Lock()
        # Per encoder with a call running: the requests waiting for the next one. An encoder
        # leaves the map as soon as it is idle, so a swapped-out model is not held.
        self._waiting: dict[tuple[ServingEncoder, str], deque[_Ask]] = {}

    def embed(self, encoders: EncoderSet, modality: str, values: Sequence[Any]) -> np.ndarray:
        """As `encoders.embed(modality, values)`."""
        if modality == VECTOR or not values:
            return encoders.embed(modality, values)
        encoder = encoders.encoder(modality)
        key = (encoder, modality)
        ask = _Ask(encoder.prepare(modality, values))
        with self._lock:
            waiting = self._waiting.get(key)
            if waiting is None:
                waiting = self._waiting[key] = deque()
                ask.lead = True
            waiting.append(ask)
        if not ask.lead:
            ask.woken.wait()  # an answer, an error, or this thread's turn to lead
        if ask.lead:
            self._lead(key, waiting)
        if ask.error is not None:
            raise ask.error
        if ask.alone:
            return encoder.embed_prepared(modality, ask.prepared)
        assert ask.vectors is not None  # set by the call that took this request
        return ask.vectors

    def _lead(self, key: tuple[ServingEncoder, str], waiting: deque[_Ask]) -> None:
        """Run one call for the requests at the head of the queue, then hand the queue on."""
        with self._lock:
            batch = [waiting.popleft()]
            total = len(batch[0].prepared)
            while waiting and total + len(waiting[0].prepared) <= self.max_values:
                total += len(waiting[0].prepared)
                batch.append(waiting.popleft())
        try:
            pause_point("encoding")
            _run(*key, batch)
        finally:
            with self._lock:
                if waiting:
                    waiting[0].lead = True
                    waiting[0].woken.set()
                else:
                    del self._waiting[key]
            for ask in batch:
                ask.woken.set()


def _run(encoder: ServingEncoder, modality: str, batch: list[_Ask]) -> None:
    """One model call for the batch, its rows handed out in request order."""
    try:
        vectors = encoder.embed_prepared(modality, [value for ask in batch for value in ask.prepared])
    except Exception as error:
        if len(batch) == 1:
            batch[0].error = error
        for ask in batch:
            ask.alone = len(batch) > 1
        return
    start = 0
    for ask in batch:
        ask.vectors = vectors[start:start + len(ask.prepared)]
        start += len(ask.prepared)
