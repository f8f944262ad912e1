"""Interaction harness for Raft scenario files (etcd-io/raft ``testdata/*.txt`` style).

A scenario file is a sequence of blocks::

    # comments and blank lines are kept as they are
    command arg key=value key=(1,2,3)
    ----
    expected output (no blank lines; "ok" when the command prints nothing)

`run_file` executes every command against one `Env` and returns the expected and actual
text; `rewrite_file` regenerates the expected output (``SHARDKV_REWRITE=1``).

Every node is a real `RawNode` over a `MemoryStorage`, with a seeded ``random.Random``
(seed = node id), so a scenario is fully deterministic. Messages travel through one FIFO
queue that the scenario delivers, drops or partitions explicitly; a partition drops the
messages that cross it as they are sent, and messages to a crashed node are lost. After
every command the harness checks each node's invariants.

Commands (ids are node ids; ``ID...`` means one or more, none meaning all):

- ``add-nodes N [voters=(..)] [learners=(..)] [index=I] [prevote=B] [checkquorum=B]
  [election=T] [heartbeat=T] [max-inflight=N] [max-msg-bytes=N]``: new nodes, bootstrapped
  from a snapshot at ``index`` (default 1) with that membership, or empty if no voters.
- ``campaign ID``; ``tick ID N``; ``tick-election ID...``; ``tick-heartbeat ID...``
- ``propose ID DATA``; ``propose-batch ID DATA...``;
  ``propose-conf-change ID add=N|add-learner=N|remove=N``
- ``read-index ID CTX``; ``transfer-leader FROM TO``
- ``process-ready ID...``: persist, send, apply and advance one Ready per node.
- ``deliver-msgs [ID...] [drop=(..)]``: step every queued message addressed to the ids
  (dropping those to the ``drop`` ids instead).
- ``drop-msgs [from=ID] [to=ID]``; ``partition 1 2 / 3``; ``heal``
- ``stabilize [ID...]``: deliver and process until nothing is left to do.
- ``status ID``; ``raft-state``; ``raft-log ID``; ``applied ID``
- ``compact ID INDEX``: snapshot the state machine at INDEX (<= applied) and compact.
- ``crash ID``: lose everything not persisted; ``crash-before-persist ID``: take a
  Ready, send its ``messages`` (allowed before the persist), then crash without
  persisting; ``restart ID``: rebuild from storage (state machine from the snapshot).
- ``log-level all|messages|none``: show everything (default), hide the core's event
  lines, or show only command results and errors.
"""

from __future__ import annotations

import random
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from shardkv.core.raft import (
    ConfChange,
    ConfChangeType,
    Config,
    ConfState,
    Entry,
    EntryType,
    MemoryStorage,
    Message,
    MessageType,
    RaftError,
    RawNode,
    Ready,
    Role,
    Snapshot,
)

SEPARATOR = "----"


# -- formatting ---------------------------------------------------------------------------


def format_entry(entry: Entry) -> str:
    head = f"{entry.term}/{entry.index}"
    if entry.type is EntryType.CONF_CHANGE:
        change = ConfChange.decode(entry.data)
        return f"{head} {describe_change(change)}"
    if not entry.data:
        return head
    return f"{head} {entry.data.decode(errors='backslashreplace')!r}"


def format_entries(entries: tuple[Entry, ...] | list[Entry]) -> str:
    return "[" + ", ".join(format_entry(e) for e in entries) + "]"


def describe_change(change: ConfChange) -> str:
    names = {
        ConfChangeType.ADD_NODE: "add",
        ConfChangeType.ADD_LEARNER_NODE: "add-learner",
        ConfChangeType.REMOVE_NODE: "remove",
    }
    return f"{names[change.type]}={change.node_id}"


def format_ids(ids: tuple[int, ...]) -> str:
    return "(" + ",".join(str(i) for i in ids) + ")"


def format_snapshot(snapshot: Snapshot) -> str:
    meta = snapshot.metadata
    return (
        f"index={meta.index} term={meta.term} voters={format_ids(meta.conf_state.voters)} "
        f"learners={format_ids(meta.conf_state.learners)}"
    )


