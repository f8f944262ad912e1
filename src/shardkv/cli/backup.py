"""``shardkv backup create`` and ``shardkv backup restore``.

A backup is a directory with one snapshot file per shard (Raft group) and
``manifest.json``::

    {"format": "shardkv-backup/2", "created_at": "...", "source": "127.0.0.1:7381",
     "shard_map": "<the cluster map, ShardMap.encode()>",
     "groups": [{"group_id": 1, "slot_ranges": [[0, 1023]], "applied_index": 5123,
                 "file": "group-1.snap", "bytes": 10485, "sha256": "...", "source": ...}]}

``create`` reads every node's ``/v1/status`` for the shards and their leaders, then asks
each shard's leader for a snapshot taken after a ReadIndex round, so every shard's file
holds every write acknowledged before the backup began. (Shards are snapshotted one after
another: the backup is consistent per shard, as every per-key guarantee is; it is not one
cluster-wide instant.) ``restore`` checks the checksums, then writes every shard's data
and the cluster map into a new, empty data directory; run it once per member of the new
cluster, then start the members with ``--initial-cluster``: each shard starts its log at
the backup's applied index, and the cluster keeps the backup's map.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from shardkv.cli.admin_http import open_admin
from shardkv.cli.local_cluster import fetch_status
from shardkv.core.cluster.shardmap import ShardMap
from shardkv.core.engine import DATA, META, RAFT_STATE, WriteBatch
from shardkv.core.kv.scope import KeyScope
from shardkv.node.runtime import SHARD_MAP_KEY
from shardkv.storage import RocksDBEngine, StorageError
from shardkv.storage.kv_snapshot import (
    RESTORE_IN_PROGRESS_KEY,
    KVSnapshotError,
    install_in_pages,
    verify_snapshot_stream,
)

FORMAT: str = "shardkv-backup/2"

#: Bytes per read of a snapshot, downloaded or on disk.
READ_BYTES = 1 << 20


class BackupError(Exception):
    """The backup could not be made or restored; the message says why and what to do."""


def _leaders(admins: list[str]) -> tuple[dict[int, tuple[str, list[list[int]]]], str | None]:
    """shard id -> (admin address of its leader, slot ranges), and the cluster map, from
    every reachable node's status. A standalone node counts as the leader of shard 1."""
    leaders: dict[int, tuple[str, list[list[int]]]] = {}
    shard_map = None
    for admin in admins:
        st = fetch_status(admin)
        if st is None:
            continue
        if st.get("role") == "standalone":
            leaders[1] = (admin, [[0, 16383]])
            continue
        shard_map = shard_map or st.get("shard_map")
        for shard in st.get("shards") or []:  # type: ignore[attr-defined]
            if shard["role"] == "leader":
                leaders[int(shard["shard"])] = (admin, shard["slots"])
    return leaders, shard_map  # type: ignore[return-value]


def create_backup(directory: str, admins: list[str]) -> dict[str, object]:
    """Write a backup of the cluster reachable through ``admins`` into ``directory``."""
    out = Path(directory)
    if out.exists() and any(out.iterdir()):
        raise BackupError(f"{out} is not empty: choose a new directory for the backup")
    leaders, shard_map = _leaders(admins)
    if not leaders:
        raise BackupError(
            f"no leader among {', '.join(admins)}: is the cluster up and does it have a leader?"
        )
    if shard_map is not None:
        missing = sorted(set(ShardMap.decode(shard_map.encode()).shards) - set(leaders))
        if missing:
            raise BackupError(
                f"shards {missing} have no leader among {', '.join(admins)}: list every "
                "node's admin address with --admin, or retry once they elected one"
            )
    out.mkdir(parents=True, exist_ok=True)
    groups = []
    for group_id, (source, slot_ranges) in sorted(leaders.items()):
        name = f"group-{group_id}.snap"
        size, sha256 = _download(f"http://{source}/v1/backup?group={group_id}", out / name)
        try:
            info = verify_snapshot_stream(_read_pieces(out / name))
        except KVSnapshotError as exc:
            raise BackupError(f"the snapshot from {source} is corrupt: {exc}") from exc
        groups.append(
            {
                "group_id": group_id,
                "slot_ranges": slot_ranges,
                "applied_index": info.applied_index,
                "file": name,
                "bytes": size,
                "sha256": sha256,
                "keys": info.data_records,
                "source": source,
            }
        )
    manifest: dict[str, object] = {
        "format": FORMAT,
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "source": ",".join(sorted({g["source"] for g in groups})),  # type: ignore[misc]
        "shard_map": shard_map,
        "groups": groups,
    }
    tmp = out / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, out / "manifest.json")  # the manifest appears only once complete
    return manifest


