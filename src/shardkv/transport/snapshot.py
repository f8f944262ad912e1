"""Splitting a MsgSnap into `SnapshotChunk`s and putting it back together, with checks.

A transfer is: a first chunk carrying the MsgSnap (its ``snapshot.data`` left out) and the
data's total length, chunks with consecutive offsets, and a last chunk carrying the CRC-32
of the whole data. Every chunk carries the CRC-32 of its own bytes, so a corrupted chunk is
refused as soon as it arrives, before the rest is buffered. The receiver never buffers more
than the announced length, and refuses an announced length over its ``max_snapshot_bytes``
before reading any data.

CRC-32 (zlib) rather than CRC-32C: it is in the standard library and runs at memory speed;
TCP and TLS already protect the bytes in flight, the checksum catches reassembly bugs.

The transport feeds `SnapshotAssembler` from its gRPC handler; the only I/O is a snapshot
file's (`SnapshotFiles`), when the node keeps snapshots in files.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import zlib
from collections.abc import Iterable, Iterator

import grpc

from shardkv.core.raft.types import Message, MessageType, Snapshot
from shardkv.storage.kv_snapshot import MAGIC as KV_SNAPSHOT_MAGIC
from shardkv.storage.snapshot_files import SnapshotFiles, SnapshotRef, SnapshotWriter, is_ref
from shardkv.transport import codec
from shardkv.transport.proto import shardkv_pb2 as pb

DEFAULT_SNAPSHOT_CHUNK_BYTES = 1 << 20


class SnapshotTransferError(Exception):
    """A chunk sequence the receiver refuses; ``code`` is the gRPC status it answers with.

    DATA_LOSS: a checksum does not match. RESOURCE_EXHAUSTED: larger than the receiver's
    bound. INVALID_ARGUMENT: anything else malformed (missing header, offset gap, length
    mismatch, data after the last chunk, a stream that ends early).
    """

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


def iter_chunks(
    message: Message, chunk_bytes: int, files: SnapshotFiles | None = None
) -> Iterator[pb.SnapshotChunk]:
    """The chunks of ``message`` (a MsgSnap with a snapshot), at most ``chunk_bytes`` of
    data each. Snapshot data that is a file reference is read from ``files`` piece by
    piece (the receiver gets the file's bytes; the iterator raises `SnapshotFileError` if
    the file is missing or damaged). Raises ``ValueError`` if ``message`` is not a MsgSnap
    with a snapshot, or holds a reference and ``files`` is None."""
    if message.type is not MessageType.SNAP or message.snapshot is None:
        raise ValueError(f"not a snapshot message: {message.type!r}")
    if chunk_bytes <= 0:
        raise ValueError(f"chunk_bytes must be positive, got {chunk_bytes}")
    data = message.snapshot.data
    pieces: Iterable[bytes]
    if is_ref(data):
        if files is None:
            raise ValueError("a snapshot file reference, and no snapshot directory to read it")
        ref = SnapshotRef.decode(data)
        total = ref.size
        pieces = files.read(ref, chunk_bytes)
    else:
        total = len(data)
        view = memoryview(data)
        pieces = (bytes(view[i : i + chunk_bytes]) for i in range(0, total, chunk_bytes))
    running_crc = 0
    offset = 0
    first = True
    for piece in itertools.chain(pieces, [b""] if total == 0 else []):
        crc = zlib.crc32(piece)
        running_crc = zlib.crc32(piece, running_crc)
        end = offset + len(piece)
        last = end >= total
        chunk = pb.SnapshotChunk(offset=offset, data=piece, crc32=crc, last=last)
        if first:
            codec.fill_message_pb(message, chunk.header, snapshot_data=False)
            chunk.total_bytes = total
            first = False
        if last:
            chunk.snapshot_crc32 = running_crc
        yield chunk
        if last:
            return
        offset = end


class SnapshotAssembler:
    """Receives the chunks of one transfer addressed to ``node_id``.

    Call `add` for each chunk in arrival order; it returns True after the last one, then
    `message` gives the MsgSnap with its data. Any refusal raises `SnapshotTransferError`
    and leaves the assembler unusable. If the stream ends before `add` returned True, call
    `check_complete` (it raises). Call `close` however the transfer ends.

    With ``files``, a KV snapshot (it starts with the KV snapshot magic) is written to a
    new file as it arrives instead of being held, and `message` carries the file's
    reference as its data; anything else (the placement group's map) is held.
    """

    def __init__(
        self, node_id: int, max_snapshot_bytes: int, files: SnapshotFiles | None = None
    ) -> None:
        self._node_id = node_id
        self._max_snapshot_bytes = max_snapshot_bytes
        self._files = files
        self._writer: SnapshotWriter | None = None
        self._header: pb.Message | None = None
        self._total_bytes = 0
        self._received_bytes = 0
        self._crc = 0
        self._parts: list[bytes] = []
        self._done = False
        self._failed = False

    @property
    def from_node(self) -> int | None:
        """The sender, known once the first chunk arrived."""
        return None if self._header is None else self._header.from_node

    @property
    def received_bytes(self) -> int:
        return self._received_bytes

    def add(self, chunk: pb.SnapshotChunk) -> bool:
        if self._failed:
            raise self._refuse(grpc.StatusCode.INVALID_ARGUMENT, "transfer already refused")
        if self._done:
            raise self._refuse(grpc.StatusCode.INVALID_ARGUMENT, "chunk after the last one")
        if self._header is None:
            self._start(chunk)
        elif chunk.HasField("header"):
            raise self._refuse(grpc.StatusCode.INVALID_ARGUMENT, "header in a later chunk")
        data = chunk.data
        if chunk.offset != self._received_bytes:
            raise self._refuse(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"chunk at offset {chunk.offset}, expected {self._received_bytes}",
            )
        if self._received_bytes + len(data) > self._total_bytes:
            raise self._refuse(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"data beyond the announced {self._total_bytes} bytes",
            )
        if zlib.crc32(data) != chunk.crc32:
            raise self._refuse(
                grpc.StatusCode.DATA_LOSS, f"chunk at offset {chunk.offset}: checksum mismatch"
            )
        self._crc = zlib.crc32(data, self._crc)
        self._received_bytes += len(data)
        if self._writer is not None:
            self._writer.write(data)
        elif data:
            self._parts.append(data)
        if not chunk.last:
            return False
        if self._received_bytes != self._total_bytes:
            raise self._refuse(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"last chunk at {self._received_bytes} of {self._total_bytes} bytes",
            )
        if self._crc != chunk.snapshot_crc32:
            raise self._refuse(grpc.StatusCode.DATA_LOSS, "snapshot checksum mismatch")
        self._done = True
        return True

    def check_complete(self) -> None:
        """Raise `SnapshotTransferError` unless the last chunk was received."""
        if self._failed or not self._done:
            raise self._refuse(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"stream ended after {self._received_bytes} of {self._total_bytes} bytes",
            )

    def message(self) -> Message:
        """The reassembled MsgSnap. Only after `add` returned True. A snapshot written to a
        file is made durable first (slow: run `message_async` on an event loop)."""
        self.check_complete()
        assert self._header is not None
        header = codec.message_from_pb(self._header)
        assert header.snapshot is not None
        if self._writer is not None:
            writer, self._writer = self._writer, None
            data = writer.commit().encode()
        else:
            data = b"".join(self._parts)
            self._parts = []
        return dataclasses.replace(header, snapshot=Snapshot(header.snapshot.metadata, data))

    async def message_async(self) -> Message:
        """`message`, with a file's sync in a worker thread."""
        self.check_complete()
        return await asyncio.to_thread(self.message)

    def close(self) -> None:
        """Drop what was received and not handed out (a file being written is removed)."""
        self._parts = []
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.abort()

    def _start(self, chunk: pb.SnapshotChunk) -> None:
        if not chunk.HasField("header"):
            raise self._refuse(grpc.StatusCode.INVALID_ARGUMENT, "first chunk has no header")
        header = chunk.header
        if header.type != pb.MSG_SNAP or not header.HasField("snapshot"):
            raise self._refuse(grpc.StatusCode.INVALID_ARGUMENT, "header is not a MsgSnap")
        if header.to_node != self._node_id:
            raise self._refuse(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"snapshot for node {header.to_node} sent to node {self._node_id}",
            )
        if chunk.total_bytes > self._max_snapshot_bytes:
            raise self._refuse(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"snapshot of {chunk.total_bytes} bytes exceeds max_snapshot_bytes "
                f"{self._max_snapshot_bytes}",
            )
        self._header = header
        self._total_bytes = chunk.total_bytes
        if self._files is not None and chunk.data[: len(KV_SNAPSHOT_MAGIC)] == KV_SNAPSHOT_MAGIC:
            self._writer = self._files.writer(f"r{header.group_id}")

    def _refuse(self, code: grpc.StatusCode, details: str) -> SnapshotTransferError:
        self._failed = True
        self.close()
        return SnapshotTransferError(code, details)
