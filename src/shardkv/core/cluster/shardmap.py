"""The cluster map: which shard (Raft group) owns which slots, on which nodes, at which epoch.

A shard is a Raft group that owns a set of slot ranges. Its *epoch* rises with every change
of its slots or its replicas; a replica serves a slot only while its own applied map says
the slot belongs to its shard at its current epoch, so after a move no two groups answer
for one slot (DESIGN.md section 4).

This module is the data and its pure arithmetic: the initial layout of a new cluster,
slot lookup, validation and a stable byte encoding. Who stores the map (the placement
group, META on every node) and who changes it live elsewhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, Final

from shardkv.core.acl import AclUser, decode_user, encode_user
from shardkv.core.cluster.slots import SLOT_COUNT
from shardkv.core.kv.scope import KeyScope, SlotRange, merge_scopes, split_scope

#: Format version of `ShardMap.encode`.
SHARD_MAP_VERSION: Final = 1
#: Group id of the placement group; shard ids start at 1.
PLACEMENT_GROUP_ID: Final = 0
#: Shards a new cluster is split into when the operator does not say.
DEFAULT_SHARD_COUNT: Final = 16
#: Replicas per shard when the operator does not say (capped by the node count).
DEFAULT_REPLICAS: Final = 3


class ShardMapError(ValueError):
    """A map that breaks an invariant (a slot owned twice or not at all, a replica on an
    unknown node, ...), or settings that cannot produce a map. The message says which."""


#: `NodeInfo.state` of a node that serves (or may serve) replicas.
NODE_UP: Final = "up"
#: `NodeInfo.state` of a node removed from every group: kept so its id is never reused.
NODE_REMOVED: Final = "removed"
#: Being decommissioned (``shardkv node remove``): the scheduler moves every replica off
#: it and places nothing new there; once it holds none it is marked removed.
NODE_DRAINING: Final = "draining"


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A node as the map knows it: its addresses (``host:port``) for peers (gRPC), Redis
    clients (the address in ``-MOVED``) and operators (admin HTTP), each empty until the
    node registered it, and its state (`NODE_UP`, `NODE_DRAINING` or `NODE_REMOVED`)."""

    node_id: int
    peer_address: str
    client_address: str = ""
    admin_address: str = ""
    state: str = NODE_UP
    #: Failure domains (``--labels host=h1,zone=z1``), sorted by key: no two replicas of
    #: a shard on one ``host``; replicas spread over ``zone``s when there are enough.
    labels: tuple[tuple[str, str], ...] = ()

    def label(self, key: str) -> str | None:
        return dict(self.labels).get(key)


@dataclass(frozen=True, slots=True)
class ShardInfo:
    """One shard. ``replicas[0]`` is the preferred leader: leaders are spread by giving
    each node an equal share of first places, and a leader hands over to the preferred
    replica when it is healthy."""

    shard_id: int
    slot_ranges: tuple[SlotRange, ...]
    #: The shard's voters as last recorded from its leader (committed membership).
    replicas: tuple[int, ...]
    epoch: int = 1
    #: Where the scheduler moves the shard (empty: it stays): the shard's leader changes
    #: the membership towards it one step at a time (add learners, promote them, remove
    #: the others), and the placement group's leader records ``replicas = target`` and
    #: clears it once the shard's membership is exactly the target.
    target: tuple[int, ...] = ()
    #: A split ordered by the placement group (empty: none): ``(child shard id, first
    #: slot of the child)``. The shard's leader proposes the split in the shard's log;
    #: once the child has a leader, the placement group's leader records both shards at
    #: epoch ``epoch + 1`` and clears this. Nothing else changes the shard meanwhile.
    split: tuple[int, int] | tuple[()] = ()
    #: A merge ordered by the placement group (0: none): this shard is absorbed by the
    #: shard ``merge_into``. Its leader proposes ``RETIRE`` in its log (it stops serving
    #: for good); once every replica reports it retired, the placement group orders the
    #: survivor to ``absorb`` it (`core/cluster/merge.py`).
    merge_into: int = 0
    #: The retired shard this shard absorbs (0: none): its leader proposes ``ABSORB``;
    #: once its replicas report it applied, the placement group records the survivor with
    #: both shards' slots and drops the absorbed shard (`ShardMap.with_merge`).
    absorb: int = 0

    @property
    def frozen(self) -> bool:
        """A split or merge is under way: only its own steps change the shard."""
        return bool(self.split or self.merge_into or self.absorb)

    @property
    def scope(self) -> KeyScope:
        return KeyScope(self.shard_id, self.slot_ranges)

    @property
    def placed(self) -> frozenset[int]:
        """Nodes that hold, or are to hold, a replica: the replicas and the target."""
        return frozenset(self.replicas) | frozenset(self.target)

    @property
    def preferred_leader(self) -> int:
        return self.replicas[0]


