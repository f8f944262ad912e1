"""Cluster mode for the server: the node runtime and the peer transport behind the client
port, and the CLUSTER commands that let cluster-aware clients find the leader.

The client-facing side keeps the committer's interface (``submit``, ``submit_sweep``,
``wait_idle``, ...), so connections do not know whether they talk to one process or to a
Raft group.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Iterator
from concurrent.futures import Executor

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shardkv.core.cluster.slots import SLOT_COUNT, key_slot
from shardkv.core.raft import Message, Role
from shardkv.core.resp import ErrorReply, MapReply, Reply
from shardkv.node.runtime import DEFAULT_GROUP_ID, ClusterSettings, NodeRuntime, ReplyCallback
from shardkv.observability.logging import get_logger
from shardkv.observability.metrics import LATENCY_BUCKETS_S
from shardkv.server.config import ServerConfig
from shardkv.storage import Engine
from shardkv.transport import PeerTLS, PeerTransport, TransportCollector

log = get_logger(__name__)


def redis_node_id(node_id: int) -> str:
    """The 40-hex-character node name Redis Cluster clients expect, stable per node id."""
    return hashlib.sha1(f"shardkv-node-{node_id}".encode()).hexdigest()


class RaftCollector(Collector):
    """Raft state at scrape time: ``shardkv_raft_*`` gauges and counters per group."""

    def __init__(self, runtime: NodeRuntime) -> None:
        self._runtime = runtime

    def collect(self) -> Iterator[Metric]:
        rt = self._runtime
        replica = rt.replica(DEFAULT_GROUP_ID)
        st = replica.raw.status()
        group = str(DEFAULT_GROUP_ID)
        role = GaugeMetricFamily(
            "shardkv_raft_role", "1 for this replica's current role.", labels=["group", "role"]
        )
        for r in Role:
            role.add_metric([group, r.name.lower()], 1.0 if st.role is r else 0.0)
        yield role
        for name, doc, value in (
            ("shardkv_raft_term", "Current Raft term.", st.term),
            ("shardkv_raft_commit_index", "Highest committed log index.", st.commit),
            ("shardkv_raft_applied_index", "Highest applied log index.", replica.applied_index),
            ("shardkv_raft_first_index", "First log index still on disk.", st.first_index),
            ("shardkv_raft_last_index", "Last log index on disk.", st.last_index),
            ("shardkv_raft_leader", "Node id of the known leader (0: none).", st.lead),
        ):
            g = GaugeMetricFamily(name, doc, labels=["group"])
            g.add_metric([group], float(value))
            yield g
        for name, doc, value in (
            ("shardkv_raft_leader_changes", "Role or leader changes seen.", rt.leader_changes),
            ("shardkv_raft_proposals", "Client write batches proposed.", rt.proposals),
            (
                "shardkv_raft_snapshots_taken",
                "Snapshots taken (log compaction).",
                rt.snapshots_taken,
            ),
            (
                "shardkv_raft_snapshots_installed",
                "Snapshots received and installed.",
                rt.snapshots_installed,
            ),
        ):
            c = CounterMetricFamily(name, doc, labels=["group"])
            c.add_metric([group], float(value))
            yield c


class ClusterFrontend:
    """Starts and stops the transport and the runtime; answers like a committer."""

    def __init__(
        self,
        config: ServerConfig,
        engine: Engine,
        executor: Executor,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.config = config
        members = config.cluster_members
        self.node_id = config.node_id
        self.members = members
        settings = ClusterSettings(
            node_id=config.node_id,
            initial_members=members,
            client_address=config.client_address,
            tick_interval_ms=config.tick_interval_ms,
            election_timeout_ticks=config.election_timeout_ticks,
            snapshot_interval_entries=config.snapshot_interval_entries,
            compaction_margin_entries=config.compaction_margin_entries,
            join=config.join,
        )
        tls = None
        if config.peer_tls_cert and config.peer_tls_key and config.peer_tls_ca:
            tls = PeerTLS(config.peer_tls_cert, config.peer_tls_key, config.peer_tls_ca)
        self.runtime = NodeRuntime(
            settings,
            engine,
            executor,
            self._send,
            add_peer=lambda node_id, address: self.transport.add_peer(node_id, address),
            remove_peer=lambda node_id: self.transport.remove_peer(node_id),
        )
        self.transport = PeerTransport(
            config.node_id,
            f"{config.bind}:{config.peer_port}",
            {i: a for i, a in members.items() if i != config.node_id},
            on_messages=lambda _from, messages: self.runtime.step(messages),
            on_snapshot=lambda _from, message: self.runtime.step([message]),
            on_snapshot_status=self.runtime.report_snapshot,
            on_peer_unreachable=self.runtime.report_unreachable,
            tls=tls,
            rng=random.Random(),
        )
        self.expired_keys = 0
        if registry is not None:
            fsync = Histogram(
                "shardkv_raft_fsync_seconds",
                "Duration of one group-commit sync (all groups).",
                buckets=LATENCY_BUCKETS_S,
                registry=registry,
            )
            proposal = Histogram(
                "shardkv_raft_proposal_seconds",
                "From proposing a client write batch to answering it (committed and durable).",
                buckets=LATENCY_BUCKETS_S,
                registry=registry,
            )
            self.runtime.observe_sync_s = fsync.observe
            self.runtime.observe_proposal_s = proposal.observe
            registry.register(RaftCollector(self.runtime))
            registry.register(TransportCollector(self.transport))

    def _send(self, messages: list[Message]) -> None:
        self.transport.send(messages)

    async def start(self) -> None:
        self.runtime.open()
        await self.transport.start()
        await self.runtime.start()
        log.info(
            "cluster_member_started",
            node_id=self.node_id,
            members=self.members,
            peer_port=self.transport.port,
        )

    async def stop(self) -> None:
        await self.runtime.stop()
        await self.transport.stop()

    # -- committer interface ---------------------------------------------------------------

    @property
    def pending_commands(self) -> int:
        return 0

    def submit(
        self,
        commands: list[list[bytes]],
        on_done: ReplyCallback,
        *,
        allow_stale: bool = False,
        has_write: bool | None = None,
    ) -> None:
        self.runtime.submit(commands, on_done, allow_stale=allow_stale, has_write=has_write)

    def submit_sweep(self, max_keys: int) -> None:
        self.runtime.submit_sweep(max_keys)

    async def wait_idle(self) -> None:
        await asyncio.sleep(0)

    # -- CLUSTER commands -------------------------------------------------------------------

    def _known_addresses(self) -> dict[int, str]:
        replica = self.runtime.replica(DEFAULT_GROUP_ID)
        known = dict(replica.client_addresses)
        known[self.node_id] = self.config.client_address
        return known

    def cluster_command(self, args: list[bytes]) -> Reply:
        sub = args[1].upper() if len(args) > 1 else b""
        replica = self.runtime.replica(DEFAULT_GROUP_ID)
        leader = replica.leader_id
        addresses = self._known_addresses()
        voters = replica.raw.conf_state().voters
        if sub == b"MYID":
            return redis_node_id(self.node_id).encode()
        if sub == b"KEYSLOT" and len(args) == 3:
            return key_slot(args[2])
        if sub == b"INFO":
            state = "ok" if leader and leader in addresses else "fail"
            lines = [
                f"cluster_state:{state}",
                "cluster_slots_assigned:16384",
                f"cluster_slots_ok:{16384 if state == 'ok' else 0}",
                "cluster_slots_pfail:0",
                "cluster_slots_fail:0",
                f"cluster_known_nodes:{len(voters)}",
                "cluster_size:1",
                f"cluster_current_epoch:{replica.raw.term}",
                f"cluster_my_epoch:{replica.raw.term}",
            ]
            return ("\r\n".join(lines) + "\r\n").encode()
        # Nodes in the order a client should try them: the leader first.
        order = sorted(addresses, key=lambda n: (n != leader, n))
        if sub == b"SLOTS":
            if not leader or leader not in addresses:
                return []
            entry: list[Reply] = [0, SLOT_COUNT - 1]
            for n in order:
                host, _, port = addresses[n].rpartition(":")
                entry.append([host.encode(), int(port), redis_node_id(n).encode()])
            return [entry]
        if sub == b"SHARDS":
            nodes: list[Reply] = []
            for n in order:
                host, _, port = addresses[n].rpartition(":")
                nodes.append(
                    MapReply(
                        (
                            (b"id", redis_node_id(n).encode()),
                            (b"port", int(port)),
                            (b"ip", host.encode()),
                            (b"endpoint", host.encode()),
                            (b"role", b"master" if n == leader else b"replica"),
                            (b"replication-offset", replica.applied_index),
                            (b"health", b"online"),
                        )
                    )
                )
            return [MapReply(((b"slots", [0, SLOT_COUNT - 1]), (b"nodes", nodes)))]
        if sub == b"NODES":
            lines = []
            for n in order:
                host, _, port = addresses[n].rpartition(":")
                flags = ("myself," if n == self.node_id else "") + (
                    "master" if n == leader else "slave"
                )
                master = "-" if n == leader else redis_node_id(leader) if leader else "-"
                slots = f" 0-{SLOT_COUNT - 1}" if n == leader else ""
                lines.append(
                    f"{redis_node_id(n)} {host}:{port}@{self.config.peer_port} {flags} {master} "
                    f"0 0 {replica.raw.term} connected{slots}"
                )
            return ("\n".join(lines) + "\n").encode()
        if sub == b"COUNTKEYSINSLOT":
            return ErrorReply("ERR CLUSTER COUNTKEYSINSLOT is not supported by ShardKV")
        return ErrorReply(
            f"ERR CLUSTER {args[1].decode(errors='replace').upper()} is not supported by ShardKV"
        )
