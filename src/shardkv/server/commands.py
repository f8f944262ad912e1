"""Connection and server commands: the ones that touch no data.

PING, ECHO, HELLO, AUTH, ACL, SELECT, QUIT, CLIENT, COMMAND, CONFIG, INFO, READONLY,
READWRITE, CLUSTER. Data commands go to the state machine through the committer instead.
Replies and error strings follow Redis 7.

A handler answers at once with a `Reply`, or with a coroutine when the answer needs the
cluster (``ACL SETUSER`` and ``ACL DELUSER`` go through the placement group): the
connection then waits for it before running what the client sent next.
"""

from __future__ import annotations

import os
import platform
import secrets
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Final

from shardkv import __version__
from shardkv.core import acl
from shardkv.core import commands as table
from shardkv.core.kv.glob import glob_match
from shardkv.core.resp import OK, PONG, ErrorReply, MapReply, Reply

if TYPE_CHECKING:
    from shardkv.server.app import Server
    from shardkv.server.connection import ClientConnection

#: The Redis version we answer to (HELLO, INFO): the command set and errors follow Redis 7.
REDIS_COMPAT_VERSION = "7.0.0"

Handler = Callable[["Server", "ClientConnection", list[bytes]], Reply | Coroutine[Any, Any, Reply]]

WRONGPASS: Final = ErrorReply("WRONGPASS invalid username-password pair or user is disabled.")
NOAUTH: Final = ErrorReply("NOAUTH Authentication required.")
BAD_CLIENT_NAME: Final = ErrorReply(
    "ERR Client names cannot contain spaces, newlines or special characters."
)


def _valid_client_name(name: bytes) -> bool:
    return not any(c <= 32 or c > 126 for c in name)


def _syntax() -> ErrorReply:
    return ErrorReply("ERR syntax error")


def _unsupported(args: list[bytes]) -> ErrorReply:
    name = " ".join(a.decode(errors="replace") for a in args[:2]).upper()
    return ErrorReply(f"ERR {name} is not supported by ShardKV")


def ping(server: Server, conn: ClientConnection, args: list[bytes]) -> Reply:
    if len(args) == 1:
        return PONG
    return args[1]


def echo(server: Server, conn: ClientConnection, args: list[bytes]) -> Reply:
    return args[1]


def hello(server: Server, conn: ClientConnection, args: list[bytes]) -> Reply:
    i = 1
    if len(args) > 1:
        try:
            version = int(args[1])
        except ValueError:
            return ErrorReply("ERR Protocol version is not an integer or out of range")
        if version not in (2, 3):
            return ErrorReply("NOPROTO unsupported protocol version")
        i = 2
    else:
        version = conn.protocol
    login: tuple[str, bytes] | None = None
    name: bytes | None = None
    while i < len(args):
        option = args[i].upper()
        if option == b"AUTH" and i + 2 < len(args):
            login = (args[i + 1].decode(errors="replace"), args[i + 2])
            i += 3
        elif option == b"SETNAME" and i + 1 < len(args):
            name = args[i + 1]
            i += 2
        else:
            return ErrorReply(
                f"ERR Syntax error in HELLO option '{args[i].decode(errors='replace')}'"
            )
    if name is not None and not _valid_client_name(name):
        return BAD_CLIENT_NAME
    if login is not None:
        if not _log_in(server, conn, *login):
            return WRONGPASS
    elif conn.user_name is None:
        return ErrorReply(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise "
            "the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the "
            "client and select the RESP protocol version at the same time"
        )
    conn.protocol = version
    if name is not None:
        conn.name = name
    return MapReply(
        (
            (b"server", b"redis"),
            (b"version", REDIS_COMPAT_VERSION.encode()),
            (b"proto", version),
            (b"id", conn.id),
            (b"mode", b"standalone"),
            (b"role", b"master"),
            (b"modules", []),
        )
    )


def _log_in(server: Server, conn: ClientConnection, name: str, password: bytes) -> bool:
    user = server.acl.user(name)
    if user is None or not acl.check_password(user, password):
        server.metrics.auth_failures.inc()
        return False
    conn.user_name = name
    return True


def auth(server: Server, conn: ClientConnection, args: list[bytes]) -> Reply:
    if len(args) > 3:
        return _syntax()
    if len(args) == 2:
        if server.acl.default_open():
            return ErrorReply(
                "ERR AUTH <password> called without any password configured for the default "
                "user. Are you sure your configuration is correct?"
            )
        name, password = acl.DEFAULT_USER, args[1]
    else:
        name, password = args[1].decode(errors="replace"), args[2]
    return OK if _log_in(server, conn, name, password) else WRONGPASS


