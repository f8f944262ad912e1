"""Parsers for recorded client histories in the shared formats (../shared/data/histories).

Both formats list invocation and completion events in real-time order; the parsers number
events with a counter, so `call` and `ret` are event positions (only their order matters).
Outcome rules, common to both:

- `:ok` completes the operation with its result;
- `:fail` means the operation definitely did not happen: it is left out of the history,
  except `:fail ... :timed-out`, which means the client gave up, i.e. the outcome is unknown;
- `:info`, or no completion before the end of the log, means the outcome is unknown: the
  operation gets `ret=INFINITY` and `output=UNKNOWN` (it may have happened, or not).

Malformed events, and completions that match no pending invocation of the same function,
raise ValueError. In Jepsen logs, lines other than `jepsen.util` events are noise and skipped.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Final

from shardkv.sim.linearizability import (
    INFINITY,
    UNKNOWN,
    KvInput,
    Operation,
    RegisterInput,
)

__all__ = ["parse_jepsen_log", "parse_porcupine_kv"]

_JEPSEN_EVENT_PREFIX: Final = re.compile(r"^INFO\s+jepsen\.util\s+-\s+")
_JEPSEN_LINE: Final = re.compile(
    r"^INFO\s+jepsen\.util\s+-\s+(\d+)\s+:(invoke|ok|fail|info)\s+:(read|write|cas)\s+(.*?)\s*$"
)
_JEPSEN_CAS_ARGS: Final = re.compile(r"^\[(\S+)\s+(\S+)\]$")

_KV_LINE: Final = re.compile(
    r"^\{:process (\d+), :type :(invoke|ok|fail|info), :f :(get|put|append), "
    r':key "((?:[^"\\]|\\.)*)", :value (nil|"(?:[^"\\]|\\.)*")\}\s*$'
)
_ESCAPE: Final = re.compile(r"\\(.)")


class _Pending:
    __slots__ = ("call", "f", "input", "process")

    def __init__(self, process: int, f: str, input_: Any, call: int) -> None:
        self.process = process
        self.f = f
        self.input = input_
        self.call = call


class _Recorder:
    """Pairs invocations with completions, one outstanding operation per process."""

    def __init__(self, source: str) -> None:
        self._source = source
        self._pending: dict[int, _Pending] = {}
        self._done: list[tuple[int, Operation]] = []  # (invocation order, operation)
        self._time = 0

    def invoke(self, process: int, f: str, input_: Any, lineno: int) -> None:
        if process in self._pending:
            raise ValueError(f"{self._source}:{lineno}: process {process} invokes twice")
        self._pending[process] = _Pending(process, f, input_, self._tick())

    def complete(self, process: int, f: str, output: Any, lineno: int) -> None:
        pending = self._take(process, f, lineno)
        self._done.append(
            (pending.call, Operation(process, pending.input, output, pending.call, self._tick()))
        )

    def unknown(self, process: int, f: str, lineno: int) -> None:
        pending = self._take(process, f, lineno)
        self._tick()
        self._done.append(
            (pending.call, Operation(process, pending.input, UNKNOWN, pending.call, INFINITY))
        )

    def failed(self, process: int, f: str, lineno: int) -> None:
        self._take(process, f, lineno)
        self._tick()

    def finish(self) -> list[Operation]:
        for pending in self._pending.values():
            self._done.append(
                (
                    pending.call,
                    Operation(pending.process, pending.input, UNKNOWN, pending.call, INFINITY),
                )
            )
        self._pending.clear()
        self._done.sort(key=lambda item: item[0])
        return [op for _, op in self._done]

    def _take(self, process: int, f: str, lineno: int) -> _Pending:
        pending = self._pending.pop(process, None)
        if pending is None:
            raise ValueError(f"{self._source}:{lineno}: process {process} completes nothing")
        if pending.f != f:
            raise ValueError(
                f"{self._source}:{lineno}: process {process} completes {f}, invoked {pending.f}"
            )
        return pending

    def _tick(self) -> int:
        self._time += 1
        return self._time


def _jepsen_value(text: str, source: str, lineno: int) -> int | None:
    if text == "nil":
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{source}:{lineno}: not a register value: {text!r}") from None


def parse_jepsen_log(path: str | Path) -> list[Operation]:
    """Read a Jepsen etcd register log into operations on `register_model`, in call order.

    Inputs are `RegisterInput`s with integer values (nil is None). Outputs: a read's value, a
    write's None, a cas's True. A `:fail` cas (comparison failed, no effect) is left out.
    """
    source = str(path)
    recorder = _Recorder(source)
    with open(path, encoding="utf-8") as lines:
        for lineno, line in enumerate(lines, start=1):
            m = _JEPSEN_LINE.match(line)
            if m is None:
                if _JEPSEN_EVENT_PREFIX.match(line):
                    raise ValueError(f"{source}:{lineno}: not a register event: {line!r}")
                continue
            process, kind, f, arg = int(m[1]), m[2], m[3], m[4]
            if kind == "invoke":
                if f == "read":
                    input_ = RegisterInput("read")
                elif f == "write":
                    input_ = RegisterInput("write", _jepsen_value(arg, source, lineno))
                else:
                    cas = _JEPSEN_CAS_ARGS.match(arg)
                    if cas is None:
                        raise ValueError(f"{source}:{lineno}: bad cas arguments {arg!r}")
                    input_ = RegisterInput(
                        "cas",
                        _jepsen_value(cas[1], source, lineno),
                        _jepsen_value(cas[2], source, lineno),
                    )
                recorder.invoke(process, f, input_, lineno)
            elif kind == "ok":
                output: Any = None
                if f == "read":
                    output = _jepsen_value(arg, source, lineno)
                elif f == "cas":
                    output = True
                recorder.complete(process, f, output, lineno)
            elif kind == "info" or arg == ":timed-out":
                recorder.unknown(process, f, lineno)
            else:
                recorder.failed(process, f, lineno)
    return recorder.finish()


def _kv_string(literal: str) -> str | None:
    if literal == "nil":
        return None
    return _ESCAPE.sub(r"\1", literal[1:-1])


def parse_porcupine_kv(path: str | Path) -> list[Operation]:
    """Read a Porcupine key-value history into operations on `kv_model`, in call order.

    Inputs are `KvInput`s; a get's output is the value read, put and append outputs are None.
    """
    source = str(path)
    recorder = _Recorder(source)
    with open(path, encoding="utf-8") as lines:
        for lineno, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            m = _KV_LINE.match(line)
            if m is None:
                raise ValueError(f"{source}:{lineno}: not a kv history line: {line!r}")
            process, kind, f = int(m[1]), m[2], m[3]
            key = _ESCAPE.sub(r"\1", m[4])
            value = _kv_string(m[5])
            if kind == "invoke":
                recorder.invoke(process, f, KvInput(f, key, None if f == "get" else value), lineno)
            elif kind == "ok":
                recorder.complete(process, f, (value or "") if f == "get" else None, lineno)
            elif kind == "info":
                recorder.unknown(process, f, lineno)
            else:
                recorder.failed(process, f, lineno)
    return recorder.finish()
