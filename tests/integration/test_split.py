"""Shards split in two without copying data: by the operator (``shardkv shard split``) or
by the scheduler once a shard grows past ``shard_split_bytes``. Every key (and its TTL)
stays readable through a cluster client that follows -MOVED, the counts add up, and the
new layout survives a restart of every node. Real processes, real clients."""

from __future__ import annotations

import time
from pathlib import Path

from redis.cluster import RedisCluster
from redis.exceptions import ClusterError, TryAgainError

from shardkv.core.cluster.slots import key_slot
from tests.integration.test_cluster import Cluster
from tests.integration.test_rebalance import (
    KEYS,
    assert_every_key_reads_back,
    eventually,
    metric,
    shard_map,
    shardkv_cli,
    status,
    write_keys,
)

#: Keys written with a TTL, to check the expiry index moves with its slots.
TTL_KEYS = 200


def keys_by_shard(cluster: Cluster) -> dict[int, int]:
    """Shard id -> its key count, as each shard's leader reports it."""
    counts: dict[int, int] = {}
    for node in cluster.nodes.values():
        for s in status(node)["shards"]:  # type: ignore[attr-defined]
            if s["role"] == "leader":
                counts[int(s["shard"])] = int(s["keys"])
    return counts


def test_an_operator_split_moves_no_data_and_loses_no_key(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path / "c", 3, shards=2)
    for node in cluster.nodes.values():
        # (Else the scheduler would merge the small, cold new shard back: above the two
        # shards the cluster began with, only the floor keeps it.)
        node.env["SHARDKV_SHARD_MIN_COUNT"] = "3"
    try:
        cluster.start()
        port = cluster.nodes[1].port
        write_keys(port)
        client = RedisCluster(host="127.0.0.1", port=port, socket_timeout=10)
        for i in range(TTL_KEYS):
            client.set(f"ttl:{i}", "v", ex=3600)
        before = shard_map(cluster.nodes[1]).shards[1]
        admin = ",".join(f"127.0.0.1:{n.admin_port}" for n in cluster.nodes.values())

        started = time.monotonic()
        out = shardkv_cli("shard", "split", "--id", "1", "--admin", admin)
        assert out.returncode == 0, out.stderr
        assert "new shard 3" in out.stdout

        def recorded() -> bool:
            m = shard_map(cluster.nodes[3])
            return 3 in m.shards and not m.pending_splits() and len(keys_by_shard(cluster)) == 3

        took_s = eventually(
            recorded, lambda: f"split not recorded: {shard_map(cluster.nodes[3])}", 60
        )
        print(f"split recorded {took_s:.1f} s after the order ({time.monotonic() - started:.1f} s)")
        m = shard_map(cluster.nodes[1])
        first, last = before.slot_ranges[0]
        middle = first + (last - first + 1) // 2
        assert m.shards[1].slot_ranges == ((first, middle - 1),)
        assert m.shards[3].slot_ranges == ((middle, last),)
        # (At the split's epoch or later: the scheduler may reorder the new shard's
        # replicas right away, to spread preferred leaders.)
        assert min(m.shards[3].epoch, m.shards[1].epoch) >= before.epoch + 2
        assert set(m.shards[3].replicas) == set(before.replicas)
        assert all(metric(n, "shardkv_shard_splits_applied") == 1 for n in cluster.nodes.values())
        assert (
            sum(metric(n, "shardkv_placement_splits_recorded") for n in cluster.nodes.values()) >= 1
        )

        # Counts follow the slots: shard 3 holds exactly the keys of its slots.
        moved = sum(
            1 for i in range(KEYS) if middle <= key_slot(f"key:{i}".encode()) <= last
        ) + sum(1 for i in range(TTL_KEYS) if middle <= key_slot(f"ttl:{i}".encode()) <= last)
        counts = keys_by_shard(cluster)
        assert counts[3] == moved
        assert sum(counts.values()) == KEYS + TTL_KEYS

        assert_every_key_reads_back(port)
        fresh = RedisCluster(host="127.0.0.1", port=port, socket_timeout=10)
        ttls = [fresh.ttl(f"ttl:{i}") for i in range(TTL_KEYS)]
        assert all(0 < t <= 3600 for t in ttls), ttls
        assert fresh.set("after-split", "1") and fresh.get("after-split") == b"1"

        listing = shardkv_cli("shard", "list", "--admin", admin)
        assert listing.returncode == 0, listing.stderr
        assert "ShardKV shards" in listing.stdout and "\n│ 3 " in listing.stdout

        # The split is on disk: every node restarted keeps three shards and every key.
        cluster.restart_all()
        eventually(
            lambda: len(keys_by_shard(cluster)) == 3,
            lambda: f"shards after restart: {keys_by_shard(cluster)}",
            60,
        )
        assert sum(keys_by_shard(cluster).values()) == KEYS + TTL_KEYS + 1
        assert_every_key_reads_back(port)
        client.close()
        fresh.close()
    finally:
        cluster.stop()


