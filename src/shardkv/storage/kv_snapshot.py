"""The data of a Raft snapshot of one shard's KV state machine: building it, checking it,
installing it; and where a group's applied index lives.

Several shards (Raft groups) share one engine; a snapshot covers one shard's
``KeyScope`` (``shardkv.core.kv.scope``: its group id and slot ranges) and nothing else.
What it holds (layout in ``shardkv.core.kv.codec``): the ``DATA`` keys of the scope's
slot ranges (one contiguous key range per slot range), the group's ``EXPIRY`` entries
(one range: the group-id prefix), the group's two ``META`` counters (key and expiry
counts), and the group's applied index. Installing it replaces exactly those ranges and
records and sets that group's applied index, in the caller's batch, so a crash leaves
either the old state or the new one. Every other group's DATA, EXPIRY and META records in
the same engine are left alone. The scope's slot ranges are in the header: the installer
states which scope it expects, and a snapshot of other ranges is refused (a shard's map
moved on, or a bug), never silently installed.

The applied index is stored in ``META`` under ``applied_index_key(group_id)``
(``b"raft/applied/"`` + group id, 8 bytes big-endian) as 8 bytes big-endian; the runtime
writes it with `stage_applied_index` in the same batch as the KV writes it covers, and
passes it as ``Config.applied_index`` when it restarts the group.

Format (integers big-endian)::

    header   magic b"SKVS" | version (1) = 2 | group id (8) | applied index (8)
             | range count (2) | per slot range: first slot (2) | last slot (2)
    records  column tag (1) | key length (4) | value length (4) | key | value
             in column order DATA (1), EXPIRY (2), META (3), SUB (4), keys strictly
             increasing within a column, every key inside the header's scope (DATA and
             SUB: one of the slot ranges; EXPIRY: the group's prefix; META: one of the
             group's counters)
    trailer  end tag 0xFF (1) | record count (8) | CRC-32 (4) of every byte before it

Version 1 (whole DATA/EXPIRY columns and node-wide counters, no ranges) is refused.

Incremental use. The producer (`iter_snapshot_data`) needs only the applied index before
the first record, emits records in key order page by page from a `ConsistentView`, keeps a
running ``zlib.crc32`` and emits the trailer last: it never holds more than a page, and
needs neither the record count nor the size in advance. A consumer can parse the same
stream as it arrives, cut anywhere (the header is self-delimiting by its range count;
each record by its 9-byte head, then its lengths), updating the running CRC. Since
records come sorted, it can feed them to one SST file writer per column (or to a staging
key range) and make them visible (ingest, or one batch) only once the trailer's count and
CRC match: a truncated or corrupt stream then changes nothing, as `stage_install`
guarantees for whole buffers.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Final

from shardkv.core.cluster.slots import SLOT_COUNT
from shardkv.core.engine import DATA, EXPIRY, META, SUB, ReadView, WriteBatch
from shardkv.core.kv.codec import (
    data_bytes_key,
    data_ranges,
    expires_count_key,
    expiry_group_range,
    key_count_key,
    scope_key,
)
from shardkv.core.kv.scope import KeyScope, SlotRange, merge_scopes
from shardkv.storage.engine import ConsistentView

MAGIC: Final = b"SKVS"
FORMAT_VERSION: Final = 2

#: META records owned by KV state machines, every group's (``codec.key_count_key``, ...).
KV_META_START: Final = b"kv/"
KV_META_END: Final = b"kv0"  # b"kv/" with its last byte incremented

APPLIED_INDEX_PREFIX: Final = b"raft/applied/"
#: META key prefix of a paged install in progress (`install_in_pages`), + group id (8).
INSTALL_MARKER_PREFIX: Final = b"snapshot/installing/"

#: META key present while ``shardkv backup restore`` fills a data dir: a server refuses
#: to start on it (some shards, or the map, may be missing).
RESTORE_IN_PROGRESS_KEY: Final = b"backup/restore-in-progress"

INSTALL_PAGE_RECORDS: Final = 4096
"""Most records written per batch by `install_in_pages`."""
INSTALL_PAGE_BYTES: Final = 1 << 20
"""A batch of `install_in_pages` is written once its keys and values reach this size."""

SCAN_PAGE_ENTRIES: Final = 1024
"""Most records read from the view per scan while building a snapshot."""
SCAN_PAGE_BYTES: Final = 512 << 10
"""Bytes a scan page aims at: the next page's record count follows the records' size, so
large values make short pages (a page is never less than one record)."""
_FIRST_PAGE_ENTRIES: Final = 64
MAX_KEY_BYTES: Final = 1 << 20
"""Largest key a record may carry; longer means a corrupt length field."""

_HEADER: Final = struct.Struct(">4sBQQH")  # magic, version, group, applied, range count
_SLOT_RANGE: Final = struct.Struct(">HH")
_RECORD: Final = struct.Struct(">BII")
_TRAILER_HEAD: Final = struct.Struct(">BQ")  # end tag, record count
_CRC: Final = struct.Struct(">I")
_TRAILER_BYTES: Final = _TRAILER_HEAD.size + _CRC.size
_U64: Final = struct.Struct(">Q")
_END_TAG: Final = 0xFF

_DATA_TAG: Final = 1
_EXPIRY_TAG: Final = 2
_META_TAG: Final = 3
_SUB_TAG: Final = 4
#: Column of each record tag.
_COLUMNS: Final = {_DATA_TAG: DATA, _EXPIRY_TAG: EXPIRY, _META_TAG: META, _SUB_TAG: SUB}
_WHOLE: Final = ((0, SLOT_COUNT - 1),)

_Range = tuple[int, str, bytes, bytes]
"""``(tag, column, start, exclusive end)`` of records a snapshot may hold."""


def _scope_ranges(scope: KeyScope) -> tuple[_Range, ...]:
    """Every key range a snapshot of ``scope`` holds, in stream order (tag, then key). The
    META counters are one-key ranges."""
    ranges: list[_Range] = [
        (_DATA_TAG, DATA, start, end) for start, end in data_ranges(scope.slot_ranges)
    ]
    ranges.append((_EXPIRY_TAG, EXPIRY, *expiry_group_range(scope.group_id)))
    group_keys = (
        key_count_key(scope.group_id),
        expires_count_key(scope.group_id),
        scope_key(scope.group_id),
        data_bytes_key(scope.group_id),
    )
    for key in sorted(group_keys):
        ranges.append((_META_TAG, META, key, key + b"\x00"))
    # Members of hashes, sets, sorted sets and lists: slot-prefixed like DATA.
    ranges.extend((_SUB_TAG, SUB, start, end) for start, end in data_ranges(scope.slot_ranges))
    return tuple(ranges)


def _stage_clear(scope: KeyScope, batch: WriteBatch) -> None:
    """Stage deleting every record a snapshot of ``scope`` holds."""
    for tag, column, start, end in _scope_ranges(scope):
        if tag == _META_TAG:
            batch.delete(column, start)  # a one-key range: no range tombstone for a counter
        else:
            batch.delete_range(column, start, end)


def _resolve_scope(group_id: int, scope: KeyScope | None) -> KeyScope:
    if scope is None:
        return KeyScope.whole(group_id)
    if scope.group_id != group_id:
        raise ValueError(f"scope of group {scope.group_id} given for group {group_id}")
    return scope


class KVSnapshotError(Exception):
    """Base class: snapshot data that may not be installed. Nothing was staged."""


class CorruptSnapshotError(KVSnapshotError):
    """The data is not a well-formed snapshot (bad magic or version, truncated, trailing
    bytes, wrong checksum or record count, records out of order or out of range)."""


class SnapshotMismatchError(KVSnapshotError):
    """A well-formed snapshot of another group, another applied index or other slot ranges
    than expected."""


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """What a verified snapshot holds."""

    group_id: int
    applied_index: int
    data_records: int
    expiry_records: int
    meta_records: int
    slot_ranges: tuple[SlotRange, ...] = _WHOLE

    @property
    def scope(self) -> KeyScope:
        """The group and slot ranges the snapshot covers."""
        return KeyScope(self.group_id, self.slot_ranges)


# -- applied index ---------------------------------------------------------------------------


def applied_index_key(group_id: int) -> bytes:
    """The META key of ``group_id``'s applied index."""
    return APPLIED_INDEX_PREFIX + _U64.pack(group_id)


