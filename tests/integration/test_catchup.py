"""Acceptance: a follower that was down for 100,000 writes catches up by snapshot, and the
Raft log on disk stays bounded under a steady write load.

How the test forces the snapshot path. A pipelined client's commands reach the log as one
entry per connection turn (up to ``max_commands_per_read`` commands), so 100,000 SETs in
pipelines of 500 make only a few hundred entries with the default settings: far below the snapshot
interval (10,000 entries) plus the compaction margin (1,000), and the follower would catch
up by plain log replication. The test therefore sizes entries so the load makes about
``TARGET_ENTRIES`` of them (``SHARDKV_MAX_COMMANDS_PER_READ``) and lowers the snapshot
interval (``SHARDKV_SNAPSHOT_INTERVAL_ENTRIES``), so that several snapshots and compactions
happen during the load and the leader's first index ends far past the stopped follower's
last index: only a snapshot can then bring it back.

``SHARDKV_TEST_CATCHUP_WRITES`` overrides the write count (default 100,000). The test prints
its timings (``pytest -s``) and records them as junit properties.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from shardkv.core.engine import RAFT_LOG
from shardkv.core.kv import KVStateMachine
from shardkv.node.runtime import DEFAULT_GROUP_ID, ClusterSettings
from shardkv.storage.raft_log import log_key
from shardkv.storage.rocksdb import RocksDBEngine
from tests.integration.harness import ServerProcess
from tests.integration.test_cluster import Cluster

WRITES = int(os.environ.get("SHARDKV_TEST_CATCHUP_WRITES", "100000"))
#: Keys written before the follower stops (it must hold them already, and keep them).
EARLIER_KEYS = 200
PIPELINE_COMMANDS = 500
#: Log entries the load should make (sets the commands per entry): enough for four
#: snapshots and three compactions at the interval below.
TARGET_ENTRIES = 4_000
COMMANDS_PER_ENTRY = max(1, WRITES // TARGET_ENTRIES)
SNAPSHOT_INTERVAL_ENTRIES = 1_000
#: Entries kept behind each snapshot: the runtime's default (not a server setting).
COMPACTION_MARGIN_ENTRIES = ClusterSettings(
    node_id=1, initial_members={}, client_address=""
).compaction_margin_entries
#: Entries past a due snapshot before it is taken: one client connection keeps one entry
#: in flight, plus the node's own entries (leader announce, expiry sweeps).
SLACK_ENTRIES = 250
#: Longest log (last_index - first_index) any member may hold at any time.
LOG_BOUND_ENTRIES = SNAPSHOT_INTERVAL_ENTRIES + COMPACTION_MARGIN_ENTRIES + SLACK_ENTRIES
SAMPLE_INTERVAL_S = 0.5
CATCHUP_TIMEOUT_S = 60.0
KEYS_READ_BACK = 2_000


def status(node: ServerProcess) -> dict[str, Any]:
    url = f"http://127.0.0.1:{node.admin_port}/v1/status"
    with urllib.request.urlopen(url, timeout=5) as resp:
        body: dict[str, Any] = json.load(resp)
        return body


def counter(node: ServerProcess, name: str) -> float:
    """A node-wide ``shardkv_raft_*`` counter from the node's /metrics."""
    url = f"http://127.0.0.1:{node.admin_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    pattern = rf"^{name}(?:_total)? (\S+)$"
    match = re.search(pattern, text, re.MULTILINE)
    assert match is not None, f"{name} not in /metrics"
    return float(match.group(1))


class NodeExitedError(AssertionError):
    """A server process exited while the test waited on it (the message has its log)."""


def wait_applied(node: ServerProcess, target: int, timeout_s: float) -> float:
    """Wait until ``node`` applied ``target``; return the seconds it took. Raises
    `NodeExitedError` if the process exits meanwhile."""

    def applied() -> bool:
        assert node.proc is not None
        if node.proc.poll() is not None:
            raise NodeExitedError(f"exited with {node.proc.returncode}:\n{node.log()}")
        with contextlib.suppress(OSError):  # not serving its admin port yet
            return bool(status(node)["applied"] >= target)
        return False

    return wait_until(f"node applied index {target}", applied, timeout_s)