def format_message(m: Message) -> str:
    kind = m.type
    parts = [f"{m.from_}->{m.to} {kind.label} term={m.term}"]
    if kind is MessageType.APP:
        parts.append(f"log={m.log_term}/{m.index} commit={m.commit}")
        if m.entries:
            parts.append(f"entries={format_entries(m.entries)}")
    elif kind is MessageType.APP_RESP:
        if m.reject:
            parts.append(f"rejected index={m.index} hint={m.log_term}/{m.reject_hint}")
        else:
            parts.append(f"index={m.index}")
    elif kind in (MessageType.VOTE, MessageType.PRE_VOTE):
        parts.append(f"log={m.log_term}/{m.index}")
        if m.context:
            parts.append("transfer")
    elif kind in (MessageType.VOTE_RESP, MessageType.PRE_VOTE_RESP):
        if m.reject:
            parts.append("rejected")
    elif kind is MessageType.HEARTBEAT:
        parts.append(f"commit={m.commit}")
        if m.context:
            parts.append(f"ctx={m.context.decode()}")
    elif kind is MessageType.HEARTBEAT_RESP:
        if m.context:
            parts.append(f"ctx={m.context.decode()}")
    elif kind is MessageType.SNAP:
        assert m.snapshot is not None
        parts.append(f"snapshot=[{format_snapshot(m.snapshot)}]")
    elif kind is MessageType.READ_INDEX:
        parts.append(f"ctx={m.context.decode()}")
    elif kind is MessageType.READ_INDEX_RESP:
        parts.append(f"index={m.index} ctx={m.context.decode()}")
    return " ".join(parts)


def format_ready(node_id: int, rd: Ready) -> list[str]:
    lines = [f"Ready must-sync={str(rd.must_sync).lower()}:"]
    if rd.soft_state is not None:
        lines.append(f"soft-state: {rd.soft_state.role.value} lead={rd.soft_state.lead}")
    if rd.hard_state is not None:
        hs = rd.hard_state
        lines.append(f"hard-state: term={hs.term} vote={hs.vote} commit={hs.commit}")
    if rd.snapshot is not None:
        lines.append(f"snapshot: {format_snapshot(rd.snapshot)}")
    if rd.entries:
        lines.append(f"entries: {format_entries(rd.entries)}")
    if rd.committed_entries:
        lines.append(f"committed: {format_entries(rd.committed_entries)}")
    if rd.messages:
        lines.append("messages:")
        lines.extend(f"  {format_message(m)}" for m in rd.messages)
    if rd.messages_after_persist:
        lines.append("after-persist:")
        lines.extend(f"  {format_message(m)}" for m in rd.messages_after_persist)
    if rd.read_states:
        states = ", ".join(
            f"index={rs.index} ctx={rs.request_ctx.decode()}" for rs in rd.read_states
        )
        lines.append(f"read-states: [{states}]")
    return lines


# -- the environment ------------------------------------------------------------------------


@dataclass
class Replica:
    config: Config
    storage: MemoryStorage
    node: RawNode
    # The state machine: applied payloads, in order (empty entries included as b"").
    applied: list[bytes] = field(default_factory=list)
    applied_index: int = 0
    crashed: bool = False


def _encode_state(applied: list[bytes]) -> bytes:
    return b"|".join(applied)


def _decode_state(data: bytes) -> list[bytes]:
    return data.split(b"|") if data else []


