"""Mutual TLS between nodes (``--peer-tls-cert``, ``--peer-tls-key``, ``--peer-tls-ca``).

Every node presents its certificate both as a server (to peers dialling in) and as a client
(when it dials out), and accepts only peers whose certificate chains to the configured CA:
the server requires a client certificate, so a process without one, or with one from
another CA, cannot open a Raft stream or call the admin service.

Peers are dialled by the address in the peer list, so each node's certificate must name
that host in its subjectAltName (``IP:10.0.0.5`` or ``DNS:node-2.shardkv``). Clusters whose
certificates all carry one shared name set ``server_name`` to it instead.

Files are read once, by `load` (the transport calls it in ``start()``): rotating
certificates takes a restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc


class PeerTLSError(ValueError):
    """A certificate, key or CA file cannot be read or is not PEM; the message names it."""


@dataclass(frozen=True, slots=True)
class LoadedPeerTLS:
    """The PEM bytes of a `PeerTLS`, ready to build gRPC credentials."""

    cert_chain_pem: bytes
    private_key_pem: bytes
    ca_pem: bytes
    server_name: str | None

    def server_credentials(self) -> grpc.ServerCredentials:
        """Server side: present our certificate, require and verify the client's."""
        return grpc.ssl_server_credentials(
            [(self.private_key_pem, self.cert_chain_pem)],
            root_certificates=self.ca_pem,
            require_client_auth=True,
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """Client side: verify the server against the CA, present our certificate."""
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_pem,
            private_key=self.private_key_pem,
            certificate_chain=self.cert_chain_pem,
        )

    def channel_options(self) -> list[tuple[str, str]]:
        if self.server_name is None:
            return []
        return [("grpc.ssl_target_name_override", self.server_name)]


@dataclass(frozen=True, slots=True)
class PeerTLS:
    """Paths of this node's certificate chain, its private key and the cluster CA (PEM).

    ``server_name``: verify every peer's certificate against this name instead of the host
    part of its address.
    """

    cert: str | Path
    key: str | Path
    ca: str | Path
    server_name: str | None = None

    def load(self) -> LoadedPeerTLS:
        """Read the three files. Raises `PeerTLSError` naming the file that is missing,
        unreadable or not PEM."""
        return LoadedPeerTLS(
            cert_chain_pem=_read_pem(self.cert, "certificate", b"CERTIFICATE"),
            private_key_pem=_read_pem(self.key, "private key", b"PRIVATE KEY"),
            ca_pem=_read_pem(self.ca, "CA certificate", b"CERTIFICATE"),
            server_name=self.server_name,
        )


def _read_pem(path: str | Path, what: str, marker: bytes) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise PeerTLSError(f"cannot read peer TLS {what} {path}: {exc.strerror}") from exc
    # gRPC reports a bad PEM only when the first handshake fails, far from the cause.
    if b"-----BEGIN " not in data or marker not in data:
        raise PeerTLSError(f"peer TLS {what} {path} is not a PEM file ({marker.decode()})")
    return data
