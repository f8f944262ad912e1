"""Memory soak of a running ShardKV cluster: a bounded mixed load, each node's RSS sampled
on a fixed period into a CSV, and a least-squares slope of RSS after a warm-up.

This module never starts or stops servers: ``bench/soak.sh`` does (and kills them by pid in
its trap), then runs ``soak.py run`` with each node's ports and pid. ``soak.py fit CSV``
recomputes the slopes of an earlier run.

The load is bounded so that a leak, not the data, is what grows:

- a fixed key space: ``--keys`` plain strings (SET with EX on some, GET, DEL), a tenth as
  many counters (INCR) and a tenth as many append logs (APPEND, deleted once longer than
  ``MAX_APPEND_BYTES``), values of at most ``MAX_VALUE_BYTES``;
- ``--clients`` connections (one thread each), one command in flight per connection;
- an optional total rate (``--rate-ops``; 0: as fast as the cluster answers).

What is sampled every ``--sample-s`` per node: VmRSS and VmHWM (/proc/PID/status), thread
and open-fd counts, the size of its RocksDB directory, and its Raft view from
``/v1/status`` (role, applied, first/last log index). The slope is fitted over the samples
taken at or after ``--warmup-s``.

At the end of the warm-up every node takes an allocation baseline
(``POST /v1/debug/tracemalloc/baseline`` on its admin port; soak.sh starts the nodes with
``PYTHONTRACEMALLOC=1`` so tracing, and its cost, runs from the start); at the end the top
growth sites since then (``GET /v1/debug/tracemalloc/top``) are printed per node and saved
as ``tracemalloc-<node>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import random
import signal
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import redis

MAX_VALUE_BYTES: Final = 1024
MAX_APPEND_BYTES: Final = 4096
APPEND_CHUNK_BYTES: Final = 64
#: Share of SETs that carry an expiry, and its range in seconds.
EXPIRING_SET_SHARE: Final = 0.3
EXPIRY_RANGE_S: Final = (1, 30)
#: Commands and their weights in the mix.
MIX: Final = (("GET", 40), ("SET", 25), ("INCR", 10), ("APPEND", 10), ("DEL", 10), ("TTL", 5))
SOCKET_TIMEOUT_S: Final = 10.0
#: A client that falls this far behind its pacing schedule drops the backlog.
MAX_PACING_DEBT_S: Final = 1.0
CSV_FIELDS: Final = (
    "elapsed_s",
    "node_id",
    "pid",
    "rss_kib",
    "hwm_kib",
    "threads",
    "fds",
    "db_kib",
    "role",
    "applied",
    "first_index",
    "last_index",
    "ops_total",
    "errors_total",
)


@dataclass(frozen=True, slots=True)
class Node:
    node_id: int
    client_port: int
    admin_port: int
    pid: int
    data_dir: Path

    @classmethod
    def parse(cls, text: str) -> Node:
        """``ID:CLIENT_PORT:ADMIN_PORT:PID:DATA_DIR`` (the data dir may contain colons)."""
        node_id, client, admin, pid, data_dir = text.split(":", 4)
        return cls(int(node_id), int(client), int(admin), int(pid), Path(data_dir))


# -- sampling -----------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (KiB) and Threads of a live process; raises OSError once it is gone."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM", "Threads"):
            out[name] = int(rest.split()[0])
    return out


def dir_kib(path: Path) -> int:
    total = 0
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(path):
            with contextlib.suppress(FileNotFoundError):  # RocksDB removed it meanwhile
                total += entry.stat().st_size
    return total // 1024


def raft_status(admin_port: int) -> dict[str, object]:
    url = f"http://127.0.0.1:{admin_port}/v1/status"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            body: dict[str, object] = json.load(resp)
            return body
    except (OSError, ValueError):
        return {}


# -- load ---------------------------------------------------------------------------------


@dataclass
class LoadStats:
    ops: int = 0
    errors: Counter[str] = field(default_factory=Counter)


def new_client(port: int, socket_timeout_s: float) -> redis.Redis:
    """A client without redis-py's own retries: every error is counted, none hidden."""
    return redis.Redis(port=port, socket_timeout=socket_timeout_s, retry=None)  # type: ignore[arg-type]


class LeaderFinder:
    """The leader's client port, learned from CLUSTER SLOTS (its first node is the leader)."""

    def __init__(self, nodes: Sequence[Node]) -> None:
        self.nodes = nodes
        self._lock = threading.Lock()
        self._port: int | None = None

    def port(self, refresh: bool = False) -> int | None:
        with self._lock:
            if refresh or self._port is None:
                self._port = self._discover()
            return self._port

    def _discover(self) -> int | None:
        for node in self.nodes:
            try:
                client = new_client(node.client_port, socket_timeout_s=2.0)
                slots = client.execute_command("CLUSTER", "SLOTS")  # type: ignore[no-untyped-call]
                client.close()
            except redis.RedisError:
                continue
            if slots:
                return int(slots[0][2][1])
        return None


