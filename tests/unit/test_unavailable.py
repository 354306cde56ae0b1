"""Unavailable only for now (no storage node to take a repository): a 503 with Retry-After."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from repodepot.nodes.placement import owner
from repodepot.web.errors import install


async def test_no_active_node_is_a_503_with_retry_after_not_a_500() -> None:
    app = FastAPI()
    install(app)

    @app.get("/api/where")
    async def where() -> str:
        return owner(1, [])

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        answer = await client.get("/api/where")
    assert answer.status_code == 503
    assert int(answer.headers["retry-after"]) > 0
    assert answer.json()["error"]["code"] == "no_storage_nodes"
