"""The transport's pure parts: protobuf codec, snapshot chunking, backoff, TLS file checks.

The codec must carry every field of every core type unchanged (hypothesis round trips
through real protobuf bytes); the snapshot assembler must rebuild exactly what was chunked
and refuse anything corrupted, out of order, truncated or too large, with the gRPC status
the sender will see.
"""

from __future__ import annotations

import random
import zlib
from pathlib import Path

import grpc
import pytest
from hypothesis import assume, given, seed, settings
from hypothesis import strategies as st

from shardkv.core.raft.types import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    Snapshot,
    SnapshotMetadata,
)
from shardkv.storage.snapshot_files import is_ref
from shardkv.transport import PeerTLS, PeerTLSError, codec
from shardkv.transport.backoff import Backoff
from shardkv.transport.proto import shardkv_pb2 as pb
from shardkv.transport.snapshot import SnapshotAssembler, SnapshotTransferError, iter_chunks

u64 = st.integers(min_value=0, max_value=(1 << 64) - 1)
node_ids = st.integers(min_value=0, max_value=(1 << 64) - 1)
small_bytes = st.binary(max_size=64)

entries = st.builds(Entry, term=u64, index=u64, type=st.sampled_from(EntryType), data=small_bytes)
conf_states = st.builds(
    ConfState,
    voters=st.lists(node_ids, max_size=5).map(tuple),
    learners=st.lists(node_ids, max_size=3).map(tuple),
)
snapshot_metadata = st.builds(SnapshotMetadata, index=u64, term=u64, conf_state=conf_states)
snapshots = st.builds(Snapshot, metadata=snapshot_metadata, data=st.binary(max_size=256))
messages = st.builds(
    Message,
    type=st.sampled_from(MessageType),
    group_id=u64,
    to=node_ids,
    from_=node_ids,
    term=u64,
    log_term=u64,
    index=u64,
    entries=st.lists(entries, max_size=4).map(tuple),
    commit=u64,
    reject=st.booleans(),
    reject_hint=u64,
    snapshot=st.none() | snapshots,
    context=small_bytes,
)


def _wire(p: pb.Message) -> pb.Message:
    return pb.Message.FromString(p.SerializeToString())


# --- codec ---------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(messages)
def test_every_message_field_survives_the_wire(m: Message) -> None:
    assert codec.message_from_pb(_wire(codec.message_to_pb(m))) == m


@settings(max_examples=100, deadline=None)
@given(st.lists(messages, max_size=8), node_ids)
def test_a_batch_keeps_its_messages_and_their_order(ms: list[Message], from_node: int) -> None:
    batch = pb.MessageBatch.FromString(codec.encode_batch(from_node, ms).SerializeToString())
    assert batch.from_node == from_node
    assert codec.decode_batch(batch) == (ms, 0)


def test_an_absent_snapshot_and_an_empty_snapshot_stay_distinct() -> None:
    base = Message(MessageType.SNAP, 1, 2, 3)
    with_empty = Message(MessageType.SNAP, 1, 2, 3, snapshot=Snapshot())
    assert codec.message_from_pb(_wire(codec.message_to_pb(base))).snapshot is None
    assert codec.message_from_pb(_wire(codec.message_to_pb(with_empty))).snapshot == Snapshot()


def test_decoded_messages_are_ordinary_core_values() -> None:
    m = Message(MessageType.APP, 7, 2, 1, term=3, entries=(Entry(3, 4, data=b"x"),))
    decoded = codec.message_from_pb(_wire(codec.message_to_pb(m)))
    assert type(decoded) is Message and type(decoded.entries[0]) is Entry
    assert decoded.type is MessageType.APP and decoded.entries[0].type is EntryType.NORMAL
    assert hash(decoded) == hash(m)
    with pytest.raises(AttributeError):
        decoded.term = 4  # type: ignore[misc]


@given(u64, u64, u64)
def test_hard_state_round_trip(term: int, vote: int, commit: int) -> None:
    hs = HardState(term, vote, commit)
    wire = pb.HardState.FromString(codec.hard_state_to_pb(hs).SerializeToString())
    assert codec.hard_state_from_pb(wire) == hs


@given(snapshots)
def test_snapshot_and_metadata_round_trip(snap: Snapshot) -> None:
    wire = pb.Snapshot.FromString(codec.snapshot_to_pb(snap).SerializeToString())
    assert codec.snapshot_from_pb(wire) == snap
    md = pb.SnapshotMetadata.FromString(
        codec.snapshot_metadata_to_pb(snap.metadata).SerializeToString()
    )
    assert codec.snapshot_metadata_from_pb(md) == snap.metadata


