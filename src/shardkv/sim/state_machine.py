"""The simulator's replicated state machine: a tiny key-value store and its command format.

Owns the encoding of client commands into Raft entry data, applying committed entries, and
snapshot images. Deterministic and pure; no I/O. Keys and values are short ASCII strings
without ``|`` (the field separator).

Command data: ``op|key|value|tag`` where ``op`` is ``put``, ``append`` or ``nop`` and
``tag`` makes every proposal's bytes unique (client id and sequence), so the invariant
checker can tell two commands apart even when they write the same value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from shardkv.core.raft import Entry, EntryType

SEPARATOR = "|"


@dataclass(frozen=True, slots=True)
class Command:
    op: str
    key: str
    value: str
    tag: str

    def encode(self) -> bytes:
        for part in (self.op, self.key, self.value, self.tag):
            if SEPARATOR in part:
                raise ValueError(f"{SEPARATOR!r} is not allowed in command fields: {part!r}")
        return SEPARATOR.join((self.op, self.key, self.value, self.tag)).encode()

    @staticmethod
    def decode(data: bytes) -> Command:
        """Inverse of `encode`; raises ``ValueError`` on malformed data."""
        parts = data.decode().split(SEPARATOR)
        if len(parts) != 4 or parts[0] not in ("put", "append", "nop"):
            raise ValueError(f"malformed command {data!r}")
        return Command(parts[0], parts[1], parts[2], parts[3])


class KvStateMachine:
    """Key -> value; absent keys read as ``""``. Tracks the index of the last entry applied.

    Entries must be applied in log order without gaps (`apply` checks); a snapshot replaces
    everything (`restore`)."""

    __slots__ = ("applied_index", "data")

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.applied_index = 0

    def apply(self, entry: Entry) -> None:
        if entry.index != self.applied_index + 1:
            raise RuntimeError(
                f"state machine at {self.applied_index} asked to apply entry {entry.index}"
            )
        self.applied_index = entry.index
        if entry.type is not EntryType.NORMAL or not entry.data:
            return  # conf changes and leaders' empty entries change no key
        command = Command.decode(entry.data)
        if command.op == "put":
            self.data[command.key] = command.value
        elif command.op == "append":
            self.data[command.key] = self.data.get(command.key, "") + command.value

    def get(self, key: str) -> str:
        return self.data.get(key, "")

    def snapshot_data(self) -> bytes:
        """A canonical image: equal states give equal bytes."""
        return json.dumps(self.data, sort_keys=True, separators=(",", ":")).encode()

    def restore(self, index: int, data: bytes) -> None:
        """Replace the state with a snapshot image taken at ``index``."""
        self.data = json.loads(data) if data else {}
        self.applied_index = index
