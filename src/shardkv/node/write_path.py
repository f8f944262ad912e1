"""The one interface every write (and read) of a client goes through.

Two implementations: the standalone committer (``server/committer.py``: one process, one
state machine, group commit) and the cluster frontend (``server/cluster.py``: the node
runtime and its Raft groups). Client connections, the expiry cycle and shutdown use only
this interface, and both implementations keep the same bounds:

- ``submit`` answers ``BUSY`` (``-TRYAGAIN``, nothing executed) when accepting the
  commands would pass ``max_pending_commands``: commands accepted and not yet answered,
  over all connections;
- ``wait_idle`` returns once every accepted command was answered: shutdown waits on it
  (within ``shutdown_deadline_s``) before it stops the storage.

The standalone path stays separate from a one-node cluster because it is faster for the
same durability (docs/architecture.md has the measurement).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Protocol

from shardkv.core.resp import ErrorReply, Reply

ReplyCallback = Callable[[list[Reply]], None]

#: Too many commands accepted and not yet answered: nothing was executed.
BUSY: Final = ErrorReply("TRYAGAIN server is overloaded (too many pending commands); retry later")


class WritePath(Protocol):
    """What a client connection needs to run its data commands. All on the loop thread."""

    #: Keys deleted by the expiry cycle so far (INFO stats).
    expired_keys: int

    @property
    def pending_commands(self) -> int:
        """Commands accepted and not yet answered."""
        ...

    def submit(
        self,
        commands: list[list[bytes]],
        on_done: ReplyCallback,
        *,
        allow_stale: bool = False,
        has_write: bool | None = None,
    ) -> None:
        """Run ``commands`` (data commands of one connection, in order); ``on_done`` gets
        one reply per command that ran (possibly a prefix: the caller resubmits the rest),
        on the loop thread, once the replies are safe to show (durable)."""
        ...

    def submit_sweep(self, max_keys: int) -> None:
        """Delete up to ``max_keys`` expired keys (the expiry cycle)."""
        ...

    async def wait_idle(self) -> None:
        """Return once every accepted command has been answered."""
        ...

    def set_disk_full(self, reply: ErrorReply | None) -> None:
        """The disk guard's verdict (`node.disk_guard`): with a reply, writes are answered
        with it until called again with None."""
        ...