def stage_applied_index(group_id: int, index: int, batch: WriteBatch) -> None:
    """Record that ``group_id``'s state machine has applied ``index``: put it in the same
    batch as the writes of the entries up to ``index``."""
    batch.put(META, applied_index_key(group_id), _U64.pack(index))


def read_applied_index(view: ReadView, group_id: int) -> int:
    """``group_id``'s applied index in ``view``; 0 if never recorded."""
    value = view.get(META, applied_index_key(group_id))
    if value is None:
        return 0
    index: int = _U64.unpack(value)[0]
    return index


# -- building -----------------------------------------------------------------------------


def iter_snapshot_data(
    view: ReadView,
    group_id: int,
    scope: KeyScope | None = None,
    *,
    page_entries: int = SCAN_PAGE_ENTRIES,
) -> Iterator[bytes]:
    """The snapshot of ``scope``'s KV records in ``view`` (default: every slot of
    ``group_id``), with ``group_id``'s applied index, as pieces whose concatenation is
    `build_snapshot_data`'s result. ``view`` must not change while this runs: pass an
    engine's ``consistent_view()`` (or a quiescent engine). Raises ``ValueError`` if
    ``scope`` is another group's."""
    scope = _resolve_scope(group_id, scope)
    if page_entries < 1:
        raise ValueError("page_entries must be positive")
    ranges = scope.slot_ranges
    head = _HEADER.pack(
        MAGIC, FORMAT_VERSION, group_id, read_applied_index(view, group_id), len(ranges)
    ) + b"".join(_SLOT_RANGE.pack(first, last) for first, last in ranges)
    crc = zlib.crc32(head)
    count = 0
    yield head
    pack = _RECORD.pack
    entries = min(page_entries, _FIRST_PAGE_ENTRIES)
    for tag, column, start, end in _scope_ranges(scope):
        while True:
            page = view.scan(column, start, end, entries)
            if not page:
                break
            parts: list[bytes] = []
            for key, value in page:
                parts.append(pack(tag, len(key), len(value)))
                parts.append(key)
                parts.append(value)
            piece = b"".join(parts)
            del parts
            crc = zlib.crc32(piece, crc)
            count += len(page)
            yield piece
            if len(page) < entries:
                break
            start = page[-1][0] + b"\x00"
            per_record = max(1, len(piece) // len(page))
            entries = max(1, min(page_entries, SCAN_PAGE_BYTES // per_record))
    tail = _TRAILER_HEAD.pack(_END_TAG, count)
    yield tail + _CRC.pack(zlib.crc32(tail, crc))


def build_and_close(view: ConsistentView, group_id: int, scope: KeyScope | None = None) -> bytes:
    """`build_snapshot_data` over a consistent view, closing the view however it ends.
    The view must be taken on the thread that writes (see `Engine.consistent_view`); this
    may then run on any thread."""
    try:
        return build_snapshot_data(view, group_id, scope)
    finally:
        view.close()


def build_snapshot_data(view: ReadView, group_id: int, scope: KeyScope | None = None) -> bytes:
    """The whole snapshot of ``scope``'s KV records in ``view`` (default: every slot of
    ``group_id``; see `iter_snapshot_data`)."""
    return b"".join(iter_snapshot_data(view, group_id, scope))


# -- checking and installing ------------------------------------------------------------


class _PieceReader:
    """Exact-length reads over a sequence of byte pieces cut anywhere, keeping a running
    CRC-32 of every byte read with ``crc=True``. Holds at most one piece plus a partial
    record."""

    def __init__(self, pieces: Iterable[bytes]) -> None:
        self._pieces = iter(pieces)
        self._buf = b""
        self._pos = 0
        self.crc = 0
        self.offset = 0

    def read(self, n: int, *, crc: bool = True) -> bytes:
        """Exactly ``n`` bytes; raises `CorruptSnapshotError` if the stream ends first."""
        buf, pos = self._buf, self._pos
        if len(buf) - pos >= n:
            out = buf[pos : pos + n]
            self._pos = pos + n
        else:
            parts = [buf[pos:]]
            have = len(parts[0])
            while have < n:
                piece = next(self._pieces, None)
                if piece is None:
                    raise CorruptSnapshotError(
                        f"snapshot ends at byte {self.offset + have}, inside a {n}-byte read"
                    )
                parts.append(piece)
                have += len(piece)
            buf = b"".join(parts)
            out = buf[:n]
            self._buf, self._pos = buf, n
        self.offset += n
        if crc:
            self.crc = zlib.crc32(out, self.crc)
        return out

    def at_end(self) -> bool:
        """Whether nothing is left (empty pieces are skipped)."""
        while self._pos >= len(self._buf):
            piece = next(self._pieces, None)
            if piece is None:
                return True
            self._buf, self._pos = piece, 0
        return False


class _RecordStream:
    """One pass over a snapshot's pieces: the header is read and checked on construction
    (raises `CorruptSnapshotError`), `records` yields every record after checking its
    order and range, and checks the trailer (count, CRC, nothing after it) once the last
    record was yielded; only then is ``info`` set. A consumer must not make what it read
    visible before `records` is exhausted without error."""

    def __init__(self, pieces: Iterable[bytes]) -> None:
        self._reader = reader = _PieceReader(pieces)
        magic, version, group_id, applied, range_count = _HEADER.unpack(reader.read(_HEADER.size))
        if magic != MAGIC:
            raise CorruptSnapshotError(f"not a KV snapshot (magic {bytes(magic)!r})")
        if version != FORMAT_VERSION:
            raise CorruptSnapshotError(f"unknown KV snapshot format version {version}")
        raw_ranges = reader.read(range_count * _SLOT_RANGE.size)
        slot_ranges = tuple(
            _SLOT_RANGE.unpack_from(raw_ranges, i * _SLOT_RANGE.size) for i in range(range_count)
        )
        try:
            self.scope = KeyScope(group_id, slot_ranges)
        except ValueError as exc:
            raise CorruptSnapshotError(f"bad scope in the header: {exc}") from exc
        self.group_id: int = group_id
        self.applied_index: int = applied
        self.info: SnapshotInfo | None = None

    def records(self) -> Iterator[tuple[str, bytes, bytes]]:
        reader = self._reader
        scope = self.scope
        group_id = self.group_id
        # Records come in stream order, so the range each must fall in only moves forward.
        allowed = _scope_ranges(scope)
        current = 0
        counts = dict.fromkeys(_COLUMNS, 0)
        last_tag = 0
        last_key = b""
        while True:
            head = reader.read(_RECORD.size)
            tag, key_len, value_len = _RECORD.unpack(head)
            if tag == _END_TAG:
                break
            if tag not in _COLUMNS:
                raise CorruptSnapshotError(f"unknown record tag {tag} at byte {reader.offset}")
            if key_len > MAX_KEY_BYTES:
                raise CorruptSnapshotError(f"record at byte {reader.offset} has a corrupt length")
            body = reader.read(key_len + value_len)
            key = body[:key_len]
            column = _COLUMNS[tag]
            if tag < last_tag or (tag == last_tag and key <= last_key):
                raise CorruptSnapshotError(f"record {column}/{key!r} is out of order")
            while current < len(allowed) and (
                allowed[current][0] < tag
                or (allowed[current][0] == tag and key >= allowed[current][3])
            ):
                current += 1
            if current == len(allowed) or allowed[current][0] != tag or key < allowed[current][2]:
                raise CorruptSnapshotError(
                    f"record {column}/{key!r} is outside group {group_id}'s KV ranges"
                    f" (slots {scope.describe()})"
                )
            last_tag, last_key = tag, key
            counts[tag] += 1
            yield column, key, body[key_len:]
        count = _U64.unpack_from(head, 1)[0]
        expected_crc = reader.crc
        (crc,) = _CRC.unpack(reader.read(_CRC.size, crc=False))
        if crc != expected_crc:
            raise CorruptSnapshotError("snapshot checksum mismatch")
        if count != sum(counts.values()):
            raise CorruptSnapshotError(
                f"trailer announces {count} records, found {sum(counts.values())}"
            )
        if not reader.at_end():
            raise CorruptSnapshotError("bytes after the snapshot's trailer")
        self.info = SnapshotInfo(
            group_id,
            self.applied_index,
            counts[_DATA_TAG],
            counts[_EXPIRY_TAG],
            counts[_META_TAG],
            scope.slot_ranges,
        )


def _parse(data: bytes) -> tuple[SnapshotInfo, list[tuple[str, bytes, bytes]]]:
    """Verify ``data`` entirely and return its records; raises `CorruptSnapshotError`."""
    size = len(data)
    if size < _HEADER.size + _TRAILER_BYTES:
        raise CorruptSnapshotError(f"snapshot of {size} bytes is shorter than its framing")
    # Whole data at hand: check the checksum first, so damage reads as damage rather than
    # as whichever structural error it happens to cause.
    if zlib.crc32(memoryview(data)[: size - _CRC.size]) != _CRC.unpack_from(data, size - 4)[0]:
        raise CorruptSnapshotError("snapshot checksum mismatch")
    stream = _RecordStream((data,))
    records = list(stream.records())
    assert stream.info is not None
    return stream.info, records


def read_snapshot_scope(pieces: Iterable[bytes]) -> KeyScope:
    """The group and slot ranges a snapshot's header names, reading only the header of
    ``pieces`` (the rest is neither read nor checked). Raises `CorruptSnapshotError`."""
    return _RecordStream(pieces).scope


def check_covered(scope: KeyScope, held: KeyScope, may_take: KeyScope | None = None) -> None:
    """Raise `SnapshotMismatchError` unless a snapshot of ``scope`` may be installed by a
    replica holding ``held`` (and allowed ``may_take`` besides): `stage_install`'s rule."""
    _check_covered(SnapshotInfo(scope.group_id, 0, 0, 0, 0, scope.slot_ranges), held, may_take)


def verify_snapshot_stream(pieces: Iterable[bytes]) -> SnapshotInfo:
    """Check a snapshot given as pieces (cut anywhere) completely, holding at most a piece
    and a record at a time. Raises `CorruptSnapshotError`."""
    stream = _RecordStream(pieces)
    for _ in stream.records():
        pass
    assert stream.info is not None
    return stream.info


def verify_snapshot_data(data: bytes) -> SnapshotInfo:
    """Check ``data`` completely (framing, order, ranges, count, CRC) without staging
    anything. Raises `CorruptSnapshotError`."""
    return _parse(data)[0]


def stage_install(
    data: bytes,
    batch: WriteBatch,
    *,
    group_id: int | None = None,
    applied_index: int | None = None,
    scope: KeyScope | None = None,
    may_take: KeyScope | None = None,
) -> SnapshotInfo:
    """Stage replacing ``scope``'s KV records with the snapshot ``data``, and the
    snapshot's group's applied index, into ``batch``. Returns what was installed.

    ``group_id`` / ``applied_index``, when given, must match the snapshot's (the runtime
    passes its group and ``Ready.snapshot.metadata.index``), else `SnapshotMismatchError`.
    ``scope`` (default: every slot of the snapshot's group) must be the snapshot's group
    and slot ranges exactly, else `SnapshotMismatchError`: only those ranges are replaced,
    every other group's records stay as they are. Corrupt data raises
    `CorruptSnapshotError`. On any error ``batch`` is left unchanged. The caller must write
    ``batch`` atomically, in the same batch as the Raft storage's snapshot metadata
    (`RaftLogStorage.stage_ready`), so the applied index never falls below the log's start
    after a crash. Raises ``ValueError`` if ``scope`` and ``group_id`` disagree.
    ``may_take``: slots outside ``scope`` the snapshot may hold too (a merge the replica
    has not applied); those the snapshot holds are replaced as well.
    """
    if scope is not None and group_id is not None and scope.group_id != group_id:
        raise ValueError(f"scope of group {scope.group_id} given for group {group_id}")
    info, records = _parse(data)
    if group_id is not None and info.group_id != group_id:
        raise SnapshotMismatchError(f"snapshot of group {info.group_id}, expected group {group_id}")
    if applied_index is not None and info.applied_index != applied_index:
        raise SnapshotMismatchError(
            f"snapshot at applied index {info.applied_index}, expected {applied_index}"
        )
    expected = KeyScope.whole(info.group_id) if scope is None else scope
    cleared = _check_covered(info, expected, may_take)
    _stage_clear(cleared, batch)
    for column, key, value in records:
        batch.put(column, key, value)
    stage_applied_index(info.group_id, info.applied_index, batch)
    return info


def _check_covered(
    info: SnapshotInfo, scope: KeyScope, may_take: KeyScope | None = None
) -> KeyScope:
    """Refuse a snapshot of another group, or of slots neither ``scope`` nor ``may_take``
    holds; return the scope the install replaces: ``scope`` and the snapshot's slots. A
    snapshot of fewer slots is accepted: the replica missed a split of its shard, and
    installing clears all of ``scope`` (the slots split off belong to a group not hosted
    here yet). One of more slots (from ``may_take``): it missed a merge."""
    mask = scope.slot_mask()
    extra = may_take.slot_mask() if may_take is not None else bytes(len(mask))
    if info.group_id != scope.group_id or not all(
        mask[slot] or extra[slot]
        for first, last in info.slot_ranges
        for slot in range(first, last + 1)
    ):
        allowed = scope.describe() + (f" or {may_take.describe()}" if may_take else "")
        raise SnapshotMismatchError(
            f"snapshot of group {info.group_id} slots {info.scope.describe()}, expected"
            f" group {scope.group_id} slots within {allowed}"
        )
    if all(mask[slot] for first, last in info.slot_ranges for slot in range(first, last + 1)):
        return scope
    return merge_scopes(scope, KeyScope(scope.group_id, _outside(info.slot_ranges, mask)))


def _outside(ranges: tuple[SlotRange, ...], mask: bytes) -> tuple[SlotRange, ...]:
    """The parts of ``ranges`` whose slots ``mask`` does not hold."""
    parts: list[SlotRange] = []
    for first, last in ranges:
        for slot in range(first, last + 1):
            if mask[slot]:
                continue
            if parts and parts[-1][1] + 1 == slot:
                parts[-1] = (parts[-1][0], slot)
            else:
                parts.append((slot, slot))
    return tuple(parts)


# -- installing without holding the snapshot ---------------------------------------------


def install_marker_key(group_id: int) -> bytes:
    """The META key of ``group_id``'s paged install in progress."""
    return INSTALL_MARKER_PREFIX + _U64.pack(group_id)


def pending_installs(view: ReadView) -> list[tuple[int, bytes]]:
    """``(group id, marker)`` of every paged install that started and did not finish (the
    process died in between): finish each with `install_in_pages` before opening the
    group, since its KV ranges hold part of the snapshot."""
    end = INSTALL_MARKER_PREFIX[:-1] + bytes([INSTALL_MARKER_PREFIX[-1] + 1])
    found = view.scan(META, INSTALL_MARKER_PREFIX, end, 1 << 16)
    return [(_U64.unpack(key[len(INSTALL_MARKER_PREFIX) :])[0], value) for key, value in found]


def install_in_pages(
    open_pieces: Callable[[], Iterable[bytes]],
    write: Callable[[WriteBatch], None],
    final_batch: WriteBatch,
    *,
    group_id: int,
    applied_index: int,
    scope: KeyScope,
    marker: bytes | Callable[[KeyScope], bytes],
    page_records: int = INSTALL_PAGE_RECORDS,
    may_take: KeyScope | None = None,
) -> SnapshotInfo:
    """Replace ``scope``'s KV records with a snapshot too large to hold: ``open_pieces()``
    gives its bytes afresh on each call (it is read twice, a file), ``write`` writes a
    batch to the engine at once (unsynced is fine: the engine keeps batches in order).

    1. The whole snapshot is checked (framing, order, ranges, count, CRC, and group, index
       and slot ranges as `stage_install`); on error nothing is written and
       `CorruptSnapshotError` / `SnapshotMismatchError` is raised.
    2. One batch puts ``marker`` under `install_marker_key` and deletes ``scope``'s ranges.
    3. The records are written in batches of ``page_records`` (or `INSTALL_PAGE_BYTES`).
    4. The applied index and the marker's removal are staged into ``final_batch``.

    The caller must write ``final_batch``, holding the Raft snapshot's metadata too, once
    this returns. Until it is written the group's ranges are neither the old state nor the
    new: a process that dies in between finds the marker at startup (`pending_installs`)
    and must call this again with the same snapshot before the group opens. ``marker`` is
    the caller's: what it needs to find the snapshot again and finish (file, metadata);
    a function is given the scope the install replaces (``scope``, and the slots of
    ``may_take`` the snapshot holds: see `stage_install`)."""
    if scope.group_id != group_id:
        raise ValueError(f"scope of group {scope.group_id} given for group {group_id}")
    if page_records < 1:
        raise ValueError("page_records must be positive")
    info = verify_snapshot_stream(open_pieces())
    if info.group_id != group_id:
        raise SnapshotMismatchError(f"snapshot of group {info.group_id}, expected group {group_id}")
    if info.applied_index != applied_index:
        raise SnapshotMismatchError(
            f"snapshot at applied index {info.applied_index}, expected {applied_index}"
        )
    cleared = _check_covered(info, scope, may_take)
    batch = WriteBatch()
    batch.put(
        META, install_marker_key(group_id), marker if isinstance(marker, bytes) else marker(cleared)
    )
    _stage_clear(cleared, batch)
    write(batch)
    # Verified above; a file that changed since is a storage failure, so check again.
    stream = _RecordStream(open_pieces())
    page = WriteBatch()
    page_bytes = 0
    for column, key, value in stream.records():
        page.put(column, key, value)
        page_bytes += len(key) + len(value)
        if len(page) >= page_records or page_bytes >= INSTALL_PAGE_BYTES:
            write(page)
            page = WriteBatch()
            page_bytes = 0
    if stream.info != info:
        raise CorruptSnapshotError("the snapshot changed while it was installed")
    if page:
        write(page)
    stage_applied_index(group_id, applied_index, final_batch)
    final_batch.delete(META, install_marker_key(group_id))
    return info


def stage_delete_scope(scope: KeyScope, batch: WriteBatch) -> None:
    """Stage deleting everything of ``scope``'s group a snapshot would hold, and its
    applied index and install marker: a replica that left this node."""
    _stage_clear(scope, batch)
    batch.delete(META, applied_index_key(scope.group_id))
    batch.delete(META, install_marker_key(scope.group_id))
