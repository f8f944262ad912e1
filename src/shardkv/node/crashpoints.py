"""Test-only crash points: kill the process at a named seam of the write path.

``SHARDKV_CRASH_POINT=<name>:<n>`` makes the n-th pass through seam ``<name>`` end the
process at once (``os._exit(137)``, like SIGKILL: no flush, no cleanup). Unset, every
check is one dict lookup. Fault tests use it to prove that no seam loses an acknowledged
write; no operator should ever set it.

``SHARDKV_FAIL_SYNC=<n>`` makes the n-th WAL sync (and every later one) fail as a disk
would (EIO): the test that a failed fsync is never retried and never acknowledged.

Seams: ``after_write_before_sync`` (the batch is in RocksDB's page cache, not synced),
``after_sync_before_reply`` (durable, nobody told), ``snapshot_install`` (a received
snapshot written, log metadata and data together, not yet synced), ``compaction`` (a new
snapshot and the log truncation written, not yet synced).
"""

from __future__ import annotations

import os
from typing import Final

SEAMS: Final = frozenset(
    {"after_write_before_sync", "after_sync_before_reply", "snapshot_install", "compaction"}
)


def _parse(spec: str | None) -> tuple[str, int] | None:
    if not spec:
        return None
    name, _, count = spec.partition(":")
    if name not in SEAMS or not count.isdigit() or int(count) < 1:
        raise ValueError(
            f"SHARDKV_CRASH_POINT={spec!r}: expected <seam>:<n>, seam one of {sorted(SEAMS)}"
        )
    return name, int(count)


_ARMED = _parse(os.environ.get("SHARDKV_CRASH_POINT"))
_hits: dict[str, int] = {}


def armed() -> str | None:
    """The armed seam, for a loud startup warning."""
    if _FAIL_SYNC_AT:
        return f"fail_sync:{_FAIL_SYNC_AT}"
    return None if _ARMED is None else f"{_ARMED[0]}:{_ARMED[1]}"


_FAIL_SYNC_AT = int(os.environ.get("SHARDKV_FAIL_SYNC") or 0)
_syncs = 0


def sync_fails() -> bool:
    """Whether this WAL sync must fail (``SHARDKV_FAIL_SYNC``); counts the syncs."""
    global _syncs
    if not _FAIL_SYNC_AT:
        return False
    _syncs += 1
    return _syncs >= _FAIL_SYNC_AT


def reached(name: str) -> None:
    if _ARMED is None or _ARMED[0] != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] >= _ARMED[1]:
        os._exit(137)
