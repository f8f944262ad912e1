"""One cluster node's machinery: the node runtime (every Raft group hosted here) wired to
the peer transport, their metrics, and the gRPC Admin service's backend.

The server (``server/``) is the front: it opens the storage engine, builds a `ClusterNode`
over it, and serves Redis clients and admin HTTP through it. Order: construct, ``start()``
(opens or bootstraps the groups, then the transport, then the loop), ``stop()`` (hands
leaderships away, stops the loop, then the transport).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

import grpc
from prometheus_client import CollectorRegistry, Histogram

from shardkv.core.cluster.placement import DEL_ACL_USERS
from shardkv.core.raft import ConfChange, ConfChangeType, NotLeaderError, Role, Status
from shardkv.core.resp import OK as OK_REPLY
from shardkv.core.resp import ErrorReply, Reply
from shardkv.node.driver import GroupReport
from shardkv.node.metrics import RaftCollector
from shardkv.node.runtime import ClusterSettings, NodeRuntime
from shardkv.observability.logging import get_logger
from shardkv.observability.metrics import LATENCY_BUCKETS_S
from shardkv.storage import Engine
from shardkv.storage.snapshot_files import SnapshotFiles
from shardkv.transport import AdminRequestError, PeerTLS, PeerTransport, TransportCollector
from shardkv.transport.identity import DEFAULT_CLUSTER_ID
from shardkv.transport.proto import shardkv_pb2 as pb

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class PeerSettings:
    """How the node listens for its peers (gRPC)."""

    #: ``host:port`` to bind (port 0: any free port).
    listen_addr: str
    #: Carried by every peer call; calls from another cluster are refused.
    cluster_id: str = DEFAULT_CLUSTER_ID
    tls: PeerTLS | None = None
    #: Serve the test-only partition injection (Admin ``SetPartition``, ``/v1/partition``).
    enable_fault_injection: bool = False
    #: How long a membership change asked through the Admin service may take to apply.
    admin_change_timeout_s: float = 30.0
    #: Where shard snapshots are kept as files (None: in memory, as in the simulator).
    snapshot_dir: str | None = None
    #: Snapshot bytes per second this node sends, to all peers together (0: no limit).
    snapshot_send_bytes_per_s: int = 0


class ClusterNode:
    """See the module docstring. All methods run on the event loop thread."""

    def __init__(
        self,
        settings: ClusterSettings,
        peers: PeerSettings,
        engine: Engine,
        executor: Executor,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.node_id = settings.node_id
        self.settings = settings
        self._peers = peers
        self._poll_task: asyncio.Task[None] | None = None
        files = SnapshotFiles(peers.snapshot_dir) if peers.snapshot_dir is not None else None
        self.runtime = NodeRuntime(
            settings,
            engine,
            executor,
            lambda messages: self.transport.send(messages),
            add_peer=lambda node_id, address: self.transport.add_peer(node_id, address),
            remove_peer=lambda node_id: self.transport.remove_peer(node_id),
            snapshot_files=files,
        )
        self.transport = PeerTransport(
            settings.node_id,
            peers.listen_addr,
            {i: a for i, a in settings.initial_members.items() if i != settings.node_id},
            on_messages=lambda _from, messages: self.runtime.step(messages),
            on_snapshot=lambda _from, message: self.runtime.step([message]),
            on_snapshot_status=self.runtime.report_snapshot,
            on_peer_unreachable=self.runtime.report_unreachable,
            client_address=settings.client_address,
            admin_address=settings.admin_address,
            on_peer_client_address=self.runtime.learn_client_address,
            admin=self,
            enable_fault_injection=peers.enable_fault_injection,
            tls=peers.tls,
            rng=random.Random(),
            snapshot_files=files,
            snapshot_send_bytes_per_s=peers.snapshot_send_bytes_per_s,
            labels=dict(settings.labels),
            cluster_id=peers.cluster_id,
        )
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
            self.runtime.driver.observe_proposal_s = proposal.observe
            registry.register(
                RaftCollector(
                    self.runtime, snapshot_send_wait_s=self.transport.snapshot_send_wait_s
                )
            )
            registry.register(TransportCollector(self.transport))

    async def start(self) -> None:
        self.runtime.open()
        await self.transport.start()
        self.runtime.driver.dial_known_peers()
        await self.runtime.start()
        self._poll_task = asyncio.get_running_loop().create_task(self._poll_statuses())
        log.info(
            "cluster_member_started",
            node_id=self.node_id,
            members=self.settings.initial_members,
            peer_port=self.transport.port,
        )

    async def stop(self) -> None:
        if self._poll_task is not None:
            self._poll_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poll_task
        await self.runtime.stop()
        await self.transport.stop()

    async def _poll_statuses(self) -> None:
        """While this node leads the placement group: every balance interval, ask every
        up node for its groups' status (the Admin ``Status`` call), which tells the
        scheduler who is alive and what membership each shard's leader has committed."""
        s = self.settings
        interval_s = s.leader_balance_interval_ticks * s.tick_interval_ms / 1000
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self._poll_round(interval_s)
            except Exception as exc:  # one bad round must not end the polls
                log.warning("status_poll_failed", error=repr(exc))

    async def _poll_round(self, timeout_s: float) -> None:
        driver = self.runtime.driver
        targets = driver.status_poll_targets()
        if not targets:
            return
        answers = await asyncio.gather(
            *(self.transport.peer_status(n, timeout_s) for n in targets), return_exceptions=True
        )
        for node_id, answer in zip(targets, answers, strict=True):
            if isinstance(answer, pb.StatusResponse):
                driver.record_status(
                    node_id,
                    [_report(g) for g in answer.groups],
                    tuple(sorted(answer.labels.items())),
                    answer.write_p99_ms,
                )

    # -- the gRPC Admin service's backend (`transport.admin.AdminBackend`) -----------------

    def group_statuses(self) -> Sequence[Status]:
        return [replica.raw.status() for replica in self.runtime.driver.all_replicas()]

    def write_p99_ms(self) -> float:
        return self.runtime.driver.write_p99_ms()

    def group_sizes(self) -> dict[int, tuple[int, int, int, bool]]:
        return self.runtime.driver.group_sizes()

    async def transfer_leader(self, group_id: int, to_node: int) -> None:
        try:
            self.runtime.driver.transfer_leader(group_id, to_node)
        except KeyError:
            raise _no_group(group_id) from None
        except NotLeaderError as exc:
            raise AdminRequestError(grpc.StatusCode.FAILED_PRECONDITION, str(exc)) from exc

    async def add_member(self, group_id: int, node_id: int, address: str, learner: bool) -> int:
        kind = ConfChangeType.ADD_LEARNER_NODE if learner else ConfChangeType.ADD_NODE
        return await self._change(group_id, ConfChange(kind, node_id, address.encode()))

    async def remove_member(self, group_id: int, node_id: int) -> int:
        return await self._change(group_id, ConfChange(ConfChangeType.REMOVE_NODE, node_id))

    async def join(
        self, peer_address: str, client_address: str, admin_address: str, wanted_node_id: int
    ) -> tuple[int, bytes, str]:
        driver = self.runtime.driver
        fut: asyncio.Future[list[Reply]] = asyncio.get_running_loop().create_future()
        try:
            driver.join_node(
                peer_address,
                client_address,
                admin_address,
                lambda r: None if fut.done() else fut.set_result(r),
                wanted_node_id=wanted_node_id,
            )
        except NotLeaderError as exc:
            _, shard_map = driver.placement_status()
            leader = shard_map.nodes.get(exc.leader) if shard_map is not None else None
            return 0, b"", leader.peer_address if leader is not None else ""
        replies = await asyncio.wait_for(fut, self._peers.admin_change_timeout_s)
        node_id = replies[0]
        if not isinstance(node_id, int):
            raise AdminRequestError(grpc.StatusCode.UNAVAILABLE, f"join not applied: {node_id}")
        _, shard_map = driver.placement_status()
        assert shard_map is not None
        log.info("node_joined", node_id=node_id, peer_address=peer_address)
        return node_id, shard_map.encode(), ""

    async def acl_change(self, command: list[bytes]) -> pb.AclChangeResponse:
        driver = self.runtime.driver
        fut: asyncio.Future[list[Reply]] = asyncio.get_running_loop().create_future()
        try:
            driver.propose_acl(command, lambda r: None if fut.done() else fut.set_result(r))
        except ValueError as exc:
            raise AdminRequestError(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from exc
        except NotLeaderError as exc:
            _, shard_map = driver.placement_status()
            leader = shard_map.nodes.get(exc.leader) if shard_map is not None else None
            return pb.AclChangeResponse(
                leader_peer_address=leader.peer_address if leader is not None else "?"
            )
        reply = (await asyncio.wait_for(fut, self._peers.admin_change_timeout_s))[0]
        return pb.AclChangeResponse(
            error=reply.message if isinstance(reply, ErrorReply) else "",
            count=reply if isinstance(reply, int) else 0,
            applied_index=driver.placement_applied_index(),
        )

    async def change_acl(self, command: list[bytes], timeout_s: float) -> Reply:
        """Apply an ACL change through group 0's leader, wherever it is, and answer its
        reply once this node's own map has it too (so the client's next AUTH here sees
        it). A change is sent at most once: ``-TRYAGAIN`` if no leader took it within
        ``timeout_s``, or if a forward got no answer (it may or may not have applied:
        ``ACL GETUSER`` tells)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        driver = self.runtime.driver
        answer: pb.AclChangeResponse | None = None
        while answer is None and loop.time() < deadline:
            try:
                local = await self.acl_change(command)
            except AdminRequestError as exc:
                return ErrorReply(f"ERR {exc.details}")
            except TimeoutError:
                break
            if not local.leader_peer_address:
                answer = local
                break
            leader = driver.placement_status()[0].leader_id
            if leader and leader != self.node_id:
                remote = await self.transport.peer_acl_change(
                    leader, command, max(0.1, deadline - loop.time())
                )
                if remote is None:
                    break  # it may have been delivered: never send it twice
                if not remote.leader_peer_address:
                    answer = remote
                    break
            await asyncio.sleep(0.1)  # an election or a leader change is under way
        if answer is None:
            return ErrorReply(
                "TRYAGAIN the placement group did not confirm the ACL change in time; "
                "check with ACL GETUSER and retry"
            )
        while not driver.map_follows(answer.applied_index) and loop.time() < deadline:
            await asyncio.sleep(0.005)
        return _acl_reply(answer, command)

    async def _change(self, group_id: int, change: ConfChange) -> int:
        """Propose ``change`` to ``group_id`` (led here) and return the applied index once
        it is applied. The placement group then records it in the map."""
        fut: asyncio.Future[list[Reply]] = asyncio.get_running_loop().create_future()
        driver = self.runtime.driver
        try:
            driver.propose_group_conf_change(
                group_id, change, lambda r: None if fut.done() else fut.set_result(r)
            )
        except KeyError:
            raise _no_group(group_id) from None
        except NotLeaderError as exc:
            raise AdminRequestError(grpc.StatusCode.FAILED_PRECONDITION, str(exc)) from exc
        replies = await asyncio.wait_for(fut, self._peers.admin_change_timeout_s)
        if isinstance(replies[0], ErrorReply):
            raise AdminRequestError(grpc.StatusCode.FAILED_PRECONDITION, replies[0].message)
        return driver.replica(group_id).applied_index


def _report(group: pb.GroupStatus) -> GroupReport:
    return GroupReport(
        group_id=group.group_id,
        term=group.term,
        is_leader=group.role == Role.LEADER.value,
        voters=tuple(group.conf_state.voters),
        learners=tuple(group.conf_state.learners),
        settled=group.applied >= group.commit,
        data_bytes=group.data_bytes,
        commands_applied=group.commands_applied,
        scope_epoch=group.scope_epoch,
        retired=group.retired,
    )


def _acl_reply(answer: pb.AclChangeResponse, command: list[bytes]) -> Reply:
    if answer.error:
        return ErrorReply(answer.error)
    return answer.count if command[0] == DEL_ACL_USERS else OK_REPLY


def _no_group(group_id: int) -> AdminRequestError:
    return AdminRequestError(
        grpc.StatusCode.NOT_FOUND, f"group {group_id} has no replica on this node"
    )
