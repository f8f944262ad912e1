"""The ACL model (core/acl.py) and its home in the placement group, as specifications."""

from __future__ import annotations

import hashlib
import re

import pytest

from shardkv.core import commands as table
from shardkv.core.acl import (
    AclRuleError,
    AclUser,
    apply_rules,
    check_password,
    decode_user,
    default_user,
    describe,
    encode_user,
    permission_error,
)
from shardkv.core.cluster.placement import (
    PlacementMachine,
    del_acl_users_command,
    set_acl_user_command,
)
from shardkv.core.cluster.shardmap import ShardMap, initial_layout
from shardkv.core.resp import OK, ErrorReply


def rules(*words: str) -> list[bytes]:
    return [w.encode() for w in words]


def may_run(user: AclUser, *args: str) -> bool:
    call = [a.encode() for a in args]
    spec = table.resolve(call)
    assert not isinstance(spec, ErrorReply)
    return permission_error(user, spec, call) is None


def test_a_new_user_is_off_and_may_do_nothing() -> None:
    user = apply_rules(AclUser("u"), [])
    assert not user.enabled and not check_password(user, b"")
    assert not may_run(user, "GET", "k")
    assert describe(user) == "user u off resetchannels -@all"


def test_command_rules_replay_in_order_over_categories_commands_and_subcommands() -> None:
    user = apply_rules(AclUser("u"), rules("on", "allkeys", "+@read", "-get", "+client|id"))
    assert may_run(user, "MGET", "a", "b") and may_run(user, "STRLEN", "k")
    assert not may_run(user, "GET", "k")
    assert not may_run(user, "SET", "k", "v")
    assert may_run(user, "CLIENT", "ID") and not may_run(user, "CLIENT", "LIST")
    again = apply_rules(user, rules("+get", "-@all", "+set"))
    assert may_run(again, "SET", "k", "v") and not may_run(again, "GET", "k")
    assert permission_error(again, table.lookup(b"get"), [b"get", b"k"]) == ErrorReply(  # type: ignore[arg-type]
        "NOPERM this user has no permissions to run the 'get' command"
    )


def test_every_key_of_a_call_must_match_a_pattern() -> None:
    user = apply_rules(AclUser("u"), rules("on", "+@all", "~app:*", "~tmp?"))
    assert may_run(user, "MSET", "app:1", "v", "tmp1", "v")
    assert not may_run(user, "MSET", "app:1", "v", "other", "v")
    assert may_run(user, "PING")  # keyless
    assert may_run(apply_rules(user, rules("allkeys")), "GET", "other")
    assert not may_run(apply_rules(user, rules("resetkeys")), "GET", "app:1")


def test_passwords_are_kept_as_sha256_digests_only() -> None:
    user = apply_rules(AclUser("u"), rules("on", ">one", ">two", "<one"))
    assert user.passwords == (hashlib.sha256(b"two").hexdigest(),)
    assert check_password(user, b"two") and not check_password(user, b"one")
    assert "two" not in encode_user(user).decode()
    assert check_password(apply_rules(user, rules("nopass")), b"anything")
    assert not check_password(apply_rules(user, rules("nopass", "resetpass")), b"")
    assert not check_password(apply_rules(user, rules("off")), b"two")


@pytest.mark.parametrize(
    ("rule", "why"),
    [
        ("bogus", "Syntax error"),
        ("+nosuchcommand", "Unknown command or category name in ACL"),
        ("+@nosuchcategory", "Unknown command or category name in ACL"),
        ("#abc", "exactly 64 characters"),
        ("<never-set", "does not exist"),
        ("%R~k", "Syntax error"),  # read/write key selectors are not supported
    ],
)
def test_a_bad_rule_is_named_and_nothing_applies(rule: str, why: str) -> None:
    user = AclUser("u")
    with pytest.raises(AclRuleError, match=f"modifier {re.escape(repr(rule))}: .*{why}"):
        apply_rules(user, rules("on", ">pw", rule))


def test_a_pattern_after_allkeys_is_refused_as_redis_does() -> None:
    with pytest.raises(AclRuleError, match="Try 'resetkeys'"):
        apply_rules(AclUser("u"), rules("allkeys", "~x"))


def test_users_round_trip_through_their_stored_form() -> None:
    user = apply_rules(AclUser("u"), rules("on", ">pw", "~a*", "&ch", "+@read", "-get"))
    assert decode_user(encode_user(user)) == user
    with pytest.raises(ValueError):
        decode_user(b"{}")


def cluster_map() -> ShardMap:
    return initial_layout({1: "h:1", 2: "h:2", 3: "h:3"}, 3, 3)


def test_placement_replicas_apply_acl_changes_alike_and_keep_them_in_the_map() -> None:
    a, b = PlacementMachine(cluster_map()), PlacementMachine(cluster_map())
    base = default_user("node-local-password")
    commands = [
        set_acl_user_command("alice", None, rules("on", ">pw", "+get", "~k*")),
        set_acl_user_command("alice", None, rules("bogus")),  # refused on both, no change
        set_acl_user_command("default", base, rules(">second")),  # base: proposer's default
        del_acl_users_command(["nobody"]),
    ]
    replies = [[m.execute(c, 0) for m in (a, b)] for c in commands]
    assert replies[1][0] == replies[1][1] and isinstance(replies[1][0], ErrorReply)
    assert replies[3] == [0, 0]
    assert a.shard_map is not None and b.shard_map is not None
    assert a.shard_map.encode() == b.shard_map.encode()
    restored = ShardMap.decode(a.shard_map.encode())
    assert check_password(restored.acl_users["alice"], b"pw")
    assert check_password(restored.acl_users["default"], b"node-local-password")
    assert check_password(restored.acl_users["default"], b"second")
    assert a.execute(del_acl_users_command(["alice", "alice"]), 0) == 1
    assert "alice" not in (a.shard_map.acl_users if a.shard_map else {})


def test_replicas_accept_rules_for_commands_of_a_newer_version() -> None:
    """In a rolling upgrade, a rule naming a command only newer nodes know must apply on
    every replica alike (it allows nothing here), or the maps would differ."""
    machine = PlacementMachine(cluster_map())
    reply = machine.execute(set_acl_user_command("u", None, rules("on", "+newcmd", "+get")), 0)
    assert reply == OK and machine.shard_map is not None
    assert machine.shard_map.acl_users["u"].command_rules == ("-@all", "+newcmd", "+get")
    with pytest.raises(AclRuleError):  # the node taking ACL SETUSER still checks
        apply_rules(AclUser("u"), rules("+newcmd"))


def test_a_map_without_users_encodes_as_before() -> None:
    assert b"acl_users" not in cluster_map().encode()
