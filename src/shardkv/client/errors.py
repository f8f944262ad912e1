"""Errors raised by the ShardKV client, sorted by what they tell the caller about the command.

Every error answers one question first: did the command take effect?

- `DefiniteFailure`: the command was NOT executed (it was never sent, the server refused the
  connection, or the server redirected it). Repeating it is always safe; `Client` already did,
  up to `max_retries`, before raising.
- `CommandError`: the server received the command and answered with an error reply (syntax,
  wrong type, CROSSSLOT, ...). Nothing was applied; repeating the same command gets the same
  answer, so it is never retried.
- `UnknownOutcome`: the command was sent but no reply came back (timeout, lost connection).
  It may or may not have been applied. `Client` repeats it only when repeating is harmless
  (see `shardkv.client.policy`); otherwise the caller must find out (read the key) or accept
  the uncertainty.

`may_have_executed` is the same answer as a class attribute, for callers who prefer a flag to
an `except` clause. Messages name the command but never its arguments (keys and values may be
large or secret).
"""

from __future__ import annotations

from typing import ClassVar

Address = tuple[str, int]
"""A node's client address: (host, port)."""

MAX_CLIENTS_MESSAGE = "max number of clients reached"
"""Text of the error Redis (and ShardKV) sends on accept when the connection limit is hit."""


def format_address(address: Address | None) -> str:
    """`host:port`, with brackets around an IPv6 host; `the server` when unknown."""
    if address is None:
        return "the server"
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ShardKVError(Exception):
    """Base of every error the client raises on purpose.

    `address` is the node the attempt went to (None when not tied to one node) and `command`
    the command name in upper case (None when not tied to one command).
    """

    may_have_executed: ClassVar[bool] = False

    def __init__(
        self, message: str, *, address: Address | None = None, command: str | None = None
    ) -> None:
        super().__init__(message)
        self.address = address
        self.command = command


class ClientClosed(ShardKVError):
    """The `Client` was closed before or while this call ran; the command was not sent.

    A programming error in the caller (use after `close()`), so it is never retried.
    """


# --- Server error replies -------------------------------------------------------------------


