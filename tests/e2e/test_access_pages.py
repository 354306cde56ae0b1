"""Access on the pages: what each caller sees, the owner's grants form, the groups page.

Without a login the repository list holds the public repositories and offers to log
in; internal and private ones are the same 404 page as a name that does not exist. A
repository's owner sees "Who may read it" and grants a user from the form, who then
reads it; an admin puts a user in a group from the groups page and takes them out. A
member links their code host account on their page and is told when the host refuses it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from repodepot.db.models import Visibility
from repodepot.services import Services
from tests.conftest import ADMIN_TOKEN
from tests.e2e.test_permission_sync import connect
from tests.support.eventually import eventually
from tests.support.fakehosts import FakeHost
from tests.support.members import member, user_id
from tests.support.seed import seed_mirror
from tests.support.websession import csrf_of, log_in, same_origin


@pytest.fixture
async def world(
    client: httpx.AsyncClient, admin_headers: dict[str, str], app_services: Services
) -> dict[str, str]:
    """acme/open, acme/inner, acme/closed (owned by `owner`); each member's API token."""
    tokens = {}
    for name in ("owner", "reader"):
        headers = await member(client, admin_headers, name)
        tokens[name] = headers["Authorization"].removeprefix("Bearer ")
    await seed_mirror(app_services, "acme/open", visibility=Visibility.public)
    await seed_mirror(app_services, "acme/inner", visibility=Visibility.internal)
    owner = await user_id(app_services, "owner")
    await seed_mirror(app_services, "acme/closed", visibility=Visibility.private, owner_id=owner)
    return tokens


@pytest.fixture
async def browser(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A second client with its own cookies: one person's browser."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def test_without_a_login_only_public_repositories_show(
    browser: httpx.AsyncClient, world: dict[str, str]
) -> None:
    listed = await browser.get("/repos")
    assert listed.status_code == 200, listed.text
    assert "acme/open" in listed.text and 'id="login-link"' in listed.text
    assert "acme/inner" not in listed.text and "acme/closed" not in listed.text
    assert (await browser.get("/repos/acme/open")).status_code == 200
    for name in ("acme/inner", "acme/closed", "acme/nothing"):
        hidden = await browser.get(f"/repos/{name}")
        assert hidden.status_code == 404, name
        assert f"no repository named {name!r}" in hidden.text.replace("&#39;", "'")


async def test_the_owner_grants_a_user_from_the_page_who_then_reads_it(
    browser: httpx.AsyncClient, app: FastAPI, world: dict[str, str]
) -> None:
    await log_in(browser, world["owner"])
    page = await browser.get("/repos/acme/closed")
    assert page.status_code == 200 and 'id="access"' in page.text and 'id="no-grants"' in page.text
    csrf = csrf_of(page.text)

    unknown = await browser.post(
        "/repos/acme/closed/grants",
        data={"kind": "user", "grantee": "ghost", "csrf_token": csrf},
        headers=same_origin(browser),
    )
    assert unknown.status_code == 404 and "no user named" in unknown.text
    given = await browser.post(
        "/repos/acme/closed/grants",
        data={"kind": "user", "grantee": "reader", "csrf_token": csrf},
        headers=same_origin(browser),
    )
    assert given.status_code == 303, given.text
    assert "<strong>reader</strong>" in (await browser.get("/repos/acme/closed")).text

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as reader:
        await log_in(reader, world["reader"])
        seen = await reader.get("/repos/acme/closed")
        assert seen.status_code == 200
        assert 'id="access"' not in seen.text  # who may read it is for its owner and admins


async def test_an_admin_runs_the_groups_from_their_page(
    browser: httpx.AsyncClient, world: dict[str, str]
) -> None:
    csrf = await log_in(browser, ADMIN_TOKEN)

    async def post(path: str, **data: str) -> httpx.Response:
        return await browser.post(
            path, data={**data, "csrf_token": csrf}, headers=same_origin(browser)
        )

    assert (await post("/groups", name="platform")).status_code == 303
    assert (await post("/groups/platform/members", user="reader")).status_code == 303
    page = await browser.get("/groups")
    assert page.status_code == 200 and 'id="group-platform"' in page.text
    assert '<span class="member">reader' in page.text
    bad = await post("/groups", name="Not A Name")
    assert bad.status_code == 422 and "lowercase" in bad.text
    assert (await post("/groups/platform/members/reader/remove")).status_code == 303
    assert '<span class="member">reader' not in (await browser.get("/groups")).text


async def test_members_may_not_open_the_groups_page(
    browser: httpx.AsyncClient, world: dict[str, str]
) -> None:
    await log_in(browser, world["reader"])
    assert (await browser.get("/groups")).status_code == 403


async def test_a_member_links_their_account_from_the_page_and_sees_a_refusal(
    browser: httpx.AsyncClient,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    world: dict[str, str],
) -> None:
    with FakeHost("github") as host:
        lib = host.add("acme", "lib", private=True)
        host_id = await connect(client, admin_headers, host, "company")
        token = host.user("reader")
        host.allow(token, lib.id)
        csrf = await log_in(browser, world["reader"])
        page = await browser.get("/account")
        assert page.status_code == 200 and f'id="link-{host_id}"' in page.text

        linked = await browser.post(
            f"/account/codehosts/{host_id}",
            data={"token": token, "csrf_token": csrf},
            headers=same_origin(browser),
        )
        assert linked.status_code == 303, linked.text

        async def synced(status: str) -> str:
            shown = (await browser.get("/account")).text
            assert f'<span class="status {status}">' in shown, shown
            return shown

        shown = await eventually(lambda: synced("success"), timeout=30)
        assert token not in shown
        assert (await browser.get("/repos/acme/lib")).status_code == 200
        everyone = await client.get("/codehost-accounts", headers=admin_headers)
        assert everyone.status_code == 200 and "reader" in everyone.text

        host.revoke(token)
        asked = await browser.post(
            f"/account/codehosts/{host_id}/sync",
            data={"csrf_token": csrf},
            headers=same_origin(browser),
        )
        assert asked.status_code == 303
        refused = await eventually(lambda: synced("rejected"), timeout=30)
        assert "The host refused your token" in refused and token not in refused
