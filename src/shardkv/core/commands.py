"""The command table: every command ShardKV answers, described as Redis 7 describes it.

One :class:`CommandSpec` per command (and per subcommand of container commands such as
CLIENT): Redis's name, arity (negative = at least that many arguments, the name included),
flags, key positions (first, last, step; a negative last counts from the end), ACL
categories, tips, key specs and the documentation that ``COMMAND DOCS`` serves. The
metadata was taken from Redis 7.0's own ``COMMAND INFO`` / ``COMMAND DOCS`` output (long
complexity texts shortened), so clients that introspect the server (redis-cli hints,
redis-py's cluster client) see what they expect.

``kind`` says who executes a command: ``CommandKind.DATA`` commands go to the KV state
machine (``shardkv.core.kv``) and are replicated when they write; ``CommandKind.SERVER``
commands (connection and introspection: PING, CLIENT, COMMAND, CLUSTER, ...) are answered
by the server itself.

The server uses :func:`resolve` (existence, subcommand, arity, in Redis's order and with
Redis's exact error texts) and :func:`command_keys` (slot routing). This module is pure
data and functions over it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Final

from shardkv.core.resp.replies import ErrorReply, Reply, SimpleString
from shardkv.core.type_commands import TYPE_COMMAND_ROWS, TypeRow


class CommandKind(enum.Enum):
    DATA = "data"
    """Executed by the KV state machine."""
    SERVER = "server"
    """Executed by the server (connection, introspection, cluster topology)."""


@dataclass(frozen=True, slots=True)
class KeySpec:
    """Where a command's keys are (Redis 7 key specs; only the ``index`` begin-search and
    ``range`` find-keys forms are needed here). ``last_key`` is relative to ``begin_index``
    (0 = one key, -1 = up to the last argument)."""

    flags: tuple[str, ...]
    begin_index: int
    last_key: int
    key_step: int
    limit: int = 0
    notes: str = ""


@dataclass(frozen=True, slots=True)
class Arg:
    """One documented argument, as ``COMMAND DOCS`` reports it (redis-cli builds its
    hints from these)."""

    name: str
    type: str
    token: str = ""
    flags: tuple[str, ...] = ()
    key_spec_index: int = -1
    args: tuple[Arg, ...] = ()


@dataclass(frozen=True, slots=True, eq=False)
class CommandSpec:
    name: str
    """Full lower-case name: ``"get"``, or ``"client|setname"`` for a subcommand."""
    arity: int
    flags: tuple[str, ...]
    first_key: int
    last_key: int
    key_step: int
    acl_categories: tuple[str, ...]
    group: str
    since: str
    summary: str
    complexity: str = ""
    kind: CommandKind = CommandKind.SERVER
    tips: tuple[str, ...] = ()
    doc_flags: tuple[str, ...] = ()
    deprecated_since: str = ""
    replaced_by: str = ""
    key_specs: tuple[KeySpec, ...] = ()
    args: tuple[Arg, ...] = ()
    subcommands: tuple[CommandSpec, ...] = ()
    # Derived in __post_init__.
    is_write: bool = field(init=False)
    """The command may modify data (``write`` flag): it must be replicated."""
    arity_error: ErrorReply = field(init=False)
    """Redis's reply to a wrong number of arguments for this command."""
    _subcommands_by_name: dict[bytes, CommandSpec] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "is_write", "write" in self.flags)
        object.__setattr__(
            self,
            "arity_error",
            ErrorReply(f"ERR wrong number of arguments for '{self.name}' command"),
        )
        by_name = {sub.name.split("|", 1)[1].encode(): sub for sub in self.subcommands}
        object.__setattr__(self, "_subcommands_by_name", by_name)

    def subcommand(self, name: bytes) -> CommandSpec | None:
        """The subcommand called ``name`` (any case) of this container command, or None."""
        return self._subcommands_by_name.get(name.lower())

    def __repr__(self) -> str:
        return f"CommandSpec({self.name!r})"


def _spec(
    name: str,
    arity: int,
    flags: str,
    keys: tuple[int, int, int],
    acl: str,
    group: str,
    since: str,
    summary: str,
    complexity: str,
    *,
    tips: str = "",
    doc_flags: str = "",
    deprecated_since: str = "",
    replaced_by: str = "",
    key_specs: tuple[KeySpec, ...] = (),
    args: tuple[Arg, ...] = (),
    subcommands: tuple[CommandSpec, ...] = (),
) -> CommandSpec:
    first, last, step = keys
    return CommandSpec(
        name=name,
        arity=arity,
        flags=tuple(flags.split()),
        first_key=first,
        last_key=last,
        key_step=step,
        acl_categories=tuple(acl.split()),
        group=group,
        since=since,
        summary=summary,
        complexity=complexity,
        tips=tuple(tips.split()),
        doc_flags=tuple(doc_flags.split()),
        deprecated_since=deprecated_since,
        replaced_by=replaced_by,
        key_specs=key_specs,
        args=args,
        subcommands=subcommands,
    )


def _ks(
    flags: str, begin_index: int, last_key: int, key_step: int, limit: int = 0, notes: str = ""
) -> KeySpec:
    return KeySpec(tuple(flags.split()), begin_index, last_key, key_step, limit, notes)


def _a(
    name: str,
    type: str,
    *,
    token: str = "",
    flags: str = "",
    ksi: int = -1,
    args: tuple[Arg, ...] = (),
) -> Arg:
    return Arg(name, type, token, tuple(flags.split()), ksi, args)


_GET_NOTE: Final = "RW and ACCESS due to the optional `GET` argument"

