"""A code host fork whose parent is mirrored here tracks that parent, on SQLite and PostgreSQL.

Fake GitHub, GitLab and Gitea list `acme/lib` and its fork `alice/lib` (and `bob/tool`,
a fork of a repository the connection leaves out). After a sync the fork's upstream is
the parent repository here, set automatically; GitHub, whose lists do not name a
fork's parent, is asked "Get a repository" once per fork, not once per sync; an upstream
set by hand is kept; with `upstream_from_fork_parent` off nothing is set or asked. With
real mirrors behind the fake host, the fork's branch is counted against its parent's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from repodepot.accounts import operator
from repodepot.services import Services
from repodepot.settings import Settings
from tests.e2e.test_codehosts import wait_for_sync
from tests.support.eventually import eventually
from tests.support.fakehosts import LISTING, PREFIX, FakeHost, Kind
from tests.support.githttp import GitHttpServer
from tests.support.history_repo import T0, build, commit
from tests.support.repogen import generate, git

Json = dict[str, Any]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "codehost_requests_per_second": 1000.0,
            "sync_poll_interval": 0.1,
            "update_poll_interval": 0.1,
            "ensure_fetch_interval": 0.0,
        }
    )


def forks_of(host: FakeHost) -> None:
    """acme/lib, its fork alice/lib, and bob/tool: a fork of other/up, which is left out."""
    lib = host.add("acme", "lib")
    host.add("alice", "lib", parent=lib.id)
    up = host.add("other", "up")
    host.add("bob", "tool", parent=up.id)


def config(host: FakeHost, **extra: Any) -> Json:
    return {
        "url": host.url,
        "token": host.token,
        "repositoryPathPattern": "{nameWithOwner}",
        "exclude": [{"name": "other/up"}],
        **LISTING[host.kind],
        **extra,
    }


def single(host: FakeHost, full_name: str) -> int:
    """How many times the one-repository endpoint of `full_name` was asked."""
    path = f"{PREFIX[host.kind]}/{'projects' if host.kind == 'gitlab' else 'repos'}/{full_name}"
    encoded = path.replace(full_name, full_name.replace("/", "%2F"))
    return sum(1 for asked, _ in host.requests if asked in (path, encoded))


async def connect(client: httpx.AsyncClient, headers: dict[str, str], host: FakeHost) -> int:
    created = await client.post(
        "/api/codehosts",
        json={"kind": host.kind, "name": "host", "config": config(host)},
        headers=headers,
    )
    assert created.status_code == 201, created.text
    host_id: int = created.json()["id"]
    return host_id


async def sync(client: httpx.AsyncClient, headers: dict[str, str], host_id: int) -> Json:
    asked = await client.post(f"/api/codehosts/{host_id}/sync", headers=headers)
    assert asked.status_code == 202, asked.text
    synced = await wait_for_sync(client, headers, host_id, asked.json()["requested_at"])
    assert synced["last_sync"]["status"] == "success", synced["last_sync"]
    return synced


async def upstream_of(client: httpx.AsyncClient, headers: dict[str, str], name: str) -> Any:
    answer = await client.get(f"/api/repos/{name}/sync-status", headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()["upstream"]


@pytest.mark.parametrize("kind", ["github", "gitlab", "gitea"])
async def test_a_synced_fork_tracks_its_mirrored_parent_and_github_is_asked_once_per_fork(
    client: httpx.AsyncClient, admin_headers: dict[str, str], kind: Kind
) -> None:
    with FakeHost(kind) as host:
        forks_of(host)
        host_id = await connect(client, admin_headers, host)
        first = await sync(client, admin_headers, host_id)
        assert first["repo_count"] == 3  # other/up is left out

        upstream = await upstream_of(client, admin_headers, "alice/lib")  # as the sync shows
        assert (upstream["repository"], upstream["url"], upstream["automatic"]) == (
            "acme/lib",
            None,
            True,
        )
        assert upstream["branches"] == ["main"]
        assert upstream["has_token"] is False
        assert await upstream_of(client, admin_headers, "bob/tool") is None  # parent not here
        assert await upstream_of(client, admin_headers, "acme/lib") is None  # not a fork
        asked = {name: single(host, name) for name in ("alice/lib", "bob/tool", "acme/lib")}
        if kind == "github":  # the lists have no `parent`: one Get a repository per fork
            assert asked == {"alice/lib": 1, "bob/tool": 1, "acme/lib": 0}
        else:  # GitLab and Gitea name the parent in the listing itself
            assert asked == {"alice/lib": 0, "bob/tool": 0, "acme/lib": 0}

        calls = len(host.requests)
        await sync(client, admin_headers, host_id)

        assert {name: single(host, name) for name in asked} == asked  # no call again
        assert len(host.requests) > calls  # the second sync did list the host
        again = await upstream_of(client, admin_headers, "alice/lib")
        assert (again["repository"], again["automatic"]) == ("acme/lib", True)


async def test_an_upstream_set_by_hand_is_not_replaced_by_the_next_sync(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    git_root: Path,
    git_server: GitHttpServer,
) -> None:
    generate(git_root / "elsewhere.git")
    with FakeHost("github") as host:
        forks_of(host)
        host_id = await connect(client, admin_headers, host)
        await sync(client, admin_headers, host_id)
        assert (await upstream_of(client, admin_headers, "alice/lib"))["automatic"] is True

        url = git_server.url("elsewhere.git")
        put = await client.put(
            "/api/repos/alice/lib/upstream", json={"url": url}, headers=admin_headers
        )
        assert put.status_code == 200, put.text
        await sync(client, admin_headers, host_id)

        kept = await upstream_of(client, admin_headers, "alice/lib")
        assert (kept["url"], kept["repository"], kept["automatic"]) == (url, None, False)


async def test_an_automatic_upstream_removed_stays_removed(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    with FakeHost("github") as host:
        forks_of(host)
        host_id = await connect(client, admin_headers, host)
        await sync(client, admin_headers, host_id)
        assert (await upstream_of(client, admin_headers, "alice/lib"))["automatic"] is True

        gone = await client.delete("/api/repos/alice/lib/upstream", headers=admin_headers)
        assert gone.status_code == 204, gone.text
        await sync(client, admin_headers, host_id)
        shown = await client.get("/api/repos/alice/lib/upstream", headers=admin_headers)
        assert shown.status_code == 404, shown.text
        again = await client.delete("/api/repos/alice/lib/upstream", headers=admin_headers)
        assert again.status_code == 404  # nothing left to remove

        # Setting one by hand is always possible again.
        put = await client.put(
            "/api/repos/alice/lib/upstream", json={"repository": "acme/lib"}, headers=admin_headers
        )
        assert put.status_code == 200, put.text
        assert put.json()["automatic"] is False


async def test_with_the_setting_off_no_parent_is_asked_or_tracked_until_it_is_on(
    settings: Settings, services: Services
) -> None:
    off = settings.model_copy(update={"upstream_from_fork_parent": False})
    with FakeHost("github") as host:
        forks_of(host)
        quiet = await Services.open(off)
        try:
            created = await quiet.codehosts.create(
                operator(), kind="github", name="host", config=config(host)
            )
            outcome = await quiet.codehosts.syncer.sync(created.id)
            assert outcome.added == 3, outcome.error
            status = await quiet.branches.sync_status(operator(), "alice/lib")
        finally:
            await quiet.close()
        assert status.upstream is None
        assert single(host, "alice/lib") == single(host, "bob/tool") == 0

        # The same database under the default (on): the next sync tracks the parent.
        await services.codehosts.syncer.sync(created.id)
        tracked = await services.branches.sync_status(operator(), "alice/lib")
        assert tracked.upstream is not None
        assert (tracked.upstream.repository, tracked.upstream.automatic) == ("acme/lib", True)
        assert single(host, "alice/lib") == 1


@pytest.fixture
def mirrored(git_root: Path, git_server: GitHttpServer, tmp_path: Path) -> Iterator[FakeHost]:
    """GitHub over real repositories: alice/lib has 1 commit of its own, acme/lib 2 more."""
    parent = build(tmp_path / "acme")
    fork = tmp_path / "alice"
    git("clone", "-q", str(parent), str(fork))
    commit(fork, "fork only", when=T0 + 600_000)
    for step in range(2):
        commit(parent, f"acme moves {step}", when=T0 + 700_000 + step)
    git("clone", "-q", "--bare", str(parent), str(git_root / "acme" / "lib.git"))
    git("clone", "-q", "--bare", str(fork), str(git_root / "alice" / "lib.git"))
    with FakeHost("github", clone_base=git_server.url("")) as host:
        lib = host.add("acme", "lib")
        host.add("alice", "lib", parent=lib.id)
        yield host


async def test_the_fork_is_counted_against_its_parent_s_mirror(
    client: httpx.AsyncClient, admin_headers: dict[str, str], mirrored: FakeHost
) -> None:
    host_id = await connect(client, admin_headers, mirrored)
    await sync(client, admin_headers, host_id)

    async def counted() -> Json:
        # Until both mirrors are cloned a fetch fails; asking again is what a user does.
        await client.post("/api/repos/alice/lib/upstream/fetch", headers=admin_headers)
        status: Json = (
            await client.get("/api/repos/alice/lib/sync-status", headers=admin_headers)
        ).json()
        assert status["upstream"]["last_error"] is None, status["upstream"]
        assert [(row["branch"], row["upstream_branch"]) for row in status["branches"]] == [
            ("main", "main")
        ]
        return status

    status = await eventually(counted, timeout=60, interval=0.2)
    row = status["branches"][0]
    assert (row["ahead"], row["behind"]) == (1, 2)
    assert (row["needs_push"], row["needs_pull"], row["diverged"], row["missing"]) == (
        True,
        True,
        True,
        False,
    )
    assert status["upstream"]["repository"] == "acme/lib"
