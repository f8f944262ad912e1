"""The command table: lookup, Redis's error texts, key positions, COMMAND INFO/DOCS shapes."""

from __future__ import annotations

import pytest

from shardkv.core.commands import (
    COMMANDS,
    CommandKind,
    CommandSpec,
    check_arity,
    command_docs_reply,
    command_info_reply,
    command_keys,
    lookup,
    resolve,
    unknown_command_error,
)
from shardkv.core.kv import KVStateMachine
from shardkv.core.resp.replies import ErrorReply, SimpleString, encode_reply
from tests.unit.test_kv_harness import MemoryView


def spec_of(name: bytes) -> CommandSpec:
    spec = lookup(name)
    assert spec is not None
    return spec


def test_lookup_is_case_insensitive() -> None:
    assert spec_of(b"GET") is spec_of(b"get") is spec_of(b"gEt")
    assert lookup(b"nosuchcommand") is None


def test_names_are_unique_and_kinds_split_data_from_server_commands() -> None:
    names = [spec.name for spec in COMMANDS]
    assert len(names) == len(set(names))
    assert spec_of(b"set").kind is CommandKind.DATA
    assert spec_of(b"flushall").kind is CommandKind.DATA
    for server_command in (b"ping", b"echo", b"hello", b"select", b"quit", b"client"):
        assert spec_of(server_command).kind is CommandKind.SERVER
    for server_command in (b"command", b"config", b"info", b"cluster", b"readonly"):
        assert spec_of(server_command).kind is CommandKind.SERVER
    assert spec_of(b"readwrite").kind is CommandKind.SERVER


def test_every_data_command_is_executed_by_the_state_machine() -> None:
    machine = KVStateMachine(MemoryView())
    machine.begin_batch()
    for spec in COMMANDS:
        if spec.kind is CommandKind.DATA:
            reply = machine.execute([spec.name.encode()], 0)
            # Arity errors prove the command was found; zero-argument commands answer.
            assert not (
                isinstance(reply, ErrorReply) and reply.message.startswith("ERR unknown")
            ), spec.name


def test_write_flags() -> None:
    assert spec_of(b"set").is_write
    assert spec_of(b"del").is_write
    assert spec_of(b"expire").is_write
    assert not spec_of(b"get").is_write
    assert not spec_of(b"scan").is_write
    assert "readonly" in spec_of(b"get").flags


def test_arity_uses_redis_convention() -> None:
    get = spec_of(b"get")
    assert check_arity(get, [b"get", b"k"]) is None
    assert check_arity(get, [b"get"]) == ErrorReply(
        "ERR wrong number of arguments for 'get' command"
    )
    assert check_arity(get, [b"get", b"a", b"b"]) is not None
    set_ = spec_of(b"set")  # arity -3: at least three
    assert check_arity(set_, [b"set", b"k"]) is not None
    assert check_arity(set_, [b"set", b"k", b"v", b"EX", b"1"]) is None


def test_unknown_command_error_matches_redis_text() -> None:
    assert unknown_command_error([b"foo", b"a", b"b"]) == ErrorReply(
        "ERR unknown command 'foo', with args beginning with: 'a' 'b' "
    )
    assert unknown_command_error([b"foo"]) == ErrorReply(
        "ERR unknown command 'foo', with args beginning with: "
    )


def test_unknown_command_error_truncates_arguments_to_128_bytes() -> None:
    # Redis 7.0: "foo <200 x 'a'> b c" quotes the first argument cut to 128 bytes, then
    # stops because 128 bytes were written.
    error = unknown_command_error([b"foo", b"a" * 200, b"b", b"c"])
    assert error.message == (
        "ERR unknown command 'foo', with args beginning with: '" + "a" * 128 + "' "
    )
    # Arguments keep being added while fewer than 128 bytes were written.
    error = unknown_command_error([b"x", b"a" * 120, b"bbbbbbbbbbbb", b"c"])
    assert error.message.endswith("'" + "a" * 120 + "' 'bbbbb' ")


def test_unknown_command_error_cannot_break_the_protocol() -> None:
    error = unknown_command_error([b"f\r\noo", b"a\nb"])
    assert "\r" not in error.message
    assert "\n" not in error.message


