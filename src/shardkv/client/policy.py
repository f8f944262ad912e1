"""Which commands the client may repeat after an unknown outcome, and the backoff schedule.

A definite failure (the command was not executed) is always safe to repeat. After an unknown
outcome (sent, no reply) the command may already have been applied once, so repeating it is
safe only if a second execution changes neither the stored state nor the reply the caller
sees. Decisions, command by command:

- Reads (GET, MGET, EXISTS, TTL, PTTL, STRLEN, GETRANGE, TYPE, DBSIZE, SCAN, KEYS, PING,
  ECHO, ...): repeated. The reply describes the state at the repeat, which lies inside the
  call, so the read stays linearizable.
- Plain SET (options EX, PX, EXAT, PXAT, KEEPTTL only) and MSET: repeated when the client's
  `retry_idempotent_writes` is on (the default). The final value is the same after one or two
  executions, and a relative TTL restarts from the second one, which is also inside the call.
  Caveat: if another client writes the same key between the two executions, a reader can see
  ours, then theirs, then ours again, which no single execution explains. Clients recording
  histories for a linearizability checker must turn the option off.
- SET with NX, XX or GET: not repeated. The repeat's reply would describe the first
  execution's effect (NX fails because we set the key), so the caller would be told a lie.
- DEL/UNLINK: not repeated. The effect is idempotent but the reply (number of keys removed)
  is not: a repeat answers 0 for keys the first execution removed. A caller that only needs
  the keys gone can catch `UnknownOutcome` and call `delete` again.
- INCR, INCRBY, DECR, APPEND, EXPIRE, SETNX, GETSET, GETDEL, everything else: not repeated.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

_READ_COMMANDS = frozenset(
    {
        b"GET",
        b"MGET",
        b"EXISTS",
        b"TTL",
        b"PTTL",
        b"EXPIRETIME",
        b"PEXPIRETIME",
        b"STRLEN",
        b"GETRANGE",
        b"SUBSTR",
        b"TYPE",
        b"DBSIZE",
        b"SCAN",
        b"KEYS",
        b"PING",
        b"ECHO",
        b"TIME",
        b"INFO",
    }
)
"""Commands that never change state: repeating them is always safe."""

_READ_CLUSTER_SUBCOMMANDS = frozenset(
    {b"SLOTS", b"SHARDS", b"NODES", b"INFO", b"KEYSLOT", b"MYID", b"COUNTKEYSINSLOT"}
)

_SET_REPEATABLE_FLAGS = frozenset({b"KEEPTTL"})
_SET_REPEATABLE_OPTIONS_WITH_VALUE = frozenset({b"EX", b"PX", b"EXAT", b"PXAT"})

_MAX_BACKOFF_EXPONENT = 62
"""Caps 2**attempt so huge retry counts cannot overflow a float."""


def is_read_only(args: Sequence[bytes]) -> bool:
    """True when the command (`args[0]`, any case) never changes state."""
    if not args:
        return False
    name = args[0].upper()
    if name in _READ_COMMANDS:
        return True
    return name == b"CLUSTER" and len(args) >= 2 and args[1].upper() in _READ_CLUSTER_SUBCOMMANDS


def is_idempotent_write(args: Sequence[bytes]) -> bool:
    """True for writes whose repeat leaves the same value and the same reply: MSET, and SET
    with no option other than EX/PX/EXAT/PXAT/KEEPTTL. Unknown options count as unsafe.
    """
    if not args:
        return False
    name = args[0].upper()
    if name == b"MSET":
        return len(args) >= 3 and len(args) % 2 == 1
    if name != b"SET" or len(args) < 3:
        return False
    options = args[3:]
    index = 0
    while index < len(options):
        option = options[index].upper()
        if option in _SET_REPEATABLE_FLAGS:
            index += 1
        elif option in _SET_REPEATABLE_OPTIONS_WITH_VALUE and index + 1 < len(options):
            index += 2
        else:
            return False
    return True


def is_safe_to_repeat(args: Sequence[bytes], *, retry_idempotent_writes: bool) -> bool:
    """Whether the client may resend `args` after an unknown outcome (see the module doc)."""
    return is_read_only(args) or (retry_idempotent_writes and is_idempotent_write(args))


def backoff_delay_s(attempt: int, *, base_s: float, max_s: float, rng: random.Random) -> float:
    """Delay before retry number `attempt` (0 for the first retry): "full jitter", uniform in
    [0, min(max_s, base_s * 2**attempt)], so clients that failed together spread out.
    """
    cap_s = min(max_s, base_s * 2.0 ** min(attempt, _MAX_BACKOFF_EXPONENT))
    return rng.uniform(0.0, cap_s)
