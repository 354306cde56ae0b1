"""Branch status through the real app, on SQLite and PostgreSQL, against real git.

Branches against the default branch, upstreams set through the API and fetched by the
background loop from a loopback git server, the org-wide list, and the wall around the
hidden upstream namespace (smart HTTP, the Go proxy, EnsureRevision). Every count is
compared with `git rev-list --left-right --count` on the same two commits, computed in
a scratch repository that fetched both sides.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from repodepot.accounts import operator
from repodepot.db.base import Base
from repodepot.db.models import AuditEntry, Visibility
from repodepot.git import commands
from repodepot.services import Services
from repodepot.settings import Settings
from tests.conftest import ADMIN_TOKEN
from tests.e2e.test_smarthttp import Start
from tests.e2e.test_smarthttp import run_git as git_client
from tests.support.branchstatus import advance, pair_counts, rev_list, upstream_of
from tests.support.eventually import eventually
from tests.support.githttp import GitHttpServer
from tests.support.gomods import WorkTree
from tests.support.history_repo import T0, build, commit, run_git
from tests.support.members import member, user_id
from tests.support.repogen import Spec, git
from tests.support.seed import seed_mirror

Json = dict[str, Any]
TOKEN = "glpat-upstream-secret-0123456789abcdef"
URL_TOKEN = "ghp_in-the-url-secret-0123456789abcdef"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Each "fetch now" runs at once (the 30 s floor between fetches is tested elsewhere).
    return settings.model_copy(update={"ensure_fetch_interval": 0.0})


def heads(repo: Path) -> dict[str, str]:
    out = git(
        "--git-dir",
        str(repo),
        "for-each-ref",
        "--format=%(refname:lstrip=2) %(objectname)",
        "refs/heads/",
    )
    return dict(line.split() for line in out.splitlines())


def shapes(work: Path) -> None:
    """Branches of every shape against main: merges, criss-cross, orphan, equal, recent."""
    run_git(work, "checkout", "-q", "-b", "topic/old", "main~6")
    commit(work, "old topic", when=T0 + 800_000)
    run_git(work, "checkout", "-q", "-b", "merger", "main~8")
    commit(work, "before merge", when=T0 + 810_000)
    run_git(work, "merge", "-q", "--no-ff", "-s", "ours", "-m", "merge feature", "feature")
    run_git(work, "checkout", "-q", "-b", "cc1", "main~10")
    x = commit(work, "x", when=T0 + 820_000)
    run_git(work, "checkout", "-q", "-b", "cc2", "main~10")
    y = commit(work, "y", when=T0 + 821_000)
    run_git(work, "checkout", "-q", "cc1")
    run_git(work, "merge", "-q", "--no-ff", "-s", "ours", "-m", "cc1 takes y", y)
    run_git(work, "checkout", "-q", "cc2")
    run_git(work, "merge", "-q", "--no-ff", "-s", "ours", "-m", "cc2 takes x", x)
    run_git(work, "checkout", "-q", "--orphan", "orphan")
    commit(work, "unrelated", when=T0 + 830_000)
    run_git(work, "checkout", "-q", "-b", "topic/new", "main~2")
    commit(work, "fresh work", when=int(time.time()) - 3600)
    run_git(work, "checkout", "-q", "main")
    run_git(work, "branch", "equal", "main")


async def test_branches_are_counted_like_rev_list_filtered_sorted_and_paged(
    app_services: Services,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    tmp_path: Path,
) -> None:
    work = build(tmp_path / "work")
    shapes(work)
    bob = await member(client, admin_headers, "bob")
    await member(client, admin_headers, "alice")
    alice = await user_id(app_services, "alice")
    record = await seed_mirror(app_services, "alice/app", source=work, owner_id=alice)
    mirror = app_services.storage.path(record.id)
    url = "/api/repos/alice/app/branches"

    answer = await client.get(url, params={"per_page": 100}, headers=admin_headers)
    assert answer.status_code == 200, answer.text
    page = answer.json()
    expected = heads(mirror)
    assert page["total"] == len(expected) == len(page["items"])
    assert page["items"][0]["name"] == "main" and page["items"][0]["is_default"]
    for item in page["items"]:
        counted = rev_list(mirror, f"refs/heads/{item['name']}", "refs/heads/main")
        assert (item["ahead"], item["behind"]) == counted, item["name"]
        assert item["commit"]["sha"] == expected[item["name"]]
        assert item["is_default"] == (item["name"] == "main")
    by_name = {item["name"]: item for item in page["items"]}
    assert (by_name["equal"]["ahead"], by_name["equal"]["behind"]) == (0, 0)
    assert by_name["orphan"]["ahead"] == 1 and by_name["orphan"]["behind"] == 25
    assert by_name["topic/new"]["commit"]["subject"] == "fresh work"
    updated = [item["commit"]["committed_at"] for item in page["items"][1:]]
    assert updated == sorted(updated, reverse=True)  # newest first after the default

    paged: list[str] = []
    for number in range(1, 6):
        one = await client.get(url, params={"per_page": 2, "page": number}, headers=admin_headers)
        assert one.json()["total"] == len(expected)
        paged += [item["name"] for item in one.json()["items"]]
    assert paged == [item["name"] for item in page["items"]]

    async def names(**params: Any) -> list[str]:
        listed = await client.get(url, params=params, headers=admin_headers)
        assert listed.status_code == 200, listed.text
        return [item["name"] for item in listed.json()["items"]]

    assert await names(sort="name", per_page=100) == ["main", *sorted(set(expected) - {"main"})]
    assert await names(q="TOPIC", sort="name") == ["topic/new", "topic/old"]
    assert await names(state="active") == ["main", "topic/new"]  # the default always
    assert "topic/new" not in await names(state="stale", per_page=100)
    assert (
        await client.get(url, params={"sort": "size"}, headers=admin_headers)
    ).status_code == 422

    assert (await client.get(url, headers=bob)).status_code == 404  # alice's private one
    await seed_mirror(app_services, "acme/empty", spec=Spec(commits=0))
    empty = await client.get("/api/repos/acme/empty/branches", headers=admin_headers)
    assert empty.status_code == 200, empty.text
    assert (empty.json()["items"], empty.json()["total"]) == ([], 0)


@pytest.fixture
def served(tmp_path: Path, git_root: Path) -> tuple[Path, Path]:
    """A fork's work tree `fork` and its upstream `up.git` (served), both at the same history."""
    work = build(tmp_path / "fork")
    upstream_of(work, git_root / "up.git")
    return work, git_root / "up.git"