# fmt: off
_DATA_COMMANDS: Final = (
    _spec(
        "object", -2, "", (2, 2, 1), "@slow", "generic", "2.2.3",
        "A container for object introspection commands", "Depends on subcommand",
        key_specs=(_ks("RO", 2, 0, 1),),
        subcommands=tuple(
            _spec(
                f"object|{sub}", 3, "readonly", (2, 2, 1), "@keyspace @read @slow", "generic",
                since, summary, "O(1)", key_specs=(_ks("RO", 2, 0, 1),),
                args=(_a("key", "key", ksi=0),),
            )
            for sub, since, summary in (
                ("encoding", "2.2.3", "Inspect the internal encoding of a Redis object"),
                ("refcount", "2.2.3", "Get the number of references to the value of the key"),
                ("idletime", "2.2.3", "Get the time since a Redis object was last accessed"),
                ("freq", "4.0.0", "Get the logarithmic access frequency counter of an object"),
            )
        ),
    ),
    _spec(
        "get", 2, "readonly fast", (1, 1, 1), "@read @string @fast", "string", "1.0.0",
        "Get the value of a key", "O(1)", key_specs=(_ks("RO access", 1, 0, 1),),
        args=(_a("key", "key", ksi=0),),
    ),
    _spec(
        "set", -3, "write denyoom", (1, 1, 1), "@write @string @slow", "string", "1.0.0",
        "Set the string value of a key", "O(1)",
        key_specs=(_ks("RW access update variable_flags", 1, 0, 1, notes=_GET_NOTE),),
        args=(
            _a("key", "key", ksi=0), _a("value", "string"),
            _a(
                "condition", "oneof", flags="optional",
                args=(_a("nx", "pure-token", token="NX"), _a("xx", "pure-token", token="XX")),
            ),
            _a("get", "pure-token", token="GET", flags="optional"),
            _a(
                "expiration", "oneof", flags="optional",
                args=(
                    _a("seconds", "integer", token="EX"), _a("milliseconds", "integer", token="PX"),
                    _a("unix-time-seconds", "unix-time", token="EXAT"),
                    _a("unix-time-milliseconds", "unix-time", token="PXAT"),
                    _a("keepttl", "pure-token", token="KEEPTTL"),
                ),
            ),
        ),
    ),
    _spec(
        "setnx", 3, "write denyoom fast", (1, 1, 1), "@write @string @fast", "string", "1.0.0",
        "Set the value of a key, only if the key does not exist", "O(1)",
        key_specs=(_ks("OW insert", 1, 0, 1),),
        args=(_a("key", "key", ksi=0), _a("value", "string")),
    ),
    _spec(
        "setex", 4, "write denyoom", (1, 1, 1), "@write @string @slow", "string", "2.0.0",
        "Set the value and expiration of a key", "O(1)", key_specs=(_ks("OW update", 1, 0, 1),),
        args=(_a("key", "key", ksi=0), _a("seconds", "integer"), _a("value", "string")),
    ),
    _spec(
        "psetex", 4, "write denyoom", (1, 1, 1), "@write @string @slow", "string", "2.6.0",
        "Set the value and expiration in milliseconds of a key", "O(1)",
        key_specs=(_ks("OW update", 1, 0, 1),),
        args=(_a("key", "key", ksi=0), _a("milliseconds", "integer"), _a("value", "string")),
    ),
    _spec(
        "getset", 3, "write denyoom fast", (1, 1, 1), "@write @string @fast", "string", "1.0.0",
        "Set the string value of a key and return its old value", "O(1)", doc_flags="deprecated",
        deprecated_since="6.2.0", replaced_by="`SET` with the `!GET` argument",
        key_specs=(_ks("RW access update", 1, 0, 1),),
        args=(_a("key", "key", ksi=0), _a("value", "string")),
    ),
    _spec(
        "getdel", 2, "write fast", (1, 1, 1), "@write @string @fast", "string", "6.2.0",
        "Get the value of a key and delete the key", "O(1)",
        key_specs=(_ks("RW access delete", 1, 0, 1),), args=(_a("key", "key", ksi=0),),
    ),
    _spec(
        "getex", -2, "write fast", (1, 1, 1), "@write @string @fast", "string", "6.2.0",
        "Get the value of a key and optionally set its expiration", "O(1)",
        key_specs=(
            _ks("RW access update", 1, 0, 1, notes="RW and UPDATE because it changes the TTL"),
        ),
        args=(
            _a("key", "key", ksi=0),
            _a(
                "expiration", "oneof", flags="optional",
                args=(
                    _a("seconds", "integer", token="EX"), _a("milliseconds", "integer", token="PX"),
                    _a("unix-time-seconds", "unix-time", token="EXAT"),
                    _a("unix-time-milliseconds", "unix-time", token="PXAT"),
                    _a("persist", "pure-token", token="PERSIST"),
                ),
            ),
        ),
    ),
    _spec(
        "mget", -2, "readonly fast", (1, -1, 1), "@read @string @fast", "string", "1.0.0",
        "Get the values of all the given keys", "O(N) where N is the number of keys to retrieve",
        tips="request_policy:multi_shard", key_specs=(_ks("RO access", 1, -1, 1),),
        args=(_a("key", "key", flags="multiple", ksi=0),),
    ),
    _spec(
        "mset", -3, "write denyoom", (1, -1, 2), "@write @string @slow", "string", "1.0.1",
        "Set multiple keys to multiple values", "O(N) where N is the number of keys to set",
        tips="request_policy:multi_shard response_policy:all_succeeded",
        key_specs=(_ks("OW update", 1, -1, 2),),
        args=(
            _a(
                "key_value", "block", flags="multiple",
                args=(_a("key", "key", ksi=0), _a("value", "string")),
            ),
        ),
    ),
    _spec(
        "msetnx", -3, "write denyoom", (1, -1, 2), "@write @string @slow", "string", "1.0.1",
        "Set multiple keys to multiple values, only if none of the keys exist",
        "O(N) where N is the number of keys to set",
        tips="request_policy:multi_shard response_policy:agg_min",
        key_specs=(_ks("OW insert", 1, -1, 2),),
        args=(
            _a(
                "key_value", "block", flags="multiple",
                args=(_a("key", "key", ksi=0), _a("value", "string")),
            ),
        ),
    ),
    _spec(
        "del", -2, "write", (1, -1, 1), "@keyspace @write @slow", "generic", "1.0.0",
        "Delete a key", "O(N) where N is the number of keys that will be removed",
        tips="request_policy:multi_shard response_policy:agg_sum",
        key_specs=(_ks("RM delete", 1, -1, 1),), args=(_a("key", "key", flags="multiple", ksi=0),),
    ),
    _spec(
        "unlink", -2, "write fast", (1, -1, 1), "@keyspace @write @fast", "generic", "4.0.0",
        "Delete a key asynchronously in another thread.",
        "O(1) for each key removed regardless of its size",
        tips="request_policy:multi_shard response_policy:agg_sum",
        key_specs=(_ks("RM delete", 1, -1, 1),), args=(_a("key", "key", flags="multiple", ksi=0),),
    ),
    _spec(
        "exists", -2, "readonly fast", (1, -1, 1), "@keyspace @read @fast", "generic", "1.0.0",
        "Determine if a key exists", "O(N) where N is the number of keys to check",
        tips="request_policy:multi_shard response_policy:agg_sum", key_specs=(_ks("RO", 1, -1, 1),),
        args=(_a("key", "key", flags="multiple", ksi=0),),
    ),
    _spec(
        "incr", 2, "write denyoom fast", (1, 1, 1), "@write @string @fast", "string", "1.0.0",
        "Increment the integer value of a key by one", "O(1)",
        key_specs=(_ks("RW access update", 1, 0, 1),), args=(_a("key", "key", ksi=0),),
    ),
    _spec(
        "incrby", 3, "write denyoom fast", (1, 1, 1), "@write @string @fast", "string", "1.0.0",
        "Increment the integer value of a key by the given amount", "O(1)",
        key_specs=(_ks("RW access update", 1, 0, 1),),
        args=(_a("key", "key", ksi=0), _a("increment", "integer")),
    ),
    _spec(
        "decr", 2, "write denyoom fast", (1, 1, 1), "@write @string @fast", "string", "1.0.0",
        "Decrement the integer value of a key by one", "O(1)",
        key_specs=(_ks("RW access update", 1, 0, 1),), args=(_a("key", "key", ksi=0),),
    ),
    _spec(
        "decrby", 3, "write denyoom fast", (1, 1, 1), "@write @string @fast", "string", "1.0.0",
        "Decrement the integer value of a key by the given number", "O(1)",
        key_specs=(_ks("RW access update", 1, 0, 1),),
        args=(_a("key", "key", ksi=0), _a("decrement", "integer")),
    ),
    _spec(
        "incrbyfloat", 3, "write denyoom fast", (1, 1, 1), "@write @string @fast", "string",
        "2.6.0", "Increment the float value of a key by the given amount", "O(1)",
        key_specs=(_ks("RW access update", 1, 0, 1),),
        args=(_a("key", "key", ksi=0), _a("increment", "double")),
    ),
    _spec(
        "append", 3, "write denyoom fast", (1, 1, 1), "@write @string @fast", "string", "2.0.0",
        "Append a value to a key", "O(1)", key_specs=(_ks("RW insert", 1, 0, 1),),
        args=(_a("key", "key", ksi=0), _a("value", "string")),
    ),
    _spec(
        "strlen", 2, "readonly fast", (1, 1, 1), "@read @string @fast", "string", "2.2.0",
        "Get the length of the value stored in a key", "O(1)", key_specs=(_ks("RO", 1, 0, 1),),
        args=(_a("key", "key", ksi=0),),
    ),
    _spec(
        "getrange", 4, "readonly", (1, 1, 1), "@read @string @slow", "string", "2.4.0",
        "Get a substring of the string stored at a key",
        "O(N) where N is the length of the returned string", key_specs=(_ks("RO access", 1, 0, 1),),
        args=(_a("key", "key", ksi=0), _a("start", "integer"), _a("end", "integer")),
    ),
    _spec(
        "substr", 4, "readonly", (1, 1, 1), "@read @string @slow", "string", "1.0.0",
        "Get a substring of the string stored at a key",
        "O(N) where N is the length of the returned string", doc_flags="deprecated",
        deprecated_since="2.0.0", replaced_by="`GETRANGE`", key_specs=(_ks("RO access", 1, 0, 1),),
        args=(_a("key", "key", ksi=0), _a("start", "integer"), _a("end", "integer")),
    ),
    _spec(
        "setrange", 4, "write denyoom", (1, 1, 1), "@write @string @slow", "string", "2.2.0",
        "Overwrite part of a string at key starting at the specified offset",
        "O(1), not counting the time taken to copy the new string in place",
        key_specs=(_ks("RW update", 1, 0, 1),),
        args=(_a("key", "key", ksi=0), _a("offset", "integer"), _a("value", "string")),
    ),
    _spec(
        "expire", -3, "write fast", (1, 1, 1), "@keyspace @write @fast", "generic", "1.0.0",
        "Set a key's time to live in seconds", "O(1)", key_specs=(_ks("RW update", 1, 0, 1),),
        args=(
            _a("key", "key", ksi=0), _a("seconds", "integer"),
            _a(
                "condition", "oneof", flags="optional",
                args=(
                    _a("nx", "pure-token", token="NX"), _a("xx", "pure-token", token="XX"),
                    _a("gt", "pure-token", token="GT"), _a("lt", "pure-token", token="LT"),
                ),
            ),
        ),
    ),
    _spec(
        "pexpire", -3, "write fast", (1, 1, 1), "@keyspace @write @fast", "generic", "2.6.0",
        "Set a key's time to live in milliseconds", "O(1)", key_specs=(_ks("RW update", 1, 0, 1),),
        args=(
            _a("key", "key", ksi=0), _a("milliseconds", "integer"),
            _a(
                "condition", "oneof", flags="optional",
                args=(
                    _a("nx", "pure-token", token="NX"), _a("xx", "pure-token", token="XX"),
                    _a("gt", "pure-token", token="GT"), _a("lt", "pure-token", token="LT"),
                ),
            ),
        ),
    ),
    _spec(
        "expireat", -3, "write fast", (1, 1, 1), "@keyspace @write @fast", "generic", "1.2.0",
        "Set the expiration for a key as a UNIX timestamp", "O(1)",
        key_specs=(_ks("RW update", 1, 0, 1),),
        args=(
            _a("key", "key", ksi=0), _a("unix-time-seconds", "unix-time"),
            _a(
                "condition", "oneof", flags="optional",
                args=(
                    _a("nx", "pure-token", token="NX"), _a("xx", "pure-token", token="XX"),
                    _a("gt", "pure-token", token="GT"), _a("lt", "pure-token", token="LT"),
                ),
            ),
        ),
    ),
    _spec(
        "pexpireat", -3, "write fast", (1, 1, 1), "@keyspace @write @fast", "generic", "2.6.0",
        "Set the expiration for a key as a UNIX timestamp specified in milliseconds", "O(1)",
        key_specs=(_ks("RW update", 1, 0, 1),),
        args=(
            _a("key", "key", ksi=0), _a("unix-time-milliseconds", "unix-time"),
            _a(
                "condition", "oneof", flags="optional",
                args=(
                    _a("nx", "pure-token", token="NX"), _a("xx", "pure-token", token="XX"),
                    _a("gt", "pure-token", token="GT"), _a("lt", "pure-token", token="LT"),
                ),
            ),
        ),
    ),
    _spec(
        "expiretime", 2, "readonly fast", (1, 1, 1), "@keyspace @read @fast", "generic", "7.0.0",
        "Get the expiration Unix timestamp for a key", "O(1)",
        key_specs=(_ks("RO access", 1, 0, 1),), args=(_a("key", "key", ksi=0),),
    ),
    _spec(
        "pexpiretime", 2, "readonly fast", (1, 1, 1), "@keyspace @read @fast", "generic", "7.0.0",
        "Get the expiration Unix timestamp for a key in milliseconds", "O(1)",
        key_specs=(_ks("RO access", 1, 0, 1),), args=(_a("key", "key", ksi=0),),
    ),
    _spec(
        "ttl", 2, "readonly fast", (1, 1, 1), "@keyspace @read @fast", "generic", "1.0.0",
        "Get the time to live for a key in seconds", "O(1)", tips="nondeterministic_output",
        key_specs=(_ks("RO access", 1, 0, 1),), args=(_a("key", "key", ksi=0),),
    ),
    _spec(
        "pttl", 2, "readonly fast", (1, 1, 1), "@keyspace @read @fast", "generic", "2.6.0",
        "Get the time to live for a key in milliseconds", "O(1)", tips="nondeterministic_output",
        key_specs=(_ks("RO access", 1, 0, 1),), args=(_a("key", "key", ksi=0),),
    ),
    _spec(
        "persist", 2, "write fast", (1, 1, 1), "@keyspace @write @fast", "generic", "2.2.0",
        "Remove the expiration from a key", "O(1)", key_specs=(_ks("RW update", 1, 0, 1),),
        args=(_a("key", "key", ksi=0),),
    ),
    _spec(
        "type", 2, "readonly fast", (1, 1, 1), "@keyspace @read @fast", "generic", "1.0.0",
        "Determine the type stored at key", "O(1)", key_specs=(_ks("RO", 1, 0, 1),),
        args=(_a("key", "key", ksi=0),),
    ),
    _spec(
        "dbsize", 1, "readonly fast", (0, 0, 0), "@keyspace @read @fast", "server", "1.0.0",
        "Return the number of keys in the selected database", "O(1)",
        tips="request_policy:all_shards response_policy:agg_sum",
    ),
    _spec(
        "scan", -2, "readonly", (0, 0, 0), "@keyspace @read @slow", "generic", "2.8.0",
        "Incrementally iterate the keys space", "O(1) for every call",
        tips="nondeterministic_output request_policy:special",
        args=(
            _a("cursor", "integer"), _a("pattern", "pattern", token="MATCH", flags="optional"),
            _a("count", "integer", token="COUNT", flags="optional"),
            _a("type", "string", token="TYPE", flags="optional"),
        ),
    ),
    _spec(
        "keys", 2, "readonly", (0, 0, 0), "@keyspace @read @slow @dangerous", "generic", "1.0.0",
        "Find all keys matching the given pattern",
        "O(N) with N being the number of keys in the database",
        tips="request_policy:all_shards nondeterministic_output_order",
        args=(_a("pattern", "pattern"),),
    ),
    _spec(
        "flushall", -1, "write", (0, 0, 0), "@keyspace @write @slow @dangerous", "server", "1.0.0",
        "Remove all keys from all databases",
        "O(N) where N is the total number of keys in all databases",
        tips="request_policy:all_shards response_policy:all_succeeded",
        args=(
            _a(
                "async", "oneof", flags="optional",
                args=(
                    _a("async", "pure-token", token="ASYNC"),
                    _a("sync", "pure-token", token="SYNC"),
                ),
            ),
        ),
    ),
    _spec(
        "flushdb", -1, "write", (0, 0, 0), "@keyspace @write @slow @dangerous", "server", "1.0.0",
        "Remove all keys from the current database",
        "O(N) where N is the number of keys in the selected database",
        tips="request_policy:all_shards response_policy:all_succeeded",
        args=(
            _a(
                "async", "oneof", flags="optional",
                args=(
                    _a("async", "pure-token", token="ASYNC"),
                    _a("sync", "pure-token", token="SYNC"),
                ),
            ),
        ),
    ),
)
_SERVER_COMMANDS: Final = (
    _spec(
        "multi", 1, "noscript loading stale fast allow_busy", (0, 0, 0), "@fast @transaction",
        "transactions", "1.2.0", "Mark the start of a transaction block", "O(1)",
    ),
    _spec(
        "exec", 1, "noscript loading stale skip_slowlog", (0, 0, 0), "@slow @transaction",
        "transactions", "1.2.0", "Execute all commands issued after MULTI",
        "Depends on commands in the transaction",
    ),
    _spec(
        "discard", 1, "noscript loading stale fast allow_busy", (0, 0, 0),
        "@fast @transaction", "transactions", "2.0.0",
        "Discard all commands issued after MULTI", "O(N), when N is the number of queued commands",
    ),
    _spec(
        "unwatch", 1, "noscript loading stale fast allow_busy", (0, 0, 0),
        "@fast @transaction", "transactions", "2.2.0", "Forget about all watched keys", "O(1)",
    ),
    _spec(
        "ping", -1, "fast", (0, 0, 0), "@fast @connection", "connection", "1.0.0",
        "Ping the server", "O(1)", tips="request_policy:all_shards response_policy:all_succeeded",
        args=(_a("message", "string", flags="optional"),),
    ),
    _spec(
        "echo", 2, "loading stale fast", (0, 0, 0), "@fast @connection", "connection", "1.0.0",
        "Echo the given string", "O(1)", args=(_a("message", "string"),),
    ),
    _spec(
        "hello", -1, "noscript loading stale fast no_auth allow_busy", (0, 0, 0),
        "@fast @connection", "connection", "6.0.0", "Handshake with Redis", "O(1)",
        args=(
            _a(
                "arguments", "block", flags="optional",
                args=(
                    _a("protover", "integer"),
                    _a(
                        "username_password", "block", token="AUTH", flags="optional",
                        args=(_a("username", "string"), _a("password", "string")),
                    ),
                    _a("clientname", "string", token="SETNAME", flags="optional"),
                ),
            ),
        ),
    ),
    _spec(
        "auth", -2, "noscript loading stale fast no_auth allow_busy", (0, 0, 0),
        "@fast @connection", "connection", "1.0.0", "Authenticate to the server",
        "O(N) where N is the number of passwords defined for the user",
        args=(_a("username", "string", flags="optional"), _a("password", "string")),
    ),
    _spec(
        "acl", -2, "", (0, 0, 0), "@slow", "server", "6.0.0",
        "A container for Access List Control commands", "Depends on subcommand",
        subcommands=(
            _spec(
                "acl|cat", -2, "noscript loading stale", (0, 0, 0), "@slow", "server", "6.0.0",
                "List the ACL categories or the commands inside a category", "O(1)",
                args=(_a("categoryname", "string", flags="optional"),),
            ),
            _spec(
                "acl|deluser", -3, "admin noscript loading stale", (0, 0, 0),
                "@admin @slow @dangerous", "server", "6.0.0",
                "Remove the specified ACL users and the associated rules",
                "O(1) amortized time considering the typical user.",
                args=(_a("username", "string", flags="multiple"),),
            ),
            _spec(
                "acl|genpass", -2, "noscript loading stale", (0, 0, 0), "@slow", "server",
                "6.0.0", "Generate a pseudorandom secure password to use for ACL users",
                "O(1)", args=(_a("bits", "integer", flags="optional"),),
            ),
            _spec(
                "acl|getuser", 3, "admin noscript loading stale", (0, 0, 0),
                "@admin @slow @dangerous", "server", "6.0.0",
                "Get the rules for a specific ACL user",
                "O(N). Where N is the number of password, command and pattern rules that "
                "the user has.",
                args=(_a("username", "string"),),
            ),
            _spec(
                "acl|list", 2, "admin noscript loading stale", (0, 0, 0),
                "@admin @slow @dangerous", "server", "6.0.0",
                "List the current ACL rules in ACL config file format",
                "O(N). Where N is the number of configured users.",
            ),
            _spec(
                "acl|setuser", -3, "admin noscript loading stale", (0, 0, 0),
                "@admin @slow @dangerous", "server", "6.0.0",
                "Modify or create the rules for a specific ACL user",
                "O(N). Where N is the number of rules provided.",
                args=(_a("username", "string"), _a("rule", "string", flags="optional multiple")),
            ),
            _spec(
                "acl|users", 2, "admin noscript loading stale", (0, 0, 0),
                "@admin @slow @dangerous", "server", "6.0.0", "List the username of all the "
                "configured ACL rules", "O(N). Where N is the number of configured users.",
            ),
            _spec(
                "acl|whoami", 2, "noscript loading stale", (0, 0, 0), "@slow", "server",
                "6.0.0", "Return the name of the user associated to the current connection",
                "O(1)",
            ),
            _spec(
                "acl|help", 2, "loading stale", (0, 0, 0), "@slow", "server", "6.0.0",
                "Show helpful text about the different subcommands", "O(1)",
            ),
        ),
    ),
    _spec(
        "select", 2, "loading stale fast", (0, 0, 0), "@fast @connection", "connection", "1.0.0",
        "Change the selected database for the current connection", "O(1)",
        args=(_a("index", "integer"),),
    ),
    _spec(
        "quit", -1, "noscript loading stale fast no_auth allow_busy", (0, 0, 0),
        "@fast @connection", "connection", "1.0.0", "Close the connection", "O(1)",
    ),
    _spec(
        "client", -2, "", (0, 0, 0), "@slow", "connection", "2.4.0",
        "A container for client connection commands", "Depends on subcommand",
        subcommands=(
            _spec(
                "client|setname", 3, "noscript loading stale", (0, 0, 0), "@slow @connection",
                "connection", "2.6.9", "Set the current connection name", "O(1)",
                args=(_a("connection-name", "string"),),
            ),
            _spec(
                "client|getname", 2, "noscript loading stale", (0, 0, 0), "@slow @connection",
                "connection", "2.6.9", "Get the current connection name", "O(1)",
            ),
            _spec(
                "client|id", 2, "noscript loading stale", (0, 0, 0), "@slow @connection",
                "connection", "5.0.0", "Returns the client ID for the current connection", "O(1)",
            ),
            _spec(
                "client|info", 2, "noscript loading stale", (0, 0, 0), "@slow @connection",
                "connection", "6.2.0", "Returns information about the current client connection.",
                "O(1)", tips="nondeterministic_output",
            ),
            _spec(
                "client|list", -2, "admin noscript loading stale", (0, 0, 0),
                "@admin @slow @dangerous @connection", "connection", "2.4.0",
                "Get the list of client connections",
                "O(N) where N is the number of client connections", tips="nondeterministic_output",
                args=(
                    _a(
                        "normal_master_replica_pubsub", "oneof", token="TYPE", flags="optional",
                        args=(
                            _a("normal", "pure-token", token="NORMAL"),
                            _a("master", "pure-token", token="MASTER"),
                            _a("replica", "pure-token", token="REPLICA"),
                            _a("pubsub", "pure-token", token="PUBSUB"),
                        ),
                    ),
                    _a(
                        "id", "block", token="ID", flags="optional",
                        args=(_a("client-id", "integer", flags="multiple"),),
                    ),
                ),
            ),
            _spec(
                "client|kill", -3, "admin noscript loading stale", (0, 0, 0),
                "@admin @slow @dangerous @connection", "connection", "2.4.0",
                "Kill the connection of a client",
                "O(N) where N is the number of client connections",
                args=(
                    _a(
                        "filter", "oneof",
                        args=(
                            _a("ip:port", "string"),
                            _a(
                                "new-format", "oneof", flags="multiple",
                                args=(
                                    _a("client-id", "integer", token="ID", flags="optional"),
                                    _a(
                                        "normal_master_slave_pubsub", "oneof", token="TYPE",
                                        flags="optional",
                                        args=(
                                            _a("normal", "pure-token", token="NORMAL"),
                                            _a("master", "pure-token", token="MASTER"),
                                            _a("slave", "pure-token", token="SLAVE"),
                                            _a("replica", "pure-token", token="REPLICA"),
                                            _a("pubsub", "pure-token", token="PUBSUB"),
                                        ),
                                    ),
                                    _a("username", "string", token="USER", flags="optional"),
                                    _a("ip:port", "string", token="ADDR", flags="optional"),
                                    _a("ip:port", "string", token="LADDR", flags="optional"),
                                    _a("yes/no", "string", token="SKIPME", flags="optional"),
                                ),
                            ),
                        ),
                    ),
                ),
            ),
            _spec(
                "client|reply", 3, "noscript loading stale", (0, 0, 0), "@slow @connection",
                "connection", "3.2.0", "Instruct the server whether to reply to commands", "O(1)",
                args=(
                    _a(
                        "on_off_skip", "oneof",
                        args=(
                            _a("on", "pure-token", token="ON"),
                            _a("off", "pure-token", token="OFF"),
                            _a("skip", "pure-token", token="SKIP"),
                        ),
                    ),
                ),
            ),
            _spec(
                "client|no-evict", 3, "admin noscript loading stale", (0, 0, 0),
                "@admin @slow @dangerous @connection", "connection", "7.0.0",
                "Set client eviction mode for the current connection", "O(1)",
                args=(
                    _a(
                        "enabled", "oneof",
                        args=(
                            _a("on", "pure-token", token="ON"),
                            _a("off", "pure-token", token="OFF"),
                        ),
                    ),
                ),
            ),
            _spec(
                "client|setinfo", -4, "noscript loading stale", (0, 0, 0), "@slow @connection",
                "connection", "7.2.0", "Set client or connection specific info", "O(1)",
                args=(
                    _a(
                        "attr", "oneof",
                        args=(
                            _a("libname", "string", token="LIB-NAME"),
                            _a("libver", "string", token="LIB-VER"),
                        ),
                    ),
                ),
            ),
            _spec(
                "client|help", 2, "loading stale", (0, 0, 0), "@slow @connection", "connection",
                "5.0.0", "Show helpful text about the different subcommands", "O(1)",
            ),
        ),
    ),
    _spec(
        "command", -1, "loading stale", (0, 0, 0), "@slow @connection", "server", "2.8.13",
        "Get array of Redis command details", "O(N) where N is the total number of Redis commands",
        tips="nondeterministic_output_order",
        subcommands=(
            _spec(
                "command|count", 2, "loading stale", (0, 0, 0), "@slow @connection", "server",
                "2.8.13", "Get total number of Redis commands", "O(1)",
            ),
            _spec(
                "command|info", -2, "loading stale", (0, 0, 0), "@slow @connection", "server",
                "2.8.13",
                "Get array of specific Redis command details, or all when no argument is given.",
                "O(N) where N is the number of commands to look up",
                tips="nondeterministic_output_order",
                args=(_a("command-name", "string", flags="optional multiple"),),
            ),
            _spec(
                "command|docs", -2, "loading stale", (0, 0, 0), "@slow @connection", "server",
                "7.0.0", "Get array of specific Redis command documentation",
                "O(N) where N is the number of commands to look up",
                tips="nondeterministic_output_order",
                args=(_a("command-name", "string", flags="optional multiple"),),
            ),
            _spec(
                "command|list", -2, "loading stale", (0, 0, 0), "@slow @connection", "server",
                "7.0.0", "Get an array of Redis command names",
                "O(N) where N is the total number of Redis commands",
                tips="nondeterministic_output_order",
                args=(
                    _a(
                        "filterby", "oneof", token="FILTERBY", flags="optional",
                        args=(
                            _a("module-name", "string", token="MODULE"),
                            _a("category", "string", token="ACLCAT"),
                            _a("pattern", "pattern", token="PATTERN"),
                        ),
                    ),
                ),
            ),
            _spec(
                "command|getkeys", -4, "loading stale", (0, 0, 0), "@slow @connection", "server",
                "2.8.13", "Extract keys given a full Redis command",
                "O(N) where N is the number of arguments to the command",
            ),
            _spec(
                "command|getkeysandflags", -4, "loading stale", (0, 0, 0), "@slow @connection",
                "server", "7.0.0", "Extract keys and access flags given a full Redis command",
                "O(N) where N is the number of arguments to the command",
            ),
            _spec(
                "command|help", 2, "loading stale", (0, 0, 0), "@slow @connection", "server",
                "5.0.0", "Show helpful text about the different subcommands", "O(1)",
            ),
        ),
    ),
    _spec(
        "config", -2, "", (0, 0, 0), "@slow", "server", "2.0.0",
        "A container for server configuration commands", "Depends on subcommand",
        subcommands=(
            _spec(
                "config|get", -3, "admin noscript loading stale", (0, 0, 0),
                "@admin @slow @dangerous", "server", "2.0.0",
                "Get the values of configuration parameters",
                "O(N) when N is the number of configuration parameters provided",
                args=(
                    _a("parameter", "block", flags="multiple", args=(_a("parameter", "string"),)),
                ),
            ),
            _spec(
                "config|set", -4, "admin noscript loading stale", (0, 0, 0),
                "@admin @slow @dangerous", "server", "2.0.0",
                "Set configuration parameters to the given values",
                "O(N) when N is the number of configuration parameters provided",
                tips="request_policy:all_nodes response_policy:all_succeeded",
                args=(
                    _a(
                        "parameter_value", "block", flags="multiple",
                        args=(_a("parameter", "string"), _a("value", "string")),
                    ),
                ),
            ),
            _spec(
                "config|resetstat", 2, "admin noscript loading stale", (0, 0, 0),
                "@admin @slow @dangerous", "server", "2.0.0", "Reset the stats returned by INFO",
                "O(1)",
            ),
            _spec(
                "config|rewrite", 2, "admin noscript loading stale", (0, 0, 0),
                "@admin @slow @dangerous", "server", "2.8.0",
                "Rewrite the configuration file with the in memory configuration", "O(1)",
            ),
            _spec(
                "config|help", 2, "loading stale", (0, 0, 0), "@slow", "server", "5.0.0",
                "Show helpful text about the different subcommands", "O(1)",
            ),
        ),
    ),
    _spec(
        "info", -1, "loading stale", (0, 0, 0), "@slow @dangerous", "server", "1.0.0",
        "Get information and statistics about the server", "O(1)",
        tips="nondeterministic_output request_policy:all_shards response_policy:special",
        args=(_a("section", "string", flags="optional multiple"),),
    ),
    _spec(
        "cluster", -2, "", (0, 0, 0), "@slow", "cluster", "3.0.0",
        "A container for cluster commands", "Depends on subcommand",
        subcommands=(
            _spec(
                "cluster|shards", 2, "stale", (0, 0, 0), "@slow", "cluster", "7.0.0",
                "Get array of cluster slots to node mappings",
                "O(N) where N is the total number of cluster nodes", tips="nondeterministic_output",
            ),
            _spec(
                "cluster|slots", 2, "stale", (0, 0, 0), "@slow", "cluster", "3.0.0",
                "Get array of Cluster slot to node mappings",
                "O(N) where N is the total number of Cluster nodes", tips="nondeterministic_output",
                doc_flags="deprecated", deprecated_since="7.0.0", replaced_by="`CLUSTER SHARDS`",
            ),
            _spec(
                "cluster|nodes", 2, "stale", (0, 0, 0), "@slow", "cluster", "3.0.0",
                "Get Cluster config for the node",
                "O(N) where N is the total number of Cluster nodes", tips="nondeterministic_output",
            ),
            _spec(
                "cluster|keyslot", 3, "stale", (0, 0, 0), "@slow", "cluster", "3.0.0",
                "Returns the hash slot of the specified key",
                "O(N) where N is the number of bytes in the key", args=(_a("key", "string"),),
            ),
            _spec(
                "cluster|info", 2, "stale", (0, 0, 0), "@slow", "cluster", "3.0.0",
                "Provides info about Redis Cluster node state", "O(1)",
                tips="nondeterministic_output",
            ),
            _spec(
                "cluster|myid", 2, "stale", (0, 0, 0), "@slow", "cluster", "3.0.0",
                "Return the node id", "O(1)",
            ),
            _spec(
                "cluster|countkeysinslot", 3, "stale", (0, 0, 0), "@slow", "cluster", "3.0.0",
                "Return the number of local keys in the specified hash slot", "O(1)",
                args=(_a("slot", "integer"),),
            ),
            _spec(
                "cluster|getkeysinslot", 4, "stale", (0, 0, 0), "@slow", "cluster", "3.0.0",
                "Return local key names in the specified hash slot",
                "O(log(N)) where N is the number of requested keys", tips="nondeterministic_output",
                args=(_a("slot", "integer"), _a("count", "integer")),
            ),
            _spec(
                "cluster|help", 2, "loading stale", (0, 0, 0), "@slow", "cluster", "5.0.0",
                "Show helpful text about the different subcommands", "O(1)",
            ),
        ),
    ),
    _spec(
        "readonly", 1, "loading stale fast", (0, 0, 0), "@fast @connection", "cluster", "3.0.0",
        "Enables read queries for a connection to a cluster replica node", "O(1)",
    ),
    _spec(
        "readwrite", 1, "loading stale fast", (0, 0, 0), "@fast @connection", "cluster", "3.0.0",
        "Disables read queries for a connection to a cluster replica node", "O(1)",
    ),
)
# fmt: on


