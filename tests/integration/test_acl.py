"""Users and permissions against real processes: AUTH, ACL rules, protected mode.

The cluster scenario proves the issue's promise: a user made on one node works on the
others, each ACL rule does what Redis documents, and the users survive a restart of every
node (they live in the placement group's map, not in any one process).
"""

from __future__ import annotations

import hashlib
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from shardkv.client import CommandError, SyncClient
from tests.integration.harness import ServerProcess
from tests.integration.test_cluster import Cluster, wait_healthy

PASSWORD = "s3cret-default"


def denied(call: Callable[[], Any]) -> str | None:
    """The NOPERM/NOAUTH text a call got, or None if the server let it through (a -MOVED
    redirect counts as let through: permissions are checked before routing)."""
    try:
        call()
    except redis.exceptions.MovedError:
        return None
    except (redis.exceptions.NoPermissionError, redis.exceptions.AuthenticationError) as e:
        return str(e)
    return None


def log_in(node: ServerProcess, user: str, password: str, deadline_s: float = 10.0) -> redis.Redis:
    """A client logged in as ``user`` on ``node``; retries while the node's copy of the
    map has not yet applied the user (it follows the placement group's log)."""
    until = time.monotonic() + deadline_s
    while True:
        client = node.client(username=user, password=password)
        try:
            client.ping()
            return client
        except redis.exceptions.AuthenticationError:
            client.close()
            if time.monotonic() > until:
                raise
            time.sleep(0.05)


def test_acl_rules_hold_on_every_node_and_survive_a_restart_of_all(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, 3, "--requirepass", PASSWORD, shards=3)
    try:
        cluster.start()
        n1, n2, n3 = (cluster.nodes[i] for i in (1, 2, 3))

        # Without a password nothing but AUTH, HELLO AUTH and QUIT runs.
        anonymous = n1.client(protocol=2)
        raw = socket.create_connection(("127.0.0.1", n1.port))
        raw.sendall(b"GET k\r\n")
        assert raw.recv(100) == b"-NOAUTH Authentication required.\r\n"
        raw.sendall(b"AUTH wrong\r\n")
        assert raw.recv(100) == (
            b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
        )
        raw.sendall(f"AUTH {PASSWORD}\r\nACL WHOAMI\r\n".encode())
        expected = b"+OK\r\n$7\r\ndefault\r\n"
        got = b""
        while len(got) < len(expected):
            got += raw.recv(100)
        assert got == expected
        raw.close()
        anonymous.close()
        admin = n1.client(password=PASSWORD)
        assert admin.acl_whoami() == "default"
        others = [n.client(password=PASSWORD) for n in (n2, n3)]

        def settle() -> None:
            """Until nodes 2 and 3 have applied what node 1 answered (a change is
            answered once the node that took it applied it; the others follow)."""
            want = admin.acl_list()
            deadline = time.monotonic() + 10
            while any(o.acl_list() != want for o in others):
                assert time.monotonic() < deadline, "the ACL change did not reach every node"
                time.sleep(0.02)

        # A user made on node 1, with a password, key patterns and named commands.
        commands = ["+get", "+set", "+@connection", "+cluster", "+acl|whoami"]
        admin.acl_setuser(
            "alice", enabled=True, passwords=["+pw1"], keys=["app:*"], commands=commands
        )
        settle()
        alice = log_in(n3, "alice", "pw1")  # another node: the map carried it there
        assert alice.acl_whoami() == "alice"
        assert denied(lambda: alice.get("app:1")) is None
        assert denied(lambda: alice.get("other")) == (
            "this user has no permissions to access one of the keys used as arguments"
        )
        assert denied(lambda: alice.delete("app:1")) == (
            "this user has no permissions to run the 'del' command"
        )
        # -cmd, +@category, -@category, allkeys, resetkeys.
        admin.execute_command("ACL", "SETUSER", "alice", "+@write", "-set", "allkeys")
        settle()
        assert denied(lambda: alice.delete("other")) is None
        assert "'set' command" in str(denied(lambda: alice.set("app:1", "v")))
        admin.execute_command("ACL", "SETUSER", "alice", "-@write", "resetkeys", "~x*")
        settle()
        assert "'del' command" in str(denied(lambda: alice.delete("x1")))
        assert "keys" in str(denied(lambda: alice.get("app:1")))
        assert denied(lambda: alice.get("x1")) is None
        # nocommands / allcommands.
        admin.execute_command("ACL", "SETUSER", "alice", "nocommands")
        settle()
        assert "'get' command" in str(denied(lambda: alice.get("x1")))
        admin.execute_command("ACL", "SETUSER", "alice", "allcommands")
        settle()
        assert denied(lambda: alice.get("x1")) is None

        # Passwords: a second one (>), one removed (<), a hash (#) and its removal (!).
        admin.execute_command("ACL", "SETUSER", "alice", ">pw2", "<pw1")
        settle()
        log_in(n2, "alice", "pw2")
        with pytest.raises(redis.exceptions.AuthenticationError):
            n2.client(username="alice", password="pw1").ping()
        digest = hashlib.sha256(b"pw3").hexdigest()
        admin.execute_command("ACL", "SETUSER", "alice", "#" + digest)
        settle()
        log_in(n2, "alice", "pw3")
        admin.execute_command("ACL", "SETUSER", "alice", "!" + digest)
        settle()
        with pytest.raises(redis.exceptions.AuthenticationError):
            n2.client(username="alice", password="pw3").ping()

        # off refuses logins and ends the sessions of that user; on lets it back in.
        admin.execute_command("ACL", "SETUSER", "alice", "off")
        settle()
        assert denied(lambda: alice.get("x1")) == "Authentication required."
        with pytest.raises(redis.exceptions.AuthenticationError):
            n2.client(username="alice", password="pw2").ping()
        admin.execute_command("ACL", "SETUSER", "alice", "on")
        log_in(n2, "alice", "pw2")
        # HELLO 3 AUTH logs in and switches to RESP3 in one step (redis-py protocol=3).
        resp3 = n2.client(username="alice", password="pw2", protocol=3)
        assert resp3.acl_whoami() in (b"alice", "alice")  # (redis-py decodes only RESP2)

        # nopass, then resetpass.
        admin.execute_command("ACL", "SETUSER", "bob", "on", "nopass", "+ping")
        assert log_in(n2, "bob", "anything").ping()
        admin.execute_command("ACL", "SETUSER", "bob", "resetpass")
        settle()
        with pytest.raises(redis.exceptions.AuthenticationError):
            n2.client(username="bob", password="anything").ping()

        # A bad rule changes nothing and says which rule.
        with pytest.raises(redis.exceptions.ResponseError, match="modifier 'bogus'"):
            admin.execute_command("ACL", "SETUSER", "alice", "+get", "bogus")
        with pytest.raises(redis.exceptions.ResponseError, match="default' user cannot"):
            admin.execute_command("ACL", "DELUSER", "default")

        # The open status endpoint shows the map without the users' password digests.
        status = urllib.request.urlopen(
            f"http://127.0.0.1:{n1.admin_port}/v1/status", timeout=5
        ).read()
        assert b"acl_users" not in status and digest.encode() not in status

        # Introspection.
        assert sorted(admin.acl_users()) == ["alice", "bob", "default"]
        alice_rules = admin.acl_getuser("alice")
        assert "on" in alice_rules["flags"] and len(alice_rules["passwords"]) == 1
        assert any(line.startswith("user bob off") for line in admin.acl_list()) is False
        assert "get" in admin.acl_cat("string") and "read" in admin.acl_cat()
        assert admin.execute_command("ACL", "DELUSER", "bob", "nobody") == 1

        # Every node restarts: the users come back with the map.
        cluster.restart_all()
        for node in cluster.nodes.values():
            wait_healthy(node)
        again = log_in(cluster.nodes[2], "alice", "pw2", deadline_s=30)
        assert denied(lambda: again.get("x1")) is None
        assert sorted(cluster.nodes[3].client(password=PASSWORD).acl_users()) == [
            "alice",
            "default",
        ]
    finally:
        cluster.stop()


