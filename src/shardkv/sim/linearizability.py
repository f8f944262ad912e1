"""A linearizability checker for client histories, in the manner of Porcupine.

What this module owns: the `Operation` record clients' histories are made of, the `Model`
interface a sequential specification implements, the checker (`check_operations`) and three
models (`register_model`, `kv_model`, `redis_string_model`). It never performs I/O; the only
clock it reads is the callable passed in, and only to honour a timeout.

The algorithm is Wing & Gong's search with Lowe's memoization, as in Porcupine
(anishathalye/porcupine, checker.go): the history is split into independent partitions (one
per key), each partition's call and return events are sorted by time into a doubly linked
list, and a depth-first search linearizes one operation at a time, lifting its events out of
the list, backtracking when it meets the return event of an operation it has not placed, and
pruning configurations (set of linearized operations, model state) it has already seen.

Unknown outcomes. An operation whose client never learned the result (a timeout, a lost
connection, a process that died) is recorded with `ret=INFINITY` and, by convention,
`output=UNKNOWN`. Such an operation may take effect at any single point after its call, or
not at all. The checker implements "not at all" directly: unknown operations have no return
event, so they never force a backtrack, and a partition is linearizable as soon as every
operation with a finite return time has been placed; whatever unknown operations are left
over are the ones that never happened. Two consequences worth knowing:

- an unknown operation is only ever placed where it changes the model state; placing it
  where it changes nothing is equivalent to dropping it, so that branch is skipped;
- a definite failure (the server rejected the request, so it did not happen) is not an
  unknown outcome: leave such an operation out of the history altogether.

Real-time order: operation `a` precedes `b` iff `a.ret < b.call`. Equal times count as
concurrent (a call sorts before a return at the same instant), as in Porcupine; recorders
that use an event counter never produce ties.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable, Generator, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Generic, NamedTuple, TypeVar

__all__ = [
    "INFINITY",
    "UNKNOWN",
    "CheckReport",
    "CheckResult",
    "ErrorReply",
    "KvInput",
    "Model",
    "Operation",
    "RedisInput",
    "RegisterInput",
    "SubHistory",
    "check_operations",
    "kv_model",
    "no_partition",
    "partition_by_key",
    "redis_string_model",
    "register_model",
]

INFINITY: Final[float] = math.inf
"""Return time of an operation whose outcome is unknown (it may never have happened)."""

# Search steps a partition runs before the next partition gets its turn (and the clock is
# read): small enough that an easy illegal partition is not starved by a hard one, large
# enough that switching costs nothing measurable.
SEARCH_SLICE_STEPS: Final[int] = 2048

# How many operations of the longest linearizable prefix an explanation spells out.
EXPLANATION_MAX_PREFIX_OPS: Final[int] = 8


class _Unknown:
    """The type of `UNKNOWN`; a singleton that compares equal only to itself."""

    _instance: _Unknown | None = None

    def __new__(cls) -> _Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNKNOWN"

    def __reduce__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Final = _Unknown()
"""Output of an operation whose result the client never saw. Models accept any behaviour."""


@dataclass(frozen=True, slots=True)
class Operation:
    """One client operation as the client saw it.

    `call` and `ret` are times on one clock shared by every client of the history (an event
    counter is fine: only their order matters). `ret` is `INFINITY` when the outcome is
    unknown; then `output` should be `UNKNOWN`. `input` and `output` are whatever the model
    understands. `client_id` is informational (explanations); the checker does not assume a
    client runs one operation at a time.
    """

    client_id: int
    input: Any
    output: Any
    call: int
    ret: float

    def __post_init__(self) -> None:
        if not self.ret >= self.call:
            raise ValueError(f"operation returns before its call: call={self.call} ret={self.ret}")

    @property
    def outcome_unknown(self) -> bool:
        """True when the operation may have taken effect at any time after its call, or never."""
        return self.ret == INFINITY


@dataclass(frozen=True, slots=True)
class SubHistory:
    """The operations of one partition (usually one key), checked independently."""

    key: Hashable
    operations: tuple[Operation, ...]


S = TypeVar("S", bound=Hashable)


def no_partition(history: Sequence[Operation]) -> list[SubHistory]:
    """Check the history as a whole (a single object, such as one register)."""
    return [SubHistory(None, tuple(history))] if history else []


def partition_by_key(
    key_of_input: Callable[[Any], Hashable],
) -> Callable[[Sequence[Operation]], list[SubHistory]]:
    """A partition function grouping operations by `key_of_input(op.input)`.

    Sub-histories come out in the order their keys first appear, so checks are deterministic.
    Only valid when operations on different keys never constrain each other (P-compositional
    models: a key-value store whose operations each touch one key).
    """

    def partition(history: Sequence[Operation]) -> list[SubHistory]:
        groups: dict[Hashable, list[Operation]] = {}
        for op in history:
            groups.setdefault(key_of_input(op.input), []).append(op)
        return [SubHistory(key, tuple(ops)) for key, ops in groups.items()]

    return partition


def _describe_operation(input_: Any, output: Any) -> str:
    return f"{input_!r} -> {output!r}"


@dataclass(frozen=True)
class Model(Generic[S]):
    """A sequential specification.

    - `init()` returns the initial state.
    - `step(state, input, output)` returns `(legal, next_state)`: whether the operation with
      that input could have produced that output in `state`, and the state after it. It must
      be a pure function. An `output` of `UNKNOWN` means any output is acceptable; the
      operation still has its effect (which may depend on `state`, e.g. a compare-and-set).
    - `partition(history)` splits a history into sub-histories checked independently.
    - `describe_operation` and `describe_state` render explanations.

    States must be hashable and compare by value: they are memoized.
    """

    init: Callable[[], S]
    step: Callable[[S, Any, Any], tuple[bool, S]]
    partition: Callable[[Sequence[Operation]], list[SubHistory]] = no_partition
    describe_operation: Callable[[Any, Any], str] = _describe_operation
    describe_state: Callable[[S], str] = repr
    name: str = "model"


class CheckResult(enum.Enum):
    OK = "ok"
    """Every partition has a linearization."""
    ILLEGAL = "illegal"
    """Some partition has none: the history is not linearizable."""
    UNKNOWN = "unknown"
    """The timeout expired before a verdict (no partition was found illegal so far)."""


@dataclass(frozen=True)
class CheckReport:
    """The verdict, and for ILLEGAL, where and why.

    `failed_key` is the key of the first partition found illegal; `longest_prefix` is the
    longest sequence of its operations that the search managed to linearize, in
    linearization order; `explanation` says it in words, naming the operation that could not
    go next.
    """

    result: CheckResult
    partitions: int
    failed_key: Hashable = None
    longest_prefix: tuple[Operation, ...] = field(default=())
    explanation: str = ""

    @property
    def ok(self) -> bool:
        return self.result is CheckResult.OK


class _SingleResult(NamedTuple):
    linearizable: bool
    longest_prefix: list[int]


_Search = Generator[None, None, _SingleResult]


def _search(model: Model[Any], ops: Sequence[Operation]) -> _Search:
    """Search for a linearization of one partition.

    A generator: it yields every SEARCH_SLICE_STEPS steps so the caller can interleave
    partitions and watch the clock, and returns the result.
    """
    n_ops = len(ops)
    # Events: (time, kind, op index), kind 0 = call sorts before 1 = return at equal times.
    events: list[tuple[float, int, int]] = []
    for i, op in enumerate(ops):
        events.append((op.call, 0, i))
        if not op.outcome_unknown:
            events.append((op.ret, 1, i))
    events.sort()

    # Node 0 is the head sentinel, node len(events)+1 the tail sentinel; a search that
    # reaches the tail has lifted every return event, i.e. it has already succeeded.
    n_nodes = len(events) + 2
    tail = n_nodes - 1
    nxt = list(range(1, n_nodes + 1))
    prv = list(range(-1, n_nodes - 1))
    node_op = [-1] * n_nodes
    is_call = [False] * n_nodes
    match = [-1] * n_nodes  # call node -> its return node, or -1 when the outcome is unknown
    return_node = [-1] * n_ops
    for pos, (_, kind, i) in enumerate(events, start=1):
        node_op[pos] = i
        if kind == 0:
            is_call[pos] = True
        else:
            return_node[i] = pos
    for pos in range(1, tail):
        if is_call[pos]:
            match[pos] = return_node[node_op[pos]]

    inputs = [op.input for op in ops]
    outputs = [op.output for op in ops]
    optional = [op.outcome_unknown for op in ops]
    finite_left = n_ops - sum(optional)
    step = model.step
    state = model.init()
    if finite_left == 0:
        return _SingleResult(True, [])

    linearized = 0  # bitset over op indices
    seen: set[tuple[int, Any]] = set()
    stack: list[tuple[int, Any]] = []  # (call node lifted, state before it)
    longest: list[int] = []
    steps_left_in_slice = SEARCH_SLICE_STEPS
    node = nxt[0]
    while True:
        steps_left_in_slice -= 1
        if steps_left_in_slice == 0:
            steps_left_in_slice = SEARCH_SLICE_STEPS
            yield
        if is_call[node]:
            i = node_op[node]
            legal, new_state = step(state, inputs[i], outputs[i])
            if legal and not (optional[i] and new_state == state):
                new_linearized = linearized | (1 << i)
                key = (new_linearized, new_state)
                if key not in seen:
                    seen.add(key)
                    stack.append((node, state))
                    state = new_state
                    linearized = new_linearized
                    # Lift the call (and its return, if any) out of the list.
                    p, q = prv[node], nxt[node]
                    nxt[p] = q
                    prv[q] = p
                    r = match[node]
                    if r >= 0:
                        p, q = prv[r], nxt[r]
                        nxt[p] = q
                        prv[q] = p
                        finite_left -= 1
                        if finite_left == 0:
                            return _SingleResult(True, [node_op[c] for c, _ in stack])
                    if len(stack) > len(longest):
                        longest = [node_op[c] for c, _ in stack]
                    node = nxt[0]
                    continue
            node = nxt[node]
        else:
            # A return event (or the tail): its operation had to be linearized by now.
            if not stack:
                return _SingleResult(False, longest)
            node, state = stack.pop()
            i = node_op[node]
            linearized &= ~(1 << i)
            r = match[node]
            if r >= 0:
                nxt[prv[r]] = r
                prv[nxt[r]] = r
                finite_left += 1
            nxt[prv[node]] = node
            prv[nxt[node]] = node
            node = nxt[node]


def _describe_entry(model: Model[Any], op: Operation) -> str:
    return (
        f"client {op.client_id} [{op.call}, {op.ret}] "
        f"{model.describe_operation(op.input, op.output)}"
    )


def _explain(model: Model[Any], key: Hashable, ops: Sequence[Operation], prefix: list[int]) -> str:
    state = model.init()
    for i in prefix:
        _, state = model.step(state, ops[i].input, ops[i].output)
    placed = set(prefix)
    pending = [i for i in range(len(ops)) if i not in placed and not ops[i].outcome_unknown]
    shown = prefix[-EXPLANATION_MAX_PREFIX_OPS:]
    lines = [
        f"partition {key!r}: not linearizable ({model.name}); the longest linearizable prefix "
        f"has {len(prefix)} of {len(ops)} operations" + (", ending with:" if shown else "."),
    ]
    lines += [f"  {_describe_entry(model, ops[i])}" for i in shown]
    lines.append(f"  state then: {model.describe_state(state)}")
    if pending:
        # The search backtracks on the first return event it meets: that of the unplaced
        # operation that returned first. Every way to place it (or the operations
        # concurrent with it) next failed.
        blocker = min(pending, key=lambda i: (ops[i].ret, i))
        lines.append(f"  stuck before: {_describe_entry(model, ops[blocker])}")
    return "\n".join(lines)


def check_operations(
    model: Model[Any],
    history: Sequence[Operation],
    *,
    timeout_s: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> CheckReport:
    """Decide whether `history` is linearizable with respect to `model`.

    The partitions from `model.partition` are searched side by side, round-robin in slices
    of SEARCH_SLICE_STEPS steps (Porcupine runs them in parallel for the same reason: one
    illegal partition is often found quickly while another takes exponential time to
    exhaust); the first partition found illegal ends the check. The interleaving counts
    steps, not seconds, so the report is a function of the history alone.

    With `timeout_s` set, `clock` (seconds) is read between slices and the check gives up
    with `CheckResult.UNKNOWN` once `timeout_s` has passed; OK and ILLEGAL are always exact.
    Without a timeout the clock is never read.
    """
    partitions = model.partition(history)
    deadline = None if timeout_s is None else clock() + timeout_s
    searches = [(sub, _search(model, sub.operations)) for sub in partitions]
    while searches:
        still_running: list[tuple[SubHistory, _Search]] = []
        for sub, search in searches:
            try:
                next(search)
            except StopIteration as done:
                single: _SingleResult = done.value
                if not single.linearizable:
                    ops = sub.operations
                    return CheckReport(
                        CheckResult.ILLEGAL,
                        len(partitions),
                        failed_key=sub.key,
                        longest_prefix=tuple(ops[i] for i in single.longest_prefix),
                        explanation=_explain(model, sub.key, ops, single.longest_prefix),
                    )
            else:
                still_running.append((sub, search))
        searches = still_running
        if searches and deadline is not None and clock() >= deadline:
            return CheckReport(CheckResult.UNKNOWN, len(partitions))
    return CheckReport(CheckResult.OK, len(partitions))


# ---------------------------------------------------------------------------------------------
# Register: read / write / compare-and-set on one register (the Jepsen etcd histories).


class RegisterInput(NamedTuple):
    """`kind` is "read", "write" or "cas". `value`: the value written, or the value a cas
    expects; `new_value`: the value a cas writes."""

    kind: str
    value: Hashable = None
    new_value: Hashable = None


def _register_step(state: Hashable, inp: RegisterInput, out: Any) -> tuple[bool, Hashable]:
    kind = inp.kind
    if kind == "read":
        return (out is UNKNOWN or out == state), state
    if kind == "write":
        return True, inp.value
    if kind == "cas":
        matches = state == inp.value
        if out is UNKNOWN:
            return True, (inp.new_value if matches else state)
        if out:
            return matches, inp.new_value
        return not matches, state
    raise ValueError(f"unknown register operation {kind!r}")


def _describe_register_op(inp: RegisterInput, out: Any) -> str:
    if inp.kind == "read":
        return f"read() -> {out!r}"
    if inp.kind == "write":
        return f"write({inp.value!r})" + (" (unknown outcome)" if out is UNKNOWN else "")
    verdict = "unknown" if out is UNKNOWN else ("ok" if out else "compare failed")
    return f"cas({inp.value!r}, {inp.new_value!r}) -> {verdict}"


register_model: Final[Model[Hashable]] = Model(
    init=lambda: None,
    step=_register_step,
    describe_operation=_describe_register_op,
    name="register",
)
"""One register, initially None.

