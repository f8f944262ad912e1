"""Seeded randomized runs of 3-5 in-memory replicas: safety under loss, crashes, compaction.

Each run interleaves ticks, proposals, message delivery (reordered, lost, duplicated),
partitions, crashes (which lose everything not yet persisted, possibly after the
"send at once" messages of a Ready left) and restarts through the real recovery path,
then heals the network and requires progress. Checked throughout:

- at most one leader per term;
- every replica applies the same entry (term, payload) at every index, and state machine
  snapshots agree with that history (committed entries never change);
- durable term/vote never go back (MemoryStorage.set_hard_state refuses it);
- log matching: persisted logs agree on every index up to the smaller commit index;
- every replica's invariants (`check_invariants`).

Membership changes (remove a voter, re-add it as a learner, promote it) run alongside, and
seeds alternate pre-vote and check-quorum on and off.

A failure message names the seed; rerun with ``run_cluster(seed, ...)`` to replay it.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass, field

import pytest

from shardkv.core.raft import (
    ConfChange,
    ConfChangeType,
    Config,
    ConfState,
    EntryType,
    MemoryStorage,
    Message,
    ProposalDroppedError,
    RawNode,
    Role,
)
from shardkv.core.raft.types import AFTER_PERSIST_MESSAGE_TYPES


@dataclass
class Replica:
    node_id: int
    storage: MemoryStorage
    node: RawNode | None
    applied: list[bytes] = field(default_factory=list)
    applied_index: int = 0


class SafetyViolation(AssertionError):
    pass


def _encode(values: list[bytes]) -> bytes:
    return b"|".join(values)


def _decode(data: bytes) -> list[bytes]:
    return data.split(b"|") if data else []


class Cluster:
    def __init__(self, seed: int, size: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.ids = list(range(1, size + 1))
        conf = ConfState.of(self.ids)
        self.replicas = {
            i: Replica(i, MemoryStorage.bootstrap(conf), None, [], 1) for i in self.ids
        }
        for i in self.ids:
            self._start(i)
        self.network: list[Message] = []
        self.partition: set[int] | None = None
        self.loss = 0.1
        self.leaders: dict[int, int] = {}
        # index -> (term, payload) of the entry applied there (by anyone, first time).
        self.history: dict[int, tuple[int, bytes]] = {}
        self.proposal_counter = 0
        self.snapshots_installed = 0
        self.conf_changes = 0
        self.crashes = 0

    def fail(self, text: str) -> None:
        raise SafetyViolation(f"seed {self.seed}: {text}")

    def _start(self, node_id: int) -> None:
        replica = self.replicas[node_id]
        snapshot = replica.storage.snapshot()
        replica.applied = _decode(snapshot.data)
        replica.applied_index = snapshot.metadata.index
        config = Config(
            node_id=node_id,
            group_id=9,
            election_timeout_ticks=10,
            heartbeat_interval_ticks=2,
            applied_index=snapshot.metadata.index,
            max_inflight_messages=4,
            max_bytes_per_message=200,
            pre_vote=self.seed % 4 != 1,
            check_quorum=self.seed % 4 != 2,
        )
        replica.node = RawNode(config, replica.storage, random.Random(self.seed * 100 + node_id))

    def _connected(self, a: int, b: int) -> bool:
        if self.partition is None:
            return True
        return (a in self.partition) == (b in self.partition)

    # -- actions ---------------------------------------------------------------------

    def tick(self, node_id: int) -> None:
        node = self.replicas[node_id].node
        if node is not None:
            node.tick()

    def propose(self) -> None:
        for replica in self.replicas.values():
            node = replica.node
            if node is not None and node.role is Role.LEADER:
                self.proposal_counter += 1
                batch = [
                    f"v{self.proposal_counter}.{k}".encode() for k in range(self.rng.randint(1, 3))
                ]
                with contextlib.suppress(ProposalDroppedError):
                    node.propose_many(batch)
                return

    def change_membership(self) -> None:
        leader_id = self.leader()
        if leader_id is None:
            return
        node = self.replicas[leader_id].node
        assert node is not None
        conf = node.conf_state()
        target = self.rng.choice(self.ids)
        if target in conf.learners:
            change = ConfChange(ConfChangeType.ADD_NODE, target)
        elif target in conf.voters:
            if len(conf.voters) <= 2 or target == leader_id:
                return
            change = ConfChange(ConfChangeType.REMOVE_NODE, target)
        else:
            change = ConfChange(ConfChangeType.ADD_LEARNER_NODE, target)
        with contextlib.suppress(ProposalDroppedError):
            node.propose_conf_change(change)
            self.conf_changes += 1

    def deliver_one(self) -> None:
        if not self.network:
            return
        m = self.network.pop(self.rng.randrange(len(self.network)))
        if self.rng.random() < 0.05:
            self.network.append(m)  # duplicate
        if self.rng.random() < self.loss or not self._connected(m.from_, m.to):
            return
        node = self.replicas[m.to].node
        if node is None:
            return
        node.step(m)

    def crash(self, node_id: int) -> None:
        if self.replicas[node_id].node is not None:
            self.crashes += 1
        self.replicas[node_id].node = None

    def restart(self, node_id: int) -> None:
        if self.replicas[node_id].node is None:
            self._start(node_id)

    def compact(self, node_id: int) -> None:
        replica = self.replicas[node_id]
        node = replica.node
        if node is None or replica.applied_index <= replica.storage.snapshot().metadata.index:
            return
        replica.storage.create_snapshot(
            replica.applied_index, node.conf_state(), _encode(replica.applied)
        )
        # Keep a few entries so that most followers still catch up from the log.
        keep = self.rng.randint(0, 5)
        target = replica.applied_index - keep
        if target > replica.storage.first_index() - 1:
            replica.storage.compact(target)

    def handle_ready(self, node_id: int, crash_chance: float) -> None:
        replica = self.replicas[node_id]
        node = replica.node
        if node is None or not node.has_ready():
            return
        rd = node.ready()
        for m in rd.messages:
            if m.type in AFTER_PERSIST_MESSAGE_TYPES:
                self.fail(f"node {node_id} may send {m.type.label} before persisting")
        for m in rd.messages_after_persist:
            if m.type not in AFTER_PERSIST_MESSAGE_TYPES:
                self.fail(f"node {node_id} delays {m.type.label} needlessly")
        self.network.extend(rd.messages)
        if self.rng.random() < crash_chance:
            # Crash before the persist completed: messages_after_persist never leave.
            self.crash(node_id)
            return
        replica.storage.persist_ready(rd)
        self.network.extend(rd.messages_after_persist)
        if rd.snapshot is not None:
            meta = rd.snapshot.metadata
            expected = [
                self.history[i][1]
                for i in range(2, meta.index + 1)
                if self.history[i][1] != b"" and not self.history[i][1].startswith(b"\x00")
            ]
            if _decode(rd.snapshot.data) != expected:
                self.fail(f"node {node_id} snapshot at {meta.index} differs from history")
            replica.applied = _decode(rd.snapshot.data)
            replica.applied_index = meta.index
            self.snapshots_installed += 1
        for entry in rd.committed_entries:
            if entry.index != replica.applied_index + 1:
                self.fail(f"node {node_id} applies {entry.index} after {replica.applied_index}")
            payload = entry.data if entry.type is EntryType.NORMAL else b"\x00conf"
            seen = self.history.setdefault(entry.index, (entry.term, payload))
            if seen != (entry.term, payload):
                self.fail(
                    f"node {node_id} applied {entry.term}/{entry.index} {payload!r}, "
                    f"others applied {seen}"
                )
            if entry.type is EntryType.NORMAL and entry.data:
                replica.applied.append(entry.data)
            replica.applied_index = entry.index
        if rd.soft_state is not None and rd.soft_state.role is Role.LEADER:
            term = node.term
            other = self.leaders.setdefault(term, node_id)
            if other != node_id:
                self.fail(f"two leaders in term {term}: {other} and {node_id}")
        node.advance(rd)
        node.check_invariants()

    # -- checks ------------------------------------------------------------------------

    def check_log_matching(self) -> None:
        for a in self.ids:
            for b in self.ids:
                if a >= b:
                    continue
                sa, sb = self.replicas[a].storage, self.replicas[b].storage
                upto = min(sa.hard_state.commit, sb.hard_state.commit)
                lo = max(sa.first_index(), sb.first_index())
                for index in range(lo, upto + 1):
                    if sa.term(index) != sb.term(index):
                        self.fail(f"logs of {a} and {b} differ at committed index {index}")

    def members(self) -> list[int]:
        """Voters and learners in the leader's configuration (all nodes if no leader)."""
        leader_id = self.leader()
        if leader_id is None:
            return self.ids
        node = self.replicas[leader_id].node
        assert node is not None
        conf = node.conf_state()
        return sorted(conf.voters + conf.learners)

    def leader(self) -> int | None:
        for node_id, replica in self.replicas.items():
            if replica.node is not None and replica.node.role is Role.LEADER:
                return node_id
        return None


