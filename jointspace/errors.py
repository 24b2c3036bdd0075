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
