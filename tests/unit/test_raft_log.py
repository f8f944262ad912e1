"""The Raft log: unstable tail, storage-backed log, MemoryStorage (core/raft/log*.py,
core/raft/storage.py)."""

from __future__ import annotations

import pytest

from shardkv.core.raft import (
    CompactedError,
    ConfState,
    Entry,
    HardState,
    MemoryStorage,
    RaftUsageError,
    Snapshot,
    SnapshotMetadata,
    SnapshotOutOfDateError,
    UnavailableError,
)
from shardkv.core.raft.errors import RaftInvariantError
from shardkv.core.raft.log import RaftLog
from shardkv.core.raft.log_unstable import Unstable
from shardkv.core.raft.storage import limit_size
from shardkv.core.raft.types import NO_LIMIT


def ents(*pairs: tuple[int, int]) -> list[Entry]:
    """Entries from (term, index) pairs."""
    return [Entry(term, index, data=f"{term}/{index}".encode()) for term, index in pairs]


def run(term: int, first: int, last: int) -> list[Entry]:
    return ents(*[(term, i) for i in range(first, last + 1)])


def snapshot(index: int, term: int, voters: tuple[int, ...] = (1, 2, 3)) -> Snapshot:
    return Snapshot(SnapshotMetadata(index, term, ConfState(voters)), b"state")


# -- Unstable -----------------------------------------------------------------------------


def test_unstable_append_and_hand_out_in_progress() -> None:
    u = Unstable(offset=5)
    u.truncate_and_append(run(1, 5, 7))
    assert [e.index for e in u.next_entries()] == [5, 6, 7]
    u.accept_in_progress()
    assert u.next_entries() == []
    u.truncate_and_append(run(1, 8, 8))
    assert [e.index for e in u.next_entries()] == [8]
    u.check_invariants()


def test_unstable_stable_to_drops_the_persisted_prefix() -> None:
    u = Unstable(offset=5)
    u.truncate_and_append(run(1, 5, 7))
    u.accept_in_progress()
    u.stable_to(6, 1)
    assert u.offset == 7
    assert [e.index for e in u.entries] == [7]
    u.check_invariants()


def test_unstable_stable_to_ignores_an_entry_replaced_since() -> None:
    u = Unstable(offset=5)
    u.truncate_and_append(run(1, 5, 7))
    u.accept_in_progress()
    # A new leader overwrote 6..7 at term 2 while the persist was running.
    u.truncate_and_append(run(2, 6, 7))
    assert u.offset_in_progress == 6
    u.stable_to(7, 1)
    assert u.offset == 5, "term-1 entry 7 was never the one persisted last"
    u.check_invariants()


def test_unstable_truncate_before_offset_replaces_everything() -> None:
    u = Unstable(offset=5)
    u.truncate_and_append(run(1, 5, 7))
    u.accept_in_progress()
    u.truncate_and_append(run(2, 3, 4))
    assert (u.offset, u.offset_in_progress) == (3, 3)
    assert [e.index for e in u.entries] == [3, 4]
    u.check_invariants()


def test_unstable_gap_is_an_invariant_error() -> None:
    u = Unstable(offset=5)
    with pytest.raises(RaftInvariantError):
        u.truncate_and_append(run(1, 7, 7))


def test_unstable_snapshot_defines_first_and_last_index() -> None:
    u = Unstable(offset=1)
    u.restore(snapshot(10, 3))
    assert u.maybe_first_index() == 11
    assert u.maybe_last_index() == 10
    assert u.maybe_term(10) == 3
    assert u.next_snapshot() is not None
    u.accept_in_progress()
    assert u.next_snapshot() is None
    u.stable_snap_to(10)
    assert u.snapshot is None
    u.check_invariants()


# -- MemoryStorage --------------------------------------------------------------------------


