"""Errors that carry their meaning to the edges: the CLI prints them in one line, the gRPC service
maps each class to a status code. Code deeper down raises these instead of bare ValueErrors so
that a user always learns which input was wrong."""


class JointspaceError(Exception):
    """Base class: an error whose message is meant for the user."""


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
