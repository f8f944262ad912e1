"""A backup taken under load restores into a new cluster holding every acknowledged write."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster

from tests.integration.test_cluster import Cluster


def shardkv(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shardkv", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("shards", [1, 4])
def test_backup_under_load_restores_every_acknowledged_write(tmp_path: Path, shards: int) -> None:
    """One snapshot per shard from its leader; the restored cluster keeps the shard map
    (whatever its own --shards says) and every write acknowledged before the backup."""
    source = Cluster(tmp_path / "source", 3, shards=shards)
    restored: Cluster | None = None
    try:
        source.start()
        leader = source.leader()
        rc = RedisCluster(host="127.0.0.1", port=source.nodes[leader].port)
        for i in range(300):
            rc.set(f"before-{i}", i)
        acked_before = {f"before-{i}" for i in range(300)}
        stop = threading.Event()

        def load() -> None:  # writes racing with the backup
            c = RedisCluster(host="127.0.0.1", port=source.nodes[leader].port)
            i = 0
            while not stop.is_set():
                with contextlib.suppress(redis.RedisError):
                    c.set(f"during-{i}", i)
                i += 1

        writer = threading.Thread(target=load, daemon=True)
        writer.start()
        admins = ",".join(f"127.0.0.1:{n.admin_port}" for n in source.nodes.values())
        made = shardkv("backup", "create", str(tmp_path / "bk"), "--admin", admins)
        stop.set()
        writer.join(10)
        assert made.returncode == 0, made.stderr
        manifest = json.loads((tmp_path / "bk" / "manifest.json").read_text())
        assert len(manifest["groups"]) == shards
        assert sum(g["keys"] for g in manifest["groups"]) >= 300

        # A data dir in use is refused with a clear message.
        assert (
            "is a server using it?"
            in shardkv(
                "backup",
                "restore",
                str(tmp_path / "bk"),
                "--data-dir",
                str(source.nodes[leader].data_dir),
            ).stderr
        )

        restored = Cluster(tmp_path / "restored")
        for node in restored.nodes.values():
            done = shardkv(
                "backup", "restore", str(tmp_path / "bk"), "--data-dir", str(node.data_dir)
            )
            assert done.returncode == 0, done.stderr
        restored.start()
        new = RedisCluster(host="127.0.0.1", port=restored.nodes[restored.leader()].port)
        probe = redis.Redis(port=restored.nodes[1].port)
        assert len(probe.execute_command("CLUSTER", "SHARDS")) == shards
        missing = [k for k in sorted(acked_before) if new.get(k) is None]
        assert missing == []
        assert new.set("after-restore", "ok") and new.get("after-restore") == b"ok"
    finally:
        source.stop()
        if restored is not None:
            restored.stop()


def test_a_damaged_backup_is_refused(tmp_path: Path) -> None:
    bk = tmp_path / "bk"
    bk.mkdir()
    (bk / "group-1.snap").write_bytes(b"not a snapshot")
    (bk / "manifest.json").write_text(
        json.dumps(
            {
                "format": "shardkv-backup/2",
                "groups": [
                    {
                        "group_id": 1,
                        "slot_ranges": [[0, 16383]],
                        "applied_index": 1,
                        "file": "group-1.snap",
                        "bytes": 14,
                        "sha256": "0" * 64,
                    }
                ],
            }
        )
    )
    out = shardkv("backup", "restore", str(bk), "--data-dir", str(tmp_path / "new"))
    assert out.returncode != 0
    assert "does not match its checksum" in out.stderr