def test_memory_storage_bootstrap_starts_after_the_snapshot() -> None:
    storage = MemoryStorage.bootstrap(ConfState.of([1, 2, 3]), index=5, term=2)
    assert (storage.first_index(), storage.last_index()) == (6, 5)
    assert storage.term(5) == 2
    hard_state, conf_state = storage.initial_state()
    assert hard_state == HardState(term=2, vote=0, commit=5)
    assert conf_state.voters == (1, 2, 3)


def test_memory_storage_append_replaces_a_conflicting_suffix() -> None:
    storage = MemoryStorage()
    storage.append(run(1, 1, 5))
    storage.append(run(2, 3, 4))
    assert storage.last_index() == 4
    assert [storage.term(i) for i in range(1, 5)] == [1, 1, 2, 2]


def test_memory_storage_append_refuses_a_gap() -> None:
    storage = MemoryStorage()
    storage.append(run(1, 1, 2))
    with pytest.raises(RaftUsageError):
        storage.append(run(1, 4, 4))


def test_memory_storage_entries_bounds_and_byte_limit() -> None:
    storage = MemoryStorage()
    storage.append(run(1, 1, 10))
    assert [e.index for e in storage.entries(3, 6, NO_LIMIT)] == [3, 4, 5]
    one_entry_bytes = len(b"1/3") + 16
    assert [e.index for e in storage.entries(3, 6, one_entry_bytes * 2)] == [3, 4]
    assert [e.index for e in storage.entries(3, 6, 1)] == [3], "always at least one entry"
    with pytest.raises(UnavailableError):
        storage.entries(5, 12, NO_LIMIT)


def test_memory_storage_compaction_requires_a_snapshot_covering_it() -> None:
    storage = MemoryStorage()
    storage.append(run(1, 1, 10))
    with pytest.raises(RaftUsageError):
        storage.compact(5)
    storage.create_snapshot(6, ConfState.of([1]), b"s")
    storage.compact(5)
    assert storage.first_index() == 6
    assert storage.term(5) == 1, "the compaction point stays answerable"
    with pytest.raises(CompactedError):
        storage.term(4)
    with pytest.raises(CompactedError):
        storage.entries(5, 7, NO_LIMIT)
    with pytest.raises(CompactedError):
        storage.compact(5)


def test_memory_storage_refuses_going_back() -> None:
    storage = MemoryStorage()
    storage.set_hard_state(HardState(term=3, vote=2, commit=0))
    with pytest.raises(RaftUsageError):
        storage.set_hard_state(HardState(term=2, vote=2, commit=0))
    with pytest.raises(RaftUsageError):
        storage.set_hard_state(HardState(term=3, vote=1, commit=0))
    storage.apply_snapshot(snapshot(5, 1))
    with pytest.raises(SnapshotOutOfDateError):
        storage.apply_snapshot(snapshot(4, 1))


def test_limit_size_keeps_at_least_one_entry() -> None:
    entries = run(1, 1, 3)
    assert limit_size(entries, 0) == entries[:1]
    assert limit_size(entries, NO_LIMIT) == entries


# -- RaftLog --------------------------------------------------------------------------------


def make_log(stable: list[Entry], unstable: list[Entry] | None = None) -> RaftLog:
    storage = MemoryStorage()
    storage.append(stable)
    log = RaftLog(storage)
    if unstable:
        log.append(unstable)
    return log


def test_log_spans_storage_and_unstable_tail() -> None:
    log = make_log(run(1, 1, 5), run(2, 6, 8))
    assert (log.first_index(), log.last_index()) == (1, 8)
    assert log.term(5) == 1 and log.term(6) == 2
    assert [e.index for e in log.slice(4, 8, NO_LIMIT)] == [4, 5, 6, 7]
    assert log.term(0) == 0
    with pytest.raises(UnavailableError):
        log.term(9)


def test_log_is_up_to_date_compares_last_term_then_length() -> None:
    log = make_log(run(1, 1, 3) + run(2, 4, 5))
    assert log.is_up_to_date(last_index=1, last_term=3)
    assert log.is_up_to_date(last_index=5, last_term=2)
    assert not log.is_up_to_date(last_index=4, last_term=2)
    assert not log.is_up_to_date(last_index=9, last_term=1)