async def test_put_upstream_refuses_what_it_must_naming_the_field(
    app_services: Services,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    git_server: GitHttpServer,
    served: tuple[Path, Path],
) -> None:
    work, _ = served
    bob = await member(client, admin_headers, "bob")
    await member(client, admin_headers, "alice")
    alice = await user_id(app_services, "alice")
    await seed_mirror(
        app_services, "alice/open", source=work, owner_id=alice, visibility=Visibility.public
    )
    await seed_mirror(app_services, "alice/closed", source=work, owner_id=alice)
    url = "/api/repos/alice/open/upstream"
    good = git_server.url("up.git")
    refusals = [
        ({"url": "file:///etc/passwd"}, "url"),
        ({"url": "ext::sh -c touch% /tmp/pwned"}, "url"),
        ({"url": "http://10.0.0.1/x.git"}, "url"),
        ({"url": "http://169.254.169.254/latest.git"}, "url"),
        ({"url": good, "repository": "alice/closed"}, "url"),
        ({}, "url"),
        ({"url": good, "branches": ["a:*"]}, "branches"),
        ({"url": good, "branches": ["HEAD"]}, "branches"),
        ({"url": good, "branches": ["bad..name"]}, "branches"),
        ({"url": good, "branches": [""]}, "branches"),
        ({"url": good, "interval": 5}, "interval"),
        ({"repository": "alice/open"}, "repository"),
        ({"repository": "alice/closed", "token": "x"}, "token"),
    ]
    for body, field in refusals:
        answer = await client.put(url, json=body, headers=admin_headers)
        assert answer.status_code == 422, (body, answer.text)
        error = answer.json()["error"]
        assert error["field"] == field, (body, error)
    shown = await client.get(url, headers=admin_headers)
    assert shown.status_code == 404  # nothing was kept from a refused request

    as_bob = await client.put(url, json={"url": good}, headers=bob)
    assert as_bob.status_code == 403, as_bob.text
    hidden = await client.put("/api/repos/alice/closed/upstream", json={"url": good}, headers=bob)
    assert hidden.status_code == 404
    assert (await client.delete(url, headers=bob)).status_code == 403
    assert (await client.get(url, headers=bob)).status_code == 404  # none yet, and readable


