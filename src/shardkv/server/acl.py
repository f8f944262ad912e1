"""Where a node finds its users, and how ``ACL SETUSER`` / ``ACL DELUSER`` change them.

In a cluster, users live in the cluster map (the placement group, `ShardMap.acl_users`):
a change made on any node is forwarded to group 0's leader, applied on every node, and
kept across restarts with the map. The ``default`` user is special, as in Redis: until an
``ACL SETUSER default ...`` stores it in the map, each node builds it from its own
``requirepass`` (every command and key; a password only if ``requirepass`` is set).

On a standalone server the users are this node's own, stored in its META column (one
synced write per change).

Every method runs on the event loop thread.
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Final

from shardkv.core.acl import (
    DEFAULT_USER,
    AclRuleError,
    AclUser,
    apply_rules,
    decode_user,
    default_user,
    encode_user,
    validate_username,
)
from shardkv.core.cluster.placement import del_acl_users_command, set_acl_user_command
from shardkv.core.engine import META, WriteBatch
from shardkv.core.resp import OK, ErrorReply, Reply
from shardkv.storage import Engine

if TYPE_CHECKING:
    from shardkv.server.cluster import ClusterFrontend

#: META key of a standalone server's users: a JSON list of `encode_user` documents.
STANDALONE_USERS_KEY: Final = b"acl/users"


class AclRegistry:
    """The users this node authenticates against. Build, then ``load()`` before serving."""

    def __init__(
        self,
        requirepass: str | None,
        engine: Engine,
        executor: Executor,
        cluster: ClusterFrontend | None,
        change_timeout_s: float,
    ) -> None:
        self._default = default_user(requirepass)
        self._engine = engine
        self._executor = executor
        self._cluster = cluster
        self._change_timeout_s = change_timeout_s
        self._local: dict[str, AclUser] = {}

    async def load(self) -> None:
        """Read a standalone server's stored users (a cluster's come with its map)."""
        if self._cluster is not None:
            return
        raw = await asyncio.get_running_loop().run_in_executor(
            self._executor, self._engine.get, META, STANDALONE_USERS_KEY
        )
        if raw:
            users = [decode_user(json.dumps(doc).encode()) for doc in json.loads(raw)]
            self._local = {u.name: u for u in users}

    def _stored(self) -> dict[str, AclUser]:
        if self._cluster is None:
            return self._local
        shard_map = self._cluster.runtime.shard_map
        return shard_map.acl_users if shard_map is not None else {}

    def user(self, name: str) -> AclUser | None:
        found = self._stored().get(name)
        if found is None and name == DEFAULT_USER:
            return self._default
        return found

    def users(self) -> list[AclUser]:
        """Every user, by name (``default`` included)."""
        stored = self._stored()
        merged = {DEFAULT_USER: self._default, **stored}
        return [merged[n] for n in sorted(merged)]

    def default_open(self) -> bool:
        """Whether a new client is logged in as ``default`` without a password."""
        user = self.user(DEFAULT_USER)
        return user is not None and user.enabled and user.nopass

    # -- changes ---------------------------------------------------------------------------

    async def set_user(self, name_arg: bytes, rules: list[bytes]) -> Reply:
        """``ACL SETUSER name rule...``: OK, or Redis's error for the first bad rule (the
        rules are checked here first, so a bad one never reaches the placement group)."""
        try:
            name = validate_username(name_arg)
            base = self.user(name) or AclUser(name)
            updated = apply_rules(base, rules)
        except AclRuleError as exc:
            return ErrorReply(str(exc))
        if self._cluster is not None:
            in_map = name in self._stored()
            command = set_acl_user_command(name, None if in_map else base, rules)
            return await self._cluster.node.change_acl(command, self._change_timeout_s)
        self._local[name] = updated
        await self._persist()
        return OK

    async def delete_users(self, names_arg: list[bytes]) -> Reply:
        """``ACL DELUSER name...``: how many of them existed."""
        names = [n.decode(errors="replace") for n in names_arg]
        if DEFAULT_USER in names:
            return ErrorReply("ERR The 'default' user cannot be removed")
        if self._cluster is not None:
            command = del_acl_users_command(names)
            return await self._cluster.node.change_acl(command, self._change_timeout_s)
        removed = sum(1 for n in set(names) if self._local.pop(n, None) is not None)
        await self._persist()
        return removed

    async def _persist(self) -> None:
        docs = [json.loads(encode_user(u)) for _, u in sorted(self._local.items())]
        batch = WriteBatch()
        batch.put(META, STANDALONE_USERS_KEY, json.dumps(docs, separators=(",", ":")).encode())

        def write() -> None:
            self._engine.write(batch)
            self._engine.sync()

        await asyncio.get_running_loop().run_in_executor(self._executor, write)
