"""Helpers for the Jepsen-style fault test (test_nemesis.py): a 3-process cluster the test
can hurt, a seeded fault schedule, a workload of concurrent clients, and the history they
record.

What this module owns: starting, SIGKILLing, restarting, SIGSTOPping/SIGCONTing and
partitioning real ``shardkv server`` processes (through ``harness.ServerProcess`` and the
test-only ``POST /v1/test/partition`` admin call); recording every client operation with
call/return times from ONE counter shared by all clients; turning the record into the
linearizability checker's `Operation`s; counting acknowledged writes that the final state
lost. It never decides a verdict: the test does.

Everything runs on the test's one event loop: client tasks and the nemesis task interleave
there, so `History.tick()` is a total order consistent with real time (a call is stamped
just before its bytes go out, a return just after its reply came in).

Keys and what each one checks (a SET would erase appended tokens, so the write-loss checks
need keys whose writes never overwrite each other). Five keys are in use at any time; every
KEY_GENERATION_S seconds the clients move on to five fresh ones (``reg-0/g3`` is register
``reg-0`` of generation 3), as Jepsen's independent keys do, so that each key's history
stays short enough for the checker (its cost grows faster than linearly with the length of
one key's history and with the unknown outcomes in it).

- ``reg-*``: SET (unique values) / GET. Checked by linearizability, final read included.
- ``log-*``: APPEND (unique tokens ending in ``,``) / GET. Every acknowledged token must be in
  the final value, exactly once; a token of an operation that definitely failed must not.
- ``ctr-*``: INCR / GET. The final value must be at least the acknowledged INCRs and at most
  those plus the ones with unknown outcome.
- ``mix-*``: all four (SET of unique integers or of unique non-integers, APPEND of one
  digit, INCR), so INCR meets integers, non-integers and out-of-range values: checked by
  linearizability only.
- ``set-*`` (SADD / SMEMBERS), ``lst-*`` (RPUSH / LRANGE), ``hsh-*`` (HSET / HGETALL) and
  ``zst-*`` (ZADD at score 0 / ZRANGE): unique members, elements or fields. Checked by
  linearizability, and every acknowledged one must be in the final read (a list's elements
  exactly once), a definitely failed one must not.
- ``txn-*``: MULTI/EXEC blocks on one connection that increment two fields of a hash
  together, or read both: every block must see them equal (atomicity), the history must
  be linearizable, and the final count must lie between the acknowledged blocks and those
  plus the unknown ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp

from shardkv.client import (
    Client,
    CommandError,
    DefiniteFailure,
    UnexpectedReply,
    UnknownOutcome,
)
from shardkv.core.cluster.scheduler import split_point
from shardkv.core.cluster.shardmap import ShardMap
from shardkv.core.raft import Message
from shardkv.core.resp import Reply
from shardkv.node.runtime import ClusterSettings, NodeRuntime
from shardkv.sim.linearizability import (
    INFINITY,
    READ_OPS,
    UNKNOWN,
    ErrorReply,
    Operation,
    RedisInput,
)
from shardkv.storage import MemoryEngine
from tests.integration.harness import ServerProcess, free_port

# --- bounds and timings -----------------------------------------------------------------

#: One attempt of one command, from taking a connection to its reply. Shorter than the
#: server's 5 s proposal timeout, so a paused leader shows up as a client timeout.
CLIENT_REQUEST_TIMEOUT_S: Final = 3.0
CLIENT_CONNECT_TIMEOUT_S: Final = 1.0
#: Retries of definite failures (and of reads) inside the client before it gives up.
CLIENT_MAX_RETRIES: Final = 2
#: Bound on waiting for a (re)started process to answer PING.
NODE_READY_TIMEOUT_S: Final = 30.0
#: Bound on one admin HTTP call (status, partition).
ADMIN_TIMEOUT_S: Final = 2.0
#: Bound on the cluster electing a leader and serving once every fault is healed.
SETTLE_TIMEOUT_S: Final = 30.0
#: How often the supervisor looks for members that died on their own.
SUPERVISE_INTERVAL_S: Final = 0.2
#: How often pollers (readiness, leader, convergence) look again.
POLL_INTERVAL_S: Final = 0.05

FAULT_KINDS: Final = ("kill", "pause", "partition")
FAULT_MIN_S: Final = 1.0
FAULT_MAX_S: Final = 5.0
#: Quiet time between two faults, so the cluster serves (and commits) in between.
QUIET_MIN_S: Final = 0.5
QUIET_MAX_S: Final = 2.0
#: Chance that a fault hits the node that currently leads (the interesting one).
TARGET_LEADER_PROBABILITY: Final = 0.6

#: Base names of the keys in use at any one time, by kind (see the module docstring).
KEY_BASES: Final = (
    "reg-0",
    "reg-1",
    "log-0",
    "ctr-0",
    "mix-0",
    "set-0",
    "lst-0",
    "hsh-0",
    "zst-0",
    "txn-0",
)
#: The read and the write of each collection kind (see the module docstring).
COLLECTION_OPS: Final = {
    "set": ("smembers", "sadd"),
    "lst": ("lrange", "rpush"),
    "hsh": ("hgetall", "hset"),
    "zst": ("zrange", "zadd"),
    "txn": ("txn-read", "txn-incr"),
}
#: Clients move on to fresh keys this often.
KEY_GENERATION_S: Final = 10.0

#: Client id used for the final reads, done after every workload client stopped.
FINAL_READER_ID: Final = 0

#: The error text of INCR on a value that is not an int64 (Redis's exact words).
NOT_AN_INTEGER: Final = "ERR value is not an integer or out of range"
#: What a member whose node runtime stopped (fail-stop) answers to every command.
STORAGE_FAILURE_PREFIX: Final = "ERR storage failure"


# --- the history ------------------------------------------------------------------------


@dataclass(slots=True)
class OpRecord:
    """One operation as a client saw it.

    ``status``: ``pending`` until it completes, then ``ok`` (a reply; ``output`` holds it in
    the checker's conventions), ``fail`` (definitely not executed), ``unknown`` (sent, no
    reply, may take effect any time later or never) or ``error`` (a reply the workload did
    not expect, e.g. an error for GET; recorded to be reported, left out of the checker).
    ``call``/``ret`` are `History.tick()` stamps; ``call_s``/``ret_s`` seconds since the
    history began, for humans.
    """

    client_id: int
    op: str
    key: str
    value: str | None
    call: int
    call_s: float
    ret: int | None = None
    ret_s: float | None = None
    status: str = "pending"
    output: Any = None
    error: str = ""

    def describe(self) -> str:
        args = f"{self.key} {self.value}" if self.value is not None else self.key
        when = f"t={self.call_s:.3f}s..{self.ret_s:.3f}s" if self.ret_s is not None else ""
        result = repr(self.output) if self.status == "ok" else f"{self.error[:120]}"
        return (
            f"[{self.call}, {self.ret}] {when} client {self.client_id} "
            f"{self.op.upper()} {args} -> {self.status} {result}"
        )


@dataclass(slots=True)
class NemesisEvent:
    stamp: int
    at_s: float
    text: str


class History:
    """Operations and nemesis events, stamped from one counter (see the module docstring).

    Use on one event loop thread only: the counter is not locked.
    """

    def __init__(self) -> None:
        self._counter = itertools.count(1)
        self._started_s = time.monotonic()
        self.ops: list[OpRecord] = []
        self.events: list[NemesisEvent] = []

    def tick(self) -> int:
        return next(self._counter)

    def elapsed_s(self) -> float:
        return time.monotonic() - self._started_s

    def invoke(self, client_id: int, op: str, key: str, value: str | None) -> OpRecord:
        record = OpRecord(client_id, op, key, value, self.tick(), self.elapsed_s())
        self.ops.append(record)
        return record

    def complete(self, record: OpRecord, status: str, output: Any = None, error: str = "") -> None:
        record.ret = self.tick()
        record.ret_s = self.elapsed_s()
        record.status = status
        record.output = output
        record.error = error

    def note(self, text: str) -> NemesisEvent:
        event = NemesisEvent(self.tick(), self.elapsed_s(), text)
        self.events.append(event)
        return event

    def operations(self) -> list[Operation]:
        """The checker's view: ``ok`` with its return stamp; ``unknown`` writes with
        ``ret=INFINITY`` and ``output=UNKNOWN``; definite failures, unexpected errors and
        reads of unknown outcome (they constrain nothing) are left out."""
        operations: list[Operation] = []
        for r in self.ops:
            inp = RedisInput(r.op, r.key, r.value)
            if r.status == "ok":
                assert r.ret is not None
                operations.append(Operation(r.client_id, inp, r.output, r.call, r.ret))
            elif r.status in ("unknown", "pending") and r.op not in READ_OPS:
                operations.append(Operation(r.client_id, inp, UNKNOWN, r.call, INFINITY))
        return operations

    def dump(self, path: Path) -> None:
        """Write every operation as one JSON object per line (`load_operations` reads the
        checker's view back, to replay a check without the cluster)."""
        with path.open("w") as out:
            for r in self.ops:
                row = {
                    "client": r.client_id,
                    "op": r.op,
                    "key": r.key,
                    "value": r.value,
                    "call": r.call,
                    "ret": r.ret,
                    "status": r.status,
                    "output": _encode_output(r.output),
                    "error": r.error,
                }
                out.write(json.dumps(row) + "\n")

    def counts(self) -> dict[tuple[str, str], int]:
        """(op, status) -> how many."""
        return dict(Counter((r.op, r.status) for r in self.ops))

    def excerpt(self, key: str, around_stamp: float | None = None, limit: int = 40) -> str:
        """The operations on ``key`` (and the nemesis events) nearest ``around_stamp``, in
        stamp order: what a failure report shows."""
        lines: list[tuple[int, str]] = [
            (r.call, "  " + r.describe()) for r in self.ops if r.key == key
        ]
        lines += [(e.stamp, f"  [{e.stamp}] t={e.at_s:.3f}s NEMESIS {e.text}") for e in self.events]
        lines.sort()
        if around_stamp is not None and around_stamp != INFINITY:
            nearest = min(range(len(lines)), key=lambda i: abs(lines[i][0] - around_stamp))
            lines = lines[max(0, nearest - limit // 2) : nearest + limit // 2]
        else:
            lines = lines[-limit:]
        return "\n".join(text for _, text in lines)


def _encode_output(output: Any) -> Any:
    if isinstance(output, bytes):
        return {"bytes": output.decode("latin-1")}
    if isinstance(output, ErrorReply):
        return {"error": output.message}
    return output


def _decode_output(output: Any) -> Any:
    if isinstance(output, dict):
        return (
            output["bytes"].encode("latin-1") if "bytes" in output else ErrorReply(output["error"])
        )
    return output


def load_operations(path: Path) -> list[Operation]:
    """The checker's view of a history written by `History.dump` (same rules as
    `History.operations`). For replays: ``check_operations(redis_string_model,
    load_operations(path))``."""
    history = History()
    for line in path.read_text().splitlines():
        row = json.loads(line)
        record = OpRecord(row["client"], row["op"], row["key"], row["value"], row["call"], 0.0)
        record.ret, record.status = row["ret"], row["status"]
        record.output = _decode_output(row["output"])
        history.ops.append(record)
    return history.operations()


# --- the workload -----------------------------------------------------------------------


def key_kind(key: str) -> str:
    """``reg``, ``log``, ``ctr`` or ``mix``."""
    return key[:3]


def choose_operation(
    rng: random.Random, client_id: int, n: int, generation: int
) -> tuple[str, str, str | None]:
    """The ``n``-th operation of client ``client_id``: (op, key, value). Values of SET and
    the tokens of APPEND on ``log-*`` keys are unique across the run."""
    key = f"{rng.choice(KEY_BASES)}/g{generation}"
    kind = key_kind(key)
    roll = rng.random()
    if kind in COLLECTION_OPS:
        read, write = COLLECTION_OPS[kind]
        return (read, key, None) if roll < 0.3 else (write, key, f"{client_id}.{n}")
    if kind == "reg":
        return ("get", key, None) if roll < 0.5 else ("set", key, f"c{client_id}-{n}")
    if kind == "log":
        return ("get", key, None) if roll < 0.3 else ("append", key, f"{client_id}.{n},")
    if kind == "ctr":
        return ("get", key, None) if roll < 0.4 else ("incr", key, None)
    if roll < 0.4:
        return "get", key, None
    if roll < 0.5:
        return "set", key, str(client_id * 10_000_000 + n)
    if roll < 0.6:
        return "set", key, f"x{client_id}-{n}"
    if roll < 0.8:
        return "append", key, str(rng.randint(1, 9))
    return "incr", key, None


def make_client(port: int, rng: random.Random) -> Client:
    # retry_idempotent_writes=False: a SET repeated after an unknown outcome can land twice,
    # around another client's write, which no single execution explains.
    return Client(
        "127.0.0.1",
        port,
        pool_size=1,
        connect_timeout_s=CLIENT_CONNECT_TIMEOUT_S,
        request_timeout_s=CLIENT_REQUEST_TIMEOUT_S,
        max_retries=CLIENT_MAX_RETRIES,
        retry_idempotent_writes=False,
        rng=rng,
    )


async def execute(client: Client, op: str, key: str, value: str | None) -> Any:
    """Run one operation; the reply in the checker's conventions (see redis_string_model)."""
    if op == "get":
        return await client.get(key)
    if op == "set":
        assert value is not None
        return await client.set(key, value)
    if op == "incr":
        return await client.incr(key)
    if op == "append":
        assert value is not None
        return await client.append(key, value)
    if op in _COLLECTION_COMMANDS:
        reply = await client.execute(*_COLLECTION_COMMANDS[op](key, value))
        return _as_text(op, reply)
    if op in ("txn-incr", "txn-read"):
        return await run_transaction(client, op, key)
    raise ValueError(f"unknown operation {op!r}")


_COLLECTION_COMMANDS: Final[dict[str, Callable[[str, str | None], list[str]]]] = {
    "sadd": lambda key, value: ["SADD", key, str(value)],
    "smembers": lambda key, _: ["SMEMBERS", key],
    "rpush": lambda key, value: ["RPUSH", key, str(value)],
    "lrange": lambda key, _: ["LRANGE", key, "0", "-1"],
    "hset": lambda key, value: ["HSET", key, str(value), str(value)],
    "hgetall": lambda key, _: ["HGETALL", key],
    "zadd": lambda key, value: ["ZADD", key, "0", str(value)],
    "zrange": lambda key, _: ["ZRANGE", key, "0", "-1"],
}


def _as_text(op: str, reply: Any) -> Any:
    """A collection reply in the checker's (and the JSON dump's) terms: members as str,
    SMEMBERS sorted (its order is unspecified), HGETALL as sorted [field, value] pairs."""
    if not isinstance(reply, list | tuple):
        return reply
    items = [x.decode() if isinstance(x, bytes) else x for x in reply]
    if op == "smembers":
        return sorted(items)
    if op == "hgetall":
        return sorted([list(pair) for pair in zip(items[::2], items[1::2], strict=True)])
    return items


async def run_transaction(client: Client, op: str, key: str) -> list[int]:
    """A MULTI/EXEC block on one connection to the node that leads ``key``'s shard:
    ``txn-incr`` increments fields ``a`` and ``b`` of ``key`` together, ``txn-read`` reads
    both. Returns the two values EXEC answered. Raises `DefiniteFailure` if EXEC was not
    sent or was refused before it ran (MOVED, TRYAGAIN, ...), `UnknownOutcome` if EXEC was
    sent and no answer came."""
    if op == "txn-incr":
        block = [["HINCRBY", key, "a", "1"], ["HINCRBY", key, "b", "1"]]
    else:
        block = [["HGET", key, "a"], ["HGET", key, "b"]]
    reply = await client.transaction([[x.encode() for x in command] for command in block])
    assert isinstance(reply, list), reply
    return [int(x) if x is not None else 0 for x in reply]


async def record_operation(
    history: History, client: Client, client_id: int, op: str, key: str, value: str | None
) -> OpRecord:
    """Run one operation and record it with its classification (see `OpRecord.status`)."""
    record = history.invoke(client_id, op, key, value)
    try:
        output = await execute(client, op, key, value)
    except CommandError as exc:
        if op == "incr" and exc.message == NOT_AN_INTEGER:
            history.complete(record, "ok", ErrorReply(exc.message))
        elif exc.message.startswith(STORAGE_FAILURE_PREFIX):
            # A member whose runtime failed refuses everything before proposing it: not
            # executed. (The member's exit is reported by the supervisor.)
            history.complete(record, "fail", error=f"{type(exc).__name__}: {exc.message}")
        else:
            history.complete(record, "error", error=f"{type(exc).__name__}: {exc.message}")
    except DefiniteFailure as exc:
        history.complete(record, "fail", error=f"{type(exc).__name__}: {exc}")
    except UnknownOutcome as exc:
        history.complete(record, "unknown", error=f"{type(exc).__name__}: {exc}")
    except UnexpectedReply as exc:
        history.complete(record, "error", error=f"{type(exc).__name__}: {exc}")
    else:
        history.complete(record, "ok", output)
    return record


async def run_client(
    history: History,
    client_id: int,
    ports: list[int],
    rng: random.Random,
    deadline_s: float,
) -> None:
    """One sequential client until ``deadline_s`` (loop time). It starts at one node and,
    after any failure, starts again from the next one, so a dead seed node does not
    silence it."""
    loop = asyncio.get_running_loop()
    seed_index = client_id % len(ports)
    client = make_client(ports[seed_index], random.Random(rng.getrandbits(64)))
    started_s = loop.time()
    n = 0
    try:
        while loop.time() < deadline_s:
            n += 1
            generation = int((loop.time() - started_s) // KEY_GENERATION_S)
            op, key, value = choose_operation(rng, client_id, n, generation)
            record = await record_operation(history, client, client_id, op, key, value)
            if record.status in ("fail", "unknown"):
                await client.close()
                seed_index = (seed_index + 1) % len(ports)
                client = make_client(ports[seed_index], random.Random(rng.getrandbits(64)))
    finally:
        await client.close()


async def final_reads(history: History, ports: list[int], timeout_s: float) -> dict[str, Any]:
    """Read every key the workload touched once the cluster is whole again, recorded into
    the history (so the checker must explain them too). Retries definite failures and
    unknown outcomes until each key has a value or ``timeout_s`` passes (AssertionError)."""
    deadline = time.monotonic() + timeout_s
    values: dict[str, Any] = {}
    rng = random.Random(0)
    keys = sorted({r.key for r in history.ops})
    attempt = 0
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(make_client(port, rng)) for port in ports]
        for key in keys:
            while True:
                attempt += 1
                client = clients[attempt % len(clients)]
                read_op = COLLECTION_OPS.get(key_kind(key), ("get", ""))[0]
                record = await record_operation(
                    history, client, FINAL_READER_ID, read_op, key, None
                )
                if record.status == "ok":
                    values[key] = record.output
                    break
                assert time.monotonic() < deadline, f"final read of {key} failed: {record.error}"
    return values


async def write_log_entries(port: int, count: int, writers: int = 1) -> None:
    """``count`` SETs by ``writers`` sequential clients on their own connections. With one
    writer each SET becomes its own log entry (the leader puts every write of a loop
    iteration, from all connections, into one entry)."""

    async def writer(index: int) -> None:
        async with make_client(port, random.Random(index)) as client:
            for n in range(index, count, writers):
                await client.set(f"filler-{n}", "x")

    await asyncio.gather(*(writer(i) for i in range(writers)))


# --- write-loss accounting --------------------------------------------------------------


@dataclass(slots=True)
class LossReport:
    """What the final state says about acknowledged writes.

    ``lost``: acknowledged writes missing from the final state (must be 0).
    ``duplicated``: appended tokens present more than once (applied twice).
    ``phantom``: effects no acknowledged or unknown operation explains (a definite failure
    that happened anyway, or an INCR too many).
    """

    lost: int = 0
    duplicated: int = 0
    phantom: int = 0
    acknowledged_appends: int = 0
    acknowledged_incrs: int = 0
    acknowledged_members: int = 0
    acknowledged_transactions: int = 0
    details: list[str] = field(default_factory=list)


def count_lost_writes(history: History, final: dict[str, Any]) -> LossReport:
    """Compare the workload's ``log-*`` and ``ctr-*`` writes with ``final`` (each key's value
    read after the run, see `final_reads`); see the module docstring for the rules."""
    report = LossReport()
    workload = [r for r in history.ops if r.client_id != FINAL_READER_ID]
    keys = sorted({r.key for r in workload})
    for key in (k for k in keys if key_kind(k) == "log"):
        value = final.get(key) or b""
        present = Counter(t for t in value.decode().split(",") if t)
        by_status: dict[str, set[str]] = {}
        for r in workload:
            if r.key == key and r.op == "append":
                assert r.value is not None
                by_status.setdefault(r.status, set()).add(r.value.rstrip(","))
        acked = by_status.get("ok", set())
        maybe = by_status.get("unknown", set()) | by_status.get("pending", set())
        report.acknowledged_appends += len(acked)
        for token in sorted(acked - present.keys()):
            report.lost += 1
            report.details.append(f"{key}: acknowledged APPEND {token!r} is missing")
        for token, times in sorted(present.items()):
            if times > 1:
                report.duplicated += 1
                report.details.append(f"{key}: token {token!r} appears {times} times")
            if token not in acked and token not in maybe:
                report.phantom += 1
                status = next((s for s, ts in by_status.items() if token in ts), "never sent")
                report.details.append(
                    f"{key}: token {token!r} is present but its APPEND was {status}"
                )
    for key in (k for k in keys if key_kind(k) == "ctr"):
        acked_incrs = sum(
            1 for r in workload if r.key == key and r.op == "incr" and r.status == "ok"
        )
        maybe_incrs = sum(
            1
            for r in workload
            if r.key == key and r.op == "incr" and r.status in ("unknown", "pending")
        )
        report.acknowledged_incrs += acked_incrs
        value = int(final.get(key) or b"0")
        if value < acked_incrs:
            report.lost += acked_incrs - value
            report.details.append(f"{key}: final {value} < {acked_incrs} acknowledged INCRs")
        if value > acked_incrs + maybe_incrs:
            report.phantom += value - acked_incrs - maybe_incrs
            report.details.append(
                f"{key}: final {value} > {acked_incrs} acknowledged + {maybe_incrs} unknown INCRs"
            )
    for key in (k for k in keys if key_kind(k) in ("set", "lst", "hsh", "zst")):
        _check_members(report, key, workload, final.get(key) or [])
    for key in (k for k in keys if key_kind(k) == "txn"):
        _check_transactions(report, key, workload, final.get(key) or [0, 0])
    return report


def _check_members(report: LossReport, key: str, workload: list[OpRecord], final: Any) -> None:
    """Every acknowledged SADD/RPUSH/HSET/ZADD member is in the final read (a list's
    elements exactly once); none that definitely failed is."""
    write = COLLECTION_OPS[key_kind(key)][1]
    fields = [field for field, _ in final] if key_kind(key) == "hsh" else final
    present = Counter(fields)
    by_status: dict[str, set[str]] = {}
    for r in workload:
        if r.key == key and r.op == write:
            assert r.value is not None
            by_status.setdefault(r.status, set()).add(r.value)
    acked = by_status.get("ok", set())
    maybe = by_status.get("unknown", set()) | by_status.get("pending", set())
    report.acknowledged_members += len(acked)
    for member in sorted(acked - present.keys()):
        report.lost += 1
        report.details.append(f"{key}: acknowledged {write.upper()} {member!r} is missing")
    for member, times in sorted(present.items()):
        if times > 1:
            report.duplicated += 1
            report.details.append(f"{key}: {member!r} appears {times} times")
        if member not in acked and member not in maybe:
            report.phantom += 1
            report.details.append(f"{key}: {member!r} is present but its {write.upper()} failed")


def _check_transactions(
    report: LossReport, key: str, workload: list[OpRecord], final: list[int]
) -> None:
    """The two counters moved together, by every acknowledged block and by no failed one."""
    acked = sum(1 for r in workload if r.key == key and r.op == "txn-incr" and r.status == "ok")
    maybe = sum(
        1
        for r in workload
        if r.key == key and r.op == "txn-incr" and r.status in ("unknown", "pending")
    )
    report.acknowledged_transactions += acked
    a, b = final
    if a != b:
        report.lost += abs(a - b)
        report.details.append(f"{key}: the block's two counters differ: {a} != {b}")
    if a < acked:
        report.lost += acked - a
        report.details.append(f"{key}: final {a} < {acked} acknowledged MULTI/EXEC blocks")
    if a > acked + maybe:
        report.phantom += a - acked - maybe
        report.details.append(f"{key}: final {a} > {acked} acknowledged + {maybe} unknown blocks")


# --- the cluster and the nemesis --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault: wait ``quiet_s``, then hurt a node for ``duration_s``. ``target`` is
    ``leader`` (whichever node leads when the fault starts) or ``random``."""

    kind: str
    target: str
    duration_s: float
    quiet_s: float


def fault_schedule(rng: random.Random, total_s: float) -> list[Fault]:
    """Faults filling ``total_s`` seconds, one at a time. Kinds come in shuffled rounds of
    all three, so every kind occurs once the run is a few faults long."""
    faults: list[Fault] = []
    elapsed_s = 0.0
    while True:
        kinds = list(FAULT_KINDS)
        rng.shuffle(kinds)
        for kind in kinds:
            quiet_s = rng.uniform(QUIET_MIN_S, QUIET_MAX_S)
            duration_s = rng.uniform(FAULT_MIN_S, FAULT_MAX_S)
            if elapsed_s + quiet_s + duration_s > total_s:
                return faults
            target = "leader" if rng.random() < TARGET_LEADER_PROBABILITY else "random"
            faults.append(Fault(kind, target, round(duration_s, 3), round(quiet_s, 3)))
            elapsed_s += quiet_s + duration_s


class FaultCluster:
    """Three ``shardkv server`` members the nemesis can kill, restart, pause and partition,
    and members that join later (`join_node`: in ``joined``, never faulted, in every check).

    Every process ever started is kept in ``all_processes`` so ``stop_all()`` (call it in a
    ``finally``) stops each one by pid. Methods run on the event loop; none blocks it for
    longer than a fork/exec or a SIGKILLed child's reaping.
    """

    def __init__(
        self, root: Path, history: History, size: int = 3, extra_args: Iterable[str] = ()
    ) -> None:
        self.history = history
        self.root = root
        self.extra_args = list(extra_args)
        self.ids = list(range(1, size + 1))
        #: Members started later with ``--join`` (the nemesis leaves them alone).
        self.joined: list[int] = []
        self.peer_ports = {i: free_port() for i in self.ids}
        members = ",".join(f"{i}=127.0.0.1:{p}" for i, p in self.peer_ports.items())
        self.nodes: dict[int, ServerProcess] = {}
        for i in self.ids:
            self.nodes[i] = ServerProcess(
                root / f"node-{i}",
                "--node-id",
                str(i),
                "--peer-port",
                str(self.peer_ports[i]),
                "--initial-cluster",
                members,
                "--enable-fault-injection",
                "--shards",
                "1",  # the main nemesis test passes its own --shards after this
                *extra_args,
            )
        self.all_processes: list[ServerProcess] = list(self.nodes.values())
        self.paused: set[int] = set()
        self.killed: set[int] = set()
        #: Members that exited without the nemesis killing them: (node, exit code, log tail).
        self.unexpected_exits: list[tuple[int, int | None, str]] = []
        #: Held while a fault is injected or undone, and while the supervisor restarts a
        #: member: the nemesis never hurts a member that is half restarted.
        self.lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None

    @property
    def ports(self) -> list[int]:
        return [self.nodes[i].port for i in self.ids]

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=ADMIN_TIMEOUT_S)
            )
        return self._session

    async def start(self) -> None:
        for node in self.nodes.values():
            node.start(wait=False)
        await asyncio.gather(*(self.wait_ready(i) for i in self.ids))

    async def wait_ready(self, i: int, timeout_s: float = NODE_READY_TIMEOUT_S) -> None:
        """Until node ``i`` answers PING (RuntimeError with its log if it exits or times out)."""
        node = self.nodes[i]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert node.proc is not None
            if node.proc.poll() is not None:
                raise RuntimeError(f"node {i} exited with {node.proc.returncode}:\n{node.log()}")
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(0.5):
                    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
                    try:
                        writer.write(b"PING\r\n")
                        if (await reader.readline()).startswith(b"+PONG"):
                            return
                    finally:
                        writer.close()
            await asyncio.sleep(POLL_INTERVAL_S)
        raise RuntimeError(f"node {i} did not answer PING within {timeout_s}s:\n{node.log()}")

    async def status(self, i: int) -> dict[str, Any] | None:
        """Node ``i``'s ``/v1/status``, or None if it does not answer."""
        if i in self.killed or i in self.paused:
            return None
        try:
            url = f"http://127.0.0.1:{self.nodes[i].admin_port}/v1/status"
            async with self._http().get(url) as response:
                body: dict[str, Any] = await response.json()
                return body
        except (TimeoutError, aiohttp.ClientError, json.JSONDecodeError):
            return None

    async def order_split(self, rng: random.Random) -> str:
        """Ask the reachable nodes, in turn, to split a shard picked from their map (the
        placement group's leader accepts, the others answer 409). Says what happened."""
        for i in self.ids:
            st = await self.status(i)
            raw_map = st.get("shard_map") if st is not None else None
            if not raw_map:
                continue
            shard_map = ShardMap.decode(str(raw_map).encode())
            candidates = sorted(
                s.shard_id
                for s in shard_map.shards.values()
                if not s.target and not s.split and split_point(s) is not None
            )
            if not candidates:
                return "no shard can split now"
            shard_id = rng.choice(candidates)
            url = f"http://127.0.0.1:{self.nodes[i].admin_port}/v1/shards/{shard_id}/split"
            try:
                async with self._http().post(url) as response:
                    body = await response.json()
            except (TimeoutError, aiohttp.ClientError, json.JSONDecodeError):
                continue
            if response.status == 200:
                return (
                    f"split of shard {shard_id} ordered through node {i}: new shard {body['child']}"
                )
        return "no node took a split order"

    async def shard_count(self) -> int:
        """Shards in the map of the first node that answers (0 if none does)."""
        for st in (await self.statuses()).values():
            if st.get("shard_map"):
                return len(ShardMap.decode(str(st["shard_map"]).encode()).shards)
        return 0

    @property
    def members(self) -> list[int]:
        """Every member started: the initial ones, then those that joined."""
        return [*self.ids, *self.joined]

    async def statuses(self) -> dict[int, dict[str, Any]]:
        members = self.members
        found = await asyncio.gather(*(self.status(i) for i in members))
        return {i: s for i, s in zip(members, found, strict=True) if s is not None}

    async def join_node(self) -> str:
        """Start a new member with ``--join`` listing every initial member's peer port (a
        dead or cut-off seed is skipped) and wait until it answers. Says what happened."""
        node_id = max(self.nodes) + 1  # the placement group gives the next id
        seeds = ",".join(f"127.0.0.1:{p}" for p in self.peer_ports.values())
        node = ServerProcess(
            self.root / f"node-{node_id}",
            "--peer-port",
            str(free_port()),
            "--join",
            seeds,
            "--enable-fault-injection",
            *self.extra_args,
        )
        self.nodes[node_id] = node
        self.all_processes.append(node)
        node.start(wait=False)
        await self.wait_ready(node_id, timeout_s=2 * NODE_READY_TIMEOUT_S)
        st = await self.status(node_id)
        got = st.get("node_id") if st is not None else None
        assert got == node_id, f"the joined node got id {got}, expected {node_id}"
        self.joined.append(node_id)
        return f"node {node_id} joined"

    async def remove_node(self, node_id: int, timeout_s: float) -> str:
        """``shardkv node remove``: ask every reachable member until the placement group's
        leader takes it (a leader that is down or cut off is retried). Says what happened."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for i in self.members:
                if i in self.killed or i in self.paused:
                    continue
                url = f"http://127.0.0.1:{self.nodes[i].admin_port}/v1/nodes/{node_id}/remove"
                try:
                    async with self._http().post(url) as response:
                        body = await response.text()
                except (TimeoutError, aiohttp.ClientError):
                    continue
                if response.status == 200:
                    return f"node {node_id} draining (ordered through node {i})"
                if "leader" not in body:
                    return f"removal of node {node_id} refused: {body}"
            await asyncio.sleep(1.0)
        return f"removal of node {node_id} not taken within {timeout_s}s"

    async def wait_removed(self, node_id: int, timeout_s: float) -> ShardMap:
        """Until some member's map says ``node_id`` is removed and no shard is placed on it;
        returns that map."""
        deadline = time.monotonic() + timeout_s
        while True:
            for st in (await self.statuses()).values():
                if not st.get("shard_map"):
                    continue
                shard_map = ShardMap.decode(str(st["shard_map"]).encode())
                node = shard_map.nodes.get(node_id)
                if node is not None and node.state == "removed":
                    return shard_map
            if time.monotonic() >= deadline:
                raise AssertionError(f"node {node_id} was not removed within {timeout_s}s")
            await asyncio.sleep(POLL_INTERVAL_S * 10)

    async def leader(self) -> int | None:
        """The node that says it leads, in the highest term seen; None if none does."""
        leaders = [
            (s["term"], i) for i, s in (await self.statuses()).items() if s["role"] == "leader"
        ]
        return max(leaders)[1] if leaders else None

    async def wait_leader(self, timeout_s: float = SETTLE_TIMEOUT_S) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            leader = await self.leader()
            if leader is not None:
                return leader
            await asyncio.sleep(POLL_INTERVAL_S)
        raise AssertionError(f"no leader within {timeout_s}s: {await self.statuses()}")

    async def wait_converged(
        self, timeout_s: float = SETTLE_TIMEOUT_S
    ) -> dict[int, dict[str, Any]]:
        """Until every member answers and, for every shard, every member hosting it reports
        the same term, leader, commit and applied index (members host different shards
        once nodes joined or left)."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = await self.statuses()
            views: dict[int, set[tuple[int, int, int, int]]] = {}
            for s in found.values():
                for sh in s.get("shards") or []:
                    view = (sh["term"], sh["leader"], sh["commit"], sh["applied"])
                    views.setdefault(sh["shard"], set()).add(view)
            if (
                len(found) == len(self.members)
                and views
                and all(len(v) == 1 for v in views.values())
            ):
                return found
            if time.monotonic() >= deadline:
                raise AssertionError(f"members did not converge within {timeout_s}s: {found}")
            await asyncio.sleep(POLL_INTERVAL_S)

    async def wait_applied(self, i: int, index: int, timeout_s: float = SETTLE_TIMEOUT_S) -> None:
        """Until node ``i`` has applied ``index``; AssertionError (with its log) if its
        process exits first or the time runs out."""
        deadline = time.monotonic() + timeout_s
        while True:
            node = self.nodes[i]
            assert node.proc is not None
            if node.proc.poll() is not None:
                raise AssertionError(
                    f"node {i} exited with {node.proc.returncode} before applying {index}:\n"
                    f"{node.log()[-3000:]}"
                )
            found = await self.status(i)
            if found is not None and found["applied"] >= index:
                return
            if time.monotonic() >= deadline:
                raise AssertionError(f"node {i} did not apply {index} within {timeout_s}s: {found}")
            await asyncio.sleep(POLL_INTERVAL_S)

    # -- faults ----------------------------------------------------------------------------

    def kill(self, i: int) -> None:
        self.nodes[i].stop(signal.SIGKILL)
        self.killed.add(i)

    async def restart(self, i: int) -> None:
        """Start node ``i`` again with the same data directory and ports."""
        old = self.nodes[i]
        node = ServerProcess(old.data_dir, *old.extra, port=old.port)
        node.admin_port = old.admin_port
        self.nodes[i] = node
        self.all_processes.append(node)
        node.start(wait=False)
        self.killed.discard(i)
        await self.wait_ready(i)

    def pause(self, i: int) -> None:
        self.nodes[i].send_signal(signal.SIGSTOP)
        self.paused.add(i)

    def resume(self, i: int) -> None:
        self.nodes[i].send_signal(signal.SIGCONT)
        self.paused.discard(i)

    async def _set_blocked(self, i: int, blocked: Iterable[int]) -> None:
        """Tell node ``i`` to drop traffic to and from ``blocked``. A node that cannot be
        reached (it died on its own and the supervisor is restarting it, which clears its
        blocked set anyway) is noted in the history, not raised: the run goes on."""
        url = f"http://127.0.0.1:{self.nodes[i].admin_port}/v1/test/partition"
        try:
            async with self._http().post(url, json={"blocked": sorted(blocked)}) as response:
                body = await response.text()
        except (TimeoutError, aiohttp.ClientError) as exc:
            self.history.note(f"partition call {sorted(blocked)} on node {i} failed: {exc!r}")
            return
        assert response.status == 200, f"partition call on node {i}: {response.status} {body}"

    async def isolate(self, i: int) -> None:
        """Cut node ``i`` off from every other member, in both directions (each side drops
        the other's traffic)."""
        others = [j for j in self.members if j != i]
        await asyncio.gather(
            self._set_blocked(i, others), *(self._set_blocked(j, [i]) for j in others)
        )

    async def heal(self) -> None:
        live = [i for i in self.members if i not in self.killed and i not in self.paused]
        await asyncio.gather(*(self._set_blocked(i, []) for i in live))

    async def recover_all(self) -> None:
        """Undo every fault: continue paused members, heal partitions, restart the dead."""
        await self.restart_crashed()
        for i in sorted(self.paused):
            self.resume(i)
        for i in sorted(self.killed):
            await self.restart(i)
        await self.heal()

    async def crash_and_restart_all(self) -> None:
        """SIGKILL every member at once, then start them all again from their disks: what
        was acknowledged must have been durable on a quorum."""
        for i in self.members:
            self.kill(i)
        for i in self.members:
            old = self.nodes[i]
            node = ServerProcess(old.data_dir, *old.extra, port=old.port)
            node.admin_port = old.admin_port
            self.nodes[i] = node
            self.all_processes.append(node)
            node.start(wait=False)
            self.killed.discard(i)
        await asyncio.gather(*(self.wait_ready(i) for i in self.members))

    def log_event_counts(self, events: Iterable[str]) -> Counter[str]:
        """How often each of ``events`` appears in the members' JSON logs (every run of
        every process): tells whether the run exercised what it meant to (snapshots...)."""
        wanted = set(events)
        found: Counter[str] = Counter()
        for path in sorted({p.log_path for p in self.all_processes}):
            with contextlib.suppress(OSError), path.open(errors="replace") as lines:
                for line in lines:
                    with contextlib.suppress(ValueError):
                        event = json.loads(line).get("event")
                        if event in wanted:
                            found[event] += 1
        return found

    def exited_on_their_own(self) -> list[int]:
        """Members whose process ended although the nemesis did not kill them."""
        return [
            i
            for i in self.members
            if i not in self.killed
            and self.nodes[i].proc is not None
            and self.nodes[i].proc.poll() is not None  # type: ignore[union-attr]
        ]

    async def restart_crashed(self) -> None:
        """Record every member that exited on its own, then start it again (as a supervisor
        would), so the run goes on and its history still gets checked."""
        if not self.exited_on_their_own():
            return
        async with self.lock:
            await self._restart_crashed()

    async def _restart_crashed(self) -> None:
        for i in self.exited_on_their_own():
            node = self.nodes[i]
            code = node.proc.returncode if node.proc is not None else None
            self.unexpected_exits.append((i, code, node.log()[-3000:]))
            self.history.note(f"node {i} EXITED ON ITS OWN (code {code}); restarting it")
            node.stop(signal.SIGKILL)  # reaps it and closes its log
            self.paused.discard(i)
            await self.restart(i)

    async def supervise(self) -> None:
        """Until cancelled: restart members that exit on their own (see `restart_crashed`)."""
        while True:
            await self.restart_crashed()
            await asyncio.sleep(SUPERVISE_INTERVAL_S)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def stop_all(self) -> None:
        """SIGKILL every process this cluster ever started (by pid). Safe to call twice; a
        SIGSTOPped process dies of SIGKILL too."""
        for process in self.all_processes:
            process.stop(signal.SIGKILL)


async def run_nemesis(
    cluster: FaultCluster,
    history: History,
    schedule: list[Fault],
    rng: random.Random,
    deadline_s: float,
) -> Counter[str]:
    """Apply ``schedule`` one fault at a time until it ends or ``deadline_s`` (loop time)
    passes; every fault is undone before the next starts. Returns faults injected per kind."""
    loop = asyncio.get_running_loop()
    injected: Counter[str] = Counter()
    for fault in schedule:
        await asyncio.sleep(fault.quiet_s)
        if loop.time() >= deadline_s:
            break
        async with cluster.lock:
            target = await cluster.leader() if fault.target == "leader" else None
            if target is None:
                target = rng.choice(cluster.ids)
            history.note(
                f"{fault.kind} node {target} for {fault.duration_s}s (target {fault.target})"
            )
            if fault.kind == "kill":
                cluster.kill(target)
            elif fault.kind == "pause":
                cluster.pause(target)
            elif fault.kind == "partition":
                await cluster.isolate(target)
            else:
                raise ValueError(f"unknown fault {fault.kind!r}")
        await asyncio.sleep(fault.duration_s)
        async with cluster.lock:
            if fault.kind == "kill":
                history.note(f"restart node {target}")
                await cluster.restart(target)
            elif fault.kind == "pause":
                cluster.resume(target)
            else:
                await cluster.heal()
        history.note(f"healed node {target}")
        injected[fault.kind] += 1
    return injected


async def run_splits(
    cluster: FaultCluster,
    history: History,
    rng: random.Random,
    deadline_s: float,
    interval_s: float,
) -> int:
    """Order a split every ``interval_s`` until ``deadline_s`` (loop time), whatever the
    nemesis is doing meanwhile; returns how many orders were taken."""
    loop = asyncio.get_running_loop()
    ordered = 0
    while True:
        await asyncio.sleep(interval_s)
        if loop.time() >= deadline_s:
            return ordered
        outcome = await cluster.order_split(rng)
        ordered += outcome.startswith("split of")
        history.note(outcome)


@dataclass(frozen=True, slots=True)
class MembershipPlan:
    """Membership changes during the load: a node joins ``join_at_s`` seconds in, and node
    ``remove_id`` is removed (drained) ``remove_at_s`` seconds in."""

    join_at_s: float
    remove_at_s: float
    remove_id: int


async def run_membership(
    cluster: FaultCluster, history: History, plan: MembershipPlan, deadline_s: float
) -> Counter[str]:
    """Carry out ``plan`` (whatever the nemesis is doing meanwhile); returns ``join`` and
    ``remove`` counts of the changes that were taken."""
    loop = asyncio.get_running_loop()
    start_s = loop.time()
    done: Counter[str] = Counter()
    await asyncio.sleep(plan.join_at_s)
    history.note("a new node joins through the seeds")
    outcome = await cluster.join_node()
    history.note(outcome)
    done["join"] += outcome.endswith("joined")
    await asyncio.sleep(max(0.0, start_s + plan.remove_at_s - loop.time()))
    if loop.time() >= deadline_s:
        return done
    outcome = await cluster.remove_node(plan.remove_id, max(1.0, deadline_s - loop.time()))
    history.note(outcome)
    done["remove"] += "draining" in outcome
    return done


async def run_load(
    cluster: FaultCluster,
    history: History,
    client_rngs: list[random.Random],
    schedule: list[Fault],
    nemesis_rng: random.Random,
    load_s: float,
    split_interval_s: float | None = None,
    membership: MembershipPlan | None = None,
) -> Counter[str]:
    """The load phase: one client task per rng (ids from 1) for ``load_s`` seconds, the
    nemesis over the same span, shard splits ordered every ``split_interval_s`` (None:
    none), the ``membership`` changes (None: none), and the supervisor restarting members
    that die on their own. Returns faults injected per kind (splits ordered as ``split``,
    membership changes as ``join`` and ``remove``). A failure of any task (a harness bug,
    a member that cannot be restarted) is raised."""
    deadline_s = asyncio.get_running_loop().time() + load_s
    supervisor = asyncio.create_task(cluster.supervise())
    try:
        async with asyncio.TaskGroup() as group:
            for client_id, rng in enumerate(client_rngs, start=1):
                group.create_task(run_client(history, client_id, cluster.ports, rng, deadline_s))
            nemesis = group.create_task(
                run_nemesis(cluster, history, schedule, nemesis_rng, deadline_s)
            )
            changes = None
            if membership is not None:
                changes = group.create_task(
                    run_membership(cluster, history, membership, deadline_s)
                )
            splits = None
            if split_interval_s is not None:
                split_rng = random.Random(nemesis_rng.getrandbits(64))
                splits = group.create_task(
                    run_splits(cluster, history, split_rng, deadline_s, split_interval_s)
                )
    finally:
        supervisor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await supervisor
    injected = nemesis.result()
    if splits is not None:
        injected["split"] = splits.result()
    if changes is not None:
        injected.update(changes.result())
    return injected


# --- three node runtimes in one process (minimal reproductions) ------------------------


class MemoryNet:
    """Three `NodeRuntime`s on `MemoryEngine`s in this process, wired by an in-memory network
    that delivers each message on a later loop turn (the pattern of test_node_runtime.py).
    Deterministic enough to replay an interleaving the real cluster hit by chance: the test
    calls `NodeRuntime.submit` and `NodeRuntime.step` itself, between loop iterations."""

    MEMBERS: Final = {1: "127.0.0.1:1", 2: "127.0.0.1:2", 3: "127.0.0.1:3"}

    def __init__(self, **settings_overrides: Any) -> None:
        """``settings_overrides``: `ClusterSettings` fields for every member."""
        self.nodes: dict[int, NodeRuntime] = {}
        #: Directed (from, to) pairs whose messages are dropped.
        self.blocked: set[tuple[int, int]] = set()
        self._executor = ThreadPoolExecutor(4)
        for i in self.MEMBERS:
            settings = ClusterSettings(
                node_id=i,
                initial_members=self.MEMBERS,
                client_address=f"127.0.0.1:{7000 + i}",
                tick_interval_ms=10,
                **settings_overrides,
            )
            runtime = NodeRuntime(
                settings, MemoryEngine(), self._executor, self._sender(i), rng=random.Random(i)
            )
            runtime.open()
            self.nodes[i] = runtime

    def _sender(self, src: int) -> Callable[[list[Message]], None]:
        def send(messages: list[Message]) -> None:
            loop = asyncio.get_running_loop()
            for m in messages:
                if m.to in self.nodes and (src, m.to) not in self.blocked:
                    loop.call_soon(self._deliver, src, m)

        return send

    def _deliver(self, src: int, m: Message) -> None:
        # Checked again on arrival: a partition also cuts what was in flight.
        if (src, m.to) not in self.blocked:
            self.nodes[m.to].step([m])

    def isolate(self, i: int) -> None:
        """Cut member ``i`` off in both directions."""
        for j in self.nodes:
            if j != i:
                self.blocked |= {(i, j), (j, i)}

    async def __aenter__(self) -> MemoryNet:
        for runtime in self.nodes.values():
            await runtime.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for runtime in self.nodes.values():
            await runtime.stop(transfer_timeout_s=0)
        self._executor.shutdown()

    async def wait_leader(
        self, among: Iterable[int] | None = None, timeout_s: float = 5.0
    ) -> NodeRuntime:
        """The one runtime (of ``among``, default all) that leads and knows its client
        address."""
        ids = set(self.nodes if among is None else among)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            leaders = [rt for i, rt in self.nodes.items() if i in ids and rt.replica().is_leader]
            if len(leaders) == 1 and leaders[0].leader_client_address() is not None:
                return leaders[0]
            await asyncio.sleep(POLL_INTERVAL_S)
        raise AssertionError("no leader elected")

    @staticmethod
    async def call(runtime: NodeRuntime, *args: bytes, timeout_s: float = 5.0) -> Reply:
        """One command through ``runtime.submit``; its reply."""
        done: asyncio.Future[list[Reply]] = asyncio.get_running_loop().create_future()
        runtime.submit([list(args)], lambda replies: done.done() or done.set_result(replies))
        return (await asyncio.wait_for(done, timeout_s))[0]

    @staticmethod
    async def wait_until(predicate: Callable[[], bool], what: str, timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting until {what}"
            await asyncio.sleep(POLL_INTERVAL_S)
