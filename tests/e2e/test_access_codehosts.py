"""A code host's repositories take its visibility; `privateVisibility` opens its private ones.

Fake GitHub (Enterprise), GitLab and Gitea each list a public, an internal and a private
repository. After a sync they are public, internal and private here: a member reads
the first two, not the third. With the connection's `privateVisibility: internal`, the
next sync makes the private one internal: every signed-in user reads it, nobody
without a token does.
"""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.test_codehosts import wait_for_sync
from tests.support.fakehosts import LISTING, FakeHost, Kind
from tests.support.members import member


async def synced(client: httpx.AsyncClient, admin: dict[str, str], host_id: int) -> dict[str, str]:
    asked = await client.post(f"/api/codehosts/{host_id}/sync", headers=admin)
    assert asked.status_code == 202, asked.text
    done = await wait_for_sync(client, admin, host_id, asked.json()["requested_at"])
    assert done["last_sync"]["status"] == "success", done["last_sync"]
    listed = await client.get("/api/repos", headers=admin)
    return {item["name"]: item["visibility"] for item in listed.json()["items"]}


@pytest.mark.parametrize("kind", ["github", "gitlab", "gitea"])
async def test_a_host_s_levels_are_kept_and_private_visibility_opens_its_private_ones(
    client: httpx.AsyncClient, admin_headers: dict[str, str], kind: Kind
) -> None:
    with FakeHost(kind) as host:
        host.add("acme", "open")
        host.add("acme", "inner", internal=True)
        host.add("acme", "closed", private=True)
        config = {
            "url": host.url,
            "token": host.token,
            "repositoryPathPattern": "{nameWithOwner}",
            **LISTING[kind],
        }
        created = await client.post(
            "/api/codehosts",
            json={"kind": kind, "name": "company", "config": config},
            headers=admin_headers,
        )
        assert created.status_code == 201, created.text
        host_id = created.json()["id"]
        assert await synced(client, admin_headers, host_id) == {
            "acme/open": "public",
            "acme/inner": "internal",
            "acme/closed": "private",
        }
        dev = await member(client, admin_headers, "dev")
        reads = {
            name: (await client.get(f"/api/repos/{name}", headers=dev)).status_code
            for name in ("acme/open", "acme/inner", "acme/closed")
        }
        assert reads == {"acme/open": 200, "acme/inner": 200, "acme/closed": 404}

        opened = {key: value for key, value in config.items() if key != "token"}
        patched = await client.patch(
            f"/api/codehosts/{host_id}",
            json={"config": {**opened, "privateVisibility": "internal"}},
            headers=admin_headers,
        )
        assert patched.status_code == 200, patched.text
        assert (await synced(client, admin_headers, host_id))["acme/closed"] == "internal"
        assert (await client.get("/api/repos/acme/closed", headers=dev)).status_code == 200
        assert (await client.get("/api/repos/acme/closed")).status_code == 404  # no token


async def test_a_private_visibility_that_is_not_a_level_is_refused(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    config = {"url": "http://127.0.0.1:9/", "token": "t", "privateVisibility": "public"}
    created = await client.post(
        "/api/codehosts",
        json={"kind": "gitlab", "name": "company", "config": config},
        headers=admin_headers,
    )
    assert created.status_code == 422, created.text
    assert "privateVisibility" in created.text
