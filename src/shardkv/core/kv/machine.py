"""The KV state machine: Redis string and keyspace commands over the storage contract.

It is deterministic: the same commands with the same ``now_ms`` against the same state give
the same replies and the same writes on every replica. It never reads a clock, never
raises for bad client input (errors are ``ErrorReply`` values carrying Redis 7's exact
text) and never touches a database: it reads through a ``ReadView`` and returns a
``WriteBatch``. The byte layout is in ``shardkv.core.kv.codec``.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Final

from shardkv.core.cluster.slots import SLOT_COUNT, key_slot, pattern_slot, slot_of_prefixed
from shardkv.core.commands import COMMANDS, CommandKind, lookup, unknown_command_error
from shardkv.core.engine import (
    DATA,
    EXPIRY,
    META,
    SUB,
    Delete,
    DeleteRange,
    Put,
    ReadView,
    WriteBatch,
)
from shardkv.core.kv.codec import (
    EXPIRY_HEAD_BYTES,
    FAMILY_FIELD,
    FAMILY_MEMBER,
    HEADER_BYTES,
    LIST_START_POSITION,
    STRING_NO_EXPIRY_HEADER,
    SUB_FAMILY_END,
    TYPE_HASH,
    TYPE_LIST,
    TYPE_NAMES,
    TYPE_SET,
    TYPE_STRING,
    data_bytes_key,
    data_key,
    data_range,
    data_ranges,
    decode_collection_meta,
    decode_count,
    decode_expiry_key,
    encode_collection_meta,
    encode_count,
    expires_count_key,
    expiry_group_range,
    expiry_key_head,
    expiry_range_end,
    key_count_key,
    scope_key,
    sub_prefix,
    user_key,
)
from shardkv.core.kv.collection import Collection
from shardkv.core.kv.glob import GlobPattern
from shardkv.core.kv.longdouble import add_long_double, format_long_double, parse_long_double
from shardkv.core.kv.scope import KeyScope, SlotRange, decode_scope_record
from shardkv.core.kv.transaction import TRANSACTION_COMMAND, decode_transaction, value_digest
from shardkv.core.kv.typed import ERR_INVALID_CURSOR as _ERR_INVALID_CURSOR
from shardkv.core.kv.typed import ERR_NAN_OR_INFINITY as _ERR_NAN_OR_INFINITY
from shardkv.core.kv.typed import ERR_NO_SUCH_KEY as _ERR_NO_SUCH_KEY
from shardkv.core.kv.typed import ERR_NOT_FLOAT as _ERR_NOT_FLOAT
from shardkv.core.kv.typed import ERR_NOT_INTEGER as _ERR_NOT_INTEGER
from shardkv.core.kv.typed import ERR_OVERFLOW as _ERR_OVERFLOW
from shardkv.core.kv.typed import ERR_SYNTAX as _ERR_SYNTAX
from shardkv.core.kv.typed import ERR_WRONGTYPE as _ERR_WRONGTYPE
from shardkv.core.resp.replies import NULL_ARRAY, OK, ErrorReply, Reply, SimpleString

_Handler = Callable[[list[bytes], int], Reply]

#: Redis's default proto-max-bulk-len: APPEND and SETRANGE refuse to grow a string past it.
DEFAULT_MAX_STRING_BYTES: Final = 512 * 1024 * 1024
#: Entries fetched from the ReadView per page by scans (KEYS, SCAN, the expiry sweep).
SCAN_PAGE_ENTRIES: Final = 256
#: A deleted hash, set, sorted set or list with at most this many members has each member
#: record deleted; a bigger one gets one range deletion (O(1) now, space reclaimed by
#: RocksDB's compactions), so range tombstones stay few.
SMALL_COLLECTION_MEMBERS: Final = 64
#: SCAN's COUNT when the client gives none (Redis's default).
DEFAULT_SCAN_COUNT: Final = 10

_I64_MIN: Final = -(2**63)
_I64_MAX: Final = 2**63 - 1
_U64_MAX: Final = 2**64 - 1
# C's LLONG_MAX / 1000 and LLONG_MIN / 1000 (division truncating toward zero).
_MAX_SECONDS: Final = _I64_MAX // 1000
_MIN_SECONDS: Final = -(-_I64_MIN // 1000)

_expire_at_of = struct.Struct(">Q").unpack_from  # (value, 1) -> (expire_at_ms,)
_pack_header = struct.Struct(">BQ").pack

# Redis 7 error replies.
_ERR_DECREMENT_OVERFLOW: Final = ErrorReply("ERR decrement would overflow")
_ERR_OFFSET: Final = ErrorReply("ERR offset is out of range")
_ERR_STRING_TOO_LONG: Final = ErrorReply(
    "ERR string exceeds maximum allowed size (proto-max-bulk-len)"
)
_ERR_EXPIRE_NX: Final = ErrorReply(
    "ERR NX and XX, GT or LT options at the same time are not compatible"
)
_ERR_EXPIRE_GT_LT: Final = ErrorReply("ERR GT and LT options at the same time are not compatible")

# SET / GETEX option flags (Redis's OBJ_SET_* / OBJ_* flags).
_NX: Final = 1
_XX: Final = 2
_GET: Final = 4
_KEEPTTL: Final = 8
_PERSIST: Final = 16
_EX: Final = 32
_PX: Final = 64
_EXAT: Final = 128
_PXAT: Final = 256
_ANY_EXPIRE: Final = _EX | _PX | _EXAT | _PXAT

_C_SPACE: Final = frozenset(b" \t\n\v\f\r")
_UNSIGNED: Final = re.compile(rb"([+-]?)([0-9]+)")


def parse_i64(text: bytes) -> int | None:
    """Redis's strict integer parsing (``string2ll``): optional '-', no '+', no spaces, no
    leading zeros (except "0" itself, and "-0" is refused), within signed 64 bits."""
    if text.isdigit():
        if (text[0] == 0x30 and len(text) > 1) or len(text) > 19:
            return None
        value = int(text)
        return value if value <= _I64_MAX else None
    if len(text) >= 2 and text[0] == 0x2D and text[1] != 0x30 and text[1:].isdigit():
        if len(text) > 20:
            return None
        value = int(text)
        return value if value >= _I64_MIN else None
    return None


def parse_scan_cursor(text: bytes) -> int | None:
    """A SCAN cursor as Redis 7.0 reads it (``strtoul``, 64-bit): optional sign, decimal
    digits, no leading whitespace, nothing after; a '-' negates modulo 2**64; "" is 0.
    None if Redis would answer "invalid cursor"."""
    if not text:
        return 0
    if text[0] in _C_SPACE:
        return None
    match = _UNSIGNED.fullmatch(text)
    if match is None:
        return None
    sign, digits = match.groups()
    if len(digits.lstrip(b"0")) > 20:
        return None
    value = int(digits)
    if value > _U64_MAX:
        return None
    return (-value) & _U64_MAX if sign == b"-" else value


def _error_text(raw: bytes) -> str:
    # User bytes inside an error: CR and LF would break the protocol, Redis maps them to
    # spaces.
    return raw.decode("utf-8", "surrogateescape").replace("\r", " ").replace("\n", " ")


def _is_expired(value: bytes, now_ms: int) -> bool:
    expire_at: int = _expire_at_of(value, 1)[0]
    return expire_at != 0 and expire_at <= now_ms


class BatchStateError(RuntimeError):
    """The caller broke the batch protocol (a write outside a batch, nested batches).
    A programming error, never caused by client input."""


class KVStateMachine:
    """Executes Redis data commands against committed state plus the current batch.

    Contract:

    1. Construct with a ``ReadView`` of committed state and the ``KeyScope`` the machine
       owns (default: every slot, group 1). It owns, in that view, the DATA keys of the
       scope's slots, the group's EXPIRY entries and the group's two META counters
       (``codec``); nothing else may write them. Other groups' records may share the
       engine: no command reads, counts, scans, flushes or sweeps them. Routing a key to
       the group owning its slot is the caller's job (``owns_key``); the machine executes
       single-key commands on whatever key it is given and counts it as its own.
    2. ``begin_batch()``, then ``execute(args, now_ms)`` for each command, in log order
       (and ``expire_sweep`` where the log says so), then ``finish_batch()``, which returns
       the ``WriteBatch`` of everything those commands wrote. The caller must apply that
       batch to the engine atomically before the next ``begin_batch()``; a batch that is
       dropped (``abort_batch()``, or never applied) leaves no trace: the next batch
       reads the view afresh.
    3. Within a batch, every command sees the writes of the earlier commands of the same
       batch: reads, and scans (KEYS, SCAN, the sweep), go through an overlay of the
       pending writes over the view. Outside a batch, read-only commands may be executed
       against the view alone; a write command there raises ``BatchStateError``.
    4. ``args`` is the command as received: ``args[0]`` the name in any case. ``now_ms``
       is absolute unix time in milliseconds chosen by the caller (for replicated writes,
       the leader stamps it into the log so every replica uses the same value); the machine
       never reads a clock. Relative expiries (EX, PX, EXPIRE, ...) become absolute
       expire-at times computed from ``now_ms``, so replicas agree.
    5. ``execute`` never raises for client input: it returns Redis 7's reply, errors
       included (``ErrorReply`` with Redis's exact text). Arity is checked here too, so a
       command that reached the log unchecked still gets Redis's error.

    Expiry: a key whose expire-at is <= ``now_ms`` is expired. Expired keys are invisible
    to every command at once (a lazy check on each read), whether or not the sweep has
    removed them; reads never write. ``expire_sweep`` physically removes expired keys
    through the EXPIRY index; the leader proposes it like a command. A write to an expired
    key treats it as absent (and overwrites or removes the stale copy).

    Counts: ``key_count()`` (DBSIZE) and ``expires_count()`` (INFO keyspace) are the
    group's, kept exact in META by every batch. Like Redis's DBSIZE they include expired
    keys the sweep has not removed yet.

    Scope: KEYS and SCAN list only the scope's slots; FLUSHALL deletes only the scope's
    slots, the group's EXPIRY entries and zeroes the group's counts; the sweep reads only
    the group's EXPIRY entries.

    SCAN cursors: storage keys are ordered by (slot, key), so the cursor is simply the next
    slot to visit (0 starts, and 0 returned means done). Slots outside the scope are
    skipped: a cursor in an unowned gap continues at the next owned slot, and the
    iteration ends (0) after the last owned slot. Each call returns every key of each slot
    it visits and stops after the slot in which COUNT keys were reached, so a cursor
    always fits in 64 bits, needs no server-side state, and any key present for the whole
    iteration is returned at least once (keys of a slot are returned together, never
    split across calls). COUNT is a hint: a slot holding many keys is returned whole.
    A MATCH pattern pinned to one slot by a hash tag (``{user1}:*``) visits that slot only,
    and only if the scope owns it (else the reply is empty, cursor 0).
    """

    __slots__ = (
        "_data",
        "_data_bytes",
        "_data_bytes_key",
        "_data_ranges",
        "_dispatch",
        "_expires_count",
        "_expires_count_key",
        "_expiry",
        "_expiry_range",
        "_flushed",
        "_group_id",
        "_in_batch",
        "_key_count",
        "_key_count_key",
        "_max_string_bytes",
        "_owned",
        "_scope",
        "_start_counts",
        "_sub",
        "_sub_cleared",
        "_view",
    )

    def __init__(
        self,
        view: ReadView,
        *,
        scope: KeyScope | None = None,
        max_string_bytes: int = DEFAULT_MAX_STRING_BYTES,
    ) -> None:
        self._view = view
        self._max_string_bytes = max_string_bytes
        if scope is None:
            scope = KeyScope.whole()
        self._scope = scope
        self._group_id = scope.group_id
        self._owned = scope.slot_mask()
        # FLUSHALL's DeleteRanges: one per slot range.
        self._data_ranges = data_ranges(scope.slot_ranges)
        self._expiry_range = expiry_group_range(scope.group_id)
        self._key_count_key = key_count_key(scope.group_id)
        self._expires_count_key = expires_count_key(scope.group_id)
        self._in_batch = False
        # Pending writes of the current batch: key -> value, or None for a deletion.
        self._data: dict[bytes, bytes | None] = {}
        self._expiry: dict[bytes, bytes | None] = {}
        self._sub: dict[bytes, bytes | None] = {}
        # Sub-key prefixes (`codec.sub_prefix`) whose view records were range-deleted in
        # this batch: their view records no longer count.
        self._sub_cleared: set[bytes] = set()
        # FLUSHALL ran in this batch: the view's DATA keys of the scope and the group's
        # EXPIRY entries no longer count (other groups' keys in the view still do).
        self._flushed = False
        self._key_count = 0
        self._expires_count = 0
        self._data_bytes_key = data_bytes_key(scope.group_id)
        self._data_bytes = 0
        self._start_counts = (0, 0, 0)
        self._dispatch = self._build_dispatch()

    # ------------------------------------------------------------------------------------
    # Batch protocol

    def begin_batch(self) -> None:
        """Start a batch. The previous batch must have been finished (and applied) or
        aborted."""
        if self._in_batch:
            raise BatchStateError("begin_batch() while a batch is open")
        self._in_batch = True
        self._key_count = decode_count(self._view.get(META, self._key_count_key))
        self._expires_count = decode_count(self._view.get(META, self._expires_count_key))
        self._data_bytes = decode_count(self._view.get(META, self._data_bytes_key))
        self._start_counts = (self._key_count, self._expires_count, self._data_bytes)

    def finish_batch(self) -> WriteBatch:
        """Close the batch and return its writes (possibly empty). The caller must apply
        them atomically before the next ``begin_batch()``."""
        if not self._in_batch:
            raise BatchStateError("finish_batch() without begin_batch()")
        batch = WriteBatch()
        ops = batch.ops
        flushed = self._flushed
        if flushed:
            for start, end in self._data_ranges:
                ops.append(DeleteRange(DATA, start, end))
                ops.append(DeleteRange(SUB, start, end))
            ops.append(DeleteRange(EXPIRY, *self._expiry_range))
        owned = self._owned
        # Range deletions first: a member written after its key was cleared is newer.
        for prefix in sorted(self._sub_cleared):
            ops.append(DeleteRange(SUB, prefix, prefix + SUB_FAMILY_END, reclaim=True))
        for key, value in self._sub.items():
            if value is not None:
                ops.append(Put(SUB, key, value))
            elif not flushed or not owned[slot_of_prefixed(key)]:
                ops.append(Delete(SUB, key))
        for key, value in self._data.items():
            if value is not None:
                ops.append(Put(DATA, key, value))
            elif not flushed or not owned[slot_of_prefixed(key)]:
                # (A key outside the scope is not covered by FLUSHALL's ranges.)
                ops.append(Delete(DATA, key))
        # Every EXPIRY entry this machine writes is under its group's prefix.
        for key, value in self._expiry.items():
            if value is not None:
                ops.append(Put(EXPIRY, key, value))
            elif not flushed:
                ops.append(Delete(EXPIRY, key))
        if (self._key_count, self._expires_count, self._data_bytes) != self._start_counts:
            ops.append(Put(META, self._key_count_key, encode_count(self._key_count)))
            ops.append(Put(META, self._expires_count_key, encode_count(self._expires_count)))
            # (Data written before the counter existed is not in it: never below zero.)
            ops.append(Put(META, self._data_bytes_key, encode_count(max(0, self._data_bytes))))
        self._reset_batch()
        return batch

    def abort_batch(self) -> None:
        """Drop the open batch's writes (no-op without an open batch)."""
        self._reset_batch()

    def _reset_batch(self) -> None:
        self._in_batch = False
        self._data = {}
        self._expiry = {}
        self._sub = {}
        self._sub_cleared = set()
        self._flushed = False

    @property
    def in_batch(self) -> bool:
        return self._in_batch

    @property
    def scope(self) -> KeyScope:
        """The group and slot ranges this machine owns."""
        return self._scope

    def owns_key(self, key: bytes) -> bool:
        """Whether the user key ``key`` hashes to a slot of this machine's scope (the
        caller routes keys; the machine itself does not check)."""
        return self._owned[key_slot(key)] != 0

    def data_bytes(self) -> int:
        """Bytes of the group's DATA records (keys and values as stored), pending writes
        of the open batch included: what the scheduler splits shards by. Approximate
        for data written before this counter existed (it was not counted)."""
        if self._in_batch:
            return max(0, self._data_bytes)
        return decode_count(self._view.get(META, self._data_bytes_key))

    def key_count(self) -> int:
        """The group's keys stored (DBSIZE), pending writes of the open batch included."""
        if self._in_batch:
            return self._key_count
        return decode_count(self._view.get(META, self._key_count_key))

    def expires_count(self) -> int:
        """The group's keys stored with an expiry, pending writes of the open batch
        included."""
        if self._in_batch:
            return self._expires_count
        return decode_count(self._view.get(META, self._expires_count_key))

    # ------------------------------------------------------------------------------------
    # Entry points

    def execute(self, args: list[bytes], now_ms: int) -> Reply:
        """Execute one command and return its reply (see the class docstring)."""
        if not args:
            return ErrorReply("ERR empty command")
        entry = self._dispatch.get(args[0])
        if entry is None:
            entry = self._dispatch.get(args[0].lower())
            if entry is None:
                return self._not_ours(args)
        handler, arity, arity_error, is_write = entry
        count = len(args)
        if (arity >= 0 and count != arity) or count < -arity:
            return arity_error
        if is_write and not self._in_batch:
            raise BatchStateError(f"write command {args[0]!r} outside a batch")
        return handler(args, now_ms)

    def expire_sweep(self, now_ms: int, max_keys: int) -> int:
        """Delete up to ``max_keys`` of the group's keys whose expire-at is <= ``now_ms``,
        oldest expiry first, and return how many were deleted. Must run inside a batch,
        like a write command. Reads only the group's EXPIRY entries. An index entry that
        does not match its data (never written by this machine) is removed without
        counting."""
        if not self._in_batch:
            raise BatchStateError("expire_sweep() outside a batch")
        if max_keys <= 0:
            return 0
        due: list[tuple[bytes, int, bytes]] = []
        start = self._expiry_range[0]
        end = expiry_range_end(self._group_id, now_ms)
        for index_key, _ in self._iter_range(EXPIRY, start, end):
            _, expire_at, dkey = decode_expiry_key(index_key)
            due.append((index_key, expire_at, dkey))
            if len(due) >= max_keys:
                break
        deleted = 0
        for index_key, expire_at, dkey in due:
            value = self._read(dkey)
            if value is not None and _expire_at_of(value, 1)[0] == expire_at:
                self._delete(dkey, value)
                deleted += 1
            else:
                self._expiry[index_key] = None
        return deleted

    def split_off(self, child: KeyScope) -> tuple[int, int, int]:
        """Give the slots of ``child`` (all owned by this machine) to the group
        ``child.group_id``: move their keys' EXPIRY entries under the child's group and
        take them out of this group's counts. Returns the child's (key count, expires
        count, data bytes), which the caller stores as the child's counters. The DATA
        keys stay where they are (keyed by slot, not by group): no value is copied.

        Must run inside a batch opened on a view that holds every earlier write (the
        caller writes the batches before it first), and the caller must replace this
        machine by ``narrowed(...)`` afterwards: from then on it no longer owns those
        slots. Costs one pass over the moved keys and over this group's EXPIRY entries."""
        if not self._in_batch:
            raise BatchStateError("split_off() outside a batch")
        owned = self._owned
        child_mask = child.slot_mask()
        if any(child_mask[slot] and not owned[slot] for slot in range(SLOT_COUNT)):
            raise ValueError(f"slots {child.describe()} are not all owned by this machine")
        moved_keys = moved_bytes = 0
        for dkey, value in self._iter_slots(child.slot_ranges):
            moved_keys += 1
            moved_bytes += len(dkey) + len(value)
            if value[0] != TYPE_STRING:  # its members' records are counted in its metadata
                moved_bytes += decode_collection_meta(value[HEADER_BYTES:])[1]
        moved_expiry = [
            index_key
            for index_key, _ in self._iter_range(EXPIRY, *self._expiry_range)
            if child_mask[slot_of_prefixed(index_key[EXPIRY_HEAD_BYTES:])]
        ]
        for index_key in moved_expiry:
            _, expire_at, dkey = decode_expiry_key(index_key)
            self._expiry[index_key] = None
            self._expiry[expiry_key_head(child.group_id, expire_at) + dkey] = b""
        self._key_count -= moved_keys
        self._expires_count -= len(moved_expiry)
        self._data_bytes -= moved_bytes
        return moved_keys, len(moved_expiry), moved_bytes

    def absorb(self, source: KeyScope) -> tuple[int, int, int]:
        """Take in the retired group ``source.group_id`` (a merge): move its EXPIRY
        entries under this group and add its counters to this group's. Returns the
        (keys, expiring keys, data bytes) taken. The DATA keys stay where they are. The
        caller deletes the source's counters and must replace this machine by one that
        owns ``source``'s slots too (`narrowed`, with the merged scope) afterwards.

        Must run inside a batch opened on a view that holds every earlier write, and only
        once the source applies nothing more (it retired). Costs one pass over the
        source's EXPIRY entries."""
        if not self._in_batch:
            raise BatchStateError("absorb() outside a batch")
        if source.group_id == self._group_id:
            raise ValueError(f"group {source.group_id} cannot absorb itself")
        keys = decode_count(self._view.get(META, key_count_key(source.group_id)))
        data_bytes = decode_count(self._view.get(META, data_bytes_key(source.group_id)))
        moved = [k for k, _ in self._iter_range(EXPIRY, *expiry_group_range(source.group_id))]
        for index_key in moved:
            _, expire_at, dkey = decode_expiry_key(index_key)
            self._expiry[index_key] = None
            self._expiry[expiry_key_head(self._group_id, expire_at) + dkey] = b""
        self._key_count += keys
        self._expires_count += len(moved)
        self._data_bytes += data_bytes
        return keys, len(moved), data_bytes

    def stored_scope(self) -> tuple[int, tuple[SlotRange, ...]] | None:
        """(epoch, slot ranges) of the group's scope record in the view (written when its
        log split it; carried by its snapshots), or None if it never split."""
        data = self._view.get(META, scope_key(self._group_id))
        return None if data is None else decode_scope_record(data)

    def narrowed(self, scope: KeyScope) -> KVStateMachine:
        """A machine of the same group and view owning ``scope`` (after `split_off`).
        Call between batches."""
        if scope.group_id != self._group_id:
            raise ValueError(f"scope of group {scope.group_id} for group {self._group_id}")
        return KVStateMachine(self._view, scope=scope, max_string_bytes=self._max_string_bytes)

    def _not_ours(self, args: list[bytes]) -> ErrorReply:
        spec = lookup(args[0])
        if spec is None:
            return unknown_command_error(args)
        return ErrorReply(f"ERR '{spec.name}' is answered by the server, not the state machine")

    def _build_dispatch(self) -> dict[bytes, tuple[_Handler, int, ErrorReply, bool]]:
        handlers: dict[str, _Handler] = {
            "get": self._get,
            "set": self._set,
            "setnx": self._setnx,
            "setex": self._setex,
            "psetex": self._psetex,
            "getset": self._getset,
            "getdel": self._getdel,
            "getex": self._getex,
            "mget": self._mget,
            "mset": self._mset,
            "msetnx": self._msetnx,
            "del": self._del,
            "unlink": self._del,
            "exists": self._exists,
            "incr": self._incr,
            "decr": self._decr,
            "incrby": self._incrby,
            "decrby": self._decrby,
            "incrbyfloat": self._incrbyfloat,
            "append": self._append,
            "strlen": self._strlen,
            "getrange": self._getrange,
            "substr": self._getrange,
            "setrange": self._setrange,
            "expire": self._expire,
            "pexpire": self._pexpire,
            "expireat": self._expireat,
            "pexpireat": self._pexpireat,
            "ttl": self._ttl,
            "pttl": self._pttl,
            "expiretime": self._expiretime,
            "pexpiretime": self._pexpiretime,
            "persist": self._persist,
            "type": self._type,
            "dbsize": self._dbsize,
            "scan": self._scan,
            "keys": self._keys,
            "flushall": self._flushall,
            "flushdb": self._flushall,
        }
        from shardkv.core.kv import hashes, lists, sets, zsets

        for table in (hashes.HANDLERS, sets.HANDLERS, zsets.HANDLERS, lists.HANDLERS):
            for name, function in table.items():
                handlers[name] = partial(function, self)
        handlers["watch"] = self._watch_digests
        handlers["object"] = self._object
        handlers["rename"] = self._rename
        handlers["renamenx"] = self._renamenx
        handlers["copy"] = self._copy
        dispatch: dict[bytes, tuple[_Handler, int, ErrorReply, bool]] = {}
        for spec in COMMANDS:
            if spec.kind is not CommandKind.DATA:
                continue
            entry = (handlers[spec.name], spec.arity, spec.arity_error, spec.is_write)
            dispatch[spec.name.encode()] = entry
            dispatch[spec.name.upper().encode()] = entry
        exec_entry = (self._exec, -2, ErrorReply("ERR malformed transaction"), True)
        dispatch[TRANSACTION_COMMAND] = exec_entry
        missing = set(handlers) - {name.decode() for name in dispatch}
        if missing:
            raise AssertionError(f"handlers without a command table entry: {missing}")
        return dispatch

    # ------------------------------------------------------------------------------------
    # Storage access through the overlay

    def _read(self, dkey: bytes) -> bytes | None:
        """The stored value of a data key (expired or not), pending writes first."""
        data = self._data
        if dkey in data:
            return data[dkey]
        if self._flushed and self._owned[(dkey[0] << 8) | dkey[1]]:
            return None  # FLUSHALL in this batch (a key outside the scope was not flushed)
        return self._view.get(DATA, dkey)

    def _read_live(self, dkey: bytes, now_ms: int) -> bytes | None:
        value = self._read(dkey)
        if value is not None and _is_expired(value, now_ms):
            return None
        return value

    def _store(
        self,
        dkey: bytes,
        payload: bytes,
        expire_at: int,
        old: bytes | None,
        type_tag: int = TYPE_STRING,
    ) -> None:
        """Write a DATA value (a string, or a collection's metadata); ``old`` is what
        ``_read(dkey)`` returned (expired or not), so that the expiry index and the counts
        stay exact. A string replacing a collection drops the collection's members."""
        if old is None:
            self._key_count += 1
            self._data_bytes += len(dkey) + HEADER_BYTES + len(payload)
            old_expire_at = 0
        else:
            if old[0] != type_tag:
                self._drop_members(dkey, old)
            self._data_bytes += len(payload) + HEADER_BYTES - len(old)
            old_expire_at = _expire_at_of(old, 1)[0]
        if old_expire_at != expire_at:
            if old_expire_at:
                self._expiry[expiry_key_head(self._group_id, old_expire_at) + dkey] = None
                self._expires_count -= 1
            if expire_at:
                self._expiry[expiry_key_head(self._group_id, expire_at) + dkey] = b""
                self._expires_count += 1
        if expire_at or type_tag != TYPE_STRING:
            self._data[dkey] = _pack_header(type_tag, expire_at) + payload
        else:
            self._data[dkey] = STRING_NO_EXPIRY_HEADER + payload

    def _delete(self, dkey: bytes, old: bytes, *, members_gone: bool = False) -> None:
        """Delete a data key whose stored value is ``old``, with its members if it is a
        collection (unless the caller already removed them: ``members_gone``)."""
        if old[0] != TYPE_STRING and not members_gone:
            self._drop_members(dkey, old)
        self._key_count -= 1
        self._data_bytes -= len(dkey) + len(old)
        old_expire_at = _expire_at_of(old, 1)[0]
        if old_expire_at:
            self._expiry[expiry_key_head(self._group_id, old_expire_at) + dkey] = None
            self._expires_count -= 1
        self._data[dkey] = None

    # -- members of collections (column SUB) ------------------------------------------------

    def _drop_members(self, dkey: bytes, old: bytes) -> None:
        """Delete every member record of the collection stored as ``old``: one by one if
        it is small, else as one range (O(1) whatever its size)."""
        if old[0] == TYPE_STRING:
            return
        size, sub_bytes, _, _, _ = decode_collection_meta(old[HEADER_BYTES:])
        self._data_bytes -= sub_bytes
        prefix = sub_prefix(dkey)
        end = prefix + SUB_FAMILY_END
        pending = self._sub
        if size <= SMALL_COLLECTION_MEMBERS:
            for skey, _ in list(self.iter_members(prefix, prefix, end)):
                pending[skey] = None
            return
        for skey in [k for k in pending if k.startswith(prefix)]:
            del pending[skey]
        self._sub_cleared.add(prefix)

    def read_member(self, prefix: bytes, skey: bytes) -> bytes | None:
        """The SUB record ``skey`` (under the key prefix ``prefix``), pending writes
        first."""
        pending = self._sub
        if skey in pending:
            return pending[skey]
        if self._sub_cleared and prefix in self._sub_cleared:
            return None
        if self._flushed and self._owned[(skey[0] << 8) | skey[1]]:
            return None
        return self._view.get(SUB, skey)

    def write_member(self, skey: bytes, value: bytes | None, old: bytes | None) -> int:
        """Put (or, with None, delete) the SUB record ``skey`` whose current value is
        ``old``; returns the change in stored bytes. Only inside a batch."""
        if not self._in_batch:
            raise BatchStateError("member write outside a batch")
        delta = 0
        if old is not None:
            delta -= len(skey) + len(old)
        if value is not None:
            delta += len(skey) + len(value)
        self._sub[skey] = value
        self._data_bytes += delta
        return delta

    def iter_members(
        self, prefix: bytes, start: bytes, end: bytes, *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """SUB records in ``[start, end)`` (inside one key's range ``prefix``), pending
        writes merged over the view, ascending (or descending with ``reverse``). The
        caller must not write while iterating."""
        skip_view = (self._sub_cleared and prefix in self._sub_cleared) or (
            self._flushed and self._owned[(prefix[0] << 8) | prefix[1]]
        )
        view = () if skip_view else self._iter_view(SUB, start, end)
        merged = _merge_pending(self._sub, view, start, end)
        if not reverse:
            return merged
        return iter(list(merged)[::-1])

    def open_collection(
        self, key: bytes, type_tag: int, now_ms: int, *, create: bool = False
    ) -> Collection | ErrorReply | None:
        """The live collection at ``key`` if it has type ``type_tag``; WRONGTYPE if the
        key holds another type; None if there is none (or, with ``create``, a new empty
        handle to fill and `Collection.save`). In a batch, an expired copy is deleted
        on the way."""
        dkey = data_key(key)
        old = self._read(dkey)
        if old is not None and _is_expired(old, now_ms):
            if self._in_batch:
                self._delete(dkey, old)
            old = None
        if old is None:
            if not create:
                return None
            head = tail = LIST_START_POSITION if type_tag == TYPE_LIST else 0
            return Collection(self, dkey, type_tag, None, 0, 0, head, tail, 0)
        if old[0] != type_tag:
            return _ERR_WRONGTYPE
        size, sub_bytes, head, tail, version = decode_collection_meta(old[HEADER_BYTES:])
        expire_at = _expire_at_of(old, 1)[0]
        return Collection(
            self, dkey, type_tag, old, size, sub_bytes, head, tail, expire_at, version
        )

    def type_of(self, key: bytes, now_ms: int) -> int | None:
        """The type tag of the live value at ``key``, or None."""
        value = self._read_live(data_key(key), now_ms)
        return None if value is None else value[0]

    def save_collection(self, c: Collection) -> None:
        """Write ``c``'s metadata (or delete its key once it has no members)."""
        if c.size == 0:
            if c.old is not None:
                self._delete(c.dkey, c.old, members_gone=True)
            c.old = None
            return
        c.version += 1
        payload = encode_collection_meta(c.size, c.sub_bytes, c.head, c.tail, c.version)
        self._store(c.dkey, payload, c.expire_at, c.old, c.type_tag)
        c.old = self._data[c.dkey]

    def _iter_range(
        self, column: str, start: bytes, end: bytes | None
    ) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) pairs of ``column`` in ``[start, end)``, pending writes merged
        over the view, ascending. The caller must not write while iterating. The range
        must lie inside what the machine owns (the scope's DATA ranges, the group's EXPIRY
        range): after FLUSHALL in the batch the view is ignored entirely."""
        pending = self._data if column == DATA else self._expiry
        view = () if self._flushed else self._iter_view(column, start, end)
        return _merge_pending(pending, view, start, end)

    def _iter_slots(self, slot_ranges: tuple[SlotRange, ...]) -> Iterator[tuple[bytes, bytes]]:
        """DATA (key, value) pairs of the inclusive slot ranges (sorted, disjoint, owned),
        through the overlay, ascending."""
        for first, last in slot_ranges:
            yield from self._iter_range(DATA, *data_range(first, last))

    def _iter_view(
        self, column: str, start: bytes, end: bytes | None
    ) -> Iterator[tuple[bytes, bytes]]:
        while True:
            page = self._view.scan(column, start, end, SCAN_PAGE_ENTRIES)
            yield from page
            if len(page) < SCAN_PAGE_ENTRIES:
                return
            start = page[-1][0] + b"\x00"  # the smallest key after the last one seen

    # ------------------------------------------------------------------------------------
    # Strings

    def _get(self, args: list[bytes], now_ms: int) -> Reply:
        value = self._read_live(data_key(args[1]), now_ms)
        if value is None:
            return None
        if value[0] != TYPE_STRING:
            return _ERR_WRONGTYPE
        return value[HEADER_BYTES:]

    def _set(self, args: list[bytes], now_ms: int) -> Reply:
        if len(args) == 3:  # the hot path: plain SET, no options
            dkey = data_key(args[1])
            self._store(dkey, args[2], 0, self._read(dkey))
            return OK
        parsed = _parse_set_options(args, 3, is_set=True)
        if isinstance(parsed, ErrorReply):
            return parsed
        flags, expire_arg = parsed
        return self._set_generic(args[1], args[2], flags, expire_arg, now_ms, "set", OK, None)

    def _setnx(self, args: list[bytes], now_ms: int) -> Reply:
        return self._set_generic(args[1], args[2], _NX, None, now_ms, "setnx", 1, 0)

    def _setex(self, args: list[bytes], now_ms: int) -> Reply:
        return self._set_generic(args[1], args[3], _EX, args[2], now_ms, "setex", OK, None)

    def _psetex(self, args: list[bytes], now_ms: int) -> Reply:
        return self._set_generic(args[1], args[3], _PX, args[2], now_ms, "psetex", OK, None)

    def _set_generic(
        self,
        key: bytes,
        payload: bytes,
        flags: int,
        expire_arg: bytes | None,
        now_ms: int,
        command: str,
        ok_reply: Reply,
        abort_reply: Reply,
    ) -> Reply:
        """Redis's setGenericCommand: validate the expiry, answer GET, honour NX/XX,
        write. An absolute expiry already in the past leaves the key deleted."""
        expire_at = 0
        if expire_arg is not None:
            computed = _expire_at_ms(expire_arg, flags, now_ms, command)
            if isinstance(computed, ErrorReply):
                return computed
            expire_at = computed
        dkey = data_key(key)
        old = self._read(dkey)
        live = old if old is not None and not _is_expired(old, now_ms) else None
        reply = ok_reply
        if flags & _GET:
            if live is None:
                reply = None
            elif live[0] != TYPE_STRING:
                return _ERR_WRONGTYPE
            else:
                reply = live[HEADER_BYTES:]
        found = live is not None
        if (flags & _NX and found) or (flags & _XX and not found):
            return reply if flags & _GET else abort_reply
        if expire_arg is None and flags & _KEEPTTL and live is not None:
            expire_at = _expire_at_of(live, 1)[0]
        if expire_at and expire_at <= now_ms:
            if old is not None:
                self._delete(dkey, old)
        else:
            self._store(dkey, payload, expire_at, old)
        return reply

    def _getset(self, args: list[bytes], now_ms: int) -> Reply:
        dkey = data_key(args[1])
        old = self._read(dkey)
        reply: Reply = None
        if old is not None and not _is_expired(old, now_ms):
            if old[0] != TYPE_STRING:
                return _ERR_WRONGTYPE
            reply = old[HEADER_BYTES:]
        self._store(dkey, args[2], 0, old)
        return reply

    def _getdel(self, args: list[bytes], now_ms: int) -> Reply:
        dkey = data_key(args[1])
        value = self._read_live(dkey, now_ms)
        if value is None:
            return None
        if value[0] != TYPE_STRING:
            return _ERR_WRONGTYPE
        self._delete(dkey, value)
        return value[HEADER_BYTES:]

    def _getex(self, args: list[bytes], now_ms: int) -> Reply:
        parsed = _parse_set_options(args, 2, is_set=False)
        if isinstance(parsed, ErrorReply):
            return parsed
        flags, expire_arg = parsed
        dkey = data_key(args[1])
        value = self._read_live(dkey, now_ms)
        if value is None:
            return None
        if value[0] != TYPE_STRING:
            return _ERR_WRONGTYPE
        payload = value[HEADER_BYTES:]
        if expire_arg is not None:
            expire_at = _expire_at_ms(expire_arg, flags, now_ms, "getex")
            if isinstance(expire_at, ErrorReply):
                return expire_at
            if expire_at <= now_ms:  # EXAT/PXAT in the past: Redis deletes the key
                self._delete(dkey, value)
            else:
                self._store(dkey, payload, expire_at, value)
        elif flags & _PERSIST and _expire_at_of(value, 1)[0]:
            self._store(dkey, payload, 0, value)
        return payload

    def _mget(self, args: list[bytes], now_ms: int) -> Reply:
        replies: list[Reply] = []
        for key in args[1:]:
            value = self._read_live(data_key(key), now_ms)
            if value is None or value[0] != TYPE_STRING:
                replies.append(None)
            else:
                replies.append(value[HEADER_BYTES:])
        return replies

    def _mset(self, args: list[bytes], now_ms: int) -> Reply:
        if len(args) % 2 == 0:
            return self._dispatch[b"mset"][2]
        for i in range(1, len(args), 2):
            dkey = data_key(args[i])
            self._store(dkey, args[i + 1], 0, self._read(dkey))
        return OK

    def _msetnx(self, args: list[bytes], now_ms: int) -> Reply:
        if len(args) % 2 == 0:
            return self._dispatch[b"msetnx"][2]
        for i in range(1, len(args), 2):
            if self._read_live(data_key(args[i]), now_ms) is not None:
                return 0
        for i in range(1, len(args), 2):
            dkey = data_key(args[i])
            self._store(dkey, args[i + 1], 0, self._read(dkey))
        return 1

    def _incr(self, args: list[bytes], now_ms: int) -> Reply:
        return self._incr_by(args[1], 1, now_ms)

    def _decr(self, args: list[bytes], now_ms: int) -> Reply:
        return self._incr_by(args[1], -1, now_ms)

    def _incrby(self, args: list[bytes], now_ms: int) -> Reply:
        increment = parse_i64(args[2])
        if increment is None:
            return _ERR_NOT_INTEGER
        return self._incr_by(args[1], increment, now_ms)

    def _decrby(self, args: list[bytes], now_ms: int) -> Reply:
        decrement = parse_i64(args[2])
        if decrement is None:
            return _ERR_NOT_INTEGER
        if decrement == _I64_MIN:
            return _ERR_DECREMENT_OVERFLOW
        return self._incr_by(args[1], -decrement, now_ms)

    def _incr_by(self, key: bytes, increment: int, now_ms: int) -> Reply:
        dkey = data_key(key)
        old = self._read(dkey)
        expire_at = 0
        current = 0
        if old is not None and not _is_expired(old, now_ms):
            if old[0] != TYPE_STRING:
                return _ERR_WRONGTYPE
            parsed = parse_i64(old[HEADER_BYTES:])
            if parsed is None:
                return _ERR_NOT_INTEGER
            current = parsed
            expire_at = _expire_at_of(old, 1)[0]  # INCR keeps the TTL
        result = current + increment
        if result > _I64_MAX or result < _I64_MIN:
            return _ERR_OVERFLOW
        self._store(dkey, str(result).encode(), expire_at, old)
        return result

    def _incrbyfloat(self, args: list[bytes], now_ms: int) -> Reply:
        dkey = data_key(args[1])
        old = self._read(dkey)
        expire_at = 0
        current = parse_long_double(b"0")
        if old is not None and not _is_expired(old, now_ms):
            if old[0] != TYPE_STRING:
                return _ERR_WRONGTYPE
            current = parse_long_double(old[HEADER_BYTES:])
            expire_at = _expire_at_of(old, 1)[0]
        increment = parse_long_double(args[2])
        if current is None or increment is None:
            return _ERR_NOT_FLOAT
        total = add_long_double(current, increment)
        if total is None:
            return _ERR_NAN_OR_INFINITY
        text = format_long_double(total)
        self._store(dkey, text, expire_at, old)
        return text

    def _append(self, args: list[bytes], now_ms: int) -> Reply:
        dkey = data_key(args[1])
        old = self._read(dkey)
        if old is None or _is_expired(old, now_ms):
            self._store(dkey, args[2], 0, old)
            return len(args[2])
        if old[0] != TYPE_STRING:
            return _ERR_WRONGTYPE
        new_length = len(old) - HEADER_BYTES + len(args[2])
        if new_length > self._max_string_bytes:
            return _ERR_STRING_TOO_LONG
        # The header is unchanged by APPEND (same type, same expiry): keep it as is.
        self._data[dkey] = old + args[2]
        self._data_bytes += len(args[2])
        return new_length

    def _strlen(self, args: list[bytes], now_ms: int) -> Reply:
        value = self._read_live(data_key(args[1]), now_ms)
        if value is None:
            return 0
        if value[0] != TYPE_STRING:
            return _ERR_WRONGTYPE
        return len(value) - HEADER_BYTES

    def _getrange(self, args: list[bytes], now_ms: int) -> Reply:
        start = parse_i64(args[2])
        end = parse_i64(args[3])
        if start is None or end is None:
            return _ERR_NOT_INTEGER
        value = self._read_live(data_key(args[1]), now_ms)
        if value is None:
            return b""
        if value[0] != TYPE_STRING:
            return _ERR_WRONGTYPE
        length = len(value) - HEADER_BYTES
        if start < 0 and end < 0 and start > end:
            return b""
        if start < 0:
            start = max(length + start, 0)
        if end < 0:
            end = max(length + end, 0)
        end = min(end, length - 1)
        if start > end or length == 0:
            return b""
        return value[HEADER_BYTES + start : HEADER_BYTES + end + 1]

    def _setrange(self, args: list[bytes], now_ms: int) -> Reply:
        offset = parse_i64(args[2])
        if offset is None:
            return _ERR_NOT_INTEGER
        if offset < 0:
            return _ERR_OFFSET
        patch = args[3]
        dkey = data_key(args[1])
        old = self._read(dkey)
        live = old if old is not None and not _is_expired(old, now_ms) else None
        if live is None:
            if not patch:
                return 0
            if offset + len(patch) > self._max_string_bytes:
                return _ERR_STRING_TOO_LONG
            self._store(dkey, bytes(offset) + patch, 0, old)
            return offset + len(patch)
        if live[0] != TYPE_STRING:
            return _ERR_WRONGTYPE
        length = len(live) - HEADER_BYTES
        if not patch:
            return length
        if offset + len(patch) > self._max_string_bytes:
            return _ERR_STRING_TOO_LONG
        buffer = bytearray(live)
        end = HEADER_BYTES + offset + len(patch)
        if end > len(buffer):
            buffer.extend(bytes(end - len(buffer)))
        buffer[HEADER_BYTES + offset : end] = patch
        self._data[dkey] = bytes(buffer)  # same header: type and expiry unchanged
        self._data_bytes += len(buffer) - len(live)
        return len(buffer) - HEADER_BYTES

    # ------------------------------------------------------------------------------------
    # Keyspace

    def _del(self, args: list[bytes], now_ms: int) -> Reply:
        deleted = 0
        for key in args[1:]:
            dkey = data_key(key)
            old = self._read(dkey)
            if old is None:
                continue
            if not _is_expired(old, now_ms):
                deleted += 1
            self._delete(dkey, old)  # an expired copy goes too: it is dead weight
        return deleted

    # -- transactions (see ``shardkv.core.kv.transaction``) --------------------------------

    def _watch_digests(self, args: list[bytes], now_ms: int) -> Reply:
        """The digests of the watched keys' live values, in order."""
        return [value_digest(self._read_live(data_key(key), now_ms)) for key in args[1:]]

    def _exec(self, args: list[bytes], now_ms: int) -> Reply:
        """A MULTI/EXEC block: the null array if a watched key changed since WATCH, else
        every queued command's reply (an error in one does not stop the others, as in
        Redis). Runs in the batch of its log entry: atomically, on every replica."""
        try:
            watches, commands = decode_transaction(args)
        except (ValueError, struct.error):
            return ErrorReply("ERR malformed transaction")
        for key, digest in watches:
            if value_digest(self._read_live(data_key(key), now_ms)) != digest:
                return NULL_ARRAY
        replies: list[Reply] = []
        for command in commands:
            if command and command[0] == TRANSACTION_COMMAND:
                replies.append(ErrorReply("ERR EXEC cannot be nested"))
                continue
            replies.append(self.execute(command, now_ms))
        return replies

    def _object(self, args: list[bytes], now_ms: int) -> Reply:
        """OBJECT ENCODING (the name Redis 7.0 would report for this value), REFCOUNT (1),
        IDLETIME (0: access times are not tracked), FREQ (refused, as Redis without an LFU
        policy)."""
        sub = args[1].lower()
        if sub not in (b"encoding", b"refcount", b"idletime", b"freq") or len(args) != 3:
            name = args[1].decode("utf-8", "replace")
            return ErrorReply(f"ERR unknown subcommand or wrong number of arguments for '{name}'")
        value = self._read_live(data_key(args[2]), now_ms)
        if value is None:
            return None
        if sub == b"encoding":
            return self._encoding_name(args[2], value).encode()
        if sub == b"refcount":
            return 1
        if sub == b"idletime":
            return 0
        return ErrorReply(
            "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please"
            " note that when switching between policies at runtime LRU and LFU data will take"
            " some time to adjust."
        )

    def _encoding_name(self, key: bytes, value: bytes) -> str:
        """What Redis 7.0 reports for a value like this one: its encoding is ours alone,
        but clients and tools read these names."""
        type_tag = value[0]
        payload = value[HEADER_BYTES:]
        if type_tag == TYPE_STRING:
            if len(payload) <= 20 and parse_i64(payload) is not None:
                return "int"
            return "embstr" if len(payload) <= 44 else "raw"
        if type_tag == TYPE_LIST:
            return "quicklist"
        size = decode_collection_meta(payload)[0]
        prefix = sub_prefix(data_key(key))
        family = FAMILY_FIELD if type_tag == TYPE_HASH else FAMILY_MEMBER
        start = prefix + family
        records = [
            (skey[len(start) :], member_value)
            for skey, member_value in self.iter_members(prefix, start, start + b"\xff")
        ]
        if type_tag == TYPE_SET:
            if size <= 512 and all(parse_i64(m) is not None for m, _ in records):
                return "intset"
            return "hashtable"
        # Redis 7.0's defaults: hash-max-listpack-entries 512, zset-max-listpack-entries
        # 128, and 64 bytes for a listpack's members and values.
        if type_tag == TYPE_HASH:
            compact = size <= 512 and all(len(m) <= 64 and len(v) <= 64 for m, v in records)
            return "listpack" if compact else "hashtable"
        compact = size <= 128 and all(len(m) <= 64 for m, _ in records)
        return "listpack" if compact else "skiplist"

    def delete_key(self, key: bytes) -> None:
        """Delete ``key`` whatever it holds (expired or not), members included. Only
        inside a batch."""
        dkey = data_key(key)
        old = self._read(dkey)
        if old is not None:
            self._delete(dkey, old)

    def _rename(self, args: list[bytes], now_ms: int) -> Reply:
        return self._rename_generic(args, now_ms, only_new=False)

    def _renamenx(self, args: list[bytes], now_ms: int) -> Reply:
        return self._rename_generic(args, now_ms, only_new=True)

    def _rename_generic(self, args: list[bytes], now_ms: int, *, only_new: bool) -> Reply:
        """RENAME/RENAMENX: the value, its expiry and (for a collection) every member move
        to the new name; members are copied, so this is O(members)."""
        source, target = args[1], args[2]
        value = self._read_live(data_key(source), now_ms)
        if value is None:
            return _ERR_NO_SUCH_KEY
        if source == target:
            return 0 if only_new else OK
        if only_new and self._read_live(data_key(target), now_ms) is not None:
            return 0
        self._copy_value(source, target, value)
        self.delete_key(source)
        return 1 if only_new else OK

    def _copy(self, args: list[bytes], now_ms: int) -> Reply:
        replace = False
        for option in args[3:]:
            if option.lower() == b"replace":
                replace = True
            elif option.lower() == b"db":
                return ErrorReply("ERR Copying to another database is not allowed in cluster mode")
            else:
                return _ERR_SYNTAX
        source, target = args[1], args[2]
        if source == target:
            return ErrorReply("ERR source and destination objects are the same")
        value = self._read_live(data_key(source), now_ms)
        if value is None:
            return 0
        if self._read_live(data_key(target), now_ms) is not None and not replace:
            return 0
        self._copy_value(source, target, value)
        return 1

    def _copy_value(self, source: bytes, target: bytes, value: bytes) -> None:
        """Make ``target`` hold a copy of ``value`` (``source``'s live value), expiry and
        members included, replacing whatever it held."""
        self.delete_key(target)
        tkey = data_key(target)
        payload = value[HEADER_BYTES:]
        expire_at = _expire_at_of(value, 1)[0]
        if value[0] != TYPE_STRING:
            sprefix = sub_prefix(data_key(source))
            tprefix = sub_prefix(tkey)
            for skey, member in list(self.iter_members(sprefix, sprefix, sprefix + SUB_FAMILY_END)):
                self.write_member(tprefix + skey[len(sprefix) :], member, None)
        self._store(tkey, payload, expire_at, None, value[0])

    def _exists(self, args: list[bytes], now_ms: int) -> Reply:
        count = 0
        for key in args[1:]:
            if self._read_live(data_key(key), now_ms) is not None:
                count += 1
        return count

    def _type(self, args: list[bytes], now_ms: int) -> Reply:
        value = self._read_live(data_key(args[1]), now_ms)
        if value is None:
            return SimpleString("none")
        return SimpleString(TYPE_NAMES[value[0]])

    def _dbsize(self, args: list[bytes], now_ms: int) -> Reply:
        return self.key_count()

    def _flushall(self, args: list[bytes], now_ms: int) -> Reply:
        if len(args) == 2:
            mode = args[1].lower()
            if mode != b"sync" and mode != b"async":
                return _ERR_SYNTAX
        elif len(args) > 2:
            return _ERR_SYNTAX
        self._data = {}
        self._expiry = {}
        self._flushed = True
        self._key_count = 0
        self._expires_count = 0
        self._data_bytes = 0
        return OK

    def _keys(self, args: list[bytes], now_ms: int) -> Reply:
        pattern = args[1]
        matcher = None if pattern == b"*" else GlobPattern(pattern)
        keys: list[Reply] = []
        for dkey, value in self._iter_slots(self._slots_to_visit(pattern_slot(pattern), 0)):
            if _is_expired(value, now_ms):
                continue
            key = user_key(dkey)
            if matcher is None or matcher.matches(key):
                keys.append(key)
        return keys

    def _scan(self, args: list[bytes], now_ms: int) -> Reply:
        cursor = parse_scan_cursor(args[1])
        if cursor is None:
            return _ERR_INVALID_CURSOR
        count = DEFAULT_SCAN_COUNT
        pattern: bytes | None = None
        type_name: bytes | None = None
        i = 2
        while i < len(args):
            option = args[i].lower()
            has_value = len(args) - i >= 2
            if option == b"count" and has_value:
                parsed = parse_i64(args[i + 1])
                if parsed is None:
                    return _ERR_NOT_INTEGER
                if parsed < 1:
                    return _ERR_SYNTAX
                count = parsed
            elif option == b"match" and has_value:
                pattern = args[i + 1]
            elif option == b"type" and has_value:
                type_name = args[i + 1].lower()
            else:
                return _ERR_SYNTAX
            i += 2
        if cursor >= SLOT_COUNT:
            return [b"0", []]
        matcher = None if pattern is None or pattern == b"*" else GlobPattern(pattern)
        wanted_type = -1  # no filter
        if type_name is not None:
            wanted_type = next(
                (tag for tag, name in TYPE_NAMES.items() if name.encode() == type_name), -2
            )
        pinned_slot = None if pattern is None else pattern_slot(pattern)
        if pinned_slot is not None:
            count = _I64_MAX  # one slot (or none): return it whole, then done
        slot_ranges = self._slots_to_visit(pinned_slot, cursor)
        keys: list[Reply] = []
        visited = 0
        current_slot = -1
        next_cursor = 0
        for dkey, value in self._iter_slots(slot_ranges):
            slot = slot_of_prefixed(dkey)
            if slot != current_slot:
                if visited >= count:
                    next_cursor = slot
                    break
                current_slot = slot
            visited += 1
            if _is_expired(value, now_ms):
                continue
            if wanted_type != -1 and value[0] != wanted_type:
                continue
            key = user_key(dkey)
            if matcher is None or matcher.matches(key):
                keys.append(key)
        return [str(next_cursor).encode(), keys]

    def _slots_to_visit(self, pinned_slot: int | None, cursor: int) -> tuple[SlotRange, ...]:
        """The slots KEYS/SCAN must visit from slot ``cursor`` on: the owned ones, or only
        ``pinned_slot`` (the one slot a pattern's hash tag pins) if the scope owns it."""
        if pinned_slot is None:
            return self._scope.ranges_from(cursor)
        if pinned_slot < cursor or not self._owned[pinned_slot]:
            return ()
        return ((pinned_slot, pinned_slot),)

    # ------------------------------------------------------------------------------------
    # Expiry

    def _expire(self, args: list[bytes], now_ms: int) -> Reply:
        return self._expire_generic(args, now_ms, now_ms, 1000, "expire")

    def _pexpire(self, args: list[bytes], now_ms: int) -> Reply:
        return self._expire_generic(args, now_ms, now_ms, 1, "pexpire")

    def _expireat(self, args: list[bytes], now_ms: int) -> Reply:
        return self._expire_generic(args, now_ms, 0, 1000, "expireat")

    def _pexpireat(self, args: list[bytes], now_ms: int) -> Reply:
        return self._expire_generic(args, now_ms, 0, 1, "pexpireat")

    def _expire_generic(
        self, args: list[bytes], now_ms: int, base_ms: int, unit_ms: int, command: str
    ) -> Reply:
        """Redis's expireGenericCommand: options, then the time, then the key. A time
        already past deletes the key (and still answers 1)."""
        nx = xx = gt = lt = False
        for option in args[3:]:
            lowered = option.lower()
            if lowered == b"nx":
                nx = True
            elif lowered == b"xx":
                xx = True
            elif lowered == b"gt":
                gt = True
            elif lowered == b"lt":
                lt = True
            else:
                return ErrorReply("ERR Unsupported option " + _error_text(option))
        if nx and (xx or gt or lt):
            return _ERR_EXPIRE_NX
        if gt and lt:
            return _ERR_EXPIRE_GT_LT
        when = parse_i64(args[2])
        if when is None:
            return _ERR_NOT_INTEGER
        if unit_ms == 1000:
            if when > _MAX_SECONDS or when < _MIN_SECONDS:
                return _invalid_expire(command)
            when *= 1000
        if when > _I64_MAX - base_ms:
            return _invalid_expire(command)
        when += base_ms
        dkey = data_key(args[1])
        value = self._read_live(dkey, now_ms)
        if value is None:
            return 0
        current: int = _expire_at_of(value, 1)[0] or -1
        if nx and current != -1:
            return 0
        if xx and current == -1:
            return 0
        if gt and (when <= current or current == -1):
            return 0
        if lt and current != -1 and when >= current:
            return 0
        if when <= now_ms:
            self._delete(dkey, value)
        else:
            self._store(dkey, value[HEADER_BYTES:], when, value, value[0])
        return 1

    def _ttl(self, args: list[bytes], now_ms: int) -> Reply:
        return self._ttl_generic(args[1], now_ms, in_ms=False, absolute=False)

    def _pttl(self, args: list[bytes], now_ms: int) -> Reply:
        return self._ttl_generic(args[1], now_ms, in_ms=True, absolute=False)

    def _expiretime(self, args: list[bytes], now_ms: int) -> Reply:
        return self._ttl_generic(args[1], now_ms, in_ms=False, absolute=True)

    def _pexpiretime(self, args: list[bytes], now_ms: int) -> Reply:
        return self._ttl_generic(args[1], now_ms, in_ms=True, absolute=True)

    def _ttl_generic(self, key: bytes, now_ms: int, *, in_ms: bool, absolute: bool) -> Reply:
        """-2 for a missing key, -1 for no expiry, else the time left (or the expire-at),
        rounded to the nearest second unless in milliseconds."""
        value = self._read_live(data_key(key), now_ms)
        if value is None:
            return -2
        expire_at: int = _expire_at_of(value, 1)[0]
        if expire_at == 0:
            return -1
        ttl = expire_at if absolute else max(expire_at - now_ms, 0)
        return ttl if in_ms else (ttl + 500) // 1000

    def _persist(self, args: list[bytes], now_ms: int) -> Reply:
        dkey = data_key(args[1])
        value = self._read_live(dkey, now_ms)
        if value is None or _expire_at_of(value, 1)[0] == 0:
            return 0
        self._store(dkey, value[HEADER_BYTES:], 0, value, value[0])
        return 1


def _merge_pending(
    pending: dict[bytes, bytes | None],
    view: Iterable[tuple[bytes, bytes]],
    start: bytes,
    end: bytes | None,
) -> Iterator[tuple[bytes, bytes]]:
    """``view``'s (key, value) pairs in ``[start, end)`` with ``pending`` writes merged
    over them (None deletes), ascending."""
    pending_keys = sorted(key for key in pending if key >= start and (end is None or key < end))
    position = 0
    pending_count = len(pending_keys)
    for key, value in view:
        while position < pending_count and pending_keys[position] < key:
            pending_value = pending[pending_keys[position]]
            if pending_value is not None:
                yield pending_keys[position], pending_value
            position += 1
        if position < pending_count and pending_keys[position] == key:
            position += 1
            pending_value = pending[key]
            if pending_value is not None:
                yield key, pending_value
            continue
        yield key, value
    while position < pending_count:
        pending_value = pending[pending_keys[position]]
        if pending_value is not None:
            yield pending_keys[position], pending_value
        position += 1


def _invalid_expire(command: str) -> ErrorReply:
    return ErrorReply(f"ERR invalid expire time in '{command}' command")


def _parse_set_options(
    args: list[bytes], first: int, *, is_set: bool
) -> tuple[int, bytes | None] | ErrorReply:
    """Redis's parseExtendedStringArgumentsOrReply for SET (``is_set``) and GETEX:
    returns (flags, expire argument) or the syntax error. Repeating an option is allowed;
    conflicting ones are a syntax error."""
    flags = 0
    expire_arg: bytes | None = None
    count = len(args)
    j = first
    while j < count:
        option = args[j].lower()
        has_next = j + 1 < count
        if option == b"nx" and is_set and not flags & _XX:
            flags |= _NX
        elif option == b"xx" and is_set and not flags & _NX:
            flags |= _XX
        elif option == b"get" and is_set:
            flags |= _GET
        elif option == b"keepttl" and is_set and not flags & (_PERSIST | _ANY_EXPIRE):
            flags |= _KEEPTTL
        elif option == b"persist" and not is_set and not flags & (_ANY_EXPIRE | _KEEPTTL):
            flags |= _PERSIST
        elif option in _EXPIRE_OPTIONS and has_next:
            flag = _EXPIRE_OPTIONS[option]
            if flags & (_KEEPTTL | _PERSIST | (_ANY_EXPIRE & ~flag)):
                return _ERR_SYNTAX
            flags |= flag
            expire_arg = args[j + 1]
            j += 1
        else:
            return _ERR_SYNTAX
        j += 1
    return flags, expire_arg


_EXPIRE_OPTIONS: Final = {b"ex": _EX, b"px": _PX, b"exat": _EXAT, b"pxat": _PXAT}


def _expire_at_ms(expire_arg: bytes, flags: int, now_ms: int, command: str) -> int | ErrorReply:
    """Redis's getExpireMillisecondsOrReply: the absolute expire-at of an EX/PX/EXAT/PXAT
    argument, or the error (not an integer; not positive; overflowing 64 bits)."""
    value = parse_i64(expire_arg)
    if value is None:
        return _ERR_NOT_INTEGER
    in_seconds = bool(flags & (_EX | _EXAT))
    if value <= 0 or (in_seconds and value > _MAX_SECONDS):
        return _invalid_expire(command)
    if in_seconds:
        value *= 1000
    if flags & (_EX | _PX):
        value += now_ms
    if value > _I64_MAX or value <= 0:
        return _invalid_expire(command)
    return value