def assert_stays_up(node: ServerProcess, for_s: float) -> None:
    """The process is still running ``for_s`` from now (it answers its admin port)."""
    deadline = time.monotonic() + for_s
    while True:
        assert node.proc is not None
        if node.proc.poll() is not None:
            raise NodeExitedError(f"exited with {node.proc.returncode}:\n{node.log()}")
        if time.monotonic() > deadline:
            status(node)
            return
        time.sleep(0.1)


def restart(cluster: Cluster, node_id: int) -> ServerProcess:
    """Start a stopped member again on its ports and data, without waiting for it."""
    old = cluster.nodes[node_id]
    node = ServerProcess(old.data_dir, *old.extra, port=old.port)
    node.admin_port = old.admin_port
    cluster.nodes[node_id] = node
    node.start(wait=False)
    return node


def wait_until(what: str, check: Callable[[], bool], timeout_s: float) -> float:
    """Poll ``check`` until true; return the seconds it took."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"{what}: not within {timeout_s}s")
        time.sleep(0.1)
    return time.monotonic() - started


def value_of(prefix: str, i: int) -> bytes:
    return f"{prefix}-value-{i}".encode()


def key_of(prefix: str, i: int) -> bytes:
    return f"{prefix}:{i:07d}".encode()


def write_keys(client: redis.Redis, prefix: str, count: int) -> None:
    for start in range(0, count, PIPELINE_COMMANDS):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(count, start + PIPELINE_COMMANDS)):
            pipe.set(key_of(prefix, i), value_of(prefix, i))
        assert all(r is True for r in pipe.execute())


def dir_bytes(path: Path) -> int:
    total = 0
    for entry in os.scandir(path):
        with contextlib.suppress(FileNotFoundError):  # RocksDB removed it while we walked
            total += entry.stat().st_size
    return total


@dataclass(frozen=True, slots=True)
class OfflineView:
    log_indexes: list[int]
    log_bytes: int
    key_count: int
    #: (key, value found) for each sampled key whose value is not the one written.
    wrong_values: list[tuple[bytes, object]]


def read_offline(node: ServerProcess, sample: list[tuple[str, int]]) -> OfflineView:
    """Open a stopped node's database (once: `RocksDBEngine.close` keeps the lock while
    the engine object lives) and read its group-1 log and the sampled keys."""
    engine = RocksDBEngine(str(node.data_dir / "db"))
    try:
        start, end = log_key(DEFAULT_GROUP_ID, 0), log_key(DEFAULT_GROUP_ID + 1, 0)
        log = engine.scan(RAFT_LOG, start, end, LOG_BOUND_ENTRIES * 4)
        machine = KVStateMachine(engine)
        now_ms = time.time_ns() // 1_000_000
        wrong: list[tuple[bytes, object]] = []
        for prefix, i in sample:
            value = machine.execute([b"GET", key_of(prefix, i)], now_ms)
            if value != value_of(prefix, i):
                wrong.append((key_of(prefix, i), value))
        return OfflineView(
            [int.from_bytes(k[8:], "big") for k, _ in log],
            sum(len(v) for _, v in log),
            machine.key_count(),
            wrong,
        )
    finally:
        engine.close()


@dataclass(frozen=True, slots=True)
class LogSample:
    at_s: float
    node_id: int
    first_index: int
    last_index: int
    db_bytes: int

    @property
    def length(self) -> int:
        return self.last_index - self.first_index


class LogSampler:
    """Samples the members' log bounds (and database size) every ``SAMPLE_INTERVAL_S``."""

    def __init__(self, nodes: dict[int, ServerProcess]) -> None:
        self.nodes = nodes
        self.samples: list[LogSample] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = time.monotonic()

    def __enter__(self) -> LogSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._sample()  # the state at the end of the load counts too

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            self._sample()

    def _sample(self) -> None:
        for node_id, node in self.nodes.items():
            try:
                st = status(node)
            except OSError as exc:  # a busy node may miss one sample; too many fail below
                self.errors.append(f"node {node_id}: {exc!r}")
                continue
            self.samples.append(
                LogSample(
                    time.monotonic() - self._started,
                    node_id,
                    st["first_index"],
                    st["last_index"],
                    dir_bytes(node.data_dir / "db"),
                )
            )


