"""The `repodepot` command as a user runs it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from repodepot.db import migrate
from tests.e2e.conftest import Server, cli

COMMANDS = [
    [],
    ["serve"],
    ["db"],
    ["db", "upgrade"],
    ["users"],
    ["users", "create"],
    ["users", "list"],
    ["tokens"],
    ["tokens", "create"],
    ["tokens", "list"],
    ["tokens", "revoke"],
    ["repos"],
    ["repos", "list"],
    ["codehosts"],
    ["codehosts", "add"],
    ["codehosts", "list"],
    ["codehosts", "sync"],
    ["codehosts", "confirm-deletions"],
    ["codehosts", "remove"],
    ["repos", "update"],
    ["repos", "set"],
    ["goproxy"],
    ["goproxy", "list"],
    ["scheduler"],
    ["scheduler", "status"],
    ["version"],
    ["import"],
    ["groups"],
    ["groups", "create"],
    ["groups", "list"],
    ["groups", "add"],
    ["groups", "remove"],
    ["grants"],
    ["grants", "list"],
    ["grants", "add"],
    ["grants", "remove"],
    ["codehosts", "grant"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "root")
def test_every_command_has_complete_help(command: list[str]) -> None:
    text = cli(*command, "--help").stdout
    assert "Usage: repodepot" in text
    description = text.split("\n\n")[1].strip()
    assert description and not description.startswith("Options")
    for option in re.findall(r"^\s+(--[a-z-]+)", text, flags=re.M):
        line = next(line for line in text.splitlines() if line.strip().startswith(option))
        assert len(line.strip()) > len(option) + 2, f"{option} has no help"


def test_admin_workflow_on_the_local_database(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    upgraded = cli("db", "upgrade", "--data-dir", data).stdout
    assert f"revision {migrate.head_revision()} (was empty)" in upgraded
    created = cli("users", "create", "alice", "--data-dir", data).stdout
    token = re.search(r"rdp_\S+", created)
    assert token is not None
    listed = json.loads(cli("users", "list", "--json", "--data-dir", data).stdout)
    assert [user["name"] for user in listed] == ["alice"]
    assert listed[0]["role"] == "member"

    second = cli("tokens", "create", "--user", "alice", "--name", "ci", "--data-dir", data)
    assert second.stdout.strip().startswith("rdp_")
    tokens = json.loads(cli("tokens", "list", "--json", "--data-dir", data).stdout)
    assert {t["name"] for t in tokens} == {"initial", "ci"}
    assert second.stdout.strip() not in json.dumps(tokens)
    ci_id = next(t["id"] for t in tokens if t["name"] == "ci")
    revoked = cli("tokens", "revoke", str(ci_id), "--data-dir", data).stdout
    assert f"revoked token {ci_id} 'ci' of 'alice'" in revoked
    assert json.loads(cli("repos", "list", "--json", "--data-dir", data).stdout) == []
    assert "visibility" in cli("repos", "list", "--data-dir", data).stdout  # the table header


def test_errors_are_one_clear_line_and_exit_non_zero(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    cli("users", "create", "bob", "--data-dir", data)
    again = cli("users", "create", "bob", "--data-dir", data, check=False)
    assert again.returncode == 1
    assert again.stderr.strip() == "error: user 'bob' already exists"
    missing = cli("tokens", "create", "--user", "ghost", "--data-dir", data, check=False)
    assert missing.returncode == 1 and "no user named 'ghost'" in missing.stderr
    bad_listen = cli("serve", "--listen", "nonsense", "--data-dir", data, check=False)
    assert bad_listen.returncode == 1
    assert "REPODEPOT_LISTEN: Value error, 'nonsense' is not HOST:PORT" in bad_listen.stderr
    bad_env = cli(
        "users", "list", "--data-dir", data, env={"REPODEPOT_ALLOWED_SCHEMES": "file"}, check=False
    )
    assert bad_env.returncode == 1 and "REPODEPOT_ALLOWED_SCHEMES" in bad_env.stderr
    for result in (again, missing, bad_listen, bad_env):
        assert "Traceback" not in result.stderr


def test_serve_prints_a_one_time_admin_token_and_logs_json(
    tmp_path: Path, serve: type[Server]
) -> None:
    server = serve(tmp_path / "data", {"REPODEPOT_LOG_FORMAT": "json"})
    output = server.log.read_text()
    token = re.search(r"^\s+(rdp_\S+)$", output, flags=re.M)
    assert token is not None, output
    me = httpx.get(server.url + "/api/user", headers={"Authorization": f"Bearer {token[1]}"})
    assert me.json()["name"] == "admin"
    login = httpx.get(server.url + "/login")
    assert login.status_code == 200 and "Paste an API token" in login.text
    server.stop()
    records = [
        json.loads(line) for line in server.log.read_text().splitlines() if line.startswith("{")
    ]
    requests = [r for r in records if r.get("action") == "http.request"]
    assert {r["path"] for r in requests} >= {"/readyz", "/api/user", "/login"}
    assert all(len(r["request_id"]) == 32 for r in requests)
    assert token[1] not in "".join(json.dumps(r) for r in records)  # never in a log record
    restarted = serve(tmp_path / "data", {})
    assert not re.search(r"rdp_\S+", restarted.log.read_text())  # shown only on first start
