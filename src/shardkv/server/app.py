"""The single-node ShardKV server process: client port, admin HTTP, storage, shutdown.

Lifecycle: ``await Server(config).run()`` opens storage, listens, and serves until SIGINT
or SIGTERM. Shutdown then: stop accepting, stop reading from clients, let commands already
handed to the committer finish and be answered (within ``shutdown_deadline_s``), close
client connections, sync and close RocksDB, and return 0. A second signal exits at once
(status 1); acknowledged writes are already durable, so that loses nothing acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import resource
import signal
import ssl
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shardkv.core.cluster.placement import SHARD_MAP_KEY
from shardkv.core.cluster.shardmap import NODE_UP, ShardInfo, ShardMap
from shardkv.core.engine import DATA, META, WriteBatch
from shardkv.core.kv import KVStateMachine
from shardkv.core.kv.scope import KeyScope
from shardkv.core.raft import NotLeaderError
from shardkv.core.resp import ErrorReply, Reply
from shardkv.node.disk_guard import DiskGuard
from shardkv.node.join import JOIN_IDENTITY_KEY, JoinError, join_cluster
from shardkv.node.runtime import MembershipError
from shardkv.node.write_path import WritePath
from shardkv.observability.logging import get_logger
from shardkv.observability.metrics import ServerMetrics
from shardkv.server import cluster_page
from shardkv.server import commands as conn_commands
from shardkv.server.acl import AclRegistry
from shardkv.server.admin_auth import AdminGuard, read_token
from shardkv.server.cluster import ClusterFrontend, peer_settings
from shardkv.server.committer import Committer
from shardkv.server.config import ServerConfig
from shardkv.server.connection import ClientConnection, is_loopback
from shardkv.server.tls import TLSStream, server_context
from shardkv.storage import Engine, open_engine
from shardkv.storage.kv_snapshot import RESTORE_IN_PROGRESS_KEY, iter_snapshot_data

log = get_logger(__name__)


class Server:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.metrics = ServerMetrics()
        self.started_s = time.monotonic()
        self.port = config.port
        self.admin_port = config.admin_port
        self._clients: dict[int, ClientConnection] = {}
        self._next_client_id = 0
        self._total_connections = 0
        self._rejected_connections = 0
        self._stop = asyncio.Event()
        self._signals = 0
        self._exit_code = 0
        self._engine: Engine | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._listener: asyncio.AbstractServer | None = None
        self._admin_runner: web.AppRunner | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._disk_watch: asyncio.Task[None] | None = None
        self._disk_guard: DiskGuard | None = None
        self._idle_closer: asyncio.Task[None] | None = None
        self._ssl: ssl.SSLContext | None = None
        self._tracemalloc_baseline: tracemalloc.Snapshot | None = None
        self.committer: WritePath
        self.cluster: ClusterFrontend | None = None
        self.acl: AclRegistry
        self._admin_token: str | None = None

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(_quiet_exception_handler)
        if cfg.tls_cert is not None and cfg.tls_key is not None:
            self._ssl = server_context(cfg.tls_cert, cfg.tls_key, cfg.tls_ca)
        self._admin_token = read_token(cfg.admin_token_file)  # a bad file stops us first
        self._executor = ThreadPoolExecutor(
            max_workers=cfg.storage_thread_count, thread_name_prefix="storage"
        )
        self._engine = await loop.run_in_executor(
            self._executor, open_engine, cfg.storage_engine, os.path.join(cfg.data_dir, "db")
        )
        cluster_cfg, join_map = await self._cluster_identity(self._engine)
        if cluster_cfg is not None:
            self.cluster = ClusterFrontend(
                cluster_cfg, self._engine, self._executor, self.metrics.registry, join_map
            )
            self.cluster.runtime.on_fatal = self._on_storage_failure
            await self.cluster.start()
            self.committer = self.cluster
            self._machines = [r.machine for _, r in self.cluster.runtime.groups()]
        else:
            machine = KVStateMachine(self._engine)
            self.committer = Committer(
                machine,
                self._engine,
                self._executor,
                self.metrics,
                max_batch_commands=cfg.max_batch_commands,
                max_pending_commands=cfg.max_pending_commands,
                max_group_reply_bytes=cfg.output_high_water_bytes,
                on_fatal=self._on_storage_failure,
            )
            self._machines = [machine]
        self.acl = AclRegistry(
            cfg.requirepass,
            self._engine,
            self._executor,
            self.cluster,
            change_timeout_s=cfg.shutdown_deadline_s * 3,
        )
        await self.acl.load()
        # The admin port first: once a client's PING is answered, status and health are
        # too (a script that waits for PING and then asks /v1/status must not race).
        await self._start_admin()
        factory: Any = self._accept_tls if self._ssl is not None else self._accept_plain
        self._listener = await loop.create_server(
            factory, host=cfg.bind, port=cfg.port, backlog=cfg.backlog, reuse_address=True
        )
        sock = self._listener.sockets[0]
        self.port = sock.getsockname()[1]
        self._sweeper = asyncio.create_task(self._sweep_expired())
        if cfg.storage_engine != "memory":  # (an in-memory engine writes no disk)
            self._disk_watch = asyncio.create_task(self._watch_disk())
        if cfg.idle_timeout_s > 0:
            self._idle_closer = asyncio.create_task(self._close_idle_clients())
        log.info(
            "server_listening",
            bind=cfg.bind,
            port=self.port,
            admin_port=self.admin_port,
            data_dir=os.path.abspath(cfg.data_dir),
            tls=self._ssl is not None,
            client_certs_required=cfg.tls_ca is not None,
            max_connections=cfg.max_connections,
            pid=os.getpid(),
        )
        if cfg.enable_fault_injection:
            log.warning("fault_injection_enabled", note="for tests only: never in production")

    async def _cluster_identity(
        self, engine: Engine
    ) -> tuple[ServerConfig | None, ShardMap | None]:
        """Which cluster this node is in: the flags' ``initial_cluster``; else the identity
        kept in the data dir by an earlier ``--join`` (so a restart needs no cluster flags);
        else, with ``--join SEEDS``, a new identity from the placement group (stored before
        anything else happens). None: standalone. Raises `JoinError`."""
        cfg = self.config
        if engine.get(META, RESTORE_IN_PROGRESS_KEY) is not None:
            raise JoinError(
                f"{cfg.data_dir} holds an unfinished `shardkv backup restore`: remove the "
                "directory and run the restore again"
            )
        if cfg.initial_cluster is not None:
            return cfg, None
        raw = engine.get(META, JOIN_IDENTITY_KEY)
        if raw is None and cfg.join is None:
            return None, None
        tls = peer_settings(cfg).tls
        host = cfg.advertise_host or cfg.bind
        peer_address = f"{host}:{cfg.peer_port}"
        if raw is None:
            assert cfg.join is not None
            if engine.get(META, SHARD_MAP_KEY) is not None or engine.scan(DATA, b"", None, 1):
                # Joining would hand this data dir a new identity over data it already
                # holds (a member's shards, or standalone keys): refuse, change nothing.
                raise JoinError(
                    f"the data dir {cfg.data_dir} already holds data (of a cluster member "
                    "or a standalone server); a node joins through --join with an empty "
                    "data dir. Restart this one with its original flags instead."
                )
            joined = await join_cluster(
                cfg.join,
                peer_address=peer_address,
                client_address=cfg.client_address,
                admin_address=cfg.admin_address,
                tls=tls,
                cluster_id=cfg.cluster_id,
            )
            identity = {"node_id": joined.node_id, "join_map": joined.shard_map.encode().decode()}
            batch = WriteBatch()
            batch.put(META, JOIN_IDENTITY_KEY, json.dumps(identity).encode())
            engine.write(batch)
            engine.sync()
            raw = json.dumps(identity).encode()
        identity = json.loads(raw)
        node_id = int(identity["node_id"])
        join_map = ShardMap.decode(str(identity["join_map"]).encode())
        members = {
            n.node_id: n.peer_address
            for n in join_map.nodes.values()
            if n.state == NODE_UP and n.peer_address
        }
        members[node_id] = peer_address
        initial = ",".join(f"{n}={a}" for n, a in sorted(members.items()))
        return (
            dataclasses.replace(
                cfg, node_id=node_id, initial_cluster=initial, join=None, join_existing=True
            ),
            join_map,
        )

    async def run(self) -> int:
        """Serve until a signal; return the process exit status."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)
        await self.start()
        await self._stop.wait()
        await self.shutdown()
        return self._exit_code

    def request_stop(self) -> None:
        self._stop.set()

    def _on_signal(self, sig: signal.Signals) -> None:
        self._signals += 1
        if self._signals == 1:
            log.info(
                "shutdown_requested", signal=sig.name, deadline_s=self.config.shutdown_deadline_s
            )
            self._stop.set()
        else:
            log.warning("shutdown_forced", signal=sig.name)
            os._exit(1)

    def _on_storage_failure(self, exc: BaseException) -> None:
        self._exit_code = 1
        self._stop.set()

    async def shutdown(self) -> None:
        cfg = self.config
        if self._listener is not None:
            self._listener.close()
        for conn in list(self._clients.values()):
            conn.stop_reading()
        for task in (self._sweeper, self._idle_closer, self._disk_watch):
            if task is not None:
                task.cancel()
        try:
            await asyncio.wait_for(self.committer.wait_idle(), cfg.shutdown_deadline_s)
        except TimeoutError:
            log.warning("shutdown_deadline_passed", pending=self.committer.pending_commands)
        if self.cluster is not None:
            await self.cluster.stop()  # hands leadership to a caught-up follower first
        for conn in list(self._clients.values()):
            conn.close_for_shutdown()
        await asyncio.sleep(0)  # let transports flush the last replies
        if self._admin_runner is not None:
            await self._admin_runner.cleanup()
        if self._engine is not None and self._executor is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._executor, self._engine.close)
            self._executor.shutdown(wait=True)
        log.info("server_stopped", exit_code=self._exit_code)

    # -- connections -------------------------------------------------------------------

    def _accept_plain(self) -> asyncio.Protocol:
        return ClientConnection(self)

    def _accept_tls(self) -> asyncio.Protocol:
        assert self._ssl is not None
        return TLSStream(self._ssl, ClientConnection(self), self._tls_handshake_failed)

    def _tls_handshake_failed(self, peer: str, reason: str) -> None:
        self.metrics.connections_rejected.labels(reason="tls_handshake").inc()
        log.warning("tls_handshake_failed", peer=peer, error=reason)

    def admit(self, conn: ClientConnection) -> bool:
        self._total_connections += 1
        if len(self._clients) >= self.config.max_connections or self._stop.is_set():
            self._rejected_connections += 1
            return False
        self._next_client_id += 1
        conn.id = self._next_client_id
        self._clients[conn.id] = conn
        self.metrics.connections_accepted.inc()
        self.metrics.connections_open.set(len(self._clients))
        return True

    def release(self, conn: ClientConnection) -> None:
        self._clients.pop(conn.id, None)
        self.metrics.connections_open.set(len(self._clients))

    def clients(self) -> list[ClientConnection]:
        return list(self._clients.values())

    def run_connection_command(
        self, conn: ClientConnection, name: str, args: list[bytes]
    ) -> Reply | Coroutine[Any, Any, Reply]:
        """A connection command's reply, or a coroutine giving it (see `server.commands`)."""
        handler = conn_commands.HANDLERS.get(name.split("|", 1)[0])
        if handler is None:
            return ErrorReply(f"ERR command '{name}' is not available on this server")
        return handler(self, conn, args)

    # -- views for INFO and CONFIG GET --------------------------------------------------

    def config_view(self) -> dict[str, str]:
        cfg = self.config
        return {
            "bind": cfg.bind,
            "port": str(self.port),
            "maxclients": str(cfg.max_connections),
            "tcp-backlog": str(cfg.backlog),
            "dir": os.path.abspath(cfg.data_dir),
            "databases": "1",
            "save": "",
            "appendonly": "yes",
            "appendfsync": "always",
            "proto-max-bulk-len": str(cfg.max_bulk_bytes),
            "client-query-buffer-limit": str(cfg.max_query_buffer_bytes),
            "timeout": str(int(cfg.idle_timeout_s)),
            "cluster-enabled": "yes" if self.cluster is not None else "no",
            "tls-port": str(self.port) if self._ssl is not None else "0",
        }

    def info_sections(self) -> dict[str, dict[str, str]]:
        rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # INFO keyspace counts every shard hosted here (DBSIZE: only those this node leads).
        machines = (
            [r.machine for _, r in self.cluster.runtime.groups()]
            if self.cluster is not None  # shards come and go as the scheduler moves them
            else self._machines
        )
        keys = sum(m.key_count() for m in machines)
        expires = sum(m.expires_count() for m in machines)
        stats = self.metrics.commands.counts
        return {
            "server": conn_commands.server_info_fields(self),
            "clients": {
                "connected_clients": str(len(self._clients)),
                "maxclients": str(self.config.max_connections),
                "blocked_clients": "0",
            },
            "memory": {"used_memory_peak_rss": str(rss_kib * 1024)},
            "persistence": {
                "loading": "0",
                "storage_engine": self.config.storage_engine,
                "aof_enabled": "0",
                "fsync_policy": "every-batch (group commit before each reply)",
            },
            "stats": {
                "total_connections_received": str(self._total_connections),
                "total_commands_processed": str(sum(stats.values())),
                "rejected_connections": str(self._rejected_connections),
                "expired_keys": str(self.committer.expired_keys),
            },
            "cluster": {"cluster_enabled": "1" if self.cluster is not None else "0"},
            "keyspace": {"db0": f"keys={keys},expires={expires},avg_ttl=0"} if keys else {},
        }

    # -- background work -----------------------------------------------------------------

    async def _sweep_expired(self) -> None:
        interval_s = self.config.expire_sweep_interval_ms / 1000
        while True:
            await asyncio.sleep(interval_s)
            if self.committer.pending_commands < self.config.max_pending_commands // 2:
                self.committer.submit_sweep(self.config.expire_sweep_max_keys)

    async def _watch_disk(self) -> None:
        """Run the disk guard (`node.disk_guard`) every ``disk_check_interval_ms``."""
        cfg = self.config
        name = f"node {cfg.node_id}" if self.cluster is not None else "this server"
        guard = DiskGuard(cfg.data_dir, cfg.min_free_disk_bytes, name, self.cluster is not None)
        self._disk_guard = guard
        reply: ErrorReply | None = None
        while True:
            verdict = guard.check()
            self.metrics.disk_free_bytes.set(guard.free_bytes)
            self.metrics.disk_full.set(verdict is not None)
            if verdict is not reply:
                reply = verdict
                self.committer.set_disk_full(reply)
            await asyncio.sleep(cfg.disk_check_interval_ms / 1000)

    async def _close_idle_clients(self) -> None:
        """Redis's ``timeout``: close clients that sent nothing for ``idle_timeout_s``.

        A client waiting for its own command's reply is not idle, whatever its age.
        """
        timeout_s = self.config.idle_timeout_s
        while True:
            await asyncio.sleep(min(self.config.idle_check_interval_s, timeout_s))
            now_s = time.monotonic()
            for conn in list(self._clients.values()):
                if conn.idle and now_s - conn.last_input_s > timeout_s:
                    conn.close_idle()

    async def _start_admin(self) -> None:
        guard = AdminGuard(self._admin_token, self.acl)

        @web.middleware
        async def authorize(request: web.Request, handler: Handler) -> web.StreamResponse:
            peer = request.remote
            refusal = guard.check(
                request.method,
                request.path,
                request.headers.get("Authorization"),
                is_loopback(peer),
            )
            if refusal is not None:
                self.metrics.admin_refusals.labels(status=str(refusal.status)).inc()
                log.warning(
                    "admin_call_refused", path=request.path, method=request.method,
                    peer=str(peer), why=refusal.message,
                )  # fmt: skip
                return web.json_response({"error": refusal.message}, status=refusal.status)
            return await handler(request)

        app = web.Application(middlewares=[authorize])
        app.router.add_get("/metrics", self._http_metrics)
        app.router.add_get("/healthz", self._http_health)
        app.router.add_get("/v1/status", self._http_status)
        cluster_page.add_routes(app, self)
        app.router.add_post("/v1/backup", self._http_backup)
        app.router.add_post("/v1/debug/tracemalloc/baseline", self._http_tracemalloc_baseline)
        app.router.add_get("/v1/debug/tracemalloc/top", self._http_tracemalloc_top)
        app.router.add_post("/v1/members", self._http_member_add)
        app.router.add_delete("/v1/members/{node_id}", self._http_member_remove)
        app.router.add_post("/v1/nodes/{node_id}/remove", self._http_node_remove)
        app.router.add_post("/v1/shards/{shard_id}/split", self._http_shard_split)
        app.router.add_get("/v1/rebalance", self._http_rebalance)
        app.router.add_post("/v1/rebalance", self._http_rebalance)
        app.router.add_get("/v1/kv/{key}", self._http_kv)
        app.router.add_put("/v1/kv/{key}", self._http_kv)
        app.router.add_delete("/v1/kv/{key}", self._http_kv)
        if self.config.enable_fault_injection:
            app.router.add_post("/v1/test/partition", self._http_partition)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        admin_ssl = None
        if self.config.admin_tls_cert is not None and self.config.admin_tls_key is not None:
            admin_ssl = server_context(self.config.admin_tls_cert, self.config.admin_tls_key, None)
        site = web.TCPSite(
            runner,
            self.config.bind,
            self.config.admin_port,
            reuse_address=True,
            ssl_context=admin_ssl,
        )
        await site.start()
        server = site._server
        if server is not None and server.sockets:  # type: ignore[union-attr]
            self.admin_port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._admin_runner = runner

    async def _http_metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _http_tracemalloc_baseline(self, request: web.Request) -> web.Response:
        """Start tracing allocations (1 frame: the line) if off, and remember a baseline
        snapshot. Tracing slows the server: for soak runs, not production."""
        if not tracemalloc.is_tracing():
            tracemalloc.start(1)
        self._tracemalloc_baseline = tracemalloc.take_snapshot()
        return web.json_response({"tracing": True})

    async def _http_tracemalloc_top(self, request: web.Request) -> web.Response:
        """The allocation sites that grew most since the baseline, by source line."""
        if self._tracemalloc_baseline is None:
            return web.json_response({"error": "POST .../baseline first"}, status=409)
        try:
            n = max(1, min(200, int(request.query.get("n", "25"))))
        except ValueError:
            return web.json_response({"error": "n must be an integer"}, status=400)
        now = tracemalloc.take_snapshot().filter_traces(
            (tracemalloc.Filter(False, tracemalloc.__file__),)
        )
        stats = now.compare_to(self._tracemalloc_baseline, "lineno")[:n]
        return web.json_response(
            [
                {
                    "where": str(st.traceback[0]),
                    "size_diff_kib": round(st.size_diff / 1024, 1),
                    "size_kib": round(st.size / 1024, 1),
                    "count_diff": st.count_diff,
                }
                for st in stats
            ]
        )

    async def _http_member_add(self, request: web.Request) -> web.Response:
        """``{"node_id": 4, "peer_address": "host:port"}``: add a learner, promote it once
        caught up (``shardkv member add``). Leader only (409 elsewhere)."""
        if self.cluster is None:
            return web.json_response({"error": "not a cluster member"}, status=409)
        try:
            body = await request.json()
            node_id, address = int(body["node_id"]), str(body["peer_address"])
        except (ValueError, KeyError, TypeError):
            return web.json_response(
                {"error": 'expected JSON {"node_id": N, "peer_address": "host:port"}'},
                status=400,
            )
        return await self._membership(self.cluster.runtime.add_member(node_id, address))

    def _node_id_in_path(self, request: web.Request) -> int | web.Response:
        """The ``{node_id}`` of a cluster request, or the error response to give."""
        if self.cluster is None:
            return web.json_response({"error": "not a cluster member"}, status=409)
        try:
            return int(request.match_info["node_id"])
        except ValueError:
            return web.json_response({"error": "node id must be an integer"}, status=400)

    async def _http_member_remove(self, request: web.Request) -> web.Response:
        node_id = self._node_id_in_path(request)
        if isinstance(node_id, web.Response):
            return node_id
        assert self.cluster is not None
        return await self._membership(self.cluster.runtime.remove_member(node_id))

    async def _http_node_remove(self, request: web.Request) -> web.Response:
        """Start draining a node (``shardkv node remove``). Only the placement group's
        leader does it; elsewhere 409 with ``leader_admin``, its admin address."""
        node_id = self._node_id_in_path(request)
        if isinstance(node_id, web.Response):
            return node_id
        assert self.cluster is not None
        driver = self.cluster.runtime.driver
        return await self._placement_change(
            lambda done: driver.decommission_node(node_id, done),
            lambda reply: {"node_id": node_id, "state": "draining"},
        )

    async def _http_shard_split(self, request: web.Request) -> web.Response:
        """Order a split of a shard (``shardkv shard split``), before the slot given as
        JSON ``{"slot": N}`` or, without a body, at the slot halving its slots. Answers
        ``{"shard": S, "child": C}`` once the order applies; the shard's leader then
        splits it. Only the placement group's leader does it (409 with ``leader_admin``
        elsewhere); 409 for a shard that cannot split now (the message says why)."""
        if self.cluster is None:
            return web.json_response({"error": "not a cluster member"}, status=409)
        try:
            shard_id = int(request.match_info["shard_id"])
            body = await request.json() if request.can_read_body else {}
            slot = body.get("slot") if isinstance(body, dict) else None
            if slot is not None and (isinstance(slot, bool) or not isinstance(slot, int)):
                raise TypeError
        except (ValueError, TypeError):
            return web.json_response(
                {"error": 'expected an integer shard id and optional JSON {"slot": N}'}, status=400
            )
        driver = self.cluster.runtime.driver
        return await self._placement_change(
            lambda done: driver.split_shard(shard_id, slot, done),
            lambda reply: {"shard": shard_id, "child": reply},
        )

    async def _http_rebalance(self, request: web.Request) -> web.Response:
        """GET: whether balancing is paused and every move under way (exact on the
        placement group's leader). POST ``{"paused": true|false}``: pause or resume
        (``shardkv rebalance``); only the placement group's leader does it (409 with
        ``leader_admin`` elsewhere)."""
        if self.cluster is None:
            return web.json_response({"error": "not a cluster member"}, status=409)
        driver = self.cluster.runtime.driver
        if request.method == "GET":
            return web.json_response(driver.rebalance_status())
        try:
            paused = (await request.json())["paused"]
            if not isinstance(paused, bool):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": 'expected JSON {"paused": true|false}'}, status=400)
        return await self._placement_change(
            lambda done: driver.set_rebalance_paused(paused, done),
            lambda reply: {"paused": paused},
        )

    async def _placement_change(
        self,
        propose: Callable[[Callable[[list[Reply]], None]], None],
        ok: Callable[[Reply], dict[str, Any]],
    ) -> web.Response:
        """Run a change only the placement group's leader makes; answer ``ok(reply)`` once
        it applied, 409 with the leader's admin address elsewhere, 409 with an error reply's
        message, 503 if it did not apply in time."""
        assert self.cluster is not None
        driver = self.cluster.runtime.driver
        fut: asyncio.Future[list[Reply]] = asyncio.get_running_loop().create_future()

        def done(replies: list[Reply]) -> None:
            if not fut.done():
                fut.set_result(replies)

        try:
            propose(done)
        except NotLeaderError as exc:
            shard_map = driver.shard_map
            leader = shard_map.nodes.get(exc.leader) if shard_map is not None else None
            return web.json_response(
                {
                    "error": "this node does not lead the placement group",
                    "leader_admin": leader.admin_address if leader is not None else "",
                },
                status=409,
            )
        try:
            replies = await asyncio.wait_for(fut, self.config.shutdown_deadline_s * 3)
        except TimeoutError:
            return web.json_response({"error": "not applied in time; retry"}, status=503)
        if isinstance(replies[0], ErrorReply):
            return web.json_response({"error": replies[0].message}, status=409)
        return web.json_response(ok(replies[0]))

    async def _membership(self, change: Awaitable[None]) -> web.Response:
        assert self.cluster is not None
        try:
            await change
        except NotLeaderError as exc:
            return web.json_response({"error": f"not the leader: {exc}"}, status=409)
        except (MembershipError, TimeoutError) as exc:
            return web.json_response({"error": str(exc) or "timed out"}, status=422)
        st = self.cluster.runtime.replica().raw.conf_state()
        return web.json_response({"voters": list(st.voters), "learners": list(st.learners)})

    async def _http_kv(self, request: web.Request) -> web.Response:
        """``GET/PUT/DELETE /v1/kv/{key}``: the same commands as GET/SET/DEL over RESP, with
        the same durability and consistency. PUT takes the raw value as its body (at most
        ``max_bulk_bytes``); GET returns it raw. Errors are JSON ``{"error": ...}``: 404 for
        a missing key, 421 with the leader's client address on a non-leader, 503 while no
        leader is known."""
        key = request.match_info["key"].encode()
        if request.method == "PUT":
            if request.content_length is not None and (
                request.content_length > self.config.max_bulk_bytes
            ):
                return web.json_response({"error": "value larger than max_bulk_bytes"}, status=413)
            command = [b"SET", key, await request.read()]
        elif request.method == "DELETE":
            command = [b"DEL", key]
        else:
            command = [b"GET", key]
        fut: asyncio.Future[list[Reply]] = asyncio.get_running_loop().create_future()
        self.committer.submit(
            [command],
            lambda r: fut.done() or fut.set_result(r),
            has_write=request.method != "GET",
        )
        reply = (await fut)[0]
        if isinstance(reply, ErrorReply):
            code = reply.message.split(" ", 1)[0]
            status = {"MOVED": 421, "TRYAGAIN": 503, "CLUSTERDOWN": 503, "UNKNOWN": 504}.get(
                code, 500
            )
            body: dict[str, Any] = {"error": reply.message}
            if code == "MOVED":
                body["leader"] = reply.message.rsplit(" ", 1)[-1]
            return web.json_response(body, status=status)
        if request.method == "GET":
            if reply is None:
                return web.json_response({"error": "key not found"}, status=404)
            assert isinstance(reply, bytes)
            return web.Response(body=reply, content_type="application/octet-stream")
        if request.method == "DELETE":
            return web.json_response({"deleted": reply})
        return web.json_response({"ok": True})

    async def _http_backup(self, request: web.Request) -> web.StreamResponse:
        """A consistent snapshot of the KV data (``shardkv backup create``). In a cluster,
        only the leader answers, after a ReadIndex round: the snapshot then holds every
        write acknowledged before the request."""
        try:
            group_id = int(request.query.get("group", "1"))
        except ValueError:
            return web.json_response({"error": "group must be a shard id"}, status=400)
        scope = KeyScope.whole(1)
        if self.cluster is not None:
            hosted = {shard.shard_id: shard for shard, _ in self.cluster.runtime.groups()}
            if group_id not in hosted:
                return web.json_response({"error": f"shard {group_id} is not here"}, status=404)
            scope = hosted[group_id].scope
            try:
                await self.cluster.runtime.barrier(group_id)
            except NotLeaderError:
                return web.json_response({"error": "not the leader"}, status=409)
        elif group_id != 1:
            return web.json_response({"error": "a standalone node has shard 1 only"}, status=404)
        assert self._engine is not None and self._executor is not None
        loop = asyncio.get_running_loop()
        view = self._engine.consistent_view()  # on the loop: the writing thread
        # Page by page (read in the storage pool): the shard is never held whole. A reply
        # cut short fails the client's check of the snapshot's trailer.
        pieces = iter_snapshot_data(view, group_id, scope)
        response = web.StreamResponse(
            headers={"X-ShardKV-Group": str(group_id), "Content-Type": "application/octet-stream"}
        )
        try:
            await response.prepare(request)
            while (
                piece := await loop.run_in_executor(self._executor, next, pieces, None)
            ) is not None:
                await response.write(piece)
        finally:
            view.close()
        await response.write_eof()
        return response

    async def _http_status(self, request: web.Request) -> web.Response:
        """This node's view of its Raft group (or of the single-node store)."""
        return web.json_response(self.status_body())

    def status_body(self) -> dict[str, Any]:
        """What ``GET /v1/status`` answers (the cluster page joins every node's)."""
        body: dict[str, Any] = {"client_address": self.config.client_address}
        body["live"] = self._live_figures()
        guard = self._disk_guard
        body["disk"] = {
            "free_bytes": guard.free_bytes if guard is not None else None,
            "full": guard is not None and guard.full_reply is not None,
        }
        column_bytes = getattr(self._engine, "column_bytes", None)
        if column_bytes is not None:
            body["storage_bytes"] = column_bytes()
        if self.cluster is None:
            body.update(
                node_id=self.config.node_id,
                role="standalone",
                term=0,
                leader=0,
                commit=0,
                applied=0,
            )
        else:
            shards = []
            current = self.cluster.runtime.shard_map
            for shard, r in self.cluster.runtime.groups():
                rst = r.raw.status()
                entry = current.shards.get(shard.shard_id) if current is not None else None
                shards.append(
                    {
                        "shard": shard.shard_id,
                        "slots": [list(x) for x in shard.slot_ranges],
                        "epoch": shard.epoch,
                        "role": rst.role.name.lower(),
                        "leader": rst.lead,
                        "replicas": list(shard.replicas),
                        "term": rst.term,
                        "commit": rst.commit,
                        "applied": r.applied_index,
                        "lag": rst.commit - r.applied_index,
                        "keys": r.machine.key_count(),
                        "data_bytes": r.machine.data_bytes()
                        if isinstance(r.machine, KVStateMachine)
                        else 0,
                        "state": _shard_state(entry, r.retired),
                    }
                )
            body["shards"] = shards
            shard_map = self.cluster.runtime.shard_map
            # (Without the users: their password digests are not for an open endpoint.)
            body["shard_map"] = shard_map.encode(with_users=False).decode() if shard_map else None
            body["ready"] = self.cluster.runtime.routing_ready()
            placement, _ = self.cluster.runtime.driver.placement_status()
            pst = placement.raw.status()
            body["placement"] = {
                "role": pst.role.name.lower(),
                "leader": pst.lead,
                "voters": list(pst.conf_state.voters),
                "learners": list(pst.conf_state.learners),
                "commit": pst.commit,
                "applied": placement.applied_index,
            }
            # The node-level fields describe its first shard (the one shard of a one-shard
            # cluster), or group 0 on a node that holds no shard yet.
            hosted = self.cluster.runtime.groups()
            replica = hosted[0][1] if hosted else placement
            st = replica.raw.status()
            body.update(
                node_id=st.node_id,
                role=st.role.name.lower(),
                term=st.term,
                leader=st.lead,
                commit=st.commit,
                applied=replica.applied_index,
                first_index=st.first_index,
                last_index=st.last_index,
                voters=list(st.conf_state.voters),
                learners=list(st.conf_state.learners),
            )
        return body

    def _live_figures(self) -> dict[str, Any]:
        """Counters the cluster page turns into rates: commands (and their latency
        buckets, summed over commands), leader changes, and this process's memory."""
        bounds, buckets, commands = self.metrics.commands.totals()
        rss = 0
        with contextlib.suppress(OSError):
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
        leader_changes = self.cluster.runtime.leader_changes if self.cluster is not None else 0
        return {
            "commands": commands,
            "latency_bucket_bounds_s": list(bounds),
            "latency_buckets": buckets,
            "leader_changes": leader_changes,
            "rss_bytes": rss,
        }

    async def _http_partition(self, request: web.Request) -> web.Response:
        """Test-only: drop all traffic to and from the listed peers (``{"blocked": [2]}``;
        an empty list heals). Exists only with --enable-fault-injection."""
        if self.cluster is None:
            return web.json_response({"error": "not a cluster member"}, status=409)
        try:
            body = await request.json()
            blocked = {int(n) for n in body["blocked"]}
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": 'expected JSON {"blocked": [node ids]}'}, status=400)
        self.cluster.transport.set_blocked(blocked)
        log.warning("fault_injection_partition", blocked=sorted(blocked))
        return web.json_response({"blocked": sorted(blocked)})

    async def _http_health(self, request: web.Request) -> web.Response:
        """``ok`` once this node can route every request: it has the cluster map and knows
        the leader of every shard it hosts (or knows it has none). ``starting`` before."""
        if self._stop.is_set():
            return web.json_response({"status": "stopping"}, status=503)
        if self.cluster is not None and not self.cluster.runtime.routing_ready():
            return web.json_response({"status": "starting", "port": self.port}, status=503)
        return web.json_response({"status": "ok", "port": self.port})


