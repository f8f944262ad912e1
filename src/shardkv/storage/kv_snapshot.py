"""The data of a Raft snapshot of the KV state machine: building it, checking it,
installing it; and where a group's applied index lives.

What a snapshot holds: every record the KV state machine owns (``shardkv.core.kv``:
the ``DATA`` column below ``DATA_END``, the ``EXPIRY`` column below ``EXPIRY_END``, and the
``META`` records under ``b"kv/"``, i.e. the key and expiry counts) plus the applied index of
the group it was taken from. Installing it replaces exactly those ranges and sets that
group's applied index, in the caller's batch, so a crash leaves either the old state or
the new one. Other META records (other groups' applied indexes) are left alone.

Scope: today one KV state machine owns the whole DATA/EXPIRY columns and node-wide counts,
so a snapshot covers all of them. When one engine hosts several shards, a snapshot must
cover only its shard's slot ranges (keys are slot-prefixed, so each is one contiguous
range) and the counts must become per shard: that is a new format version with the
ranges in the header.

The applied index is stored in ``META`` under ``applied_index_key(group_id)``
(``b"raft/applied/"`` + group id, 8 bytes big-endian) as 8 bytes big-endian; the runtime
writes it with `stage_applied_index` in the same batch as the KV writes it covers, and
passes it as ``Config.applied_index`` when it restarts the group.

Format (integers big-endian)::

    header   magic b"SKVS" | version (1) | group id (8) | applied index (8)
    records  column tag (1) | key length (4) | value length (4) | key | value
             in column order DATA (1), EXPIRY (2), META (3), keys strictly increasing
             within a column
    trailer  end tag 0xFF (1) | record count (8) | CRC-32 (4) of every byte before it

Incremental use. The producer (`iter_snapshot_data`) needs only the applied index before
the first record, emits records in key order page by page from a `ConsistentView`, keeps a
running ``zlib.crc32`` and emits the trailer last: it never holds more than a page, and
needs neither the record count nor the size in advance. A consumer can parse the same
stream as it arrives, cut anywhere (each record is self-delimiting: a 9-byte head, then
its lengths), updating the running CRC. Since records come sorted, it can feed them to
one SST file writer per column (or to a staging key range) and make them visible (ingest,
or one batch) only once the trailer's count and CRC match: a truncated or corrupt stream
then changes nothing, as `stage_install` guarantees for whole buffers.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from shardkv.core.engine import DATA, EXPIRY, META, ReadView, WriteBatch
from shardkv.core.kv.codec import DATA_END, EXPIRY_END
from shardkv.storage.engine import ConsistentView

MAGIC: Final = b"SKVS"
FORMAT_VERSION: Final = 1

#: META records owned by the KV state machine (``codec.KEY_COUNT_KEY``, ...).
KV_META_START: Final = b"kv/"
KV_META_END: Final = b"kv0"  # b"kv/" with its last byte incremented

APPLIED_INDEX_PREFIX: Final = b"raft/applied/"

SCAN_PAGE_ENTRIES: Final = 1024
"""Records read from the view per scan while building a snapshot."""
MAX_KEY_BYTES: Final = 1 << 20
"""Largest key a record may carry; longer means a corrupt length field."""

_HEADER: Final = struct.Struct(">4sBQQ")
_RECORD: Final = struct.Struct(">BII")
_TRAILER_HEAD: Final = struct.Struct(">BQ")  # end tag, record count
_CRC: Final = struct.Struct(">I")
_TRAILER_BYTES: Final = _TRAILER_HEAD.size + _CRC.size
_U64: Final = struct.Struct(">Q")
_END_TAG: Final = 0xFF

#: Column tag -> (column, start of its range, exclusive end), in stream order.
_COLUMNS: Final = {
    1: (DATA, b"", DATA_END),
    2: (EXPIRY, b"", EXPIRY_END),
    3: (META, KV_META_START, KV_META_END),
}


class KVSnapshotError(Exception):
    """Base class: snapshot data that may not be installed. Nothing was staged."""


class CorruptSnapshotError(KVSnapshotError):
    """The data is not a well-formed snapshot (bad magic or version, truncated, trailing
    bytes, wrong checksum or record count, records out of order or out of range)."""


class SnapshotMismatchError(KVSnapshotError):
    """A well-formed snapshot of another group or another applied index than expected."""


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """What a verified snapshot holds."""

    group_id: int
    applied_index: int
    data_records: int
    expiry_records: int
    meta_records: int


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
    view: ReadView, group_id: int, *, page_entries: int = SCAN_PAGE_ENTRIES
) -> Iterator[bytes]:
    """The snapshot of the KV records in ``view`` taken as ``group_id``'s, as pieces whose
    concatenation is `build_snapshot_data`'s result. ``view`` must not change while this
    runs: pass an engine's ``consistent_view()`` (or a quiescent engine)."""
    if page_entries < 1:
        raise ValueError("page_entries must be positive")
    head = _HEADER.pack(MAGIC, FORMAT_VERSION, group_id, read_applied_index(view, group_id))
    crc = zlib.crc32(head)
    count = 0
    yield head
    pack = _RECORD.pack
    for tag, (column, start, end) in _COLUMNS.items():
        while True:
            page = view.scan(column, start, end, page_entries)
            if not page:
                break
            parts: list[bytes] = []
            for key, value in page:
                parts.append(pack(tag, len(key), len(value)))
                parts.append(key)
                parts.append(value)
            piece = b"".join(parts)
            crc = zlib.crc32(piece, crc)
            count += len(page)
            yield piece
            if len(page) < page_entries:
                break
            start = page[-1][0] + b"\x00"
    tail = _TRAILER_HEAD.pack(_END_TAG, count)
    yield tail + _CRC.pack(zlib.crc32(tail, crc))


