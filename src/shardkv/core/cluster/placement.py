"""The placement group: the Raft group (id 0) whose replicated state is the cluster map.

Every node hosts a replica of group 0: the first `PLACEMENT_VOTERS_MAX` nodes (by id) as
voters, every other node as a learner. So every node learns the map by applying group 0's
log (a learner is a watch that never misses a change and never votes), and never by
guessing. The map changes only through the commands below, proposed by group 0's leader:

- ``REGISTER_NODE <id> <peer> <client> <admin> <state> [<labels json>]``: add a node or
  replace its addresses, state and failure-domain labels (the node registry).
- ``JOIN_NODE <peer> <client> <admin> [<id>]``: register a node that joins through a seed
  and answer its id: the node already registered (and up) at that peer address keeps its
  id (a retried join), otherwise it gets one above every id the map has ever held, or
  the id it asks for (its certificate's, under mTLS) if no other node ever had it.
- ``SET_SHARDS <shard json> [...]``: add shards or replace them, all at once; each changed
  shard's epoch must rise (`ShardMap.with_shards`), and the result must still give every
  slot to exactly one shard.
- ``MERGE_SHARDS <survivor json> <absorbed id>``: record a finished merge: the survivor
  (with both shards' slots, its absorb cleared) replaces its entry and the absorbed shard
  is dropped (`ShardMap.with_merge`).
- ``SET_REBALANCE <pause|resume>``: stop or restart the scheduler's balance and leader
  moves (``shardkv rebalance pause``; repairs and drains go on).
- ``SET_ACL_USER <name> <base json or empty> <rule> [...]``: ``ACL SETUSER``: apply the
  rules to the user (created if missing, from ``base`` when given: the proposing node's
  ``default`` user, which comes from its local ``requirepass`` until the map holds one).
  A bad rule changes nothing and answers Redis's error.
- ``DEL_ACL_USERS <name> [...]``: ``ACL DELUSER``; answers how many existed.

A command that would break the map is refused (an error reply, nothing changes), on every
replica alike. This module is pure: the node driver stages the writes it returns and
reacts to `PlacementMachine.changed`.
"""

from __future__ import annotations

import json
from typing import Final

from shardkv.core.acl import AclRuleError, AclUser, apply_rules, decode_user, encode_user
from shardkv.core.cluster.shardmap import (
    NODE_UP,
    NodeInfo,
    ShardInfo,
    ShardMap,
    ShardMapError,
    decode_shard_fields,
    encode_shard_fields,
)
from shardkv.core.engine import META, WriteBatch
from shardkv.core.kv.scope import KeyScope
from shardkv.core.resp import OK, ErrorReply, Reply

#: The placement group's voters: at most this many (etcd's advice for a control plane:
#: five tolerate two failures; more only slow every change down).
PLACEMENT_VOTERS_MAX: Final = 5
#: META key of this node's copy of the cluster map (`ShardMap.encode`): the placement
#: group's applied state, written in the same batch as its applied index.
SHARD_MAP_KEY: Final = b"cluster/shard_map"
#: Log-only commands (the ``\x00`` prefix keeps them out of the client command table).
REGISTER_NODE: Final = b"\x00place-node"
JOIN_NODE: Final = b"\x00place-join"
SET_SHARDS: Final = b"\x00place-shards"
MERGE_SHARDS: Final = b"\x00place-merge"
#: ``rebalance <pause|resume>``: stop or restart the scheduler's balance moves.
SET_REBALANCE: Final = b"\x00place-rebalance"
SET_ACL_USER: Final = b"\x00place-acl-set"
DEL_ACL_USERS: Final = b"\x00place-acl-del"
#: The placement commands any node may forward to group 0's leader (`NodeDriver.propose_acl`).
ACL_COMMANDS: Final = frozenset({SET_ACL_USER, DEL_ACL_USERS})


def set_acl_user_command(name: str, base: AclUser | None, rules: list[bytes]) -> list[bytes]:
    return [SET_ACL_USER, name.encode(), b"" if base is None else encode_user(base), *rules]


def del_acl_users_command(names: list[str]) -> list[bytes]:
    return [DEL_ACL_USERS, *(n.encode() for n in names)]


def placement_members(node_ids: list[int]) -> tuple[list[int], list[int]]:
    """(voters, learners) of the placement group of a cluster of ``node_ids``."""
    ordered = sorted(node_ids)
    return ordered[:PLACEMENT_VOTERS_MAX], ordered[PLACEMENT_VOTERS_MAX:]


def rebalance_command(paused: bool) -> list[bytes]:
    return [SET_REBALANCE, b"pause" if paused else b"resume"]


def register_node_command(node: NodeInfo) -> list[bytes]:
    return [
        REGISTER_NODE,
        str(node.node_id).encode(),
        node.peer_address.encode(),
        node.client_address.encode(),
        node.admin_address.encode(),
        node.state.encode(),
        json.dumps(dict(node.labels), sort_keys=True).encode(),
    ]


def join_node_command(
    peer_address: str, client_address: str, admin_address: str, wanted_node_id: int = 0
) -> list[bytes]:
    command = [JOIN_NODE, peer_address.encode(), client_address.encode(), admin_address.encode()]
    return [*command, str(wanted_node_id).encode()] if wanted_node_id else command


