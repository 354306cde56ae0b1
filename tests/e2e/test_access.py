"""Who may read what: visibility levels, user, group and connection-wide grants, on SQLite
and PostgreSQL, through every read the API answers.

Three seeded mirrors, `acme/open` (public), `acme/inner` (internal) and `acme/closed`
(private, owned by `owner`), and `hosted`, a private repository an `other` connection
yields. Each caller of the matrix asks for each repository's entry, the listing,
EnsureRevision, the branches and the sync status: what it may read answers 200, the
rest is the same 404 as a repository that does not exist. Grants are given through the
API, as an owner or admin would, and taken back the same way.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from repodepot.accounts import operator
from repodepot.db.models import GrantSource, Visibility
from repodepot.services import Services
from tests.support.eventually import eventually
from tests.support.githttp import GitHttpServer
from tests.support.members import member, user_id
from tests.support.repogen import generate, git
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
    client: httpx.AsyncClient, admin: dict[str, str], services: Services, host_id: int
) -> dict[str, dict[str, str]]:
    """Each caller of the matrix with its headers, and the grants that make it one."""
    found: dict[str, dict[str, str]] = {"anonymous": {}}
    for name in ("member", "user grant", "group grant", "connection grant", "codehost grant"):
        found[name] = await member(client, admin, name.replace(" ", "-"))
    found["owner"] = await member(client, admin, "owner")
    closed = await seed_mirror(
        services, CLOSED, visibility=Visibility.private, owner_id=await user_id(services, "owner")
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
    # What a code host's permission sync keeps: a grant with source `codehost`.
    await services.access.grant(
        operator(),
        repository=(closed.id, CLOSED),
        user="codehost-grant",
        source=GrantSource.codehost,
    )
    return found


@pytest.fixture
async def world(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    app_services: Services,
    git_server: GitHttpServer,
) -> tuple[dict[str, dict[str, str]], str, dict[str, str]]:
    """The callers, the hosted repository's name, and each seeded repository's HEAD."""
    await seed_mirror(app_services, OPEN, visibility=Visibility.public)
    await seed_mirror(app_services, INNER, visibility=Visibility.internal)
    host_id, hosted = await hosted_repository(app_services, git_server)
    found = await callers(client, admin_headers, app_services, host_id)
    heads = {
        name: git("--git-dir", str(app_services.storage.path(repo.id)), "rev-parse", "HEAD").strip()
        for name in (OPEN, INNER, CLOSED)
        for repo in [await app_services.repositories.get(operator(), name)]
    }
    return found, hosted, heads


@pytest.mark.parametrize("who", sorted(READS))
async def test_each_caller_reads_what_it_may_and_the_rest_is_not_found(
    client: httpx.AsyncClient,
    world: tuple[dict[str, dict[str, str]], str, dict[str, str]],
    who: str,
) -> None:
    found, hosted, heads = world
    headers = found[who]
    readable = READS[who] | ({hosted} if who == "connection grant" else set())

    listed = await client.get("/api/repos", params={"per_page": 100}, headers=headers)
    assert listed.status_code == 200, listed.text
    assert {item["name"] for item in listed.json()["items"]} == readable

    for name in (OPEN, INNER, CLOSED, hosted, MISSING):
        entry = await client.get(f"/api/repos/{name}", headers=headers)
        assert entry.status_code == (200 if name in readable else 404), (name, entry.text)
        if name not in readable:
            # The same answer as a repository that does not exist: nothing tells them apart.
            assert entry.json()["error"]["message"] == f"no repository named {name!r}"
            continue
        assert entry.json()["visibility"] in ("public", "internal", "private")
    for name, head in heads.items():
        want = 200 if name in readable else 404
        for path in (f"/commits/{head}", "/branches", "/sync-status", "/tags"):
            answer = await client.get(f"/api/repos/{name}{path}", headers=headers)
            assert answer.status_code == want, (name, path, answer.text)


async def test_admins_read_everything_and_see_each_level(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    world: tuple[dict[str, dict[str, str]], str, dict[str, str]],
) -> None:
    _, hosted, _ = world
    listed = (await client.get("/api/repos", headers=admin_headers)).json()["items"]
    assert {item["name"]: item["visibility"] for item in listed} == {
        OPEN: "public",
        INNER: "internal",
        CLOSED: "private",
        hosted: "private",
    }


async def test_grants_taken_back_close_at_once(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    world: tuple[dict[str, dict[str, str]], str, dict[str, str]],
) -> None:
    found, hosted, _ = world
    owner = found["owner"]
    grants = await client.get(f"/api/repos/{CLOSED}/grants", headers=owner)
    assert grants.status_code == 200, grants.text
    by_grantee = {(g["user"], g["group"], g["source"]): g for g in grants.json()}
    assert set(by_grantee) == {
        ("user-grant", None, "manual"),
        (None, "readers", "manual"),
        ("codehost-grant", None, "codehost"),
    }

    gone = await client.delete(
        f"/api/repos/{CLOSED}/grants/{by_grantee[('user-grant', None, 'manual')]['id']}",
        headers=owner,
    )
    assert gone.status_code == 204, gone.text
    assert (
        await client.get(f"/api/repos/{CLOSED}", headers=found["user grant"])
    ).status_code == 404

    left = await client.delete("/api/groups/readers/members/group-grant", headers=admin_headers)
    assert left.status_code == 204, left.text
    assert (
        await client.get(f"/api/repos/{CLOSED}", headers=found["group grant"])
    ).status_code == 404
    # The others keep theirs.
    assert (
        await client.get(f"/api/repos/{CLOSED}", headers=found["codehost grant"])
    ).status_code == 200
    assert (
        await client.get(f"/api/repos/{hosted}", headers=found["connection grant"])
    ).status_code == 200


async def test_only_owners_and_admins_manage_grants_and_only_admins_groups(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    world: tuple[dict[str, dict[str, str]], str, dict[str, str]],
) -> None:
    found, _, _ = world
    granted = found["user grant"]  # may read acme/closed, does not own it
    assert (await client.get(f"/api/repos/{CLOSED}/grants", headers=granted)).status_code == 403
    given = await client.post(
        f"/api/repos/{CLOSED}/grants", json={"user": "member"}, headers=granted
    )
    assert given.status_code == 403, given.text
    # One who may not even read it learns nothing: 404, as for a name that does not exist.
    hidden = await client.post(
        f"/api/repos/{CLOSED}/grants", json={"user": "member"}, headers=found["member"]
    )
    assert hidden.status_code == 404, hidden.text
    assert (await client.get("/api/groups", headers=found["owner"])).status_code == 403
    made = await client.post("/api/groups", json={"name": "mine"}, headers=found["owner"])
    assert made.status_code == 403, made.text
    assert (await client.get("/api/groups")).status_code == 401


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"user": "member", "group": "readers"}, 422, "user"),
        ({}, 422, "user"),
        ({"user": "nobody"}, 404, None),
        ({"group": "nobody"}, 404, None),
        ({"user": "user-grant"}, 409, None),
        ({"user": "member", "role": "write"}, 422, None),
    ],
)
async def test_bad_grants_are_refused_with_a_clear_error(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    world: tuple[dict[str, dict[str, str]], str, dict[str, str]],
    body: dict[str, str],
    status: int,
    field: str | None,
) -> None:
    answer = await client.post(f"/api/repos/{CLOSED}/grants", json=body, headers=admin_headers)
    assert answer.status_code == status, answer.text
    if field is not None:
        assert answer.json()["error"]["field"] == field


@pytest.mark.parametrize("name", ["", "Upper", "-lead", "a" * 65, "sp ace", "../x"])
async def test_bad_group_names_are_refused(
    client: httpx.AsyncClient, admin_headers: dict[str, str], name: str
) -> None:
    answer = await client.post("/api/groups", json={"name": name}, headers=admin_headers)
    assert answer.status_code == 422, answer.text