def run_cluster(seed: int, size: int, fault_steps: int, liveness_steps: int) -> Cluster:
    cluster = Cluster(seed, size)
    rng = cluster.rng
    ids = cluster.ids
    for _ in range(fault_steps):
        action = rng.random()
        node_id = rng.choice(ids)
        if action < 0.25:
            cluster.tick(node_id)
        elif action < 0.60:
            cluster.deliver_one()
        elif action < 0.84:
            cluster.handle_ready(node_id, crash_chance=0.01)
        elif action < 0.92:
            cluster.propose()
        elif action < 0.925:
            cluster.crash(node_id)
        elif action < 0.95:
            cluster.restart(node_id)
        elif action < 0.96:
            cluster.compact(node_id)
        elif action < 0.98:
            cluster.change_membership()
        elif action < 0.985:
            cluster.partition = set(rng.sample(ids, rng.randint(1, size - 1)))
        elif action < 0.995:
            cluster.partition = None
        else:
            cluster.tick(node_id)
    cluster.check_log_matching()

    # Liveness: heal everything; a leader must emerge and commit a fresh entry everywhere.
    cluster.partition = None
    cluster.loss = 0.0
    for node_id in ids:
        cluster.restart(node_id)
    # (term, index) of the latest marker; re-proposed whenever leadership changes, since
    # a deposed leader's uncommitted marker may be overwritten.
    marker: tuple[int, int] | None = None
    for _ in range(liveness_steps):
        for node_id in ids:
            cluster.tick(node_id)
            cluster.handle_ready(node_id, crash_chance=0.0)
        while cluster.network:
            cluster.deliver_one()
            for node_id in ids:
                cluster.handle_ready(node_id, crash_chance=0.0)
        leader = cluster.leader()
        if leader is not None:
            node = cluster.replicas[leader].node
            assert node is not None
            if marker is None or marker[0] != node.term:
                with contextlib.suppress(ProposalDroppedError):
                    proposed = node.propose(b"marker")
                    marker = (proposed.term, proposed.last_index)
        members = cluster.members()
        if (
            marker is not None
            and cluster.history.get(marker[1]) == (marker[0], b"marker")
            and all(cluster.replicas[i].applied_index >= marker[1] for i in members)
        ):
            break
    else:
        cluster.fail(f"no convergence after healing (leader={cluster.leader()})")
    cluster.check_log_matching()
    # Removed nodes stop receiving entries; current members must agree exactly.
    states = {tuple(cluster.replicas[i].applied) for i in members}
    if len(states) != 1:
        cluster.fail("state machines differ after convergence")
    return cluster


@pytest.mark.parametrize("seed", range(40))
def test_random_cluster_is_safe_and_recovers(seed: int) -> None:
    size = 3 + seed % 3
    cluster = run_cluster(seed, size, fault_steps=6000, liveness_steps=600)
    # The run must have exercised something: elections and commits.
    assert cluster.leaders, f"seed {seed}: no leader was ever elected"
    assert len(cluster.history) > 5, f"seed {seed}: almost nothing was committed"
