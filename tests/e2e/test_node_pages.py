"""The storage nodes page: admins see each node and the moves, and change nodes from it."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI
from playwright.async_api import Browser, expect

from repodepot.accounts import operator
from repodepot.gitserver.service import adopt_in, start_moves_in
from repodepot.services import Services
from repodepot.settings import Settings
from tests.conftest import ADMIN_TOKEN
from tests.e2e.conftest import Server
from tests.support.eventually import eventually
from tests.support.members import member
from tests.support.seed import seed_mirror
from tests.support.websession import csrf_of, log_in, same_origin

AT_ONCE = 3


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # The web role alone: no heartbeat, no move planner or copier changes what a test set up.
    return settings.model_copy(update={"roles": ["web"], "node_moves": AT_ONCE})


@pytest.fixture
async def web(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client with its own cookies: one person's browser."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


def row_of(html: str, name: str) -> str:
    """Node `name`'s row of the page."""
    return html.split(f'id="node-{name}"')[1].split("</tr>")[0]


def under(html: str, name: str) -> str:
    """The row under node `name`'s: where a refusal of a change to it is shown."""
    return html.split(f'id="node-{name}"')[1].split("</tr>")[1]


def cells(row: str) -> list[str]:
    """The text of each cell of a row, tags left out."""
    return [
        re.sub(r"<[^>]+>", "", cell).strip()
        for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
    ]


def alert_of(html: str) -> str:
    """The refusal's message, as the person reads it."""
    match = re.search(r'role="alert" id="node-error">([^<]*)<', html)
    assert match is not None, html
    return unescape(match.group(1))


async def states(svc: Services) -> dict[str, tuple[str, float]]:
    return {
        node.name: (node.state.value, node.weight) for node in await svc.nodes.listing(operator())
    }


async def two_nodes(svc: Services) -> str:
    """This process's node owning two mirrors, and an empty `gs-2`; this node's name."""
    node = svc.settings.node_name
    await svc.nodes.register(node, None, 50 * 2**30)
    await svc.nodes.register("gs-2", "http://127.0.0.1:8102", None)
    for name in ("acme/one", "acme/two"):
        await seed_mirror(svc, name)
    return node


async def test_admins_see_each_node_and_others_do_not(
    web: httpx.AsyncClient,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    app_services: Services,
) -> None:
    node = await two_nodes(app_services)
    await app_services.nodes.drain(operator(), "gs-2")

    assert (await web.get("/nodes")).status_code in (303, 401)  # to the login page
    reader = await member(client, admin_headers, "reader")
    await log_in(web, reader["Authorization"].removeprefix("Bearer "))
    assert (await web.get("/nodes")).status_code == 403

    web.cookies.clear()
    await log_in(web, ADMIN_TOKEN)
    page = await web.get("/nodes")
    assert page.status_code == 200, page.text
    assert 'id="nav-nodes"' in page.text
    assert "Drain a node to move its repositories to the others" in page.text
    assert "Change a node with" not in page.text
    row = row_of(page.text, node)
    assert "active" in row and "<td>2</td>" in row
    assert re.search(r"<td>[0-9]+\.[0-9] GiB</td>", row), row
    assert f'id="drain-{node}"' in row and f'id="activate-{node}"' not in row
    drained = row_of(page.text, "gs-2")
    assert "draining" in drained and "<td>0</td>" in drained and "unknown" in drained
    assert "http://127.0.0.1:8102" in drained
    assert 'id="activate-gs-2"' in drained and 'id="drain-gs-2"' not in drained


