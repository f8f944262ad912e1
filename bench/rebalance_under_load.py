"""Throughput and p99 over time while a node joins and shards rebalance, with the
guardrails on and off: the "benchmarks under change" of docs/benchmarks.md.

Each run starts a fresh 3-node cluster on 127.0.0.1 (free ports, a temporary directory),
preloads ``--preload-keys`` values of ``--preload-value-bytes`` (so every move carries a
real snapshot), then runs ``--clients`` threads of SETs (100-byte values, a redis-py
cluster client each) for ``--seconds``; at ``--join-at-s`` a 4th node joins through a
seed. Every second it records the writes completed and their p99, and when the map shows
node 4 holding its share with no move under way ("balanced"). Servers are started and
stopped by this script only, by pid.

Profiles (``--profiles``):

- ``off``: no snapshot pacing, no p99 back-off (``rebalance_max_p99_ms=0``);
- ``on``: the defaults (100 MiB/s, 500 ms);
- ``strict``: 4 MiB/s and 20 ms, to show what holding back costs and buys.

Writes ``<out>/<profile>.csv`` (second, writes, p99_ms) and, unless ``--no-plot``, one PNG
with both panels for every profile (``<out>/rebalance_under_load.png``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from redis.cluster import RedisCluster

PROFILES: Final = {
    "off": {"SHARDKV_REBALANCE_MAX_P99_MS": "0", "SHARDKV_SNAPSHOT_SEND_BYTES_PER_S": "0"},
    "on": {},
    "strict": {
        "SHARDKV_REBALANCE_MAX_P99_MS": "20",
        "SHARDKV_SNAPSHOT_SEND_BYTES_PER_S": str(4 << 20),
    },
}
VALUE: Final = b"v" * 100
START_TIMEOUT_S: Final = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    data_dir: Path
    args: list[str]
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    admin_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable, "-m", "shardkv", "server", "--data-dir", str(self.data_dir),
            "--port", str(self.port), "--admin-port", str(self.admin_port),
            "--log-level", "warning", *self.args,
        ]  # fmt: skip
        log = (self.data_dir / "server.log").open("ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        return self

    def status(self) -> dict[str, object]:
        url = f"http://127.0.0.1:{self.admin_port}/v1/status"
        with urllib.request.urlopen(url, timeout=5) as r:
            body: dict[str, object] = json.load(r)
            return body

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                url = f"http://127.0.0.1:{self.admin_port}/healthz"
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"{self.data_dir} did not become ready")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Second:
    writes: int = 0
    latencies_s: list[float] = field(default_factory=list)

    def p99_ms(self) -> float:
        if not self.latencies_s:
            return 0.0
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


def balanced(seed: Server, node_id: int) -> bool:
    shard_map = json.loads(str(seed.status()["shard_map"]))
    shards = shard_map["shards"]
    if any(s[4] for s in shards):  # a target: a move under way
        return False
    nodes = [n[0] for n in shard_map["nodes"] if n[4] == "up"]
    held = sum(1 for s in shards if node_id in s[2])
    return held >= (len(shards) * 3) // len(nodes)


def run_profile(name: str, args: argparse.Namespace, root: Path) -> tuple[list[Second], float]:
    """One run; returns the per-second records and the second the cluster was balanced."""
    env = {**os.environ, **PROFILES[name]}
    peers = {i: free_port() for i in (1, 2, 3)}
    members = ",".join(f"{i}=127.0.0.1:{p}" for i, p in peers.items())
    servers = []
    for i in peers:
        flags = ["--node-id", str(i), "--peer-port", str(peers[i])]
        flags += ["--initial-cluster", members, "--shards", str(args.shards)]
        servers.append(Server(root / name / f"node-{i}", flags, env))
    seconds = [Second() for _ in range(args.seconds + 5)]
    balanced_at = -1.0
    stop = threading.Event()
    try:
        for s in servers:
            s.start()
        for s in servers:
            s.wait_ready()
        pre = RedisCluster(host="127.0.0.1", port=servers[0].port, socket_timeout=30)
        filler = b"p" * args.preload_value_bytes
        pipe = pre.pipeline(transaction=False)
        for i in range(args.preload_keys):
            pipe.set(f"preload:{i}", filler)
            if i % 200 == 199:
                pipe.execute()
        pipe.execute()
        pre.close()
        time.sleep(12)  # the preload's writes leave the p99 window
        started = time.monotonic()

        def client(index: int) -> None:
            c = RedisCluster(host="127.0.0.1", port=servers[index % 3].port, socket_timeout=30)
            n = 0
            while not stop.is_set():
                t0 = time.monotonic()
                try:
                    c.set(f"load:{index}:{n % 1000}", VALUE)
                except Exception:  # a redirect storm or a timeout: counted as nothing
                    time.sleep(0.05)
                    continue
                t1 = time.monotonic()
                second = int(t1 - started)
                if second < len(seconds):
                    seconds[second].writes += 1
                    seconds[second].latencies_s.append(t1 - t0)
                n += 1
            c.close()

        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        for t in threads:
            t.start()
        time.sleep(args.join_at_s)
        flags = ["--peer-port", str(free_port()), "--join", f"127.0.0.1:{peers[1]}"]
        joined = Server(root / name / "node-4", flags, env).start()
        servers.append(joined)
        while time.monotonic() - started < args.seconds:
            time.sleep(0.5)
            try:
                if balanced_at < 0 and balanced(servers[0], 4):
                    balanced_at = time.monotonic() - started
            except OSError:
                pass
        stop.set()
        for t in threads:
            t.join(timeout=60)
    finally:
        stop.set()
        for s in servers:
            s.stop()
    return seconds[: args.seconds], balanced_at


def plot(results: dict[str, tuple[list[Second], float]], join_at_s: float, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for name, (seconds, balanced_at) in results.items():
        xs = list(range(len(seconds)))
        line = top.plot(xs, [s.writes for s in seconds], label=name)[0]
        bottom.plot(xs, [s.p99_ms() for s in seconds], label=name, color=line.get_color())
        if balanced_at >= 0:
            for ax in (top, bottom):
                ax.axvline(balanced_at, color=line.get_color(), linestyle=":")
    for ax in (top, bottom):
        ax.axvline(join_at_s, color="grey", linestyle="--")
    top.set_ylabel("writes/s")
    bottom.set_ylabel("write p99 (ms)")
    bottom.set_xlabel("seconds (dashed: node 4 joins; dotted: balanced)")
    top.legend(title="guardrails")
    top.set_title("ShardKV: SET throughput and p99 while a node joins and shards rebalance")
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", default="off,on")
    parser.add_argument("--seconds", type=int, default=45)
    parser.add_argument("--join-at-s", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--shards", type=int, default=12)
    parser.add_argument("--preload-keys", type=int, default=20_000)
    parser.add_argument("--preload-value-bytes", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    with tempfile.TemporaryDirectory(prefix="shardkv-rebalance-") as tmp:
        for name in args.profiles.split(","):
            seconds, balanced_at = run_profile(name, args, Path(tmp))
            results[name] = (seconds, balanced_at)
            with (args.out / f"{name}.csv").open("w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["second", "writes", "p99_ms"])
                for i, s in enumerate(seconds):
                    w.writerow([i, s.writes, f"{s.p99_ms():.2f}"])
            before = seconds[2 : int(args.join_at_s)]
            after = seconds[int(args.join_at_s) :]
            rate_before = sum(s.writes for s in before) / len(before)
            print(
                f"{name}: writes/s before the join {rate_before:.0f}, "
                f"after {sum(s.writes for s in after) / len(after):.0f}; worst p99 after "
                f"{max(s.p99_ms() for s in after):.1f} ms; balanced at "
                f"{balanced_at:.1f} s ({balanced_at - args.join_at_s:.1f} s after the join)"
                if balanced_at >= 0
                else f"{name}: not balanced within {args.seconds} s",
                flush=True,
            )
    if not args.no_plot:
        plot(results, args.join_at_s, args.out / "rebalance_under_load.png")
        print(f"plot: {args.out / 'rebalance_under_load.png'}")


if __name__ == "__main__":
    main()
