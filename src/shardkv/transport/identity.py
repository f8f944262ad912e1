"""Who a peer is: the cluster id and node id every call carries, checked against its
certificate.

Every gRPC call between nodes carries two metadata entries (`identity_metadata`):
``shardkv-cluster-id`` and ``shardkv-node-id`` (0 for a node that is
joining and has no id yet). The receiver refuses a call from another cluster (a node
pointed at the wrong seeds, a stale process on a reused address) with PERMISSION_DENIED.

Under mutual TLS the claim must also match the caller's certificate: each node
certificate carries a URI subjectAltName ``spiffe://<cluster id>/node/<node id>``
(`node_uri`; ``shardkv certs issue`` writes it), so a node holding a valid certificate of
the cluster still cannot speak as another node. A joining node's certificate names the id
it asks the placement group for.

`check_peer` is pure: the transport gives it what the call said and the certificate's PEM
(gRPC's ``x509_pem_cert`` auth property) and logs and counts what it answers.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import grpc.aio

CLUSTER_ID_KEY: Final = "shardkv-cluster-id"
NODE_ID_KEY: Final = "shardkv-node-id"
#: The cluster id of a cluster whose operator named none (``--cluster-id``).
DEFAULT_CLUSTER_ID: Final = "shardkv"
_CLUSTER_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_URI_RE: Final = re.compile(r"spiffe://([A-Za-z0-9][A-Za-z0-9_.-]{0,62})/node/([0-9]{1,9})")


def valid_cluster_id(cluster_id: str) -> bool:
    return _CLUSTER_ID_RE.fullmatch(cluster_id) is not None


def node_uri(cluster_id: str, node_id: int) -> str:
    """The subjectAltName URI that names ``node_id`` of ``cluster_id`` in a certificate."""
    return f"spiffe://{cluster_id}/node/{node_id}"


@dataclass(frozen=True, slots=True)
class CertIdentity:
    cluster_id: str
    node_id: int


@functools.lru_cache(maxsize=64)
def identity_from_pem(pem: bytes) -> CertIdentity | None:
    """The (cluster, node) a certificate names in its URI SAN, or None if it names none
    (or is unreadable). Cached: a peer presents the same certificate on every call."""
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(pem)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return None
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        match = _URI_RE.fullmatch(uri)
        if match:
            return CertIdentity(match.group(1), int(match.group(2)))
    return None


@dataclass(frozen=True, slots=True)
class Refused:
    """Why a call is refused: ``reason`` is a metric label, ``detail`` the log and status
    text."""

    reason: str
    detail: str


def claimed_identity(metadata: Sequence[tuple[str, Any]] | None) -> tuple[str | None, int | None]:
    """(cluster id, node id) a call's metadata claims (None where missing or unreadable)."""
    cluster: str | None = None
    node: int | None = None
    for key, value in metadata or ():
        if key == CLUSTER_ID_KEY:
            cluster = str(value)
        elif key == NODE_ID_KEY:
            try:
                node = int(value)
            except ValueError:
                node = None
    return cluster, node


def check_peer(
    our_cluster_id: str,
    claimed_cluster: str | None,
    claimed_node: int | None,
    cert_pem: bytes | None,
    tls: bool,
) -> Refused | None:
    """None if a call may proceed. ``claimed_node`` 0 is a node asking to join without
    TLS; under TLS a joining node claims the id its certificate names (and asks for it).
    ``cert_pem`` is None without TLS."""
    if claimed_cluster is None or claimed_node is None:
        return Refused("no_identity", "the call names no cluster and node id (an old version?)")
    if claimed_cluster != our_cluster_id:
        return Refused(
            "other_cluster",
            f"the caller belongs to cluster {claimed_cluster!r}, this node to {our_cluster_id!r}",
        )
    if not tls:
        return None
    identity = identity_from_pem(cert_pem) if cert_pem else None
    if identity is None:
        return Refused(
            "certificate_without_identity",
            "the caller's certificate names no node (it needs the subjectAltName URI "
            f"{node_uri(our_cluster_id, claimed_node)}; see shardkv certs issue)",
        )
    if identity.cluster_id != our_cluster_id:
        return Refused(
            "other_cluster",
            f"the caller's certificate is for cluster {identity.cluster_id!r}",
        )
    if identity.node_id != claimed_node:
        return Refused(
            "node_id_mismatch",
            f"the caller claims node {claimed_node} but its certificate is node {identity.node_id}",
        )
    return None


def cert_pem_of(context: grpc.aio.ServicerContext[Any, Any]) -> bytes | None:
    """The caller's certificate (PEM) on a TLS call, else None."""
    values = context.auth_context().get("x509_pem_cert") or []
    return bytes(values[0]) if values else None


def identity_metadata(cluster_id: str, node_id: int) -> tuple[tuple[str, str], ...]:
    """The metadata every call of ``node_id`` (0: joining) of ``cluster_id`` carries."""
    return ((CLUSTER_ID_KEY, cluster_id), (NODE_ID_KEY, str(node_id)))