async def test_an_admin_drains_activates_weighs_and_removes_through_the_forms(
    web: httpx.AsyncClient, app_services: Services
) -> None:
    node = await two_nodes(app_services)
    await log_in(web, ADMIN_TOKEN)
    csrf = csrf_of((await web.get("/nodes")).text)

    async def post(path: str, **form: str) -> str:
        answer = await web.post(path, data={**form, "csrf_token": csrf}, headers=same_origin(web))
        assert answer.status_code == 303, answer.text
        page = await web.get(answer.headers["location"])
        assert page.status_code == 200, page.text
        return unescape(page.text)

    page = await post(f"/nodes/{node}/drain")
    assert (
        f"{node} is draining: its 2 repositories move to the other nodes, {AT_ONCE} at a time."
    ) in page
    assert "draining" in row_of(page, node) and f'id="activate-{node}"' in row_of(page, node)
    assert (await states(app_services))[node] == ("draining", 1.0)

    page = await post(f"/nodes/{node}/activate")
    assert f"{node} is active again" in page
    assert (await states(app_services))[node] == ("active", 1.0)

    page = await post("/nodes/gs-2/weight", weight=" 2.5 ")
    said = "the repositories whose first choice changed with it move"
    assert f"gs-2's weight is 2.5: {said}, {AT_ONCE} at a time." in page
    assert "<td>2.5</td>" in row_of(page, "gs-2") and 'value="2.5"' in row_of(page, "gs-2")
    assert (await states(app_services))["gs-2"] == ("active", 2.5)

    page = await post("/nodes/gs-2/drain")
    assert "gs-2 is draining and owns no repository: it can be removed." in page
    page = await post("/nodes/gs-2/remove")
    assert "gs-2 was removed." in page and 'id="node-gs-2"' not in page
    assert await states(app_services) == {node: ("active", 1.0)}

    page = await post(f"/nodes/{node}/drain")  # the last active node: nowhere to go
    assert f"{node} is draining, but no other node is active: its 2 repositories stay" in page


async def test_only_admins_change_nodes_and_only_from_the_page(
    web: httpx.AsyncClient,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    app_services: Services,
) -> None:
    node = await two_nodes(app_services)
    before = await states(app_services)
    changes = {
        f"/nodes/{node}/drain": {},
        f"/nodes/{node}/activate": {},
        f"/nodes/{node}/weight": {"weight": "3"},
        "/nodes/gs-2/remove": {},
    }
    reader = await member(client, admin_headers, "reader")
    csrf = await log_in(web, reader["Authorization"].removeprefix("Bearer "))
    for path, form in changes.items():
        answer = await web.post(path, data={**form, "csrf_token": csrf}, headers=same_origin(web))
        assert answer.status_code == 403, (path, answer.text)

    web.cookies.clear()
    await log_in(web, ADMIN_TOKEN)
    for path, form in changes.items():
        answer = await web.post(path, data=form, headers=same_origin(web))  # no token
        assert answer.status_code == 403, (path, answer.text)
        assert "security token" in answer.text and 'id="error-message"' in answer.text
    assert await states(app_services) == before


async def test_refused_changes_show_their_reason_beside_the_node(
    web: httpx.AsyncClient, app_services: Services
) -> None:
    node = await two_nodes(app_services)
    await app_services.nodes.register("gs-old", None, None)
    await log_in(web, ADMIN_TOKEN)
    csrf = csrf_of((await web.get("/nodes")).text)

    async def refused(path: str, status: int, **form: str) -> str:
        answer = await web.post(path, data={**form, "csrf_token": csrf}, headers=same_origin(web))
        assert answer.status_code == status, (path, answer.text)
        assert 'id="nodes"' in answer.text  # the page again, not an error page
        return answer.text

    page = await refused(f"/nodes/{node}/remove", 409)
    assert "still owns 2 repositories: drain it first" in alert_of(page)
    assert 'role="alert"' in under(page, node) and 'role="alert"' not in under(page, "gs-2")

    for weight, said in [
        ("abc", "not 'abc'"),
        ("0", "not 0.0"),
        ("-1", "not -1.0"),
        ("inf", "not inf"),
        ("nan", "not nan"),
        ("", "not ''"),
    ]:
        page = await refused("/nodes/gs-2/weight", 422, weight=weight)
        assert "a weight is a" in alert_of(page) and said in alert_of(page), weight
        assert 'role="alert"' in under(page, "gs-2")

    page = await refused("/nodes/ghost/drain", 404)
    assert alert_of(page) == "no storage node named 'ghost'"
    assert page.index('role="alert"') < page.index('id="nodes"')  # no row to stand beside

    for hostile in ("GS-2", "a b", "<script>", "x" * 65, "-gs", "gs-2."):
        page = await refused(f"/nodes/{quote(hostile, safe='')}/drain", 422)
        assert "is not a node name" in alert_of(page), hostile
        assert "<script>" not in page
    traversal = await web.post(
        "/nodes/..%2F..%2Fetc/drain", data={"csrf_token": csrf}, headers=same_origin(web)
    )
    assert traversal.status_code in (404, 422), traversal.text

    # A node silent past node_dead_after while the others beat is dead: no drain for it.
    silent = {record.name: record for record in await app_services.nodes.listing(operator())}
    for beating in (node, "gs-2"):
        await app_services.nodes.heartbeat(beating, None)
    dead_after = timedelta(seconds=app_services.settings.node_dead_after)
    at = silent["gs-old"].heartbeat_at + dead_after + timedelta(microseconds=1)
    assert await app_services.nodes.mark_dead(at) == ["gs-old"]
    page = await refused("/nodes/gs-old/drain", 409)
    assert "storage node 'gs-old' is dead" in alert_of(page)
    assert 'role="alert"' in under(page, "gs-old")

    assert {name: state for name, (state, _) in (await states(app_services)).items()} == {
        "gs-2": "active",
        "gs-old": "dead",
        node: "active",
    }
    assert (await states(app_services))["gs-2"][1] == 1.0


