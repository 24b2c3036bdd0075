"""Server logging: plain lines for people, or JSON lines (`--log-format json`) for pipelines.

Every record becomes one object with time, level, logger and message, plus the fields passed as
`extra` (the access log's method, code, duration_ms, peer) and the traceback of an exception, so
nothing has to be parsed back out of the message text.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any

FORMATS = ("text", "json")
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(log_format: str = "text", stream: Any = None) -> None:
    """Route the `jointspace` loggers to stderr (INFO and up) in the chosen format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter("%(message)s"))
    root = logging.getLogger("jointspace")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False
