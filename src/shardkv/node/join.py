"""Joining a running cluster through any seed: the new node's side of the Admin ``Join`` call.

The new node knows only seeds (``--join HOST:PEERPORT[,...]``; a DNS name that resolves to
several addresses counts as one seed per address, as a Kubernetes headless service
does). It asks each in turn to register it; a seed that is not the placement group's
leader answers with that leader's peer address, which is tried next. The leader registers
the node in the map (the placement group assigns its id; asking again with the same peer
address returns the same id, so a retry after a crash is safe) and answers with the id and
the current map. The caller stores the id in its data directory and starts as a learner of
the placement group; group 0's leader adds it (``NodeDriver._reconcile_placement``).
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from typing import Final

import grpc
import grpc.aio

from shardkv.core.cluster.shardmap import ShardMap
from shardkv.observability.logging import get_logger
from shardkv.transport.identity import DEFAULT_CLUSTER_ID, identity_from_pem, identity_metadata
from shardkv.transport.proto import shardkv_pb2 as pb
from shardkv.transport.proto import shardkv_pb2_grpc as pb_grpc
from shardkv.transport.tls import LoadedPeerTLS, PeerTLS

log = get_logger(__name__)

#: META key of a joined node's identity: JSON ``{"node_id": N, "join_map": "<map>"}``,
#: written once the placement group registered it (a restart then needs no cluster flags).
JOIN_IDENTITY_KEY: Final = b"cluster/identity"


class JoinError(Exception):
    """No seed registered this node within the deadline; the message lists what each said."""


@dataclass(frozen=True, slots=True)
class Joined:
    node_id: int
    shard_map: ShardMap


def expand_seeds(seeds: str) -> list[str]:
    """``HOST:PORT[,HOST:PORT...]`` as addresses to dial: a name that resolves to several
    addresses gives each (in the resolver's order); one that does not resolve is kept as
    given (it may resolve later)."""
    out: list[str] = []
    for item in seeds.split(","):
        item = item.strip()
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"seed {item!r} is not HOST:PORT")
        try:
            infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
        except OSError:
            infos = []
        addresses = []
        for _, _, _, _, sockaddr in infos:
            ip = str(sockaddr[0])
            address = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
            if address not in addresses:
                addresses.append(address)
        out.extend(addresses or [item])
    if not out:
        raise ValueError("--join lists no seed")
    return out


async def join_cluster(
    seeds: str,
    *,
    peer_address: str,
    client_address: str,
    admin_address: str,
    tls: PeerTLS | None = None,
    cluster_id: str = DEFAULT_CLUSTER_ID,
    deadline_s: float = 120.0,
    attempt_timeout_s: float = 10.0,
    retry_interval_s: float = 0.5,
) -> Joined:
    """Register this node through the first seed that can; see the module docstring.
    Raises `JoinError` after ``deadline_s`` (every seed down, or the cluster without a
    placement leader all that time)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    loaded = tls.load() if tls is not None else None
    wanted = 0
    if loaded is not None:
        identity = identity_from_pem(loaded.cert_chain_pem)
        if identity is None or identity.cluster_id != cluster_id:
            raise JoinError(
                f"this node's certificate does not name a node of cluster {cluster_id!r} "
                "(see shardkv certs issue)"
            )
        wanted = identity.node_id
    request = pb.JoinRequest(
        peer_address=peer_address,
        client_address=client_address,
        admin_address=admin_address,
        node_id=wanted,
    )
    metadata = identity_metadata(cluster_id, wanted)
    last: dict[str, str] = {}
    queue = expand_seeds(seeds)
    while True:
        for address in list(queue):
            target = address
            for _ in range(3):  # a seed, then the leader it names (which may just have moved)
                try:
                    reply = await _call(target, request, loaded, attempt_timeout_s, metadata)
                except grpc.aio.AioRpcError as exc:
                    last[target] = f"{exc.code().name}: {exc.details()}"
                    break
                if reply.node_id:
                    log.info("joined_cluster", node_id=reply.node_id, through=target)
                    return Joined(reply.node_id, ShardMap.decode(reply.shard_map))
                last[target] = f"not the placement leader (leader: {reply.leader_peer_address})"
                if not reply.leader_peer_address:
                    break
                target = reply.leader_peer_address
        if loop.time() > deadline:
            raise JoinError(f"no seed registered this node within {deadline_s:.0f} s: {last}")
        await asyncio.sleep(retry_interval_s)
        queue = expand_seeds(seeds)


async def _call(
    address: str,
    request: pb.JoinRequest,
    tls: LoadedPeerTLS | None,
    timeout_s: float,
    metadata: tuple[tuple[str, str], ...],
) -> pb.JoinResponse:
    if tls is not None:
        channel = grpc.aio.secure_channel(
            address, tls.channel_credentials(), options=tls.channel_options()
        )
    else:
        channel = grpc.aio.insecure_channel(address)
    async with channel:
        stub = pb_grpc.AdminStub(channel)  # type: ignore[no-untyped-call]
        reply: pb.JoinResponse = await stub.Join(request, timeout=timeout_s, metadata=metadata)
        return reply