def test_a_shard_under_write_load_splits_and_merges_back_once_the_data_is_deleted(
    tmp_path: Path,
) -> None:
    """Past 1 MiB a shard splits; once most keys are deleted, the small, cold shards
    merge back into one (the cluster was created with one: merges stop there), and what
    is left reads back, with its TTL, through a cluster client."""
    cluster = Cluster(tmp_path / "c", 3, shards=1)
    for node in cluster.nodes.values():
        node.env["SHARDKV_SHARD_SPLIT_BYTES"] = str(1 << 20)
    try:
        cluster.start()
        client = RedisCluster(host="127.0.0.1", port=cluster.nodes[1].port, socket_timeout=10)
        value = "x" * 1000
        written = 0
        deadline = time.monotonic() + 90
        # ~3 MB in all: a 1 MiB limit needs at least two splits.
        while written < 3000 and time.monotonic() < deadline:
            pipe = client.pipeline(transaction=False)
            for i in range(written, written + 100):
                pipe.set(f"big:{i}", value)
            pipe.execute()
            written += 100
        assert written == 3000

        def split_enough() -> bool:
            m = shard_map(cluster.nodes[1])
            return len(m.shards) >= 3 and not m.pending_splits()

        took_s = eventually(
            split_enough, lambda: f"shards: {shard_map(cluster.nodes[1]).shards}", 90
        )
        print(f"{len(shard_map(cluster.nodes[1]).shards)} shards {took_s:.1f} s after the load")
        pipe = client.pipeline(transaction=False)
        for i in range(3000):
            pipe.get(f"big:{i}")
        assert all(v == value.encode() for v in pipe.execute())

        # Delete all but every 50th key (a TTL on those): the shards merge back into one.
        split_into = len(shard_map(cluster.nodes[1]).shards)
        # Shards whose keys are gone merge while the rest of the pipeline still runs; a slot
        # being handed over answers -TRYAGAIN for longer than redis-py's 16 quick retries
        # last, so the (idempotent) pipeline is sent again, as an application would.
        for attempt in range(5):
            pipe = client.pipeline(transaction=False)
            for i in range(3000):
                if i % 50:
                    pipe.delete(f"big:{i}")
                else:
                    pipe.expire(f"big:{i}", 3600)
            try:
                pipe.execute()
                break
            except (ClusterError, TryAgainError):
                if attempt == 4:
                    raise
                time.sleep(1)
        started = time.monotonic()

        def merged() -> bool:
            m = shard_map(cluster.nodes[1])
            return len(m.shards) == 1 and not any(s.frozen for s in m.shards.values())

        took_s = eventually(merged, lambda: f"shards: {shard_map(cluster.nodes[1]).shards}", 120)
        print(f"{split_into} shards merged into 1 {took_s:.1f} s after the deletes")
        assert time.monotonic() - started < 120
        (survivor,) = shard_map(cluster.nodes[1]).shards.values()
        assert survivor.slot_ranges == ((0, 16383),)
        assert sum(metric(n, "shardkv_shard_merges_applied") for n in cluster.nodes.values()) == (
            3 * (split_into - 1)
        )
        fresh = RedisCluster(host="127.0.0.1", port=cluster.nodes[2].port, socket_timeout=10)
        pipe = fresh.pipeline(transaction=False)
        for i in range(0, 3000, 50):
            pipe.get(f"big:{i}")
            pipe.ttl(f"big:{i}")
        replies = pipe.execute()
        assert replies[0::2] == [value.encode()] * 60
        assert all(0 < t <= 3600 for t in replies[1::2]), replies[1::2]
        assert fresh.dbsize() == 60
        assert fresh.set("after-merge", "1") and fresh.get("after-merge") == b"1"
        # Retired replicas are destroyed once the map records the merge.
        eventually(
            lambda: all(len(status(n)["shards"]) == 1 for n in cluster.nodes.values()),  # type: ignore[arg-type]
            lambda: f"replicas left: {[status(n)['shards'] for n in cluster.nodes.values()]}",
            60,
        )
        client.close()
        fresh.close()
    finally:
        cluster.stop()
