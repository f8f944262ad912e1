"""Deleting and expiring a key with a million members: how long the command takes, and
whether the space comes back.

Starts a 3-node cluster (one shard) of ``shardkv server`` processes on 127.0.0.1 (free
ports, a temporary data dir), fills one key per type asked for (``--types set,hash``) with
``--members`` members, then:

- DEL of the first key: the time until the reply, measured by the client, while a probe
  client keeps reading another key of the same shard (its worst latency is reported);
- PEXPIRE of the next key: the time until the expiry sweep removed it (DBSIZE falls), and
  the probe's worst latency meanwhile;
- the data dirs' size on disk after the load, right after the deletions, and every
  ``--settle-s`` seconds after them (RocksDB reclaims range-deleted members when it compacts).

Stops only the processes it started.

    python bench/big_key_delete.py [--members 1000000] [--types set,hash]
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import redis

BATCH_MEMBERS = 2_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def column_bytes(admin_ports: list[int]) -> dict[str, int]:
    """Bytes of each RocksDB column over every node, as RocksDB counts them (SST files and
    memtables): ``sub`` holds the members, the log columns the Raft log."""
    total: dict[str, int] = {}
    for port in admin_ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/status", timeout=10) as resp:
            for column, size in json.load(resp)["storage_bytes"].items():
                total[column] = total.get(column, 0) + size
    return total


def raft_log_span(admin_port: int) -> str:
    """The first and last index of shard 1's Raft log on one node (from its metrics):
    the log is compacted behind each snapshot."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    found = {}
    for name in ("first", "last"):
        for line in text.splitlines():
            if line.startswith(f"shardkv_raft_{name}_index{{") and 'group="1"' in line:
                found[name] = int(float(line.rsplit(" ", 1)[1]))
    return f"{found.get('first')}-{found.get('last')}"


def report_space(root: Path, admin_ports: list[int], when: str) -> None:
    print(f"{when}: shard 1's Raft log spans {raft_log_span(admin_ports[0])} on node 1")
    dirs = sum(dir_bytes(root / f"n{i}") for i in (1, 2, 3))
    columns = column_bytes(admin_ports)
    others = ", ".join(
        f"{name} {size / 2**20:.0f}" for name, size in sorted(columns.items()) if name != "sub"
    )
    print(
        f"{when}: member records {columns.get('sub', 0) / 2**20:.0f} MiB (RocksDB's SUB"
        f" column, 3 nodes; other columns MiB: {others}); data dirs {dirs / 2**20:.0f} MiB"
        " (with the WAL)",
        flush=True,
    )


class Probe(threading.Thread):
    """GETs one key in a loop; records the worst latency between ``reset`` and ``worst``."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.client = redis.Redis(port=port, socket_timeout=30)
        self.client.set("probe", "x")
        self.stop = False
        self._worst_s = 0.0

    def run(self) -> None:
        while not self.stop:
            started = time.perf_counter()
            self.client.get("probe")
            self._worst_s = max(self._worst_s, time.perf_counter() - started)
            time.sleep(0.001)

    def reset(self) -> None:
        self._worst_s = 0.0

    def worst_ms(self) -> float:
        return self._worst_s * 1000


def fill(client: redis.Redis, kind: str, key: str, members: int) -> None:
    for start in range(0, members, BATCH_MEMBERS):
        names = [f"member:{i}" for i in range(start, min(start + BATCH_MEMBERS, members))]
        if kind == "set":
            client.sadd(key, *names)
        elif kind == "hash":
            client.hset(key, mapping={name: "v" for name in names})
        elif kind == "zset":
            client.zadd(key, {name: i for i, name in enumerate(names, start)})
        else:
            client.rpush(key, *names)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--types", default="set,hash")
    parser.add_argument("--settle-s", type=float, default=20.0)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="shardkv-bigkey-"))
    peers = {i: free_port() for i in (1, 2, 3)}
    ports = {i: free_port() for i in (1, 2, 3)}
    admin_ports = {i: free_port() for i in (1, 2, 3)}
    members_flag = ",".join(f"{i}=127.0.0.1:{p}" for i, p in peers.items())
    procs = []
    try:
        for i in (1, 2, 3):
            log = open(root / f"node-{i}.log", "ab")  # noqa: SIM115 - lives with the process
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "shardkv",
                        "server",
                        "--node-id",
                        str(i),
                        "--port",
                        str(ports[i]),
                        "--peer-port",
                        str(peers[i]),
                        "--admin-port",
                        str(admin_ports[i]),
                        "--data-dir",
                        str(root / f"n{i}"),
                        "--initial-cluster",
                        members_flag,
                        "--shards",
                        "1",
                        "--log-level",
                        "warning",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        leader = None
        deadline = time.monotonic() + 60
        while leader is None and time.monotonic() < deadline:
            for port in ports.values():
                try:
                    if redis.Redis(port=port, socket_timeout=2).set("ready", "1"):
                        leader = port
                        break
                except redis.RedisError:
                    pass
            time.sleep(0.2)
        assert leader is not None, "no leader"
        client = redis.Redis(port=leader, socket_timeout=300)
        kinds = args.types.split(",")
        started = time.perf_counter()
        for kind in kinds:
            fill(client, kind, f"del:{kind}", args.members)
            fill(client, kind, f"exp:{kind}", args.members)
        load_s = time.perf_counter() - started
        time.sleep(2)  # let followers apply before measuring
        print(f"loaded {len(kinds) * 2} keys of {args.members:,} members in {load_s:.1f} s",
              flush=True)  # fmt: skip
        report_space(root, list(admin_ports.values()), "after the load")
        probe = Probe(leader)
        probe.start()
        time.sleep(0.5)
        small = []
        for n in range(20):
            client.sadd(f"small:{n}", "a")
            started = time.perf_counter()
            client.delete(f"small:{n}")
            small.append((time.perf_counter() - started) * 1000)
        small.sort()
        print(f"DEL of a 1-member set, 20 times: median {small[10]:.1f} ms, max {small[-1]:.1f}"
              " ms (the cost of any replicated write)", flush=True)  # fmt: skip
        for kind in kinds:
            probe.reset()
            started = time.perf_counter()
            assert client.delete(f"del:{kind}") == 1
            del_ms = (time.perf_counter() - started) * 1000
            print(f"DEL of a {kind} of {args.members:,} members: {del_ms:.1f} ms"
                  f" (worst GET meanwhile {probe.worst_ms():.1f} ms)")  # fmt: skip
        for kind in kinds:
            probe.reset()
            keys_before = client.dbsize()
            started = time.perf_counter()
            client.pexpire(f"exp:{kind}", 1)
            expire_ms = (time.perf_counter() - started) * 1000
            while client.dbsize() >= keys_before:
                time.sleep(0.001)
            gone_ms = (time.perf_counter() - started) * 1000
            print(f"PEXPIRE 1 ms of a {kind} of {args.members:,} members: answered in"
                  f" {expire_ms:.1f} ms, swept after {gone_ms:.1f} ms (worst GET meanwhile"
                  f" {probe.worst_ms():.1f} ms)", flush=True)  # fmt: skip
        probe.stop = True
        report_space(root, list(admin_ports.values()), "right after")
        for step in range(1, 4):
            time.sleep(args.settle_s)
            report_space(root, list(admin_ports.values()), f"{step * args.settle_s:.0f} s later")
        return 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
