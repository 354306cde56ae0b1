"""Imports across real processes: a crash and restart, a second web process, the CLI, a browser."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, expect

from tests.e2e.conftest import Server, cli
from tests.e2e.imports_helpers import assert_faithful_copy, events, make_source, mirrors
from tests.support.githttp import GitHttpServer

TOKEN = "rdp_process-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _env(database_url: str, **extra: str) -> dict[str, str]:
    return {
        "REPODEPOT_DATABASE_URL": database_url,
        "REPODEPOT_ADMIN_TOKEN": TOKEN,
        "REPODEPOT_ALLOWED_SCHEMES": "http",
        "REPODEPOT_OUTBOUND_ALLOWLIST": "127.0.0.1",
        **extra,
    }


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(headers=AUTH, timeout=30) as client:
        yield client


def _throttle_for(source: Path, seconds: float) -> int:
    return int(sum(f.stat().st_size for f in source.rglob("*") if f.is_file()) / seconds)


async def test_a_crashed_server_resumes_the_import_after_restart(
    tmp_path: Path, database_url: str, serve: type[Server], http: httpx.AsyncClient
) -> None:
    source = make_source(tmp_path / "served")
    data = tmp_path / "data"
    with GitHttpServer(tmp_path / "served", throttle=_throttle_for(source, 6)) as remote:
        first = serve(data, _env(database_url))
        answer = await http.post(
            f"{first.url}/api/imports",
            json={"url": remote.url("src.git"), "owner": "acme", "slug": "widgets"},
        )
        job = answer.json()
        seen = await events(http, first.url, job["id"], until={"running"})
        while seen[-1]["percent"] < 15:
            seen = await events(http, first.url, job["id"], until={"running"})
            await asyncio.sleep(0.2)
        first.process.kill()  # SIGKILL mid-clone: no cleanup of any kind
        first.process.wait()
        assert [p for p in (data / "tmp").iterdir() if "import" in p.name]  # work left behind

        second = serve(data, _env(database_url))
        final = (await events(http, second.url, job["id"]))[-1]
    assert final["status"] == "success", final
    assert final["attempt"] == 2
    (mirror,) = mirrors(data)
    assert_faithful_copy(mirror, source)
    assert [p for p in (data / "tmp").iterdir() if "import" in p.name] == []  # the dead one's too


async def test_a_second_web_process_streams_progress_over_postgres(
    tmp_path: Path, postgres_url: str, serve: type[Server], http: httpx.AsyncClient
) -> None:
    # PostgreSQL only: SQLite is the one-process deployment, with nothing to relay.
    database_url = postgres_url
    source = make_source(tmp_path / "served")
    data = tmp_path / "data"
    with GitHttpServer(tmp_path / "served", throttle=_throttle_for(source, 5)) as remote:
        worker = serve(data, _env(database_url))
        web = serve(data, _env(database_url, REPODEPOT_ROLES="web"))
        answer = await http.post(
            f"{web.url}/api/imports",
            json={"url": remote.url("src.git"), "owner": "acme", "slug": "widgets"},
        )
        assert answer.status_code == 202
        seen = await events(http, web.url, answer.json()["id"])
    assert seen[-1]["status"] == "success"
    percents = {event["percent"] for event in seen if event["status"] == "running"}
    assert len(percents) >= 3, seen  # pushed through LISTEN/NOTIFY while the clone ran
    assert "import worker started" in worker.log.read_text()
    assert "import worker started" not in web.log.read_text()


async def test_the_cli_imports_and_reports(
    tmp_path: Path, database_url: str, serve: type[Server]
) -> None:
    source = make_source(tmp_path / "served")
    with GitHttpServer(
        tmp_path / "served",
        auth=("alice", "src-token-0123456789"),
        throttle=_throttle_for(source, 2),
    ) as remote:
        server = serve(tmp_path / "data", _env(database_url))
        env = {"REPODEPOT_TOKEN": TOKEN, "REPODEPOT_SERVER": server.url}
        done = await asyncio.to_thread(
            cli,
            "import",
            remote.url("src.git", userinfo="alice"),
            "--owner",
            "acme",
            "--slug",
            "widgets",
            "--token-stdin",
            env=env,
            input="src-token-0123456789\n",
        )
        assert "imported acme/widgets" in done.stdout
        assert "src-token-0123456789" not in done.stdout + done.stderr
        failed = await asyncio.to_thread(
            cli,
            "import",
            remote.url("missing.git"),
            "--owner",
            "acme",
            "--slug",
            "nope",
            env=env,
            check=False,
        )
    assert failed.returncode == 1
    assert "import failed" in failed.stderr and "credentials" in failed.stderr
    refused = await asyncio.to_thread(
        cli, "import", "file:///etc", "--owner", "acme", "--slug", "x", env=env, check=False
    )
    assert refused.returncode == 1 and "file:// URLs are not allowed (url)" in refused.stderr
    (mirror,) = mirrors(tmp_path / "data")
    assert_faithful_copy(mirror, source)


async def test_import_through_the_form_in_a_browser(
    tmp_path: Path, database_url: str, serve: type[Server], browser: Browser
) -> None:
    source = make_source(tmp_path / "served")
    with GitHttpServer(tmp_path / "served", throttle=_throttle_for(source, 5)) as remote:
        server = serve(tmp_path / "data", _env(database_url))
        page = await browser.new_page()
        await page.goto(server.url + "/login")
        await page.fill("#token", TOKEN)
        await page.click("#login")
        await page.click("#nav-import")

        await page.fill("#url", "file:///etc/passwd")
        await page.fill("#slug", "widgets")
        await page.click("#submit-import")
        await expect(page.locator("#error-url")).to_contain_text("file:// URLs are not allowed")

        await page.fill("#url", remote.url("src.git"))
        await page.click("#submit-import")
        await expect(page.locator("h1")).to_contain_text("Import of admin/widgets")
        values: set[str] = set()
        async with asyncio.timeout(60):
            while not await page.locator("#result").is_visible():
                values.add(await page.locator("#bar").get_attribute("aria-valuenow") or "")
                await asyncio.sleep(0.1)
        assert len(values - {"0", "0.0"}) >= 3, values  # the bar moved
        await expect(page.locator("#bar")).to_have_attribute("aria-valuenow", "100")
        await expect(page.locator("#status")).to_have_text("success")
        await page.click("#repo-link")
        await expect(page.locator("h1")).to_contain_text("admin/widgets")

        # A second browser sees the same, finished state.
        other = await (await browser.new_context()).new_page()
        await other.goto(server.url + "/login")
        await other.fill("#token", TOKEN)
        await other.click("#login")
        await other.goto(server.url + "/imports")
        await other.click("text=admin/widgets")
        await expect(other.locator("#status")).to_have_text("success")
