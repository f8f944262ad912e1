"""The RawNode API contract (core/raft/rawnode.py): Ready/advance, durability ordering,
loud misuse errors, proposals, membership validation, restarts, invariants."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from shardkv.core.raft import (
    NO_NODE,
    ConfChange,
    ConfChangeType,
    Config,
    ConfState,
    Entry,
    EntryType,
    MemoryStorage,
    Message,
    MessageType,
    NotLeaderError,
    ProgressState,
    ProposalDroppedError,
    RaftInvariantError,
    RaftUsageError,
    RawNode,
    Ready,
    Role,
    Snapshot,
    SnapshotMetadata,
    WrongGroupError,
)

GROUP = 5


class Net:
    """A few RawNodes over MemoryStorage, driven synchronously: every Ready is persisted,
    sent, applied and advanced at once."""

    def __init__(
        self, voters: list[int], learners: list[int] | None = None, **overrides: Any
    ) -> None:
        conf = ConfState.of(voters, learners or [])
        self.storages = {i: MemoryStorage.bootstrap(conf) for i in voters + (learners or [])}
        self.overrides = overrides
        self.nodes = {i: self._node(i) for i in self.storages}
        self.inbox: list[Message] = []
        self.applied: dict[int, list[bytes]] = {i: [] for i in self.storages}
        self.read_states: dict[int, list[tuple[int, bytes]]] = {i: [] for i in self.storages}
        self.snapshots_sent = 0

    def _node(self, node_id: int, applied_index: int = 0) -> RawNode:
        config = Config(
            node_id=node_id, group_id=GROUP, applied_index=applied_index, **self.overrides
        )
        return RawNode(config, self.storages[node_id], random.Random(node_id))

    def handle(self, node_id: int) -> Ready | None:
        node = self.nodes[node_id]
        if not node.has_ready():
            return None
        rd = node.ready()
        self.storages[node_id].persist_ready(rd)
        self.inbox.extend(rd.messages)
        self.inbox.extend(rd.messages_after_persist)
        self.snapshots_sent += sum(1 for m in rd.messages if m.type is MessageType.SNAP)
        self.applied[node_id].extend(
            e.data for e in rd.committed_entries if e.type is EntryType.NORMAL and e.data
        )
        self.read_states[node_id].extend((rs.index, rs.request_ctx) for rs in rd.read_states)
        node.advance(rd)
        node.check_invariants()
        return rd

    def settle(
        self,
        drop_to: set[int] | None = None,
        drop: Callable[[Message], bool] | None = None,
    ) -> None:
        for _ in range(200):
            progressed = False
            for node_id in self.nodes:
                if self.handle(node_id) is not None:
                    progressed = True
            inbox, self.inbox = self.inbox, []
            for m in inbox:
                progressed = True
                if (drop_to and m.to in drop_to) or (drop and drop(m)):
                    continue
                self.nodes[m.to].step(m)
            if not progressed:
                return
        raise AssertionError("did not settle")

    def elect(self, node_id: int) -> RawNode:
        self.nodes[node_id].campaign()
        self.settle()
        assert self.nodes[node_id].role is Role.LEADER
        return self.nodes[node_id]


# -- misuse fails loudly ---------------------------------------------------------------------


def test_message_for_another_group_is_rejected_loudly() -> None:
    net = Net([1, 2, 3])
    m = Message(MessageType.HEARTBEAT, GROUP + 1, 1, 2, term=5)
    with pytest.raises(WrongGroupError):
        net.nodes[1].step(m)
    assert net.nodes[1].term == 1, "the misrouted message had no effect"


def test_message_for_another_node_is_rejected_loudly() -> None:
    net = Net([1, 2, 3])
    with pytest.raises(WrongGroupError):
        net.nodes[1].step(Message(MessageType.HEARTBEAT, GROUP, 3, 2, term=5))


def test_message_without_term_is_rejected() -> None:
    net = Net([1, 2, 3])
    with pytest.raises(RaftUsageError):
        net.nodes[1].step(Message(MessageType.APP, GROUP, 1, 2, term=0))


def test_ready_twice_without_advance_is_refused() -> None:
    net = Net([1, 2, 3])
    node = net.nodes[1]
    node.campaign()
    node.ready()
    assert not node.has_ready(), "nothing more until the outstanding Ready is advanced"
    with pytest.raises(RaftUsageError):
        node.ready()


def test_advance_with_a_foreign_ready_is_refused() -> None:
    net = Net([1, 2, 3])
    node = net.nodes[1]
    node.campaign()
    rd = node.ready()
    with pytest.raises(RaftUsageError):
        node.advance(replace(rd))
    node.advance(rd)


@pytest.mark.parametrize(
    "overrides",
    [
        {"heartbeat_interval_ticks": 0},
        {"election_timeout_ticks": 2, "heartbeat_interval_ticks": 2},
        {"max_inflight_messages": 0},
        {"max_bytes_per_message": 0},
    ],
)
def test_invalid_config_is_refused(overrides: dict[str, Any]) -> None:
    config = Config(node_id=1, group_id=GROUP, **overrides)
    with pytest.raises(RaftUsageError):
        RawNode(config, MemoryStorage(), random.Random(1))


def test_node_id_zero_is_refused() -> None:
    with pytest.raises(RaftUsageError):
        RawNode(Config(node_id=NO_NODE, group_id=GROUP), MemoryStorage(), random.Random(1))


# -- the durability contract -------------------------------------------------------------


def test_leader_counts_its_own_entry_only_after_advance() -> None:
    net = Net([1, 2])
    leader = net.elect(1)
    leader.propose(b"x")
    rd = leader.ready()
    assert [e.data for e in rd.entries] == [b"x"]
    app = [m for m in rd.messages if m.type is MessageType.APP]
    assert app, "the append may leave before the leader's own persist"
    # The follower persists and acknowledges before the leader's persist completes.
    net.nodes[2].step(app[0])
    follower_rd = net.handle(2)
    assert follower_rd is not None
    (ack,) = follower_rd.messages_after_persist
    leader.step(ack)
    assert leader.status().commit == 2, "follower ack alone is not a quorum of {1, 2}"
    net.storages[1].persist_ready(rd)
    leader.advance(rd)
    assert leader.status().commit == 3


def test_votes_and_append_acks_wait_for_the_persist() -> None:
    net = Net([1, 2, 3], pre_vote=False)
    net.nodes[1].campaign()
    rd = net.nodes[1].ready()
    assert {m.type for m in rd.messages} == {MessageType.VOTE}
    assert rd.hard_state is not None and rd.hard_state.vote == 1
    assert rd.must_sync
    net.storages[1].persist_ready(rd)
    net.nodes[1].advance(rd)
    net.nodes[2].step(rd.messages[0])
    rd2 = net.nodes[2].ready()
    assert rd2.messages == ()
    assert [m.type for m in rd2.messages_after_persist] == [MessageType.VOTE_RESP]
    assert rd2.hard_state is not None and rd2.hard_state.vote == 1 and rd2.must_sync


def test_commit_only_change_needs_no_sync() -> None:
    net = Net([1, 2, 3])
    leader = net.elect(1)
    leader.propose(b"x")
    net.handle(1)
    appends, net.inbox = net.inbox, []
    for m in appends:
        net.nodes[m.to].step(m)
        net.handle(m.to)
    for ack in net.inbox:
        leader.step(ack)
    rd = leader.ready()
    assert rd.hard_state is not None and rd.hard_state.commit == 3
    assert rd.entries == () and rd.snapshot is None
    assert not rd.must_sync, "the commit index may be persisted lazily"
    leader.advance(rd)


def test_committed_entries_are_applied_once_everywhere() -> None:
    net = Net([1, 2, 3])
    leader = net.elect(1)
    for i in range(5):
        leader.propose(f"v{i}".encode())
    leader.propose_many([b"a", b"b"])
    net.settle()
    expected = [b"v0", b"v1", b"v2", b"v3", b"v4", b"a", b"b"]
    assert all(applied == expected for applied in net.applied.values())


# -- proposals -------------------------------------------------------------------------------


def test_propose_reports_where_entries_landed() -> None:
    net = Net([1, 2, 3])
    leader = net.elect(1)
    first = leader.propose(b"a")
    batch = leader.propose_many([b"b", b"c", b"d"])
    assert (first.term, first.first_index, first.last_index) == (2, 3, 3)
    assert (batch.first_index, batch.last_index) == (4, 6)


def test_propose_on_a_follower_names_the_leader() -> None:
    net = Net([1, 2, 3])
    net.elect(1)
    with pytest.raises(NotLeaderError) as caught:
        net.nodes[2].propose(b"x")
    assert caught.value.leader == 1


def test_uncommitted_budget_refuses_proposals_until_applied() -> None:
    net = Net([1, 2, 3], max_uncommitted_bytes=100)
    leader = net.elect(1)
    leader.propose(b"x" * 60)
    with pytest.raises(ProposalDroppedError):
        leader.propose(b"y" * 60)
    net.settle()
    leader.propose(b"y" * 60)


def test_a_single_oversize_proposal_is_accepted_when_nothing_is_pending() -> None:
    net = Net([1, 2, 3], max_uncommitted_bytes=10)
    leader = net.elect(1)
    leader.propose(b"z" * 1000)


def test_appends_are_cut_at_max_bytes_per_message() -> None:
    net = Net([1, 2, 3], max_bytes_per_message=120)
    leader = net.elect(1)
    leader.propose_many([bytes(40)] * 10)
    rd = leader.ready()
    app_sizes = [len(m.entries) for m in rd.messages if m.type is MessageType.APP and m.to == 2]
    assert app_sizes == [2], "56 bytes per entry with overhead: two fit in 120 bytes"
    leader.advance(rd)


# -- membership -----------------------------------------------------------------------------


def test_one_conf_change_at_a_time() -> None:
    net = Net([1, 2, 3])
    leader = net.elect(1)
    leader.propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER_NODE, 4))
    with pytest.raises(ProposalDroppedError, match="unapplied"):
        leader.propose_conf_change(ConfChange(ConfChangeType.REMOVE_NODE, 3))
    net.settle(drop_to={4})
    assert leader.conf_state() == ConfState((1, 2, 3), (4,))
    leader.propose_conf_change(ConfChange(ConfChangeType.REMOVE_NODE, 3))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (ConfChange(ConfChangeType.ADD_NODE, 2), "already a voter"),
        (ConfChange(ConfChangeType.REMOVE_NODE, 9), "not a member"),
        (ConfChange(ConfChangeType.ADD_LEARNER_NODE, 1), "cannot demote itself"),
    ],
)
def test_invalid_conf_changes_are_refused(change: ConfChange, reason: str) -> None:
    net = Net([1, 2, 3])
    leader = net.elect(1)
    with pytest.raises(ProposalDroppedError, match=reason):
        leader.propose_conf_change(change)


def test_the_last_voter_cannot_be_removed() -> None:
    net = Net([1])
    leader = net.elect(1)
    with pytest.raises(ProposalDroppedError, match="no voters"):
        leader.propose_conf_change(ConfChange(ConfChangeType.REMOVE_NODE, 1))


def test_a_learner_votes_when_asked() -> None:
    """A promoted learner may not know of its promotion yet; it must still vote."""
    net = Net([1, 2], learners=[3])
    net.nodes[3].step(Message(MessageType.VOTE, GROUP, 3, 1, term=5, index=1, log_term=1))
    rd = net.nodes[3].ready()
    (response,) = rd.messages_after_persist
    assert response.type is MessageType.VOTE_RESP and not response.reject


def test_conf_change_round_trips_through_its_entry_encoding() -> None:
    change = ConfChange(ConfChangeType.ADD_LEARNER_NODE, 2**40, b"10.0.0.7:7000")
    assert ConfChange.decode(change.encode()) == change
    with pytest.raises(ValueError):
        ConfChange.decode(b"\x00")


# -- restarts ---------------------------------------------------------------------------------


def test_restart_replays_conf_changes_up_to_the_applied_index() -> None:
    net = Net([1, 2, 3])
    leader = net.elect(1)
    leader.propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER_NODE, 4))
    net.settle(drop_to={4})
    applied = net.nodes[2].status().applied
    # Storage's ConfState is as of the bootstrap snapshot; the core must replay the log.
    assert net.storages[2].initial_state()[1] == ConfState((1, 2, 3))
    restarted = net._node(2, applied_index=applied)
    assert restarted.conf_state() == ConfState((1, 2, 3), (4,))
    assert restarted.status().applied == applied
    restarted.check_invariants()


def test_restart_with_applied_index_above_commit_is_refused() -> None:
    net = Net([1, 2, 3])
    net.elect(1)
    with pytest.raises(RaftUsageError):
        net._node(2, applied_index=99)


def test_restart_keeps_term_and_vote() -> None:
    net = Net([1, 2, 3])
    net.elect(1)
    restarted = net._node(2)
    status = restarted.status()
    assert (status.term, status.vote, status.role) == (2, 1, Role.FOLLOWER)


# -- snapshots -------------------------------------------------------------------------------


def _leader_with_compacted_log(net: Net) -> RawNode:
    leader = net.elect(1)
    for i in range(5):
        leader.propose(f"v{i}".encode())
    net.settle(drop_to={3})
    applied = leader.status().applied
    net.storages[1].create_snapshot(applied, leader.conf_state(), b"image")
    net.storages[1].compact(applied)
    return leader


def _is_snapshot(m: Message) -> bool:
    return m.type is MessageType.SNAP


def _snapshots_sent(net: Net, ticks: int, *, deliver_snapshots: bool) -> int:
    """Tick the leader (node 1) and settle; count MsgSnap sent."""
    before = net.snapshots_sent
    for _ in range(ticks):
        net.nodes[1].tick()
        net.settle(drop=None if deliver_snapshots else _is_snapshot)
    return net.snapshots_sent - before


def test_a_lost_snapshot_is_sent_again_after_the_timeout() -> None:
    net = Net([1, 2, 3], snapshot_timeout_ticks=20)
    leader = _leader_with_compacted_log(net)
    assert _snapshots_sent(net, 3, deliver_snapshots=False) == 1
    assert leader.status().progress[3].state is ProgressState.SNAPSHOT
    # The snapshot never arrives and nobody reports it: after the timeout it is resent.
    assert _snapshots_sent(net, 30, deliver_snapshots=False) >= 1
    _snapshots_sent(net, 30, deliver_snapshots=True)
    status = leader.status()
    assert status.progress[3].match == status.last_index
    assert net.applied[3] == [], "node 3 got the state as a snapshot, not as entries"


def test_report_snapshot_failure_returns_the_follower_to_probing() -> None:
    net = Net([1, 2, 3])
    leader = _leader_with_compacted_log(net)
    _snapshots_sent(net, 3, deliver_snapshots=False)
    assert leader.status().progress[3].state is ProgressState.SNAPSHOT
    leader.report_snapshot(3, success=False)
    progress = leader.status().progress[3]
    assert progress.state is ProgressState.PROBE and progress.pending_snapshot == 0


# -- reads and transfers ---------------------------------------------------------------------


def test_read_index_needs_a_context() -> None:
    net = Net([1, 2, 3])
    leader = net.elect(1)
    with pytest.raises(RaftUsageError):
        leader.read_index(b"")


def test_read_index_on_the_leader_returns_the_commit_index() -> None:
    net = Net([1, 2, 3])
    leader = net.elect(1)
    leader.propose(b"x")
    net.settle()
    leader.read_index(b"req-1")
    net.settle()
    assert net.read_states[1] == [(3, b"req-1")]


def test_read_index_on_a_follower_is_answered_through_the_leader() -> None:
    net = Net([1, 2, 3])
    net.elect(1)
    net.nodes[3].read_index(b"req-2")
    net.settle()
    assert net.read_states[3] == [(2, b"req-2")]
    assert net.read_states[1] == []


def test_read_index_without_a_quorum_is_never_answered() -> None:
    net = Net([1, 2, 3])
    leader = net.elect(1)
    leader.read_index(b"req-3")
    net.settle(drop_to={2, 3})
    assert net.read_states[1] == []


def test_transfer_leader_from_a_follower_is_refused() -> None:
    net = Net([1, 2, 3])
    net.elect(1)
    with pytest.raises(NotLeaderError):
        net.nodes[2].transfer_leader(3)


def test_transfer_leader_hands_over() -> None:
    net = Net([1, 2, 3])
    leader = net.elect(1)
    leader.transfer_leader(3)
    net.settle()
    assert net.nodes[3].role is Role.LEADER
    assert leader.role is Role.FOLLOWER and leader.lead == 3


# -- invariants and determinism -----------------------------------------------------------------


def test_check_invariants_detects_corruption() -> None:
    net = Net([1, 2, 3])
    leader = net.elect(1)
    leader.check_invariants()
    leader.raft.log.committed = leader.raft.log.last_index() + 1
    with pytest.raises(RaftInvariantError):
        leader.check_invariants()


def test_status_reports_progress_only_on_the_leader() -> None:
    net = Net([1, 2, 3])
    leader = net.elect(1)
    assert sorted(leader.status().progress) == [1, 2, 3]
    assert net.nodes[2].status().progress == {}
    assert leader.status().conf_state == ConfState((1, 2, 3))


def _trace(seed: int) -> list[tuple[int, int, int, int]]:
    net = Net([1, 2, 3])
    rng = random.Random(seed)
    trace = []
    for _ in range(300):
        node_id = rng.choice([1, 2, 3])
        net.nodes[node_id].tick()
        for nid in (1, 2, 3):
            rd = net.handle(nid)
            if rd is not None:
                trace.extend(
                    (m.from_, m.to, int(m.type), m.term)
                    for m in rd.messages + rd.messages_after_persist
                )
        inbox, net.inbox = net.inbox, []
        for m in inbox:
            if rng.random() < 0.8:
                net.nodes[m.to].step(m)
    return trace


def test_runs_are_deterministic_given_the_seeds() -> None:
    first = _trace(3)
    assert first, "the run must exchange messages"
    assert _trace(3) == first


def test_snapshot_restored_during_an_outstanding_ready_wins_over_its_conf_changes() -> None:
    """A conf change handed out for application must not be applied on top of a newer
    configuration installed by a snapshot that arrived before advance()."""
    storage = MemoryStorage.bootstrap(ConfState.of([1, 2, 3]))
    node = RawNode(Config(node_id=2, group_id=GROUP), storage, random.Random(2))
    add_learner = ConfChange(ConfChangeType.ADD_LEARNER_NODE, 4).encode()
    node.step(
        Message(
            MessageType.APP,
            GROUP,
            2,
            1,
            term=2,
            index=1,
            log_term=1,
            commit=3,
            entries=(Entry(2, 2), Entry(2, 3, EntryType.CONF_CHANGE, add_learner)),
        )
    )
    rd = node.ready()
    assert [e.index for e in rd.committed_entries] == [2, 3]
    storage.persist_ready(rd)
    # Before advance: a snapshot at 10 whose configuration no longer has 4.
    newer = Snapshot(SnapshotMetadata(10, 2, ConfState.of([1, 2, 3])), b"image")
    node.step(Message(MessageType.SNAP, GROUP, 2, 1, term=2, snapshot=newer))
    node.advance(rd)
    assert node.conf_state() == ConfState((1, 2, 3))
    rd2 = node.ready()
    assert rd2.snapshot == newer
    storage.persist_ready(rd2)
    node.advance(rd2)
    assert node.conf_state() == ConfState((1, 2, 3))
    assert node.status().applied == 10
    node.check_invariants()
