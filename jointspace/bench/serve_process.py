"""`jointspace serve` in a child process, its JSON log lines read as they come: for benchmarks
that must not share a Python interpreter (and its GIL) with the server they load, and for tests
that kill the server."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time


class ServeProcess:
    def __init__(self, args: list[str], env: dict[str, str] | None = None,
                 program: tuple[str, ...] = ("-m", "jointspace.cli", "serve"),
                 wrapper: tuple[str, ...] = ()) -> None:
        """`args` follow `jointspace serve` (or `program`, another server that logs the same way);
        `--log-format json` lets `wait_for` read the log. `wrapper` runs it under another
        program, e.g. `fiu-run -x` to inject I/O faults."""
        self.process = subprocess.Popen([*wrapper, sys.executable, *program, *args],
                                        stderr=subprocess.PIPE, text=True,
                                        env=None if env is None else {**os.environ, **env})
        self.records: queue.Queue[dict] = queue.Queue()
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None  # started with stderr=PIPE
        for line in self.process.stderr:
            self.lines.append(line)
            if line.startswith("{"):
                self.records.put(json.loads(line))

    def wait_for(self, words: str, timeout: float = 120) -> dict:
        """The first log record (from now on) whose message contains `words`; RuntimeError with
        the end of the log if the process exits first, queue.Empty after `timeout` seconds."""
        end = time.monotonic() + timeout
        while True:
            try:
                record = self.records.get(timeout=min(max(end - time.monotonic(), 0.01), 0.5))
            except queue.Empty:
                if self.process.poll() is not None and self.records.empty():
                    tail = "".join(self.lines[-5:]).strip()
                    raise RuntimeError(f"the server exited ({self.process.returncode}) before "
                                       f"logging {words!r}: {tail}") from None
                if time.monotonic() >= end:
                    raise
                continue
            if words in record["message"]:
                return record