class CommandError(ShardKVError):
    """The server answered the command with an error reply; the command was not applied.

    `code` is the reply's first word when it is an upper-case error code (`ERR`, `WRONGTYPE`,
    `CROSSSLOT`, ...), and `message` the server's reply text exactly, code included. The
    caller must change the command (or the data it operates on): repeating it unchanged gets
    the same error.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str,
        server_message: str,
        address: Address | None = None,
        command: str | None = None,
    ) -> None:
        super().__init__(message, address=address, command=command)
        self.code = code
        self.message = server_message


# --- Definite failures: not executed, safe to repeat -----------------------------------------


class DefiniteFailure(ShardKVError):
    """The command was not executed. Repeating it is safe; the client already retried it."""


class ConnectionRefused(DefiniteFailure):
    """No connection could be opened to the node (refused, unreachable, timed out, TLS failed).

    The command was never sent. Check that the server is running and reachable at `address`.
    """


class RequestNotSent(DefiniteFailure):
    """The request was queued on a connection but never written to it (the connection broke,
    was closed, or no in-flight slot freed up before the deadline). Not executed.
    """


class ServerBusy(DefiniteFailure):
    """The server refused to take the command now: it is at its connection limit (`max number
    of clients reached`, sent before it read anything) or still loading its data (`LOADING`).
    Not executed; retry later, or raise the server's limit.
    """


class Moved(DefiniteFailure):
    """`-MOVED <slot> <host>:<port>`: this node does not serve `slot`; `host:port` leads it.

    Not executed. The client follows redirects by itself up to `max_redirects`; this error
    reaches the caller only when that budget is exhausted (usually a routing loop while the
    cluster changes leaders).
    """

    def __init__(
        self,
        message: str,
        *,
        slot: int,
        host: str,
        port: int,
        address: Address | None = None,
        command: str | None = None,
    ) -> None:
        super().__init__(message, address=address, command=command)
        self.slot = slot
        self.host = host
        self.port = port


class TryAgain(DefiniteFailure):
    """`-TRYAGAIN`: the shard cannot serve the command right now (for ShardKV: it has no
    leader, e.g. during an election). Not executed; retry after a short delay.
    """


class ClusterDown(DefiniteFailure):
    """`-CLUSTERDOWN`: the cluster cannot serve this slot (no quorum, slot unassigned).
    Not executed; retry later, and check the cluster's health if it persists.
    """


# --- Unknown outcomes: sent, no reply ---------------------------------------------------------


class UnknownOutcome(ShardKVError):
    """The command was sent but no reply was received: it may or may not have been applied.

    The client repeats such commands only when repeating is harmless (reads, plain SET/MSET).
    For anything else the caller decides: read the affected keys to learn the outcome, or
    treat the operation as possibly applied.
    """

    may_have_executed: ClassVar[bool] = True


class RequestTimeout(UnknownOutcome):
    """No reply arrived within the request timeout. The server may be slow, paused or
    partitioned away; the command may still be applied later. The connection it was sent on
    has been closed (replies are ordered, so it could not be reused safely).
    """


class ConnectionLost(UnknownOutcome):
    """The connection broke (peer closed or reset it, malformed reply, client closed it)
    after the request was written and before its reply arrived.
    """


class ServerUnknownOutcome(UnknownOutcome):
    """The server itself could not tell whether the command was applied (``-UNKNOWN``
    reply): for example a write proposed to Raft whose leader lost its quorum before the
    entry committed. It may still be applied later.
    """


class UnexpectedReply(ShardKVError):
    """The server answered a typed helper (`Client.get`, ...) with a reply of the wrong
    shape, such as a string where a count belongs. The command was executed; either side is
    buggy, or the server does not give the command Redis semantics.
    """

    may_have_executed: ClassVar[bool] = True


# --- Mapping server error replies -----------------------------------------------------------


def error_from_reply(
    server_message: str, *, address: Address | None = None, command: str | None = None
) -> ShardKVError:
    """The exception for a top-level error reply `-<server_message>` to `command`.

    MOVED, TRYAGAIN, CLUSTERDOWN, LOADING and the connection-limit error become definite
    failures the client may retry or redirect; every other error reply is a `CommandError`.
    A malformed MOVED (bad slot or address) is a `CommandError` too: following it is unsafe.
    """
    code, _, rest = server_message.partition(" ")
    where = format_address(address)
    what = command or "the command"
    if code == "MOVED":
        moved = _parse_moved(rest)
        if moved is not None:
            slot, host, port = moved
            return Moved(
                f"{where} does not serve slot {slot} for {what}; {format_address((host, port))}"
                " does. The command was not executed; send it there.",
                slot=slot,
                host=host,
                port=port,
                address=address,
                command=command,
            )
    elif code == "UNKNOWN":
        return ServerUnknownOutcome(
            f"{where} could not tell whether {what} was applied ({server_message}). Read the"
            " affected keys before retrying anything that is not idempotent.",
            address=address,
            command=command,
        )
    elif code == "TRYAGAIN":
        return TryAgain(
            f"{where} cannot serve {what} right now ({server_message}). The command was not"
            " executed; retry after a short delay.",
            address=address,
            command=command,
        )
    elif code == "CLUSTERDOWN":
        return ClusterDown(
            f"{where} reports the cluster cannot serve {what} ({server_message}). The command"
            " was not executed; retry later and check the cluster's health if it persists.",
            address=address,
            command=command,
        )
    elif code == "LOADING":
        return ServerBusy(
            f"{where} is still loading its data ({server_message}). The command was not"
            " executed; retry later.",
            address=address,
            command=command,
        )
    elif server_message == f"ERR {MAX_CLIENTS_MESSAGE}":
        return server_busy_max_clients(address=address, command=command)
    return CommandError(
        f"{where} rejected {what}: {server_message}",
        code=code if code.isupper() else "",
        server_message=server_message,
        address=address,
        command=command,
    )


def server_busy_max_clients(
    *, address: Address | None = None, command: str | None = None
) -> ServerBusy:
    """The error for a connection the server turned away at its connection limit."""
    return ServerBusy(
        f"{format_address(address)} refused the connection: {MAX_CLIENTS_MESSAGE}."
        f" {command or 'The command'} was not executed; retry later or raise the server's"
        " connection limit.",
        address=address,
        command=command,
    )


def _parse_moved(rest: str) -> tuple[int, str, int] | None:
    """`<slot> <host>:<port>` -> (slot, host, port); None when malformed.

    The host may be an IPv6 literal (`::1:7379`) or bracketed (`[::1]:7379`); the port is
    whatever follows the last colon.
    """
    slot_text, _, endpoint = rest.partition(" ")
    host, sep, port_text = endpoint.strip().rpartition(":")
    if not sep or not slot_text.isdigit() or not port_text.isdigit():
        return None
    host = host.removeprefix("[").removesuffix("]")
    port = int(port_text)
    if not host or not 0 < port < 65536:
        return None
    return int(slot_text), host, port