def _with_kind(spec: CommandSpec, kind: CommandKind) -> CommandSpec:
    subs = tuple(_with_kind(sub, kind) for sub in spec.subcommands)
    return replace(spec, kind=kind, subcommands=subs)


def _type_spec(row: TypeRow) -> CommandSpec:
    name, arity, flags, keys, acl, group, since, summary = row
    first, last, step = keys
    access = "RO access" if "readonly" in flags else "RW update"
    last_key = last - first if last >= 0 else last
    return _spec(
        name,
        arity,
        flags,
        keys,
        acl,
        group,
        since,
        summary,
        "",
        key_specs=(_ks(access, first, last_key, step),),
    )


COMMANDS: Final[tuple[CommandSpec, ...]] = tuple(
    [_with_kind(spec, CommandKind.DATA) for spec in _DATA_COMMANDS]
    + [_with_kind(_type_spec(row), CommandKind.DATA) for row in TYPE_COMMAND_ROWS]
    + [_with_kind(spec, CommandKind.SERVER) for spec in _SERVER_COMMANDS]
)
"""Every top-level command, in table order (``COMMAND COUNT`` is its length)."""

_BY_NAME: Final[dict[bytes, CommandSpec]] = {spec.name.encode(): spec for spec in COMMANDS}


def lookup(name: bytes) -> CommandSpec | None:
    """The top-level command called ``name`` (any case), or None."""
    spec = _BY_NAME.get(name)
    if spec is None:
        spec = _BY_NAME.get(name.lower())
    return spec


