"""A person logs in, sees the repositories, opens one and logs out, in headless Chromium.

Every page runs under the Content-Security-Policy: a test fails on any violation the browser
reports (an inline script, handler or style, or an asset from another origin).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, expect

from repodepot.db.models import Visibility
from repodepot.services import Services
from repodepot.settings import Settings
from tests.e2e.conftest import Server
from tests.support.eventually import eventually
from tests.support.githttp import GitHttpServer
from tests.support.repogen import Spec, generate

pytestmark = pytest.mark.browser

ADMIN = "rdp_browser-admin-token-0123456789"


def csp_violations(page: Page) -> list[str]:
    """Collect what the browser refuses under the CSP (it reports each on the console)."""
    violations: list[str] = []

    def seen(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            violations.append(message.text)

    page.on("console", seen)
    return violations


async def _seed(data_dir: Path) -> None:
    svc = await Services.open(Settings(data_dir=data_dir, admin_token=ADMIN))
    try:
        await svc.accounts.bootstrap_admin(ADMIN)
        await svc.repositories.create(
            name="acme/widgets",
            owner_id=None,
            visibility=Visibility.public,
            description="Widgets for everyone",
            source_url="https://example.com/w.git",
        )
        await svc.repositories.create(name="acme/secret", owner_id=None)
    finally:
        await svc.close()


async def test_log_in_browse_and_log_out(
    tmp_path: Path, serve: type[Server], browser: Browser
) -> None:
    await _seed(tmp_path / "data")
    # No updater: the seeded source (example.com) must not be fetched from a test.
    server = serve(tmp_path / "data", {"REPODEPOT_ROLES": "web,worker"})
    page = await browser.new_page()
    violations = csp_violations(page)

    # Without a login: the public repositories, and a way to log in.
    await page.goto(server.url + "/")
    await expect(page).to_have_url(server.url + "/repos")
    public = page.locator("#repos tbody tr")
    await expect(public).to_have_count(1)
    await expect(public.nth(0)).to_contain_text("acme/widgets")
    await expect(page.locator("#current-user")).to_have_count(0)
    await page.click("#login-link")
    await expect(page).to_have_url(server.url + "/login?next=/repos")

    await page.fill("#token", "rdp_wrong-token-000000000000000")
    await page.click("#login")
    await expect(page.locator("#login-error")).to_contain_text("not valid")

    await page.fill("#token", ADMIN)
    await page.click("#login")
    await expect(page).to_have_url(server.url + "/repos")
    await expect(page.locator("#current-user")).to_have_text("admin")
    rows = page.locator("#repos tbody tr")
    await expect(rows).to_have_count(2)
    await expect(rows.nth(1)).to_contain_text("acme/widgets")
    await expect(rows.nth(1)).to_contain_text("public")

    cookies = await page.context.cookies()
    session = next(cookie for cookie in cookies if cookie["name"] == "repodepot_session")
    assert session["httpOnly"] is True
    assert ADMIN not in session["value"]

    await page.click("text=acme/widgets")
    await expect(page.locator("h1")).to_contain_text("acme/widgets")
    await expect(page.locator("#facts")).to_contain_text("https://example.com/w.git")
    await expect(page.locator("#no-mirror")).to_contain_text("Not mirrored yet")

    await page.goto(server.url + "/repos/acme/missing")
    await expect(page.locator("#error-message")).to_contain_text("no repository named")

    copied = await page.context.cookies()
    await page.click("#logout")
    await expect(page).to_have_url(server.url + "/login")
    await page.goto(server.url + "/repos")
    await expect(page.locator("#login-link")).to_be_visible()  # logged out: the public list
    await expect(page.locator("#repos tbody tr")).to_have_count(1)
    # The server ended the session: a copy of the cookie taken before logging out is useless.
    thief = await browser.new_context()
    await thief.add_cookies(copied)  # type: ignore[arg-type]
    stolen = await thief.new_page()
    await stolen.goto(server.url + "/repos")
    await expect(stolen).to_have_url(server.url + "/login?next=/repos")
    assert violations == []


async def test_an_admin_sees_a_mirror_cloned_and_asks_for_an_update(
    tmp_path: Path, serve: type[Server], browser: Browser, git_root: Path, git_server: GitHttpServer
) -> None:
    generate(git_root / "tool.git", Spec(commits=6, branches=1, tags=1))
    svc = await Services.open(Settings(data_dir=tmp_path / "data", admin_token=ADMIN))
    try:
        await svc.accounts.bootstrap_admin(ADMIN)
        await svc.repositories.create(
            name="acme/tool", owner_id=None, source_url=git_server.url("tool.git")
        )
    finally:
        await svc.close()
    env = {"REPODEPOT_ALLOWED_SCHEMES": "http", "REPODEPOT_OUTBOUND_ALLOWLIST": "127.0.0.1"}
    server = serve(tmp_path / "data", env)
    page = await browser.new_page()
    violations = csp_violations(page)
    await page.goto(server.url + "/login?next=/repos/acme/tool")
    await page.fill("#token", ADMIN)
    await page.click("#login")

    async def mirror(api: httpx.AsyncClient) -> dict[str, Any]:
        answer = await api.get("/api/repos/acme/tool")
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()["mirror"]
        return found

    async def cloned() -> None:
        async with _admin_api(server) as api:
            assert (await mirror(api) or {}).get("clone_status") == "cloned"

    await eventually(cloned, timeout=30)  # the page is not live: ask the API, then reload
    await page.reload()
    status = page.locator("#clone-status")
    await expect(status).to_contain_text("cloned")
    await expect(page.locator("#schedule")).to_contain_text("next update in")
    # Its v1.0.0 tag makes it a Go module under the root its source URL implies.
    await expect(page.locator("#go-modules")).to_contain_text("127.0.0.1/tool")
    await expect(page.locator("#go-modules .go-get")).to_have_text(
        f"GOPROXY={server.url}/goproxy GONOSUMDB=127.0.0.1/tool go get 127.0.0.1/tool@v1.0.0"
    )

    # The updater would take the request off the queue at once: the web role alone serves
    # the rest, so the queued request stays for the page and the API to show.
    server.stop()
    server = serve(tmp_path / "data", {**env, "REPODEPOT_ROLES": "web"})
    await page.goto(server.url + "/repos/acme/tool")
    await expect(page.locator("#schedule")).to_contain_text("next update in")
    await page.click("#update-now")
    await expect(page).to_have_url(server.url + "/repos/acme/tool")
    await expect(page.locator("#schedule")).to_contain_text(
        "an admin asked for an update: updating as soon as a worker is free"
    )
    async with _admin_api(server) as api:
        assert (await mirror(api))["queued"] == "admin"
        counts = (await api.get("/api/scheduler")).json()
    assert {key: counts[key] for key in ("mirrors", "cloned", "queued", "running")} == {
        "mirrors": 1,
        "cloned": 1,
        "queued": 1,
        "running": 0,
    }

    await page.goto(server.url + "/scheduler")
    queued = page.locator("#queue tbody tr")
    await expect(queued).to_have_count(1)
    await expect(queued.locator("td").nth(0)).to_have_text("acme/tool")
    await expect(queued.locator("td").nth(2)).to_have_text("admin")  # why it is queued
    shown = await page.locator("#scheduler-stats > div").evaluate_all(
        "cards => cards.map(card => [card.firstElementChild.textContent,"
        " card.textContent.slice(card.firstElementChild.textContent.length).trim()])"
    )
    assert dict(shown) == {
        "Mirrors": str(counts["mirrors"]),
        "Cloned": str(counts["cloned"]),
        "Queued": str(counts["queued"]),
        "Due now": str(counts["due"]),
        "Running": str(counts["running"]),
        "Failing": str(counts["failing"]),
        "Next due": dict(shown)["Next due"],  # a clock time, checked below
    }
    next_due = counts["next_due_at"]
    assert dict(shown)["Next due"] == (
        datetime.fromisoformat(next_due).strftime("%H:%M:%S UTC") if next_due else "—"
    )
    assert violations == []


def _admin_api(server: Server) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN}"})


async def test_the_api_docs_render_from_this_server_alone(
    tmp_path: Path, serve: type[Server], browser: Browser
) -> None:
    server = serve(tmp_path / "data", {"REPODEPOT_ADMIN_TOKEN": ADMIN, "REPODEPOT_ROLES": "web"})
    page = await browser.new_page()
    violations = csp_violations(page)
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))

    answer = await page.goto(server.url + "/docs")

    assert answer is not None and "content-security-policy" in answer.headers
    await expect(page.locator(".swagger-ui .info .title")).to_contain_text("repodepot")
    await expect(page.locator(".opblock-summary-path").first).to_be_visible()
    await expect(page.locator(".swagger-ui")).to_contain_text("/api/user")
    foreign = [url for url in requested if not url.startswith((server.url + "/", "data:"))]
    assert foreign == []
    assert violations == []


async def test_an_admin_s_pages_work_under_the_content_security_policy(
    tmp_path: Path, serve: type[Server], browser: Browser
) -> None:
    env = {
        "REPODEPOT_ADMIN_TOKEN": ADMIN,
        "REPODEPOT_ROLES": "web",  # nothing fetches: the URLs below go nowhere
        "REPODEPOT_ALLOWED_SCHEMES": "http",
        "REPODEPOT_OUTBOUND_ALLOWLIST": "127.0.0.1",
    }
    server = serve(tmp_path / "data", env)
    source = "http://127.0.0.1:9/acme/b.git"
    bearer = {"Authorization": f"Bearer {ADMIN}"}
    async with httpx.AsyncClient(base_url=server.url, headers=bearer) as api:
        host = await api.post(
            "/api/codehosts",
            json={"kind": "other", "name": "lab", "config": {"repos": [source]}},
        )
        assert host.status_code == 201, host.text
        job = await api.post("/api/imports", json={"url": source, "owner": "admin", "slug": "b"})
        assert job.status_code == 202, job.text
    page = await browser.new_page()
    violations = csp_violations(page)
    await page.goto(server.url + "/login?next=/imports")
    await page.fill("#token", ADMIN)
    await page.click("#login")

    for path in ("/repos", "/imports", "/imports/new", "/codehosts", "/scheduler"):
        answer = await page.goto(server.url + path)
        assert answer is not None and answer.status == 200
        assert "default-src 'self'" in answer.headers["content-security-policy"]
    # The job page draws its bar from a script, not from a style attribute.
    await page.goto(server.url + f"/imports/{job.json()['id']}")
    await expect(page.locator("#bar > div")).to_have_attribute("style", "width: 0%;")
    # Remove asks first (a static script now, not an onsubmit attribute).
    await page.goto(server.url + f"/codehosts/{host.json()['id']}")
    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.dismiss()))
    await page.click("#remove")
    await expect(page.locator("h1")).to_contain_text("lab")
    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.click("#remove")
    await expect(page.locator("#no-codehosts")).to_be_visible()
    assert violations == []