def restore_backup(directory: str, data_dir: str) -> dict[str, object]:
    """Seed ``data_dir`` (new and empty) with the backup in ``directory``."""
    src = Path(directory)
    try:
        manifest = json.loads((src / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise BackupError(f"{src} holds no readable manifest.json: {exc}") from exc
    if manifest.get("format") != FORMAT:
        raise BackupError(f"unknown backup format {manifest.get('format')!r}; expected {FORMAT}")
    for group in manifest["groups"]:
        path = src / group["file"]
        size, sha256 = _file_digest(path)
        if size != group["bytes"] or sha256 != group["sha256"]:
            raise BackupError(f"{group['file']} does not match its checksum: the backup is damaged")
    db_path = os.path.join(data_dir, "db")
    try:
        engine = RocksDBEngine(db_path)
    except StorageError as exc:
        raise BackupError(
            f"cannot open {data_dir} ({exc}); is a server using it? Restore into a new directory"
        ) from exc
    try:
        if engine.scan(DATA, b"", None, 1) or engine.scan(RAFT_STATE, b"", None, 1):
            raise BackupError(f"{data_dir} already holds data: restore into a new directory")
        # Shard by shard, a page at a time; a server refuses the directory until the
        # marker goes, in the batch that writes the map, after the last shard.
        batch = WriteBatch()
        batch.put(META, RESTORE_IN_PROGRESS_KEY, b"1")
        engine.write(batch)
        engine.sync()
        for group in manifest["groups"]:
            scope = KeyScope(
                group["group_id"], tuple((int(a), int(b)) for a, b in group["slot_ranges"])
            )
            batch = WriteBatch()
            try:
                install_in_pages(
                    functools.partial(_read_pieces, src / group["file"]),
                    engine.write,
                    batch,
                    group_id=group["group_id"],
                    applied_index=group["applied_index"],
                    scope=scope,
                    marker=b"restore",
                )
            except KVSnapshotError as exc:
                raise BackupError(f"{group['file']} cannot be installed: {exc}") from exc
            engine.write(batch)
        batch = WriteBatch()
        if manifest.get("shard_map"):
            batch.put(META, SHARD_MAP_KEY, str(manifest["shard_map"]).encode())
        batch.delete(META, RESTORE_IN_PROGRESS_KEY)
        engine.write(batch)
        engine.sync()
    finally:
        engine.close()
    return manifest


def _download(url: str, path: Path) -> tuple[int, str]:
    """POST ``url`` and stream the body into ``path``; returns its size and SHA-256."""
    digest = hashlib.sha256()
    size = 0
    try:
        with open_admin("POST", url, None, {}, 300) as resp, open(path, "wb") as f:
            while piece := resp.read(READ_BYTES):
                f.write(piece)
                digest.update(piece)
                size += len(piece)
            f.flush()
            os.fsync(f.fileno())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise BackupError(f"{url} did not return a snapshot: {exc}") from exc
    return size, digest.hexdigest()


def _read_pieces(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while piece := f.read(READ_BYTES):
            yield piece


def _file_digest(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    try:
        for piece in _read_pieces(path):
            digest.update(piece)
            size += len(piece)
    except OSError as exc:
        raise BackupError(f"cannot read {path}: {exc}; the backup is incomplete") from exc
    return size, digest.hexdigest()
