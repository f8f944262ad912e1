"""Snapshot files: shard snapshots kept on disk and referred to by a small `SnapshotRef`.

A shard's KV snapshot (`kv_snapshot` format) can be as large as the shard. So that no step
holds one whole in memory, a node with a snapshot directory keeps each one in a file and
uses the file's reference as the Raft snapshot's ``data``: the snapshot job streams the
shard's pages into a file, the Raft log stores the ~50-byte reference, the transport sends
the file in chunks and writes received chunks to a file of its own, and the install reads
the file twice in pages (`kv_snapshot.install_in_pages`). Raft snapshot data that is not a
reference (a placement-group map, or every snapshot of a node without a directory, as in
the simulator) is the snapshot itself.

Files are written under a temporary name, synced, renamed and the directory synced, so a
name that exists holds the complete file. A file is removed when its group's next snapshot
replaces it (`remove`) or, if nothing refers to it, by `remove_unreferenced` (received
snapshots Raft refused; files of a process that died).

Reference format (integers big-endian)::

    magic b"SKVF" | version (1) = 1 | size (8) | CRC-32 of the file (4) | name length (2)
    | name (UTF-8: letters, digits, '-', '.', no directory)
"""

from __future__ import annotations

import os
import re
import struct
import time
import zlib
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

REF_MAGIC: Final = b"SKVF"
_REF_VERSION: Final = 1
_REF: Final = struct.Struct(">4sBQIH")  # magic, version, size, crc, name length
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,200}")
_SUFFIX: Final = ".snap"
_TMP_SUFFIX: Final = ".tmp"

DEFAULT_READ_CHUNK_BYTES: Final = 1 << 20
"""Bytes per piece when a snapshot file is read back."""


class SnapshotFileError(Exception):
    """A reference that cannot be decoded, or a file that is missing or does not match
    its reference (size or CRC-32): a storage failure."""


@dataclass(frozen=True, slots=True)
class SnapshotRef:
    """Names a complete snapshot file in a node's snapshot directory."""

    name: str
    size: int
    crc32: int

    def encode(self) -> bytes:
        name = self.name.encode()
        return _REF.pack(REF_MAGIC, _REF_VERSION, self.size, self.crc32, len(name)) + name

    @staticmethod
    def decode(data: bytes) -> SnapshotRef:
        """Raises `SnapshotFileError` unless ``data`` is an encoded reference."""
        if len(data) < _REF.size or not is_ref(data):
            raise SnapshotFileError("not a snapshot file reference")
        _magic, version, size, crc, name_len = _REF.unpack_from(data)
        if version != _REF_VERSION or len(data) != _REF.size + name_len:
            raise SnapshotFileError(f"malformed snapshot file reference (version {version})")
        name = data[_REF.size :].decode(errors="replace")
        if not _NAME.fullmatch(name):
            raise SnapshotFileError(f"bad snapshot file name {name!r}")
        return SnapshotRef(name, size, crc)


def is_ref(data: bytes) -> bool:
    """Whether Raft snapshot ``data`` is a file reference rather than the snapshot."""
    return data[:4] == REF_MAGIC


class SnapshotWriter:
    """One file being written. Call `write` for each piece, then `commit` (durable, named,
    returns its reference) or `abort` (removed). Not thread-safe; one writer per file."""

    def __init__(self, directory: Path, stem: str) -> None:
        self._name = f"{stem}-{time.time_ns():x}-{os.getpid()}{_SUFFIX}"
        if not _NAME.fullmatch(self._name):
            raise ValueError(f"bad snapshot file stem {stem!r}")
        self._directory = directory
        self._tmp = directory / (self._name + _TMP_SUFFIX)
        self._file = open(self._tmp, "wb")  # noqa: SIM115 (closed by commit or abort)
        self._size = 0
        self._crc = 0

    @property
    def size(self) -> int:
        return self._size

    def write(self, piece: bytes) -> None:
        self._file.write(piece)
        self._size += len(piece)
        self._crc = zlib.crc32(piece, self._crc)

    def commit(self) -> SnapshotRef:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._tmp, self._directory / self._name)
        _fsync_directory(self._directory)
        return SnapshotRef(self._name, self._size, self._crc)

    def abort(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)


class SnapshotFiles:
    """A node's snapshot directory (created if missing). Methods may be called from any
    thread; each file has one writer."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def writer(self, stem: str) -> SnapshotWriter:
        """A new file whose name starts with ``stem`` (letters, digits, '-')."""
        return SnapshotWriter(self.directory, stem)

    def write(self, stem: str, pieces: Iterable[bytes]) -> SnapshotRef:
        """Write ``pieces`` to a new durable file; removed again if ``pieces`` raises."""
        writer = self.writer(stem)
        try:
            for piece in pieces:
                writer.write(piece)
        except BaseException:
            writer.abort()
            raise
        return writer.commit()

    def read(
        self, ref: SnapshotRef, chunk_bytes: int = DEFAULT_READ_CHUNK_BYTES
    ) -> Generator[bytes, None, None]:
        """The file's bytes in pieces of at most ``chunk_bytes`` (``close`` the generator
        to stop early: the file closes). Raises `SnapshotFileError`
        if the file is missing (at the first piece) or its size or CRC-32 differs from the
        reference's (at the end)."""
        try:
            f = open(self.directory / ref.name, "rb")  # noqa: SIM115 (closed below)
        except OSError as exc:
            raise SnapshotFileError(f"snapshot file {ref.name} cannot be opened: {exc}") from exc
        size = 0
        crc = 0
        with f:
            while piece := f.read(chunk_bytes):
                size += len(piece)
                crc = zlib.crc32(piece, crc)
                if size > ref.size:
                    break
                yield piece
        if size != ref.size or crc != ref.crc32:
            raise SnapshotFileError(
                f"snapshot file {ref.name} does not match its reference ({size} bytes, "
                f"expected {ref.size}; crc {crc:#x}, expected {ref.crc32:#x})"
            )

    def exists(self, ref: SnapshotRef) -> bool:
        return (self.directory / ref.name).is_file()

    def remove(self, ref: SnapshotRef) -> None:
        (self.directory / ref.name).unlink(missing_ok=True)

    def remove_unreferenced(self, referenced: set[str], min_age_s: float) -> list[str]:
        """Remove every file (and temporary file) not named in ``referenced`` whose last
        change is at least ``min_age_s`` old (younger ones may be a transfer in progress or
        a received snapshot about to be installed). Returns the names removed."""
        removed = []
        now = time.time()
        for entry in os.scandir(self.directory):
            name = entry.name
            if name in referenced or not entry.is_file():
                continue
            if not (name.endswith(_SUFFIX) or name.endswith(_SUFFIX + _TMP_SUFFIX)):
                continue
            try:
                if now - entry.stat().st_mtime < min_age_s:
                    continue
                os.unlink(entry.path)
            except FileNotFoundError:
                continue
            removed.append(name)
        return removed


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = [
    "DEFAULT_READ_CHUNK_BYTES",
    "REF_MAGIC",
    "SnapshotFileError",
    "SnapshotFiles",
    "SnapshotRef",
    "SnapshotWriter",
    "is_ref",
]
