"""Which slot a command is for, by Redis Cluster's rules.

A command with keys goes to the slot of its keys; all of them must hash to one slot (hash
tags make related keys share one), else Redis Cluster answers ``-CROSSSLOT`` and so do we.
A command without keys (DBSIZE, SCAN, KEYS, FLUSHALL) is for every shard this node leads,
as on a Redis Cluster master.
"""

from __future__ import annotations

import struct
from typing import Final

from shardkv.core.cluster.slots import key_slot
from shardkv.core.commands import command_keys, lookup
from shardkv.core.kv.transaction import TRANSACTION_COMMAND, keys_slot, transaction_keys
from shardkv.core.resp.replies import ErrorReply

CROSSSLOT: Final = ErrorReply("CROSSSLOT Keys in request don't hash to the same slot")
#: `command_slot` for a command that names no key.
KEYLESS: Final = -1
KEYLESS_TRANSACTION: Final = ErrorReply(
    "ERR a transaction on a cluster must name at least one key: its keys choose the shard"
    " that runs it"
)


def command_slot(args: list[bytes]) -> int | ErrorReply:
    """The slot ``args`` is for, `KEYLESS`, or `CROSSSLOT`. ``args`` must be a known data
    command whose arity was checked (the connection resolves it first)."""
    if args[0] == TRANSACTION_COMMAND:
        try:
            slot = keys_slot(transaction_keys(args))
        except (ValueError, struct.error):
            return CROSSSLOT  # not a transaction we built: refuse it
        if slot is None:
            return CROSSSLOT
        return KEYLESS_TRANSACTION if slot == KEYLESS else slot
    spec = lookup(args[0])
    if spec is None or spec.first_key == 0:
        return KEYLESS
    if spec.first_key == spec.last_key or len(args) == 2:
        return key_slot(args[spec.first_key])
    keys = command_keys(spec, args)
    slot = key_slot(keys[0])
    for key in keys[1:]:
        if key_slot(key) != slot:
            return CROSSSLOT
    return slot