def _c_string(arg: bytes) -> bytes:
    # Redis formats arguments with "%s": a NUL byte ends them.
    end = arg.find(b"\x00")
    return arg if end < 0 else arg[:end]


def _error_text(raw: bytes) -> str:
    # Redis turns CR and LF into spaces so that user bytes cannot break the protocol.
    return raw.decode("utf-8", "surrogateescape").replace("\r", " ").replace("\n", " ")


#: Redis quotes at most this many bytes of a name or of the arguments in an error.
_ERROR_ARGS_BYTES: Final = 128


def unknown_command_error(args: list[bytes]) -> ErrorReply:
    """Redis 7's reply to an unknown command: ``ERR unknown command 'foo', with args
    beginning with: 'a' 'b' `` (each argument quoted and followed by a space; arguments are
    added while fewer than 128 bytes were written, the last one cut to fit 128 bytes)."""
    quoted = b""
    for arg in args[1:]:
        if len(quoted) >= _ERROR_ARGS_BYTES:
            break
        room = _ERROR_ARGS_BYTES - len(quoted)
        quoted += b"'" + _c_string(arg)[:room] + b"' "
    name = _c_string(args[0])[:_ERROR_ARGS_BYTES] if args else b""
    return ErrorReply(
        "ERR unknown command '"
        + _error_text(name)
        + "', with args beginning with: "
        + _error_text(quoted)
    )


