"""The ``shardkv`` command line: wiring only; the work lives in the packages it calls."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

# gRPC's C core logs INFO lines (goaway, handshake failures) straight to stderr, bypassing
# our structured logs; keep only its errors unless the operator asks for more.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from shardkv import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="shardkv")
@click.option(
    "--admin-token-file",
    default=None,
    help="File with the admin token sent to nodes' admin HTTP (or SHARDKV_ADMIN_TOKEN_FILE).",
)
def main(admin_token_file: str | None) -> None:
    """ShardKV: a durable key-value store that speaks the Redis protocol."""
    if admin_token_file is not None:
        os.environ["SHARDKV_ADMIN_TOKEN_FILE"] = admin_token_file


@main.command()
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="TOML file with settings (keys are the flag names).",
)
@click.option("--bind", default=None, help="Address for the client and admin ports. [127.0.0.1]")
@click.option("--port", type=int, default=None, help="Client (RESP) port. [7379]")
@click.option(
    "--admin-port", type=int, default=None, help="Admin HTTP port (/metrics, /healthz). [7381]"
)
@click.option("--data-dir", default=None, help="Where the data lives. [./shardkv-data]")
@click.option("--max-connections", type=int, default=None, help="Client connection limit. [10000]")
@click.option("--backlog", type=int, default=None, help="Listen backlog. [511]")
@click.option(
    "--log-format", type=click.Choice(["json", "console"]), default=None, help="[console]"
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default=None,
    help="[info]",
)
@click.option("--tls-cert", default=None, help="PEM certificate: serve the client port over TLS.")
@click.option("--tls-key", default=None, help="PEM private key for --tls-cert.")
@click.option("--tls-ca", default=None, help="PEM CA bundle: require client certificates.")
@click.option(
    "--storage-engine",
    type=click.Choice(["rocksdb", "memory"]),
    default=None,
    help="'memory' keeps nothing across restarts (tests only). [rocksdb]",
)
@click.option("--max-bulk-bytes", type=int, default=None, help="Largest bulk string. [512 MiB]")
@click.option(
    "--max-query-buffer-bytes",
    type=int,
    default=None,
    help="Most unparsed input per client. [1 GiB]",
)
@click.option(
    "--max-output-buffer-bytes",
    type=int,
    default=None,
    help="Drop a client whose unread replies pass this. [64 MiB]",
)
@click.option(
    "--enable-fault-injection",
    is_flag=True,
    default=None,
    help="TESTS ONLY: lets the admin port cut this node off from its peers.",
)
@click.option(
    "--join",
    default=None,
    metavar="HOST:PEERPORT[,...]",
    help="Join a running cluster through any of these seeds; no --node-id needed.",
)
@click.option(
    "--join-existing",
    is_flag=True,
    default=None,
    help="Start empty in a one-shard cluster (run `shardkv member add` for it first).",
)
@click.option("--node-id", type=int, default=None, help="This node's id in the cluster. [1]")
@click.option("--peer-port", type=int, default=None, help="Port for other nodes (gRPC). [7380]")
@click.option(
    "--initial-cluster",
    default=None,
    help="Start as a member of a Raft cluster: 1=HOST:PEERPORT,2=HOST:PEERPORT,...",
)
@click.option(
    "--shards",
    type=int,
    default=None,
    help="Shards (Raft groups) of a NEW cluster; read only when it is first created. [16]",
)
@click.option(
    "--replicas",
    type=int,
    default=None,
    help="Replicas per shard of a new cluster, capped by the member count; the scheduler "
    "keeps every shard at this many live replicas. [3]",
)
@click.option(
    "--dead-node-timeout-s",
    type=float,
    default=None,
    help="A node unheard of for this long is dead: its replicas are re-created. [60]",
)
@click.option(
    "--max-concurrent-moves",
    type=int,
    default=None,
    help="Shards the scheduler moves at once, cluster-wide. [4]",
)
@click.option(
    "--shard-split-bytes",
    type=int,
    default=None,
    help="A shard holding more key and value bytes than this splits in two. [64 MiB]",
)
@click.option(
    "--shard-split-ops-per-s",
    type=float,
    default=None,
    help="A shard executing more commands per second than this splits in two; 0 never. [0]",
)
@click.option(
    "--shard-merge-bytes",
    type=int,
    default=None,
    help="Two adjacent cold shards holding together fewer bytes than this merge. [8 MiB]",
)
@click.option(
    "--shard-merge-ops-per-s",
    type=float,
    default=None,
    help="A shard executing fewer commands per second than this is cold (may merge). [50]",
)
@click.option(
    "--shard-min-count",
    type=int,
    default=None,
    help="Merges never leave fewer shards than this; 0: as many as the cluster began with. [0]",
)
@click.option(
    "--snapshot-send-bytes-per-s",
    type=int,
    default=None,
    help="Snapshot bytes per second a node sends to all peers together; 0 no limit. [100 MiB]",
)
@click.option(
    "--rebalance-max-p99-ms",
    type=float,
    default=None,
    help="No balance move or split starts while a node's write p99 is above this; 0 never. [500]",
)
@click.option(
    "--labels",
    default=None,
    help="Failure domains, e.g. host=h1,zone=z1: no two replicas of a shard on one host.",
)
@click.option(
    "--rebalance/--no-rebalance",
    default=None,
    help="Let the scheduler move replicas and leaders by itself. [on]",
)
@click.option(
    "--advertise-host", default=None, help="Host clients are redirected to for this node. [--bind]"
)
@click.option("--peer-tls-cert", default=None, help="PEM certificate for mutual TLS between nodes.")
@click.option("--peer-tls-key", default=None, help="PEM key for --peer-tls-cert.")
@click.option("--peer-tls-ca", default=None, help="PEM CA that signs every node's certificate.")
@click.option(
    "--output-stall-timeout-s",
    type=float,
    default=None,
    help="Drop a client that reads no replies for this long. [60]",
)
@click.option(
    "--idle-timeout-s",
    type=float,
    default=None,
    help="Close a client idle for this long, as Redis's `timeout`; 0 never. [0]",
)
@click.option(
    "--shutdown-deadline-s",
    type=float,
    default=None,
    help="How long shutdown waits for in-flight commands. [10]",
)
@click.option(
    "--cluster-id",
    default=None,
    help="Names the cluster; peers of another cluster are refused. [shardkv]",
)
@click.option(
    "--requirepass", default=None, help="Password of the default user (Redis's requirepass)."
)
@click.option(
    "--protected-mode",
    type=click.Choice(["yes", "no"]),
    default=None,
    help="Serve only loopback clients while the default user has no password. [yes]",
)
@click.option(
    "--admin-token-file",
    default=None,
    help="File holding the bearer token admin calls that change state or read data need.",
)
@click.option(
    "--min-free-disk-bytes",
    type=int,
    default=None,
    help="Below this much free disk, refuse writes and hand leaderships away. [256 MiB]",
)
@click.option("--admin-tls-cert", default=None, help="PEM certificate: serve admin HTTP as HTTPS.")
@click.option("--admin-tls-key", default=None, help="PEM key for --admin-tls-cert.")
def server(config_file: str | None, **flags: Any) -> None:
    """Run a ShardKV server on one node until SIGINT or SIGTERM."""
    from shardkv.node.join import JoinError
    from shardkv.observability.logging import configure_logging
    from shardkv.server.app import run_server
    from shardkv.server.config import ConfigError, load_config
    from shardkv.server.tls import TLSConfigError

    try:
        config = load_config(config_file, overrides=flags)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    configure_logging(config.log_format, config.log_level)
    if config.storage_engine == "memory":
        click.echo(
            "WARNING: --storage-engine memory keeps no data across restarts (for tests only)",
            err=True,
        )
    try:
        code = run_server(config)
    except (TLSConfigError, ConfigError) as exc:
        raise click.UsageError(str(exc)) from exc
    except (OSError, JoinError) as exc:
        click.echo(f"error: cannot start the server: {exc}", err=True)
        sys.exit(1)
    sys.exit(code)


if __name__ == "__main__":
    main()


@main.group()
def cluster() -> None:
    """Run and inspect a local ShardKV cluster."""


@cluster.command("up")
@click.option("--nodes", type=int, default=3, show_default=True, help="How many nodes.")
@click.option(
    "--base-port",
    type=int,
    default=7378,
    show_default=True,
    help="Node i listens for clients on BASE+i, peers on BASE+100+i, admin BASE+200+i.",
)
@click.option(
    "--data-dir",
    default="./shardkv-cluster",
    show_default=True,
    help="Node i keeps its data in DATA_DIR/node-i.",
)
@click.option("--bind", default="127.0.0.1", show_default=True)
@click.option(
    "--shards", type=int, default=16, show_default=True, help="Shards of the new cluster."
)
@click.option("--replicas", type=int, default=3, show_default=True, help="Replicas per shard.")
@click.option(
    "--processes-per-host",
    type=int,
    default=1,
    show_default=True,
    help="Label nodes as this many processes per host (--labels host=hN): one per core.",
)
def cluster_up(
    nodes: int,
    base_port: int,
    data_dir: str,
    bind: str,
    shards: int,
    replicas: int,
    processes_per_host: int,
) -> None:
    """Run a local cluster in the foreground; Ctrl-C stops every node cleanly."""
    from shardkv.cli.local_cluster import run_local_cluster

    sys.exit(
        run_local_cluster(nodes, base_port, data_dir, bind, shards, replicas, processes_per_host)
    )


@cluster.command("status")
@click.option(
    "--admin",
    "admins",
    default="127.0.0.1:7579,127.0.0.1:7580,127.0.0.1:7581",
    show_default=True,
    help="Comma-separated admin HTTP addresses of the nodes.",
)
def cluster_status(admins: str) -> None:
    """A table of every node, then of every shard: slots, epoch, leader, replicas, applied
    index, lag and keys."""
    from shardkv.cli.local_cluster import print_status

    sys.exit(print_status([a.strip() for a in admins.split(",") if a.strip()]))


@main.group()
def certs() -> None:
    """Make a cluster CA and node certificates for mutual TLS between nodes."""


@certs.command("init")
@click.argument("directory")
@click.option("--cluster-id", default="shardkv", show_default=True, help="The cluster's id.")
@click.option("--days", type=int, default=3650, show_default=True, help="Validity of the CA.")
def certs_init(directory: str, cluster_id: str, days: int) -> None:
    """Make DIRECTORY/ca.crt and DIRECTORY/ca.key (kept secret: it signs node certificates)."""
    from shardkv.cli.certs import CertError, init_ca

    try:
        path = init_ca(directory, cluster_id, days)
    except CertError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"CA of cluster {cluster_id}: {path}")


@certs.command("issue")
@click.argument("directory")
@click.option("--node-id", type=int, required=True, help="The node the certificate names.")
@click.option(
    "--host",
    "hosts",
    multiple=True,
    default=("127.0.0.1", "localhost"),
    show_default=True,
    help="An IP address or DNS name peers dial this node at (repeat for several).",
)
@click.option("--cluster-id", default=None, help="The cluster's id. [the CA's]")
@click.option("--days", type=int, default=825, show_default=True, help="Validity.")
def certs_issue(
    directory: str, node_id: int, hosts: tuple[str, ...], cluster_id: str | None, days: int
) -> None:
    """Make DIRECTORY/node-N.crt and .key, signed by DIRECTORY's CA, naming node N."""
    from shardkv.cli.certs import CertError, issue_node

    try:
        cert, key = issue_node(directory, node_id, list(hosts), cluster_id, days)
    except CertError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"node {node_id}: {cert} {key}")


