"""The storage nodes page: admins see each node's state, repositories, disk and heartbeat."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from repodepot.accounts import operator
from repodepot.services import Services
from tests.conftest import ADMIN_TOKEN
from tests.support.members import member
from tests.support.seed import seed_mirror
from tests.support.websession import log_in


@pytest.fixture
async def browser(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client with its own cookies: one person's browser."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def test_admins_see_each_node_and_others_do_not(
    browser: httpx.AsyncClient,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    app_services: Services,
) -> None:
    node = app_services.settings.node_name
    await app_services.nodes.register(node, None, 50 * 2**30)  # its own loop may beat too
    await app_services.nodes.register("gs-2", "http://127.0.0.1:8102", None)
    await app_services.nodes.drain(operator(), "gs-2")
    for name in ("acme/one", "acme/two"):
        await seed_mirror(app_services, name)

    assert (await browser.get("/nodes")).status_code in (303, 401)  # to the login page
    reader = await member(client, admin_headers, "reader")
    await log_in(browser, reader["Authorization"].removeprefix("Bearer "))
    assert (await browser.get("/nodes")).status_code == 403

    browser.cookies.clear()
    await log_in(browser, ADMIN_TOKEN)
    page = await browser.get("/nodes")
    assert page.status_code == 200, page.text
    assert 'id="nav-nodes"' in page.text
    row = page.text.split(f'id="node-{node}"')[1].split("</tr>")[0]
    assert "active" in row and "<td>2</td>" in row
    assert re.search(r"<td>[0-9]+\.[0-9] GiB</td>", row), row
    drained = page.text.split('id="node-gs-2"')[1].split("</tr>")[0]
    assert "draining" in drained and "<td>0</td>" in drained and "unknown" in drained
    assert "http://127.0.0.1:8102" in drained