def test_a_follower_stays_up_after_installing_a_snapshot_far_past_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression (fixed in f1d2600): a follower that installed a snapshot far past its own
    last one took its own snapshot at the same index and fail-stopped on
    SnapshotOutOfDateError. One SET per log entry, a short snapshot interval, a follower
    down for just enough entries that the leader compacted past it."""
    interval_entries = 100
    monkeypatch.setenv("SHARDKV_SNAPSHOT_INTERVAL_ENTRIES", str(interval_entries))
    monkeypatch.setenv("SHARDKV_MAX_COMMANDS_PER_READ", "1")
    cluster = Cluster(tmp_path)  # one shard: its log is under test
    try:
        cluster.start()
        leader_id = cluster.leader()
        leader = cluster.nodes[leader_id]
        follower_id = min(i for i in cluster.nodes if i != leader_id)
        stopped = status(cluster.nodes[follower_id])
        cluster.nodes[follower_id].stop(signal.SIGKILL)
        write_keys(leader.client(socket_timeout=30), "key", COMPACTION_MARGIN_ENTRIES + 300)
        assert status(leader)["first_index"] > stopped["last_index"] + 1
        follower = restart(cluster, follower_id)
        wait_applied(follower, status(leader)["commit"], timeout_s=30)
        assert_stays_up(follower, for_s=1.0)
        assert counter(follower, "shardkv_raft_snapshots_installed") == 1
        # Snapshots live in files: the follower keeps the one it received; the leader took
        # one per 100 entries and keeps only its latest per group (plus, briefly, one
        # whose replacement is not synced yet).
        assert len(list((follower.data_dir / "snapshots").glob("g1-*.snap"))) + len(
            list((follower.data_dir / "snapshots").glob("r1-*.snap"))
        ) in (1, 2)
        assert len(list((leader.data_dir / "snapshots").glob("g1-*.snap"))) in (1, 2)
    finally:
        cluster.stop()


@pytest.mark.slow
def test_a_follower_down_for_100k_writes_catches_up_by_snapshot_and_logs_stay_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, record_property: Callable[[str, object], None]
) -> None:
    monkeypatch.setenv("SHARDKV_SNAPSHOT_INTERVAL_ENTRIES", str(SNAPSHOT_INTERVAL_ENTRIES))
    monkeypatch.setenv("SHARDKV_MAX_COMMANDS_PER_READ", str(COMMANDS_PER_ENTRY))
    cluster = Cluster(tmp_path)  # one shard: its log is under test
    try:
        cluster.start()
        leader_id = cluster.leader()
        leader = cluster.nodes[leader_id]
        follower_id, other_id = sorted(i for i in cluster.nodes if i != leader_id)
        client = leader.client(socket_timeout=30)
        write_keys(client, "earlier", EARLIER_KEYS)
        commit = status(leader)["commit"]
        wait_until(
            "every member applied the earlier writes",
            lambda: all(status(n)["applied"] >= commit for n in cluster.nodes.values()),
            timeout_s=10,
        )
        stopped = status(cluster.nodes[follower_id])
        cluster.nodes[follower_id].stop(signal.SIGKILL)

        live = {leader_id: leader, other_id: cluster.nodes[other_id]}
        with LogSampler(live) as sampler:
            started = time.monotonic()
            write_keys(client, "key", WRITES)
            write_s = time.monotonic() - started
        leader_samples = [s for s in sampler.samples if s.node_id == leader_id]
        longest = max(sampler.samples, key=lambda s: s.length)
        print(
            f"\n{WRITES} writes ({COMMANDS_PER_ENTRY} per entry) in {write_s:.1f}s "
            f"= {WRITES / write_s:.0f}/s; longest log {longest.length} entries "
            f"(bound {LOG_BOUND_ENTRIES}); leader db dir max "
            f"{max(s.db_bytes for s in leader_samples) / 2**20:.1f} MiB; "
            f"{len(sampler.samples)} samples, {len(sampler.errors)} missed"
        )
        record_property("write_s", round(write_s, 2))
        record_property("longest_log_entries", longest.length)

        # Bounded throughout the load, on the leader and on the live follower alike.
        assert len(leader_samples) >= write_s / SAMPLE_INTERVAL_S / 2, sampler.errors
        assert longest.length <= LOG_BOUND_ENTRIES, longest
        first_indexes = sorted({s.first_index for s in leader_samples})
        assert len(first_indexes) >= 3, f"fewer than two compactions seen: {first_indexes}"

        # Only a snapshot can bring the follower back: the entries after its last one
        # are gone from the leader (and from the other member, should it lead later).
        assert status(leader)["first_index"] > stopped["last_index"] + 1
        assert status(cluster.nodes[other_id])["first_index"] > stopped["last_index"] + 1

        target = status(leader)["commit"]
        follower = restart(cluster, follower_id)
        catchup_s = wait_applied(follower, target, CATCHUP_TIMEOUT_S)
        assert_stays_up(follower, for_s=1.0)
        print(f"follower caught up {target - stopped['applied']} entries in {catchup_s:.1f}s")
        record_property("catchup_s", round(catchup_s, 2))
        assert counter(follower, "shardkv_raft_snapshots_installed") >= 1
        caught_up = status(follower)
        assert caught_up["first_index"] > stopped["last_index"] + 1
        assert caught_up["last_index"] - caught_up["first_index"] <= LOG_BOUND_ENTRIES
        assert cluster.leader() == leader_id
        assert client.dbsize() == EARLIER_KEYS + WRITES

        final = {i: status(n) for i, n in cluster.nodes.items()}
        # The leader first: it hands leadership over instead of waiting for lost followers.
        for i in (leader_id, other_id, follower_id):
            assert cluster.nodes[i].stop(signal.SIGTERM) == 0, cluster.nodes[i].log()
    finally:
        cluster.stop()

    # On disk (not only in the nodes' view), each member's raft_log holds a bounded suffix:
    # compaction really deleted the entries. The follower's own data (not the leader's,
    # not through a read) holds every write.
    rng = random.Random(20240601)
    sample = [("earlier", i) for i in range(0, EARLIER_KEYS, 7)] + [
        ("key", rng.randrange(WRITES)) for _ in range(KEYS_READ_BACK)
    ]
    for i, node in cluster.nodes.items():
        on_disk = read_offline(node, sample if i == follower_id else [])
        assert on_disk.log_indexes, f"node {i} has an empty log"
        # Shutdown may add a few entries (a leadership handover), never bring old ones back.
        assert on_disk.log_indexes[0] >= final[i]["first_index"], f"node {i}"
        first, count = on_disk.log_indexes[0], len(on_disk.log_indexes)
        assert on_disk.log_indexes == list(range(first, first + count)), f"node {i}"
        assert count <= LOG_BOUND_ENTRIES + 1, f"node {i}: {count} entries"
        assert on_disk.key_count == EARLIER_KEYS + WRITES, f"node {i}"
        assert on_disk.wrong_values == [], f"node {i}"
        print(f"node {i}: raft_log on disk {count} entries, {on_disk.log_bytes / 2**10:.0f} KiB")
