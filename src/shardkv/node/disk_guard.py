"""Keep a node off a full disk: refuse writes before the disk refuses them.

A write that reaches RocksDB on a full disk fails, and a failed write or fsync stops the
node (fail-stop: what it acknowledged is durable, what it did not is not, and it never
retries an fsync whose outcome is unknown). A stopped node cannot recover by itself when
space comes back. So the node watches its data directory's free space and, below
``min_free_disk_bytes``, stops taking new data while it can still write the little that
Raft needs (votes, commit indexes):

- client writes to shards it leads are answered ``-MISCONF`` (reads keep working);
- it hands the leadership of every group it leads to a caught-up peer;
- as a follower it drops incoming appends with entries and snapshots, so its log stops
  growing (its peers go on with a majority without it);

and once free space is back above 1.5 times the minimum it takes appends again, catches
up, and leaderships come back by the usual balancing. The margin is what makes this
work: a burst larger than ``min_free_disk_bytes`` between two checks can still fill the
disk, and then the node stops (set the minimum above what a node writes in a check
interval).
"""

from __future__ import annotations

import os
from typing import Final

from shardkv.core.resp import ErrorReply
from shardkv.observability.logging import get_logger

log = get_logger(__name__)

#: Free space must rise to this multiple of the minimum before writes resume, so a disk
#: hovering at the limit does not flap.
RESUME_FACTOR: Final = 1.5


class DiskGuard:
    """Call `check` periodically; it answers the reply to give writes (None: the disk
    has room)."""

    def __init__(self, path: str, min_free_bytes: int, node_name: str, clustered: bool) -> None:
        self._path = path
        self._clustered = clustered
        self._min_free_bytes = min_free_bytes
        self._node_name = node_name
        self.free_bytes = 0
        self.full_reply: ErrorReply | None = None

    def check(self) -> ErrorReply | None:
        """Read the free space (statvfs of the path, or of its nearest existing parent)
        and update `full_reply`; an unreadable path counts as full (nothing can be
        written there either)."""
        path = self._path
        while not os.path.exists(path) and os.path.dirname(path) != path:
            path = os.path.dirname(path)  # (the data dir may not exist yet)
        try:
            st = os.statvfs(path)
            self.free_bytes = st.f_bavail * st.f_frsize
        except OSError as exc:
            self.free_bytes = 0
            log.warning("disk_check_failed", path=self._path, error=str(exc))
        full = self.full_reply is not None
        if not full and self.free_bytes < self._min_free_bytes:
            self.full_reply = ErrorReply(
                f"MISCONF disk full on {self._node_name}: {self.free_bytes >> 20} MiB free, "
                f"below min_free_disk_bytes ({self._min_free_bytes >> 20} MiB); writes here "
                "are refused until space is freed (reads still work"
                + (", and other nodes take over this node's shards)" if self._clustered else ")")
            )
            log.error("disk_full", path=self._path, free_bytes=self.free_bytes)
        elif full and self.free_bytes >= self._min_free_bytes * RESUME_FACTOR:
            self.full_reply = None
            log.warning("disk_space_back", path=self._path, free_bytes=self.free_bytes)
        return self.full_reply
