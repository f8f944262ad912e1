"""Cluster mode for the server's front: a `node.cluster_node.ClusterNode` (runtime,
transport, metrics) behind the client port, and the CLUSTER commands that let
cluster-aware clients find each shard's leader.

The client-facing side keeps the committer's interface (`node.write_path.WritePath`), so
connections do not know whether they talk to one process or to Raft groups.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
from concurrent.futures import Executor

from prometheus_client import CollectorRegistry

from shardkv.core.cluster.shardmap import ShardInfo, ShardMap
from shardkv.core.cluster.slots import SLOT_COUNT, key_slot
from shardkv.core.resp import ErrorReply, MapReply, Reply
from shardkv.node.cluster_node import ClusterNode, PeerSettings
from shardkv.node.runtime import ClusterSettings, ReplyCallback
from shardkv.node.write_path import BUSY
from shardkv.observability.logging import get_logger
from shardkv.server.config import ServerConfig, parse_labels
from shardkv.storage import Engine
from shardkv.transport import PeerTLS

log = get_logger(__name__)


def redis_node_id(node_id: int) -> str:
    """The 40-hex-character node name Redis Cluster clients expect, stable per node id."""
    return hashlib.sha1(f"shardkv-node-{node_id}".encode()).hexdigest()


def cluster_settings(config: ServerConfig) -> ClusterSettings:
    """The node's part in its Raft groups, from the server's configuration."""
    return ClusterSettings(
        node_id=config.node_id,
        initial_members=config.cluster_members,
        client_address=config.client_address,
        admin_address=config.admin_address,
        tick_interval_ms=config.tick_interval_ms,
        election_timeout_ticks=config.election_timeout_ticks,
        snapshot_interval_entries=config.snapshot_interval_entries,
        snapshot_interval_bytes=config.snapshot_interval_bytes,
        compaction_margin_entries=config.compaction_margin_entries,
        join=config.join_existing,
        shard_count=config.shards,
        replicas=config.replicas,
        dead_node_timeout_s=config.dead_node_timeout_s,
        max_concurrent_moves=config.max_concurrent_moves,
        shard_split_bytes=config.shard_split_bytes,
        shard_split_ops_per_s=config.shard_split_ops_per_s,
        shard_merge_bytes=config.shard_merge_bytes,
        shard_merge_ops_per_s=config.shard_merge_ops_per_s,
        shard_min_count=config.shard_min_count,
        rebalance_max_p99_ms=config.rebalance_max_p99_ms,
        rebalance=config.rebalance,
        labels=parse_labels(config.labels),
    )


def peer_settings(config: ServerConfig) -> PeerSettings:
    tls = None
    if config.peer_tls_cert and config.peer_tls_key and config.peer_tls_ca:
        tls = PeerTLS(config.peer_tls_cert, config.peer_tls_key, config.peer_tls_ca)
    return PeerSettings(
        listen_addr=f"{config.bind}:{config.peer_port}",
        cluster_id=config.cluster_id,
        tls=tls,
        enable_fault_injection=config.enable_fault_injection,
        snapshot_send_bytes_per_s=config.snapshot_send_bytes_per_s,
        # Snapshot files must share the engine's fate: an in-memory engine keeps none.
        snapshot_dir=(
            os.path.join(config.data_dir, "snapshots")
            if config.storage_engine == "rocksdb"
            else None
        ),
    )


class ClusterFrontend:
    """The client-facing side of a `ClusterNode`: answers like the committer (the
    `WritePath` bounds and shutdown wait) and answers the CLUSTER commands."""

    def __init__(
        self,
        config: ServerConfig,
        engine: Engine,
        executor: Executor,
        registry: CollectorRegistry | None = None,
        join_map: ShardMap | None = None,
    ) -> None:
        self.config = config
        self.node_id = config.node_id
        settings = dataclasses.replace(cluster_settings(config), join_map=join_map)
        self.node = ClusterNode(settings, peer_settings(config), engine, executor, registry)
        self.runtime = self.node.runtime
        self.transport = self.node.transport
        self.expired_keys = 0
        self._pending_commands = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def start(self) -> None:
        await self.node.start()

    async def stop(self) -> None:
        await self.node.stop()

    # -- committer interface ---------------------------------------------------------------

    @property
    def pending_commands(self) -> int:
        return self._pending_commands

    def submit(
        self,
        commands: list[list[bytes]],
        on_done: ReplyCallback,
        *,
        allow_stale: bool = False,
        has_write: bool | None = None,
    ) -> None:
        """See `WritePath.submit`: bounded by ``max_pending_commands`` as on one node."""
        count = len(commands)
        if self._pending_commands + count > self.config.max_pending_commands:
            on_done([BUSY] * count)
            return
        self._pending_commands += count
        self._idle.clear()

        def done(replies: list[Reply]) -> None:
            self._pending_commands -= count
            if self._pending_commands == 0:
                self._idle.set()
            on_done(replies)

        self.runtime.submit(commands, done, allow_stale=allow_stale, has_write=has_write)

    def submit_sweep(self, max_keys: int) -> None:
        self.runtime.submit_sweep(max_keys)

    def set_disk_full(self, reply: ErrorReply | None) -> None:
        self.runtime.driver.set_disk_full(reply)
        self.transport.refuse_snapshots = reply is not None
        self.runtime.driver.on_work()

    async def wait_idle(self) -> None:
        """See `WritePath.wait_idle`: shutdown waits here for in-flight commands."""
        await self._idle.wait()

    # -- CLUSTER commands -------------------------------------------------------------------

    def shard_leaders(self) -> list[tuple[ShardInfo, int, int]]:
        """(shard, leader node id or 0, applied index here or 0) for every shard of the map.
        A shard with no replica on this node is reported with its preferred leader (a hint:
        that node redirects precisely)."""
        rt = self.runtime
        assert rt.shard_map is not None
        hosted = {shard.shard_id: replica for shard, replica in rt.groups()}
        out = []
        for shard_id, shard in sorted(rt.shard_map.shards.items()):
            replica = hosted.get(shard_id)
            if replica is not None:
                out.append((shard, replica.leader_id, replica.applied_index))
            else:
                out.append((shard, shard.preferred_leader, 0))
        return out

    def cluster_command(self, args: list[bytes]) -> Reply:
        """CLUSTER MYID, KEYSLOT, INFO, SLOTS, SHARDS, NODES, from this node's copy of the
        map and what it knows of each shard's leader.

        Redis Cluster has one master per slot range and replicas that follow one master.
        Here every node leads some shards and follows others, so SLOTS and SHARDS list,
        per shard, its leader as the master and its other replicas as replicas; NODES
        lists every node as a master with the slots of the shards it leads (which is what
        redis-benchmark --cluster and redis-cli read)."""
        sub = args[1].upper() if len(args) > 1 else b""
        if sub == b"MYID":
            return redis_node_id(self.node_id).encode()
        if sub == b"KEYSLOT" and len(args) == 3:
            return key_slot(args[2])
        addresses = self.runtime.client_addresses()
        leaders = self.shard_leaders()

        def endpoint(node: int) -> tuple[bytes, int]:
            host, _, port = addresses.get(node, ":0").rpartition(":")
            return host.encode(), int(port)

        if sub == b"INFO":
            served = sum(
                s.scope.slot_count for s, leader, _ in leaders if leader and leader in addresses
            )
            state = "ok" if served == SLOT_COUNT else "fail"
            masters = {leader for _, leader, _ in leaders if leader}
            epoch = max((s.epoch for s, _, _ in leaders), default=0)
            lines = [
                f"cluster_state:{state}",
                f"cluster_slots_assigned:{SLOT_COUNT}",
                f"cluster_slots_ok:{served}",
                "cluster_slots_pfail:0",
                f"cluster_slots_fail:{SLOT_COUNT - served}",
                f"cluster_known_nodes:{len(addresses)}",
                f"cluster_size:{len(masters)}",
                f"cluster_current_epoch:{epoch}",
                f"cluster_my_epoch:{epoch}",
                f"cluster_shards:{len(leaders)}",
            ]
            return ("\r\n".join(lines) + "\r\n").encode()
        if sub == b"SLOTS":
            entries: list[Reply] = []
            for shard, leader, _ in leaders:
                if not leader or leader not in addresses:
                    # No leader known yet: name the preferred one, so clients that insist
                    # on full coverage start; it answers -MOVED or -TRYAGAIN until elected.
                    leader = shard.preferred_leader
                    if leader not in addresses:
                        continue
                order = [leader] + [n for n in shard.replicas if n != leader and n in addresses]
                for first, last in shard.slot_ranges:
                    entry: list[Reply] = [first, last]
                    for n in order:
                        host, port = endpoint(n)
                        entry.append([host, port, redis_node_id(n).encode()])
                    entries.append(entry)
            return entries
        if sub == b"SHARDS":
            shards: list[Reply] = []
            for shard, leader, applied in leaders:
                nodes: list[Reply] = []
                order = sorted(shard.replicas, key=lambda n: (n != leader, n))
                for n in order:
                    host, port = endpoint(n)
                    nodes.append(
                        MapReply(
                            (
                                (b"id", redis_node_id(n).encode()),
                                (b"port", port),
                                (b"ip", host),
                                (b"endpoint", host),
                                (b"role", b"master" if n == leader else b"replica"),
                                (b"replication-offset", applied),
                                (b"health", b"online" if n in addresses else b"loading"),
                            )
                        )
                    )
                slots: list[Reply] = [x for r in shard.slot_ranges for x in r]
                shards.append(MapReply(((b"slots", slots), (b"nodes", nodes))))
            return shards
        if sub == b"NODES":
            led: dict[int, list[str]] = {}
            for shard, leader, _ in leaders:
                for first, last in shard.slot_ranges:
                    led.setdefault(leader, []).append(
                        f"{first}-{last}" if first != last else str(first)
                    )
            epoch = max((s.epoch for s, _, _ in leaders), default=0)
            lines = []
            assert self.runtime.shard_map is not None
            peers = self.runtime.shard_map.nodes
            for n in sorted(addresses):
                host, _, port = addresses[n].rpartition(":")
                bus = peers[n].peer_address.rpartition(":")[2] if n in peers else "0"
                flags = ("myself," if n == self.node_id else "") + "master"
                slot_text = "".join(" " + r for r in led.get(n, []))
                lines.append(
                    f"{redis_node_id(n)} {host}:{port}@{bus} {flags} - "
                    f"0 0 {epoch} connected{slot_text}"
                )
            return ("\n".join(lines) + "\n").encode()
        return ErrorReply(
            f"ERR CLUSTER {args[1].decode(errors='replace').upper()} is not supported by ShardKV"
        )