class Env:
    """The nodes, the network queue and the output buffer of one scenario."""

    def __init__(self) -> None:
        self.replicas: dict[int, Replica] = {}
        self.queue: list[Message] = []
        self.partition: list[set[int]] | None = None
        self.out: list[str] = []
        self.indent = ""
        # "all": traces (Readys, deliveries) and core events; "messages": traces only;
        # "none": only command results and errors.
        self.log_level = "all"

    # -- output ---------------------------------------------------------------------

    def emit(self, line: str) -> None:
        """A command result or an error: always shown."""
        self.out.append(self.indent + line)

    def trace(self, line: str) -> None:
        """What happens inside a command (Readys, deliveries)."""
        if self.log_level != "none":
            self.out.append(self.indent + line)

    def _event(self, text: str) -> None:
        if self.log_level == "all":
            self.out.append(self.indent + text)

    # -- nodes ----------------------------------------------------------------------

    def _make_node(self, config: Config, storage: MemoryStorage) -> RawNode:
        return RawNode(config, storage, random.Random(config.node_id), on_event=self._event)

    def add_nodes(self, count: int, kwargs: dict[str, str]) -> None:
        voters = parse_ids(kwargs.get("voters", "()"))
        learners = parse_ids(kwargs.get("learners", "()"))
        index = int(kwargs.get("index", "1"))
        for _ in range(count):
            node_id = len(self.replicas) + 1
            config = Config(
                node_id=node_id,
                group_id=1,
                election_timeout_ticks=int(kwargs.get("election", "10")),
                heartbeat_interval_ticks=int(kwargs.get("heartbeat", "1")),
                max_inflight_messages=int(kwargs.get("max-inflight", "256")),
                max_bytes_per_message=int(kwargs.get("max-msg-bytes", str(1 << 20))),
                pre_vote=parse_bool(kwargs.get("prevote", "true")),
                check_quorum=parse_bool(kwargs.get("checkquorum", "true")),
            )
            if voters:
                storage = MemoryStorage.bootstrap(ConfState.of(voters, learners), index=index)
            else:
                storage = MemoryStorage()
            replica = Replica(config, storage, self._make_node(config, storage))
            replica.applied_index = storage.first_index() - 1
            self.replicas[node_id] = replica

    def replica(self, node_id: int) -> Replica:
        replica = self.replicas[node_id]
        if replica.crashed:
            raise RaftError(f"node {node_id} is crashed")
        return replica

    def live_ids(self) -> list[int]:
        return [i for i, r in sorted(self.replicas.items()) if not r.crashed]

    def check_invariants(self) -> None:
        for node_id in self.live_ids():
            self.replicas[node_id].node.check_invariants()

    # -- network ----------------------------------------------------------------------

    def _cut(self, m: Message) -> bool:
        if self.partition is None:
            return False
        return not any(m.from_ in side and m.to in side for side in self.partition)

    def _send(self, messages: tuple[Message, ...]) -> None:
        cut = [m for m in messages if self._cut(m)]
        if len(cut) > 3:
            self.trace(f"dropped by partition: {len(cut)} messages")
        elif cut:
            for m in cut:
                self.trace(f"dropped by partition: {format_message(m)}")
        self.queue.extend(
            m for m in messages if not self._cut(m) and not self.replicas[m.to].crashed
        )

    def deliver(self, ids: list[int], drop: set[int] | None = None) -> int:
        """Step queued messages addressed to ``ids``; returns how many were handled."""
        handled = 0
        for node_id in ids:
            mine = [m for m in self.queue if m.to == node_id]
            if not mine:
                continue
            self.queue = [m for m in self.queue if m.to != node_id]
            self.trace(f"> {node_id} receiving messages")
            self.indent = "  "
            for m in mine:
                handled += 1
                replica = self.replicas[node_id]
                if (drop and node_id in drop) or self._cut(m) or replica.crashed:
                    self.trace(f"dropped: {format_message(m)}")
                    continue
                self.trace(format_message(m))
                try:
                    replica.node.step(m)
                except RaftError as error:
                    self.emit(f"error: {type(error).__name__}: {error}")
            self.indent = ""
        return handled

    def process_ready(self, node_id: int) -> bool:
        replica = self.replica(node_id)
        node = replica.node
        if not node.has_ready():
            return False
        rd = node.ready()
        self.trace(f"> {node_id} handling Ready")
        self.indent = "  "
        for line in format_ready(node_id, rd):
            self.trace(line)
        # Contract: persist, then after-persist messages; other messages any time.
        replica.storage.persist_ready(rd)
        self._send(rd.messages)
        self._send(rd.messages_after_persist)
        if rd.snapshot is not None:
            replica.applied = _decode_state(rd.snapshot.data)
            replica.applied_index = rd.snapshot.metadata.index
        for entry in rd.committed_entries:
            if entry.type is EntryType.NORMAL:
                replica.applied.append(entry.data)
            replica.applied_index = entry.index
        node.advance(rd)
        self.indent = ""
        return True

    def stabilize(self, ids: list[int]) -> None:
        for _ in range(1000):
            progressed = False
            for node_id in ids:
                if not self.replicas[node_id].crashed and self.process_ready(node_id):
                    progressed = True
            if self.deliver([i for i in ids if any(m.to == i for m in self.queue)]):
                progressed = True
            if not progressed:
                return
        raise RuntimeError("stabilize did not converge in 1000 rounds")

    # -- commands -----------------------------------------------------------------------

    def status(self, node_id: int) -> None:
        status = self.replica(node_id).node.status()
        if status.role is not Role.LEADER:
            self.emit(f"{node_id} is {status.role.value}, not the leader (lead={status.lead})")
            return
        for peer, progress in sorted(status.progress.items()):
            self.emit(f"{peer}: {progress.description}")

    def raft_state(self) -> None:
        for node_id, replica in sorted(self.replicas.items()):
            if replica.crashed:
                self.emit(f"{node_id}: crashed")
                continue
            s = replica.node.status()
            voters = format_ids(s.conf_state.voters)
            learners = format_ids(s.conf_state.learners)
            self.emit(
                f"{node_id}: {s.role.value} term={s.term} lead={s.lead} vote={s.vote} "
                f"commit={s.commit} applied={s.applied} last={s.last_index} "
                f"voters={voters} learners={learners}"
            )

    def raft_log(self, node_id: int) -> None:
        log = self.replica(node_id).node.raft.log
        first, last = log.first_index(), log.last_index()
        if first > last:
            self.emit(f"log is empty: first={first} last={last}")
            return
        for entry in log.slice(first, last + 1, 1 << 62):
            self.emit(format_entry(entry))

    def compact(self, node_id: int, index: int) -> None:
        replica = self.replica(node_id)
        if index > replica.applied_index:
            raise RaftError(f"cannot snapshot at {index}: applied is {replica.applied_index}")
        # Rebuild the state at `index` from the log: keep the applied prefix.
        log = replica.node.raft.log
        dropped = (
            sum(
                1
                for e in log.slice(index + 1, replica.applied_index + 1, 1 << 62)
                if e.type is EntryType.NORMAL
            )
            if index < replica.applied_index
            else 0
        )
        state = replica.applied[: len(replica.applied) - dropped]
        replica.storage.create_snapshot(index, replica.node.conf_state(), _encode_state(state))
        replica.storage.compact(index)

    def crash(self, node_id: int) -> None:
        replica = self.replica(node_id)
        replica.crashed = True
        self._drop_to(node_id)

    def _drop_to(self, node_id: int) -> None:
        # Messages in flight to a dead node are lost with its connections.
        self.queue = [m for m in self.queue if m.to != node_id]

    def crash_before_persist(self, node_id: int) -> None:
        """Take a Ready, send only what may leave before the persist, then crash."""
        replica = self.replica(node_id)
        node = replica.node
        if not node.has_ready():
            self.trace(f"> {node_id} has no Ready")
        else:
            rd = node.ready()
            self.trace(f"> {node_id} handling Ready, crashing before the persist completes")
            self.indent = "  "
            for line in format_ready(node_id, rd):
                self.trace(line)
            self._send(rd.messages)
            self.indent = ""
        replica.crashed = True
        self._drop_to(node_id)

    def restart(self, node_id: int) -> None:
        replica = self.replicas[node_id]
        snapshot = replica.storage.snapshot()
        replica.applied = _decode_state(snapshot.data)
        replica.applied_index = snapshot.metadata.index
        # The state machine restarts from the snapshot: committed entries after it are
        # handed out again.
        config = replace(replica.config, applied_index=snapshot.metadata.index)
        replica.config = config
        replica.node = self._make_node(config, replica.storage)
        replica.crashed = False


