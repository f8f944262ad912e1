"""Group commit: apply commands from every client in one batch, make it durable with one
sync, then answer.

The path of a write (see docs/architecture.md): a connection hands a *group* (its commands
from one read, in order) to :meth:`Committer.submit`. On the next loop turn every pending
group is applied to the state machine as one storage batch, written to the engine
(visible, not yet durable), and parked. One ``engine.sync()`` runs at a time in the thread
pool; when it completes, every group applied before it started is answered.

Rules that make this safe:
- A group is answered only after a sync that started after it was applied, whether or not
  the group wrote: a read may have seen a write of an earlier group that is not durable yet.
  The one shortcut: when nothing unsynced exists and no sync is running, a read-only group
  is answered at once.
- A failed sync is fatal (fail-stop): every parked group gets an error and the server is
  told to shut down. Retrying an fsync can report success for data the kernel dropped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

from shardkv.core.kv import KVStateMachine
from shardkv.core.resp import ErrorReply, Reply
from shardkv.node.write_path import BUSY
from shardkv.observability.logging import get_logger
from shardkv.observability.metrics import ServerMetrics
from shardkv.storage import Engine, StorageError

log = get_logger(__name__)

ReplyCallback = Callable[[list[Reply]], None]

STORAGE_FAILURE = ErrorReply(
    "ERR storage failure: the server stopped serving to protect your data; check its log"
)


# The expiry cycle travels as a command whose name is this object (compared by identity, so no
# client bytes can ever match it).
_SWEEP = b"expire-sweep"


@dataclass(slots=True)
class _Group:
    commands: list[list[bytes]]
    on_done: ReplyCallback
    replies: list[Reply] = field(default_factory=list)


class Committer:
    """Owns the state machine and the engine; the only writer of both.

    ``submit`` must be called on the event loop thread. ``on_fatal`` is called once if the
    engine fails; the server then shuts down.
    """

    def __init__(
        self,
        machine: KVStateMachine,
        engine: Engine,
        executor: Executor,
        metrics: ServerMetrics,
        *,
        max_batch_commands: int,
        max_pending_commands: int,
        max_group_reply_bytes: int,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        on_fatal: Callable[[BaseException], None] = lambda exc: None,
    ) -> None:
        self._machine = machine
        self._engine = engine
        self._executor = executor
        self._metrics = metrics
        self._max_batch_commands = max_batch_commands
        self._max_pending_commands = max_pending_commands
        self._max_group_reply_bytes = max_group_reply_bytes
        self._clock_ms = clock_ms
        self._on_fatal = on_fatal
        self._loop = asyncio.get_running_loop()
        self._pending: list[_Group] = []
        self._pending_commands = 0
        self._apply_scheduled = False
        # Applied, waiting for a sync that starts after them.
        self._parked: list[_Group] = []
        self._parked_commands = 0
        self._dirty = False  # writes applied that no completed or running sync covers
        self._sync_running = False
        self._failed: BaseException | None = None
        self._disk_full_reply: ErrorReply | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self.expired_keys = 0

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
        """Queue ``commands`` (data commands only) to be applied in order; ``on_done`` gets
        the replies, on the loop thread, once they are safe to show.

        ``on_done`` may get fewer replies than commands: once a group's replies pass
        ``max_group_reply_bytes`` the rest of the group is not run, so that one pipeline of
        large GETs cannot fill memory with replies. The caller submits the rest later (after
        its client read the first replies). ``allow_stale`` and ``has_write`` change nothing on
        one node: every read is current, and the batch itself tells whether to sync."""
        if self._failed is not None:
            on_done([STORAGE_FAILURE] * len(commands))
            return
        if self._pending_commands + len(commands) > self._max_pending_commands:
            on_done([BUSY] * len(commands))
            return
        if has_write and self._disk_full_reply is not None:
            on_done([self._disk_full_reply] * len(commands))
            return
        self._pending.append(_Group(commands, on_done))
        self._pending_commands += len(commands)
        self._idle.clear()
        if not self._apply_scheduled:
            self._apply_scheduled = True
            # call_soon lets every connection that has data this turn join the batch.
            self._loop.call_soon(self._apply_pending)

    def set_disk_full(self, reply: ErrorReply | None) -> None:
        self._disk_full_reply = reply

    def submit_sweep(self, max_keys: int) -> None:
        """Delete up to ``max_keys`` expired keys in the next batch (the expiry cycle)."""

        def done(replies: list[Reply]) -> None:
            if replies and isinstance(replies[0], int):
                self.expired_keys += replies[0]
                self._metrics.expired_keys.inc(replies[0])

        self.submit([[_SWEEP, str(max_keys).encode()]], done)

    async def wait_idle(self) -> None:
        """Return once every submitted group has been answered."""
        await self._idle.wait()

    def _apply_pending(self) -> None:
        self._apply_scheduled = False
        if not self._pending:
            return
        pending = self._pending
        n = count = 0
        while n < len(pending) and (n == 0 or count < self._max_batch_commands):
            count += len(pending[n].commands)
            n += 1
        taken = pending[:n]
        del pending[:n]
        self._pending_commands -= count
        if self._pending:
            self._apply_scheduled = True
            self._loop.call_soon(self._apply_pending)

        machine = self._machine
        now_ms = self._clock_ms()
        machine.begin_batch()
        try:
            execute = machine.execute
            max_reply_bytes = self._max_group_reply_bytes
            for group in taken:
                replies = group.replies
                reply_bytes = 0
                for args in group.commands:
                    if args[0] is _SWEEP:
                        replies.append(machine.expire_sweep(now_ms, int(args[1])))
                        continue
                    reply = execute(args, now_ms)
                    replies.append(reply)
                    kind = type(reply)
                    if kind is bytes:
                        reply_bytes += len(reply)  # type: ignore[arg-type]
                    elif kind is list:
                        reply_bytes += sum(len(r) for r in reply if type(r) is bytes)  # type: ignore[union-attr]
                    if reply_bytes > max_reply_bytes:
                        break  # the rest of the group runs later: see submit()
            batch = machine.finish_batch()
            if batch:
                self._engine.write(batch)
                self._dirty = True
        except StorageError as exc:
            self._fail(exc, taken)
            return
        self._metrics.keys.set(machine.key_count())

        if not self._dirty and not self._sync_running and not self._parked:
            for group in taken:
                group.on_done(group.replies)
            self._check_idle()
            return
        self._parked.extend(taken)
        self._parked_commands += count  # counts commands taken, run or not
        self._maybe_start_sync()

    def _maybe_start_sync(self) -> None:
        if self._sync_running or not self._parked:
            return
        groups, commands = self._parked, self._parked_commands
        self._parked, self._parked_commands = [], 0
        if not self._dirty:
            # Only reads since the last sync completed: everything they saw is durable.
            self._answer(groups)
            return
        self._dirty = False
        self._sync_running = True
        started = time.perf_counter()
        future = self._loop.run_in_executor(self._executor, self._engine.sync)

        def synced(fut: asyncio.Future[None]) -> None:
            self._sync_running = False
            exc = fut.exception()
            if exc is not None:
                self._fail(exc, groups)
                return
            self._metrics.storage_commit_seconds.observe(time.perf_counter() - started)
            self._metrics.storage_commit_commands.observe(commands)
            self._answer(groups)
            self._maybe_start_sync()

        future.add_done_callback(synced)

    def _answer(self, groups: list[_Group]) -> None:
        for group in groups:
            group.on_done(group.replies)
        self._check_idle()

    def _check_idle(self) -> None:
        if (
            not self._pending
            and not self._parked
            and not self._sync_running
            and not self._apply_scheduled
        ):
            self._idle.set()

    def _fail(self, exc: BaseException, groups: list[_Group]) -> None:
        first = self._failed is None
        self._failed = exc
        for group in [*groups, *self._parked, *self._pending]:
            group.on_done([STORAGE_FAILURE] * len(group.commands))
        self._parked, self._pending = [], []
        self._parked_commands = self._pending_commands = 0
        self._idle.set()
        if first:
            log.critical("storage_failed", error=str(exc))
            self._on_fatal(exc)