def test_resolve_follows_redis_order() -> None:
    assert resolve([b"nope", b"x"]) == unknown_command_error([b"nope", b"x"])
    assert resolve([b"client", b"nope"]) == ErrorReply(
        "ERR unknown subcommand 'nope'. Try CLIENT HELP."
    )
    # A container without a subcommand fails its own arity.
    assert resolve([b"client"]) == ErrorReply("ERR wrong number of arguments for 'client' command")
    assert resolve([b"CONFIG", b"GET"]) == ErrorReply(
        "ERR wrong number of arguments for 'config|get' command"
    )
    setname = resolve([b"client", b"SETNAME", b"app"])
    assert not isinstance(setname, ErrorReply)
    assert setname.name == "client|setname"
    # COMMAND alone is valid (arity -1).
    command = resolve([b"command"])
    assert not isinstance(command, ErrorReply)
    assert command.name == "command"


def test_key_positions_follow_first_last_step() -> None:
    assert command_keys(spec_of(b"get"), [b"get", b"k"]) == [b"k"]
    mset = [b"mset", b"a", b"1", b"b", b"2"]
    assert command_keys(spec_of(b"mset"), mset) == [b"a", b"b"]
    assert command_keys(spec_of(b"del"), [b"del", b"a", b"b", b"c"]) == [b"a", b"b", b"c"]
    assert command_keys(spec_of(b"set"), [b"set", b"k", b"v", b"EX", b"1"]) == [b"k"]
    assert command_keys(spec_of(b"ping"), [b"ping"]) == []
    assert command_keys(spec_of(b"scan"), [b"scan", b"0"]) == []


def test_command_info_reply_has_redis_7_shape() -> None:
    info = command_info_reply(spec_of(b"get"))
    assert info[:6] == [
        b"get",
        2,
        [SimpleString("readonly"), SimpleString("fast")],
        1,
        1,
        1,
    ]
    assert info[6] == [SimpleString("@read"), SimpleString("@string"), SimpleString("@fast")]
    assert info[7] == []  # tips
    assert info[8] == [
        [
            b"flags",
            [SimpleString("RO"), SimpleString("access")],
            b"begin_search",
            [b"type", b"index", b"spec", [b"index", 1]],
            b"find_keys",
            [b"type", b"range", b"spec", [b"lastkey", 0, b"keystep", 1, b"limit", 0]],
        ]
    ]
    assert info[9] == []  # subcommands
    encode_reply(info)  # a valid reply value


def test_command_info_lists_subcommands_and_tips() -> None:
    info = command_info_reply(spec_of(b"client"))
    assert info[1] == -2
    sub_names = [sub[0] for sub in info[9]]  # type: ignore[index]
    assert b"client|setname" in sub_names
    assert b"client|setinfo" in sub_names  # sent by redis-py on connect
    mset = command_info_reply(spec_of(b"mset"))
    assert mset[7] == [b"request_policy:multi_shard", b"response_policy:all_succeeded"]


def test_command_docs_reply_is_a_map_of_bulk_strings_with_arguments() -> None:
    docs = command_docs_reply(spec_of(b"set"))
    as_map = dict(zip(docs[::2], docs[1::2], strict=True))
    assert as_map[b"summary"] == b"Set the string value of a key"
    assert as_map[b"since"] == b"1.0.0"
    assert as_map[b"group"] == b"string"
    arguments = as_map[b"arguments"]
    assert isinstance(arguments, list)
    assert arguments[0] == [b"name", b"key", b"type", b"key", b"key_spec_index", 0]
    # Argument flags are statuses: redis-cli asserts on the reply types.
    condition = dict(zip(arguments[2][::2], arguments[2][1::2], strict=True))  # type: ignore[index]
    assert condition[b"flags"] == [SimpleString("optional")]
    encode_reply(docs)


def test_command_docs_of_a_container_maps_subcommand_names_to_docs() -> None:
    docs = command_docs_reply(spec_of(b"config"))
    as_map = dict(zip(docs[::2], docs[1::2], strict=True))
    subcommands = as_map[b"subcommands"]
    assert isinstance(subcommands, list)
    assert b"config|get" in subcommands[::2]


@pytest.mark.parametrize("spec", COMMANDS, ids=lambda spec: spec.name)
def test_key_specs_agree_with_first_last_step(spec: CommandSpec) -> None:
    if spec.first_key == 0:
        assert spec.key_specs == ()
        return
    assert spec.key_specs[0].begin_index == spec.first_key
    assert spec.key_specs[0].key_step == spec.key_step
