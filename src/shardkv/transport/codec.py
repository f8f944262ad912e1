"""Conversion between the Raft core's plain types and their protobuf mirrors.

This module owns the mapping field by field (core ``Message.to``/``from_`` are
``to_node``/``from_node`` on the wire) and nothing else: no I/O, no policy. It runs once per
Raft message in both directions, so it is written for speed:

- encoding fills messages in place (``repeated.add``) and skips fields at their default,
  instead of building keyword dicts and copying sub-messages;
- decoding builds the core's frozen dataclasses through their slot descriptors (half the
  cost of the generated ``__init__``, which calls ``object.__setattr__`` per field). That
  shortcut is checked at import against ``dataclasses.fields`` and falls back to the
  ordinary constructor if the core's types ever grow a ``__post_init__``.

Decoding refuses values the core cannot represent (an unknown message or entry type, a
``MESSAGE_TYPE_UNSPECIFIED``) with `CodecError`; the receiver drops such a message and
counts it, so a newer peer sending a message type we do not know cannot break a stream.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any, Final

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
from shardkv.transport.proto import shardkv_pb2 as pb

__all__ = [
    "CodecError",
    "conf_change_from_pb",
    "conf_change_to_pb",
    "conf_state_from_pb",
    "conf_state_to_pb",
    "decode_batch",
    "encode_batch",
    "entry_from_pb",
    "entry_to_pb",
    "fill_message_pb",
    "hard_state_from_pb",
    "hard_state_to_pb",
    "message_from_pb",
    "message_to_pb",
    "snapshot_from_pb",
    "snapshot_metadata_from_pb",
    "snapshot_metadata_to_pb",
    "snapshot_to_pb",
]


class CodecError(ValueError):
    """A protobuf value has no core equivalent (unknown or unspecified enum value)."""


_MESSAGE_TYPES: Final[dict[int, MessageType]] = {int(t): t for t in MessageType}
_ENTRY_TYPES: Final[dict[int, EntryType]] = {int(t): t for t in EntryType}
_CONF_CHANGE_TYPES: Final[dict[int, ConfChangeType]] = {int(t): t for t in ConfChangeType}


def _slot_setters(cls: type[Any], names: list[str]) -> list[Callable[[Any, Any], None]] | None:
    """The slot descriptors' setters of a slotted frozen dataclass, or None if building it
    slot by slot would not be equivalent to calling it (it has a ``__post_init__``, or is
    not slotted)."""
    if hasattr(cls, "__post_init__") or "__slots__" not in cls.__dict__:
        return None
    return [cls.__dict__[name].__set__ for name in names]


def _entry_constructor() -> Callable[[int, int, EntryType, bytes], Entry]:
    setters = _slot_setters(Entry, _ENTRY_FIELDS)
    if setters is None:
        return Entry
    s_term, s_index, s_type, s_data = setters
    new = object.__new__

    def new_entry(term: int, index: int, type_: EntryType, data: bytes) -> Entry:
        e: Entry = new(Entry)
        s_term(e, term)
        s_index(e, index)
        s_type(e, type_)
        s_data(e, data)
        return e

    return new_entry


def _message_constructor() -> Callable[..., Message]:
    setters = _slot_setters(Message, _MESSAGE_FIELDS)
    if setters is None:
        return Message
    s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12 = setters
    new = object.__new__

    def new_message(
        type_: MessageType,
        group_id: int,
        to: int,
        from_: int,
        term: int,
        log_term: int,
        index: int,
        entries: tuple[Entry, ...],
        commit: int,
        reject: bool,
        reject_hint: int,
        snapshot: Snapshot | None,
        context: bytes,
    ) -> Message:
        m: Message = new(Message)
        s0(m, type_)
        s1(m, group_id)
        s2(m, to)
        s3(m, from_)
        s4(m, term)
        s5(m, log_term)
        s6(m, index)
        s7(m, entries)
        s8(m, commit)
        s9(m, reject)
        s10(m, reject_hint)
        s11(m, snapshot)
        s12(m, context)
        return m

    return new_message


# The fast constructors pass values positionally in declaration order: fail at import, not
# with silently swapped fields, if the core's types are ever changed.
_ENTRY_FIELDS: Final = ["term", "index", "type", "data"]
_MESSAGE_FIELDS: Final = [
    "type",
    "group_id",
    "to",
    "from_",
    "term",
    "log_term",
    "index",
    "entries",
    "commit",
    "reject",
    "reject_hint",
    "snapshot",
    "context",
]
for _cls, _names in ((Entry, _ENTRY_FIELDS), (Message, _MESSAGE_FIELDS)):
    if [f.name for f in dataclasses.fields(_cls)] != _names:
        raise ImportError(
            f"shardkv.transport.codec is out of date with {_cls.__name__}: it has fields "
            f"{[f.name for f in dataclasses.fields(_cls)]}, the codec expects {_names}"
        )

_new_entry: Final = _entry_constructor()
_new_message: Final = _message_constructor()


# --- small types -------------------------------------------------------------------------


def entry_to_pb(entry: Entry) -> pb.Entry:
    # Core IntEnums and wire enums share their numbers (a test checks it).
    kind: Any = entry.type
    return pb.Entry(term=entry.term, index=entry.index, type=kind, data=entry.data)


def entry_from_pb(p: pb.Entry) -> Entry:
    entry_type = _ENTRY_TYPES.get(p.type)
    if entry_type is None:
        raise CodecError(f"unknown entry type {p.type}")
    return _new_entry(p.term, p.index, entry_type, p.data)


def hard_state_to_pb(hs: HardState) -> pb.HardState:
    return pb.HardState(term=hs.term, vote=hs.vote, commit=hs.commit)


def hard_state_from_pb(p: pb.HardState) -> HardState:
    return HardState(term=p.term, vote=p.vote, commit=p.commit)


def conf_state_to_pb(cs: ConfState) -> pb.ConfState:
    return pb.ConfState(voters=cs.voters, learners=cs.learners)


def conf_state_from_pb(p: pb.ConfState) -> ConfState:
    return ConfState(tuple(p.voters), tuple(p.learners))


def snapshot_metadata_to_pb(md: SnapshotMetadata) -> pb.SnapshotMetadata:
    return pb.SnapshotMetadata(
        index=md.index, term=md.term, conf_state=conf_state_to_pb(md.conf_state)
    )


def snapshot_metadata_from_pb(p: pb.SnapshotMetadata) -> SnapshotMetadata:
    return SnapshotMetadata(index=p.index, term=p.term, conf_state=conf_state_from_pb(p.conf_state))


def snapshot_to_pb(snap: Snapshot) -> pb.Snapshot:
    return pb.Snapshot(metadata=snapshot_metadata_to_pb(snap.metadata), data=snap.data)


def snapshot_from_pb(p: pb.Snapshot) -> Snapshot:
    return Snapshot(metadata=snapshot_metadata_from_pb(p.metadata), data=p.data)


def conf_change_to_pb(cc: ConfChange) -> pb.ConfChange:
    kind: Any = cc.type
    return pb.ConfChange(type=kind, node_id=cc.node_id, context=cc.context)


def conf_change_from_pb(p: pb.ConfChange) -> ConfChange:
    kind = _CONF_CHANGE_TYPES.get(p.type)
    if kind is None:
        raise CodecError(f"unknown conf change type {p.type}")
    return ConfChange(kind, p.node_id, p.context)


# --- messages (the hot path) ---------------------------------------------------------------


def fill_message_pb(m: Message, p: pb.Message, *, snapshot_data: bool = True) -> None:
    """Write ``m`` into the empty protobuf message ``p`` (typically ``batch.messages.add()``).

    With ``snapshot_data=False`` the snapshot's metadata is written but not its data (the
    header of a chunked snapshot transfer). Raises ``ValueError``/``TypeError`` if a field
    does not fit its protobuf type (a negative index, a non-bytes payload): a caller bug.
    """
    p.type = m.type  # type: ignore[assignment]  # an IntEnum with the wire's numbers
    p.group_id = m.group_id
    p.to_node = m.to
    p.from_node = m.from_
    # Default-valued scalars are not written: proto3 would not encode them anyway, and a
    # skipped assignment is the cheapest thing here.
    if m.term:
        p.term = m.term
    if m.log_term:
        p.log_term = m.log_term
    if m.index:
        p.index = m.index
    if m.commit:
        p.commit = m.commit
    if m.reject:
        p.reject = True
    if m.reject_hint:
        p.reject_hint = m.reject_hint
    if m.context:
        p.context = m.context
    if m.entries:
        add = p.entries.add
        for e in m.entries:
            add(term=e.term, index=e.index, type=e.type, data=e.data)
    snap = m.snapshot
    if snap is not None:
        ps = p.snapshot
        md = snap.metadata
        pm = ps.metadata
        pm.index = md.index
        pm.term = md.term
        pc = pm.conf_state
        pc.voters.extend(md.conf_state.voters)
        pc.learners.extend(md.conf_state.learners)
        if snapshot_data and snap.data:
            ps.data = snap.data
        # An all-default snapshot must still be present on the wire (snapshot is not None).
        ps.SetInParent()


def message_to_pb(m: Message, *, snapshot_data: bool = True) -> pb.Message:
    p = pb.Message()
    fill_message_pb(m, p, snapshot_data=snapshot_data)
    return p


def message_from_pb(p: pb.Message) -> Message:
    """The core `Message` for ``p``. Raises `CodecError` for an unknown message or entry
    type."""
    kind = _MESSAGE_TYPES.get(p.type)
    if kind is None:
        raise CodecError(f"unknown message type {p.type}")
    pe = p.entries
    if pe:
        entry_types = _ENTRY_TYPES
        new_entry = _new_entry
        try:
            entries = tuple([new_entry(e.term, e.index, entry_types[e.type], e.data) for e in pe])
        except KeyError as exc:
            raise CodecError(f"unknown entry type {exc.args[0]}") from None
    else:
        entries = ()
    snapshot = snapshot_from_pb(p.snapshot) if p.HasField("snapshot") else None
    return _new_message(
        kind,
        p.group_id,
        p.to_node,
        p.from_node,
        p.term,
        p.log_term,
        p.index,
        entries,
        p.commit,
        p.reject,
        p.reject_hint,
        snapshot,
        p.context,
    )


def encode_batch(from_node: int, messages: Iterable[Message]) -> pb.MessageBatch:
    """One `MessageBatch` holding ``messages`` in order (snapshot data included)."""
    batch = pb.MessageBatch(from_node=from_node)
    add = batch.messages.add
    for m in messages:
        fill_message_pb(m, add())
    return batch


def decode_batch(batch: pb.MessageBatch) -> tuple[list[Message], int]:
    """The batch's messages in order, and how many were undecodable (skipped)."""
    # message_from_pb inlined: this loop runs once per received Raft message.
    out: list[Message] = []
    append = out.append
    invalid = 0
    message_types = _MESSAGE_TYPES
    entry_types = _ENTRY_TYPES
    new_entry = _new_entry
    new_message = _new_message
    for p in batch.messages:
        kind = message_types.get(p.type)
        if kind is None:
            invalid += 1
            continue
        pe = p.entries
        if pe:
            try:
                entries = tuple(
                    [new_entry(e.term, e.index, entry_types[e.type], e.data) for e in pe]
                )
            except KeyError:
                invalid += 1
                continue
        else:
            entries = ()
        append(
            new_message(
                kind,
                p.group_id,
                p.to_node,
                p.from_node,
                p.term,
                p.log_term,
                p.index,
                entries,
                p.commit,
                p.reject,
                p.reject_hint,
                snapshot_from_pb(p.snapshot) if p.HasField("snapshot") else None,
                p.context,
            )
        )
    return out, invalid
