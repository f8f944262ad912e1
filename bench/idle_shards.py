"""CPU cost of idle shards: a 3-node cluster with many shards and no clients.

Starts three ``shardkv server`` processes on 127.0.0.1 (free ports, a temporary data
dir), waits until every shard has a leader, lets the cluster settle, then samples each
process's CPU time (utime + stime from /proc) over a window and prints the share of one
core each node used. Stops only the processes it started.

    python bench/idle_shards.py [--shards 1000] [--settle-s 20] [--window-s 30]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime (fields 14 and 15)
    return ticks / os.sysconf("SC_CLK_TCK")


def status(admin_port: int) -> dict[str, object] | None:
    url = f"http://127.0.0.1:{admin_port}/v1/status"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            data: dict[str, object] = json.load(resp)
            return data
    except (urllib.error.URLError, OSError, ValueError):
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=1000)
    parser.add_argument("--settle-s", type=float, default=20.0)
    parser.add_argument("--window-s", type=float, default=30.0)
    parser.add_argument("--start-timeout-s", type=float, default=600.0)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="shardkv-idle-"))
    peers = {i: free_port() for i in (1, 2, 3)}
    members = ",".join(f"{i}=127.0.0.1:{p}" for i, p in peers.items())
    admins = {i: free_port() for i in peers}
    procs: dict[int, subprocess.Popen[bytes]] = {}
    try:
        for i in peers:
            log = open(root / f"node-{i}.log", "wb")  # noqa: SIM115 - lives as long as the process
            procs[i] = subprocess.Popen(
                [
                    sys.executable, "-m", "shardkv", "server",
                    "--node-id", str(i),
                    "--port", str(free_port()),
                    "--peer-port", str(peers[i]),
                    "--admin-port", str(admins[i]),
                    "--data-dir", str(root / f"node-{i}"),
                    "--initial-cluster", members,
                    "--shards", str(args.shards),
                    "--log-level", "warning",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        started = time.monotonic()
        while True:
            views = [status(admins[i]) for i in peers]
            led = 0
            for v in views:
                if v is not None:
                    shards = v.get("shards") or []
                    assert isinstance(shards, list)
                    led += sum(1 for s in shards if s["role"] == "leader")
            if led == args.shards:
                break
            if time.monotonic() - started > args.start_timeout_s:
                print(f"only {led} of {args.shards} shards elected a leader", file=sys.stderr)
                return 1
            time.sleep(1)
        ready_s = time.monotonic() - started
        time.sleep(args.settle_s)
        before = {i: cpu_seconds(p.pid) for i, p in procs.items()}
        time.sleep(args.window_s)
        after = {i: cpu_seconds(p.pid) for i, p in procs.items()}
        print(f"nproc {os.cpu_count()}, {args.shards} shards x 3 replicas on 3 nodes")
        print(f"every shard led after {ready_s:.1f} s; idle for {args.settle_s:.0f} s, then")
        print(f"CPU over {args.window_s:.0f} s (share of one core):")
        for i in peers:
            share = (after[i] - before[i]) / args.window_s
            print(f"  node {i}: {share * 100:5.1f}%")
        return 0
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


if __name__ == "__main__":
    sys.exit(main())
