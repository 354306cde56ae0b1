"""Another site's page cannot make changes with a logged-in browser's cookie, nor log it in."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from repodepot.services import Services
from repodepot.settings import Settings
from tests.conftest import ADMIN_TOKEN
from tests.support.githttp import GitHttpServer
from tests.support.websession import csrf_of, log_in, same_origin

EVIL = "http://evil.example"

# Every route that changes something and accepts the session cookie.
PAGE_CHANGES = [
    ("POST", "/imports/new"),
    ("POST", "/imports/1/cancel"),
    ("POST", "/codehosts"),
    ("POST", "/codehosts/1/sync"),
    ("POST", "/codehosts/1/confirm-deletions"),
    ("POST", "/codehosts/1/remove"),
    ("POST", "/repos/acme/tool/update"),
    ("POST", "/repos/acme/tool/grants"),
    ("POST", "/repos/acme/tool/grants/1/remove"),
    ("POST", "/groups"),
    ("POST", "/groups/x/members"),
    ("POST", "/groups/x/members/admin/remove"),
    ("POST", "/account/codehosts/1"),
    ("POST", "/account/codehosts/1/sync"),
    ("POST", "/account/codehosts/1/remove"),
    ("POST", "/nodes/local/drain"),
    ("POST", "/nodes/local/activate"),
    ("POST", "/nodes/local/weight"),
    ("POST", "/nodes/local/remove"),
]
API_CHANGES = [
    ("POST", "/api/users"),
    ("POST", "/api/tokens"),
    ("DELETE", "/api/tokens/1"),
    ("POST", "/api/repos/acme/tool/exec"),
    ("POST", "/api/repos/acme/tool/update"),
    ("PATCH", "/api/repos/acme/tool"),
    ("POST", "/api/imports"),
    ("POST", "/api/imports/1/cancel"),
    ("POST", "/api/codehosts"),
    ("PATCH", "/api/codehosts/1"),
    ("DELETE", "/api/codehosts/1"),
    ("POST", "/api/codehosts/1/sync"),
    ("POST", "/api/codehosts/1/held-deletions/confirm"),
    ("POST", "/api/groups"),
    ("POST", "/api/groups/x/members"),
    ("DELETE", "/api/groups/x/members/admin"),
    ("POST", "/api/repos/acme/tool/grants"),
    ("DELETE", "/api/repos/acme/tool/grants/1"),
    ("POST", "/api/codehosts/1/grants"),
    ("PUT", "/api/user/codehost-accounts/1"),
    ("DELETE", "/api/user/codehost-accounts/1"),
    ("POST", "/api/user/codehost-accounts/1/sync"),
]
# What a page on another site can send without a preflight: a form, or text/plain.
CROSS_SITE = [
    pytest.param({"Origin": EVIL}, id="origin"),
    pytest.param({"Sec-Fetch-Site": "cross-site"}, id="sec-fetch-site"),
    pytest.param(
        {"Sec-Fetch-Site": "same-site", "Origin": "http://sub.testserver"}, id="subdomain"
    ),
    pytest.param({"Origin": "null"}, id="sandboxed-frame"),
    pytest.param({}, id="no-headers-no-token"),
]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"roles": ["web"]})  # nothing runs what is queued


@pytest.fixture
async def web(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client that keeps cookies, as the victim's browser does."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def _seed(client: httpx.AsyncClient, headers: dict[str, str], url: str) -> None:
    host = await client.post(
        "/api/codehosts",
        json={"kind": "other", "name": "lab", "config": {"repos": [url]}},
        headers=headers,
    )
    assert host.status_code == 201, host.text
    job = await client.post(
        "/api/imports", json={"url": url, "owner": "admin", "slug": "tool"}, headers=headers
    )
    assert job.status_code == 202, job.text


async def _counts(client: httpx.AsyncClient, headers: dict[str, str]) -> tuple[object, ...]:
    hosts = (await client.get("/api/codehosts", headers=headers)).json()
    imports = (await client.get("/api/imports", headers=headers)).json()
    tokens = (await client.get("/api/tokens", headers=headers)).json()
    users = (await client.get("/api/users", headers=headers)).json()
    return (
        [(host["id"], host["name"], host["next_sync_at"]) for host in hosts],
        [(job["id"], job["status"]) for job in imports["items"]],
        [(token["id"], token["revoked_at"]) for token in tokens["items"]],
        users["total"],
    )


@pytest.mark.parametrize("headers", CROSS_SITE)
async def test_changes_with_the_cookie_from_another_site_are_refused(
    web: httpx.AsyncClient,
    admin_headers: dict[str, str],
    git_server: GitHttpServer,
    headers: dict[str, str],
) -> None:
    await _seed(web, admin_headers, git_server.url("tool.git"))
    await log_in(web, ADMIN_TOKEN)
    before = await _counts(web, admin_headers)
    form = {"url": git_server.url("other.git"), "owner": "admin", "name": "x", "kind": "other"}

    for method, path in PAGE_CHANGES:
        answer = await web.request(method, path, data=form, headers=headers)
        assert answer.status_code == 403, (path, answer.text)
        assert 'id="error-message"' in answer.text  # the HTML error page
    for method, path in API_CHANGES:
        answer = await web.request(
            method,
            path,
            content=b'{"name": "x"}',
            headers={**headers, "Content-Type": "text/plain"},
        )
        assert answer.status_code == 403, (path, answer.text)
        assert answer.json()["error"]["code"] == "csrf"

    assert await _counts(web, admin_headers) == before
    assert (await web.get("/api/user")).status_code == 200  # still logged in


async def test_a_token_from_another_session_is_refused(
    web: httpx.AsyncClient, app: FastAPI
) -> None:
    # The attacker's own page gives them a valid token, for their session, not the victim's.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as attacker:
        theirs = csrf_of((await attacker.get("/login")).text)
    await log_in(web, ADMIN_TOKEN)

    answer = await web.post(
        "/api/tokens", json={"name": "stolen"}, headers={"X-CSRF-Token": theirs}
    )

    assert answer.status_code == 403
    assert "out of date" in answer.json()["error"]["message"]


async def test_the_same_changes_from_our_pages_go_through(
    web: httpx.AsyncClient, admin_headers: dict[str, str], git_server: GitHttpServer
) -> None:
    token = await log_in(web, ADMIN_TOKEN)

    imported = await web.post(
        "/imports/new",
        data={
            "url": git_server.url("tool.git"),
            "owner": "admin",
            "slug": "tool",
            "csrf_token": token,
        },
        headers=same_origin(web),
    )
    assert imported.status_code == 303, imported.text
    job_page = await web.get(imported.headers["location"])
    cancelled = await web.post(
        imported.headers["location"] + "/cancel",
        data={"csrf_token": csrf_of(job_page.text)},
        headers=same_origin(web),
    )
    assert cancelled.status_code == 303
    added = await web.post(
        "/codehosts",
        data={
            "kind": "other",
            "name": "lab",
            "query": git_server.url("a.git"),
            "csrf_token": token,
        },
        headers=same_origin(web),
    )
    assert added.status_code == 303, added.text
    host = added.headers["location"]
    synced = await web.post(host + "/sync", data={"csrf_token": token})  # no Origin: token
    assert synced.status_code == 303
    removed = await web.post(host + "/remove", data={"csrf_token": token}, headers=same_origin(web))
    assert removed.status_code == 303
    # A script sends the token in a header, with a JSON body.
    made = await web.post(
        "/api/tokens", json={"name": "from-a-script"}, headers={"X-CSRF-Token": token}
    )
    assert made.status_code == 201, made.text

    jobs = (await web.get("/api/imports", headers=admin_headers)).json()["items"]
    assert [job["status"] for job in jobs] == ["cancelled"]
    assert (await web.get("/api/codehosts", headers=admin_headers)).json() == []


async def test_bearer_token_calls_need_no_csrf_token(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    made = await client.post(
        "/api/tokens", json={"name": "ci"}, headers={**admin_headers, "Origin": EVIL}
    )

    assert made.status_code == 201, made.text
    revoked = await client.delete(f"/api/tokens/{made.json()['id']}", headers=admin_headers)
    assert revoked.status_code == 200


@pytest.mark.parametrize("headers", CROSS_SITE)
async def test_another_site_cannot_log_the_browser_in(
    web: httpx.AsyncClient, app_services: Services, headers: dict[str, str]
) -> None:
    # Login CSRF: the victim would work, unaware, in the attacker's account.
    _, attackers = await app_services.accounts.create_token("admin", "attacker's")
    await web.get("/login")  # the victim's browser has a pre-login session and token

    answer = await web.post("/login", data={"token": attackers, "next": "/repos"}, headers=headers)

    assert answer.status_code == 403
    assert (await web.get("/api/user")).status_code == 401


async def test_another_site_cannot_log_the_browser_out(web: httpx.AsyncClient) -> None:
    await log_in(web, ADMIN_TOKEN)

    answer = await web.post("/logout", headers={"Origin": EVIL})

    assert answer.status_code == 403
    assert (await web.get("/api/user")).status_code == 200