def unknown_subcommand_error(args: list[bytes]) -> ErrorReply:
    """Redis 7's reply to an unknown subcommand of a container command (``args`` has at
    least two elements): ``ERR unknown subcommand 'foo'. Try CLIENT HELP.``"""
    sub = _error_text(_c_string(args[1])[:_ERROR_ARGS_BYTES])
    container = _error_text(_c_string(args[0])).upper()
    return ErrorReply(f"ERR unknown subcommand '{sub}'. Try {container} HELP.")


def check_arity(spec: CommandSpec, args: list[bytes]) -> ErrorReply | None:
    """None if ``args`` (the command name included) has a number of elements ``spec``
    accepts, else Redis's ``ERR wrong number of arguments for 'get' command``."""
    arity = spec.arity
    count = len(args)
    if (arity >= 0 and count != arity) or count < -arity:
        return spec.arity_error
    return None


def resolve(args: list[bytes]) -> CommandSpec | ErrorReply:
    """Find the command (or subcommand) ``args`` invokes and check its arity, in Redis's
    order: unknown command, then unknown subcommand, then wrong number of arguments.
    A container called without a subcommand resolves to the container itself, whose arity
    (-2) then fails, as in Redis. ``args`` must not be empty."""
    spec = lookup(args[0])
    if spec is None:
        return unknown_command_error(args)
    if spec.subcommands and len(args) >= 2:
        sub = spec.subcommand(args[1])
        if sub is None:
            return unknown_subcommand_error(args)
        spec = sub
    error = check_arity(spec, args)
    return spec if error is None else error


