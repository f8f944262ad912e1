"""A 2 GiB shard: load it, move it to a new node (snapshot, transfer, install), restart
that node (restore from its disk), and report each node's peak memory.

Starts ``shardkv server`` processes on 127.0.0.1 (free ports, a temporary data dir):
three nodes with one shard, which never splits here. Writes ``--gib`` GiB of 1 MiB
values to it, then starts a fourth node (``--join``) and removes node 3 (``shardkv
node remove``), so the shard's replica moves to node 4 by a snapshot streamed in chunks.
Once node 4 holds every key, it is restarted and read from. Prints the phases' times and
every node's peak RSS (VmHWM from /proc). Stops only the processes it started.

    python bench/large_shard.py [--gib 2] [--value-kib 1024]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def proc_field(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1]) * 1024
    return 0


def http(method: str, url: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)


class Node:
    def __init__(self, root: Path, node_id: int, extra: list[str]) -> None:
        self.node_id = node_id
        self.port, self.peer_port, self.admin_port = free_port(), free_port(), free_port()
        self.data_dir = root / f"node-{node_id}"
        self.extra = extra
        self.log = root / f"node-{node_id}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.peak_rss = 0

    def start(self, *flags: str) -> None:
        log = open(self.log, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "shardkv", "server",
                "--port", str(self.port), "--peer-port", str(self.peer_port),
                "--admin-port", str(self.admin_port), "--data-dir", str(self.data_dir),
                "--log-level", "info", *self.extra, *flags,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    def sample(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.peak_rss = max(self.peak_rss, proc_field(self.proc.pid, "VmHWM"))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.sample()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def status(self) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = http("GET", f"http://127.0.0.1:{self.admin_port}/v1/status")
            return result
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def shard(self) -> dict[str, Any] | None:
        st = self.status()
        shards = st.get("shards") if st else None
        return shards[0] if shards else None


def wait(what: str, condition: Any, nodes: list[Node], timeout_s: float) -> float:
    started = time.monotonic()
    while not condition():
        for n in nodes:
            n.sample()
        if time.monotonic() - started > timeout_s:
            for n in nodes:
                print(f"node {n.node_id}: {json.dumps(n.status())[:1500]}")
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.5)
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=2.0)
    parser.add_argument("--value-kib", type=int, default=1024)
    parser.add_argument("--timeout-s", type=float, default=1800.0)
    parser.add_argument("--compressible", action="store_true", help="values of one repeated byte")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="shardkv-large-"))
    settings = ["--shard-split-bytes", str(64 << 30), "--snapshot-send-bytes-per-s", "0"]
    nodes = [Node(root, i, settings) for i in (1, 2, 3)]
    finished = False
    members = ",".join(f"{n.node_id}=127.0.0.1:{n.peer_port}" for n in nodes)
    try:
        for n in nodes:
            n.start("--node-id", str(n.node_id), "--initial-cluster", members, "--shards", "1")
        wait("a leader", lambda: any((n.shard() or {}).get("role") == "leader" for n in nodes),
             nodes, 120)  # fmt: skip
        leader = next(n for n in nodes if (n.shard() or {}).get("role") == "leader")
        client = redis.Redis(host="127.0.0.1", port=leader.port, socket_timeout=120)
        # Random bytes: RocksDB compresses, and a repeated byte would compress to nothing.
        size = args.value_kib * 1024
        value = b"v" * size if args.compressible else os.urandom(size)
        count = int(args.gib * (1 << 30)) // len(value)
        started = time.monotonic()
        for first in range(0, count, 8):
            pipe = client.pipeline(transaction=False)
            for i in range(first, min(count, first + 8)):
                pipe.set(f"key:{i}", value)
            pipe.execute()
            if first % 256 == 0:
                for n in nodes:
                    n.sample()
        load_s = time.monotonic() - started
        total = count * len(value)
        print(f"loaded {count} x {args.value_kib} KiB = {total / (1 << 30):.2f} GiB "
              f"in {load_s:.1f} s ({total / load_s / (1 << 20):.1f} MiB/s)")  # fmt: skip
        for n in nodes:
            n.sample()
        print("peak RSS after the load: " + ", ".join(
            f"node {n.node_id} {n.peak_rss >> 20} MiB" for n in nodes))  # fmt: skip

        node4 = Node(root, 4, settings)
        seeds = ",".join(f"127.0.0.1:{n.peer_port}" for n in nodes)
        node4.start("--join", seeds)
        nodes.append(node4)
        wait("node 4 registered", lambda: node4.status() is not None, nodes, 120)
        started = time.monotonic()
        removed = False
        for n in nodes[:3]:
            try:
                http("POST", f"http://127.0.0.1:{n.admin_port}/v1/nodes/3/remove")
                removed = True
                break
            except urllib.error.HTTPError:
                continue
        if not removed:
            raise SystemExit("no node took the removal of node 3")

        def node4_holds_everything() -> bool:
            shard = node4.shard()
            return shard is not None and shard.get("keys") == count

        move_s = wait("node 4 holds the shard", node4_holds_everything, nodes, args.timeout_s)
        print(f"moved the shard to node 4 (snapshot, transfer, install) in {move_s:.1f} s")
        node4.stop()
        node4.start()
        restart_s = wait("node 4 back", node4_holds_everything, nodes, args.timeout_s)
        reader = redis.Redis(host="127.0.0.1", port=node4.port, socket_timeout=60)
        reader.execute_command("READONLY")
        assert reader.get(f"key:{count - 1}") == value
        print(f"node 4 restarted and restored from its disk in {restart_s:.1f} s")
        for n in nodes:
            n.sample()
        print("peak RSS (VmHWM) per node: " + ", ".join(
            f"node {n.node_id} {n.peak_rss >> 20} MiB" for n in nodes))  # fmt: skip
        sizes = {n.node_id: sum(f.stat().st_size for f in n.data_dir.rglob("*") if f.is_file())
                 for n in nodes}  # fmt: skip
        print("data dir sizes: " + ", ".join(f"node {k} {v >> 20} MiB" for k, v in sizes.items()))
        finished = True
        return 0
    finally:
        for n in nodes:
            n.stop()
        if finished:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"logs and data kept in {root}")


if __name__ == "__main__":
    sys.exit(main())
