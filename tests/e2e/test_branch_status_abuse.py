"""Branch status attacked from outside: a member's token, no token, hostile inputs.

What holds is pinned here, SQLite and PostgreSQL both, through the real app and real
git. The holes this found are mended and their tests are plain ones now.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from repodepot.accounts import operator
from repodepot.clock import now
from repodepot.db.models import Repository, Visibility
from repodepot.services import Services
from repodepot.settings import Settings
from tests.conftest import ADMIN_TOKEN
from tests.e2e.test_outbound import Redirector
from tests.support.branchstatus import advance, upstream_of
from tests.support.eventually import eventually
from tests.support.githttp import GitHttpServer
from tests.support.history_repo import T0, build, commit, run_git
from tests.support.members import member, user_id
from tests.support.repogen import git
from tests.support.seed import seed_mirror


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    # What these tests pin does not depend on the database (test_branch_status.py runs
    # the same service on both): SQLite only, to keep the suite's time in hand.
    return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"


Json = dict[str, Any]
TOKEN = "glpat-abuse-secret-0123456789abcdef"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Each "fetch now" runs at once; the floor between fetches is tested on its own.
    return settings.model_copy(update={"ensure_fetch_interval": 0.0})


async def fetched(client: httpx.AsyncClient, name: str, headers: dict[str, str]) -> Json:
    """Ask for a fetch of `name`'s upstream and wait until one has finished, either way."""
    before = (await client.get(f"/api/repos/{name}/upstream", headers=headers)).json()
    asked = await client.post(f"/api/repos/{name}/upstream/fetch", headers=headers)
    assert asked.status_code == 202, asked.text

    async def done() -> Json:
        status: Json = (await client.get(f"/api/repos/{name}/sync-status", headers=headers)).json()
        upstream = status["upstream"]
        assert upstream["last_fetched_at"] != before["last_fetched_at"] or (
            upstream["last_error"] is not None and before["last_error"] is None
        ), upstream
        return status

    return await eventually(done, timeout=60, interval=0.1)


def shown(answer: httpx.Response, *names: str) -> str:
    """An error answer with the repository names taken out, to compare two of them."""
    text = answer.text
    for name in names:
        text = text.replace(name, "NAME")
    return text


# Reading what one may not ------------------------------------------------------------------------


async def test_a_private_repository_s_branch_status_is_a_missing_one_to_others(
    app_services: Services,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    tmp_path: Path,
) -> None:
    work = build(tmp_path / "work")
    bob = await member(client, admin_headers, "bob")
    await member(client, admin_headers, "alice")
    alice = await user_id(app_services, "alice")
    await seed_mirror(app_services, "alice/base", source=work, owner_id=alice)
    await seed_mirror(app_services, "alice/closed", source=work, owner_id=alice)
    put = await client.put(
        "/api/repos/alice/closed/upstream",
        json={"repository": "alice/base"},
        headers=admin_headers,
    )
    assert put.status_code == 200, put.text
    status = await fetched(client, "alice/closed", admin_headers)
    assert status["branches"], status  # there are rows to leak

    reads = [
        ("GET", "branches"),
        ("GET", "sync-status"),
        ("GET", "upstream"),
        ("GET", "commits"),
        ("GET", "tags"),
        ("POST", "upstream/fetch"),
        ("DELETE", "upstream"),
    ]
    for method, tail in reads:
        real = await client.request(method, f"/api/repos/alice/closed/{tail}", headers=bob)
        missing = await client.request(method, f"/api/repos/alice/nope/{tail}", headers=bob)
        assert real.status_code == missing.status_code == 404, (tail, real.text)
        assert shown(real, "alice/closed") == shown(missing, "alice/nope"), tail
        # Without a token: reads are the same 404 as a missing name, changes need a token.
        anonymous = await client.request(method, f"/api/repos/alice/closed/{tail}")
        nobody = await client.request(method, f"/api/repos/alice/nope/{tail}")
        assert anonymous.status_code == nobody.status_code == (404 if method == "GET" else 401)
        assert shown(anonymous, "alice/closed") == shown(nobody, "alice/nope"), tail
    real = await client.put(
        "/api/repos/alice/closed/upstream", json={"repository": "alice/base"}, headers=bob
    )
    missing = await client.put(
        "/api/repos/alice/nope/upstream", json={"repository": "alice/base"}, headers=bob
    )
    assert real.status_code == missing.status_code == 404
    assert shown(real, "alice/closed") == shown(missing, "alice/nope")

    org = await client.get("/api/sync-status", headers=bob)
    assert org.status_code == 200 and org.json()["total"] == 0, org.text
    everyone = await client.get("/api/sync-status", headers=admin_headers)
    assert {row["repository"] for row in everyone.json()["items"]} == {"alice/closed"}
    anonymous = await client.get("/api/sync-status")  # public ones only: none here
    assert anonymous.status_code == 200 and anonymous.json()["total"] == 0, anonymous.text


