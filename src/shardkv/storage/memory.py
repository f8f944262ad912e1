"""An in-memory engine with the RocksDB engine's contract, including crash semantics.

Writes are visible at once; ``sync()`` marks them durable; ``crash()`` drops everything that
was not synced, as a power loss would. Used by unit tests and the deterministic simulator.
"""

from __future__ import annotations

from sortedcontainers import SortedDict

from shardkv.core.engine import ALL_COLUMNS, Delete, DeleteRange, Put, WriteBatch


class MemoryEngine:
    def __init__(self) -> None:
        self._columns: dict[str, SortedDict] = {c: SortedDict() for c in ALL_COLUMNS}
        self._durable: dict[str, SortedDict] = {c: SortedDict() for c in ALL_COLUMNS}
        self._closed = False

    def get(self, column: str, key: bytes) -> bytes | None:
        value: bytes | None = self._columns[column].get(key)
        return value

    def scan(
        self, column: str, start: bytes, end: bytes | None, limit: int
    ) -> list[tuple[bytes, bytes]]:
        if limit <= 0:
            raise ValueError("scan limit must be positive")
        col = self._columns[column]
        out: list[tuple[bytes, bytes]] = []
        for key in col.irange(start, end, inclusive=(True, False)):
            out.append((key, col[key]))
            if len(out) >= limit:
                break
        return out

    def write(self, batch: WriteBatch) -> None:
        self._check_open()
        for op in batch.ops:
            col = self._columns[op.column]
            if isinstance(op, Put):
                col[op.key] = op.value
            elif isinstance(op, Delete):
                col.pop(op.key, None)
            elif isinstance(op, DeleteRange):
                for key in list(col.irange(op.start, op.end, inclusive=(True, False))):
                    del col[key]

    def sync(self) -> None:
        self._check_open()
        self._durable = {c: SortedDict(d) for c, d in self._columns.items()}

    def crash(self) -> None:
        """Lose every write not covered by a completed ``sync()`` (a simulated power loss)."""
        self._columns = {c: SortedDict(d) for c, d in self._durable.items()}

    def consistent_view(self) -> MemoryView:
        """A copy of every column as written so far (see ``ConsistentView``)."""
        self._check_open()
        return MemoryView({c: SortedDict(d) for c, d in self._columns.items()})

    def close(self) -> None:
        if not self._closed:
            self.sync()
            self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("engine is closed")


class MemoryView:
    """`ConsistentView` of a `MemoryEngine`: private copies of its columns."""

    __slots__ = ("_columns",)

    def __init__(self, columns: dict[str, SortedDict]) -> None:
        self._columns: dict[str, SortedDict] | None = columns

    def _column(self, column: str) -> SortedDict:
        if self._columns is None:
            raise RuntimeError("consistent view is closed")
        return self._columns[column]

    def get(self, column: str, key: bytes) -> bytes | None:
        value: bytes | None = self._column(column).get(key)
        return value

    def scan(
        self, column: str, start: bytes, end: bytes | None, limit: int
    ) -> list[tuple[bytes, bytes]]:
        if limit <= 0:
            raise ValueError("scan limit must be positive")
        col = self._column(column)
        out: list[tuple[bytes, bytes]] = []
        for key in col.irange(start, end, inclusive=(True, False)):
            out.append((key, col[key]))
            if len(out) >= limit:
                break
        return out

    def close(self) -> None:
        """Drop the copies. Idempotent."""
        self._columns = None
