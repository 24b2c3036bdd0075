"""Bearer-token authentication with two roles, as a server interceptor.

Tokens file, one token a line (`#` starts a comment):

    read   3q2+7w...    # may search, embed, read index info and operations
    write  Zm9vYmFy...  # may also change the index: Upsert, Delete, RebuildIndex, CancelOperation

A call without a known token gets UNAUTHENTICATED, a read token on any other method
PERMISSION_DENIED, both as the call starts: the refusal does not wait for the request, so calls
without credentials hold nothing while their bodies trickle in (or never come). Methods are
write-only unless listed as reads, so a method added later is protected until someone decides
otherwise. The health service stays open: load balancers probe it without credentials. Only
digests of the tokens are kept, and they are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from pathlib import Path

import grpc

from jointspace.core.errors import InvalidInput, NotFound
from jointspace.server.api.interceptors import Continuation, method_name, refusing_handler

READ, WRITE = "read", "write"
MIN_TOKEN_CHARS = 16
JOINTSPACE = "jointspace.v1.JointSpace"
OPERATIONS = "google.longrunning.Operations"
REFLECTION = "grpc.reflection.v1alpha.ServerReflection"
OPEN_SERVICES = frozenset({"grpc.health.v1.Health"})
READ_METHODS = frozenset({
    (JOINTSPACE, "Embed"), (JOINTSPACE, "Search"), (JOINTSPACE, "BatchSearch"),
    (JOINTSPACE, "GetIndexInfo"), (JOINTSPACE, "GetEntries"),
    (OPERATIONS, "GetOperation"), (OPERATIONS, "ListOperations"), (OPERATIONS, "WaitOperation"),
    (REFLECTION, "ServerReflectionInfo"),
})


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Tokens:
    def __init__(self, roles: dict[bytes, str]) -> None:
        self._roles = roles  # sha256(token) -> role

    @classmethod
    def read(cls, path: Path) -> Tokens:
        path = Path(path)
        try:
            lines = path.read_text().splitlines()
        except FileNotFoundError:
            raise NotFound(f"tokens file {path}: no such file") from None
        roles: dict[bytes, str] = {}
        for number, line in enumerate(lines, 1):
            words = line.split("#", 1)[0].split()
            if not words:
                continue
            where = f"tokens file {path}:{number}"
            if len(words) != 2 or words[0] not in (READ, WRITE):
                raise InvalidInput(f"{where}: expected 'read TOKEN' or 'write TOKEN'")
            role, token = words
            if len(token) < MIN_TOKEN_CHARS:
                raise InvalidInput(f"{where}: token shorter than {MIN_TOKEN_CHARS} characters")
            if roles.setdefault(_digest(token), role) != role:
                raise InvalidInput(f"{where}: the same token appears with two roles")
        if not roles:
            raise InvalidInput(f"tokens file {path}: no tokens; every call would be refused")
        return cls(roles)

    def role_of(self, token: str | None) -> str | None:
        if not token:
            return None
        presented = _digest(token)
        found = None
        for digest, role in self._roles.items():  # no early exit: timing says nothing
            if hmac.compare_digest(digest, presented):
                found = role
        return found


def bearer_token(metadata: Sequence[tuple[str, str | bytes]] | None) -> str | None:
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
    return None


def required_role(service: str, method: str) -> str:
    return READ if (service, method) in READ_METHODS else WRITE


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, tokens: Tokens) -> None:
        self.tokens = tokens

    async def intercept_service(self, continuation: Continuation,
                                details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        name = method_name(details)
        if handler is None or name.service in OPEN_SERVICES:
            return handler
        role = self.tokens.role_of(bearer_token(details.invocation_metadata))
        if role is None:
            return refusing_handler(handler, grpc.StatusCode.UNAUTHENTICATED,
                                    "authorization: a valid 'Bearer TOKEN' is required")
        if role == READ and required_role(*name) == WRITE:
            return refusing_handler(handler, grpc.StatusCode.PERMISSION_DENIED,
                                    f"authorization: {name.method} changes the index and needs a write token")
        return handler
