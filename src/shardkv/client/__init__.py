"""Python client for ShardKV (and Redis): asyncio `Client`, blocking `SyncClient`.

    async with Client("127.0.0.1", 7379) as client:
        await client.set(b"k", b"v")
        assert await client.get(b"k") == b"v"

Errors tell whether the command happened: `DefiniteFailure` (not executed), `CommandError`
(rejected by the server), `UnknownOutcome` (sent, no reply). The client retries definite
failures, follows `-MOVED` redirects, and repeats unknown outcomes only for commands that are
safe to repeat (`shardkv.client.policy`).
"""

from shardkv.client.client import Arg, Client, ClientStats
from shardkv.client.connection import Connection
from shardkv.client.errors import (
    ClientClosed,
    ClusterDown,
    CommandError,
    ConnectionLost,
    ConnectionRefused,
    DefiniteFailure,
    Moved,
    RequestNotSent,
    RequestTimeout,
    ServerBusy,
    ServerUnknownOutcome,
    ShardKVError,
    TryAgain,
    UnexpectedReply,
    UnknownOutcome,
)
from shardkv.client.policy import is_safe_to_repeat
from shardkv.client.sync import SyncClient

__all__ = [
    "Arg",
    "Client",
    "ClientClosed",
    "ClientStats",
    "ClusterDown",
    "CommandError",
    "Connection",
    "ConnectionLost",
    "ConnectionRefused",
    "DefiniteFailure",
    "Moved",
    "RequestNotSent",
    "RequestTimeout",
    "ServerBusy",
    "ServerUnknownOutcome",
    "ShardKVError",
    "SyncClient",
    "TryAgain",
    "UnexpectedReply",
    "UnknownOutcome",
    "is_safe_to_repeat",
]
