"""The storage contract the pure core reads through and the shell writes through.

The core never touches a database. It reads through a :class:`ReadView` and describes the
writes it wants as a :class:`WriteBatch`; the asyncio shell hands that batch to a storage
engine (``shardkv.storage``), which applies it atomically and, when asked, durably.

Columns are independent ordered keyspaces (RocksDB column families in the real engine).
Keys and values are ``bytes``; ordering is bytewise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Protocol

#: User keys -> encoded values (see ``shardkv.core.kv.codec``). Keys carry a 2-byte slot prefix.
DATA: Final = "data"
#: Expiry index: 8-byte big-endian expire-at milliseconds + data key -> b"".
EXPIRY: Final = "expiry"
#: Members of hashes, sets, sorted sets and lists, one record each (slot-prefixed, see
#: ``shardkv.core.kv.codec``).
SUB: Final = "sub"
#: Small per-store metadata (key counts, applied index, ...).
META: Final = "meta"
#: Raft log entries, per group (used from the replication issue on).
RAFT_LOG: Final = "raft_log"
#: Raft hard state and other per-group durable state.
RAFT_STATE: Final = "raft_state"

ALL_COLUMNS: Final = (DATA, EXPIRY, META, RAFT_LOG, RAFT_STATE, SUB)


class ReadView(Protocol):
    """Read access to committed state. Implementations must be safe to call from the thread
    that applies batches; they never see a batch half-applied."""

    def get(self, column: str, key: bytes) -> bytes | None:
        """Return the value stored under ``key`` in ``column``, or ``None``."""
        ...

    def scan(
        self, column: str, start: bytes, end: bytes | None, limit: int
    ) -> list[tuple[bytes, bytes]]:
        """Return up to ``limit`` (key, value) pairs with ``start <= key < end`` in ascending
        key order (``end=None`` means no upper bound). ``limit`` must be positive."""
        ...


@dataclass(frozen=True, slots=True)
class Put:
    column: str
    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class Delete:
    column: str
    key: bytes


@dataclass(frozen=True, slots=True)
class DeleteRange:
    """Delete every key with ``start <= key < end`` in ``column``. ``reclaim``: the range
    may hold much data (a big key's members), so the engine should return its space soon
    (RocksDB compacts it in the background) rather than whenever compaction gets there."""

    column: str
    start: bytes
    end: bytes
    reclaim: bool = False


Op = Put | Delete | DeleteRange


@dataclass(slots=True)
class WriteBatch:
    """An ordered list of writes, applied atomically by the engine (later ops win)."""

    ops: list[Op] = field(default_factory=list)

    def put(self, column: str, key: bytes, value: bytes) -> None:
        self.ops.append(Put(column, key, value))

    def delete(self, column: str, key: bytes) -> None:
        self.ops.append(Delete(column, key))

    def delete_range(self, column: str, start: bytes, end: bytes) -> None:
        self.ops.append(DeleteRange(column, start, end))

    def extend(self, other: WriteBatch) -> None:
        self.ops.extend(other.ops)

    def __len__(self) -> int:
        return len(self.ops)

    def __bool__(self) -> bool:
        return bool(self.ops)