def acl_(
    server: Server, conn: ClientConnection, args: list[bytes]
) -> Reply | Coroutine[Any, Any, Reply]:
    sub = args[1].lower()
    registry = server.acl
    if sub == b"whoami":
        return conn.user_name.encode() if conn.user_name is not None else None
    if sub == b"users":
        return [u.name.encode() for u in registry.users()]
    if sub == b"list":
        return [acl.describe(u).encode() for u in registry.users()]
    if sub == b"getuser":
        user = registry.user(args[2].decode(errors="replace"))
        return None if user is None else acl.getuser_reply(user)
    if sub == b"cat":
        if len(args) == 2:
            return [c.encode() for c in acl.CATEGORIES]
        if len(args) > 3:
            return _syntax()
        names = acl.category_commands(args[2].decode(errors="replace").lower())
        if names is None:
            return ErrorReply(f"ERR Unknown category '{args[2].decode(errors='replace')}'")
        return [n.encode() for n in names]
    if sub == b"genpass":
        bits = 256
        if len(args) == 3:
            try:
                bits = int(args[2])
            except ValueError:
                bits = 0
            if not 0 < bits <= 4096:
                return ErrorReply(
                    "ERR ACL GENPASS argument must be the number of bits for "
                    "the output password, a positive number up to 4096"
                )
        elif len(args) > 3:
            return _syntax()
        return secrets.token_hex((bits + 7) // 8)[: (bits + 3) // 4].encode()
    if sub == b"setuser":
        return registry.set_user(args[2], args[3:])
    if sub == b"deluser":
        return registry.delete_users(args[2:])
    return _unsupported(args)


def select(server: Server, conn: ClientConnection, args: list[bytes]) -> Reply:
    try:
        index = int(args[1])
    except ValueError:
        return ErrorReply("ERR value is not an integer or out of range")
    if index != 0:
        return ErrorReply("ERR DB index is out of range")
    return OK


def quit_(server: Server, conn: ClientConnection, args: list[bytes]) -> Reply:
    conn.request_close_after_reply()
    return OK


def client(server: Server, conn: ClientConnection, args: list[bytes]) -> Reply:
    sub = args[1].upper()
    if sub == b"ID" and len(args) == 2:
        return conn.id
    if sub == b"SETNAME" and len(args) == 3:
        if not _valid_client_name(args[2]):
            return BAD_CLIENT_NAME
        conn.name = args[2]
        return OK
    if sub == b"GETNAME" and len(args) == 2:
        return conn.name or None
    if sub == b"INFO" and len(args) == 2:
        return (conn.info_line(time.monotonic()) + "\n").encode()
    if sub == b"LIST":
        now = time.monotonic()
        return "".join(c.info_line(now) + "\n" for c in server.clients()).encode()
    if sub == b"SETINFO" and len(args) == 4:
        return OK  # redis-py sends it; library name/version are not kept
    return _unsupported(args)


def command(server: Server, conn: ClientConnection, args: list[bytes]) -> Reply:
    if len(args) == 1:
        return [table.command_info_reply(spec) for spec in table.COMMANDS]
    sub = args[1].upper()
    if sub == b"COUNT":
        return len(table.COMMANDS)
    if sub == b"INFO":
        specs = table.COMMANDS if len(args) == 2 else [table.lookup(a) for a in args[2:]]
        return [None if s is None else table.command_info_reply(s) for s in specs]
    if sub == b"DOCS":
        specs = table.COMMANDS if len(args) == 2 else [table.lookup(a) for a in args[2:]]
        out: list[Reply] = []
        for spec in specs:
            if spec is not None:
                out.append(spec.name.encode())
                out.append(table.command_docs_reply(spec))
        return out
    if sub == b"LIST":
        return [spec.name.encode() for spec in table.COMMANDS]
    if sub == b"GETKEYS":
        spec = table.resolve(args[2:])
        if isinstance(spec, ErrorReply):
            return ErrorReply("ERR Invalid command specified")
        keys = table.command_keys(spec, args[2:])
        return list(keys) if keys else ErrorReply("ERR The command has no key arguments")
    return _unsupported(args)


def config(server: Server, conn: ClientConnection, args: list[bytes]) -> Reply:
    sub = args[1].upper()
    if sub == b"GET" and len(args) >= 3:
        values = server.config_view()
        found: dict[bytes, Reply] = {}
        for pattern in args[2:]:
            for name, value in values.items():
                if glob_match(pattern.lower(), name.encode()):
                    found[name.encode()] = value.encode()
        return MapReply(tuple(found.items()))
    if sub == b"SET":
        return ErrorReply("ERR CONFIG SET is not supported: restart shardkv with new settings")
    if sub == b"RESETSTAT" and len(args) == 2:
        return OK
    return _unsupported(args)


def info(server: Server, conn: ClientConnection, args: list[bytes]) -> Reply:
    sections = server.info_sections()
    wanted = {a.decode(errors="replace").lower() for a in args[1:]}
    if not wanted or wanted & {"all", "everything", "default"}:
        wanted = set(sections)
    parts = []
    for name, fields in sections.items():
        if name in wanted:
            body = "".join(f"{k}:{v}\r\n" for k, v in fields.items())
            parts.append(f"# {name.capitalize()}\r\n{body}")
    return "\r\n".join(parts).encode()


def readonly(server: Server, conn: ClientConnection, args: list[bytes]) -> Reply:
    conn.readonly = True
    return OK


def readwrite(server: Server, conn: ClientConnection, args: list[bytes]) -> Reply:
    conn.readonly = False
    return OK


def cluster(server: Server, conn: ClientConnection, args: list[bytes]) -> Reply:
    if server.cluster is None:
        return ErrorReply("ERR This instance has cluster support disabled")
    return server.cluster.cluster_command(args)


HANDLERS: dict[str, Handler] = {
    "ping": ping,
    "echo": echo,
    "hello": hello,
    "auth": auth,
    "acl": acl_,
    "select": select,
    "quit": quit_,
    "client": client,
    "command": command,
    "config": config,
    "info": info,
    "readonly": readonly,
    "readwrite": readwrite,
    "cluster": cluster,
}


def server_info_fields(server: Server) -> dict[str, str]:
    return {
        "redis_version": REDIS_COMPAT_VERSION,
        "shardkv_version": __version__,
        "redis_mode": "cluster" if server.cluster is not None else "standalone",
        "os": f"{platform.system()} {platform.release()} {platform.machine()}",
        "arch_bits": "64",
        "process_id": str(os.getpid()),
        "tcp_port": str(server.port),
        "uptime_in_seconds": str(int(time.monotonic() - server.started_s)),
        "executable": "shardkv",
    }
