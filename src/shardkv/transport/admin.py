"""The ``Admin`` gRPC service: status, leadership transfer, membership, partition injection.

The transport serves it on the peer port (same mTLS) and answers what it knows itself:
the peer table in ``Status`` and ``SetPartition``. Everything about Raft groups is
delegated to an `AdminBackend` supplied by the node runtime; without one, those RPCs answer
UNIMPLEMENTED.

``SetPartition`` is test-only fault injection: it is refused (FAILED_PRECONDITION) unless
the transport was built with ``enable_fault_injection=True``, so a production cluster cannot
be partitioned by a stray admin call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, NoReturn, Protocol

import grpc
import grpc.aio

from shardkv.core.raft import Status
from shardkv.observability.logging import get_logger
from shardkv.transport import codec
from shardkv.transport.peer import PeerStats
from shardkv.transport.proto import shardkv_pb2 as pb
from shardkv.transport.proto import shardkv_pb2_grpc as pb_grpc

log = get_logger("shardkv.transport.admin")


class AdminRequestError(Exception):
    """Raised by an `AdminBackend` to answer with a specific gRPC status, e.g.
    FAILED_PRECONDITION "not the leader of group 7". Any other exception answers INTERNAL."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


class AdminBackend(Protocol):
    """What the node runtime provides to the admin service."""

    def group_statuses(self) -> Sequence[Status]:
        """The `Status` of every Raft group hosted here."""
        ...

    def write_p99_ms(self) -> float:
        """p99 of this node's recent client writes, in milliseconds (0: none)."""
        ...

    def group_sizes(self) -> dict[int, tuple[int, int, int, bool]]:
        """group id -> (data bytes, client commands executed since the replica opened,
        epoch of its applied scope, whether it retired) of every data group here."""
        ...

    async def transfer_leader(self, group_id: int, to_node: int) -> None:
        """Start a leadership transfer of ``group_id`` to ``to_node`` (this node must lead
        the group)."""
        ...

    async def add_member(self, group_id: int, node_id: int, address: str, learner: bool) -> int:
        """Propose adding ``node_id`` (reachable at peer ``address``) to ``group_id``;
        return the log index of the proposal."""
        ...

    async def remove_member(self, group_id: int, node_id: int) -> int:
        """Propose removing ``node_id`` from ``group_id``; return the proposal's index."""
        ...

    async def join(
        self, peer_address: str, client_address: str, admin_address: str, wanted_node_id: int
    ) -> tuple[int, bytes, str]:
        """Register a new node in the cluster map, as ``wanted_node_id`` if not 0: (its
        node id, the encoded map after registering it, ""), or (0, b"", the placement
        leader's peer address) when this node does not lead the placement group."""
        ...


