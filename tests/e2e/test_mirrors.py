"""With the server running, a connection's repositories get cloned and their state shown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from repodepot.settings import Settings
from tests.e2e.conftest import cli
from tests.support.eventually import eventually
from tests.support.githttp import GitHttpServer
from tests.support.repogen import Spec, generate, git


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"update_poll_interval": 0.1, "sync_poll_interval": 0.1})


async def until(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], ready: Any
) -> dict[str, Any]:
    async def check() -> dict[str, Any]:
        body: dict[str, Any] = (await client.get(url, headers=headers)).json()
        assert ready(body), f"{url} not ready: {body}"
        return body

    return await eventually(check, timeout=30, interval=0.1)


async def test_a_connection_s_repositories_are_cloned_and_shown_with_their_schedule(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    git_root: Path,
    git_server: GitHttpServer,
) -> None:
    generate(git_root / "app.git", Spec(commits=4, branches=1, tags=1))
    config = {"repos": [git_server.url("app.git")]}
    created = await client.post(
        "/api/codehosts",
        json={"kind": "other", "name": "upstream", "config": config},
        headers=admin_headers,
    )
    assert created.status_code == 201

    body = await until(
        client,
        "/api/repos/127.0.0.1/app",
        admin_headers,
        lambda body: (body.get("mirror") or {}).get("clone_status") == "cloned",
    )

    # One truth: the clone wrote the repository's facts from the mirror, one size for both.
    assert (body["default_branch"], body["is_empty"]) == ("main", False)
    assert body["size_bytes"] == body["mirror"]["size_bytes"] > 0
    assert body["mirror"]["schedule"].startswith("next update in")
    status = (await client.get("/api/scheduler", headers=admin_headers)).json()
    assert (status["mirrors"], status["cloned"]) == (1, 1)

    asked = await client.post("/api/repos/127.0.0.1/app/update", headers=admin_headers)
    assert asked.status_code == 202
    page = await client.get("/repos/127.0.0.1/app", headers=admin_headers)
    assert 'id="clone-status"' in page.text and "cloned" in page.text
    assert "<dt>Default branch</dt><dd>main</dd>" in page.text
    assert "<dt>State</dt><dd>has commits</dd>" in page.text
    assert page.text.count("Size on disk") == 1
    queue = await client.get("/scheduler", headers=admin_headers)
    assert queue.status_code == 200 and "127.0.0.1/app" in queue.text


def test_cli_scheduler_status_and_update(tmp_path: Path) -> None:
    env = {"REPODEPOT_DATA_DIR": str(tmp_path / "data")}
    status = cli("scheduler", "status", "--json", env=env).stdout
    assert '"mirrors": 0' in status
    missing = cli("repos", "update", "acme/none", env=env, check=False)
    assert missing.returncode == 1 and "no repository named" in missing.stderr
    assert git("--version").startswith("git version")