@dataclass(slots=True)
class ShardMap:
    """Nodes and shards. Build with `initial_layout` or `decode`; call `validate` after
    changing it by hand. ``shard_of_slot`` is derived (rebuilt by `validate`)."""

    nodes: dict[int, NodeInfo]
    shards: dict[int, ShardInfo]
    #: ``shardkv rebalance pause``: the scheduler makes no balance or leader moves
    #: (repairs and drains go on).
    rebalance_paused: bool = False
    #: The highest shard id ever given (split children included), so a shard id is
    #: never used twice (`next_shard_id`).
    last_shard_id: int = 0
    #: Shards the cluster was created with (0: not recorded, a map older than merges):
    #: merges never leave fewer unless ``shard_min_count`` says otherwise.
    initial_shards: int = 0
    #: ACL users by name (``ACL SETUSER`` on any node), so every node authenticates
    #: alike. A ``default`` user missing here is built from each node's ``requirepass``.
    acl_users: dict[str, AclUser] = field(default_factory=dict)
    _slot_owner: list[int] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise `ShardMapError` unless every slot belongs to exactly one shard and every
        replica is a known node (at most once per shard)."""
        owner = [0] * SLOT_COUNT
        for shard in self.shards.values():
            if shard.shard_id <= PLACEMENT_GROUP_ID:
                raise ShardMapError(f"shard id must be >= 1, got {shard.shard_id}")
            if not shard.replicas or len(set(shard.replicas)) != len(shard.replicas):
                raise ShardMapError(f"shard {shard.shard_id} has replicas {shard.replicas}")
            if len(set(shard.target)) != len(shard.target):
                raise ShardMapError(f"shard {shard.shard_id} has target {shard.target}")
            unknown = [
                n
                for n in (*shard.replicas, *shard.target)
                if n not in self.nodes or self.nodes[n].state == NODE_REMOVED
            ]
            if unknown:
                raise ShardMapError(
                    f"shard {shard.shard_id} is on unknown or removed nodes {unknown}"
                )
            scope = KeyScope(shard.shard_id, shard.slot_ranges)  # checks bounds and order
            if shard.split:
                child, first_slot = shard.split
                if child in self.shards or child <= PLACEMENT_GROUP_ID or shard.target:
                    raise ShardMapError(
                        f"shard {shard.shard_id} cannot split into shard {child} now"
                    )
                try:
                    split_scope(scope, first_slot, child)
                except ValueError as exc:
                    raise ShardMapError(f"shard {shard.shard_id}: {exc}") from exc
            if (shard.merge_into or shard.absorb) and (shard.target or shard.split):
                raise ShardMapError(f"shard {shard.shard_id} cannot merge while it moves")
            if shard.merge_into:
                into = self.shards.get(shard.merge_into)
                if into is None or into.merge_into or into.target or into.split or shard.absorb:
                    raise ShardMapError(
                        f"shard {shard.shard_id} cannot merge into shard {shard.merge_into}"
                    )
            if shard.absorb:
                source = self.shards.get(shard.absorb)
                if source is None or source.merge_into != shard.shard_id:
                    raise ShardMapError(
                        f"shard {shard.shard_id} cannot absorb shard {shard.absorb}: "
                        "it is not retiring into it"
                    )
            for first, last in shard.slot_ranges:
                for slot in range(first, last + 1):
                    if owner[slot]:
                        raise ShardMapError(
                            f"slot {slot} is in shards {owner[slot]} and {shard.shard_id}"
                        )
                    owner[slot] = shard.shard_id
        if self.shards and 0 in owner:
            raise ShardMapError(f"slot {owner.index(0)} belongs to no shard")
        children = [s.split[0] for s in self.shards.values() if s.split]
        if len(set(children)) != len(children):
            raise ShardMapError(f"two splits into one shard id: {sorted(children)}")
        self.last_shard_id = max(self.last_shard_id, *self.shards, *children, 0)
        self._slot_owner = owner

    def next_shard_id(self) -> int:
        """A shard id never used in this cluster."""
        return self.last_shard_id + 1

    def pending_splits(self) -> list[ShardInfo]:
        """Shards with a split ordered and not yet recorded, by id."""
        return [s for _, s in sorted(self.shards.items()) if s.split]

    def frozen_ids(self) -> set[int]:
        """Shards with a split or merge under way, the survivors of merges included: only
        those steps change them (no move, no other split or merge)."""
        ids = {s.shard_id for s in self.shards.values() if s.frozen}
        return ids | {s.merge_into for s in self.shards.values() if s.merge_into}

    def awaits_child(self, shard_id: int) -> bool:
        """Whether ``shard_id`` may be a split child not recorded yet: above every id the
        map gave, or the child of a split ordered and not yet recorded."""
        return shard_id > self.last_shard_id or any(
            s.split[0] == shard_id for s in self.pending_splits() if s.split
        )

    def pending_merges(self) -> list[ShardInfo]:
        """Shards ordered to merge into another (``merge_into``) and not yet dropped."""
        return [s for _, s in sorted(self.shards.items()) if s.merge_into]

    def shard_of_slot(self, slot: int) -> ShardInfo:
        """The shard that owns ``slot`` (0 <= slot < 16384)."""
        return self.shards[self._slot_owner[slot]]

    def shard_id_of_slot(self, slot: int) -> int:
        return self._slot_owner[slot]

    def shards_on(self, node_id: int) -> list[ShardInfo]:
        """Shards with a replica on ``node_id``, or moving one there, by shard id."""
        return [s for _, s in sorted(self.shards.items()) if node_id in s.placed]

    def with_node(self, node: NodeInfo) -> ShardMap:
        """A copy where ``node`` replaces the node with its id (or is added)."""
        return replace(self, nodes={**self.nodes, node.node_id: node}, shards=dict(self.shards))

    def with_shards(self, shards: list[ShardInfo]) -> ShardMap:
        """A copy where each of ``shards`` replaces the shard with its id (or is added).
        Raises `ShardMapError` if the result breaks an invariant, or if a changed shard's
        epoch does not rise (every change of slots or replicas takes a new epoch, so a
        replica can tell an old assignment from a new one)."""
        for shard in shards:
            old = self.shards.get(shard.shard_id)
            if old is not None and shard.epoch <= old.epoch:
                raise ShardMapError(
                    f"shard {shard.shard_id}: epoch {shard.epoch} does not rise above {old.epoch}"
                )
        return replace(
            self, nodes=dict(self.nodes), shards={**self.shards, **{s.shard_id: s for s in shards}}
        )

    def with_merge(self, survivor: ShardInfo, absorbed_id: int) -> ShardMap:
        """A copy that records a finished merge: ``survivor`` (its absorb cleared, its
        slots those of both shards, its epoch risen) replaces its entry and shard
        ``absorbed_id`` is gone. Raises `ShardMapError` unless the map ordered exactly
        this merge and the survivor holds both shards' slots."""
        old = self.shards.get(survivor.shard_id)
        absorbed = self.shards.get(absorbed_id)
        if old is None or absorbed is None or old.absorb != absorbed_id or survivor.absorb:
            raise ShardMapError(
                f"shard {survivor.shard_id} has no merge of shard {absorbed_id} to record"
            )
        if survivor.epoch <= old.epoch:
            raise ShardMapError(
                f"shard {survivor.shard_id}: epoch {survivor.epoch} does not rise above {old.epoch}"
            )
        if survivor.scope != merge_scopes(old.scope, absorbed.scope):
            raise ShardMapError(
                f"shard {survivor.shard_id} must hold the slots of both merged shards"
            )
        shards = {**self.shards, survivor.shard_id: survivor}
        del shards[absorbed_id]
        return replace(self, nodes=dict(self.nodes), shards=shards)

    def with_rebalance_paused(self, paused: bool) -> ShardMap:
        return replace(
            self, nodes=dict(self.nodes), shards=dict(self.shards), rebalance_paused=paused
        )

    def with_acl_user(self, user: AclUser) -> ShardMap:
        return replace(
            self,
            nodes=dict(self.nodes),
            shards=dict(self.shards),
            acl_users={**self.acl_users, user.name: user},
        )

    def without_acl_users(self, names: list[str]) -> ShardMap:
        users = {n: u for n, u in self.acl_users.items() if n not in names}
        return replace(self, nodes=dict(self.nodes), shards=dict(self.shards), acl_users=users)

    def up_nodes(self) -> list[int]:
        """Ids of the nodes not removed, ascending."""
        return [n for n, info in sorted(self.nodes.items()) if info.state != NODE_REMOVED]

    # -- encoding ------------------------------------------------------------------------

    def encode(self, *, with_users: bool = True) -> bytes:
        """Stable bytes (sorted JSON): equal maps encode equally on every node.
        ``with_users=False`` leaves the ACL users out (for views anyone may read)."""
        doc = {
            "version": SHARD_MAP_VERSION,
            "nodes": [
                [
                    n.node_id,
                    n.peer_address,
                    n.client_address,
                    n.admin_address,
                    n.state,
                    dict(n.labels),
                ]
                for _, n in sorted(self.nodes.items())
            ],
            "rebalance_paused": self.rebalance_paused,
            "last_shard_id": self.last_shard_id,
            "initial_shards": self.initial_shards,
            "shards": [encode_shard_fields(s) for _, s in sorted(self.shards.items())],
        }
        if self.acl_users and with_users:  # (absent from maps that never had a user)
            doc["acl_users"] = [
                json.loads(encode_user(u)) for _, u in sorted(self.acl_users.items())
            ]
        return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def decode(cls, data: bytes) -> ShardMap:
        """Inverse of `encode`. Raises `ShardMapError` for anything else."""
        try:
            doc = json.loads(data)
            if doc["version"] != SHARD_MAP_VERSION:
                raise ShardMapError(f"shard map version {doc['version']} is not supported")
            # (Maps written before the registry had admin addresses list three fields.)
            nodes = {int(n[0]): _decode_node(n) for n in doc["nodes"]}
            shards = {int(s[0]): decode_shard_fields(s) for s in doc["shards"]}
            paused = bool(doc.get("rebalance_paused", False))
            last_shard_id = int(doc.get("last_shard_id", 0))
            initial_shards = int(doc.get("initial_shards", 0))
            users = [decode_user(json.dumps(u).encode()) for u in doc.get("acl_users", [])]
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            if isinstance(exc, ShardMapError):
                raise
            raise ShardMapError(f"unreadable shard map: {exc}") from exc
        return cls(nodes, shards, paused, last_shard_id, initial_shards, {u.name: u for u in users})


