"""The simulator's parts on their own: network faults, the crash-prone disk, the state
machine, and the invariant checker fed synthetic events."""

from __future__ import annotations

import random

import pytest

from shardkv.core.raft import (
    ConfState,
    Entry,
    EntryType,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    Ready,
    Snapshot,
    SnapshotMetadata,
)
from shardkv.sim.disk import SimDisk, clone_storage
from shardkv.sim.invariants import InvariantChecker, InvariantViolation
from shardkv.sim.linearizability import KvInput, Operation, kv_model
from shardkv.sim.network import (
    DROP_OVERFLOW,
    DROP_PARTITION,
    DROP_RANDOM,
    Envelope,
    FaultSettings,
    Network,
)
from shardkv.sim.state_machine import Command, KvStateMachine
from shardkv.sim.witness import witness_problem

# -- network --------------------------------------------------------------------------------


def _deliveries(network: Network[str], ticks: int) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for tick in range(1, ticks + 1):
        out.extend((tick, e.payload) for e in network.deliver_due(tick))
    return out


def _lossy(seed: int) -> Network[str]:
    settings = FaultSettings(
        drop_probability=0.2,
        duplicate_probability=0.2,
        min_delay_ticks=1,
        max_delay_ticks=5,
        reorder_probability=0.3,
        reorder_max_extra_ticks=10,
    )
    network: Network[str] = Network(random.Random(seed), settings)
    for i in range(50):
        network.send(0, 1, 2, f"m{i}")
    return network


def test_same_seed_same_schedule_and_different_seed_different_schedule() -> None:
    assert _deliveries(_lossy(7), 40) == _deliveries(_lossy(7), 40)
    assert _deliveries(_lossy(7), 40) != _deliveries(_lossy(8), 40)


def test_lossy_network_drops_duplicates_and_reorders() -> None:
    network = _lossy(7)
    delivered = [payload for _, payload in _deliveries(network, 40)]
    assert network.stats.dropped_random > 0
    assert network.stats.duplicated > 0
    assert len(set(delivered)) < 50  # some lost
    assert len(delivered) > len(set(delivered))  # some twice
    first_seen = list(dict.fromkeys(delivered))
    assert first_seen != sorted(first_seen, key=lambda p: int(p[1:]))  # some overtaken


def test_fixed_delay_delivers_in_send_order() -> None:
    settings = FaultSettings(min_delay_ticks=3, max_delay_ticks=3)
    network: Network[str] = Network(random.Random(1), settings)
    network.send(0, 1, 2, "a")
    network.send(0, 1, 2, "b")
    network.send(1, 2, 1, "c")
    assert _deliveries(network, 10) == [(3, "a"), (3, "b"), (4, "c")]


def test_partitions_cut_both_ways_or_one_way_and_heal() -> None:
    drops: list[tuple[Envelope[str], str]] = []
    network: Network[str] = Network(
        random.Random(1), FaultSettings(), on_drop=lambda e, r: drops.append((e, r))
    )
    network.partition([1], [2, 3])
    assert network.is_blocked(1, 2) and network.is_blocked(2, 1) and network.is_blocked(3, 1)
    assert not network.is_blocked(2, 3)
    network.heal()
    network.partition([1], [2], one_way=True)
    assert network.blocked_links() == [(1, 2)]
    network.send(0, 1, 2, "cut")
    network.send(0, 2, 1, "open")
    assert _deliveries(network, 3) == [(1, "open")]
    assert [(e.payload, r) for e, r in drops] == [("cut", DROP_PARTITION)]


def test_partition_drops_messages_already_in_flight() -> None:
    network: Network[str] = Network(
        random.Random(1), FaultSettings(min_delay_ticks=5, max_delay_ticks=5)
    )
    network.send(0, 1, 2, "in flight")
    network.partition([1], [2])
    assert _deliveries(network, 10) == []
    assert network.stats.dropped_partition == 1


def test_certain_drop_and_overflow_are_reported() -> None:
    reasons: list[str] = []
    network: Network[str] = Network(
        random.Random(1),
        FaultSettings(drop_probability=1.0),
        on_drop=lambda e, r: reasons.append(r),
    )
    network.send(0, 1, 2, "lost")
    assert reasons == [DROP_RANDOM]
    bounded: Network[str] = Network(
        random.Random(1),
        FaultSettings(),
        max_in_flight_messages=2,
        on_drop=lambda e, r: reasons.append(r),
    )
    for i in range(3):
        bounded.send(0, 1, 2, str(i))
    assert reasons == [DROP_RANDOM, DROP_OVERFLOW]
    assert bounded.in_flight() == 2


