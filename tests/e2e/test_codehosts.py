"""An admin connects a code host through the API, the browser and the CLI; repositories appear."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, expect
from sqlalchemy import text

from repodepot.services import Services
from repodepot.settings import Settings
from tests.conftest import ADMIN_TOKEN
from tests.e2e.conftest import Server, cli
from tests.support.eventually import eventually
from tests.support.fakehosts import FakeHost


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"codehost_requests_per_second": 1000.0})


@pytest.fixture
def github() -> Iterator[FakeHost]:
    with FakeHost("github") as host:
        yield host


async def wait_for_sync(
    client: httpx.AsyncClient, headers: dict[str, str], host_id: int, since: str
) -> dict[str, Any]:
    """Poll the connection until a sync that started at or after `since` is recorded."""
    asked = datetime.fromisoformat(since)

    async def synced() -> dict[str, Any]:
        body: dict[str, Any] = (
            await client.get(f"/api/codehosts/{host_id}", headers=headers)
        ).json()
        last = body["last_sync"]
        assert last and datetime.fromisoformat(last["started_at"]) >= asked, (
            f"no sync of {host_id} since {since}"
        )
        return body

    return await eventually(synced, timeout=20, interval=0.1)


async def test_api_add_sync_now_and_list_the_host_s_repositories(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    app_services: Services,
    github: FakeHost,
) -> None:
    github.add_many(120)
    config = {"url": github.url, "token": github.token, "repositoryQuery": ["affiliated"]}

    created = await client.post(
        "/api/codehosts",
        json={"kind": "github", "name": "ghe", "config": config},
        headers=admin_headers,
    )

    assert created.status_code == 201, created.text
    body = created.json()
    assert body["token_set"] is True
    assert "token" not in body["config"] and github.token not in created.text
    host_id = body["id"]

    asked = await client.post(f"/api/codehosts/{host_id}/sync", headers=admin_headers)
    assert asked.status_code == 202
    synced = await wait_for_sync(client, admin_headers, host_id, asked.json()["requested_at"])
    assert synced["repo_count"] == 120
    assert synced["last_sync"]["added"] + synced["last_sync"]["unchanged"] == 120

    repos = await client.get("/api/repos?per_page=100", headers=admin_headers)
    assert repos.json()["total"] == 120
    assert repos.json()["items"][0]["name"] == "127.0.0.1/acme/repo-00000"
    assert repos.json()["items"][0]["code_host_kind"] == "github"

    history = await client.get(f"/api/codehosts/{host_id}/syncs", headers=admin_headers)
    assert history.json()["total"] >= 1

    # The token is kept across a config change, and is nowhere in the database in clear.
    patched = await client.patch(
        f"/api/codehosts/{host_id}",
        json={"config": {**{k: v for k, v in config.items() if k != "token"}, "orgs": ["acme"]}},
        headers=admin_headers,
    )
    assert patched.status_code == 200 and patched.json()["token_set"] is True
    async with app_services.sessions() as session:
        dump = json.dumps(
            [list(row) for row in (await session.execute(text("SELECT * FROM code_hosts"))).all()],
            default=str,
        )
    assert github.token not in dump

    removed = await client.delete(f"/api/codehosts/{host_id}", headers=admin_headers)
    assert removed.status_code == 204
    assert (await client.get("/api/repos", headers=admin_headers)).json()["total"] == 0
    deleted = await client.get("/api/repos?deleted=true", headers=admin_headers)
    assert deleted.json()["total"] == 120


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"kind": "bitbucket", "name": "x", "config": {}}, "kind"),
        ({"kind": "github", "name": "", "config": {"url": "https://github.com"}}, "name"),
        ({"kind": "github", "name": "x", "config": {"url": "github.com"}}, "config.url"),
        (
            {"kind": "gitlab", "name": "x", "config": {"url": "https://g", "projects": ["x"]}},
            "config.projects.0",
        ),
    ],
)
async def test_bad_connections_are_refused_naming_the_field(
    client: httpx.AsyncClient, admin_headers: dict[str, str], payload: dict[str, Any], field: str
) -> None:
    answer = await client.post("/api/codehosts", json=payload, headers=admin_headers)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == field


async def test_members_cannot_see_or_change_connections(
    client: httpx.AsyncClient, app_services: Services
) -> None:
    await app_services.accounts.create_user("bob")
    _, token = await app_services.accounts.create_token("bob", "t")
    headers = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/api/codehosts", headers=headers)).status_code == 403
    answer = await client.post(
        "/api/codehosts",
        json={"kind": "other", "name": "x", "config": {"repos": ["https://h/a/b.git"]}},
        headers=headers,
    )
    assert answer.status_code == 403


def test_cli_add_sync_list_and_remove(tmp_path: Path, github: FakeHost) -> None:
    github.add_many(7)
    env = {
        "REPODEPOT_DATA_DIR": str(tmp_path / "data"),
        "REPODEPOT_ALLOWED_SCHEMES": "http,https",
        "REPODEPOT_OUTBOUND_ALLOWLIST": "127.0.0.1",  # the fake host
    }
    added = cli(
        "codehosts",
        "add",
        "github",
        "ghe",
        "--url",
        github.url,
        "--query",
        "affiliated",
        "--token-stdin",
        env=env,
        input=github.token + "\n",
    )
    assert "added github connection 1 'ghe' (with a token)" in added.stdout

    synced = cli("codehosts", "sync", "ghe", env=env)
    assert "success: 7 listed, 7 added" in synced.stdout

    listed = json.loads(cli("codehosts", "list", "--json", env=env).stdout)
    assert [(h["name"], h["repo_count"], h["token_set"]) for h in listed] == [("ghe", 7, True)]
    assert github.token not in json.dumps(listed)
    repos = json.loads(cli("repos", "list", "--json", env=env).stdout)
    assert len(repos) == 7

    github.token = "rotated"
    failed = cli("codehosts", "sync", "1", env=env, check=False)
    assert failed.returncode == 1
    assert "refused the token" in failed.stderr

    removed = cli("codehosts", "remove", "ghe", env=env)
    assert "7 repositories only it yielded were soft-deleted" in removed.stdout
    assert json.loads(cli("repos", "list", "--json", env=env).stdout) == []


@pytest.mark.browser
async def test_an_admin_adds_a_github_connection_in_the_browser_and_sees_the_repositories(
    tmp_path: Path, serve: type[Server], browser: Browser, github: FakeHost
) -> None:
    github.add_many(45)
    github.add("acme", "renamed-later")
    server = serve(
        tmp_path / "data",
        {
            "REPODEPOT_ADMIN_TOKEN": ADMIN_TOKEN,
            "REPODEPOT_ALLOWED_SCHEMES": "http,https",
            "REPODEPOT_OUTBOUND_ALLOWLIST": "127.0.0.1",  # the fake host
            "REPODEPOT_SYNC_POLL_INTERVAL": "0.2",
        },
    )
    page = await browser.new_page()
    await page.goto(server.url + "/login?next=/codehosts")
    await page.fill("#token", ADMIN_TOKEN)
    await page.click("#login")
    await expect(page.locator("#no-codehosts")).to_be_visible()

    await page.select_option("#kind", "github")
    await page.fill("#name", "Our GitHub")
    await page.fill("#url", "not a url")
    await page.fill("#token", github.token)
    await page.fill("#query", "affiliated")
    await page.click("#add-codehost")
    await expect(page.locator("#form-error")).to_contain_text("config.url")

    await page.fill("#url", github.url)
    await page.fill("#token", github.token)
    await page.click("#add-codehost")
    await expect(page.locator("h1")).to_contain_text("Our GitHub")
    await expect(page.locator("#token-state")).to_have_text("set")

    async def counted() -> None:  # the updater syncs it within moments
        # The repositories commit first and the sync's record after (codehosts.syncer): a
        # page loaded in between shows the count and no sync yet, so both are waited for.
        await page.reload()
        assert (await page.locator("#repo-count").inner_text()) == "46"
        assert await page.locator("#syncs tbody tr").count() > 0

    await eventually(counted, timeout=10, interval=0.2)
    await expect(page.locator("#repo-count")).to_have_text("46")
    await expect(page.locator("#syncs tbody tr").first).to_contain_text("success")
    await page.screenshot(path=str(tmp_path / "codehost.png"), full_page=True)

    await page.click("#nav-codehosts")
    await expect(page.locator("#codehosts .repo-count")).to_have_text("46")
    await page.goto(server.url + "/repos?per_page=100")
    await expect(page.locator("#repos tbody tr")).to_have_count(46)
    await expect(page.locator("#repos")).to_contain_text("127.0.0.1/acme/renamed-later")