async def test_an_upstream_repository_one_cannot_read_is_a_missing_one(
    app_services: Services,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    tmp_path: Path,
) -> None:
    work = build(tmp_path / "work")
    bob = await member(client, admin_headers, "bob")
    await member(client, admin_headers, "alice")
    await seed_mirror(
        app_services, "bob/fork", source=work, owner_id=await user_id(app_services, "bob")
    )
    alice = await user_id(app_services, "alice")
    await seed_mirror(app_services, "alice/closed", source=work, owner_id=alice)
    await seed_mirror(app_services, "alice/gone", source=work, owner_id=alice)
    async with app_services.sessions.begin() as session:  # deleted, as a code host sync does
        await session.execute(
            update(Repository).where(Repository.name == "alice/gone").values(deleted_at=now())
        )
    url = "/api/repos/bob/fork/upstream"

    missing = await client.put(url, json={"repository": "alice/nope"}, headers=bob)
    assert missing.status_code == 404
    for hidden in ("alice/closed", "alice/gone"):
        answer = await client.put(url, json={"repository": hidden}, headers=bob)
        assert answer.status_code == 404, answer.text
        assert shown(answer, hidden) == shown(missing, "alice/nope")
    assert (await client.get(url, headers=bob)).status_code == 404  # nothing was kept


async def test_an_upstream_repository_that_turns_private_stops_showing_its_commits(
    app_services: Services,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    tmp_path: Path,
) -> None:
    work = build(tmp_path / "work")
    bob = await member(client, admin_headers, "bob")
    await member(client, admin_headers, "carol")
    source = await seed_mirror(
        app_services,
        "carol/src",
        source=work,
        owner_id=await user_id(app_services, "carol"),
        visibility=Visibility.public,
    )
    await seed_mirror(
        app_services, "bob/fork", source=work, owner_id=await user_id(app_services, "bob")
    )
    put = await client.put(
        "/api/repos/bob/fork/upstream", json={"repository": "carol/src"}, headers=bob
    )
    assert put.status_code == 200, put.text
    await fetched(client, "bob/fork", bob)
    # carol's repository turns private (as a code host sync does) and moves on.
    async with app_services.sessions.begin() as session:
        await session.execute(
            update(Repository)
            .where(Repository.id == source.id)
            .values(visibility=Visibility.private)
        )
    secret = advance(work, "main", 1, "carol's private work")
    run_git(work, "push", "-q", str(app_services.storage.path(source.id)), "main")
    assert (await client.get("/api/repos/carol/src", headers=bob)).status_code == 404

    status = await fetched(client, "bob/fork", bob)
    text = str(status)
    assert secret not in text
    assert "carol/src" not in text
    for path in ("/api/sync-status", "/api/repos/bob/fork/upstream"):
        answer = await client.get(path, headers=bob)
        assert secret not in answer.text and "carol/src" not in answer.text, path
    page = await client.get("/repos/bob/fork", params={"tab": "upstream"}, headers=bob)
    assert page.status_code == 200 and secret not in page.text and "carol/src" not in page.text


# Hostile input -----------------------------------------------------------------------------------