class AdminService(pb_grpc.AdminServicer):
    """The servicer; built by `PeerTransport`, which passes its own views as callables."""

    def __init__(
        self,
        *,
        node_id: int,
        backend: AdminBackend | None,
        peer_stats: Callable[[], Mapping[int, PeerStats]],
        blocked: Callable[[], frozenset[int]],
        set_blocked: Callable[[frozenset[int]], None],
        enable_fault_injection: bool,
        labels: Mapping[str, str] | None = None,
        admit: Callable[[grpc.aio.ServicerContext[Any, Any]], Awaitable[int]] | None = None,
    ) -> None:
        self._admit = admit
        self._node_id = node_id
        self._labels = dict(labels or {})
        self._backend = backend
        self._peer_stats = peer_stats
        self._blocked = blocked
        self._set_blocked = set_blocked
        self._enable_fault_injection = enable_fault_injection

    async def Status(
        self, request: pb.StatusRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.StatusResponse:
        await self._check(context)
        response = pb.StatusResponse(node_id=self._node_id, labels=dict(self._labels))
        blocked = self._blocked()
        for node_id, s in sorted(self._peer_stats().items()):
            response.peers.add(
                node_id=node_id,
                address=s.address,
                connected=s.connected,
                queued_messages=s.queued_messages,
                sent_messages=s.sent_messages,
                dropped_messages=s.dropped_messages,
                blocked=node_id in blocked,
            )
        if self._backend is not None:
            response.write_p99_ms = self._backend.write_p99_ms()
            sizes = self._backend.group_sizes()
            for st in self._backend.group_statuses():
                data_bytes, commands, scope_epoch, retired = sizes.get(
                    st.group_id, (0, 0, 0, False)
                )
                response.groups.add(
                    data_bytes=data_bytes,
                    commands_applied=commands,
                    scope_epoch=scope_epoch,
                    retired=retired,
                    group_id=st.group_id,
                    term=st.term,
                    leader=st.lead,
                    role=st.role.value,
                    commit=st.commit,
                    applied=st.applied,
                    conf_state=codec.conf_state_to_pb(st.conf_state),
                )
        return response

    async def TransferLeader(
        self, request: pb.TransferLeaderRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.TransferLeaderResponse:
        await self._check(context)
        backend = await self._require_backend(context)
        try:
            await backend.transfer_leader(request.group_id, request.to_node)
        except Exception as exc:
            await _abort_for(context, "transfer_leader", exc)
        return pb.TransferLeaderResponse()

    async def AddMember(
        self, request: pb.AddMemberRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.AddMemberResponse:
        await self._check(context)
        backend = await self._require_backend(context)
        try:
            index = await backend.add_member(
                request.group_id, request.node_id, request.address, request.learner
            )
        except Exception as exc:
            await _abort_for(context, "add_member", exc)
        return pb.AddMemberResponse(index=index)

    async def RemoveMember(
        self, request: pb.RemoveMemberRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.RemoveMemberResponse:
        await self._check(context)
        backend = await self._require_backend(context)
        try:
            index = await backend.remove_member(request.group_id, request.node_id)
        except Exception as exc:
            await _abort_for(context, "remove_member", exc)
        return pb.RemoveMemberResponse(index=index)

    async def Join(
        self, request: pb.JoinRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.JoinResponse:
        backend = await self._require_backend(context)
        if not request.peer_address or not request.client_address:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "a joining node must give its peer and client addresses",
            )
        claimed = await self._admit(context) if self._admit is not None else 0
        if claimed and request.node_id != claimed:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"node {claimed} may only join as node {claimed}, not {request.node_id}",
            )
        try:
            node_id, shard_map, leader = await backend.join(
                request.peer_address,
                request.client_address,
                request.admin_address,
                request.node_id,
            )
        except Exception as exc:
            await _abort_for(context, "join", exc)
        return pb.JoinResponse(node_id=node_id, shard_map=shard_map, leader_peer_address=leader)

    async def AclChange(
        self, request: pb.AclChangeRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.AclChangeResponse:
        await self._check(context)
        backend = await self._require_backend(context)
        try:
            return await backend.acl_change(list(request.command))
        except Exception as exc:
            await _abort_for(context, "acl_change", exc)

    async def SetPartition(
        self, request: pb.SetPartitionRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.SetPartitionResponse:
        await self._check(context)
        if not self._enable_fault_injection:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                "fault injection is disabled on this node (test-only feature)",
            )
        blocked = frozenset(request.blocked_nodes)
        self._set_blocked(blocked)
        log.warning("partition_injected", blocked=sorted(blocked))
        return pb.SetPartitionResponse(blocked_nodes=sorted(self._blocked()))

    async def _check(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        if self._admit is not None:
            await self._admit(context)

    async def _require_backend(
        self, context: grpc.aio.ServicerContext[object, object]
    ) -> AdminBackend:
        if self._backend is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "no Raft groups on this node")
        assert self._backend is not None
        return self._backend


async def _abort_for(
    context: grpc.aio.ServicerContext[object, object], what: str, exc: Exception
) -> NoReturn:
    if isinstance(exc, AdminRequestError):
        await context.abort(exc.code, exc.details)
    else:
        log.error("admin_request_failed", request=what, error=repr(exc))
        await context.abort(grpc.StatusCode.INTERNAL, f"{what} failed: {type(exc).__name__}")
    raise AssertionError("context.abort returned")
