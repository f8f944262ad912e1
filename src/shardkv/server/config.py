"""Server settings: defaults, then a TOML file, then ``SHARDKV_*`` variables, then flags.

Every bound the server enforces is a named field here, so an operator can read the limits
off one place. Field names are the TOML keys; ``SHARDKV_<FIELD>`` (upper case) overrides
them; command-line flags (``--max-connections`` for ``max_connections``) override both.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from shardkv.core.resp import RespLimits


class ConfigError(ValueError):
    """A setting is missing, unknown or out of range; the message names it."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    bind: str = "127.0.0.1"
    port: int = 7379
    admin_port: int = 7381
    data_dir: str = "./shardkv-data"
    storage_engine: str = "rocksdb"
    max_connections: int = 10000
    backlog: int = 511
    log_format: str = "console"
    log_level: str = "info"
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    # RESP bounds (Redis's defaults: proto-max-bulk-len, client-query-buffer-limit, ...).
    max_bulk_bytes: int = 512 * 1024 * 1024
    max_args: int = 1024 * 1024
    max_inline_bytes: int = 64 * 1024
    max_query_buffer_bytes: int = 1024 * 1024 * 1024
    # Output to a client that does not read: pause reading its input above the high-water
    # mark, drop it when the buffer passes the hard limit or stays paused too long.
    output_high_water_bytes: int = 1024 * 1024
    max_output_buffer_bytes: int = 64 * 1024 * 1024
    output_stall_timeout_s: float = 60.0
    # Stop reading a busy connection's input once this much is buffered and unprocessed.
    input_pause_bytes: int = 1024 * 1024
    # Commands taken from one connection per turn, and applied in one storage batch.
    max_commands_per_read: int = 1024
    max_batch_commands: int = 8192
    # Commands accepted but not yet applied, over all connections; past it: -TRYAGAIN.
    max_pending_commands: int = 100_000
    # Commands one client may queue between MULTI and EXEC (past it the EXEC aborts).
    max_transaction_commands: int = 10_000
    storage_threads: int = 0  # 0: from the CPU count
    expire_sweep_interval_ms: int = 100
    expire_sweep_max_keys: int = 1000
    shutdown_deadline_s: float = 10.0
    #: Close a client that sent nothing for this long (Redis's ``timeout``); 0: never.
    idle_timeout_s: float = 0.0
    #: How often idle clients are looked for; a client is closed at most this late.
    idle_check_interval_s: float = 1.0
    # Cluster mode (a Raft group of processes): on when initial_cluster is set.
    node_id: int = 1
    peer_port: int = 7380
    #: "1=host:peerport,2=host:peerport,..." with this node among them.
    initial_cluster: str | None = None
    #: host clients should use for this node in -MOVED replies (default: bind).
    advertise_host: str | None = None
    peer_tls_cert: str | None = None
    peer_tls_key: str | None = None
    peer_tls_ca: str | None = None
    tick_interval_ms: int = 100
    election_timeout_ticks: int = 10
    snapshot_interval_entries: int = 10_000
    #: ... or after this many bytes of applied log entries, or the shard's size if larger
    #: (the log is bounded in bytes too).
    snapshot_interval_bytes: int = 64 << 20
    compaction_margin_entries: int = 1_000
    #: Start empty as a member of an existing one-shard cluster (after `shardkv member add`)
    #: instead of bootstrapping one.
    join_existing: bool = False
    #: "host:peerport[,host:peerport...]": join a running cluster through any of these
    #: seeds (the placement group gives this node its id, kept in the data dir). A DNS
    #: name that resolves to several addresses counts as one seed per address.
    join: str | None = None
    #: Shards (Raft groups) a NEW cluster splits the 16384 slots into; read only when the
    #: cluster is first created (the map is kept in the data dir afterwards).
    shards: int = 16
    #: Replicas per shard of a new cluster, capped by the number of initial members; the
    #: placement scheduler keeps every shard at this many live replicas.
    replicas: int = 3
    #: A node the placement group's leader has not heard from for this long is dead: its
    #: replicas are re-created on live nodes.
    dead_node_timeout_s: float = 60.0
    #: Shards moving (a membership change under way) at once, cluster-wide.
    max_concurrent_moves: int = 4
    #: Whether the placement scheduler moves replicas and leaders by itself.
    rebalance: bool = True
    #: A shard holding more key and value bytes than this splits in two at the slot
    #: halving its slots (the new shard starts on the same replicas; no data moves).
    shard_split_bytes: int = 64 << 20
    #: A shard whose leader executes more client commands per second than this splits
    #: too. 0 (the default): never by load, since halving a shard's slots spreads its
    #: load only when the load spreads over its keys; set it where it does.
    shard_split_ops_per_s: float = 0.0
    #: Two shards whose slots touch merge when together they hold fewer key and value
    #: bytes than this (and than a quarter of ``shard_split_bytes``), each runs fewer
    #: client commands per second than ``shard_merge_ops_per_s``, and the cluster has
    #: more than ``shard_min_count`` shards (0, the default: as many as the cluster was
    #: created with, ``--shards``).
    shard_merge_bytes: int = 8 << 20
    shard_merge_ops_per_s: float = 50.0
    shard_min_count: int = 0
    #: Snapshot bytes per second a node sends to all its peers together (moves, catch-up),
    #: so rebalancing cannot take all of a node's disk and network; 0: no limit.
    snapshot_send_bytes_per_s: int = 100 << 20
    #: The scheduler starts no balance move or split while a node's client-write p99 (over
    #: the last 10 s) is above this many ms; repairs and drains go on. 0: never hold back.
    rebalance_max_p99_ms: float = 500.0
    #: Failure domains, "key=value,...": no two replicas of a shard share a ``host``, and
    #: replicas spread over ``zone``s when there are enough (e.g. "host=h1,zone=z1").
    labels: str | None = None
    #: Test-only: POST /v1/test/partition on the admin port cuts this node off from peers.
    enable_fault_injection: bool = False
    #: Below this much free space in data_dir, the node refuses writes, hands its
    #: leaderships away and takes no new log entries until 1.5 times this is free again
    #: (`node.disk_guard`); checked every disk_check_interval_ms.
    min_free_disk_bytes: int = 256 << 20
    disk_check_interval_ms: int = 250
    #: Names the cluster: every peer call carries it and a node of another cluster is
    #: refused (etcd's ``--initial-cluster-token``); node certificates name it too.
    cluster_id: str = "shardkv"
    #: The ``default`` user's password (Redis's ``requirepass``) until an ``ACL SETUSER
    #: default`` stores that user cluster-wide. None: the default user needs none.
    requirepass: str | None = None
    #: Redis's protected mode: while the default user needs no password, only loopback
    #: clients are served (others get ``-DENIED``).
    protected_mode: bool = True
    #: A file holding the bearer token that admin HTTP calls which change state or read
    #: data must carry (``Authorization: Bearer TOKEN``). None: those calls are served
    #: only to loopback callers while the default user needs no password, and otherwise
    #: need an ACL user's credentials (HTTP Basic).
    admin_token_file: str | None = None
    #: Serve admin HTTP over TLS with this PEM certificate and key (HTTPS).
    admin_tls_cert: str | None = None
    admin_tls_key: str | None = None

    def __post_init__(self) -> None:
        positive = (
            "max_connections",
            "backlog",
            "max_bulk_bytes",
            "max_args",
            "max_inline_bytes",
            "max_query_buffer_bytes",
            "output_high_water_bytes",
            "max_output_buffer_bytes",
            "input_pause_bytes",
            "max_commands_per_read",
            "max_batch_commands",
            "max_pending_commands",
            "max_transaction_commands",
            "expire_sweep_interval_ms",
            "expire_sweep_max_keys",
            "shards",
            "replicas",
            "dead_node_timeout_s",
            "max_concurrent_moves",
            "shard_split_bytes",
            "shard_merge_bytes",
            "disk_check_interval_ms",
            "snapshot_interval_bytes",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        parse_labels(self.labels)  # raises ConfigError
        for name in ("port", "admin_port"):
            value = getattr(self, name)
            if not 0 <= value <= 65535:
                raise ConfigError(f"{name} must be a TCP port (0-65535), got {value}")
        if self.min_free_disk_bytes < 0:
            raise ConfigError(f"min_free_disk_bytes must be >= 0, got {self.min_free_disk_bytes}")
        if self.shard_min_count < 0:
            raise ConfigError(f"shard_min_count must be >= 0, got {self.shard_min_count}")
        if self.shard_merge_ops_per_s < 0:
            raise ConfigError(
                f"shard_merge_ops_per_s must be >= 0, got {self.shard_merge_ops_per_s}"
            )
        if self.shard_split_ops_per_s < 0:
            raise ConfigError(
                f"shard_split_ops_per_s must be >= 0, got {self.shard_split_ops_per_s}"
            )
        if self.rebalance_max_p99_ms < 0:
            raise ConfigError(f"rebalance_max_p99_ms must be >= 0, got {self.rebalance_max_p99_ms}")
        if self.snapshot_send_bytes_per_s < 0:
            raise ConfigError(
                f"snapshot_send_bytes_per_s must be >= 0, got {self.snapshot_send_bytes_per_s}"
            )
        if self.idle_timeout_s < 0:
            raise ConfigError(
                f"idle_timeout_s must be 0 (never) or positive, got {self.idle_timeout_s}"
            )
        if self.idle_check_interval_s <= 0:
            raise ConfigError(
                f"idle_check_interval_s must be positive, got {self.idle_check_interval_s}"
            )
        if self.log_format not in ("json", "console"):
            raise ConfigError(f"log_format must be 'json' or 'console', got {self.log_format!r}")
        if self.storage_engine not in ("rocksdb", "memory"):
            raise ConfigError(
                f"storage_engine must be 'rocksdb' or 'memory', got {self.storage_engine!r}"
            )
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("tls_cert and tls_key must be given together")
        if self.tls_ca is not None and self.tls_cert is None:
            raise ConfigError("tls_ca (client certificates) needs tls_cert and tls_key")
        if self.initial_cluster is not None:
            members = self.cluster_members
            if self.node_id not in members:
                raise ConfigError(
                    f"node_id {self.node_id} is not in initial_cluster {self.initial_cluster!r}"
                )
        if self.join is not None:
            if self.initial_cluster is not None:
                raise ConfigError("join (through seeds) and initial_cluster exclude each other")
            if not self.join.strip():
                raise ConfigError("join lists no seed; give HOST:PEERPORT[,HOST:PEERPORT...]")
            if self.peer_port == 0:
                raise ConfigError("join needs a fixed peer_port: the cluster dials it")
        if self.shards > 16384:
            raise ConfigError(f"shards must be at most 16384 (one per slot), got {self.shards}")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", self.cluster_id):
            raise ConfigError(
                f"cluster_id must be 1-63 letters, digits, '_', '.' or '-', got {self.cluster_id!r}"
            )
        if (self.admin_tls_cert is None) != (self.admin_tls_key is None):
            raise ConfigError("admin_tls_cert and admin_tls_key go together")
        peer_tls = (self.peer_tls_cert, self.peer_tls_key, self.peer_tls_ca)
        if any(x is not None for x in peer_tls) and None in peer_tls:
            raise ConfigError("peer_tls_cert, peer_tls_key and peer_tls_ca go together")
        if self.output_high_water_bytes > self.max_output_buffer_bytes:
            raise ConfigError("output_high_water_bytes must not exceed max_output_buffer_bytes")

    @property
    def tls_enabled(self) -> bool:
        return self.tls_cert is not None

    @property
    def resp_limits(self) -> RespLimits:
        return RespLimits(
            max_bulk_bytes=self.max_bulk_bytes,
            max_args=self.max_args,
            max_inline_bytes=self.max_inline_bytes,
            max_unparsed_bytes=self.max_query_buffer_bytes,
        )

    @property
    def cluster_members(self) -> dict[int, str]:
        """``initial_cluster`` parsed: node id -> peer address."""
        members: dict[int, str] = {}
        for item in (self.initial_cluster or "").split(","):
            if not item.strip():
                continue
            node, sep, address = item.strip().partition("=")
            if not sep or not node.isdigit() or int(node) <= 0 or ":" not in address:
                raise ConfigError(
                    f"initial_cluster entry {item!r} is not ID=HOST:PORT (e.g. 1=127.0.0.1:7380)"
                )
            members[int(node)] = address
        if self.initial_cluster is not None and not members:
            raise ConfigError("initial_cluster lists no members")
        return members

    @property
    def client_address(self) -> str:
        host = self.advertise_host or self.bind
        return f"{host}:{self.port}"

    @property
    def admin_address(self) -> str:
        """Where operators reach this node's admin HTTP ("" when it is off)."""
        if not self.admin_port:
            return ""
        host = self.advertise_host or self.bind
        return f"{host}:{self.admin_port}"

    @property
    def storage_thread_count(self) -> int:
        if self.storage_threads > 0:
            return self.storage_threads
        return max(2, min(32, (os.cpu_count() or 1) + 2))


_FIELDS = {f.name: f for f in fields(ServerConfig)}


def _coerce(name: str, raw: Any) -> Any:
    kind = _FIELDS[name].type
    if raw is None:
        return None
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        return str(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name}: cannot read {raw!r} as {kind}") from exc


_LABEL_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def parse_labels(text: str | None) -> tuple[tuple[str, str], ...]:
    """``"host=h1,zone=z1"`` as sorted (key, value) pairs; raises `ConfigError` for
    anything else (keys and values: letters, digits, ``_ . -``; each key once)."""
    if not text:
        return ()
    labels: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep or not _LABEL_PART.fullmatch(key) or not _LABEL_PART.fullmatch(value):
            raise ConfigError(f"labels: expected key=value[,key=value...], got {part!r}")
        if key in labels:
            raise ConfigError(f"labels: {key!r} given twice")
        labels[key] = value
    return tuple(sorted(labels.items()))


def load_config(
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ServerConfig:
    """Build the settings: defaults < TOML file < ``SHARDKV_*`` variables < ``overrides``.

    ``overrides`` holds command-line values; ``None`` values mean "not given". Unknown keys
    in the file or the overrides raise :class:`ConfigError`; unknown ``SHARDKV_*`` variables
    are ignored, since the environment is shared with other tools.
    """
    values: dict[str, Any] = {}
    if config_file is not None:
        try:
            data = tomllib.loads(Path(config_file).read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read config file {config_file}: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {config_file} is not valid TOML: {exc}") from exc
        for key, raw in data.items():
            name = key.replace("-", "_")
            if name not in _FIELDS:
                raise ConfigError(f"config file {config_file}: unknown setting {key!r}")
            values[name] = _coerce(name, raw)
    env = os.environ if environ is None else environ
    for name in _FIELDS:
        raw = env.get("SHARDKV_" + name.upper())
        if raw is not None and raw != "":
            values[name] = _coerce(name, raw)
    for name, raw in (overrides or {}).items():
        if raw is None:
            continue
        if name not in _FIELDS:
            raise ConfigError(f"unknown setting {name!r}")
        values[name] = _coerce(name, raw)
    return dataclasses.replace(ServerConfig(), **values)