def key_positions(spec: CommandSpec, arg_count: int) -> range:
    """Indexes of the key arguments in a call of ``spec`` with ``arg_count`` arguments
    (name included, arity already checked): Redis's first/last/step rule."""
    if spec.first_key == 0:
        return range(0)
    last = spec.last_key if spec.last_key >= 0 else arg_count + spec.last_key
    return range(spec.first_key, last + 1, spec.key_step)


def command_keys(spec: CommandSpec, args: list[bytes]) -> list[bytes]:
    """The keys a call reads or writes, for slot routing (empty for keyless commands).
    ZUNIONSTORE/ZINTERSTORE (``movablekeys``) name theirs with a count: the destination
    and the ``numkeys`` keys after it (as many as there are, if the count is bad)."""
    if spec.name in _NUMKEYS_COMMANDS and len(args) >= 3:
        count = int(args[2]) if args[2].isdigit() and len(args[2]) < 10 else 0
        return [args[1], *args[3 : 3 + count]]
    return [args[i] for i in key_positions(spec, len(args))]


_NUMKEYS_COMMANDS: Final = frozenset({"zunionstore", "zinterstore"})


# ----------------------------------------------------------------------------------------
# COMMAND INFO / COMMAND DOCS replies. RESP2 has no map type, so maps are flat
# [key, value, key, value, ...] arrays, which is what Redis sends a RESP2 client.