async def test_the_moves_show_each_repository_by_name(
    web: httpx.AsyncClient, app_services: Services
) -> None:
    node = await two_nodes(app_services)
    await log_in(web, ADMIN_TOKEN)
    page = (await web.get("/nodes")).text
    assert f"At most {AT_ONCE} moves run at once (<code>REPODEPOT_NODE_MOVES</code>)" in page
    assert 'id="no-moves">No repository is moving.' in page

    leaving = await app_services.repositories.get(operator(), "acme/two")
    coming = await app_services.repositories.create(name="acme/coming", owner_id=None)
    async with app_services.sessions.begin() as session:
        await adopt_in(session, coming.id, shard="gs-2", at=datetime.now(UTC), interval=60.0)
        assert await start_moves_in(session, [leaving.id], was=node, to="gs-2") == 1
        assert await start_moves_in(session, [coming.id], was="gs-2", to=node) == 1
    claimed = await app_services.gitserver.claim_moves("copier", 1)  # leased: copying here
    assert [move.repository_id for move in claimed] == [coming.id]

    page = (await web.get("/nodes")).text
    assert "No repository is moving." not in page
    moving = page.split(f'id="move-{leaving.id}"')[1].split("</tr>")[0]
    assert '<a href="/repos/acme/two">acme/two</a>' in moving
    assert cells(moving) == ["acme/two", node, "gs-2", "waiting"]
    copying = page.split(f'id="move-{coming.id}"')[1].split("</tr>")[0]
    assert cells(copying) == ["acme/coming", "gs-2", node, "copying"]
    assert "acme/one" not in page.split('id="moves"')[1]


@pytest.mark.browser
async def test_an_admin_drains_a_node_in_the_browser_after_confirming(
    tmp_path: Path, serve: type[Server], browser: Browser
) -> None:
    server = serve(tmp_path / "data", {"REPODEPOT_ADMIN_TOKEN": ADMIN_TOKEN})
    page = await browser.new_page()
    await page.goto(server.url + "/login?next=/nodes")
    await page.fill("#token", ADMIN_TOKEN)
    await page.click("#login")

    async def registered() -> None:  # the gitserver role registers its node as it starts
        await page.reload()
        assert await page.locator("#node-local").count() == 1

    await eventually(registered, timeout=20, interval=0.2)
    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.dismiss()))
    await page.click("#drain-local")
    await expect(page.locator("#node-local .status")).to_have_text("active")
    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.click("#drain-local")
    await expect(page.locator("#notice")).to_contain_text("local is draining")
    await expect(page.locator("#node-local .status")).to_have_text("draining")
    await expect(page.locator("#activate-local")).to_be_visible()
