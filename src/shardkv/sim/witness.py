"""Checking one proposed linearization (a witness) of a client history.

The exhaustive checker (`linearizability.check_operations`) searches for *some* order and
may give up on hard histories (many concurrent appends to one key). The simulator, being
omniscient, knows the order the system actually chose: writes in log order, each read right
after the last entry its node had applied when it answered. If that order respects real
time and the sequential model reproduces every observed output, the history is
linearizable: a valid witness is a proof. An invalid witness proves nothing (another order
might work), so it only turns "inconclusive" into "ok", never into "illegal".

Pure; no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shardkv.sim.linearizability import Model, Operation

Position = tuple[int, int, int]
"""Where an operation sits in the proposed order; compared as a tuple (e.g. log index,
0 for a write or 1 for a read, then a tie-breaker)."""


def witness_problem(
    model: Model[Any], history: Sequence[Operation], positions: Sequence[Position]
) -> str:
    """Why ordering ``history`` by ``positions`` is not a linearization ("" if it is).

    Checked per partition of ``model`` (per key): real-time order (no operation is placed
    after one that returned before it was called) and the model's verdict on every
    operation in that order."""
    if len(history) != len(positions):
        raise ValueError("one position per operation is needed")
    index_of = {id(op): i for i, op in enumerate(history)}
    for sub in model.partition(history):
        ordered = sorted(sub.operations, key=lambda op: positions[index_of[id(op)]])
        latest: Operation | None = None  # the operation placed so far that was called last
        state = model.init()
        for op in ordered:
            if latest is not None and op.ret < latest.call:
                return (
                    f"key {sub.key!r}: {model.describe_operation(op.input, op.output)} "
                    f"returned before {model.describe_operation(latest.input, latest.output)} "
                    "was called, yet comes after it"
                )
            if latest is None or op.call > latest.call:
                latest = op
            legal, state = model.step(state, op.input, op.output)
            if not legal:
                return (
                    f"key {sub.key!r}: {model.describe_operation(op.input, op.output)} is "
                    f"impossible in state {model.describe_state(state)}"
                )
    return ""