async def test_hostile_upstreams_branch_specs_and_query_parameters_are_422_naming_the_field(
    app_services: Services,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    git_server: GitHttpServer,
    tmp_path: Path,
) -> None:
    work = build(tmp_path / "work")
    upstream_of(work, git_server.root / "up.git")
    await seed_mirror(app_services, "acme/fork", source=work)
    good = git_server.url("up.git")
    port = git_server.port
    refusals: list[tuple[Json, str]] = [
        ({"url": "file:///srv/repos/x.git"}, "url"),
        ({"url": "/srv/repos/x.git"}, "url"),
        ({"url": "../x.git"}, "url"),
        ({"url": "git@127.0.0.1:x.git"}, "url"),
        ({"url": "ext::sh -c id"}, "url"),
        ({"url": "fd::3"}, "url"),
        ({"url": "-uhttp://127.0.0.1/x.git"}, "url"),
        ({"url": f"http://127.0.0.2:{port}/up.git"}, "url"),  # loopback, not allowlisted
        ({"url": f"http://[::1]:{port}/up.git"}, "url"),
        ({"url": f"http://[::ffff:127.0.0.2]:{port}/up.git"}, "url"),
        ({"url": f"http://2130706434:{port}/up.git"}, "url"),  # 127.0.0.2 as one number
        ({"url": f"http://0x7f000002:{port}/up.git"}, "url"),
        ({"url": "http://169.254.169.254/latest/meta-data.git"}, "url"),
        ({"url": f"ssh://127.0.0.1:{port}/up.git"}, "url"),  # scheme not allowed here
        ({"url": good + "\n[core]"}, "url"),
    ]
    for spec in [
        "main\nmerge = evil",
        "a=b",
        "a:b:c",
        "+refs/heads/x",
        "^main",
        "main~1",
        "main^{}",
        "..",
        "a/../b",
        "x.lock",
        "-x",
        ".hidden",
        "a*b*",
        "*:main",
        "a\tb",
        "a b",
        "@{-1}",
        "a\\b",
        "x" * 201,
    ]:
        refusals.append(({"url": good, "branches": [spec]}, "branches"))
    refusals.append(({"url": good, "branches": [f"b{i}" for i in range(51)]}, "branches"))
    refusals.append(({"url": good, "branches": "main"}, "branches"))
    url = "/api/repos/acme/fork/upstream"
    for body, field in refusals:
        answer = await client.put(url, json=body, headers=admin_headers)
        assert answer.status_code == 422, (body, answer.text)
        error = answer.json()["error"]
        assert error.get("field") == field or field in error["message"], (body, error)
        assert TOKEN not in answer.text
    assert (await client.get(url, headers=admin_headers)).status_code == 404  # nothing kept
    assert git_server.requests == []  # and nothing was asked of any server

    queries = [
        ("/api/repos/acme/fork/branches", {"per_page": "0"}, "per_page"),
        ("/api/repos/acme/fork/branches", {"per_page": "101"}, "per_page"),
        ("/api/repos/acme/fork/branches", {"page": "0"}, "page"),
        ("/api/repos/acme/fork/branches", {"page": "x"}, "page"),
        ("/api/repos/acme/fork/branches", {"q": "x" * 201}, "q"),
        ("/api/repos/acme/fork/branches", {"sort": "size"}, "sort"),
        ("/api/repos/acme/fork/branches", {"state": "old"}, "state"),
        ("/api/sync-status", {"needs_pull": "maybe"}, "needs_pull"),
        ("/api/sync-status", {"needs_push": "2"}, "needs_push"),
        ("/api/sync-status", {"diverged": "both"}, "diverged"),
        ("/api/sync-status", {"per_page": "100000"}, "per_page"),
    ]
    for path, params, field in queries:
        answer = await client.get(path, params=params, headers=admin_headers)
        assert answer.status_code == 422, (params, answer.text)
        error = answer.json()["error"]
        assert error.get("field") == field or field in error["message"], (params, error)


async def test_a_redirecting_upstream_is_not_followed_and_its_target_sees_nothing(
    app_services: Services,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    tmp_path: Path,
) -> None:
    work = build(tmp_path / "work")
    internal_root = tmp_path / "internal"
    internal_root.mkdir()
    upstream_of(work, internal_root / "secret.git")
    await seed_mirror(app_services, "acme/fork", source=work)
    with (
        GitHttpServer(internal_root, host="127.0.0.2", auth=("bot", TOKEN)) as internal,
        Redirector(f"http://127.0.0.2:{internal.port}") as redirector,
    ):
        put = await client.put(
            "/api/repos/acme/fork/upstream",
            json={"url": f"{redirector.url}/secret.git?private_token={TOKEN}"},
            headers=admin_headers,
        )
        assert put.status_code == 200, put.text
        assert put.json()["url"] == f"{redirector.url}/secret.git"  # stored without it
        assert put.json()["has_token"] is True
        status = await fetched(client, "acme/fork", admin_headers)
        assert status["upstream"]["error_kind"] is not None, status
        assert internal.requests == []  # git never connected to the redirect's target
        assert redirector.seen  # the first host was asked
    assert TOKEN not in str(status)
    assert status["branches"] == []


