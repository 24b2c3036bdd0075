"""Request ids of online writes: a retried Upsert or Delete is answered, not applied again.

A client whose call ends in DEADLINE_EXCEEDED or UNAVAILABLE cannot know whether the server
applied it. Retried with the same `request_id`, a write that was applied gets its first answer
back (a Delete retried without this would be NOT_FOUND; an Upsert retried after another client
wrote the key would undo that write). The same id with a different request is INVALID_ARGUMENT,
as AIP-155 asks. The ids of the last `KEEP` acknowledged writes are kept, in memory: a retry that
crosses a server restart is applied again (documented in docs/guide.md's lifecycle section).
"""

from __future__ import annotations

import collections
import hashlib
import json
import pickle
from typing import Any

from jointspace.core.errors import InvalidInput

KEEP = 10_000  # a retry follows its first try within seconds; ~1 MB of ids and digests


def fingerprint(kind: str, items: Any) -> bytes:
    """What a write asks for, as a digest (values may be audio bytes or vectors)."""
    return hashlib.sha256(pickle.dumps((kind, items), protocol=5)).digest()


def metadata_text(metadata: dict[str, Any] | None) -> str:
    """Metadata in a form that does not depend on the order of its fields."""
    return json.dumps(metadata or {}, sort_keys=True, default=str)


class RecentWrites:
    """Request id -> (fingerprint, answer) of acknowledged writes. The engine's writer lock
    serialises every call, so this needs no lock of its own."""

    def __init__(self, keep: int = KEEP) -> None:
        self.keep = keep
        self._answers: collections.OrderedDict[str, tuple[bytes, int]] = collections.OrderedDict()

    def answer(self, request_id: str, digest: bytes) -> int | None:
        """The first answer to this request, or None if it was not acknowledged yet."""
        if not request_id or request_id not in self._answers:
            return None
        known, answer = self._answers[request_id]
        if known != digest:
            raise InvalidInput(f"request_id {request_id!r}: already used for a different write; "
                               "use a new id for a new request")
        return answer

    def record(self, request_id: str, digest: bytes, answer: int) -> None:
        if request_id:
            self._answers[request_id] = (digest, answer)
            while len(self._answers) > self.keep:
                self._answers.popitem(last=False)