@given(st.sampled_from(ConfChangeType), node_ids, small_bytes)
def test_conf_change_round_trip(kind: ConfChangeType, node_id: int, context: bytes) -> None:
    cc = ConfChange(kind, node_id, context)
    wire = pb.ConfChange.FromString(codec.conf_change_to_pb(cc).SerializeToString())
    assert codec.conf_change_from_pb(wire) == cc


@given(entries)
def test_entry_round_trip(e: Entry) -> None:
    assert codec.entry_from_pb(pb.Entry.FromString(codec.entry_to_pb(e).SerializeToString())) == e


def test_wire_enum_numbers_equal_the_core_enums() -> None:
    assert {t.name: int(t) for t in MessageType} == {
        name.removeprefix("MSG_"): number
        for name, number in pb.MessageType.items()
        if name != "MESSAGE_TYPE_UNSPECIFIED"
    }
    assert {f"ENTRY_TYPE_{t.name}": int(t) for t in EntryType} == dict(pb.EntryType.items())
    assert {f"CONF_CHANGE_TYPE_{t.name}": int(t) for t in ConfChangeType} == dict(
        pb.ConfChangeType.items()
    )


def test_unknown_types_are_skipped_and_counted_not_fatal() -> None:
    good = Message(MessageType.HEARTBEAT, 1, 2, 1, term=5)
    batch = codec.encode_batch(1, [good, good])
    batch.messages.add(type=99, group_id=1, to_node=2, from_node=1)  # a newer peer's type
    batch.messages.add(type=pb.MESSAGE_TYPE_UNSPECIFIED, to_node=2)
    bad_entry = batch.messages.add(type=pb.MSG_APP, to_node=2)
    bad_entry.entries.add(term=1, index=1, type=7)
    wire = pb.MessageBatch.FromString(batch.SerializeToString())
    assert codec.decode_batch(wire) == ([good, good], 3)
    with pytest.raises(codec.CodecError):
        codec.message_from_pb(wire.messages[2])
    with pytest.raises(codec.CodecError):
        codec.message_from_pb(wire.messages[4])


# --- snapshot chunking ---------------------------------------------------------------------


def _snap_message(data: bytes, to: int = 2) -> Message:
    md = SnapshotMetadata(index=40, term=3, conf_state=ConfState.of([1, 2, 3], [4]))
    return Message(MessageType.SNAP, 9, to, 1, term=3, snapshot=Snapshot(md, data))


def _wire_chunks(m: Message, chunk_bytes: int) -> list[pb.SnapshotChunk]:
    return [pb.SnapshotChunk.FromString(c.SerializeToString()) for c in iter_chunks(m, chunk_bytes)]


def _assemble(chunks: list[pb.SnapshotChunk], max_bytes: int = 1 << 30) -> Message:
    asm = SnapshotAssembler(node_id=2, max_snapshot_bytes=max_bytes)
    done = [asm.add(c) for c in chunks]
    assert done == [False] * (len(chunks) - 1) + [True]
    return asm.message()