def build_and_close(view: ConsistentView, group_id: int) -> bytes:
    """`build_snapshot_data` over a consistent view, closing the view however it ends.
    The view must be taken on the thread that writes (see `Engine.consistent_view`); this
    may then run on any thread."""
    try:
        return build_snapshot_data(view, group_id)
    finally:
        view.close()


def build_snapshot_data(view: ReadView, group_id: int) -> bytes:
    """The whole snapshot of the KV records in ``view`` (see `iter_snapshot_data`)."""
    return b"".join(iter_snapshot_data(view, group_id))


# -- checking and installing ------------------------------------------------------------


def _parse(data: bytes) -> tuple[SnapshotInfo, list[tuple[str, bytes, bytes]]]:
    """Verify ``data`` entirely and return its records; raises `CorruptSnapshotError`."""
    view = memoryview(data)
    size = len(view)
    if size < _HEADER.size + _TRAILER_BYTES:
        raise CorruptSnapshotError(f"snapshot of {size} bytes is shorter than its framing")
    expected_crc = _CRC.unpack_from(view, size - _CRC.size)[0]
    if zlib.crc32(view[: size - _CRC.size]) != expected_crc:
        raise CorruptSnapshotError("snapshot checksum mismatch")
    magic, version, group_id, applied = _HEADER.unpack_from(view)
    if magic != MAGIC:
        raise CorruptSnapshotError(f"not a KV snapshot (magic {bytes(magic)!r})")
    if version != FORMAT_VERSION:
        raise CorruptSnapshotError(f"unknown KV snapshot format version {version}")
    records: list[tuple[str, bytes, bytes]] = []
    counts = dict.fromkeys(_COLUMNS, 0)
    position = _HEADER.size
    body_end = size - _TRAILER_BYTES
    last_tag = 0
    last_key = b""
    while position < body_end:
        if position + _RECORD.size > body_end:
            raise CorruptSnapshotError(f"record head at byte {position} overruns the snapshot")
        tag, key_len, value_len = _RECORD.unpack_from(view, position)
        position += _RECORD.size
        if tag not in _COLUMNS:
            raise CorruptSnapshotError(f"unknown record tag {tag} at byte {position}")
        if key_len > MAX_KEY_BYTES or position + key_len + value_len > body_end:
            raise CorruptSnapshotError(f"record at byte {position} overruns the snapshot")
        key = bytes(view[position : position + key_len])
        position += key_len
        value = bytes(view[position : position + value_len])
        position += value_len
        column, start, end = _COLUMNS[tag]
        if tag < last_tag or (tag == last_tag and key <= last_key):
            raise CorruptSnapshotError(f"record {column}/{key!r} is out of order")
        if not start <= key < end:
            raise CorruptSnapshotError(f"record {column}/{key!r} is outside the KV range")
        last_tag, last_key = tag, key
        counts[tag] += 1
        records.append((column, key, value))
    end_tag, count = _TRAILER_HEAD.unpack_from(view, body_end)
    if end_tag != _END_TAG or count != len(records):
        raise CorruptSnapshotError(
            f"trailer announces {count} records, found {len(records)} (tag {end_tag:#x})"
        )
    info = SnapshotInfo(group_id, applied, counts[1], counts[2], counts[3])
    return info, records


def verify_snapshot_data(data: bytes) -> SnapshotInfo:
    """Check ``data`` completely (framing, order, count, CRC) without staging anything.
    Raises `CorruptSnapshotError`."""
    return _parse(data)[0]


def stage_install(
    data: bytes,
    batch: WriteBatch,
    *,
    group_id: int | None = None,
    applied_index: int | None = None,
) -> SnapshotInfo:
    """Stage replacing the KV records with the snapshot ``data``, and the snapshot's
    group's applied index, into ``batch``. Returns what was installed.

    ``group_id`` / ``applied_index``, when given, must match the snapshot's (the runtime
    passes its group and ``Ready.snapshot.metadata.index``), else `SnapshotMismatchError`.
    Corrupt data raises `CorruptSnapshotError`. On any error ``batch`` is left unchanged.
    The caller must write ``batch`` atomically, in the same batch as the Raft storage's
    snapshot metadata (`RaftLogStorage.stage_ready`), so the applied index never falls
    below the log's start after a crash.
    """
    info, records = _parse(data)
    if group_id is not None and info.group_id != group_id:
        raise SnapshotMismatchError(f"snapshot of group {info.group_id}, expected group {group_id}")
    if applied_index is not None and info.applied_index != applied_index:
        raise SnapshotMismatchError(
            f"snapshot at applied index {info.applied_index}, expected {applied_index}"
        )
    for column, start, end in _COLUMNS.values():
        batch.delete_range(column, start, end)
    for column, key, value in records:
        batch.put(column, key, value)
    stage_applied_index(info.group_id, info.applied_index, batch)
    return info
