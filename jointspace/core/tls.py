"""The server's TLS credentials, from PEM files (the client's are in jointspace.client.channel).

Files are read and sanity-checked here so that a wrong path or a swapped key and certificate
fail at start with the file named, instead of as an opaque handshake failure on the first call.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import grpc

from jointspace.client import channel as client_channel
from jointspace.client.errors import UsageError
from jointspace.core.errors import InvalidInput, NotFound


def read_pem(path: Path | str, what: str, marker: str) -> bytes:
    """The client's check of a PEM file (jointspace.client.channel), with the errors the server's
    command line reports in one line."""
    try:
        return client_channel.read_pem(path, what, marker)
    except FileNotFoundError:
        raise NotFound(f"{what} {path}: no such file") from None
    except UsageError as error:
        raise InvalidInput(str(error)) from None
    except OSError as error:
        raise InvalidInput(f"{what} {path}: cannot read ({error.strerror})") from None


def check_key_pair(cert: Path, key: Path) -> None:
    """gRPC reports a key that does not belong to the certificate as "Failed to bind to
    address"; OpenSSL (through the ssl module) names the problem."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key, password=lambda: b"")
    except ssl.SSLError as error:
        raise InvalidInput(f"--tls-cert {cert} and --tls-key {key}: not a usable pair "
                           f"({error.reason or error}; the key must be unencrypted and belong to "
                           "the certificate)") from None


def server_credentials(cert: Path, key: Path, client_ca: Path | None = None) -> grpc.ServerCredentials:
    """TLS; with `client_ca`, mutual TLS: a client must present a certificate that CA signed."""
    pair = (read_pem(key, "--tls-key", "PRIVATE KEY"), read_pem(cert, "--tls-cert", "CERTIFICATE"))
    check_key_pair(cert, key)
    roots = read_pem(client_ca, "--tls-client-ca", "CERTIFICATE") if client_ca else None
    return grpc.ssl_server_credentials([pair], root_certificates=roots, require_client_auth=roots is not None)