def encode_shard_fields(shard: ShardInfo) -> list[Any]:
    """A shard as the JSON list the map and the placement commands use: id, slot ranges,
    replicas, epoch, target, split, merge_into, absorb (the last four may be missing:
    older maps, or nothing under way)."""
    fields: list[Any] = [
        shard.shard_id,
        [list(r) for r in shard.slot_ranges],
        list(shard.replicas),
        shard.epoch,
        list(shard.target),
    ]
    if shard.split or shard.merge_into or shard.absorb:
        fields.append(list(shard.split))
    if shard.merge_into or shard.absorb:
        fields += [shard.merge_into, shard.absorb]
    return fields


def decode_shard_fields(fields: list[Any]) -> ShardInfo:
    """Inverse of `encode_shard_fields`. Raises ``ValueError``, ``TypeError``,
    ``IndexError`` or ``KeyError`` on a malformed list (callers wrap them)."""
    split: tuple[int, int] | tuple[()] = ()
    if len(fields) > 5 and fields[5]:
        child, first_slot = fields[5]
        split = (int(child), int(first_slot))
    return ShardInfo(
        int(fields[0]),
        tuple((int(a), int(b)) for a, b in fields[1]),
        tuple(int(r) for r in fields[2]),
        int(fields[3]),
        tuple(int(r) for r in fields[4]) if len(fields) > 4 else (),
        split,
        int(fields[6]) if len(fields) > 7 else 0,
        int(fields[7]) if len(fields) > 7 else 0,
    )


