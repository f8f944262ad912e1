"""The KV state machine: Redis string and keyspace commands, expiry, storage encoding.

Public API:

- :class:`KVStateMachine`: begin_batch / execute / expire_sweep / finish_batch (the batch
  contract is in its docstring), key_count, expires_count, scope, owns_key.
- :class:`KeyScope`: the group id and slot ranges one machine (and its snapshots) owns.
- :class:`GlobPattern`, :func:`glob_match`: Redis's glob dialect (KEYS, SCAN MATCH).
- :func:`parse_i64`: Redis's strict integer parsing.
- ``codec``: the byte layout of the DATA, EXPIRY and META columns, per group.
"""

from shardkv.core.kv import codec
from shardkv.core.kv.glob import GlobPattern, glob_match
from shardkv.core.kv.machine import (
    DEFAULT_MAX_STRING_BYTES,
    BatchStateError,
    KVStateMachine,
    parse_i64,
    parse_scan_cursor,
)
from shardkv.core.kv.scope import KeyScope, SlotRange

__all__ = [
    "DEFAULT_MAX_STRING_BYTES",
    "BatchStateError",
    "GlobPattern",
    "KVStateMachine",
    "KeyScope",
    "SlotRange",
    "codec",
    "glob_match",
    "parse_i64",
    "parse_scan_cursor",
]