async def wait_fetch(
    client: httpx.AsyncClient,
    name: str,
    headers: dict[str, str],
    expect: Callable[[Json], object] = lambda status: None,
    *,
    failed: bool = False,
) -> Json:
    """Ask for a fetch of `name`'s upstream; wait for the loop to answer as `expect` says.

    A fetch that began before the change it should see ends first and answers the old
    state; the one asked for meanwhile follows it, so this waits on the state itself.
    """
    asked = await client.post(f"/api/repos/{name}/upstream/fetch", headers=headers)
    assert asked.status_code == 202, asked.text
    polls = 0

    async def done() -> Json:
        nonlocal polls
        polls += 1
        if polls % 50 == 0:  # every 5 s, ask again, as a user would click again
            again = await client.post(f"/api/repos/{name}/upstream/fetch", headers=headers)
            assert again.status_code == 202, again.text
        status: Json = (await client.get(f"/api/repos/{name}/sync-status", headers=headers)).json()
        upstream = status["upstream"]
        if failed:
            assert upstream["error_kind"] is not None, upstream
        else:
            assert upstream["last_error"] is None, upstream
            assert upstream["last_fetched_at"] is not None, upstream
        expect(status)
        return status

    return await eventually(done, timeout=60, interval=0.1)


def by_pair(status: Json) -> dict[tuple[str, str], Json]:
    return {(row["branch"], row["upstream_branch"]): row for row in status["branches"]}


def assert_counted(
    rows: dict[tuple[str, str], Json], scratch: Path, mirror: Path, upstream: Path
) -> None:
    """Each pair's commits are both sides' heads now, and its counts rev-list's."""
    assert rows, "no tracked pair yet"
    local, upper = heads(mirror), heads(upstream)
    for (mine, theirs), row in rows.items():
        assert (row["local_sha"], row["upstream_sha"]) == (local.get(mine), upper.get(theirs))
        assert row["missing"] == (mine not in local or theirs not in upper)
        if row["missing"]:
            continue
        counted = pair_counts(scratch, mirror, mine, upstream, theirs)
        assert (row["ahead"], row["behind"]) == counted, (mine, theirs)
        assert row["needs_push"] == (counted[0] > 0) and row["needs_pull"] == (counted[1] > 0)
        assert row["diverged"] == (counted[0] > 0 and counted[1] > 0)