def test_a_crashed_sender_loses_what_it_sent_this_tick() -> None:
    network: Network[str] = Network(random.Random(1), FaultSettings())
    network.send(4, 1, 2, "earlier")
    network.send(5, 1, 2, "now")
    network.send(5, 3, 2, "other sender")
    assert network.drop_sent_since(1, 5) == 1
    assert [p for _, p in _deliveries(network, 10)] == ["earlier", "other sender"]


@pytest.mark.parametrize(
    "bad",
    [
        {"drop_probability": 1.5},
        {"min_delay_ticks": 0},
        {"min_delay_ticks": 3, "max_delay_ticks": 2},
        {"reorder_max_extra_ticks": -1},
    ],
)
def test_fault_settings_reject_nonsense(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        FaultSettings(**bad)  # type: ignore[arg-type]


def test_drawn_settings_are_reproducible() -> None:
    assert FaultSettings.draw(random.Random(3)) == FaultSettings.draw(random.Random(3))


# -- disk -----------------------------------------------------------------------------------


def _ready(
    *,
    entries: tuple[Entry, ...] = (),
    hard_state: HardState | None = None,
    snapshot: Snapshot | None = None,
) -> Ready:
    return Ready(
        hard_state=hard_state,
        soft_state=None,
        entries=entries,
        snapshot=snapshot,
        committed_entries=(),
        messages=(),
        messages_after_persist=(),
        read_states=(),
        must_sync=True,
    )


def _bootstrapped_disk(*, torn_writes: bool) -> SimDisk:
    return SimDisk(MemoryStorage.bootstrap(ConfState.of([1, 2, 3])), torn_writes=torn_writes)


def test_writes_are_readable_at_once_and_durable_only_after_sync() -> None:
    disk = _bootstrapped_disk(torn_writes=False)
    disk.persist_ready(_ready(entries=(Entry(2, 2, data=b"x"),), hard_state=HardState(2, 1, 1)))
    assert disk.live.last_index() == 2
    assert disk.durable_last_index() == 1
    assert disk.durable_hard_state == HardState(1, 0, 1)
    disk.sync()
    assert disk.durable_last_index() == 2
    assert disk.durable_term(2) == 2
    assert disk.durable_hard_state == HardState(2, 1, 1)


def test_crash_loses_unsynced_writes_and_recovery_reads_the_durable_image() -> None:
    disk = _bootstrapped_disk(torn_writes=False)
    disk.persist_ready(_ready(entries=(Entry(2, 2),), hard_state=HardState(2, 1, 1)))
    disk.sync()
    disk.persist_ready(_ready(entries=(Entry(3, 3),), hard_state=HardState(3, 3, 2)))
    assert disk.crash(random.Random(1)) == 1
    storage = disk.recover()
    assert storage.last_index() == 2
    assert storage.initial_state()[0] == HardState(2, 1, 1)
    assert storage is disk.live


def test_torn_crash_keeps_a_prefix_of_whole_batches() -> None:
    # A snapshot and the hard state that commits it are one batch: never one without
    # the other (a restart would find the commit below the snapshot).
    outcomes = set()
    for seed in range(30):
        disk = _bootstrapped_disk(torn_writes=True)
        snapshot = Snapshot(SnapshotMetadata(10, 3, ConfState.of([1, 2, 3])), b"{}")
        disk.persist_ready(_ready(snapshot=snapshot, hard_state=HardState(3, 0, 10)))
        disk.persist_ready(_ready(entries=(Entry(3, 11),)))
        disk.crash(random.Random(seed))
        storage = disk.recover()
        state = (storage.snapshot().metadata.index, storage.hard_state.commit, storage.last_index())
        outcomes.add(state)
    assert outcomes == {(1, 1, 1), (10, 10, 10), (10, 10, 11)}


def test_recover_refuses_while_writes_are_unsynced() -> None:
    disk = _bootstrapped_disk(torn_writes=False)
    disk.persist_ready(_ready(entries=(Entry(2, 2),)))
    with pytest.raises(RuntimeError):
        disk.recover()


def test_snapshots_and_compaction_go_through_the_disk() -> None:
    disk = _bootstrapped_disk(torn_writes=False)
    disk.persist_ready(_ready(entries=tuple(Entry(2, i) for i in range(2, 8))))
    disk.sync()
    disk.create_snapshot(6, ConfState.of([1, 2, 3]), b"image")
    disk.compact(5)
    assert disk.live.first_index() == 6
    assert disk.durable_snapshot_index() == 1  # not synced yet
    disk.sync()
    assert disk.durable_snapshot_index() == 6
    assert disk.durable_term(4) is None  # compacted
    copy = clone_storage(disk.live)
    assert copy.snapshot() == disk.live.snapshot()
    assert copy.entries(6, 8, 1 << 20) == disk.live.entries(6, 8, 1 << 20)


# -- state machine --------------------------------------------------------------------------


def test_state_machine_applies_commands_and_round_trips_snapshots() -> None:
    sm = KvStateMachine()
    commands = [
        Command("put", "k", "a", "c1.1"),
        Command("append", "k", "b", "c1.2"),
        Command("nop", "", "", "x"),
    ]
    sm.apply(Entry(1, 1))  # a leader's empty entry
    for index, command in enumerate(commands, start=2):
        sm.apply(Entry(1, index, data=command.encode()))
    sm.apply(Entry(1, 5, EntryType.CONF_CHANGE, b"\x00" * 9))
    assert sm.get("k") == "ab" and sm.get("other") == "" and sm.applied_index == 5
    copy = KvStateMachine()
    copy.restore(5, sm.snapshot_data())
    assert copy.data == sm.data and copy.snapshot_data() == sm.snapshot_data()
    with pytest.raises(RuntimeError):
        sm.apply(Entry(1, 7))
    with pytest.raises(ValueError):
        Command("put", "k|x", "v", "t").encode()
    with pytest.raises(ValueError):
        Command.decode(b"drop|k|v|t")


# -- invariants on synthetic histories ------------------------------------------------------


def _checker(tick: int = 42) -> InvariantChecker:
    checker = InvariantChecker(seed=1234)
    checker.tick = tick
    return checker


def test_a_violation_names_the_seed_and_the_tick() -> None:
    checker = _checker(tick=77)
    checker.observe_leader(1, 5)
    checker.observe_leader(1, 5)
    checker.observe_leader(2, 6)
    with pytest.raises(InvariantViolation) as info:
        checker.observe_leader(3, 5)
    assert info.value.seed == 1234 and info.value.tick == 77
    assert "seed 1234 tick 77: election safety" in str(info.value)


def test_one_vote_per_term_per_node() -> None:
    checker = _checker()
    checker.observe_vote_granted(1, 3, 2)
    checker.observe_vote_granted(1, 3, 2)  # a repeat is fine
    checker.observe_vote_granted(1, 4, 3)
    with pytest.raises(InvariantViolation, match="one vote per term"):
        checker.observe_vote_granted(1, 3, 3)


def test_log_matching_detects_different_commands_or_prefixes() -> None:
    checker = _checker()
    log = (Entry(1, 2, data=b"a"), Entry(2, 3, data=b"b"))
    checker.observe_log_entries(1, 1, log)
    checker.observe_log_entries(2, 1, log)
    checker.observe_log_entries(3, None, log[1:])  # after compaction: prefix unknown
    with pytest.raises(InvariantViolation, match="log matching"):
        checker.observe_log_entries(3, 1, (Entry(1, 2, data=b"z"),))
    with pytest.raises(InvariantViolation, match="log matching"):
        # Same entry 3/2, but node 3's entry 2 has term 2 where the others have term 1.
        checker.observe_log_entries(3, 2, (Entry(2, 3, data=b"b"),))


def test_state_machine_safety_compares_every_applied_index() -> None:
    checker = _checker()
    checker.observe_applied(1, Entry(2, 5, data=b"x"), node_term=2)
    checker.observe_applied(2, Entry(2, 5, data=b"x"), node_term=3)
    checker.observe_snapshot(3, 5, 2, b"img", node_term=3)
    checker.observe_snapshot(1, 5, 2, b"img", node_term=3)
    with pytest.raises(InvariantViolation, match="state machine safety"):
        checker.observe_applied(3, Entry(3, 5, data=b"y"), node_term=3)
    with pytest.raises(InvariantViolation, match="state machine safety"):
        checker.observe_snapshot(2, 5, 2, b"other image", node_term=3)


def test_leader_completeness_requires_entries_committed_in_earlier_terms() -> None:
    checker = _checker()
    checker.observe_applied(1, Entry(2, 4, data=b"x"), node_term=2)
    checker.observe_applied(1, Entry(3, 5, data=b"y"), node_term=3)
    full_log = {4: 2, 5: 3}.get
    checker.check_leader_completeness(2, 4, first_index=1, log_term=full_log)
    # Entry 5 was seen committed only at term 3: a term-3 leader elected by stale votes
    # may lack it, a term-4 leader may not.
    short_log = {4: 2}.get
    checker.check_leader_completeness(2, 3, first_index=1, log_term=short_log)
    with pytest.raises(InvariantViolation, match="leader completeness"):
        checker.check_leader_completeness(2, 4, first_index=1, log_term=short_log)
    # Below the leader's snapshot everything is committed: nothing to compare.
    checker.check_leader_completeness(2, 4, first_index=6, log_term=lambda i: None)


def test_durable_term_and_vote_never_go_back() -> None:
    checker = _checker()
    checker.check_hard_state_write(1, HardState(3, 0, 1), HardState(3, 2, 1))
    checker.check_hard_state_write(1, HardState(3, 2, 1), HardState(3, 2, 5))
    checker.check_hard_state_write(1, HardState(3, 2, 5), HardState(4, 0, 5))
    with pytest.raises(InvariantViolation, match="term never goes back"):
        checker.check_hard_state_write(1, HardState(4, 0, 5), HardState(3, 2, 5))
    with pytest.raises(InvariantViolation, match="vote never goes back"):
        checker.check_hard_state_write(1, HardState(3, 2, 5), HardState(3, 1, 5))
    with pytest.raises(InvariantViolation, match="restart"):
        checker.check_restart(1, HardState(3, 2, 5), term=3, vote=0)


def _message(kind: MessageType, *, term: int, index: int = 0, reject: bool = False) -> Message:
    return Message(kind, 1, to=2, from_=1, term=term, index=index, reject=reject)


def test_acknowledgements_must_be_covered_by_synced_state() -> None:
    checker = _checker()
    synced = HardState(5, 2, 3)
    ack = _message(MessageType.APP_RESP, term=5, index=7)
    checker.check_message_durable(1, ack, synced, durable_last_index=7)
    checker.check_message_durable(
        1, _message(MessageType.APP_RESP, term=5, index=9, reject=True), synced, 7
    )
    with pytest.raises(InvariantViolation, match="durable before acknowledged"):
        checker.check_message_durable(1, _message(MessageType.APP_RESP, term=5, index=8), synced, 7)
    with pytest.raises(InvariantViolation, match="durable before acknowledged"):
        checker.check_message_durable(1, _message(MessageType.APP_RESP, term=6, index=1), synced, 7)
    # Queued at term 5, released after a term-6 leader truncated the entries: stale, allowed.
    checker.check_message_durable(1, ack, HardState(6, 0, 3), durable_last_index=6)


def test_vote_grants_must_be_covered_by_synced_state() -> None:
    checker = _checker()
    grant = _message(MessageType.VOTE_RESP, term=5)
    checker.check_message_durable(1, grant, HardState(5, 2, 0), durable_last_index=0)
    checker.check_message_durable(1, grant, HardState(6, 0, 0), durable_last_index=0)
    with pytest.raises(InvariantViolation, match="durable before acknowledged"):
        checker.check_message_durable(1, grant, HardState(5, 0, 0), durable_last_index=0)
    with pytest.raises(InvariantViolation, match="durable before acknowledged"):
        checker.check_message_durable(1, grant, HardState(4, 2, 0), durable_last_index=0)


def test_a_leader_commits_only_entries_of_its_own_term() -> None:
    checker = _checker()
    checker.check_leader_commit(1, term=4, commit=9, entry_term=4)
    with pytest.raises(InvariantViolation, match="leader commit rule"):
        checker.check_leader_commit(1, term=4, commit=10, entry_term=3)


# -- witness --------------------------------------------------------------------------------


def _op(call: int, ret: int, op: str, value: str | None = None, output: object = None) -> Operation:
    return Operation(1, KvInput(op, "k", value), output, call, ret)


def test_a_valid_witness_proves_a_history_linearizable() -> None:
    # Two concurrent appends; the read saw them in the order the log chose.
    history = [_op(1, 10, "append", "a"), _op(2, 9, "append", "b"), _op(11, 12, "get", None, "ba")]
    positions = [(3, 0, 1), (2, 0, 2), (3, 1, 11)]
    assert witness_problem(kv_model, history, positions) == ""


def test_a_witness_must_respect_real_time_and_the_model() -> None:
    write = _op(1, 2, "put", "x")
    stale_read = _op(3, 4, "get", None, "")
    # Placing the read before the write contradicts real time (the write returned first).
    assert "returned before" in witness_problem(
        kv_model, [write, stale_read], [(2, 0, 1), (1, 1, 3)]
    )
    # Placing it after contradicts the model (it should have seen "x").
    assert "impossible" in witness_problem(kv_model, [write, stale_read], [(2, 0, 1), (2, 1, 3)])
    with pytest.raises(ValueError):
        witness_problem(kv_model, [write], [])