def test_log_maybe_append_matches_truncates_and_commits() -> None:
    log = make_log(run(1, 1, 5))
    assert log.maybe_append(7, 1, commit=3, entries=run(1, 8, 8)) is None, "gap"
    assert log.maybe_append(5, 2, commit=3, entries=run(2, 6, 6)) is None, "term mismatch"
    # Overwrite the uncommitted tail from index 4 on.
    assert log.maybe_append(3, 1, commit=4, entries=run(3, 4, 6)) == 6
    assert [log.term(i) for i in range(1, 7)] == [1, 1, 1, 3, 3, 3]
    assert log.committed == 4
    # Commit never exceeds the last entry this message vouched for.
    assert log.maybe_append(4, 3, commit=100, entries=[]) == 4
    assert log.committed == 4


def test_log_maybe_append_of_entries_already_present_changes_nothing() -> None:
    log = make_log(run(1, 1, 5))
    log.commit_to(2)
    assert log.maybe_append(1, 1, commit=2, entries=run(1, 2, 4)) == 4
    assert log.last_index() == 5, "a duplicate append must not truncate the tail"


def test_log_conflict_with_a_committed_entry_is_fatal() -> None:
    log = make_log(run(1, 1, 5))
    log.commit_to(4)
    with pytest.raises(RaftInvariantError):
        log.maybe_append(2, 1, commit=4, entries=run(2, 3, 3))


def test_log_find_conflict_by_term_skips_higher_terms() -> None:
    log = make_log(ents((1, 1), (1, 2), (1, 3), (4, 4), (4, 5), (5, 6), (5, 7), (5, 8)))
    assert log.find_conflict_by_term(8, 3) == (3, 1)
    assert log.find_conflict_by_term(8, 4) == (5, 4)
    assert log.find_conflict_by_term(8, 9) == (8, 5)
    assert log.find_conflict_by_term(2, 1) == (2, 1)


def test_log_commit_only_counts_entries_of_the_given_term() -> None:
    log = make_log(run(1, 1, 3) + run(2, 4, 5))
    assert not log.maybe_commit(3, term=2)
    assert log.committed == 0
    assert log.maybe_commit(5, term=2)
    assert log.committed == 5


def test_log_commit_beyond_last_index_is_fatal() -> None:
    log = make_log(run(1, 1, 3))
    with pytest.raises(RaftInvariantError):
        log.commit_to(4)


def test_log_committed_entries_are_handed_out_once_and_applied_in_order() -> None:
    log = make_log(run(1, 1, 3), run(1, 4, 5))
    log.commit_to(5)
    assert [e.index for e in log.next_committed_entries()] == [1, 2, 3, 4, 5]
    log.accept_applying(5)
    assert log.next_committed_entries() == []
    log.applied_to(5)
    assert (log.applied, log.applying) == (5, 5)
    log.check_invariants()


def test_log_committed_entries_respect_the_byte_budget() -> None:
    storage = MemoryStorage()
    storage.append(run(1, 1, 10))
    log = RaftLog(storage, max_applying_bytes=1)
    log.commit_to(10)
    assert [e.index for e in log.next_committed_entries()] == [1]


def test_log_restore_from_snapshot_waits_for_install_before_applying() -> None:
    log = make_log(run(1, 1, 3))
    log.restore(snapshot(20, 4))
    assert (log.first_index(), log.last_index(), log.committed) == (21, 20, 20)
    assert log.next_committed_entries() == []
    assert log.has_next_or_in_progress_snapshot()
    log.check_invariants()


def test_log_stable_to_after_persist_empties_the_unstable_tail() -> None:
    log = make_log(run(1, 1, 2), run(1, 3, 4))
    entries = log.next_unstable_entries()
    log.accept_unstable()
    assert not log.has_next_unstable_entries()
    assert isinstance(log.storage, MemoryStorage)
    log.storage.append(entries)
    log.stable_to(4, 1)
    assert log.unstable.entries == []
    assert log.term(4) == 1