async def test_tracking_through_force_push_deletion_and_an_unreachable_upstream(
    app_services: Services,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    git_root: Path,
    tmp_path: Path,
) -> None:
    work = build(tmp_path / "fork")
    run_git(work, "branch", "release/1", "main~3")
    run_git(work, "branch", "release/2", "main~5")
    record = await seed_mirror(app_services, "acme/fork", source=work)
    mirror = app_services.storage.path(record.id)
    # The upstream calls its main `master`; it moved on master and release/1.
    run_git(work, "branch", "-m", "main", "master")
    upstream = git_root / "up.git"
    upstream_of(work, upstream)
    advance(work, "master", 2, "upstream master")
    advance(work, "release/1", 1, "upstream release", start=10)
    run_git(work, "push", "-q", "origin", "master", "release/1")
    scratch = tmp_path / "scratch.git"
    server = GitHttpServer(git_root).__enter__()
    try:
        body = {"url": server.url("up.git"), "branches": ["main:master", "release/*"]}
        put = await client.put("/api/repos/acme/fork/upstream", json=body, headers=admin_headers)
        assert put.status_code == 200, put.text
        assert put.json()["branches"] == ["main:master", "release/*"]

        def counted(status: Json) -> None:
            assert set(by_pair(status)) == {
                ("main", "master"),
                ("release/1", "release/1"),
                ("release/2", "release/2"),
            }
            assert_counted(by_pair(status), scratch, mirror, upstream)

        status = await wait_fetch(client, "acme/fork", admin_headers, counted)
        rows = by_pair(status)
        assert (rows[("main", "master")]["behind"], rows[("release/1", "release/1")]["behind"]) == (
            2,
            1,
        )
        assert not any(row["stale"] or row["missing"] for row in rows.values())
        assert set(status["upstream"]["last_fetch_ms"]) == {"network", "pack", "refs", "db"}

        # Force-push: upstream master rewritten under the fork's main → diverged.
        run_git(work, "checkout", "-q", "master")
        run_git(work, "reset", "-q", "--hard", "master~3")
        commit(work, "rewritten upstream", when=T0 + 700_000)
        run_git(work, "push", "-q", "-f", "origin", "master")
        rows = by_pair(await wait_fetch(client, "acme/fork", admin_headers, counted))
        main = rows[("main", "master")]
        assert main["diverged"] and main["needs_pull"] and main["needs_push"]

        # A branch deleted upstream: its pair stays, marked missing.
        run_git(work, "push", "-q", "origin", ":release/1")
        rows = by_pair(await wait_fetch(client, "acme/fork", admin_headers, counted))
        gone = rows[("release/1", "release/1")]
        assert gone["missing"] and gone["upstream_sha"] is None
        assert gone["local_sha"] == heads(mirror)["release/1"]
        kept = {pair: (row["ahead"], row["behind"]) for pair, row in rows.items()}
    finally:
        server.__exit__(None, None, None)

    # Unreachable: a typed error, the old counts kept and marked stale.
    failed = await wait_fetch(client, "acme/fork", admin_headers, failed=True)
    assert failed["upstream"]["error_kind"] == "network", failed
    assert failed["upstream"]["last_error"]
    rows = by_pair(failed)
    assert {pair: (row["ahead"], row["behind"]) for pair, row in rows.items()} == kept
    assert all(row["stale"] for row in rows.values())
    behind = await client.get("/api/sync-status", headers=admin_headers)
    assert all(row["stale"] for row in behind.json()["items"])


async def test_an_upstream_that_is_another_repository_here_is_fetched_from_its_mirror(
    app_services: Services,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    tmp_path: Path,
) -> None:
    origin_work = build(tmp_path / "origin")
    fork_work = tmp_path / "fork"
    git("clone", "-q", str(origin_work), str(fork_work))
    commit(fork_work, "fork only", when=T0 + 600_000)
    advance(origin_work, "main", 3, "origin moves")
    origin = await seed_mirror(app_services, "acme/origin", source=origin_work)
    fork = await seed_mirror(app_services, "acme/fork", source=fork_work)
    put = await client.put(
        "/api/repos/acme/fork/upstream", json={"repository": "acme/origin"}, headers=admin_headers
    )
    assert put.status_code == 200, put.text
    assert (put.json()["repository"], put.json()["url"], put.json()["branches"]) == (
        "acme/origin",
        None,
        ["main"],
    )
    rows = by_pair(
        await wait_fetch(
            client,
            "acme/fork",
            admin_headers,
            lambda status: assert_counted(
                by_pair(status),
                tmp_path / "scratch.git",
                app_services.storage.path(fork.id),
                app_services.storage.path(origin.id),
            ),
        )
    )
    assert (rows[("main", "main")]["ahead"], rows[("main", "main")]["behind"]) == (1, 3)


def dump_database(services: Services) -> Any:
    async def dump() -> str:
        found = []
        async with services.sessions() as session:
            for table in Base.metadata.sorted_tables:
                found += [repr(row) for row in (await session.execute(select(table))).all()]
        return "\n".join(found)

    return dump()