_QUIET = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError, ssl.SSLError, TimeoutError)


def _quiet_exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Peer resets and TLS noise are normal on a network: one line, no traceback."""
    exc = context.get("exception")
    if isinstance(exc, _QUIET):
        log.info(
            "network_error",
            error=str(exc) or type(exc).__name__,
            message=context.get("message", ""),
        )
        return
    log.error(
        "unhandled_loop_error", message=context.get("message", ""), error=repr(exc) if exc else None
    )


#: How long the event loop may hold the GIL while a storage thread waits for it. The
#: default (5 ms) would add up to 5 ms to every group commit under load: the sync thread
#: finishes its fsync and then waits for the busy loop to yield the GIL.
GIL_SWITCH_INTERVAL_S = 0.0002


def run_server(config: ServerConfig) -> int:
    """Run a server on uvloop until it stops; return its exit status."""
    import sys

    import uvloop

    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)

    with contextlib.suppress(KeyboardInterrupt):
        return uvloop.run(Server(config).run())
    return 1


__all__ = ["Server", "run_server"]


def _shard_state(entry: ShardInfo | None, retired: bool) -> str:
    """What is under way for a shard, for operators (``shardkv shard list``)."""
    if retired:
        return "retired"
    if entry is None:
        return ""
    if entry.merge_into:
        return f"merging into {entry.merge_into}"
    if entry.absorb:
        return f"absorbing {entry.absorb}"
    if entry.split:
        return f"splitting off {entry.split[0]}"
    return "moving" if entry.target else ""