def _decode_node(fields: list[Any]) -> NodeInfo:
    """A node of the map's JSON: id, peer, client, admin, state, labels (maps written
    before the registry had admin addresses or labels list fewer fields)."""
    text = [str(f) for f in fields[1:5]]
    text += ["", "", "", NODE_UP][len(text) :]
    labels = fields[5] if len(fields) > 5 else {}
    return NodeInfo(
        int(fields[0]),
        text[0],
        text[1],
        text[2],
        text[3],
        tuple(sorted((str(k), str(v)) for k, v in labels.items())),
    )


def equal_slot_ranges(shard_count: int) -> list[SlotRange]:
    """``shard_count`` contiguous ranges covering every slot, sizes differing by at most 1."""
    if not 1 <= shard_count <= SLOT_COUNT:
        raise ShardMapError(f"shard count must be 1..{SLOT_COUNT}, got {shard_count}")
    base, extra = divmod(SLOT_COUNT, shard_count)
    ranges = []
    first = 0
    for i in range(shard_count):
        size = base + (1 if i < extra else 0)
        ranges.append((first, first + size - 1))
        first += size
    return ranges


def initial_layout(
    members: dict[int, str], shard_count: int = DEFAULT_SHARD_COUNT, replicas: int = 3
) -> ShardMap:
    """The map of a new cluster: ``shard_count`` shards of equal slot ranges, each on
    ``min(replicas, len(members))`` nodes, the preferred leaders spread round-robin so each
    node is first for ``shard_count / nodes`` shards (rounded up or down).

    Deterministic: every member computes the same map from the same ``--initial-cluster``
    and ``--shards``, which is what lets them bootstrap without talking first."""
    if not members:
        raise ShardMapError("a cluster needs at least one member")
    if replicas < 1:
        raise ShardMapError(f"replicas must be >= 1, got {replicas}")
    node_ids = sorted(members)
    count = min(replicas, len(node_ids))
    shards = {}
    for i, slot_range in enumerate(equal_slot_ranges(shard_count)):
        placed = tuple(node_ids[(i + k) % len(node_ids)] for k in range(count))
        shards[i + 1] = ShardInfo(i + 1, (slot_range,), placed, epoch=1)
    nodes = {n: NodeInfo(n, members[n]) for n in node_ids}
    return ShardMap(nodes, shards, initial_shards=shard_count)
