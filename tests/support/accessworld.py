"""The access matrix's world: three repositories of three levels, a connection's private
one, and one caller for each way of being allowed to read (tests/e2e/test_access*.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from repodepot.accounts import operator
from repodepot.db.models import Visibility
from repodepot.services import Services
from tests.support.eventually import eventually
from tests.support.githttp import GitHttpServer
from tests.support.members import member, user_id
from tests.support.repogen import generate
from tests.support.seed import seed_mirror

OPEN, INNER, CLOSED = "acme/open", "acme/inner", "acme/closed"
MISSING = "acme/nothing-here"
# Who reads what (besides `hosted`, which only `connection grant` and admins read).
READS = {
    "anonymous": {OPEN},
    "member": {OPEN, INNER},
    "user grant": {OPEN, INNER, CLOSED},
    "group grant": {OPEN, INNER, CLOSED},
    "codehost grant": {OPEN, INNER, CLOSED},
    "connection grant": {OPEN, INNER},
    "owner": {OPEN, INNER, CLOSED},
}


async def hosted_repository(services: Services, git_server: GitHttpServer) -> tuple[int, str]:
    """A private repository that an `other` connection yields: its connection and name."""
    generate(git_server.root / "hosted.git")
    created = await services.codehosts.create(
        operator(),
        kind="other",
        name="hosted",
        config={"repos": [git_server.url("hosted.git")], "repositoryPathPattern": "{host}/hosted"},
    )

    async def synced() -> str:  # a new connection's first sync starts at once
        names = [
            repo.name
            for repo in (await services.repositories.list(operator())).items
            if repo.name.endswith("/hosted")
        ]
        assert names, "the connection's first sync has not added its repository yet"
        return names[0]

    return created.id, await eventually(synced)


async def callers(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    services: Services,
    host_id: int,
    *,
    closed_source: Path | None = None,
) -> dict[str, dict[str, str]]:
    """Each caller of the matrix with its headers, and the grants that make it one.

    `acme/closed` is a mirror of `closed_source` if given, else of a generated history.
    """
    found: dict[str, dict[str, str]] = {"anonymous": {}}
    for name in ("member", "user grant", "group grant", "connection grant", "codehost grant"):
        found[name] = await member(client, admin, name.replace(" ", "-"))
    found["owner"] = await member(client, admin, "owner")
    closed = await seed_mirror(
        services,
        CLOSED,
        source=closed_source,
        visibility=Visibility.private,
        owner_id=await user_id(services, "owner"),
    )

    async def ok(answer: httpx.Response, status: int = 201) -> Any:
        assert answer.status_code == status, answer.text
        return answer.json()

    for group, user in (("readers", "group-grant"), ("platform", "connection-grant")):
        await ok(await client.post("/api/groups", json={"name": group}, headers=admin))
        added = await client.post(
            f"/api/groups/{group}/members", json={"user": user}, headers=admin
        )
        assert user in (await ok(added, 200))["members"]
    # The owner grants their own repository; an admin grants a connection.
    owner = found["owner"]
    await ok(
        await client.post(f"/api/repos/{CLOSED}/grants", json={"user": "user-grant"}, headers=owner)
    )
    await ok(
        await client.post(f"/api/repos/{CLOSED}/grants", json={"group": "readers"}, headers=owner)
    )
    await ok(
        await client.post(
            f"/api/codehosts/{host_id}/grants", json={"group": "platform"}, headers=admin
        )
    )
    # What a code host's permission sync keeps: a grant with source `codehost`, kept by
    # the connection (tests/e2e/test_permission_sync.py syncs real ones).
    async with services.sessions.begin() as session:
        codehost_grant = await user_id(services, "codehost-grant")
        await services.access.keep_codehost_grants(session, codehost_grant, host_id, [closed.id])
    return found
