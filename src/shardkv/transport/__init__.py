"""Node-to-node transport: gRPC services, batched peer streams, chunked snapshots, mTLS.

Public API:

- `PeerTransport(node_id, listen_addr, peers, *, on_messages, on_snapshot, ...)` with
  ``start()``, ``stop()``, ``send(messages)``, ``send_snapshot(message)``,
  ``add_peer(node_id, addr)``, ``remove_peer(node_id)``, ``set_blocked(peers)``,
  ``queue_depth(node_id)``, ``is_connected(node_id)``, ``peer_stats()``, ``stats()``,
  ``peers()``, ``port``, ``address``.
- `PeerTLS(cert, key, ca, server_name=None)`: mutual TLS between nodes.
- `PeerStats`, `TransportStats`: counters for metrics; `TransportCollector` exports them
  to Prometheus.
- `AdminBackend`, `AdminRequestError`: what the node plugs into the Admin service.
- Errors: `TransportError`, `SnapshotSendError`, `PeerTLSError`.
- `codec`: core types <-> protobuf; `proto.shardkv_pb2` / `proto.shardkv_pb2_grpc`: the
  generated code (``proto/shardkv.proto`` documents the wire protocol).
"""

from shardkv.transport.admin import AdminBackend, AdminRequestError
from shardkv.transport.metrics import TransportCollector
from shardkv.transport.peer import PeerStats, SnapshotSendError
from shardkv.transport.tls import PeerTLS, PeerTLSError
from shardkv.transport.transport import (
    OnMessages,
    OnPeerUnreachable,
    OnSnapshot,
    OnSnapshotStatus,
    PeerTransport,
    TransportError,
    TransportStats,
)

__all__ = [
    "AdminBackend",
    "AdminRequestError",
    "OnMessages",
    "OnPeerUnreachable",
    "OnSnapshot",
    "OnSnapshotStatus",
    "PeerStats",
    "PeerTLS",
    "PeerTLSError",
    "PeerTransport",
    "SnapshotSendError",
    "TransportCollector",
    "TransportError",
    "TransportStats",
]
