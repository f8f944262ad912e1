"""How a node keeps its shards' snapshots: inline, or in files it streams.

With a `SnapshotFiles` directory (every real node), a shard's Raft snapshot data is a
`SnapshotRef` and no step holds a whole snapshot in memory: `build` streams the shard's
pages into a file, `stage_install` installs a received file in pages under a META marker
(`kv_snapshot.install_in_pages`), `finish_interrupted_installs` completes at startup an
install the process died in, and files no snapshot refers to any more are removed.
Without a directory (the simulator, in-memory engines) the data is the snapshot itself,
built and installed in one piece. The placement group's snapshot (the map) is always
inline.

Called on the driver's thread, except `build`, which the runtime runs in its thread pool.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable

from shardkv.core.engine import WriteBatch
from shardkv.core.kv.scope import KeyScope
from shardkv.core.raft.types import ConfState, HardState, Snapshot, SnapshotMetadata
from shardkv.observability.logging import get_logger
from shardkv.storage.engine import ConsistentView, Engine
from shardkv.storage.kv_snapshot import (
    build_and_close,
    install_in_pages,
    iter_snapshot_data,
    pending_installs,
    read_snapshot_scope,
    stage_install,
)
from shardkv.storage.raft_log import RaftLogStorage
from shardkv.storage.snapshot_files import SnapshotFileError, SnapshotFiles, SnapshotRef, is_ref

log = get_logger(__name__)

#: A file no snapshot refers to is removed only once it is this old: younger ones may be a
#: snapshot being received, or received and not installed yet.
UNREFERENCED_FILE_MIN_AGE_S = 900.0
#: Bytes per read of a snapshot file being installed (installs hold a read, a record and
#: a page of records at a time).
INSTALL_READ_BYTES = 256 << 10
#: Bytes per read when only a snapshot file's header is wanted (it names at most a few
#: hundred slot ranges in practice; a longer one takes more reads).
HEADER_READ_BYTES = 4 << 10


class ShardSnapshots:
    """See the module docstring."""

    def __init__(self, files: SnapshotFiles | None) -> None:
        self.files = files
        #: group id -> name of the file its latest snapshot refers to.
        self._live: dict[int, str] = {}
        #: Files of replaced snapshots: replaced since the last sync, and before it (removed
        #: at the next sync, which then surely covers the write that replaced them).
        self._replaced: list[str] = []
        self._superseded: list[str] = []
        #: Bytes of snapshots installed (a metric: data moved to this node).
        self.installed_bytes = 0

    # -- building ----------------------------------------------------------------------

    def build(self, view: ConsistentView, scope: KeyScope) -> bytes:
        """The Raft snapshot data of ``scope``'s shard from ``view`` (closed however this
        ends): a file reference, or the snapshot itself without a directory."""
        if self.files is None:
            return build_and_close(view, scope.group_id, scope)
        try:
            ref = self.files.write(
                f"g{scope.group_id}", iter_snapshot_data(view, scope.group_id, scope)
            )
        finally:
            view.close()
        return ref.encode()

    @staticmethod
    def size_of(data: bytes) -> int:
        """The snapshot's size in bytes, whether ``data`` is a reference or the snapshot."""
        return SnapshotRef.decode(data).size if is_ref(data) else len(data)

    def recorded(self, group_id: int, data: bytes) -> None:
        """``data`` is now ``group_id``'s latest snapshot (written to the engine, not yet
        synced): the file of the one it replaces goes at the next `synced`."""
        if not is_ref(data):
            return
        name = SnapshotRef.decode(data).name
        old = self._live.get(group_id)
        self._live[group_id] = name
        if old is not None and old != name:
            self._replaced.append(old)

    def synced(self) -> None:
        """A cycle's sync finished. Files replaced before the previous sync are removed:
        a replacement written while a sync ran is only durable after the next one (until
        then a crash would bring back the log that refers to the old file)."""
        if self._superseded and self.files is not None:
            for name in self._superseded:
                (self.files.directory / name).unlink(missing_ok=True)
        self._superseded, self._replaced = self._replaced, []

    def discard(self, data: bytes) -> None:
        """A built snapshot that will not be recorded (its group is gone, or a newer one
        was installed): its file goes now (nothing refers to it)."""
        if is_ref(data) and self.files is not None:
            self.files.remove(SnapshotRef.decode(data))

    # -- installing --------------------------------------------------------------------

    def scope_of(self, data: bytes) -> KeyScope:
        """The group and slot ranges a shard snapshot's header names (inline data or a
        file: only its first piece is read). Raises `KVSnapshotError` (corrupt header) or
        `SnapshotFileError` (missing file)."""
        if not is_ref(data):
            return read_snapshot_scope((data,))
        pieces = self._require_files().read(SnapshotRef.decode(data), HEADER_READ_BYTES)
        with contextlib.closing(pieces):
            return read_snapshot_scope(pieces)

    def stage_install(
        self,
        snapshot: Snapshot,
        scope: KeyScope,
        batch: WriteBatch,
        write_now: Callable[[WriteBatch], None],
        may_take: KeyScope | None = None,
    ) -> None:
        """Install ``snapshot`` (a Ready's) as ``scope``'s KV state (and that of the slots
        of ``may_take`` it holds: a merge not applied here yet). Inline data is staged
        into ``batch``. A file is installed in pages written through ``write_now`` and
        finished in ``batch``, which the caller must write next (it holds the Raft
        snapshot's metadata, staged before). Raises `KVSnapshotError` (corrupt or
        mismatched data) or `SnapshotFileError` (missing file): storage failures."""
        index = snapshot.metadata.index
        if not is_ref(snapshot.data):
            stage_install(
                snapshot.data,
                batch,
                group_id=scope.group_id,
                applied_index=index,
                scope=scope,
                may_take=may_take,
            )
            self.installed_bytes += len(snapshot.data)
            return
        files = self._require_files()
        ref = SnapshotRef.decode(snapshot.data)
        install_in_pages(
            functools.partial(files.read, ref, INSTALL_READ_BYTES),
            write_now,
            batch,
            group_id=scope.group_id,
            applied_index=index,
            scope=scope,
            marker=functools.partial(_encode_marker, snapshot),
            may_take=may_take,
        )
        self.installed_bytes += ref.size

    def finish_interrupted_installs(self, engine: Engine) -> list[int]:
        """Complete every paged install the process died in (the group's ranges hold part
        of a snapshot): install its file again and record the snapshot in the group's Raft
        log, as the interrupted Ready would have. Call before opening any group. Returns
        the groups finished. Raises `SnapshotFileError` if a marker's file is gone."""
        finished = []
        for group_id, marker in pending_installs(engine):
            snapshot, scope = _decode_marker(marker)
            files = self._require_files()
            ref = SnapshotRef.decode(snapshot.data)
            if not files.exists(ref):
                raise SnapshotFileError(
                    f"group {group_id}: the snapshot file {ref.name} of an interrupted install "
                    "is gone; restore this node from a backup or remove its data dir and "
                    "let it receive a new snapshot"
                )
            storage = RaftLogStorage(engine, group_id)
            batch = WriteBatch()
            install_in_pages(
                functools.partial(files.read, ref, INSTALL_READ_BYTES),
                engine.write,
                batch,
                group_id=group_id,
                applied_index=snapshot.metadata.index,
                scope=scope,
                marker=marker,
            )
            if snapshot.metadata.index > storage.snapshot_index:
                storage.stage_apply_snapshot(snapshot, batch)
                hs = storage.hard_state
                meta = snapshot.metadata
                if hs.commit < meta.index or hs.term < meta.term:
                    term = max(hs.term, meta.term)
                    storage.stage_hard_state(
                        HardState(
                            term=term,
                            vote=hs.vote if term == hs.term else 0,
                            commit=max(hs.commit, meta.index),
                        ),
                        batch,
                    )
            engine.write(batch)
            storage.on_written()
            engine.sync()
            log.warning(
                "snapshot_install_finished_after_restart",
                group=group_id,
                index=snapshot.metadata.index,
            )
            finished.append(group_id)
        return finished

    # -- files no snapshot refers to -----------------------------------------------------

    def track(self, group_id: int, data: bytes) -> None:
        """At open: ``data`` is ``group_id``'s latest snapshot as stored."""
        if is_ref(data):
            self._live[group_id] = SnapshotRef.decode(data).name

    def dropped(self, group_id: int) -> None:
        """``group_id``'s replica was destroyed here: its file goes at the next `synced`."""
        name = self._live.pop(group_id, None)
        if name is not None:
            self._replaced.append(name)

    def remove_unreferenced(self, min_age_s: float = UNREFERENCED_FILE_MIN_AGE_S) -> int:
        """Remove files no group's latest snapshot refers to and at least ``min_age_s`` old
        (0 at startup, before the transport runs). Returns how many."""
        if self.files is None:
            return 0
        removed = self.files.remove_unreferenced(set(self._live.values()), min_age_s)
        if removed:
            log.info("snapshot_files_removed", count=len(removed))
        return len(removed)

    def _require_files(self) -> SnapshotFiles:
        if self.files is None:
            raise SnapshotFileError(
                "a snapshot file reference reached a node without a snapshot directory"
            )
        return self.files


def _encode_marker(snapshot: Snapshot, scope: KeyScope) -> bytes:
    meta = snapshot.metadata
    return json.dumps(
        {
            "ref": snapshot.data.hex(),
            "index": meta.index,
            "term": meta.term,
            "voters": list(meta.conf_state.voters),
            "learners": list(meta.conf_state.learners),
            "slot_ranges": [list(r) for r in scope.slot_ranges],
            "group": scope.group_id,
        }
    ).encode()


def _decode_marker(marker: bytes) -> tuple[Snapshot, KeyScope]:
    try:
        m = json.loads(marker)
        meta = SnapshotMetadata(
            int(m["index"]), int(m["term"]), ConfState.of(m["voters"], m["learners"])
        )
        scope = KeyScope(int(m["group"]), tuple((int(a), int(b)) for a, b in m["slot_ranges"]))
        return Snapshot(meta, bytes.fromhex(m["ref"])), scope
    except (ValueError, KeyError, TypeError) as exc:
        raise SnapshotFileError(f"unreadable snapshot install marker: {exc}") from exc


__all__ = ["UNREFERENCED_FILE_MIN_AGE_S", "ShardSnapshots"]