class LoadClient(threading.Thread):
    """One connection running the mix until ``stop`` is set, paced to ``rate_ops``."""

    def __init__(
        self,
        index: int,
        leader: LeaderFinder,
        keys: int,
        rate_ops: float,
        seed: int,
        stop: threading.Event,
    ) -> None:
        super().__init__(name=f"soak-client-{index}", daemon=True)
        self.rng = random.Random(seed * 1_000_003 + index)
        self.leader = leader
        self.keys = keys
        self.small_keys = max(1, keys // 10)
        self.period_s = 1.0 / rate_ops if rate_ops > 0 else 0.0
        self.stop = stop
        self.stats = LoadStats()
        self.payload = bytes(self.rng.randrange(97, 123) for _ in range(MAX_VALUE_BYTES))
        names, weights = zip(*MIX, strict=True)
        self.names: tuple[str, ...] = names
        self.weights: tuple[int, ...] = weights
        self.client: redis.Redis | None = None

    def run(self) -> None:
        next_at = time.monotonic()
        while not self.stop.is_set():
            if self.period_s:
                next_at += self.period_s
                delay_s = next_at - time.monotonic()
                if delay_s > 0:
                    self.stop.wait(delay_s)
                elif delay_s < -MAX_PACING_DEBT_S:
                    next_at = time.monotonic()
            try:
                self.one_op()
                self.stats.ops += 1
            except redis.exceptions.MovedError:
                self.stats.errors["moved"] += 1
                self.drop_connection()
            except (redis.exceptions.TryAgainError, redis.exceptions.ClusterDownError):
                self.stats.errors["tryagain"] += 1
                self.stop.wait(0.1)
            except (redis.ConnectionError, redis.TimeoutError):
                self.stats.errors["connection"] += 1
                self.stop.wait(0.2)
                self.drop_connection()
            except redis.ResponseError as exc:
                self.stats.errors[str(exc).split(" ", 1)[0] or "error"] += 1
        if self.client is not None:
            self.client.close()

    def drop_connection(self) -> None:
        """Close the connection; the next command connects to the leader found anew."""
        if self.client is not None:
            self.client.close()
            self.client = None
        self.leader.port(refresh=True)

    def connect(self) -> redis.Redis:
        port = self.leader.port()
        if port is None:
            raise redis.ConnectionError("no leader known")
        self.client = new_client(port, SOCKET_TIMEOUT_S)
        return self.client

    def one_op(self) -> None:
        client = self.client or self.connect()
        rng = self.rng
        op = rng.choices(self.names, self.weights)[0]
        if op == "GET":
            client.get(f"soak:str:{rng.randrange(self.keys)}")
        elif op == "SET":
            size = rng.randrange(16, MAX_VALUE_BYTES + 1)
            start = rng.randrange(MAX_VALUE_BYTES - size + 1)
            value = self.payload[start : start + size]
            key = f"soak:str:{rng.randrange(self.keys)}"
            if rng.random() < EXPIRING_SET_SHARE:
                client.set(key, value, ex=rng.randint(*EXPIRY_RANGE_S))
            else:
                client.set(key, value)
        elif op == "INCR":
            client.incr(f"soak:ctr:{rng.randrange(self.small_keys)}")
        elif op == "APPEND":
            key = f"soak:app:{rng.randrange(self.small_keys)}"
            if client.append(key, self.payload[:APPEND_CHUNK_BYTES]) > MAX_APPEND_BYTES:
                client.delete(key)
        elif op == "DEL":
            space = rng.choice(("str", "str", "ctr", "app"))
            bound = self.keys if space == "str" else self.small_keys
            client.delete(f"soak:{space}:{rng.randrange(bound)}")
        else:
            client.ttl(f"soak:str:{rng.randrange(self.keys)}")


# -- the run ------------------------------------------------------------------------------


def admin_call(node: Node, method: str, path: str) -> object:
    """JSON from a node's admin port, or None if it does not answer."""
    req = urllib.request.Request(f"http://127.0.0.1:{node.admin_port}{path}", method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.load(resp)
    except (OSError, ValueError):
        return None


def run(args: argparse.Namespace) -> int:
    nodes = [Node.parse(text) for text in args.node]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "rss.csv"
    leader = LeaderFinder(nodes)
    deadline = time.monotonic() + args.leader_timeout_s
    while leader.port(refresh=True) is None:
        if time.monotonic() > deadline:
            print(f"no leader within {args.leader_timeout_s}s", file=sys.stderr)
            return 2
        time.sleep(0.2)
    stop = threading.Event()
    per_client_rate = args.rate_ops / args.clients if args.rate_ops > 0 else 0.0
    clients = [
        LoadClient(i, leader, args.keys, per_client_rate, args.seed, stop)
        for i in range(args.clients)
    ]
    print(
        f"soak: {len(nodes)} nodes, {args.clients} clients, {args.keys} keys, "
        f"rate {args.rate_ops or 'unbounded'} ops/s, {args.duration_s}s "
        f"(warm-up {args.warmup_s}s), sample every {args.sample_s}s -> {csv_path}",
        flush=True,
    )
    dead: set[int] = set()
    started = time.monotonic()
    for c in clients:
        c.start()
    try:
        with open(csv_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
            writer.writeheader()
            next_sample = started
            traced = False
            while True:
                elapsed_s = time.monotonic() - started
                ops = sum(c.stats.ops for c in clients)
                errors = sum(sum(c.stats.errors.values()) for c in clients)
                for node in nodes:
                    row = sample_node(node, elapsed_s, ops, errors)
                    if row is None:
                        dead.add(node.node_id)
                        continue
                    writer.writerow(row)
                f.flush()
                print(progress_line(elapsed_s, ops, errors, nodes, csv_path), flush=True)
                if dead:
                    print(f"soak: node(s) {sorted(dead)} exited; stopping", file=sys.stderr)
                    break
                if not traced and elapsed_s >= args.warmup_s:
                    traced = True
                    for node in nodes:
                        admin_call(node, "POST", "/v1/debug/tracemalloc/baseline")
                if elapsed_s >= args.duration_s:
                    break
                next_sample += args.sample_s
                time.sleep(max(0.0, min(next_sample, started + args.duration_s) - time.monotonic()))
    except KeyboardInterrupt:
        print("soak: interrupted", file=sys.stderr)
    finally:
        stop.set()
        for c in clients:
            c.join(timeout=SOCKET_TIMEOUT_S + 5)
    elapsed_s = time.monotonic() - started
    ops = sum(c.stats.ops for c in clients)
    error_kinds: Counter[str] = Counter()
    for c in clients:
        error_kinds.update(c.stats.errors)
    print(
        f"\nload: {ops} ops in {elapsed_s:.0f}s = {ops / max(elapsed_s, 1e-9):.0f} ops/s; "
        f"errors {dict(error_kinds) or 0}"
    )
    fits = report(read_samples(csv_path), args.warmup_s)
    for node in nodes:
        top = admin_call(node, "GET", "/v1/debug/tracemalloc/top?n=15")
        if not isinstance(top, list):
            continue
        (out / f"tracemalloc-{node.node_id}.json").write_text(json.dumps(top, indent=2))
        print(f"\nnode {node.node_id}: top allocation growth since the warm-up (tracemalloc)")
        for site in top[:15]:
            print(
                f"  {site['size_diff_kib']:>10.1f} KiB {site['count_diff']:>+8d}  {site['where']}"
            )
    if dead:
        return 1
    if args.max_slope_kib_per_min is not None and any(
        abs(fit.slope_kib_per_min) > args.max_slope_kib_per_min for fit in fits
    ):
        print(f"FAIL: an RSS slope exceeds {args.max_slope_kib_per_min} KiB/min")
        return 3
    return 0


def sample_node(node: Node, elapsed_s: float, ops: int, errors: int) -> dict[str, object] | None:
    """One CSV row, or None if the node's process is gone."""
    try:
        st = proc_status(node.pid)
        fds = len(os.listdir(f"/proc/{node.pid}/fd"))
    except OSError:
        return None
    raft = raft_status(node.admin_port)
    return {
        "elapsed_s": round(elapsed_s, 1),
        "node_id": node.node_id,
        "pid": node.pid,
        "rss_kib": st.get("VmRSS", 0),
        "hwm_kib": st.get("VmHWM", 0),
        "threads": st.get("Threads", 0),
        "fds": fds,
        "db_kib": dir_kib(node.data_dir / "db"),
        "role": raft.get("role", ""),
        "applied": raft.get("applied", ""),
        "first_index": raft.get("first_index", ""),
        "last_index": raft.get("last_index", ""),
        "ops_total": ops,
        "errors_total": errors,
    }


def progress_line(
    elapsed_s: float, ops: int, errors: int, nodes: Sequence[Node], csv_path: Path
) -> str:
    rss = []
    for node in nodes:
        try:
            rss.append(f"{node.node_id}:{proc_status(node.pid).get('VmRSS', 0) / 1024:.0f}M")
        except OSError:
            rss.append(f"{node.node_id}:gone")
    return f"  t={elapsed_s:5.0f}s ops={ops} errors={errors} rss {' '.join(rss)}"


# -- analysis -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fit:
    node_id: int
    samples: int
    slope_kib_per_min: float
    rss_at_warmup_kib: int
    rss_last_kib: int
    rss_max_kib: int
    db_last_kib: int
    longest_log_entries: int


def read_samples(csv_path: Path) -> list[dict[str, str]]:
    with open(csv_path, newline="") as f:
        return list(csv.DictReader(f))


def least_squares_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Slope of the least-squares line through (xs, ys); needs two distinct xs."""
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    var = sum((x - mean_x) ** 2 for x in xs)
    if var == 0:
        raise ValueError("need samples at two different times")
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var


def fit_nodes(rows: Sequence[dict[str, str]], warmup_s: float) -> Iterator[Fit]:
    by_node: dict[int, list[dict[str, str]]] = {}
    for row in rows:
        by_node.setdefault(int(row["node_id"]), []).append(row)
    for node_id, samples in sorted(by_node.items()):
        after = [r for r in samples if float(r["elapsed_s"]) >= warmup_s]
        if len(after) < 3:
            continue
        minutes = [float(r["elapsed_s"]) / 60 for r in after]
        rss = [float(r["rss_kib"]) for r in after]
        lengths = [
            int(r["last_index"]) - int(r["first_index"])
            for r in samples
            if r["last_index"] and r["first_index"]
        ]
        yield Fit(
            node_id,
            len(after),
            least_squares_slope(minutes, rss),
            int(rss[0]),
            int(rss[-1]),
            int(max(rss)),
            int(after[-1]["db_kib"]),
            max(lengths, default=0),
        )


def report(rows: Sequence[dict[str, str]], warmup_s: float) -> list[Fit]:
    fits = list(fit_nodes(rows, warmup_s))
    if not fits:
        print(f"not enough samples after the {warmup_s}s warm-up to fit a slope (need 3)")
        return fits
    print(f"RSS after the {warmup_s:.0f}s warm-up (least-squares slope):")
    print(
        f"{'node':>4} {'samples':>7} {'slope KiB/min':>14} {'RSS@warmup MiB':>15} "
        f"{'RSS last MiB':>13} {'RSS max MiB':>12} {'db MiB':>7} {'max log':>8}"
    )
    for fit in fits:
        print(
            f"{fit.node_id:>4} {fit.samples:>7} {fit.slope_kib_per_min:>14.1f} "
            f"{fit.rss_at_warmup_kib / 1024:>15.1f} {fit.rss_last_kib / 1024:>13.1f} "
            f"{fit.rss_max_kib / 1024:>12.1f} {fit.db_last_kib / 1024:>7.1f} "
            f"{fit.longest_log_entries:>8}"
        )
    return fits


# -- command line -------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="load a running cluster and sample it (see bench/soak.sh)")
    r.add_argument(
        "--node",
        action="append",
        required=True,
        help="ID:CLIENT_PORT:ADMIN_PORT:PID:DATA_DIR of one node (repeat per node)",
    )
    r.add_argument("--out", required=True, help="output directory (rss.csv goes there)")
    r.add_argument("--duration-s", type=float, default=600.0)
    r.add_argument("--warmup-s", type=float, default=120.0)
    r.add_argument("--sample-s", type=float, default=10.0)
    r.add_argument("--clients", type=int, default=10)
    r.add_argument("--keys", type=int, default=10_000)
    r.add_argument("--rate-ops", type=float, default=2_000.0, help="total; 0: unbounded")
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--leader-timeout-s", type=float, default=30.0)
    r.add_argument(
        "--max-slope-kib-per-min",
        type=float,
        default=None,
        help="exit 3 if any node's RSS slope after warm-up exceeds this (default: report only)",
    )
    f = sub.add_parser("fit", help="the slopes of an earlier run's rss.csv")
    f.add_argument("csv", type=Path)
    f.add_argument("--warmup-s", type=float, default=120.0)
    args = parser.parse_args(argv)
    if args.command == "fit":
        return 0 if report(read_samples(args.csv), args.warmup_s) else 1
    if args.clients < 1 or args.keys < 10 or args.sample_s <= 0 or args.duration_s <= 0:
        parser.error("need --clients >= 1, --keys >= 10, positive --sample-s and --duration-s")
    # soak.sh runs this in the background (SIGINT ignored) and stops it with SIGTERM:
    # end the load and print the report as for Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    return run(args)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
