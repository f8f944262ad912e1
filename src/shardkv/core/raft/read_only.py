"""ReadIndex bookkeeping on the leader (Raft thesis section 6.4, "safe" read-only mode).

A read request is remembered with the commit index at the time it arrived; it is
released once a majority of voters acknowledged a heartbeat carrying its context, which
proves this node was still leader when the read arrived. Requests are released in
arrival order: an acknowledged heartbeat for a later request also confirms earlier ones.
Owns no timers and sends nothing; ``raft.py`` drives it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from shardkv.core.raft.errors import ProposalDroppedError, RaftInvariantError
from shardkv.core.raft.types import Message


@dataclass(slots=True)
class ReadIndexStatus:
    """One pending read: the request, the commit index when it arrived, and who has
    acknowledged a heartbeat carrying its context."""

    request: Message
    index: int
    acks: set[int] = field(default_factory=set)


class ReadOnly:
    """Pending ReadIndex requests, keyed by their (unique) context, oldest first.

    Bounded by ``max_pending``; `add_request` raises `ProposalDroppedError` beyond it.
    Invariant: ``queue`` and ``pending`` hold the same contexts.
    """

    __slots__ = ("max_pending", "pending", "queue")

    def __init__(self, max_pending: int) -> None:
        self.max_pending = max_pending
        self.pending: dict[bytes, ReadIndexStatus] = {}
        self.queue: deque[bytes] = deque()

    def add_request(self, index: int, request: Message) -> bool:
        """Remember ``request`` (context must be unique among pending ones) at commit
        ``index``. Returns False if a request with the same context is already pending."""
        ctx = request.context
        if ctx in self.pending:
            return False
        if len(self.queue) >= self.max_pending:
            raise ProposalDroppedError(
                f"too many pending read requests (max_pending_read_requests={self.max_pending})"
            )
        self.pending[ctx] = ReadIndexStatus(request, index)
        self.queue.append(ctx)
        return True

    def recv_ack(self, node_id: int, ctx: bytes) -> set[int] | None:
        """Record that ``node_id`` acknowledged the heartbeat for ``ctx``; returns the set
        of acknowledgers, or None if ``ctx`` is not pending."""
        status = self.pending.get(ctx)
        if status is None:
            return None
        status.acks.add(node_id)
        return status.acks

    def advance(self, ctx: bytes) -> list[ReadIndexStatus]:
        """Release the request with ``ctx`` and every earlier one, oldest first."""
        if ctx not in self.pending:
            return []
        released: list[ReadIndexStatus] = []
        while self.queue:
            head = self.queue.popleft()
            status = self.pending.pop(head, None)
            if status is None:
                raise RaftInvariantError(f"read-only: queued context {head!r} not pending")
            released.append(status)
            if head == ctx:
                break
        return released

    def last_pending_request_ctx(self) -> bytes:
        """Context of the newest pending request (b"" if none)."""
        return self.queue[-1] if self.queue else b""

    def __len__(self) -> int:
        return len(self.queue)