def set_shards_command(shards: list[ShardInfo]) -> list[bytes]:
    return [SET_SHARDS, *(_encode_shard(s) for s in shards)]


def merge_shards_command(survivor: ShardInfo, absorbed_id: int) -> list[bytes]:
    return [MERGE_SHARDS, _encode_shard(survivor), str(absorbed_id).encode()]


def _encode_shard(shard: ShardInfo) -> bytes:
    return json.dumps(encode_shard_fields(shard), separators=(",", ":")).encode()


def _decode_shard(data: bytes) -> ShardInfo:
    try:
        return decode_shard_fields(json.loads(data))
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise ShardMapError(f"unreadable shard {data[:80]!r}: {exc}") from exc


class PlacementMachine:
    """The state machine of group 0 (the replica drives it as it drives a KV machine:
    ``begin_batch``, ``execute`` per committed command, ``finish_batch``).

    ``shard_map`` is the applied map (None only on a node that joined and has not yet
    received group 0's snapshot). ``changed`` is set whenever it changes; the driver clears
    it once it has reconciled its groups with the new map."""

    #: Owns no slots: client commands never reach group 0.
    scope: Final = KeyScope(0, ())

    def __init__(self, shard_map: ShardMap | None) -> None:
        self.shard_map = shard_map
        self.changed = False
        self._dirty = False

    def begin_batch(self) -> None:
        self._dirty = False

    def execute(self, args: list[bytes], now_ms: int) -> Reply:
        """Apply one placement command; an error reply (and no change) if it is malformed
        or would break the map."""
        current = self.shard_map
        if current is None:
            return ErrorReply("ERR the cluster map is not known on this replica yet")
        reply: Reply = OK
        try:
            if args[0] == REGISTER_NODE and len(args) in (6, 7):
                labels = json.loads(args[6]) if len(args) == 7 else {}
                peer, client, admin, state = (a.decode() for a in args[2:6])
                node = NodeInfo(
                    int(args[1]),
                    peer,
                    client,
                    admin,
                    state,
                    tuple(sorted((str(k), str(v)) for k, v in labels.items())),
                )
                updated = current.with_node(node)
            elif args[0] == JOIN_NODE and len(args) in (4, 5):
                peer, client, admin = (a.decode() for a in args[1:4])
                known = [
                    n
                    for n in current.nodes.values()
                    if n.peer_address == peer and n.state == NODE_UP
                ]
                node_id = known[0].node_id if known else max(current.nodes, default=0) + 1
                if len(args) == 5:
                    node_id = int(args[4])
                    taken = current.nodes.get(node_id)
                    if taken is not None and taken not in known:
                        return ErrorReply(
                            f"ERR node id {node_id} is already {taken.state} at "
                            f"{taken.peer_address}: a node id is never given twice"
                        )
                updated = current.with_node(NodeInfo(node_id, peer, client, admin))
                reply = node_id
            elif args[0] == SET_SHARDS and len(args) >= 2:
                updated = current.with_shards([_decode_shard(a) for a in args[1:]])
            elif args[0] == MERGE_SHARDS and len(args) == 3:
                updated = current.with_merge(_decode_shard(args[1]), int(args[2]))
            elif args[0] == SET_ACL_USER and len(args) >= 3:
                name = args[1].decode()
                user = current.acl_users.get(name)
                if user is None:
                    user = decode_user(args[2]) if args[2] else AclUser(name)
                rules = args[3:]
                updated = current.with_acl_user(apply_rules(user, rules, known_commands_only=False))
            elif args[0] == DEL_ACL_USERS and len(args) >= 2:
                names = [a.decode() for a in args[1:]]
                reply = sum(1 for n in set(names) if n in current.acl_users)
                updated = current.without_acl_users(names)
            elif args[0] == SET_REBALANCE and len(args) == 2 and args[1] in (b"pause", b"resume"):
                updated = current.with_rebalance_paused(args[1] == b"pause")
            else:
                return ErrorReply(f"ERR unknown placement command {args[0][1:]!r}")
        except AclRuleError as exc:
            return ErrorReply(str(exc))
        except (ShardMapError, ValueError) as exc:
            return ErrorReply(f"ERR placement change refused: {exc}")
        if updated.encode() != current.encode():
            self.shard_map = updated
            self._dirty = True
            self.changed = True
        return reply

    def finish_batch(self) -> WriteBatch:
        batch = WriteBatch()
        if self._dirty and self.shard_map is not None:
            batch.put(META, SHARD_MAP_KEY, self.shard_map.encode())
        self._dirty = False
        return batch

    def restore(self, data: bytes, batch: WriteBatch) -> None:
        """Replace the map by a snapshot's (``ShardMap.encode`` bytes); stage it."""
        self.shard_map = ShardMap.decode(data)
        self.changed = True
        batch.put(META, SHARD_MAP_KEY, data)

    def expires_count(self) -> int:
        return 0

    def key_count(self) -> int:
        return 0

    def expire_sweep(self, now_ms: int, max_keys: int) -> int:
        return 0