@seed(20261205)
@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=3000), st.integers(min_value=1, max_value=1200))
def test_chunks_reassemble_to_the_same_message(data: bytes, chunk_bytes: int) -> None:
    # Data that begins like a snapshot-file reference is read from a file (tested apart).
    assume(not is_ref(data))
    m = _snap_message(data)
    chunks = _wire_chunks(m, chunk_bytes)
    assert len(chunks) == max(1, -(-len(data) // chunk_bytes))
    assert all(len(c.data) <= chunk_bytes for c in chunks)
    assert chunks[-1].snapshot_crc32 == zlib.crc32(data)
    assert _assemble(chunks) == m


def test_only_the_first_chunk_carries_the_header_and_it_has_no_data() -> None:
    chunks = _wire_chunks(_snap_message(b"abcdefgh"), 3)
    assert [c.HasField("header") for c in chunks] == [True, False, False]
    assert chunks[0].header.snapshot.data == b"" and chunks[0].total_bytes == 8
    assert [c.offset for c in chunks] == [0, 3, 6]


def _refusal(chunks: list[pb.SnapshotChunk], max_bytes: int = 1 << 30) -> SnapshotTransferError:
    asm = SnapshotAssembler(node_id=2, max_snapshot_bytes=max_bytes)
    with pytest.raises(SnapshotTransferError) as info:
        for c in chunks:
            asm.add(c)
        asm.check_complete()
    return info.value


def test_a_corrupted_chunk_is_refused_as_data_loss() -> None:
    chunks = _wire_chunks(_snap_message(bytes(range(256)) * 8), 500)
    chunks[2].data = b"\xff" + chunks[2].data[1:]
    assert _refusal(chunks).code is grpc.StatusCode.DATA_LOSS


def test_a_wrong_whole_snapshot_checksum_is_refused_as_data_loss() -> None:
    chunks = _wire_chunks(_snap_message(b"x" * 1000), 300)
    chunks[-1].snapshot_crc32 ^= 1
    assert _refusal(chunks).code is grpc.StatusCode.DATA_LOSS


def test_a_snapshot_over_the_bound_is_refused_before_any_data() -> None:
    chunks = _wire_chunks(_snap_message(b"x" * 1000), 300)
    asm = SnapshotAssembler(node_id=2, max_snapshot_bytes=999)
    with pytest.raises(SnapshotTransferError) as info:
        asm.add(chunks[0])
    assert info.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert asm.received_bytes == 0


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda cs: cs[:1] + cs[2:], id="gap"),
        pytest.param(lambda cs: cs[:-1], id="truncated"),
        pytest.param(lambda cs: cs[1:], id="no-header"),
        pytest.param(lambda cs: [*cs, cs[-1]], id="after-last"),
        pytest.param(lambda cs: [cs[0], cs[0], *cs[1:]], id="repeated-header"),
    ],
)
def test_malformed_sequences_are_invalid_arguments(mangle: object) -> None:
    chunks = _wire_chunks(_snap_message(b"y" * 1000), 300)
    assert callable(mangle)
    assert _refusal(mangle(chunks)).code is grpc.StatusCode.INVALID_ARGUMENT


def test_a_snapshot_addressed_to_another_node_is_refused() -> None:
    chunks = _wire_chunks(_snap_message(b"z" * 10, to=3), 300)
    assert _refusal(chunks).code is grpc.StatusCode.INVALID_ARGUMENT


def test_an_assembler_stays_refused_after_a_failure() -> None:
    chunks = _wire_chunks(_snap_message(b"y" * 1000), 300)
    chunks[1].crc32 ^= 1
    asm = SnapshotAssembler(node_id=2, max_snapshot_bytes=1 << 20)
    asm.add(chunks[0])
    with pytest.raises(SnapshotTransferError):
        asm.add(chunks[1])
    with pytest.raises(SnapshotTransferError):
        asm.message()


def test_only_snapshot_messages_can_be_chunked() -> None:
    with pytest.raises(ValueError):
        list(iter_chunks(Message(MessageType.APP, 1, 2, 1), 10))


# --- backoff --------------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap_with_bounded_jitter() -> None:
    b = Backoff(random.Random(7), initial_s=0.1, max_s=1.0, jitter=0.5)
    bases = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]
    delays = [b.next_delay_s() for _ in bases]
    for base, delay in zip(bases, delays, strict=True):
        assert base * 0.5 <= delay <= base
    assert len(set(delays)) == len(delays), "jitter spreads the delays"
    b.reset()
    assert b.base_s == 0.1 and 0.05 <= b.next_delay_s() <= 0.1


def test_backoff_is_deterministic_for_a_seed() -> None:
    def draw(seed: int) -> list[float]:
        b = Backoff(random.Random(seed))
        return [b.next_delay_s() for _ in range(6)]

    assert draw(3) == draw(3)
    assert draw(3) != draw(4)


def test_backoff_without_jitter_is_exact() -> None:
    b = Backoff(random.Random(0), initial_s=0.5, max_s=3.0, multiplier=3.0, jitter=0.0)
    assert [b.next_delay_s() for _ in range(4)] == [0.5, 1.5, 3.0, 3.0]


# --- TLS files -------------------------------------------------------------------------------


def test_peer_tls_names_the_missing_or_bad_file(tmp_path: Path) -> None:
    pem = tmp_path / "ok.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    junk = tmp_path / "junk.key"
    junk.write_text("not a key")
    with pytest.raises(PeerTLSError, match=r"missing\.crt"):
        PeerTLS(tmp_path / "missing.crt", junk, pem).load()
    with pytest.raises(PeerTLSError, match=r"junk\.key"):
        PeerTLS(pem, junk, pem).load()
