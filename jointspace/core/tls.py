"""TLS credentials for both ends, from PEM files.

Files are read and sanity-checked here so that a wrong path or a swapped key and certificate
fail at start with the file named, instead of as an opaque handshake failure on the first call.
Only grpc is imported: the client uses this module too and must stay light.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import grpc

from jointspace.core.errors import InvalidInput, NotFound


def read_pem(path: Path | str, what: str, marker: str) -> bytes:
    """The file's bytes, if it holds a PEM block whose header contains `marker`
    ("CERTIFICATE", "PRIVATE KEY")."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NotFound(f"{what} {path}: no such file") from None
    except OSError as error:
        raise InvalidInput(f"{what} {path}: cannot read ({error.strerror})") from None
    if b"-----BEGIN " not in data or marker.encode() not in data:
        raise InvalidInput(f"{what} {path}: not a PEM file with a {marker}")
    return data


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


def channel_credentials(ca: Path | str | None = None, cert: Path | str | None = None,
                        key: Path | str | None = None) -> grpc.ChannelCredentials:
    """Trust `ca` (default: the system's roots); present `cert`/`key` for mutual TLS."""
    if (cert is None) != (key is None):
        raise InvalidInput("--tls-cert and --tls-key: give both (a client certificate and its key) or neither")
    return grpc.ssl_channel_credentials(
        root_certificates=read_pem(ca, "--tls-ca", "CERTIFICATE") if ca else None,
        private_key=read_pem(key, "--tls-key", "PRIVATE KEY") if key else None,
        certificate_chain=read_pem(cert, "--tls-cert", "CERTIFICATE") if cert else None,
    )
