"""Groups and grants from the command line, on the local database."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from repodepot.accounts import Principal
from repodepot.db.models import Visibility
from repodepot.services import Services
from repodepot.settings import Settings
from tests.e2e.conftest import cli
from tests.support.seed import seed_mirror

SECRET = "test-secret-key-" + "x" * 32


def seeded(data: Path) -> None:
    """A private repository `acme/closed` in the data dir's database."""

    async def work() -> None:
        services = await Services.open(Settings(data_dir=data, secret_key=SECRET))
        try:
            await seed_mirror(services, "acme/closed", visibility=Visibility.private)
        finally:
            await services.close()

    asyncio.run(work())


def readable_by(data: Path, user: str) -> list[str]:
    async def work() -> list[str]:
        services = await Services.open(Settings(data_dir=data, secret_key=SECRET))
        try:
            principal = Principal(user=await services.accounts.get_user(user), token_id=0)
            return [repo.name for repo in (await services.repositories.list(principal)).items]
        finally:
            await services.close()

    return asyncio.run(work())


def test_groups_and_grants_open_and_close_a_private_repository(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {"REPODEPOT_SECRET_KEY": SECRET}
    at = ("--data-dir", str(data))
    seeded(data)
    for user in ("alice", "bob"):
        cli("users", "create", user, *at, env=env)
    assert readable_by(data, "alice") == []

    assert "created group 'eng'" in cli("groups", "create", "eng", *at, env=env).stdout
    cli("groups", "add", "eng", "alice", *at, env=env)
    groups = json.loads(cli("groups", "list", "--json", *at, env=env).stdout)
    assert [(g["name"], g["members"]) for g in groups] == [("eng", ["alice"])]
    granted = cli("grants", "add", "acme/closed", "--group", "eng", *at, env=env).stdout
    assert "lets group 'eng' read it" in granted
    cli("grants", "add", "acme/closed", "--user", "bob", *at, env=env)
    assert readable_by(data, "alice") == ["acme/closed"]
    assert readable_by(data, "bob") == ["acme/closed"]

    grants = json.loads(cli("grants", "list", "acme/closed", "--json", *at, env=env).stdout)
    assert [(g["user"], g["group"], g["source"]) for g in grants] == [
        (None, "eng", "manual"),
        ("bob", None, "manual"),
    ]
    cli("grants", "remove", "acme/closed", str(grants[1]["id"]), *at, env=env)
    cli("groups", "remove", "eng", "alice", *at, env=env)
    assert readable_by(data, "alice") == [] and readable_by(data, "bob") == []

    both = cli(
        "grants", "add", "acme/closed", "--user", "bob", "--group", "eng", *at, env=env, check=False
    )
    assert both.returncode == 1 and both.stderr.strip() == "error: name either a user or a group"
    ghost = cli("groups", "add", "eng", "ghost", *at, env=env, check=False)
    assert ghost.returncode == 1 and "no user named 'ghost'" in ghost.stderr
