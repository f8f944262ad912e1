"""``shardkv cluster up`` and ``shardkv cluster status``: a local cluster of processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

from rich.console import Console
from rich.table import Table

from shardkv.core.cluster.shardmap import NODE_REMOVED, ShardMap


def node_ports(base_port: int, node: int) -> tuple[int, int, int]:
    """(client, peer, admin) ports of node ``node`` (1-based)."""
    return base_port + node, base_port + 100 + node, base_port + 200 + node


def run_local_cluster(
    nodes: int,
    base_port: int,
    data_dir: str,
    bind: str,
    shards: int = 16,
    replicas: int = 3,
    processes_per_host: int = 1,
) -> int:
    """Start ``nodes`` server processes, stream their logs, stop them all on Ctrl-C or
    SIGTERM. Returns 0 when every node exited cleanly. With ``processes_per_host`` > 1,
    nodes are labelled as that many processes per host (``host=h1`` for the first ones),
    as one process per core of a machine would be: no shard keeps two replicas on one."""
    if processes_per_host < 1:
        print("error: --processes-per-host must be at least 1", file=sys.stderr)
        return 2
    if nodes < 1:
        print("error: --nodes must be at least 1", file=sys.stderr)
        return 2
    members = ",".join(f"{i}={bind}:{node_ports(base_port, i)[1]}" for i in range(1, nodes + 1))
    procs: list[subprocess.Popen[str]] = []
    for i in range(1, nodes + 1):
        client, peer, admin = node_ports(base_port, i)
        node_dir = Path(data_dir) / f"node-{i}"
        node_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "shardkv",
            "server",
            "--node-id",
            str(i),
            "--bind",
            bind,
            "--port",
            str(client),
            "--peer-port",
            str(peer),
            "--admin-port",
            str(admin),
            "--data-dir",
            str(node_dir),
            "--initial-cluster",
            members,
            "--shards",
            str(shards),
            "--replicas",
            str(replicas),
        ]
        if processes_per_host > 1:
            cmd += ["--labels", f"host=h{(i - 1) // processes_per_host + 1}"]
        procs.append(
            subprocess.Popen(
                cmd,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,  # Ctrl-C reaches us only; we stop the nodes in order
            )
        )
        threading.Thread(target=_prefix_lines, args=(procs[-1], f"node-{i}"), daemon=True).start()
    ports = ", ".join(str(node_ports(base_port, i)[0]) for i in range(1, nodes + 1))
    print(f"cluster of {nodes} nodes: client ports {ports}; Ctrl-C stops it", flush=True)

    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    while not stop.is_set() and all(p.poll() is None for p in procs):
        stop.wait(0.2)
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(timeout=30))
        except subprocess.TimeoutExpired:
            p.kill()
            codes.append(p.wait())
    print(f"cluster stopped: exit codes {codes}", flush=True)
    return 0 if all(c == 0 for c in codes) else 1


def _prefix_lines(proc: subprocess.Popen[str], name: str) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(f"{name} | {line}")
        sys.stdout.flush()


def fetch_status(admin: str, timeout_s: float = 2.0) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(f"http://{admin}/v1/status", timeout=timeout_s) as resp:
            data: dict[str, object] = json.load(resp)
            return data
    except (urllib.error.URLError, OSError, ValueError):
        return None


def discover_admins(admins: list[str]) -> list[str]:
    """Every node's admin address from the node registry (the cluster map) of the first of
    ``admins`` that answers, nodes removed from the cluster left out; ``admins`` as given
    when none answers or a node registered no admin address yet."""
    for admin in admins:
        st = fetch_status(admin)
        raw = st.get("shard_map") if st is not None else None
        if not isinstance(raw, str):
            continue
        shard_map = ShardMap.decode(raw.encode())
        found = [
            n.admin_address
            for _, n in sorted(shard_map.nodes.items())
            if n.state != NODE_REMOVED and n.admin_address
        ]
        if len(found) == len(shard_map.up_nodes()):
            return found
    return admins


def find_leader_admin(admins: list[str], roles: tuple[str, ...] = ("leader",)) -> str | None:
    """The first admin address whose node reports one of ``roles`` (a standalone node
    reports "standalone"), or None."""
    for admin in admins:
        st = fetch_status(admin)
        if st is not None and st.get("role") in roles:
            return admin
    return None


def print_status(admins: list[str]) -> int:
    """A node table, then a shard table merged from every reachable node's view: a shard's
    leader, epoch and applied index come from the node that leads it; lag is how far the
    slowest replica's applied index is behind the leader's."""
    rows = [(a, fetch_status(a)) for a in admins]
    nodes = Table(title="ShardKV nodes")
    for col in ("admin", "node", "client", "state", "shards", "leads", "bytes"):
        nodes.add_column(col)
    for admin, s in rows:
        if s is None:
            nodes.add_row(admin, "-", "", "[red]down[/red]", "", "", "")
            continue
        hosted = s.get("shards") or []
        assert isinstance(hosted, list)
        led = sum(1 for sh in hosted if sh["role"] == "leader")
        nodes.add_row(
            admin,
            str(s["node_id"]),
            str(s["client_address"]),
            "up" if s.get("ready", True) else "starting",
            str(len(hosted)),
            str(led),
            format_bytes(sum(int(sh.get("data_bytes", 0)) for sh in hosted)),
        )
    Console().print(nodes)
    placement = next(
        (s["placement"] for _, s in rows if s is not None and isinstance(s.get("placement"), dict)),
        None,
    )
    if isinstance(placement, dict):
        Console().print(
            f"placement group (group 0): leader {placement['leader'] or 'none'}, "
            f"voters {placement['voters']}, learners {placement['learners']}, "
            f"map applied at {placement['applied']}",
            markup=False,
        )
    print_shards(rows)
    return 0 if any(s is not None for _, s in rows) else 1


def format_bytes(count: int) -> str:
    """``1536`` -> ``"1.5 KiB"``: sizes for tables."""
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"  # unreachable


def print_shards(rows: list[tuple[str, dict[str, object] | None]]) -> None:
    """The shard table merged from every reachable node's ``/v1/status`` (``rows``)."""
    shards: dict[int, list[dict[str, object]]] = {}
    for _, s in rows:
        if s is None:
            continue
        hosted = s.get("shards") or []
        assert isinstance(hosted, list)
        for sh in hosted:
            shards.setdefault(int(sh["shard"]), []).append({**sh, "node": s["node_id"]})
    if shards:
        table = Table(title="ShardKV shards")
        columns = ("shard", "slots", "epoch", "leader", "replicas", "applied", "lag", "keys")
        for col in (*columns, "bytes", "state"):
            table.add_column(col)
        for shard_id, views in sorted(shards.items()):
            leader = next((v for v in views if v["role"] == "leader"), None)
            applied = [int(str(v["applied"])) for v in views]
            ref = leader or views[0]
            slots = ",".join(f"{a}-{b}" for a, b in ref["slots"])  # type: ignore[attr-defined]
            table.add_row(
                str(shard_id),
                slots,
                str(ref["epoch"]),
                str(leader["node"]) if leader else "[red]none[/red]",
                ",".join(str(n) for n in ref["replicas"]),  # type: ignore[attr-defined]
                str(ref["applied"]),
                str(max(applied) - min(applied)),
                str(ref["keys"]) if leader else "",
                format_bytes(int(str(ref.get("data_bytes", 0)))) if leader else "",
                str(ref.get("state", "")),
            )
        Console().print(table)