@main.group()
def backup() -> None:
    """Back up a running cluster, or seed a new one from a backup."""


@backup.command("create")
@click.argument("directory")
@click.option(
    "--admin",
    "admins",
    default="127.0.0.1:7381,127.0.0.1:7579,127.0.0.1:7580,127.0.0.1:7581",
    show_default=True,
    help="Comma-separated admin HTTP addresses; the leader among them is used.",
)
def backup_create(directory: str, admins: str) -> None:
    """Write a consistent backup (snapshots, checksums, manifest) into DIRECTORY."""
    from shardkv.cli.backup import BackupError, create_backup

    try:
        manifest = create_backup(directory, [a.strip() for a in admins.split(",") if a.strip()])
    except BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    for g in manifest["groups"]:  # type: ignore[attr-defined]
        click.echo(
            f"group {g['group_id']}: {g['keys']} keys at applied index "
            f"{g['applied_index']} -> {directory}/{g['file']} ({g['bytes']} bytes)"
        )


@backup.command("restore")
@click.argument("directory")
@click.option("--data-dir", required=True, help="A new, empty data directory to seed.")
def backup_restore(directory: str, data_dir: str) -> None:
    """Seed DATA_DIR from the backup in DIRECTORY (once per member of the new cluster)."""
    from shardkv.cli.backup import BackupError, restore_backup

    try:
        manifest = restore_backup(directory, data_dir)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"restored {len(manifest['groups'])} group(s) into {data_dir}; start the "
        "node with --initial-cluster to serve it"
    )


