"""Errors that carry their meaning to the edges: the CLI prints them in one line, the gRPC service
maps each class to a status code. Code deeper down raises these instead of bare ValueErrors so
that a user always learns which input was wrong.

Messages travel back to whoever sent the request, so they quote input by a short prefix
(`quoted`) and `public_message` bounds them as a whole and removes the server's own paths once,
where an error leaves the process: a client learns what was wrong with its request, not the
layout of the server's disks, and a message never outgrows what a client accepts in a status.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Sequence
from pathlib import Path

QUOTE_CHARS = 60
# Well below the 8 KiB of headers a gRPC client accepts by default: a longer status message
# makes the client drop the call with a transport error instead of reporting the status.
MESSAGE_CHARS = 1_000
# A run of this many characters without a space is echoed input (a server path is removed
# before): it is cut like a quote.
_ECHO = re.compile(rf"\S{{{2 * QUOTE_CHARS},}}")


class JointspaceError(Exception):
    """Base class: an error whose message is meant for the user."""


class InternalError(JointspaceError):
    """A bug, found where the server answers; gRPC INTERNAL. Its message gives an error id only:
    the details, which may hold anything, go to the server's log under that id."""

    def __init__(self, message: str, error_id: str = "") -> None:
        super().__init__(message)
        self.error_id = error_id


def log_internal(logger: logging.Logger, what: str, error: BaseException) -> InternalError:
    """An unexpected exception: logs it with its traceback under a new error id, and returns what
    the client is told, the id and never the exception's text (which may hold paths, data,
    anything)."""
    error_id = uuid.uuid4().hex[:16]
    logger.error("%s failed (error id %s)", what, error_id, exc_info=error)
    return InternalError(f"internal error {error_id}; the server log has the details under this id", error_id)


class InvalidInput(JointspaceError):
    """Malformed input; gRPC INVALID_ARGUMENT."""


class NotFound(JointspaceError):
    """An unknown id, key, file or operation; gRPC NOT_FOUND."""


class LimitExceeded(JointspaceError):
    """Input over a configured size limit; gRPC RESOURCE_EXHAUSTED."""


class NotReady(JointspaceError):
    """No index or model loaded yet; gRPC FAILED_PRECONDITION."""


class Unimplemented(JointspaceError):
    """A method that is defined in the API but not offered by this version; gRPC UNIMPLEMENTED."""


class PermissionDenied(JointspaceError):
    """A request the caller may not make, e.g. a path outside the data directory; gRPC
    PERMISSION_DENIED."""


class DeadlineExceeded(JointspaceError):
    """The call's deadline (the client's, or the server's maximum) passed between two steps of
    the work; gRPC DEADLINE_EXCEEDED."""


class Cancelled(JointspaceError):
    """The client went away; the work stops at the next step; gRPC CANCELLED."""


class Aborted(JointspaceError):
    """A request that conflicts with work already running, e.g. a second rebuild of the same
    index; gRPC ABORTED (retry once the other work is done)."""


class Corrupt(JointspaceError):
    """Stored state that fails its checks (a checksum, a file that cannot be read back): an index
    generation, the journal; gRPC DATA_LOSS."""


class StorageError(JointspaceError):
    """A write to disk failed (disk full, I/O error); nothing of the change was applied, so the
    caller may retry once the disk is fixed; gRPC UNAVAILABLE."""


def quoted(value: object, limit: int = QUOTE_CHARS) -> str:
    """The repr of what a client sent, cut to its first `limit` characters: enough to recognise
    it, never a 16 KB id or path back."""
    if isinstance(value, str):
        return repr(value) if len(value) <= limit else f"{value[:limit]!r}… ({len(value):,} characters)"
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}…"


def public_message(error: JointspaceError, server_paths: Sequence[Path | str] = ()) -> str:
    """What a client is told of `error`: its message with each of `server_paths` (folders; the
    one that clients' relative paths start from first) removed from the paths it names, so that
    they read as the client would name them, long unbroken runs cut and the whole bounded. (An
    unexpected exception is never told: `log_internal` gives the client an error id instead.)"""
    text = str(error)
    for folder in map(str, server_paths):
        if folder.strip("/"):
            inside = re.compile(re.escape(folder) + r"(/|(?=[^\w.-])|$)")
            text = inside.sub(lambda match: "" if match.group(1) else ".", text)
    text = _ECHO.sub(lambda match: f"{match.group()[:QUOTE_CHARS]}…", text)
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 1] + "…"
