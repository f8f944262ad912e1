"""``shardkv backup create`` and ``shardkv backup restore``.

A backup is a directory with one snapshot file per Raft group and ``manifest.json``::

    {"format": "shardkv-backup/1", "created_at": "...", "source": "127.0.0.1:7381",
     "groups": [{"group_id": 1, "applied_index": 5123, "file": "group-1.snap",
                 "bytes": 10485, "sha256": "..."}]}

``create`` asks the leader (found through the admin ports' ``/v1/status``) for a snapshot
taken after a ReadIndex round, so it holds every write acknowledged before the backup
began. ``restore`` checks the checksums, then writes the data into a new, empty data
directory; run it once per member of the new cluster, then start the members with
``--initial-cluster``: the group starts its log at the backup's applied index.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import urllib.error
import urllib.request
from pathlib import Path

from shardkv.cli.local_cluster import find_leader_admin
from shardkv.core.engine import DATA, RAFT_STATE, WriteBatch
from shardkv.storage import RocksDBEngine, StorageError
from shardkv.storage.kv_snapshot import KVSnapshotError, stage_install, verify_snapshot_data

FORMAT: str = "shardkv-backup/1"


class BackupError(Exception):
    """The backup could not be made or restored; the message says why and what to do."""


def create_backup(directory: str, admins: list[str]) -> dict[str, object]:
    """Write a backup of the cluster reachable through ``admins`` into ``directory``."""
    out = Path(directory)
    if out.exists() and any(out.iterdir()):
        raise BackupError(f"{out} is not empty: choose a new directory for the backup")
    source = find_leader_admin(admins, roles=("leader", "standalone"))
    if source is None:
        raise BackupError(
            f"no leader among {', '.join(admins)}: is the cluster up and does it have a leader?"
        )
    request = urllib.request.Request(f"http://{source}/v1/backup", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=300) as resp:
            data = resp.read()
            group_id = int(resp.headers["X-ShardKV-Group"])
    except (urllib.error.URLError, OSError, KeyError, ValueError) as exc:
        raise BackupError(f"the leader at {source} did not return a snapshot: {exc}") from exc
    try:
        info = verify_snapshot_data(data)
    except KVSnapshotError as exc:
        raise BackupError(f"the snapshot from {source} is corrupt: {exc}") from exc
    out.mkdir(parents=True, exist_ok=True)
    name = f"group-{group_id}.snap"
    (out / name).write_bytes(data)
    manifest: dict[str, object] = {
        "format": FORMAT,
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "source": source,
        "groups": [
            {
                "group_id": group_id,
                "applied_index": info.applied_index,
                "file": name,
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "keys": info.data_records,
            }
        ],
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
    snapshots = []
    for group in manifest["groups"]:
        data = (src / group["file"]).read_bytes()
        if len(data) != group["bytes"] or hashlib.sha256(data).hexdigest() != group["sha256"]:
            raise BackupError(f"{group['file']} does not match its checksum: the backup is damaged")
        snapshots.append((group, data))
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
        batch = WriteBatch()
        for group, data in snapshots:
            try:
                stage_install(
                    data, batch, group_id=group["group_id"], applied_index=group["applied_index"]
                )
            except KVSnapshotError as exc:
                raise BackupError(f"{group['file']} cannot be installed: {exc}") from exc
        engine.write(batch)
        engine.sync()
    finally:
        engine.close()
    return manifest
