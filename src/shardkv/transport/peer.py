"""One destination node: its bounded outgoing queue, its stream, its reconnect loop.

A `PeerSender` owns a task that keeps ONE long-lived ``Raft.Stream`` open to its node and,
on every wake-up, drains the queue into one `MessageBatch` (split only at
``max_batch_bytes``). While a write is in flight, new messages accumulate and go in the
next batch, so batches grow with load and no Raft message ever costs its own stream message.

Queue overflow drops the OLDEST messages. Raft tolerates loss (heartbeats repeat, appends
are retried from the follower's acknowledged index, votes are re-requested); what matters
after an outage is the newest state: the current term, the latest commit index, the most
recent append. Dropping the newest would instead freeze the queue with messages from the
moment the peer went away, delivered stale when it comes back.

Connection handling: a fresh gRPC channel per attempt (no shared subchannel, so gRPC's own
reconnect backoff never stacks on ours), a hello `Ack` naming the receiver checks we
reached the node we meant, exponential backoff with jitter between attempts, reset after a
successful hello. Keepalive pings detect a peer that vanished without closing the
connection (SIGSTOP, a cable cut) while a write waits on flow control.

Everything here runs on the event loop; nothing blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio

from shardkv.core.raft.types import Message, MessageType
from shardkv.observability.logging import get_logger
from shardkv.storage.snapshot_files import SnapshotFiles
from shardkv.transport import codec
from shardkv.transport.backoff import Backoff
from shardkv.transport.proto import shardkv_pb2 as pb
from shardkv.transport.rate_limit import ByteRateLimiter
from shardkv.transport.snapshot import iter_chunks

log = get_logger("shardkv.transport")

STREAM_METHOD = "/shardkv.v1.Raft/Stream"
SNAPSHOT_METHOD = "/shardkv.v1.Raft/SendSnapshot"

#: Bytes charged per message and per entry on top of their payloads when enforcing the
#: queue and batch byte bounds (approximates field tags, varints and sub-message headers).
MESSAGE_OVERHEAD_BYTES = 48
ENTRY_OVERHEAD_BYTES = 24


def estimated_size_bytes(m: Message) -> int:
    """A cheap upper estimate of ``m``'s encoded size (snapshot data excluded: snapshots
    travel apart, over ``SendSnapshot``)."""
    size = MESSAGE_OVERHEAD_BYTES + len(m.context)
    entries = m.entries
    if entries:
        size += ENTRY_OVERHEAD_BYTES * len(entries)
        for e in entries:
            size += len(e.data)
    return size


class SnapshotSendError(Exception):
    """A snapshot did not reach the peer (or the peer refused it). ``code`` is the gRPC
    status, or None when it was not sent at all (peer blocked, transport stopping)."""

    def __init__(self, node_id: int, code: grpc.StatusCode | None, details: str) -> None:
        super().__init__(
            f"snapshot to node {node_id}: {code.name if code else 'not sent'}: {details}"
        )
        self.node_id = node_id
        self.code = code
        self.details = details


@dataclass(slots=True)
class PeerStats:
    """What happened to traffic towards one node. Counters only grow; ``connected``,
    ``queued_messages`` and ``queued_bytes`` are gauges.

    Drop reasons: ``overflow`` (queue full: the oldest went), ``blocked`` (partition
    injected with ``set_blocked``), ``in_flight`` (in a batch whose write failed),
    ``too_large`` (one message over ``max_message_bytes``), ``unencodable`` (a field out of
    protobuf range: a bug, logged).
    """

    node_id: int
    address: str
    connected: bool = False
    queued_messages: int = 0
    queued_bytes: int = 0
    sent_messages: int = 0
    sent_batches: int = 0
    dropped_overflow: int = 0
    dropped_blocked: int = 0
    dropped_in_flight: int = 0
    dropped_too_large: int = 0
    dropped_unencodable: int = 0
    connects: int = 0
    connect_failures: int = 0
    disconnects: int = 0
    snapshots_sent: int = 0
    snapshots_failed: int = 0

    @property
    def dropped_messages(self) -> int:
        """Every message that will never be sent, whatever the reason."""
        return (
            self.dropped_overflow
            + self.dropped_blocked
            + self.dropped_in_flight
            + self.dropped_too_large
            + self.dropped_unencodable
        )


@dataclass(frozen=True, slots=True)
class SenderLimits:
    """The bounds of one `PeerSender` (see `PeerTransport` for their meaning)."""

    max_queue_messages: int
    max_queue_bytes: int
    max_batch_bytes: int
    max_message_bytes: int
    connect_timeout_s: float
    snapshot_chunk_bytes: int
    snapshot_timeout_s: float
    #: Shared by every sender of the node: snapshot bytes per second, all peers together.
    snapshot_rate: ByteRateLimiter | None = None


ChannelFactory = Callable[[str], grpc.aio.Channel]


class PeerSender:
    """Outgoing traffic to one node. Create, `start` on the loop, `enqueue`, `close`.

    ``is_blocked()`` is asked before every batch (partition injection); ``on_unreachable()``
    is called (synchronously, on the loop) when a connection attempt fails or an open stream
    breaks, so the owner can tell Raft the peer is unreachable.
    """

    def __init__(
        self,
        *,
        node_id: int,
        address: str,
        local_node_id: int,
        channel_factory: ChannelFactory,
        limits: SenderLimits,
        backoff: Backoff,
        is_blocked: Callable[[], bool],
        on_unreachable: Callable[[], None],
        on_hello: Callable[[str, str], None] = lambda client_address, admin_address: None,
        snapshot_files: SnapshotFiles | None = None,
        call_metadata: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.node_id = node_id
        self._snapshot_files = snapshot_files
        self._address = address
        self._local_node_id = local_node_id
        self._call_metadata = call_metadata
        self._channel_factory = channel_factory
        self._limits = limits
        self._backoff = backoff
        self._is_blocked = is_blocked
        self._on_unreachable = on_unreachable
        self._on_hello = on_hello
        self._queue: deque[tuple[int, Message]] = deque()
        self._queued_bytes = 0
        self._wakeup = asyncio.Event()
        self._retry_now = asyncio.Event()
        self._address_changed = False
        self._failing = False
        self._task: asyncio.Task[None] | None = None
        self._stats = PeerStats(node_id=node_id, address=address)
        # Set by the owner while snapshot sends to this peer are pending (bounded there).
        self.snapshots_pending = 0

    # --- owner API -----------------------------------------------------------------------

    @property
    def address(self) -> str:
        return self._address

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    @property
    def connected(self) -> bool:
        return self._stats.connected

    def stats(self) -> PeerStats:
        """A copy of the counters, gauges filled in."""
        s = self._stats
        return PeerStats(
            node_id=s.node_id,
            address=s.address,
            connected=s.connected,
            queued_messages=len(self._queue),
            queued_bytes=self._queued_bytes,
            sent_messages=s.sent_messages,
            sent_batches=s.sent_batches,
            dropped_overflow=s.dropped_overflow,
            dropped_blocked=s.dropped_blocked,
            dropped_in_flight=s.dropped_in_flight,
            dropped_too_large=s.dropped_too_large,
            dropped_unencodable=s.dropped_unencodable,
            connects=s.connects,
            connect_failures=s.connect_failures,
            disconnects=s.disconnects,
            snapshots_sent=s.snapshots_sent,
            snapshots_failed=s.snapshots_failed,
        )

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"shardkv-peer-sender-{self.node_id}"
            )

    async def close(self) -> None:
        """Stop the sender task and close its stream; queued messages are discarded."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._queue.clear()
        self._queued_bytes = 0

    def set_address(self, address: str) -> None:
        """Reconnect to ``address`` (after the current write, if one is in flight)."""
        if address == self._address:
            return
        self._address = address
        self._stats.address = address
        self._address_changed = True
        self._wakeup.set()
        self._retry_now.set()

    def wake(self) -> None:
        """Make the sender task look at its queue and the blocked set now."""
        self._wakeup.set()

    def count_blocked_drop(self, count: int) -> None:
        """Count messages to this peer dropped by partition injection before queueing."""
        self._stats.dropped_blocked += count

    def enqueue(self, messages: list[Message]) -> int:
        """Queue ``messages`` (in order) without blocking. Returns how many messages were
        dropped: queued ones pushed out, oldest first, to respect ``max_queue_messages`` and
        ``max_queue_bytes``, plus any single message over ``max_message_bytes``."""
        q = self._queue
        append = q.append
        limits = self._limits
        max_message_bytes = limits.max_message_bytes
        queued_bytes = self._queued_bytes
        too_large = 0
        for m in messages:
            # estimated_size_bytes inlined: this runs once per outgoing Raft message.
            size = MESSAGE_OVERHEAD_BYTES + len(m.context)
            entries = m.entries
            if entries:
                size += ENTRY_OVERHEAD_BYTES * len(entries)
                for e in entries:
                    size += len(e.data)
            if size > max_message_bytes:
                too_large += 1
                continue
            append((size, m))
            queued_bytes += size
        # Trim after appending: if the new messages alone pass a bound, their oldest go too.
        overflow = 0
        max_messages = limits.max_queue_messages
        max_bytes = limits.max_queue_bytes
        while len(q) > max_messages or queued_bytes > max_bytes:
            old_size, _ = q.popleft()
            queued_bytes -= old_size
            overflow += 1
        self._queued_bytes = queued_bytes
        if too_large:
            self._stats.dropped_too_large += too_large
            log.error(
                "message_too_large",
                peer=self.node_id,
                count=too_large,
                max_message_bytes=max_message_bytes,
            )
        if overflow:
            self._stats.dropped_overflow += overflow
        self._wakeup.set()
        return overflow + too_large

    # --- the sender task ------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await self._session()
            if self._address_changed:
                self._address_changed = False
                self._backoff.reset()
                continue
            self._on_unreachable()
            delay_s = self._backoff.next_delay_s()
            self._retry_now.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._retry_now.wait(), delay_s)

    async def _session(self) -> None:
        """One connection: open the stream, check the hello, pump batches until it breaks.
        Returns on any failure; raises only CancelledError when the task is cancelled."""
        address = self._address
        self._address_changed = False
        channel = self._channel_factory(address)
        call: grpc.aio.StreamStreamCall[pb.MessageBatch, pb.Ack] | None = None
        try:
            stream = channel.stream_stream(
                STREAM_METHOD,
                request_serializer=pb.MessageBatch.SerializeToString,
                response_deserializer=pb.Ack.FromString,
            )
            call = stream(metadata=self._call_metadata, wait_for_ready=False)
            try:
                hello = await asyncio.wait_for(call.read(), self._limits.connect_timeout_s)
            except (grpc.aio.AioRpcError, TimeoutError, asyncio.CancelledError) as exc:
                _reraise_if_task_cancelled(exc)
                self._stats.connect_failures += 1
                # One warning when a peer becomes unreachable, not one per retry.
                report = log.debug if self._failing else log.warning
                report(
                    "peer_connect_failed", peer=self.node_id, address=address, error=_describe(exc)
                )
                self._failing = True
                return
            if hello is grpc.aio.EOF or not isinstance(hello, pb.Ack):
                self._stats.connect_failures += 1
                log.warning("peer_stream_closed_at_open", peer=self.node_id, address=address)
                return
            if hello.node_id != self.node_id:
                self._stats.connect_failures += 1
                log.warning(
                    "peer_identity_mismatch",
                    peer=self.node_id,
                    address=address,
                    answered_as=hello.node_id,
                )
                return
            self._stats.connects += 1
            self._stats.connected = True
            self._failing = False
            self._backoff.reset()
            log.info("peer_connected", peer=self.node_id, address=address)
            if hello.client_address or hello.admin_address:
                self._on_hello(hello.client_address, hello.admin_address)
            await self._pump(call)
            self._stats.disconnects += 1
        finally:
            self._stats.connected = False
            if call is not None:
                call.cancel()
            await channel.close(grace=None)

    async def _pump(self, call: grpc.aio.StreamStreamCall[pb.MessageBatch, pb.Ack]) -> None:
        """Write batches until the stream ends or the address changes."""
        # The receiver writes nothing after its hello, so this read completes exactly when
        # the stream ends: the way to notice a dead stream while there is nothing to send.
        ended = asyncio.ensure_future(call.read())
        ended.add_done_callback(lambda _: self._wakeup.set())
        try:
            while True:
                if not self._queue and not ended.done() and not self._address_changed:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                if ended.done():
                    log.info("peer_stream_ended", peer=self.node_id, error=_outcome(ended))
                    return
                if self._address_changed:
                    return
                if self._is_blocked():
                    self._stats.dropped_blocked += len(self._queue)
                    self._queue.clear()
                    self._queued_bytes = 0
                    continue
                batch, count = self._next_batch()
                if count == 0:
                    continue
                try:
                    await call.write(batch)
                except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as exc:
                    self._stats.dropped_in_flight += count
                    log.info("peer_stream_broken", peer=self.node_id, error=_describe(exc))
                    return
                except asyncio.CancelledError as exc:
                    _reraise_if_task_cancelled(exc)
                    self._stats.dropped_in_flight += count
                    return
                self._stats.sent_messages += count
                self._stats.sent_batches += 1
        finally:
            if ended.done():
                if not ended.cancelled():
                    ended.exception()  # retrieved: asyncio would log it as never retrieved
            else:
                ended.cancel()

    def _next_batch(self) -> tuple[pb.MessageBatch, int]:
        """Take messages off the queue, oldest first, up to ``max_batch_bytes`` (at least
        one), into one batch."""
        batch = pb.MessageBatch(from_node=self._local_node_id)
        repeated = batch.messages
        add = repeated.add
        fill = codec.fill_message_pb
        q = self._queue
        budget = self._limits.max_batch_bytes
        used = 0
        count = 0
        while q:
            size, m = q[0]
            if count and used + size > budget:
                break
            q.popleft()
            used += size
            try:
                fill(m, add())
            except (ValueError, TypeError) as exc:
                del repeated[-1]
                self._stats.dropped_unencodable += 1
                log.error(
                    "message_unencodable", peer=self.node_id, message=repr(m)[:200], error=str(exc)
                )
                continue
            count += 1
        self._queued_bytes -= used
        return batch, count

    # --- snapshots ------------------------------------------------------------------------

    async def send_snapshot(self, message: Message) -> int:
        """Send one MsgSnap over ``SendSnapshot`` on its own connection (so heartbeats on the
        stream never queue behind snapshot bytes); returns the bytes the peer acknowledged.

        Raises `SnapshotSendError` if the peer is blocked, unreachable, refuses it, or the
        transfer exceeds ``snapshot_timeout_s``."""
        if message.type is not MessageType.SNAP or message.snapshot is None:
            self._stats.snapshots_failed += 1
            raise SnapshotSendError(self.node_id, None, "not a MsgSnap with a snapshot")
        if self._is_blocked():
            self._stats.snapshots_failed += 1
            raise SnapshotSendError(self.node_id, None, "peer is blocked (partition injected)")
        channel = self._channel_factory(self._address)
        try:
            send = channel.stream_unary(
                SNAPSHOT_METHOD,
                request_serializer=pb.SnapshotChunk.SerializeToString,
                response_deserializer=pb.SnapshotAck.FromString,
            )
            chunks: Any = iter_chunks(
                message, self._limits.snapshot_chunk_bytes, self._snapshot_files
            )
            rate = self._limits.snapshot_rate
            if rate is not None and rate.bytes_per_s:
                chunks = rate.paced(chunks, lambda chunk: len(chunk.data))
            try:
                ack = await send(
                    chunks,
                    timeout=self._limits.snapshot_timeout_s,
                    metadata=self._call_metadata,
                    wait_for_ready=False,
                )
            except grpc.aio.AioRpcError as exc:
                self._stats.snapshots_failed += 1
                raise SnapshotSendError(self.node_id, exc.code(), exc.details() or "") from None
            except asyncio.CancelledError as exc:
                _reraise_if_task_cancelled(exc)
                self._stats.snapshots_failed += 1
                raise SnapshotSendError(self.node_id, grpc.StatusCode.CANCELLED, "") from None
        finally:
            await channel.close(grace=None)
        self._stats.snapshots_sent += 1
        return int(ack.received_bytes)


def _reraise_if_task_cancelled(exc: BaseException) -> None:
    # grpc.aio raises CancelledError from a call that was cancelled underneath us (channel
    # closed); only a cancellation of our own task must propagate.
    if isinstance(exc, asyncio.CancelledError):
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise exc


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"


def _outcome(ended: asyncio.Future[object]) -> str:
    if ended.cancelled():
        return "cancelled"
    exc = ended.exception()
    return "closed by peer" if exc is None else _describe(exc)
