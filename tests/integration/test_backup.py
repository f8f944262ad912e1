"""A backup taken under load restores into a new cluster holding every acknowledged write."""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster

from shardkv.core.cluster.slots import key_slot
from shardkv.core.kv import KeyScope
from shardkv.core.kv.machine import KVStateMachine
from shardkv.storage import RocksDBEngine
from shardkv.storage.kv_snapshot import build_snapshot_data, stage_applied_index
from tests.integration.harness import free_port
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


def test_a_restore_that_fails_halfway_leaves_a_dir_no_server_starts_on(tmp_path: Path) -> None:
    """Shards are restored a page at a time, not in one batch: a restore stopped after
    some shards (here: the second file is not a snapshot, its checksum matches) leaves a
    directory the server refuses with an explanation, instead of serving half the data."""
    engine = RocksDBEngine(str(tmp_path / "source-db"))
    machine = KVStateMachine(engine, scope=KeyScope(1, ((0, 8191),)))
    machine.begin_batch()
    for i in range(2000):
        key = b"k%d" % i
        if key_slot(key) <= 8191:
            machine.execute([b"SET", key, b"v" * 100], 0)
    batch = machine.finish_batch()
    stage_applied_index(1, 10, batch)
    engine.write(batch)
    good = build_snapshot_data(engine, 1, KeyScope(1, ((0, 8191),)))
    engine.close()
    bad = b"SKVS" + b"\0" * 40
    bk = tmp_path / "bk"
    bk.mkdir()
    groups = []
    for group_id, slots, data in ((1, [[0, 8191]], good), (2, [[8192, 16383]], bad)):
        (bk / f"group-{group_id}.snap").write_bytes(data)
        groups.append(
            {
                "group_id": group_id,
                "slot_ranges": slots,
                "applied_index": 10,
                "file": f"group-{group_id}.snap",
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        )
    (bk / "manifest.json").write_text(json.dumps({"format": "shardkv-backup/2", "groups": groups}))
    data_dir = tmp_path / "new"
    out = shardkv("backup", "restore", str(bk), "--data-dir", str(data_dir))
    assert out.returncode != 0
    assert "group-2.snap cannot be installed" in out.stderr
    started = shardkv(
        "server", "--data-dir", str(data_dir), "--port", str(free_port()),
        "--admin-port", str(free_port()), "--peer-port", str(free_port()),
        "--initial-cluster", "1=127.0.0.1:1",
    )  # fmt: skip
    assert started.returncode != 0
    assert "unfinished `shardkv backup restore`" in started.stderr
