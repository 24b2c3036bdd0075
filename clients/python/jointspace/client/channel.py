"""How both clients open their channel: message limits, retries, TLS, the bearer token.

Retries are gRPC's own (the channel's service config), not a loop in this client: gRPC retries
only attempts that the server never answered or answered UNAVAILABLE, with exponential backoff
and jitter, and never past the call's deadline. They are configured for the idempotent methods
only: the reads, and the writes, which this client always sends with a request id (wire.py), so
that a write the server did apply is answered again instead of applied twice.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path
from typing import Any

import grpc

from jointspace.client.errors import UsageError

DEFAULT_TARGET = "127.0.0.1:50051"
# The server's defaults (its --limit flags may differ; give the client the same values then).
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_BATCH = 1_024
# Service -> its idempotent methods: every method the clients call.
IDEMPOTENT_METHODS = {
    "jointspace.v1.JointSpace": ("Embed", "Search", "BatchSearch", "GetIndexInfo", "GetEntries", "RebuildIndex",
                                 "Upsert", "Delete"),
    "google.longrunning.Operations": ("GetOperation", "ListOperations", "CancelOperation"),
}
RETRY_POLICY = {
    "maxAttempts": 4,
    "initialBackoff": "0.1s",
    "maxBackoff": "2s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}


def service_config(retries: bool = True) -> str:
    methods = [{"service": service, "method": method}
               for service, names in IDEMPOTENT_METHODS.items() for method in names]
    config: dict[str, Any] = {"methodConfig": [{"name": methods, "retryPolicy": RETRY_POLICY}] if retries else []}
    return json.dumps(config)


def channel_options(max_message_bytes: int, retries: bool) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.enable_retries", 1 if retries else 0),
        ("grpc.service_config", service_config(retries)),
    ]


def read_pem(path: Path | str, what: str, marker: str) -> bytes:
    """The file's bytes, if it holds a PEM block whose header contains `marker`
    ("CERTIFICATE", "PRIVATE KEY"). Files are checked here so that a wrong path fails with the
    file named, not as an opaque handshake failure on the first call."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(2, f"{what}: no such file", str(path)) from None
    if b"-----BEGIN " not in data or marker.encode() not in data:
        raise UsageError(f"{what} {path}: not a PEM file with a {marker}")
    return data


def channel_credentials(ca: Path | str | None = None, cert: Path | str | None = None,
                        key: Path | str | None = None) -> grpc.ChannelCredentials:
    """Trust `ca` (default: the system's roots); present `cert`/`key` for mutual TLS."""
    if (cert is None) != (key is None):
        raise UsageError("--tls-cert and --tls-key: give both (a client certificate and its key) or neither")
    return grpc.ssl_channel_credentials(
        root_certificates=read_pem(ca, "--tls-ca", "CERTIFICATE") if ca else None,
        private_key=read_pem(key, "--tls-key", "PRIVATE KEY") if key else None,
        certificate_chain=read_pem(cert, "--tls-cert", "CERTIFICATE") if cert else None,
    )


def wants_tls(tls: bool, *files: Path | str | None) -> bool:
    return tls or any(f is not None for f in files)


def bearer(token: str) -> tuple[str, str]:
    return ("authorization", f"Bearer {token}")


class _CallDetails(
    collections.namedtuple("_CallDetails", "method timeout metadata credentials wait_for_ready compression"),
    grpc.ClientCallDetails,
):
    pass


class BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                  grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds `authorization: Bearer TOKEN` to every call of a sync channel, whichever stub makes
    it (the health stub too)."""

    def __init__(self, token: str) -> None:
        self.header = bearer(token)

    def _call(self, continuation: Any, details: grpc.ClientCallDetails, request: Any) -> Any:
        details = _CallDetails(details.method, details.timeout, [*(details.metadata or ()), self.header],
                               details.credentials, details.wait_for_ready, details.compression)
        return continuation(details, request)

    intercept_unary_unary = intercept_unary_stream = _call
    intercept_stream_unary = intercept_stream_stream = _call


class AsyncBearerToken(grpc.aio.UnaryUnaryClientInterceptor):
    """The same header on every unary call of an asyncio channel."""

    def __init__(self, token: str) -> None:
        self.header = bearer(token)

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        metadata = grpc.aio.Metadata(*(details.metadata or ()), self.header)
        details = grpc.aio.ClientCallDetails(details.method, details.timeout, metadata, details.credentials,
                                             details.wait_for_ready)
        return await continuation(details, request)
