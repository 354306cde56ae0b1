"""The storage node settings: name (and its old name), internal URL and secret, heartbeats."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from repodepot.exceptions import ConfigurationError
from repodepot.settings import load_settings

SECRET = "s" * 32


def refused(variable: str, expected: str, **overrides: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        load_settings(**overrides)
    assert info.value.field == variable
    assert str(info.value).startswith(f"{variable}: ")
    assert expected in str(info.value)


def test_one_process_runs_every_role_as_node_local_by_default() -> None:
    settings = load_settings()
    assert settings.roles == ["web", "worker", "updater", "gitserver"]
    assert settings.node_name == "local"
    assert settings.node_url is None and settings.internal_secret is None
    assert (settings.node_dead_after, settings.node_heartbeat_interval) == (60.0, 10.0)


def test_the_node_name_comes_from_its_variable_or_its_old_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("REPODEPOT_SHARD", "shard-2")
    assert load_settings().node_name == "shard-2"
    monkeypatch.setenv("REPODEPOT_NODE_NAME", "gitserver-2")
    assert load_settings().node_name == "gitserver-2"  # the new name wins
    assert load_settings(node_name="given").node_name == "given"
    monkeypatch.delenv("REPODEPOT_SHARD")
    monkeypatch.delenv("REPODEPOT_NODE_NAME")
    config = tmp_path / "repodepot.toml"
    config.write_text('node_name = "from-file"\n')
    assert load_settings(config).node_name == "from-file"


@pytest.mark.parametrize("name", ["a", "gitserver-1", "n.2_x", "0", "a" * 64])
def test_node_names_that_are_accepted(name: str) -> None:
    assert load_settings(node_name=name).node_name == name


@pytest.mark.parametrize("name", ["", "Gs", "-gs", "gs-", "gs.", "g s", "g/s", "a" * 65, "ü"])
def test_a_malformed_node_name_is_refused_naming_the_variable(name: str) -> None:
    refused("REPODEPOT_NODE_NAME", "is not a node name", node_name=name)


def test_a_malformed_old_name_names_both_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPODEPOT_SHARD", "Shard One")
    refused("REPODEPOT_NODE_NAME", "its old name REPODEPOT_SHARD")


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("http://127.0.0.1:8101", "http://127.0.0.1:8101"),
        ("https://gitserver-1.internal:8443/", "https://gitserver-1.internal:8443"),
        ("HTTP://[::1]:81", "http://[::1]:81"),
        ("http://gitserver-2", "http://gitserver-2"),
    ],
)
def test_the_node_url_is_a_base_url(given: str, kept: str) -> None:
    assert load_settings(node_url=given).node_url == kept


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("ftp://127.0.0.1:21", "is not an http:// or https:// URL with a host"),
        ("127.0.0.1:8101", "is not an http:// or https:// URL with a host"),
        ("http://:8101", "is not an http:// or https:// URL with a host"),
        ("http://127.0.0.1:99999", "is not a URL like"),
        ("http://user:pw@127.0.0.1:8101", "carries user info"),
        ("http://127.0.0.1:8101/internal", "has a path, query or fragment"),
        ("http://127.0.0.1:8101?a=1", "has a path, query or fragment"),
    ],
)
def test_a_node_url_that_is_not_a_base_url_is_refused(given: str, expected: str) -> None:
    refused("REPODEPOT_NODE_URL", expected, node_url=given)


def test_a_gitserver_without_the_web_role_needs_its_url(monkeypatch: pytest.MonkeyPatch) -> None:
    refused("REPODEPOT_NODE_URL", "needs its internal address", roles="gitserver")
    refused("REPODEPOT_NODE_URL", "needs its internal address", roles=["updater", "gitserver"])
    assert load_settings(roles="web,gitserver").node_url is None  # one process
    assert load_settings(roles="updater").node_url is None
    monkeypatch.setenv("REPODEPOT_ROLES", "gitserver")
    monkeypatch.setenv("REPODEPOT_NODE_URL", "http://127.0.0.1:8101")
    settings = load_settings()
    assert (settings.roles, settings.node_url) == (["gitserver"], "http://127.0.0.1:8101")


def test_roles_know_gitserver_and_nothing_else() -> None:
    refused("REPODEPOT_ROLES", "not storage", roles="web,storage")


def test_the_internal_secret_is_long_and_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    refused("REPODEPOT_INTERNAL_SECRET", "at least 32 characters", internal_secret="s" * 31)
    monkeypatch.setenv("REPODEPOT_INTERNAL_SECRET", SECRET)
    settings = load_settings()
    assert settings.internal_secret is not None
    assert settings.internal_secret.get_secret_value() == SECRET
    assert SECRET not in repr(settings) and SECRET not in str(settings)


def test_heartbeats_come_at_least_twice_within_the_time_to_death() -> None:
    assert load_settings(node_heartbeat_interval=29.9).node_heartbeat_interval == 29.9
    refused(
        "REPODEPOT_NODE_HEARTBEAT_INTERVAL",
        "must be less than half of REPODEPOT_NODE_DEAD_AFTER (60 s)",
        node_heartbeat_interval=30,
    )
    refused(
        "REPODEPOT_NODE_HEARTBEAT_INTERVAL",
        "less than half of REPODEPOT_NODE_DEAD_AFTER (15 s)",
        node_dead_after=15,
    )
    assert load_settings(node_dead_after=5, node_heartbeat_interval=2).node_dead_after == 5
    refused("REPODEPOT_NODE_DEAD_AFTER", "greater than 0", node_dead_after=0)
    refused("REPODEPOT_NODE_HEARTBEAT_INTERVAL", "greater than 0", node_heartbeat_interval=0)