Outputs: a read returns the value (None for nil); a write's output is ignored; a cas returns
True (the swap happened) or False (the comparison failed, observed at its linearization
point); UNKNOWN for any of them means no constraint. An operation that definitely did not
happen (Jepsen's `:fail` of a cas that was rejected without effect) is left out of the history.
"""


# ---------------------------------------------------------------------------------------------
# Key-value: get / put / append (Porcupine's kv histories).


class KvInput(NamedTuple):
    """`op` is "get", "put" or "append"; `value` is None for get."""

    op: str
    key: str
    value: str | None = None


def _kv_step(state: str, inp: KvInput, out: Any) -> tuple[bool, str]:
    op = inp.op
    if op == "get":
        return (out is UNKNOWN or out == state), state
    if op == "put":
        return True, inp.value or ""
    if op == "append":
        return True, state + (inp.value or "")
    raise ValueError(f"unknown kv operation {op!r}")


def _describe_kv_op(inp: KvInput, out: Any) -> str:
    if inp.op == "get":
        return f"get({inp.key!r}) -> {out!r}"
    suffix = " (unknown outcome)" if out is UNKNOWN else ""
    return f"{inp.op}({inp.key!r}, {inp.value!r}){suffix}"


kv_model: Final[Model[str]] = Model(
    init=lambda: "",
    step=_kv_step,
    partition=partition_by_key(lambda inp: inp.key),
    describe_operation=_describe_kv_op,
    name="kv",
)
"""Keys start absent; a get of an absent key returns "". The state is the value of the
partition's one key, so this model is only meaningful with its own `partition`. Outputs: get
returns the value; put and append outputs are ignored."""


# ---------------------------------------------------------------------------------------------
# Redis strings: what ShardKV's own tests record.


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """A Redis error reply the client received (the command ran and failed, e.g. INCR on a
    non-integer). Errors meaning "not executed" (MOVED, CROSSSLOT, syntax) are definite
    failures: leave those operations out of the history instead."""

    message: str


class RedisInput(NamedTuple):
    """`op` is "get", "set", "incr", "append" or "del" (strings); "sadd"/"smembers",
    "rpush"/"lrange", "hset"/"hgetall", "zadd"/"zrange" (collections: `value` is the member,
    the element, the field (whose value is the field too) or the member at score 0); or
    "txn-incr"/"txn-read" (a MULTI/EXEC block that increments, or reads, the two fields
    of a hash together). `value` is the argument of set and append (str or bytes,
    compared as UTF-8 bytes)."""

    op: str
    key: str | bytes
    value: str | bytes | None = None


_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_REDIS_INT_MAX_DIGITS: Final = 20


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


def _parse_redis_int(value: bytes) -> int | None:
    """Redis's string2ll: optional '-', no '+', no spaces, no leading zeros, fits in int64."""
    if not value or len(value) > _REDIS_INT_MAX_DIGITS:
        return None
    if value == b"0":
        return 0
    digits = value[1:] if value[:1] == b"-" else value
    if not digits or not digits.isdigit() or digits[:1] == b"0":
        return None
    number = int(value)
    return number if _INT64_MIN <= number <= _INT64_MAX else None


def _redis_step(state: Any, inp: RedisInput, out: Any) -> tuple[bool, Any]:
    op = inp.op
    unknown = out is UNKNOWN
    if op == "get":
        if unknown:
            return True, state
        return (state is None if out is None else _as_bytes(out) == state), state
    if op == "set":
        assert inp.value is not None, "set needs a value"
        return (unknown or not isinstance(out, ErrorReply)), _as_bytes(inp.value)
    if op == "append":
        assert inp.value is not None, "append needs a value"
        new_state = (state or b"") + _as_bytes(inp.value)
        return (unknown or out == len(new_state)), new_state
    if op == "del":
        return (unknown or out == (0 if state is None else 1)), None
    if op in _COLLECTION_STEPS:
        return _COLLECTION_STEPS[op](state, inp.value, out, unknown)
    if op == "incr":
        current = 0 if state is None else _parse_redis_int(state)
        if current is None or current == _INT64_MAX:
            # Not an integer, or it would overflow: an error, and the value stays.
            return (unknown or isinstance(out, ErrorReply)), state
        new_value = current + 1
        return (unknown or out == new_value), str(new_value).encode()
    raise ValueError(f"unknown redis operation {op!r}")


def _added(state: Any, value: Any, out: Any, unknown: bool) -> tuple[bool, Any]:
    # SADD, HSET, ZADD of one member: 1 if it is new, 0 if it was there.
    members = state or frozenset()
    return (unknown or out == (0 if value in members else 1)), members | {value}


def _pushed(state: Any, value: Any, out: Any, unknown: bool) -> tuple[bool, Any]:
    elements = (*(state or ()), value)
    return (unknown or out == len(elements)), elements


def _members_read(state: Any, value: Any, out: Any, unknown: bool) -> tuple[bool, Any]:
    # SMEMBERS and ZRANGE (every score 0: byte order) as a sorted list of members.
    return (unknown or tuple(out) == tuple(sorted(state or ()))), state


def _list_read(state: Any, value: Any, out: Any, unknown: bool) -> tuple[bool, Any]:
    return (unknown or tuple(out) == (state or ())), state


def _hash_read(state: Any, value: Any, out: Any, unknown: bool) -> tuple[bool, Any]:
    expected = tuple((field, field) for field in sorted(state or ()))
    return (unknown or tuple(tuple(pair) for pair in out) == expected), state


def _txn_incr(state: Any, value: Any, out: Any, unknown: bool) -> tuple[bool, Any]:
    # Both fields move together: EXEC answers the two new values, always equal.
    new = (state or 0) + 1
    return (unknown or tuple(out) == (new, new)), new


def _txn_read(state: Any, value: Any, out: Any, unknown: bool) -> tuple[bool, Any]:
    current = state or 0
    return (unknown or tuple(out) == (current, current)), state


_COLLECTION_STEPS: Final[dict[str, Callable[[Any, Any, Any, bool], tuple[bool, Any]]]] = {
    "sadd": _added,
    "hset": _added,
    "zadd": _added,
    "rpush": _pushed,
    "smembers": _members_read,
    "zrange": _members_read,
    "lrange": _list_read,
    "hgetall": _hash_read,
    "txn-incr": _txn_incr,
    "txn-read": _txn_read,
}
#: Operations that only read (a read of unknown outcome constrains nothing).
READ_OPS: Final = frozenset({"get", "smembers", "zrange", "lrange", "hgetall", "txn-read"})


def _describe_redis_op(inp: RedisInput, out: Any) -> str:
    args = [repr(inp.key)] + ([repr(inp.value)] if inp.value is not None else [])
    return f"{inp.op.upper()} {' '.join(args)} -> {out!r}"


redis_string_model: Final[Model[Any]] = Model(
    init=lambda: None,
    step=_redis_step,
    partition=partition_by_key(lambda inp: _as_bytes(inp.key)),
    describe_operation=_describe_redis_op,
    name="redis-string",
)
"""Redis string semantics per key; the state is the key's value (bytes) or None when absent.

Collections and transactions: see `RedisInput`; their outputs are lists (of members, of
elements, of [field, value] pairs, or the two counters a MULTI/EXEC block returned).

Outputs as redis-py returns them: GET -> value (str or bytes) or None when absent; SET -> any
non-error reply; INCR -> the new integer (an absent key counts as 0, so its first INCR returns
1) or an `ErrorReply` when the value is not an integer or would overflow; APPEND -> the new
length in bytes; DEL -> the number of keys removed (0 or 1). `UNKNOWN` accepts anything.
"""