@main.group()
def member() -> None:
    """Change a cluster's membership, one node at a time."""


def _leader_admin(admins: str) -> str:
    from shardkv.cli.local_cluster import find_leader_admin

    leader = find_leader_admin([a.strip() for a in admins.split(",") if a.strip()])
    if leader is None:
        raise click.ClickException(f"no leader among {admins}: is the cluster up?")
    return leader


def _admin_call(method: str, url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    from shardkv.cli.nodes import call

    return call(method, url, body, timeout_s=180)


ADMINS_HELP = "Comma-separated admin HTTP addresses; the leader among them is used."
DEFAULT_ADMINS = "127.0.0.1:7381,127.0.0.1:7579,127.0.0.1:7580,127.0.0.1:7581"


@member.command("add")
@click.option("--id", "node_id", type=int, required=True, help="The new node's id.")
@click.option("--peer-address", required=True, help="The new node's HOST:PEERPORT.")
@click.option("--admin", "admins", default=DEFAULT_ADMINS, show_default=True, help=ADMINS_HELP)
def member_add(node_id: int, peer_address: str, admins: str) -> None:
    """Add a node as a learner, then promote it to voter once it has caught up.

    Start the new node first with --join-existing and an --initial-cluster that lists the current
    members and itself."""
    leader = _leader_admin(admins)
    out = _admin_call(
        "POST", f"http://{leader}/v1/members", {"node_id": node_id, "peer_address": peer_address}
    )
    click.echo(f"node {node_id} is a voter; voters now {out['voters']}")


@member.command("remove")
@click.option("--id", "node_id", type=int, required=True, help="The node to remove.")
@click.option("--admin", "admins", default=DEFAULT_ADMINS, show_default=True, help=ADMINS_HELP)
def member_remove(node_id: int, admins: str) -> None:
    """Remove a node from the cluster (then stop it)."""
    leader = _leader_admin(admins)
    out = _admin_call("DELETE", f"http://{leader}/v1/members/{node_id}")
    click.echo(f"node {node_id} removed; voters now {out['voters']}")


@main.group()
def node() -> None:
    """Nodes of a running cluster."""


@node.command("remove")
@click.option("--id", "node_id", type=int, required=True, help="The node to remove.")
@click.option("--admin", "admins", default=DEFAULT_ADMINS, show_default=True, help=ADMINS_HELP)
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until drained.")
@click.option("--timeout-s", type=float, default=1800.0, show_default=True)
def node_remove(node_id: int, admins: str, wait: bool, timeout_s: float) -> None:
    """Drain every replica off a node, then remove it from the cluster (stop it after).

    The placement scheduler re-creates each of its replicas on the other nodes (at most
    max_concurrent_moves at a time) before the node leaves, so every shard keeps its
    replica count throughout."""
    from shardkv.cli.nodes import remove_node

    remove_node(_admin_list(admins), node_id, wait=wait, timeout_s=timeout_s, echo=click.echo)


@node.command("list")
@click.option("--admin", "admins", default=DEFAULT_ADMINS, show_default=True, help=ADMINS_HELP)
def node_list(admins: str) -> None:
    """Every node of the cluster, found through the node registry (the cluster map) of
    any node given: addresses, state, shards hosted and led; then every shard."""
    from shardkv.cli.local_cluster import discover_admins, print_status

    sys.exit(print_status(discover_admins([a.strip() for a in admins.split(",") if a.strip()])))


@main.group()
def shard() -> None:
    """Shards (Raft groups) of a running cluster."""


@shard.command("list")
@click.option("--admin", "admins", default=DEFAULT_ADMINS, show_default=True, help=ADMINS_HELP)
def shard_list(admins: str) -> None:
    """Every shard: slots, epoch, leader, replicas, keys and bytes."""
    from shardkv.cli.local_cluster import discover_admins, fetch_status, print_shards

    every = discover_admins(_admin_list(admins))
    rows = [(a, fetch_status(a)) for a in every]
    if not any(s is not None for _, s in rows):
        raise click.ClickException(f"no node answered at {', '.join(every)}")
    print_shards(rows)


@shard.command("split")
@click.option("--id", "shard_id", type=int, required=True, help="The shard to split.")
@click.option(
    "--slot", type=int, default=None, help="First slot of the new shard. [halves the slots]"
)
@click.option("--admin", "admins", default=DEFAULT_ADMINS, show_default=True, help=ADMINS_HELP)
def shard_split(shard_id: int, slot: int | None, admins: str) -> None:
    """Split a shard in two at a slot boundary. The new shard starts on the same
    replicas from the data already there (no copy); clients are sent to it with -MOVED."""
    from shardkv.cli.nodes import split_shard

    child = split_shard(_admin_list(admins), shard_id, slot)
    click.echo(f"shard {shard_id} splits; the slots moved go to new shard {child}")


@main.group()
def rebalance() -> None:
    """The placement scheduler's moves: pause, resume, watch."""


def _admin_list(admins: str) -> list[str]:
    return [a.strip() for a in admins.split(",") if a.strip()]


def _set_rebalance(admins: str, paused: bool) -> None:
    from shardkv.cli.nodes import set_rebalance

    set_rebalance(_admin_list(admins), paused=paused)
    click.echo(f"balancing {'paused' if paused else 'resumed'}")


@rebalance.command("pause")
@click.option("--admin", "admins", default=DEFAULT_ADMINS, show_default=True, help=ADMINS_HELP)
def rebalance_pause(admins: str) -> None:
    """Stop balance and leader moves (moves under way finish; repairs and drains go on)."""
    _set_rebalance(admins, paused=True)


@rebalance.command("resume")
@click.option("--admin", "admins", default=DEFAULT_ADMINS, show_default=True, help=ADMINS_HELP)
def rebalance_resume(admins: str) -> None:
    """Let the scheduler balance replicas and leaders again."""
    _set_rebalance(admins, paused=False)


@rebalance.command("status")
@click.option("--admin", "admins", default=DEFAULT_ADMINS, show_default=True, help=ADMINS_HELP)
@click.option("--wait", is_flag=True, help="Draw a progress bar until no move is under way.")
@click.option("--timeout-s", type=float, default=1800.0, show_default=True)
def rebalance_status_command(admins: str, wait: bool, timeout_s: float) -> None:
    """Whether balancing is paused, and every move under way with its step."""
    import time

    from shardkv.cli.nodes import rebalance_status

    status = rebalance_status(_admin_list(admins))
    state = "paused" if status["paused"] else "on"
    if status.get("backing_off"):
        state += ", holding back: a node's write p99 is above rebalance_max_p99_ms"
    click.echo(f"balancing: {state}")
    for split in status.get("splits", []):
        click.echo(
            f"shard {split['shard']}: splitting at slot {split['first_slot']} into shard "
            f"{split['child']}"
        )
    operators = status["operators"]
    for op in operators:
        click.echo(
            f"shard {op['shard']}: {op['replicas']} -> {op['target']}, step "
            f"{op['done_steps']}/{op['total_steps']}: {op['step']}"
        )
    if not operators:
        click.echo("no move under way")
    if not wait or not operators:
        return
    deadline = time.monotonic() + timeout_s
    with click.progressbar(length=len(operators), label="moves") as bar:
        running = {op["shard"] for op in operators}
        while running and time.monotonic() < deadline:
            time.sleep(1.0)
            now = {op["shard"] for op in rebalance_status(_admin_list(admins))["operators"]}
            finished = running - now
            bar.update(len(finished))
            running -= finished
    if running:
        raise click.ClickException(f"moves of shards {sorted(running)} still under way")