def parse_ids(text: str) -> list[int]:
    text = text.strip().strip("()")
    return [int(part) for part in re.split(r"[,\s]+", text) if part]


def parse_bool(text: str) -> bool:
    if text in ("true", "1", "on"):
        return True
    if text in ("false", "0", "off"):
        return False
    raise ValueError(f"not a boolean: {text}")


def _split_args(args: list[str]) -> tuple[list[str], dict[str, str]]:
    positional: list[str] = []
    kwargs: dict[str, str] = {}
    for arg in args:
        if "=" in arg:
            key, value = arg.split("=", 1)
            kwargs[key] = value
        else:
            positional.append(arg)
    return positional, kwargs


def _ids(env: Env, positional: list[str]) -> list[int]:
    return [int(p) for p in positional] if positional else sorted(env.replicas)


def run_command(env: Env, line: str) -> list[str]:
    """Execute one command line; returns its output lines."""
    env.out = []
    words = shlex.split(line)
    command, args = words[0], words[1:]
    positional, kwargs = _split_args(args)
    handler: Callable[[Env, list[str], dict[str, str]], None] | None = COMMANDS.get(command)
    if handler is None:
        raise ValueError(f"unknown command {command!r}")
    try:
        handler(env, positional, kwargs)
    except RaftError as error:
        env.indent = ""
        env.emit(f"error: {type(error).__name__}: {error}")
    env.check_invariants()
    return env.out or ["ok"]


