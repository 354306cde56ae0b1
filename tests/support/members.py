"""Members for API tests: a user created through the API, and the headers of its token."""

from __future__ import annotations

import httpx

from repodepot.services import Services


async def member(client: httpx.AsyncClient, admin: dict[str, str], name: str) -> dict[str, str]:
    """Create member `name` with a token (as `admin`); its Authorization header."""
    created = await client.post("/api/users", json={"name": name}, headers=admin)
    assert created.status_code == 201, created.text
    token = await client.post("/api/tokens", json={"user": name, "name": "t"}, headers=admin)
    assert token.status_code == 201, token.text
    return {"Authorization": f"Bearer {token.json()['token']}"}


async def user_id(services: Services, name: str) -> int:
    """The id of user `name`."""
    return (await services.accounts.get_user(name)).id