# The upstream's commits never reach a client ----------------------------------------------------


async def test_upstream_only_commits_and_refs_reach_no_client_surface(
    app_services: Services,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    git_server: GitHttpServer,
    tmp_path: Path,
) -> None:
    work = build(tmp_path / "work")
    record = await seed_mirror(app_services, "acme/fork", source=work, visibility=Visibility.public)
    upstream_of(work, git_server.root / "up.git")
    secret = advance(work, "main", 1, "upstream only")
    run_git(work, "push", "-q", "origin", "main")
    put = await client.put(
        "/api/repos/acme/fork/upstream",
        json={"url": git_server.url("up.git")},
        headers=admin_headers,
    )
    assert put.status_code == 200, put.text
    status = await fetched(client, "acme/fork", admin_headers)
    assert status["branches"][0]["upstream_sha"] == secret  # fetched: there is something to leak

    names = [secret, "upstream/main", "refs/upstream/main", f"{secret[:12]}"]
    for rev in names:
        answer = await client.get(f"/api/repos/acme/fork/commits/{rev}", headers=admin_headers)
        assert answer.status_code in {404, 422}, (rev, answer.text)
        assert "upstream only" not in answer.text
        listed = await client.get(
            "/api/repos/acme/fork/commits", params={"ref": rev}, headers=admin_headers
        )
        assert "upstream only" not in listed.text, rev  # its subject: read from the copy
    for args in (
        ["log", "--all", "--format=%H %s"],
        ["log", "--all", "--decorate=full", "--oneline"],
        ["rev-parse", "--all"],
        ["for-each-ref"],
        ["rev-list", "--all"],
        ["cat-file", "-p", secret],
        ["show", secret],
        ["log", "--format=%H", "refs/upstream/main"],
        ["cat-file", "--batch-all-objects", "--batch-check"],
    ):
        answer = await client.post(
            "/api/repos/acme/fork/exec", json={"args": args}, headers=admin_headers
        )
        assert "upstream only" not in answer.text, args
        if answer.status_code == 200:
            assert secret not in answer.text, args
        else:  # refused with git's message, which may name the argument given
            assert answer.status_code == 422, (args, answer.text)
        if "refs/upstream/main" not in args:  # an error may name the argument given
            assert "refs/upstream" not in answer.text, args
    mirror = app_services.storage.path(record.id)
    branches = await client.get("/api/repos/acme/fork/branches", headers=admin_headers)
    shown_names = {item["name"] for item in branches.json()["items"]}
    assert shown_names == set(
        git("--git-dir", str(mirror), "branch", "--format=%(refname:short)").split()
    )
    missing = subprocess.run(
        ["git", "--git-dir", str(mirror), "cat-file", "-e", secret], check=False
    )
    assert missing.returncode != 0  # not even the object: upload-pack v2 serves any by id


async def test_commits_of_a_ref_the_mirror_lacks_are_404(
    app_services: Services,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    tmp_path: Path,
) -> None:
    await seed_mirror(app_services, "acme/app", source=build(tmp_path / "work"))
    for ref in ("0" * 40, "refs/upstream/main", "no-such-branch"):
        answer = await client.get(
            "/api/repos/acme/app/commits", params={"ref": ref}, headers=admin_headers
        )
        expected = {422, 404} if ref.startswith("refs/upstream/") else {404}
        assert answer.status_code in expected, (ref, answer.text)


