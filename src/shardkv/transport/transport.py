"""`PeerTransport`: this node's gRPC server and its batched streams to every peer node.

What it owns: moving Raft messages between node processes, best effort. What it must never
do: block the event loop, grow a buffer without bound, or interpret Raft (it never looks at
a message beyond its destination and whether it is a MsgSnap).

Outgoing: `send` sorts messages by destination node into bounded per-peer queues and
returns at once; one `PeerSender` task per peer drains its queue into one ``MessageBatch``
per wake-up over one long-lived ``Raft.Stream`` (see ``peer.py`` for batching, drop policy
and reconnects). MsgSnap messages leave the stream: they are sent chunked over
``Raft.SendSnapshot`` on a separate connection, at most ``max_pending_snapshots_per_peer``
per peer (more are refused and reported as failed), and the outcome is reported to
``on_snapshot_status(to_node, group_id, ok)`` so the node can call
``RawNode.report_snapshot``.

Incoming: each stream's batches are decoded and handed to ``on_messages(from_node,
messages)`` on the event loop, in the order the sender produced them. A sender that
reconnects supersedes its previous stream: anything still arriving on the old one is
ignored, so per-sender order holds across reconnects (at the price of loss, which Raft
tolerates). Messages addressed to another node, or that do not decode, are dropped and
counted. Snapshots are reassembled and verified (`SnapshotAssembler`), bounded by
``max_snapshot_bytes`` each and ``max_inbound_snapshots`` at once, then handed to
``on_snapshot(from_node, message)``; the sender is acknowledged once that returns (or, if
it returns an awaitable, once that completes), so the sender's report means "installed or
queued by the receiving node", not just "bytes arrived".

Callbacks run on the event loop and must not block. ``on_peer_unreachable(node_id)`` is
scheduled with ``call_soon`` (never called from inside `send`), so it may safely step Raft.

Partition injection (tests): `set_blocked` drops everything to and from the given nodes,
at the queues, before every batch, and on arrival.
"""

from __future__ import annotations

import asyncio
import inspect
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio

from shardkv.core.raft.types import Message, MessageType
from shardkv.observability.logging import get_logger
from shardkv.storage.snapshot_files import SnapshotFiles
from shardkv.transport import codec
from shardkv.transport.admin import AdminBackend, AdminService
from shardkv.transport.backoff import Backoff
from shardkv.transport.identity import (
    DEFAULT_CLUSTER_ID,
    cert_pem_of,
    check_peer,
    claimed_identity,
    identity_metadata,
)
from shardkv.transport.peer import PeerSender, PeerStats, SenderLimits, SnapshotSendError
from shardkv.transport.proto import shardkv_pb2 as pb
from shardkv.transport.proto import shardkv_pb2_grpc as pb_grpc
from shardkv.transport.rate_limit import ByteRateLimiter
from shardkv.transport.snapshot import (
    DEFAULT_SNAPSHOT_CHUNK_BYTES,
    SnapshotAssembler,
    SnapshotTransferError,
)
from shardkv.transport.tls import LoadedPeerTLS, PeerTLS

log = get_logger("shardkv.transport")

#: How long `PeerTransport.stop` waits for its streams and channels to close before it
#: stops the server regardless.
STOP_SENDERS_TIMEOUT_S = 5.0

OnMessages = Callable[[int, list[Message]], None]
"""``(from_node, messages)``: a batch received from a peer, in its order."""
OnSnapshot = Callable[[int, Message], Awaitable[None] | None]
"""``(from_node, snap_message)``: a verified MsgSnap with its data. Raising refuses it
(the sender sees INTERNAL)."""
OnSnapshotStatus = Callable[[int, int, bool], None]
"""``(to_node, group_id, ok)``: the outcome of a snapshot sent through `send`."""
OnPeerUnreachable = Callable[[int], None]
"""``(node_id)``: a connection attempt to the peer failed or its stream broke."""