def _cmd_add_nodes(env: Env, pos: list[str], kw: dict[str, str]) -> None:
    env.add_nodes(int(pos[0]), kw)


def _cmd_campaign(env: Env, pos: list[str], kw: dict[str, str]) -> None:
    env.replica(int(pos[0])).node.campaign()


def _cmd_tick(env: Env, pos: list[str], kw: dict[str, str]) -> None:
    node = env.replica(int(pos[0])).node
    for _ in range(int(pos[1])):
        node.tick()


def _cmd_tick_election(env: Env, pos: list[str], kw: dict[str, str]) -> None:
    for node_id in _ids(env, pos):
        node = env.replica(node_id).node
        # Enough ticks to fire the (randomized) election timeout exactly once.
        ticks = node.raft.randomized_election_timeout - node.raft.election_elapsed
        if node.role is Role.LEADER:
            ticks = node.raft.election_timeout - node.raft.election_elapsed
        for _ in range(max(ticks, 1)):
            node.tick()


def _cmd_tick_heartbeat(env: Env, pos: list[str], kw: dict[str, str]) -> None:
    for node_id in _ids(env, pos):
        node = env.replica(node_id).node
        for _ in range(node.raft.heartbeat_timeout):
            node.tick()


def _cmd_propose(env: Env, pos: list[str], kw: dict[str, str]) -> None:
    proposed = env.replica(int(pos[0])).node.propose(pos[1].encode())
    env.emit(f"proposed term={proposed.term} index={proposed.first_index}")


def _cmd_propose_batch(env: Env, pos: list[str], kw: dict[str, str]) -> None:
    proposed = env.replica(int(pos[0])).node.propose_many([p.encode() for p in pos[1:]])
    env.emit(f"proposed term={proposed.term} index={proposed.first_index}..{proposed.last_index}")


def _cmd_propose_conf_change(env: Env, pos: list[str], kw: dict[str, str]) -> None:
    kinds = {
        "add": ConfChangeType.ADD_NODE,
        "add-learner": ConfChangeType.ADD_LEARNER_NODE,
        "remove": ConfChangeType.REMOVE_NODE,
    }
    ((key, value),) = kw.items()
    change = ConfChange(kinds[key], int(value))
    proposed = env.replica(int(pos[0])).node.propose_conf_change(change)
    env.emit(f"proposed term={proposed.term} index={proposed.first_index}")


def _cmd_read_index(env: Env, pos: list[str], kw: dict[str, str]) -> None:
    env.replica(int(pos[0])).node.read_index(pos[1].encode())


def _cmd_transfer_leader(env: Env, pos: list[str], kw: dict[str, str]) -> None:
    env.replica(int(pos[0])).node.transfer_leader(int(pos[1]))


def _cmd_process_ready(env: Env, pos: list[str], kw: dict[str, str]) -> None:
    for node_id in _ids(env, pos):
        if not env.process_ready(node_id):
            env.trace(f"> {node_id} has no Ready")


def _cmd_deliver_msgs(env: Env, pos: list[str], kw: dict[str, str]) -> None:
    drop = set(parse_ids(kw["drop"])) if "drop" in kw else None
    env.deliver(_ids(env, pos), drop)


def _cmd_drop_msgs(env: Env, pos: list[str], kw: dict[str, str]) -> None:
    src = int(kw["from"]) if "from" in kw else None
    dst = int(kw["to"]) if "to" in kw else None
    kept: list[Message] = []
    for m in env.queue:
        if (src is None or m.from_ == src) and (dst is None or m.to == dst):
            env.trace(f"dropped: {format_message(m)}")
        else:
            kept.append(m)
    env.queue = kept


def _cmd_partition(env: Env, pos: list[str], kw: dict[str, str]) -> None:
    sides: list[set[int]] = [set()]
    for word in pos:
        if word == "/":
            sides.append(set())
        else:
            sides[-1].add(int(word))
    env.partition = sides


def _cmd_heal(env: Env, pos: list[str], kw: dict[str, str]) -> None:
    env.partition = None


def _cmd_stabilize(env: Env, pos: list[str], kw: dict[str, str]) -> None:
    env.stabilize(_ids(env, pos))


