"""Settings come from defaults, a TOML file, SHARDKV_* variables and flags, in that order."""

from __future__ import annotations

from pathlib import Path

import pytest

from shardkv.server.config import ConfigError, ServerConfig, load_config, parse_labels


def test_defaults_match_the_documented_ones() -> None:
    cfg = load_config(environ={})
    assert (cfg.bind, cfg.port, cfg.admin_port) == ("127.0.0.1", 7379, 7381)
    assert (cfg.data_dir, cfg.max_connections, cfg.backlog) == ("./shardkv-data", 10000, 511)
    assert (cfg.log_format, cfg.log_level, cfg.tls_cert) == ("console", "info", None)


def test_file_then_environment_then_flags_each_override_the_last(tmp_path: Path) -> None:
    f = tmp_path / "shardkv.toml"
    f.write_text('port = 8000\nmax-connections = 50\nbind = "0.0.0.0"\nlog_format = "json"\n')
    env = {"SHARDKV_PORT": "9000", "SHARDKV_MAX_CONNECTIONS": "60", "OTHER": "x"}
    cfg = load_config(f, environ=env, overrides={"port": 9100, "backlog": None})
    assert cfg.port == 9100, "a flag beats the environment"
    assert cfg.max_connections == 60, "the environment beats the file"
    assert cfg.bind == "0.0.0.0" and cfg.log_format == "json", "the file beats the defaults"
    assert cfg.backlog == 511, "a flag left unset (None) changes nothing"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nosuch = 1\n", "unknown setting 'nosuch'"),
        ('port = "abc"\n', "cannot read 'abc' as int"),
        ("port = 70000\n", "port must be a TCP port"),
        ("max_connections = 0\n", "max_connections must be positive"),
        ('log_format = "xml"\n', "log_format must be 'json' or 'console'"),
        ('tls_cert = "a.pem"\n', "tls_cert and tls_key must be given together"),
        ("port = [\n", "is not valid TOML"),
        (
            'join = "h:7380"\ninitial_cluster = "1=h:7380"\n',
            "and initial_cluster exclude each other",
        ),
        ('join = " "\n', "join lists no seed"),
        ('join = "h:7380"\npeer_port = 0\n', "join needs a fixed peer_port"),
    ],
)
def test_bad_settings_are_refused_with_a_message_naming_them(
    tmp_path: Path, text: str, message: str
) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_config(f, environ={})


def test_resp_bounds_come_from_the_settings() -> None:
    cfg = ServerConfig(max_bulk_bytes=1000, max_query_buffer_bytes=5000)
    assert cfg.resp_limits.max_bulk_bytes == 1000
    assert cfg.resp_limits.max_unparsed_bytes == 5000


def test_labels_are_key_value_pairs_and_bad_ones_are_refused() -> None:
    cfg = load_config(environ={"SHARDKV_LABELS": "zone=z1, host=h1"})
    assert parse_labels(cfg.labels) == (("host", "h1"), ("zone", "z1"))
    for bad in ("host", "host=", "host=h1,host=h2", "ho st=h1", "host=h1;zone=z"):
        with pytest.raises(ConfigError, match="labels"):
            load_config(environ={"SHARDKV_LABELS": bad})