async def test_upstream_only_commits_cannot_be_fetched_over_smart_http(
    settings: Settings,
    live_server: Any,
    git_server: GitHttpServer,
    tmp_path: Path,
) -> None:
    live = await live_server(settings)
    work = build(tmp_path / "work")
    await seed_mirror(live.services, "acme/fork", source=work, visibility=Visibility.public)
    upstream_of(work, git_server.root / "up.git")
    secret = advance(work, "main", 1, "upstream only")
    run_git(work, "push", "-q", "origin", "main")
    await live.services.branches.set_upstream(operator(), "acme/fork", url=git_server.url("up.git"))
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with httpx.AsyncClient(base_url=live.url, headers=headers, timeout=30) as http:

        async def counted() -> None:
            answer = await http.get("/api/repos/acme/fork/sync-status")
            status = answer.json()
            assert answer.status_code == 200 and status["branches"], answer.text
            assert status["branches"] and status["branches"][0]["upstream_sha"] == secret

        await http.post("/api/repos/acme/fork/upstream/fetch")
        await eventually(counted, timeout=60, interval=0.2)

    clone = tmp_path / "c.git"
    git("init", "-q", "--bare", str(clone))
    served = f"{live.url}/git/acme/fork.git"
    for protocol in ("0", "2"):
        for want in (secret, "refs/upstream/main", "upstream/main"):
            command = ["git", "-c", f"protocol.version={protocol}", "--git-dir", str(clone)]
            answer = await client_git(*command, "fetch", "-q", served, want)
            assert answer.returncode != 0, (protocol, want)
        listed = await client_git("git", "-c", f"protocol.version={protocol}", "ls-remote", served)
        assert listed.returncode == 0, listed.stderr
        listing = listed.stdout
        assert "refs/upstream" not in listing and secret not in listing
    assert (
        subprocess.run(
            ["git", "--git-dir", str(clone), "cat-file", "-e", secret], check=False
        ).returncode
        != 0
    )


async def client_git(*command: str) -> subprocess.CompletedProcess[str]:
    """A git client, in a thread: the server answering it runs in this event loop."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_TERMINAL_PROMPT": "0"}
    return await asyncio.to_thread(
        subprocess.run, list(command), env=env, capture_output=True, text=True, timeout=120
    )


# Resource abuse ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "served",
    [
        "up.git",
        "gone.git",  # a failing upstream is no cheaper to hammer
    ],
)
async def test_fetch_now_in_a_loop_fetches_at_most_once_per_interval(
    settings: Settings,
    git_server: GitHttpServer,
    tmp_path: Path,
    served: str,
) -> None:
    services = await Services.open(settings.model_copy(update={"ensure_fetch_interval": 30.0}))
    try:
        await fetch_now_in_a_loop(services, git_server, tmp_path, served)
    finally:
        await services.close()


async def fetch_now_in_a_loop(
    services: Services, git_server: GitHttpServer, tmp_path: Path, served: str
) -> None:
    work = build(tmp_path / "work")
    upstream_of(work, git_server.root / "up.git")
    fork = await seed_mirror(services, "acme/fork", source=work)
    await services.branches.set_upstream(operator(), "acme/fork", url=git_server.url(served))
    assert await services.branches.claim("test", 1) == [(fork.id, "127.0.0.1")]
    outcome = await services.branches.refresh("test", fork.id)
    assert (outcome.error is None) == (served == "up.git"), outcome
    asked = len(git_server.requests)

    for _ in range(20):  # a member's script: "fetch now", again and again
        await services.branches.fetch_now(operator(), "acme/fork")
        assert await services.branches.claim("test", 1) == []
    assert len(git_server.requests) == asked


async def test_branch_names_and_subjects_are_text_on_the_pages(
    app_services: Services,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    tmp_path: Path,
) -> None:
    work = build(tmp_path / "work")
    evil = "<svg/onload=alert(1)>"
    run_git(work, "checkout", "-q", "-b", f"x/{evil}")
    commit(work, "<script>alert('subject')</script>", when=T0 + 900_000)
    run_git(work, "checkout", "-q", "main")
    commit(work, "<img src=x onerror=alert(2)>", when=T0 + 910_000)
    await seed_mirror(app_services, "acme/app", source=work)
    put = await client.put(
        "/api/repos/acme/app/upstream",
        json={"url": "http://127.0.0.1:9/<b>x</b>.git", "branches": ["main", "x/*"]},
        headers=admin_headers,
    )
    assert put.status_code == 200, put.text
    for tab in ("branches", "upstream", None):
        params = {"tab": tab} if tab else {}
        page = await client.get("/repos/acme/app", params=params, headers=admin_headers)
        assert page.status_code == 200, page.text
        for raw in (evil, "<script>alert('subject')", "<img src=x", "<b>x</b>"):
            assert raw not in page.text, (tab, raw)