def _cmd_status(env: Env, pos: list[str], kw: dict[str, str]) -> None:
    env.status(int(pos[0]))


def _cmd_raft_state(env: Env, pos: list[str], kw: dict[str, str]) -> None:
    env.raft_state()


def _cmd_raft_log(env: Env, pos: list[str], kw: dict[str, str]) -> None:
    env.raft_log(int(pos[0]))


def _cmd_applied(env: Env, pos: list[str], kw: dict[str, str]) -> None:
    replica = env.replica(int(pos[0]))
    values = [v.decode() for v in replica.applied if v]
    env.emit(f"applied index={replica.applied_index} data={values}")


def _cmd_compact(env: Env, pos: list[str], kw: dict[str, str]) -> None:
    env.compact(int(pos[0]), int(pos[1]))


def _cmd_crash(env: Env, pos: list[str], kw: dict[str, str]) -> None:
    env.crash(int(pos[0]))


def _cmd_crash_before_persist(env: Env, pos: list[str], kw: dict[str, str]) -> None:
    env.crash_before_persist(int(pos[0]))


def _cmd_restart(env: Env, pos: list[str], kw: dict[str, str]) -> None:
    env.restart(int(pos[0]))


def _cmd_log_level(env: Env, pos: list[str], kw: dict[str, str]) -> None:
    if pos[0] not in ("all", "messages", "none"):
        raise ValueError(f"unknown log level {pos[0]!r}")
    env.log_level = pos[0]


COMMANDS: dict[str, Callable[[Env, list[str], dict[str, str]], None]] = {
    "add-nodes": _cmd_add_nodes,
    "campaign": _cmd_campaign,
    "tick": _cmd_tick,
    "tick-election": _cmd_tick_election,
    "tick-heartbeat": _cmd_tick_heartbeat,
    "propose": _cmd_propose,
    "propose-batch": _cmd_propose_batch,
    "propose-conf-change": _cmd_propose_conf_change,
    "read-index": _cmd_read_index,
    "transfer-leader": _cmd_transfer_leader,
    "process-ready": _cmd_process_ready,
    "deliver-msgs": _cmd_deliver_msgs,
    "drop-msgs": _cmd_drop_msgs,
    "partition": _cmd_partition,
    "heal": _cmd_heal,
    "stabilize": _cmd_stabilize,
    "status": _cmd_status,
    "raft-state": _cmd_raft_state,
    "raft-log": _cmd_raft_log,
    "applied": _cmd_applied,
    "compact": _cmd_compact,
    "crash": _cmd_crash,
    "crash-before-persist": _cmd_crash_before_persist,
    "restart": _cmd_restart,
    "log-level": _cmd_log_level,
}

# -- files ------------------------------------------------------------------------------


@dataclass
class Block:
    """A command with its expected output, or a run of verbatim lines (comments)."""

    command: str | None
    expected: list[str] = field(default_factory=list)
    verbatim: list[str] = field(default_factory=list)
    line_number: int = 0


def parse_file(text: str) -> list[Block]:
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.lstrip().startswith("#"):
            blocks.append(Block(None, verbatim=[line]))
            i += 1
            continue
        command = line
        start = i + 1
        i += 1
        if i >= len(lines) or lines[i] != SEPARATOR:
            raise ValueError(f"line {start}: expected {SEPARATOR!r} after command {command!r}")
        i += 1
        expected: list[str] = []
        while i < len(lines) and lines[i].strip():
            expected.append(lines[i])
            i += 1
        blocks.append(Block(command, expected=expected, line_number=start))
    return blocks


def run_file(path: Path) -> tuple[str, str]:
    """Run a scenario; returns (file text, text with actual outputs)."""
    text = path.read_text()
    env = Env()
    rendered: list[str] = []
    for block in parse_file(text):
        if block.command is None:
            rendered.extend(block.verbatim)
            continue
        actual = run_command(env, block.command)
        rendered.append(block.command)
        rendered.append(SEPARATOR)
        rendered.extend(actual)
        rendered.append("")
    # Collapse the blank line we add after each block with a following verbatim blank.
    out: list[str] = []
    for line in rendered:
        if line == "" and out and out[-1] == "":
            continue
        out.append(line)
    while out and out[-1] == "":
        out.pop()
    return text, "\n".join(out) + "\n"


def rewrite_file(path: Path) -> None:
    _, actual = run_file(path)
    path.write_text(actual)
