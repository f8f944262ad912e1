"""Random command sequences against a plain Python model of strings with expiry.

Each seed drives the commands, their batching, the clock and the sweeps. After every
batch the harness checks that the META counts equal a brute-force recount and that the
expiry index matches the data; the model checks every reply and the visible keyspace.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest

from shardkv.core.resp.replies import OK, Reply, SimpleString
from tests.unit.test_kv_harness import START_MS, Harness

KEYS = [b"a", b"b", b"c", b"d", b"{t}1", b"{t}2", b"e"]
I64_MAX = 2**63 - 1


@dataclass
class Model:
    """Live string keys: key -> (value, expire-at ms or 0)."""

    entries: dict[bytes, tuple[bytes, int]] = field(default_factory=dict)

    def live(self, key: bytes, now_ms: int) -> tuple[bytes, int] | None:
        entry = self.entries.get(key)
        if entry is None:
            return None
        if entry[1] and entry[1] <= now_ms:
            del self.entries[key]
            return None
        return entry

    def put(self, key: bytes, value: bytes, expire_at: int, now_ms: int) -> None:
        if expire_at and expire_at <= now_ms:
            self.entries.pop(key, None)
        else:
            self.entries[key] = (value, expire_at)

    def visible_keys(self, now_ms: int) -> set[bytes]:
        return {key for key in list(self.entries) if self.live(key, now_ms) is not None}

    def apply(self, args: list[bytes], now: int) -> Reply:
        name = args[0].decode().upper()
        key = args[1] if len(args) > 1 else b""
        entry = self.live(key, now) if key else None
        if name == "GET":
            return entry[0] if entry else None
        if name in ("SET", "SETNX", "SETEX", "PSETEX"):
            if name == "SETNX":
                options, value = [b"NX"], args[2]
            elif name in ("SETEX", "PSETEX"):
                options, value = [b"EX" if name == "SETEX" else b"PX", args[2]], args[3]
            else:
                options, value = args[3:], args[2]
            flags = {option.upper() for option in options if not option.isdigit()}
            expire_at = 0
            for unit, scale, relative in ((b"EX", 1000, 1), (b"PX", 1, 1), (b"EXAT", 1000, 0)):
                if unit in flags:
                    expire_at = int(options[options.index(unit) + 1]) * scale + relative * now
            if b"PXAT" in flags:
                expire_at = int(options[options.index(b"PXAT") + 1])
            if b"KEEPTTL" in flags and entry:
                expire_at = entry[1]
            old = entry[0] if entry else None
            if (b"NX" in flags and entry) or (b"XX" in flags and not entry):
                if b"GET" in flags:
                    return old
                return 0 if name == "SETNX" else None
            self.put(key, value, expire_at, now)
            if b"GET" in flags:
                return old
            return 1 if name == "SETNX" else OK
        if name == "GETSET":
            self.put(key, args[2], 0, now)
            return entry[0] if entry else None
        if name == "GETDEL":
            self.entries.pop(key, None)
            return entry[0] if entry else None
        if name == "GETEX":
            if not entry:
                return None
            if len(args) > 2:
                option = args[2].upper()
                if option == b"PERSIST":
                    self.put(key, entry[0], 0, now)
                else:
                    amount = int(args[3])
                    scale = 1000 if option in (b"EX", b"EXAT") else 1
                    base = now if option in (b"EX", b"PX") else 0
                    self.put(key, entry[0], amount * scale + base, now)
            return entry[0]
        if name == "MGET":
            return [(e[0] if (e := self.live(k, now)) else None) for k in args[1:]]
        if name == "MSET":
            for i in range(1, len(args), 2):
                self.put(args[i], args[i + 1], 0, now)
            return OK
        if name == "MSETNX":
            if any(self.live(args[i], now) for i in range(1, len(args), 2)):
                return 0
            for i in range(1, len(args), 2):
                self.put(args[i], args[i + 1], 0, now)
            return 1
        if name in ("DEL", "UNLINK"):
            removed = 0
            for k in args[1:]:
                if self.live(k, now):
                    removed += 1
                    del self.entries[k]
            return removed
        if name == "EXISTS":
            return sum(1 for k in args[1:] if self.live(k, now))
        if name in ("INCR", "DECR", "INCRBY", "DECRBY"):
            step = {"INCR": 1, "DECR": -1}.get(name) or int(args[2])
            if name == "DECRBY":
                step = -step
            current = entry[0] if entry else b"0"
            if not (current == b"0" or current.lstrip(b"-")[:1] in b"123456789"):
                return None  # not an integer: the generator avoids this
            result = int(current) + step
            self.put(key, str(result).encode(), entry[1] if entry else 0, now)
            return result
        if name == "APPEND":
            value = (entry[0] if entry else b"") + args[2]
            self.put(key, value, entry[1] if entry else 0, now)
            return len(value)
        if name == "STRLEN":
            return len(entry[0]) if entry else 0
        if name == "SETRANGE":
            offset, patch = int(args[2]), args[3]
            if not patch:
                return len(entry[0]) if entry else 0
            value = (entry[0] if entry else b"").ljust(offset, b"\x00")
            value = value[:offset] + patch + value[offset + len(patch) :]
            self.put(key, value, entry[1] if entry else 0, now)
            return len(value)
        if name in ("EXPIRE", "PEXPIRE", "EXPIREAT", "PEXPIREAT"):
            amount = int(args[2])
            scale = 1000 if name in ("EXPIRE", "EXPIREAT") else 1
            when = amount * scale + (now if name in ("EXPIRE", "PEXPIRE") else 0)
            if not entry:
                return 0
            current = entry[1] or None
            option = args[3].upper() if len(args) > 3 else b""
            if (
                (option == b"NX" and current is not None)
                or (option == b"XX" and current is None)
                or (option == b"GT" and (current is None or when <= current))
                or (option == b"LT" and current is not None and when >= current)
            ):
                return 0
            if when <= now:
                del self.entries[key]
            else:
                self.put(key, entry[0], when, now)
            return 1
        if name in ("TTL", "PTTL"):
            if not entry:
                return -2
            if not entry[1]:
                return -1
            remaining = entry[1] - now
            return remaining if name == "PTTL" else (remaining + 500) // 1000
        if name == "PERSIST":
            if not entry or not entry[1]:
                return 0
            self.put(key, entry[0], 0, now)
            return 1
        if name == "TYPE":
            return SimpleString("string" if entry else "none")
        if name == "FLUSHALL":
            self.entries.clear()
            return OK
        raise AssertionError(f"model lacks {name}")


def random_command(rng: random.Random, now: int) -> list[bytes]:
    key = rng.choice(KEYS)
    value = rng.choice([b"", b"x", b"hello", str(rng.randint(-50, 50)).encode()])
    ms = rng.randint(1, 3000)
    expiry = rng.choice(
        [
            [],
            [b"EX", str(rng.randint(1, 3)).encode()],
            [b"PX", str(ms).encode()],
            [b"EXAT", str(now // 1000 + rng.randint(-2, 3)).encode()],
            [b"PXAT", str(now + rng.randint(-500, 3000)).encode()],
            [b"KEEPTTL"],
        ]
    )
    get_option = rng.choice([[], [b"GET"]])
    getex_option = rng.choice(
        [
            [],
            [b"PERSIST"],
            [b"PX", str(ms).encode()],
            [b"EX", b"2"],
            [b"PXAT", str(now + rng.randint(-500, 3000)).encode()],
            [b"EXAT", str(now // 1000 + rng.randint(-2, 3)).encode()],
        ]
    )
    choices = [
        lambda: [b"GET", key],
        lambda: [b"SET", key, value],
        lambda: [b"SET", key, value, *rng.choice([[], [b"NX"], [b"XX"]]), *expiry, *get_option],
        lambda: [b"SETNX", key, value],
        lambda: [b"SETEX", key, str(rng.randint(1, 3)).encode(), value],
        lambda: [b"PSETEX", key, str(ms).encode(), value],
        lambda: [b"GETSET", key, value],
        lambda: [b"GETDEL", key],
        lambda: [b"GETEX", key, *getex_option],
        lambda: [b"MGET", key, rng.choice(KEYS), rng.choice(KEYS)],
        lambda: [b"MSET", key, value, rng.choice(KEYS), value],
        lambda: [b"MSETNX", key, value, rng.choice(KEYS), value],
        lambda: [b"DEL", key, rng.choice(KEYS)],
        lambda: [b"UNLINK", key],
        lambda: [b"EXISTS", key, key, rng.choice(KEYS)],
        lambda: [b"INCRBY" if rng.random() < 0.5 else b"DECRBY", b"n", b"3"],
        lambda: [rng.choice([b"INCR", b"DECR"]), b"n"],
        lambda: [b"APPEND", key, value],
        lambda: [b"STRLEN", key],
        lambda: [b"SETRANGE", key, str(rng.randint(0, 6)).encode(), rng.choice([b"", b"zz"])],
        lambda: [
            rng.choice([b"EXPIRE", b"PEXPIRE", b"EXPIREAT", b"PEXPIREAT"]),
            key,
            rng.choice(
                [
                    str(rng.randint(-1, 3)).encode(),
                    str(ms).encode(),
                    str(now // 1000 + rng.randint(-1, 3)).encode(),
                    str(now + rng.randint(-500, 3000)).encode(),
                ]
            ),
            *rng.choice([[], [b"NX"], [b"XX"], [b"GT"], [b"LT"]]),
        ],
        lambda: [rng.choice([b"TTL", b"PTTL"]), key],
        lambda: [b"PERSIST", key],
        lambda: [b"TYPE", key],
        lambda: [b"FLUSHALL"] if rng.random() < 0.05 else [b"GET", key],
    ]
    return rng.choice(choices)()


def full_scan(h: Harness) -> set[bytes]:
    keys: set[bytes] = set()
    cursor: bytes = b"0"
    while True:
        reply = h.read("SCAN", cursor, "COUNT", 2)
        assert isinstance(reply, list)
        cursor = reply[0]  # type: ignore[assignment]
        keys.update(reply[1])  # type: ignore[arg-type]
        if cursor == b"0":
            return keys


@pytest.mark.parametrize("seed", range(20))
def test_random_commands_agree_with_the_model(seed: int) -> None:
    rng = random.Random(seed)
    h = Harness(now_ms=START_MS + rng.randint(0, 999))
    model = Model()
    for _ in range(250):
        h.advance(rng.choice([0, 0, 1, 10, 100, 700, 1500]))
        commands = [random_command(rng, h.now_ms) for _ in range(rng.randint(1, 4))]
        # Counter commands need an integer in "n": keep it one.
        commands = [
            c
            for c in commands
            if not (c[0] in (b"INCR", b"DECR", b"INCRBY", b"DECRBY") and not _numeric(model, h))
        ]
        if not commands:
            continue
        expected = [model.apply(command, h.now_ms) for command in commands]
        assert h.batch(commands) == expected, commands
        if rng.random() < 0.2:
            h.sweep(max_keys=rng.randint(1, 4))
        visible = model.visible_keys(h.now_ms)
        assert set(h.read("KEYS", "*")) == visible  # type: ignore[arg-type]
        assert full_scan(h) == visible
        assert h.machine.key_count() >= len(visible)
    h.sweep(max_keys=len(KEYS) + 1)
    assert h.machine.key_count() == len(model.visible_keys(h.now_ms))


def _numeric(model: Model, h: Harness) -> bool:
    entry = model.live(b"n", h.now_ms)
    if entry is None:
        return True
    text = entry[0]
    return text == b"0" or (
        text.lstrip(b"-")[:1] in (b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"8", b"9")
        and text.lstrip(b"-").isdigit()
        and text != b"-0"
    )