class TransportError(Exception):
    """The transport cannot start (address in use, bad TLS files) or is used wrongly."""


@dataclass(slots=True)
class TransportStats:
    """Counters for traffic not attributable to one outgoing peer. Counters only grow."""

    received_batches: int = 0
    received_messages: int = 0
    dropped_inbound_blocked: int = 0
    dropped_misrouted: int = 0
    dropped_undecodable: int = 0
    dropped_unknown_peer: int = 0
    dropped_snapshot_backlog: int = 0
    delivery_errors: int = 0
    streams_superseded: int = 0
    snapshots_received: int = 0
    snapshots_refused: int = 0
    #: Calls refused by the identity check, by reason (`identity.Refused.reason`).
    peer_refusals: dict[str, int] = field(default_factory=dict)


class PeerTransport:
    """gRPC transport between ShardKV nodes. See the module docstring for the contract.

    ``peers`` maps node id to ``host:port`` (never includes ``node_id``). Bounds:

    - ``max_queue_messages`` / ``max_queue_bytes``: per destination queue; when either is
      reached the OLDEST queued message is dropped (counted in ``PeerStats.dropped_overflow``).
    - ``max_batch_bytes``: a batch closes once the next message would pass it (a single
      larger message goes alone).
    - ``max_message_bytes``: the gRPC receive limit of our server; a single outgoing
      message estimated larger is dropped (``dropped_too_large``).
    - ``snapshot_chunk_bytes`` (default 1 MiB), ``max_snapshot_bytes`` (receiver side),
      ``max_pending_snapshots_per_peer`` (sender side), ``max_inbound_snapshots``,
      ``snapshot_timeout_s`` (whole transfer), ``snapshot_send_bytes_per_s`` (every
      snapshot this node sends, all peers together; 0: no limit).
    - ``labels``: this node's failure domains, answered in the Admin ``Status`` call.
    - ``snapshot_files``: where the node keeps snapshots. A snapshot whose data is a file
      reference is sent from that file, and a KV snapshot received is written to a new
      file there as it arrives; the handler then gets the file's reference. Without it,
      snapshots are held in memory (they must fit in ``max_snapshot_bytes``).
    - ``connect_timeout_s``: to open a stream and read the peer's hello.
    - ``backoff_initial_s`` / ``backoff_max_s``: reconnect delays, jittered by ``rng``.
    - ``keepalive_interval_s`` / ``keepalive_timeout_s``: HTTP/2 pings that detect a dead
      peer under a stalled write.

    Lifecycle: construct anywhere, `start` on the running loop, `stop` once.
    """

    def __init__(
        self,
        node_id: int,
        listen_addr: str,
        peers: Mapping[int, str],
        *,
        on_messages: OnMessages,
        on_snapshot: OnSnapshot,
        on_snapshot_status: OnSnapshotStatus | None = None,
        on_peer_unreachable: OnPeerUnreachable | None = None,
        client_address: str = "",
        admin_address: str = "",
        on_peer_client_address: Callable[[int, str, str], None] | None = None,
        tls: PeerTLS | None = None,
        max_queue_messages: int = 4096,
        max_queue_bytes: int = 64 << 20,
        max_batch_bytes: int = 4 << 20,
        max_message_bytes: int = 64 << 20,
        snapshot_chunk_bytes: int = DEFAULT_SNAPSHOT_CHUNK_BYTES,
        max_snapshot_bytes: int = 4 << 30,
        max_pending_snapshots_per_peer: int = 4,
        max_inbound_snapshots: int = 4,
        snapshot_timeout_s: float = 600.0,
        snapshot_send_bytes_per_s: int = 0,
        connect_timeout_s: float = 5.0,
        backoff_initial_s: float = 0.05,
        backoff_max_s: float = 2.0,
        keepalive_interval_s: float = 10.0,
        keepalive_timeout_s: float = 5.0,
        rng: random.Random | None = None,
        admin: AdminBackend | None = None,
        enable_fault_injection: bool = False,
        snapshot_files: SnapshotFiles | None = None,
        labels: Mapping[str, str] | None = None,
        cluster_id: str = DEFAULT_CLUSTER_ID,
    ) -> None:
        if node_id <= 0:
            raise ValueError(f"node_id must be positive, got {node_id}")
        if node_id in peers:
            raise ValueError(f"peers must not include this node ({node_id})")
        for name, value in (
            ("max_queue_messages", max_queue_messages),
            ("max_batch_bytes", max_batch_bytes),
            ("snapshot_chunk_bytes", snapshot_chunk_bytes),
            ("max_pending_snapshots_per_peer", max_pending_snapshots_per_peer),
            ("max_inbound_snapshots", max_inbound_snapshots),
        ):
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if not max_batch_bytes <= max_message_bytes <= max_queue_bytes:
            raise ValueError(
                "need max_batch_bytes <= max_message_bytes <= max_queue_bytes, got "
                f"{max_batch_bytes}, {max_message_bytes}, {max_queue_bytes}"
            )
        if snapshot_chunk_bytes > max_message_bytes // 2:
            raise ValueError("snapshot_chunk_bytes must be at most max_message_bytes / 2")
        self.node_id = node_id
        self.cluster_id = cluster_id
        #: Sent with every call (`transport.identity`); checked on every call received.
        self._call_metadata = identity_metadata(cluster_id, node_id)
        self.listen_addr = listen_addr
        self._initial_peers = dict(peers)
        self._on_messages = on_messages
        #: Sent in the hello of every stream this node accepts: peers learn where Redis
        #: clients reach this node without waiting for it to lead a shard.
        self._client_address = client_address
        self._admin_address = admin_address
        self._on_peer_client_address = on_peer_client_address or (
            lambda node_id, client, admin: None
        )
        self._on_snapshot = on_snapshot
        self._snapshot_files = snapshot_files
        self._labels = dict(labels or {})
        self._on_snapshot_status = on_snapshot_status
        self._on_peer_unreachable = on_peer_unreachable
        self._tls = tls
        self._loaded_tls: LoadedPeerTLS | None = None
        self._limits = SenderLimits(
            max_queue_messages=max_queue_messages,
            max_queue_bytes=max_queue_bytes,
            max_batch_bytes=max_batch_bytes,
            max_message_bytes=max_message_bytes,
            connect_timeout_s=connect_timeout_s,
            snapshot_chunk_bytes=snapshot_chunk_bytes,
            snapshot_timeout_s=snapshot_timeout_s,
            snapshot_rate=ByteRateLimiter(snapshot_send_bytes_per_s, snapshot_chunk_bytes),
        )
        self._max_message_bytes = max_message_bytes
        self._max_snapshot_bytes = max_snapshot_bytes
        self._max_pending_snapshots_per_peer = max_pending_snapshots_per_peer
        self._max_inbound_snapshots = max_inbound_snapshots
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._keepalive_ms = int(keepalive_interval_s * 1000)
        self._keepalive_timeout_ms = int(keepalive_timeout_s * 1000)
        self._rng = rng if rng is not None else random.Random()
        self._admin = admin
        self._enable_fault_injection = enable_fault_injection

        self._peers: dict[int, PeerSender] = {}
        self._blocked: frozenset[int] = frozenset()
        self._stats = TransportStats()
        self._server: grpc.aio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._port: int | None = None
        self._stopped = False
        # The stream currently accepted from each sender; older ones are superseded.
        self._inbound_streams: dict[int, object] = {}
        self._inbound_snapshots = 0
        #: Set while this node's disk is nearly full: snapshots are refused before any
        #: byte of them is written (the sender retries later).
        self.refuse_snapshots = False
        #: node id -> (address, channel) for Admin calls to peers (`peer_status`).
        self._admin_channels: dict[int, tuple[str, grpc.aio.Channel]] = {}
        self._snapshot_tasks: set[asyncio.Task[None]] = set()
        self._closing: set[asyncio.Task[None]] = set()

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (useful with ``listen_addr`` ``host:0``). Only after `start`."""
        if self._port is None:
            raise TransportError("transport not started")
        return self._port

    @property
    def address(self) -> str:
        """``host:port`` as bound (the host of ``listen_addr``, the actual port)."""
        host = self.listen_addr.rsplit(":", 1)[0]
        return f"{host}:{self.port}"

    async def start(self) -> None:
        """Load TLS files, bind and start the server, start a sender per peer.

        Raises `TransportError` if the address cannot be bound or TLS files are bad
        (`PeerTLSError`, a subclass of ``ValueError``, is wrapped)."""
        if self._server is not None or self._stopped:
            raise TransportError("start() called twice")
        self._loop = asyncio.get_running_loop()
        if self._tls is not None:
            try:
                self._loaded_tls = self._tls.load()
            except ValueError as exc:
                raise TransportError(str(exc)) from exc
        server = grpc.aio.server(options=self._server_options())
        pb_grpc.add_RaftServicer_to_server(_RaftService(self), server)  # type: ignore[no-untyped-call]
        pb_grpc.add_AdminServicer_to_server(  # type: ignore[no-untyped-call]
            AdminService(
                node_id=self.node_id,
                backend=self._admin,
                peer_stats=self.peer_stats,
                blocked=lambda: self._blocked,
                set_blocked=self.set_blocked,
                enable_fault_injection=self._enable_fault_injection,
                labels=self._labels,
                admit=self._admit,
            ),
            server,
        )
        try:
            if self._loaded_tls is not None:
                port = server.add_secure_port(
                    self.listen_addr, self._loaded_tls.server_credentials()
                )
            else:
                port = server.add_insecure_port(self.listen_addr)
        except RuntimeError as exc:
            raise TransportError(f"cannot listen on {self.listen_addr}: {exc}") from exc
        if port == 0:
            raise TransportError(f"cannot listen on {self.listen_addr}")
        await server.start()
        self._server = server
        self._port = port
        for node_id, addr in self._initial_peers.items():
            self.add_peer(node_id, addr)
        log.info(
            "transport_started",
            node_id=self.node_id,
            address=self.address,
            tls=self._loaded_tls is not None,
            peers=len(self._peers),
        )

    async def stop(self, grace_s: float = 1.0) -> None:
        """Stop senders (queued messages are discarded), cancel snapshot sends, and stop
        the server, letting in-flight RPCs finish for up to ``grace_s``. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        peers = list(self._peers.values())
        self._peers.clear()
        channels = [channel for _, channel in self._admin_channels.values()]
        self._admin_channels.clear()
        for task in self._snapshot_tasks:
            task.cancel()
        loop = asyncio.get_running_loop()
        closing = [
            *(loop.create_task(channel.close(grace=None)) for channel in channels),
            *(loop.create_task(p.close()) for p in peers),
            *self._closing,
            *self._snapshot_tasks,
        ]
        if closing:
            # Closing a grpc.aio channel can hang (seen once in CI: a peer's stream did not
            # end for 20 s). The node's shutdown must not: after the bound, stop anyway.
            done, pending = await asyncio.wait(closing, timeout=STOP_SENDERS_TIMEOUT_S)
            for task in done:
                if not task.cancelled():
                    task.exception()  # retrieved: a failed close changes nothing here
            if pending:
                log.warning("transport_stop_left_streams", node_id=self.node_id, count=len(pending))
                for task in pending:
                    task.cancel()
        if self._server is not None:
            await self._server.stop(grace_s)
        log.info("transport_stopped", node_id=self.node_id)

    # --- membership ------------------------------------------------------------------------

    def snapshot_send_wait_s(self) -> float:
        """Seconds snapshot sends have waited for ``snapshot_send_bytes_per_s`` so far."""
        rate = self._limits.snapshot_rate
        return rate.waited_s if rate is not None else 0.0

    def add_peer(self, node_id: int, address: str) -> None:
        """Start sending to ``node_id`` at ``address`` (``host:port``). For a known peer
        with a new address, reconnect there (its queue is kept). Only after `start`."""
        if node_id == self.node_id:
            raise ValueError(f"cannot add this node ({node_id}) as its own peer")
        if self._loop is None or self._stopped:
            raise TransportError("add_peer needs a started transport")
        existing = self._peers.get(node_id)
        if existing is not None:
            existing.set_address(address)
            return
        sender = PeerSender(
            node_id=node_id,
            address=address,
            local_node_id=self.node_id,
            channel_factory=self._new_channel,
            limits=self._limits,
            backoff=Backoff(
                self._rng, initial_s=self._backoff_initial_s, max_s=self._backoff_max_s
            ),
            is_blocked=lambda: node_id in self._blocked,
            on_unreachable=lambda: self._report_unreachable(node_id),
            on_hello=lambda client, admin: self._on_peer_client_address(node_id, client, admin),
            snapshot_files=self._snapshot_files,
            call_metadata=self._call_metadata,
        )
        self._peers[node_id] = sender
        sender.start()

    async def peer_status(self, node_id: int, timeout_s: float) -> pb.StatusResponse | None:
        """``node_id``'s answer to the Admin ``Status`` call, or None (unknown peer,
        partitioned by fault injection, unreachable, or no answer within ``timeout_s``).
        One channel per peer is kept for these calls."""
        stub = await self._admin_stub(node_id)
        if stub is None:
            return None
        try:
            response: pb.StatusResponse = await stub.Status(
                pb.StatusRequest(), timeout=timeout_s, metadata=self._call_metadata
            )
        except grpc.aio.AioRpcError:
            return None
        return response

    async def peer_acl_change(
        self, node_id: int, command: list[bytes], timeout_s: float
    ) -> pb.AclChangeResponse | None:
        """Forward an ACL change to ``node_id`` (group 0's leader, as far as this node
        knows): its answer, or None if it could not be asked or did not answer in time."""
        stub = await self._admin_stub(node_id)
        if stub is None:
            return None
        try:
            response: pb.AclChangeResponse = await stub.AclChange(
                pb.AclChangeRequest(command=command),
                timeout=timeout_s,
                metadata=self._call_metadata,
            )
        except grpc.aio.AioRpcError as exc:
            log.info("acl_change_forward_failed", to=node_id, error=exc.code().name)
            return None
        return response

    async def _admin_stub(self, node_id: int) -> pb_grpc.AdminStub | None:
        """A stub on the one channel kept per peer for Admin calls (None: unknown peer,
        partitioned by fault injection, or the transport stopped)."""
        sender = self._peers.get(node_id)
        if sender is None or node_id in self._blocked or self._stopped:
            return None
        cached = self._admin_channels.get(node_id)
        if cached is None or cached[0] != sender.address:
            if cached is not None:
                await cached[1].close(grace=None)
            cached = (sender.address, self._new_channel(sender.address))
            self._admin_channels[node_id] = cached
        return pb_grpc.AdminStub(cached[1])  # type: ignore[no-untyped-call]

    def remove_peer(self, node_id: int) -> None:
        """Stop sending to ``node_id``: its queue is discarded, its stream closed in the
        background (`stop` waits for it). Unknown ids are ignored."""
        sender = self._peers.pop(node_id, None)
        if sender is None:
            return
        assert self._loop is not None
        task = self._loop.create_task(sender.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def peers(self) -> dict[int, str]:
        """Current peers: node id -> address."""
        return {node_id: p.address for node_id, p in self._peers.items()}

    # --- sending ---------------------------------------------------------------------------

    def send(self, messages: Iterable[Message]) -> None:
        """Queue ``messages`` for their ``to`` nodes and return at once (never blocks).

        Messages to a node that is not a peer are dropped (``dropped_unknown_peer``), as
        are messages to a blocked peer. MsgSnap messages are sent over ``SendSnapshot``;
        their outcome goes to ``on_snapshot_status``. Call it once per loop iteration with
        everything produced: all messages for one peer then leave in one stream message.
        """
        by_peer: dict[int, list[Message]] = {}
        snapshots: list[Message] | None = None
        snap = MessageType.SNAP
        for m in messages:
            if m.type is snap:
                if snapshots is None:
                    snapshots = []
                snapshots.append(m)
                continue
            pending = by_peer.get(m.to)
            if pending is None:
                by_peer[m.to] = [m]
            else:
                pending.append(m)
        peers = self._peers
        blocked = self._blocked
        for to, pending in by_peer.items():
            sender = peers.get(to)
            if sender is None:
                self._stats.dropped_unknown_peer += len(pending)
            elif to in blocked:
                sender.count_blocked_drop(len(pending))
            elif sender.enqueue(pending):
                self._report_unreachable(to)
        if snapshots:
            for m in snapshots:
                sender = peers.get(m.to)
                if sender is None:
                    self._stats.dropped_unknown_peer += 1
                    self._report_snapshot(m.to, m.group_id, ok=False)
                elif m.to in blocked:
                    sender.count_blocked_drop(1)
                    self._report_snapshot(m.to, m.group_id, ok=False)
                else:
                    self._start_snapshot(sender, m)

    def set_blocked(self, peers: Iterable[int]) -> None:
        """Test-only partition injection: from now on drop every message to and from these
        nodes (replacing the previous set; an empty set heals). Queued messages to them are
        dropped when their sender next wakes."""
        self._blocked = frozenset(peers)
        for node_id in self._blocked:
            sender = self._peers.get(node_id)
            if sender is not None:
                sender.wake()

    @property
    def blocked(self) -> frozenset[int]:
        return self._blocked

    async def send_snapshot(self, message: Message) -> int:
        """Send one MsgSnap now and wait for the peer's acknowledgement (bypasses the
        pending bound of `send`); returns the bytes acknowledged.

        Raises `SnapshotSendError` on failure or refusal, `TransportError` if ``to`` is not
        a peer."""
        sender = self._peers.get(message.to)
        if sender is None:
            raise TransportError(f"node {message.to} is not a peer")
        return await sender.send_snapshot(message)

    # --- observability ---------------------------------------------------------------------

    def queue_depth(self, node_id: int) -> int:
        """Messages queued for ``node_id`` (0 for an unknown node)."""
        sender = self._peers.get(node_id)
        return 0 if sender is None else sender.queue_depth

    def is_connected(self, node_id: int) -> bool:
        sender = self._peers.get(node_id)
        return sender is not None and sender.connected

    def peer_stats(self) -> dict[int, PeerStats]:
        """A copy of every peer's counters and gauges."""
        return {node_id: p.stats() for node_id, p in self._peers.items()}

    def stats(self) -> TransportStats:
        """A copy of the transport-wide counters."""
        s = self._stats
        values = {name: getattr(s, name) for name in TransportStats.__slots__}
        return TransportStats(
            **{k: dict(v) if isinstance(v, dict) else v for k, v in values.items()}
        )

    # --- internals: outgoing --------------------------------------------------------------

    def _report_unreachable(self, node_id: int) -> None:
        if self._on_peer_unreachable is not None and self._loop is not None:
            self._loop.call_soon(self._on_peer_unreachable, node_id)

    def _start_snapshot(self, sender: PeerSender, m: Message) -> None:
        if sender.snapshots_pending >= self._max_pending_snapshots_per_peer:
            self._stats.dropped_snapshot_backlog += 1
            log.warning("snapshot_backlog_full", peer=sender.node_id, group=m.group_id)
            self._report_snapshot(sender.node_id, m.group_id, ok=False)
            return
        assert self._loop is not None
        sender.snapshots_pending += 1
        task = self._loop.create_task(self._snapshot_task(sender, m))
        self._snapshot_tasks.add(task)
        task.add_done_callback(self._snapshot_tasks.discard)

    async def _snapshot_task(self, sender: PeerSender, m: Message) -> None:
        ok = False
        try:
            size = await sender.send_snapshot(m)
            ok = True
            log.info("snapshot_sent", peer=sender.node_id, group=m.group_id, bytes=size)
        except SnapshotSendError as exc:
            log.warning(
                "snapshot_send_failed", peer=sender.node_id, group=m.group_id, error=str(exc)
            )
        finally:
            sender.snapshots_pending -= 1
            if not self._stopped:
                self._report_snapshot(sender.node_id, m.group_id, ok=ok)

    def _report_snapshot(self, to: int, group_id: int, *, ok: bool) -> None:
        if self._on_snapshot_status is not None and self._loop is not None:
            self._loop.call_soon(self._on_snapshot_status, to, group_id, ok)

    def _new_channel(self, address: str) -> grpc.aio.Channel:
        options: list[tuple[str, Any]] = [
            ("grpc.keepalive_time_ms", self._keepalive_ms),
            ("grpc.keepalive_timeout_ms", self._keepalive_timeout_ms),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
            # Our own backoff decides when to retry; a private subchannel means a new
            # channel really dials again instead of joining a shared one in backoff.
            ("grpc.use_local_subchannel_pool", 1),
            ("grpc.enable_retries", 0),
            ("grpc.max_receive_message_length", 1 << 20),
        ]
        if self._loaded_tls is not None:
            options += self._loaded_tls.channel_options()
            return grpc.aio.secure_channel(
                address, self._loaded_tls.channel_credentials(), options=options
            )
        return grpc.aio.insecure_channel(address, options=options)

    def _server_options(self) -> list[tuple[str, Any]]:
        return [
            ("grpc.max_receive_message_length", self._max_message_bytes),
            # Two processes must never share a peer port (gRPC allows it by default).
            ("grpc.so_reuseport", 0),
            ("grpc.keepalive_time_ms", self._keepalive_ms),
            ("grpc.keepalive_timeout_ms", self._keepalive_timeout_ms),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_recv_ping_interval_without_data_ms", 1000),
            ("grpc.http2.max_ping_strikes", 0),
        ]

    # --- internals: incoming ---------------------------------------------------------------

    async def _admit(self, context: grpc.aio.ServicerContext[Any, Any]) -> int:
        """Check who calls (`identity.check_peer`) and answer the node id it claims (0: a
        node joining); a call from another cluster, or whose certificate is not of the
        node it claims, is aborted with PERMISSION_DENIED, logged and counted."""
        claimed_cluster, claimed_node = claimed_identity(context.invocation_metadata())
        tls = self._loaded_tls is not None
        refused = check_peer(
            self.cluster_id,
            claimed_cluster,
            claimed_node,
            cert_pem_of(context) if tls else None,
            tls,
        )
        if refused is not None:
            self._stats.peer_refusals[refused.reason] = (
                self._stats.peer_refusals.get(refused.reason, 0) + 1
            )
            log.warning(
                "peer_refused",
                peer=context.peer(),
                claimed_node=claimed_node,
                reason=refused.reason,
                detail=refused.detail,
            )
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, refused.detail)
        assert claimed_node is not None
        return claimed_node

    async def _serve_stream(
        self,
        requests: Any,
        context: grpc.aio.ServicerContext[pb.MessageBatch, pb.Ack],
    ) -> None:
        claimed = await self._admit(context)
        await context.write(
            pb.Ack(
                node_id=self.node_id,
                client_address=self._client_address,
                admin_address=self._admin_address,
            )
        )
        token = object()
        from_node: int | None = None
        stats = self._stats
        node_id = self.node_id
        try:
            async for batch in requests:
                sender = batch.from_node
                if from_node is None:
                    if sender != claimed:
                        await context.abort(
                            grpc.StatusCode.PERMISSION_DENIED,
                            f"batch from node {sender} on a stream opened by node {claimed}",
                        )
                    from_node = sender
                    if from_node in self._inbound_streams:
                        stats.streams_superseded += 1
                    self._inbound_streams[from_node] = token
                elif sender != from_node:
                    await context.abort(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"batch from node {sender} on the stream of node {from_node}",
                    )
                if self._inbound_streams.get(from_node) is not token:
                    return  # a newer stream from this sender took over
                if from_node in self._blocked:
                    stats.dropped_inbound_blocked += len(batch.messages)
                    continue
                messages, undecodable = codec.decode_batch(batch)
                stats.received_batches += 1
                if undecodable:
                    stats.dropped_undecodable += undecodable
                    log.warning("messages_undecodable", peer=from_node, count=undecodable)
                # A message for another node, or one claiming another sender than the
                # stream's (whose identity was checked), is never delivered.
                if any(m.to != node_id or m.from_ != from_node for m in messages):
                    kept = [m for m in messages if m.to == node_id and m.from_ == from_node]
                    stats.dropped_misrouted += len(messages) - len(kept)
                    messages = kept
                if not messages:
                    continue
                stats.received_messages += len(messages)
                try:
                    self._on_messages(from_node, messages)
                except Exception:
                    stats.delivery_errors += 1
                    log.exception("on_messages_failed", peer=from_node)
        finally:
            if from_node is not None and self._inbound_streams.get(from_node) is token:
                del self._inbound_streams[from_node]

    async def _serve_snapshot(
        self,
        requests: Any,
        context: grpc.aio.ServicerContext[pb.SnapshotChunk, pb.SnapshotAck],
    ) -> pb.SnapshotAck:
        claimed = await self._admit(context)
        if self.refuse_snapshots:
            self._stats.snapshots_refused += 1
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "this node's disk is full")
        if self._inbound_snapshots >= self._max_inbound_snapshots:
            self._stats.snapshots_refused += 1
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"already receiving {self._inbound_snapshots} snapshots",
            )
        self._inbound_snapshots += 1
        try:
            assembler = SnapshotAssembler(
                self.node_id, self._max_snapshot_bytes, self._snapshot_files
            )
            try:
                async for chunk in requests:
                    assembler.add(chunk)
                    if assembler.from_node != claimed:
                        raise SnapshotTransferError(
                            grpc.StatusCode.PERMISSION_DENIED,
                            f"snapshot from node {assembler.from_node} sent by node {claimed}",
                        )
                    if assembler.from_node in self._blocked:
                        raise SnapshotTransferError(
                            grpc.StatusCode.UNAVAILABLE, "partitioned (fault injection)"
                        )
                message = await assembler.message_async()
            except SnapshotTransferError as exc:
                self._stats.snapshots_refused += 1
                log.warning(
                    "snapshot_refused",
                    peer=assembler.from_node,
                    code=exc.code.name,
                    reason=exc.details,
                )
                await context.abort(exc.code, exc.details)
            finally:
                assembler.close()
            from_node = message.from_
            try:
                result = self._on_snapshot(from_node, message)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                self._stats.snapshots_refused += 1
                log.exception("on_snapshot_failed", peer=from_node, group=message.group_id)
                await context.abort(
                    grpc.StatusCode.INTERNAL, f"node refused the snapshot: {type(exc).__name__}"
                )
            self._stats.snapshots_received += 1
            return pb.SnapshotAck(node_id=self.node_id, received_bytes=assembler.received_bytes)
        finally:
            self._inbound_snapshots -= 1


class _RaftService(pb_grpc.RaftServicer):
    def __init__(self, transport: PeerTransport) -> None:
        self._transport = transport

    async def Stream(self, request_iterator: Any, context: Any) -> None:
        await self._transport._serve_stream(request_iterator, context)

    async def SendSnapshot(self, request_iterator: Any, context: Any) -> pb.SnapshotAck:
        return await self._transport._serve_snapshot(request_iterator, context)
