"""Who may read what: visibility levels, user, group and connection-wide grants, on SQLite
and PostgreSQL, through every read the API answers.

Three seeded mirrors, `acme/open` (public), `acme/inner` (internal) and `acme/closed`
(private, owned by `owner`), and `hosted`, a private repository an `other` connection
yields. Each caller of the matrix asks for each repository's entry, the listing,
EnsureRevision, the branches, the sync status and the page: what it may read answers 200, the
rest is the same 404 as a repository that does not exist. Grants are given through the
API, as an owner or admin would, and taken back the same way.
"""

from __future__ import annotations

import httpx
import pytest

from repodepot.accounts import operator
from repodepot.db.models import Visibility
from repodepot.services import Services
from tests.e2e.test_branch_status import wait_fetch
from tests.support.accessworld import (
    CLOSED,
    INNER,
    MISSING,
    OPEN,
    READS,
    callers,
    hosted_repository,
)
from tests.support.githttp import GitHttpServer
from tests.support.repogen import generate, git
from tests.support.seed import seed_mirror


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
        page = await client.get(f"/repos/{name}", headers=headers)  # the page takes a token too
        assert page.status_code == want, (name, "page")


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
        ({"user": "nul\u0000"}, 404, None),  # PostgreSQL refuses a NUL in text: never a 500
        ({"group": "nul\u0000"}, 404, None),
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


async def test_exec_runs_for_those_who_may_read_and_needs_a_token(
    client: httpx.AsyncClient,
    world: tuple[dict[str, dict[str, str]], str, dict[str, str]],
) -> None:
    found, _, _ = world
    for who, headers in found.items():
        for name in (OPEN, INNER, CLOSED):
            answer = await client.post(
                f"/api/repos/{name}/exec", json={"args": ["rev-parse", "HEAD"]}, headers=headers
            )
            want = 401 if who == "anonymous" else 200 if name in READS[who] else 404
            assert answer.status_code == want, (who, name, answer.text)


async def test_the_org_wide_sync_status_lists_only_what_each_caller_reads(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    git_server: GitHttpServer,
    world: tuple[dict[str, dict[str, str]], str, dict[str, str]],
) -> None:
    found, _, _ = world
    generate(git_server.root / "up.git")
    for name in (OPEN, INNER, CLOSED):
        put = await client.put(
            f"/api/repos/{name}/upstream",
            json={"url": git_server.url("up.git")},
            headers=admin_headers,
        )
        assert put.status_code == 200, put.text
        await wait_fetch(client, name, admin_headers, lambda status: status["branches"] or None)
    for who, headers in found.items():
        listed = await client.get("/api/sync-status", params={"per_page": 100}, headers=headers)
        assert listed.status_code == 200, listed.text
        assert {row["repository"] for row in listed.json()["items"]} == READS[who], who