def _statuses(words: tuple[str, ...]) -> list[Reply]:
    return [SimpleString(word) for word in words]


def _key_spec_reply(key_spec: KeySpec) -> list[Reply]:
    reply: list[Reply] = []
    if key_spec.notes:
        reply += [b"notes", key_spec.notes.encode()]
    reply += [
        b"flags",
        _statuses(key_spec.flags),
        b"begin_search",
        [b"type", b"index", b"spec", [b"index", key_spec.begin_index]],
        b"find_keys",
        [
            b"type",
            b"range",
            b"spec",
            [
                b"lastkey",
                key_spec.last_key,
                b"keystep",
                key_spec.key_step,
                b"limit",
                key_spec.limit,
            ],
        ],
    ]
    return reply


def command_info_reply(spec: CommandSpec) -> list[Reply]:
    """One element of ``COMMAND`` / ``COMMAND INFO``: [name, arity, flags, first key, last
    key, step, ACL categories, tips, key specs, subcommands], as Redis 7 sends it (flags and
    categories as status strings)."""
    return [
        spec.name.encode(),
        spec.arity,
        _statuses(spec.flags),
        spec.first_key,
        spec.last_key,
        spec.key_step,
        _statuses(tuple("@" + category.lstrip("@") for category in spec.acl_categories)),
        [tip.encode() for tip in spec.tips],
        [_key_spec_reply(key_spec) for key_spec in spec.key_specs],
        [command_info_reply(sub) for sub in spec.subcommands],
    ]