def test_a_standalone_server_keeps_its_users_across_a_restart(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "data").start() as node:
        plain = node.client()
        with pytest.raises(redis.exceptions.AuthenticationError, match="without any password"):
            plain.execute_command("AUTH", "x")
        plain.execute_command("ACL", "SETUSER", "carol", "on", ">pw", "~*", "+@read")
        plain.execute_command("ACL", "SETUSER", "default", ">root")  # no longer nopass
        restarted = node.again()
    node.stop()
    with restarted.start():
        assert restarted.client(username="carol", password="pw").get("k") is None
        assert denied(lambda: restarted.client(username="carol", password="pw").set("k", 1))
        with pytest.raises(redis.exceptions.AuthenticationError):
            restarted.client().ping()
        assert restarted.client(password="root").ping()
        # The project's own client logs its connections in.
        with SyncClient(port=restarted.port, username="carol", password="pw") as carol:
            assert carol.get("k") is None
        with (
            SyncClient(port=restarted.port, username="carol", password="nope") as wrong,
            pytest.raises(CommandError, match="WRONGPASS"),
        ):
            wrong.get("k")


def _non_loopback_ipv4() -> tuple[str, Callable[[], None]]:
    """An IPv4 address of this machine outside 127/8, and how to undo what made it: the
    first global address, or one on a dummy interface this test adds (CI runs as root)."""
    out = subprocess.run(
        ["ip", "-o", "-4", "addr", "show", "scope", "global"], capture_output=True, text=True
    ).stdout
    for line in out.splitlines():
        return line.split()[3].split("/")[0], lambda: None
    name, address = "skvtest0", "198.18.0.7"
    subprocess.run(["ip", "link", "add", name, "type", "dummy"], check=True)
    subprocess.run(["ip", "addr", "add", f"{address}/32", "dev", name], check=True)
    subprocess.run(["ip", "link", "set", name, "up"], check=True)
    return address, lambda: subprocess.run(["ip", "link", "del", name], check=False)


def test_protected_mode_serves_only_loopback_until_a_password_is_set(
    tmp_path: Path, redis_cli: str
) -> None:
    address, undo = _non_loopback_ipv4()
    try:
        with ServerProcess(tmp_path / "a", "--bind", "0.0.0.0").start() as node:
            refused = subprocess.run(
                [redis_cli, "-h", address, "-p", str(node.port), "PING"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert "DENIED" in refused.stdout + refused.stderr
            remote = redis.Redis(host=address, port=node.port, retry=None)
            with pytest.raises(redis.exceptions.ResponseError, match=r"^DENIED .*protected mode"):
                remote.ping()
            assert node.client().ping()  # loopback is still served
        with ServerProcess(
            tmp_path / "b", "--bind", "0.0.0.0", "--requirepass", "pw"
        ).start() as node:
            with pytest.raises(redis.exceptions.AuthenticationError):
                redis.Redis(host=address, port=node.port, retry=None).ping()
            assert redis.Redis(host=address, port=node.port, password="pw").ping()
        with ServerProcess(
            tmp_path / "c", "--bind", "0.0.0.0", "--protected-mode", "no"
        ).start() as node:
            assert redis.Redis(host=address, port=node.port, retry=None).ping()
    finally:
        undo()
