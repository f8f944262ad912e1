"""Connection and server commands: the ones that touch no data.

PING, ECHO, HELLO, SELECT, QUIT, CLIENT, COMMAND, CONFIG, INFO, READONLY, READWRITE,
CLUSTER. Data commands go to the state machine through the committer instead. Replies and
error strings follow Redis 7.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from shardkv import __version__
from shardkv.core import commands as table
from shardkv.core.kv.glob import glob_match
from shardkv.core.resp import OK, PONG, ErrorReply, MapReply, Reply

if TYPE_CHECKING:
    from shardkv.server.app import Server
    from shardkv.server.connection import ClientConnection

#: The Redis version we answer to (HELLO, INFO): the command set and errors follow Redis 7.
REDIS_COMPAT_VERSION = "7.0.0"

Handler = Callable[["Server", "ClientConnection", list[bytes]], Reply]


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
    while i < len(args):
        option = args[i].upper()
        if option == b"AUTH" and i + 2 < len(args):
            i += 3  # no users configured: like Redis's default user without a password
        elif option == b"SETNAME" and i + 1 < len(args):
            conn.name = args[i + 1]
            i += 2
        else:
            return ErrorReply(
                f"ERR Syntax error in HELLO option '{args[i].decode(errors='replace')}'"
            )
    conn.protocol = version
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
        name = args[2]
        if any(c <= 32 or c > 126 for c in name):
            return ErrorReply(
                "ERR Client names cannot contain spaces, newlines or special characters."
            )
        conn.name = name
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