def _arg_reply(arg: Arg) -> list[Reply]:
    reply: list[Reply] = [b"name", arg.name.encode(), b"type", arg.type.encode()]
    if arg.key_spec_index >= 0:
        reply += [b"key_spec_index", arg.key_spec_index]
    if arg.token:
        reply += [b"token", arg.token.encode()]
    if arg.flags:
        reply += [b"flags", _statuses(arg.flags)]
    if arg.args:
        reply += [b"arguments", [_arg_reply(sub) for sub in arg.args]]
    return reply


def command_docs_reply(spec: CommandSpec) -> list[Reply]:
    """The documentation map of one command, as a flat array: summary, since, group,
    complexity, doc flags and deprecation when present, arguments, subcommands (a map of
    full subcommand name to its own documentation map). ``COMMAND DOCS`` answers
    ``[name, command_docs_reply(spec), name, ...]`` for the requested commands; redis-cli
    reads its hints from the arguments."""
    reply: list[Reply] = [
        b"summary",
        spec.summary.encode(),
        b"since",
        spec.since.encode(),
        b"group",
        spec.group.encode(),
    ]
    if spec.complexity:
        reply += [b"complexity", spec.complexity.encode()]
    if spec.doc_flags:
        reply += [b"doc_flags", _statuses(spec.doc_flags)]
    if spec.deprecated_since:
        reply += [b"deprecated_since", spec.deprecated_since.encode()]
    if spec.replaced_by:
        reply += [b"replaced_by", spec.replaced_by.encode()]
    if spec.args:
        reply += [b"arguments", [_arg_reply(arg) for arg in spec.args]]
    if spec.subcommands:
        subs: list[Reply] = []
        for sub in spec.subcommands:
            subs += [sub.name.encode(), command_docs_reply(sub)]
        reply += [b"subcommands", subs]
    return reply
