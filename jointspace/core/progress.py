"""Progress for long work: a bar on a terminal, plain log lines otherwise (CI logs, pipes)."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any


class Progress:
    """Counts units of work. On a TTY this is a tqdm bar; elsewhere it writes a line at most
    every `interval` seconds and at the end, so logs stay readable."""

    def __init__(self, total: int | None, description: str, unit: str = "it",
                 interval: float = 10.0, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.total, self.description, self.unit, self.interval = total, description, unit, interval
        self.done = 0
        self.started = self.last_line = time.monotonic()
        self.bar = None
        if getattr(self.stream, "isatty", lambda: False)():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=description, unit=unit, file=self.stream, leave=True)

    def update(self, amount: int = 1, **postfix: Any) -> None:
        self.done += amount
        if self.bar is not None:
            self.bar.update(amount)
            if postfix:
                self.bar.set_postfix(postfix, refresh=False)
        elif time.monotonic() - self.last_line >= self.interval:
            self._line(postfix)

    def _line(self, postfix: dict[str, Any]) -> None:
        self.last_line = time.monotonic()
        of = f"/{self.total}" if self.total else ""
        extra = "".join(f" {k}={v}" for k, v in postfix.items())
        elapsed = self.last_line - self.started
        print(f"{self.description}: {self.done}{of} {self.unit} ({elapsed:.1f}s){extra}",
              file=self.stream, flush=True)

    def close(self, **postfix: Any) -> None:
        if self.bar is not None:
            if postfix:
                self.bar.set_postfix(postfix)
            self.bar.close()
        else:
            self._line(postfix)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def log(message: str) -> None:
    """A line for whoever watches: through the `jointspace` logger once the server has set one
    up (so `--log-format json` output stays JSON), else straight to stderr."""
    logger = logging.getLogger("jointspace")
    if logger.handlers:
        logger.info(message)
    else:
        print(message, file=sys.stderr, flush=True)