async def test_a_private_upstream_token_is_used_and_never_shown_stored_or_logged(
    app_services: Services,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    git_root: Path,
    tmp_path: Path,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    work = build(tmp_path / "fork")
    record = await seed_mirror(app_services, "acme/fork", source=work)
    await seed_mirror(app_services, "acme/other", source=work)
    upstream_of(work, git_root / "up.git")
    advance(work, "main", 2, "private upstream")
    run_git(work, "push", "-q", "origin", "main")
    answers: list[str] = []
    with (
        GitHttpServer(git_root, auth=("bot", TOKEN)) as server,
        GitHttpServer(git_root, auth=("bot", URL_TOKEN)) as second,
    ):
        url = server.url("up.git")
        put = await client.put(
            "/api/repos/acme/fork/upstream",
            json={"url": url, "token": TOKEN, "username": "bot"},
            headers=admin_headers,
        )
        assert put.status_code == 200, put.text
        assert (put.json()["url"], put.json()["has_token"]) == (url, True)
        status = await wait_fetch(
            client, "acme/fork", admin_headers, lambda s: by_pair(s)[("main", "main")]
        )
        assert by_pair(status)[("main", "main")]["behind"] == 2  # the token was used
        assert (
            by_pair(status)[("main", "main")]["upstream_sha"]
            == git("-C", str(work), "rev-parse", "main").strip()
        )
        # A token inside the URL is taken out of it and kept like the other.
        second_url = second.url("up.git")
        in_url = second.url("up.git", userinfo=f"bot:{URL_TOKEN}")
        other = await client.put(
            "/api/repos/acme/other/upstream", json={"url": in_url}, headers=admin_headers
        )
        assert other.status_code == 200, other.text
        assert (other.json()["url"], other.json()["has_token"]) == (second.url("up.git"), True)
        fetched = await wait_fetch(
            client, "acme/other", admin_headers, lambda s: by_pair(s)[("main", "main")]
        )
        assert by_pair(fetched)[("main", "main")]["behind"] == 2
        for path in (
            "/api/repos/acme/fork/upstream",
            "/api/repos/acme/fork/sync-status",
            "/api/repos/acme/other/upstream",
            "/api/sync-status",
            "/api/repos/acme/fork/branches",
        ):
            answers.append((await client.get(path, headers=admin_headers)).text)
        assert any(code == 401 for _, _, code in server.requests)  # it does ask for one
    answers += [put.text, other.text]
    async with app_services.sessions() as session:
        audit = (await session.scalars(select(AuditEntry))).all()
    audited = [json.loads(entry.details) for entry in audit if "upstream" in entry.action]
    assert len(audited) == 2 and audited[0]["token"] is True and audited[1]["url"] == second_url
    database = await dump_database(app_services)
    assert url in database and second_url in database
    raw = b""
    if settings.database_url and settings.database_url.startswith("sqlite"):
        for file in settings.data_dir.parent.glob("test.db*"):
            raw += file.read_bytes()
        assert raw
    logged = caplog.text + "".join(repr(r.__dict__) for r in caplog.records)
    assert "upstream.fetch" in logged  # the fetches were logged
    for secret in (TOKEN, URL_TOKEN):
        assert not any(secret in text for text in answers)
        assert secret not in json.dumps(audited)
        assert secret not in database
        assert secret.encode() not in raw
        assert secret not in logged
    assert record.id  # the fork's own repository row is untouched by the upstream's token


async def test_the_org_wide_list_shows_only_readable_repositories_behind_paged(
    app_services: Services,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    git_server: GitHttpServer,
    served: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    work, upstream = served
    alice_headers = await member(client, admin_headers, "alice")
    bob = await member(client, admin_headers, "bob")
    alice = await user_id(app_services, "alice")
    secret = await seed_mirror(app_services, "alice/secret", source=work, owner_id=alice)
    opened = await seed_mirror(app_services, "acme/open", source=work, visibility=Visibility.public)
    advance(work, "main", 2, "upstream moves")
    run_git(work, "push", "-q", "origin", "main")
    even = await seed_mirror(app_services, "acme/even", source=work, visibility=Visibility.public)
    for record in (secret, opened, even):
        put = await client.put(
            f"/api/repos/{record.name}/upstream",
            json={"url": git_server.url("up.git")},
            headers=admin_headers,
        )
        assert put.status_code == 200, put.text
        mirror = app_services.storage.path(record.id)

        def fetched(status: Json, mirror: Path = mirror) -> None:
            assert_counted(by_pair(status), tmp_path / "scratch.git", mirror, upstream)

        await wait_fetch(client, record.name, admin_headers, fetched)

    async def behind(headers: dict[str, str], **params: Any) -> Json:
        answer = await client.get(
            "/api/sync-status", params={"needs_pull": "true", **params}, headers=headers
        )
        assert answer.status_code == 200, answer.text
        page: Json = answer.json()
        assert all(row["needs_pull"] and row["behind"] == 2 for row in page["items"])
        return page

    everything = await behind(admin_headers)
    assert sorted(row["repository"] for row in everything["items"]) == ["acme/open", "alice/secret"]
    assert everything["total"] == 2
    paged = []
    for number in (1, 2, 3):
        page = await behind(admin_headers, per_page=1, page=number)
        assert page["total"] == 2
        paged += [row["repository"] for row in page["items"]]
    assert sorted(paged) == ["acme/open", "alice/secret"]
    as_bob = await behind(bob)
    assert ([row["repository"] for row in as_bob["items"]], as_bob["total"]) == (["acme/open"], 1)
    as_alice = await behind(alice_headers)
    assert as_alice["total"] == 2
    all_rows = await client.get("/api/sync-status", headers=bob)
    assert {row["repository"] for row in all_rows.json()["items"]} == {"acme/open", "acme/even"}
    secret_status = await client.get("/api/repos/alice/secret/sync-status", headers=bob)
    assert secret_status.status_code == 404


MODULE = "example.com/acme/fork"


async def test_the_upstream_namespace_never_reaches_clients(
    settings: Settings, live_server: Start, git_root: Path, tmp_path: Path
) -> None:
    live = await live_server(settings)
    svc = live.services
    work = WorkTree(tmp_path / "fork")
    work.commit("v1", T0, {"go.mod": f"module {MODULE}\n", "lib.go": "package lib\n"})
    work.git("tag", "v1.0.0")
    record = await seed_mirror(svc, "acme/fork", source=work.path, visibility=Visibility.public)
    await svc.repositories.set_go_import_root(operator(), "acme/fork", MODULE)
    mirror = svc.storage.path(record.id)
    upstream = git_root / "up.git"
    git("clone", "-q", "--bare", str(work.path), str(upstream))
    # Upstream moves on with Go code on main and a new branch, and tags a release: the
    # fetch brings the tracked branches only, and none of it may reach a client.
    up = WorkTree(tmp_path / "up-work")
    up.git("pull", "-q", str(upstream), "main")
    up.commit(
        "v2 work", T0 + 60, {"go.mod": f"module {MODULE}\n\ngo 1.21\n", "new.go": "package lib\n"}
    )
    up.git("tag", "v1.1.0")
    up.git("branch", "next")
    up.git("push", "-q", str(upstream), "main", "next", "v1.1.0")
    hidden = up.git("rev-parse", "main").strip()

    async with httpx.AsyncClient(base_url=live.url, headers=ADMIN, timeout=60) as http:
        before = (await http.get(f"/goproxy/{MODULE}/@v/list")).text
        assert before.split() == ["v1.0.0"]
        with GitHttpServer(git_root) as server:
            put = await http.put(
                "/api/repos/acme/fork/upstream",
                json={"url": server.url("up.git"), "branches": ["main", "next"]},
            )
            assert put.status_code == 200, put.text

            def fetched(status: Json) -> None:
                assert by_pair(status)[("main", "main")]["upstream_sha"] == hidden

            await wait_fetch(http, "acme/fork", {}, fetched)
        copy = svc.storage.upstream_path(record.id)
        assert f"{hidden} refs/upstream/main" in git(
            "--git-dir", str(copy), "for-each-ref", "--format=%(objectname) %(refname)"
        )  # the fetch did bring it (into the upstream copy)

        # Smart HTTP: neither the refs nor the objects, on either protocol.
        url = f"{live.url}/git/acme/fork"
        for protocol in ("0", "2"):
            listed = await git_client("ls-remote", url, token=ADMIN_TOKEN, protocol=protocol)
            assert listed.returncode == 0, listed.stderr
            assert "refs/upstream" not in listed.stdout and hidden not in listed.stdout
            assert "refs/heads/main" in listed.stdout
            clone = tmp_path / f"clone-v{protocol}.git"
            cloned = await git_client(
                "clone", "-q", "--mirror", url, str(clone), token=ADMIN_TOKEN, protocol=protocol
            )
            assert cloned.returncode == 0, cloned.stderr
            assert "refs/upstream" not in git("--git-dir", str(clone), "for-each-ref")
            assert git("--git-dir", str(clone), "for-each-ref") == git(
                "--git-dir", str(mirror), "for-each-ref"
            )
            by_id = await git_client(
                "--git-dir",
                str(clone),
                "fetch",
                "-q",
                url,
                hidden,
                token=ADMIN_TOKEN,
                protocol=protocol,
            )
            assert by_id.returncode != 0  # not served by its id either
            missing = await git_client("--git-dir", str(clone), "cat-file", "-e", hidden)
            assert missing.returncode != 0

        # The branch list, the Go proxy and EnsureRevision know nothing of it.
        branches = (await http.get("/api/repos/acme/fork/branches")).json()["items"]
        assert [b["name"] for b in branches] == ["main"]
        assert (await http.get(f"/goproxy/{MODULE}/@v/list")).text == before
        assert (await http.get(f"/goproxy/{MODULE}/@v/v1.1.0.info")).status_code == 404
        assert (await http.get(f"/goproxy/{MODULE}/@v/{hidden[:12]}.info")).status_code == 404
        assert (await http.get(f"/goproxy/{MODULE}/@v/next.info")).status_code == 404
        for rev in ("upstream/main", "refs/upstream/main", hidden):
            answer = await http.get(f"/api/repos/acme/fork/commits/{rev}")
            assert answer.status_code in (404, 422), (rev, answer.text)
            assert "v2 work" not in answer.text  # not the upstream commit
            listed_log = await http.get("/api/repos/acme/fork/commits", params={"ref": rev})
            assert listed_log.status_code in (404, 422), (rev, listed_log.text)
            assert "v2 work" not in listed_log.text


async def test_the_log_of_a_full_commit_id_the_mirror_lacks_is_404(
    app_services: Services, client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    await seed_mirror(app_services, "acme/app", spec=Spec(commits=3))
    answer = await client.get(
        "/api/repos/acme/app/commits", params={"ref": "ab" * 20}, headers=admin_headers
    )
    assert answer.status_code == 404, answer.text


async def test_a_wrong_token_fails_as_auth_a_kept_token_works_and_removal_forgets_all(
    app_services: Services,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    git_root: Path,
    tmp_path: Path,
) -> None:
    work = build(tmp_path / "fork")
    await seed_mirror(app_services, "acme/fork", source=work)
    upstream_of(work, git_root / "up.git")
    advance(work, "main", 1, "upstream")
    run_git(work, "push", "-q", "origin", "main")
    wrong = "glpat-wrong-token-0123456789abcdef"
    url = "/api/repos/acme/fork/upstream"
    with GitHttpServer(git_root, auth=("bot", TOKEN)) as server:
        body = {"url": server.url("up.git"), "username": "bot", "token": wrong}
        assert (await client.put(url, json=body, headers=admin_headers)).status_code == 200
        failed = await wait_fetch(client, "acme/fork", admin_headers, failed=True)
        assert failed["upstream"]["error_kind"] == "auth", failed["upstream"]
        assert wrong not in json.dumps(failed)
        body["token"] = TOKEN
        assert (await client.put(url, json=body, headers=admin_headers)).status_code == 200
        await wait_fetch(client, "acme/fork", admin_headers, lambda s: by_pair(s)[("main", "main")])
        # Tracking other branches of the same URL keeps the token: it still fetches.
        kept = await client.put(
            url,
            json={"url": server.url("up.git"), "branches": ["main", "feature"]},
            headers=admin_headers,
        )
        assert kept.json()["has_token"] is True, kept.text
        status = await wait_fetch(
            client, "acme/fork", admin_headers, lambda s: ("feature", "feature") in by_pair(s)
        )
        assert by_pair(status)[("main", "main")]["behind"] == 1
    # Another origin does not inherit it.
    elsewhere = await client.put(
        url, json={"url": "http://127.0.0.1:9/up.git"}, headers=admin_headers
    )
    assert elsewhere.json()["has_token"] is False, elsewhere.text
    closed = await wait_fetch(client, "acme/fork", admin_headers, failed=True)
    assert closed["upstream"]["error_kind"] == "network" and closed["branches"] == []

    removed = await client.delete(url, headers=admin_headers)
    assert removed.status_code == 204
    assert (await client.get(url, headers=admin_headers)).status_code == 404
    after = await client.get("/api/repos/acme/fork/sync-status", headers=admin_headers)
    assert after.json() == {"upstream": None, "branches": []}
    org = (await client.get("/api/sync-status", headers=admin_headers)).json()
    assert org["total"] == 0, org
    again = await client.post(f"{url}/fetch", headers=admin_headers)
    assert again.status_code == 404
    assert (await client.delete(url, headers=admin_headers)).status_code == 404


async def test_a_private_upstream_repository_is_not_revealed_to_readers_of_its_tracker(
    app_services: Services,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    tmp_path: Path,
) -> None:
    work = build(tmp_path / "work")
    bob = await member(client, admin_headers, "bob")
    await seed_mirror(app_services, "acme/secret", source=work)  # private, bob can't read it
    await seed_mirror(app_services, "acme/open", source=work, visibility=Visibility.public)
    put = await client.put(
        "/api/repos/acme/open/upstream", json={"repository": "acme/secret"}, headers=admin_headers
    )
    assert put.status_code == 200, put.text
    await wait_fetch(client, "acme/open", admin_headers, lambda s: by_pair(s)[("main", "main")])
    assert (await client.get("/api/repos/acme/secret", headers=bob)).status_code == 404
    seen = [
        (await client.get(path, headers=bob)).text
        for path in (
            "/api/repos/acme/open/sync-status",
            "/api/repos/acme/open/upstream",
            "/api/sync-status",
        )
    ]
    assert not any("acme/secret" in text for text in seen), seen


@pytest.fixture
def paused_listing(monkeypatch: pytest.MonkeyPatch) -> tuple[asyncio.Event, asyncio.Event]:
    """(listing, release): a fetch's `ls-remote` of the upstream waits for `release`.

    The real git runs once released; this only pins the moment a fetch is in flight.
    """
    listing, release = asyncio.Event(), asyncio.Event()
    real = commands.ls_remote_heads

    async def paused(*args: Any, **kwargs: Any) -> Any:
        listing.set()
        await release.wait()
        return await real(*args, **kwargs)

    monkeypatch.setattr(commands, "ls_remote_heads", paused)
    return listing, release


async def _fork_tracking(services: Services, served: tuple[Path, Path], url: str) -> int:
    work, _ = served
    record = await seed_mirror(services, "acme/fork", source=work)
    advance(work, "main", 1, "upstream")
    run_git(work, "push", "-q", "origin", "main")
    await services.branches.set_upstream(operator(), "acme/fork", url=url)
    assert await services.branches.claim_one("test-fetcher", record.id)
    return record.id


async def test_a_fetch_running_when_the_upstream_changes_is_not_recorded_for_the_new_one(
    services: Services,
    git_server: GitHttpServer,
    served: tuple[Path, Path],
    paused_listing: tuple[asyncio.Event, asyncio.Event],
) -> None:
    listing, release = paused_listing
    fork = await _fork_tracking(services, served, git_server.url("up.git"))
    running = asyncio.create_task(services.branches.refresh("test-fetcher", fork))
    await listing.wait()
    other = "http://127.0.0.1:9/other.git"
    await services.branches.set_upstream(operator(), "acme/fork", url=other)
    release.set()
    await running
    status = await services.branches.sync_status(operator(), "acme/fork")
    assert status.upstream is not None and status.upstream.url == other
    assert status.upstream.last_fetched_at is None  # never fetched from `other`
    assert status.branches == []  # no counts against `other` that came from up.git


async def test_a_fetch_running_when_the_upstream_is_removed_leaves_no_rows(
    services: Services,
    git_server: GitHttpServer,
    served: tuple[Path, Path],
    paused_listing: tuple[asyncio.Event, asyncio.Event],
) -> None:
    listing, release = paused_listing
    fork = await _fork_tracking(services, served, git_server.url("up.git"))
    running = asyncio.create_task(services.branches.refresh("test-fetcher", fork))
    await listing.wait()
    # Removal forgets the rows at once, then waits for the mirror's lock (the fetch).
    removing = asyncio.create_task(services.branches.remove_upstream(operator(), "acme/fork"))

    async def forgotten() -> None:
        status = await services.branches.sync_status(operator(), "acme/fork")
        assert status.upstream is None

    await eventually(forgotten)
    release.set()
    await running
    await removing
    org = await services.branches.org_status(operator())
    assert (org.total, org.items) == (0, [])
