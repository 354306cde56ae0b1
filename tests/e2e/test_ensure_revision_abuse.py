"""EnsureRevision and the Go proxy under abuse: no regex searches, no races, one fetch.

A tester ran `HEAD^{/(.*)(.*)(.*)\\3\\2\\1QZQZQ}` through EnsureRevision (40 s of CPU per
request), got 500s from concurrent requests to one repository's reader, and made the
Go proxy fetch upstream every 5 s whatever EnsureRevision's throttle said.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from repodepot.accounts import operator
from repodepot.db.models import Visibility
from repodepot.services import Services
from repodepot.settings import Settings
from tests.support.githttp import GitHttpServer
from tests.support.repogen import Spec, generate, git
from tests.support.seed import seed_mirror

NAME = "acme/app"
MODULE = "example.com/acme/app"
EVIL = r"HEAD^{/(.*)(.*)(.*)\3\2\1QZQZQ}"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # No updater: the fetches counted are the ones requests make.
    return settings.model_copy(update={"roles": ["web"]})


@pytest.fixture
async def upstream(app_services: Services, git_root: Path, git_server: GitHttpServer) -> Path:
    source = generate(git_root / "app.git", Spec(commits=30, files=10, tags=2, branches=2))
    await seed_mirror(
        app_services,
        NAME,
        source=source,
        visibility=Visibility.public,
        source_url=git_server.url("app.git"),
    )
    await app_services.repositories.set_go_import_root(operator(), NAME, MODULE)
    return source


def fetches(server: GitHttpServer) -> int:
    return len([r for r in server.requests if "info/refs" in r[1]])


def commit_url(rev: str) -> str:
    return f"/api/repos/{NAME}/commits/{quote(rev, safe='/')}"


@pytest.mark.parametrize(
    "rev",
    [
        EVIL,
        "HEAD^{/(a*)*\\1x}",
        ":/fix",
        "main^{/fix}",
        "HEAD:dir00",
        ":dir00",
        "main~1..main",
        "main...HEAD",
        "main@{yesterday}",
        "main@{0}",
        "@{-1}",
        "HEAD^{tree}",
        "--all",
        "a" * 300,
        "main~" + "1" * 20,
        "v1 .0",
    ],
)
async def test_a_revision_that_is_not_plain_is_refused_without_a_fetch(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    upstream: Path,
    git_server: GitHttpServer,
    rev: str,
) -> None:
    answer = await client.get(commit_url(rev), headers=admin_headers)

    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == "rev"
    assert "is not a commit id, or a branch, tag or ref name" in answer.json()["error"]["message"]
    assert fetches(git_server) == 0


async def test_plain_revisions_still_answer(
    client: httpx.AsyncClient, admin_headers: dict[str, str], upstream: Path
) -> None:
    def parsed(rev: str) -> str:
        return git("--git-dir", str(upstream), "rev-parse", f"{rev}^{{commit}}").strip()

    tag = git("--git-dir", str(upstream), "tag").split()[0]
    head = parsed("main")
    for rev in ("main", "HEAD", "refs/heads/main", head, head[:8], "main~3", "main^", tag):
        answer = await client.get(commit_url(rev), headers=admin_headers)
        assert answer.status_code == 200, (rev, answer.text)
        assert answer.json()["sha"] == parsed(rev), rev
    peeled = await client.get(commit_url("HEAD~2^{commit}"), headers=admin_headers)
    assert peeled.json()["sha"] == parsed("HEAD~2")


async def test_concurrent_requests_to_one_reader_never_fail(
    client: httpx.AsyncClient, admin_headers: dict[str, str], upstream: Path
) -> None:
    # A missing revision makes the reader ask a newer `cat-file` once its process is
    # over a second old: the old one used to be drained by one request while another
    # read its answer from it ("readuntil() called while another coroutine is already
    # waiting", a 500).
    expected = {
        rev: git("--git-dir", str(upstream), "rev-parse", rev).strip()
        for rev in [f"main~{n}" for n in range(20)]
    }
    warm = await client.get(commit_url("main"), headers=admin_headers)
    assert warm.status_code == 200
    for round_ in range(3):
        await asyncio.sleep(1.1)  # the reader is no longer "started a moment ago"
        asks = [rev for rev in expected for _ in range(2)]
        missing = [f"{round_}{n:039x}" for n in range(len(asks))]
        mixed = [rev for pair in zip(asks, missing, strict=True) for rev in pair]
        answers = await asyncio.gather(
            *(client.get(commit_url(rev), headers=admin_headers) for rev in mixed)
        )
        for rev, answer in zip(mixed, answers, strict=True):
            if rev in expected:
                assert answer.status_code == 200, (rev, answer.text)
                assert answer.json()["sha"] == expected[rev]
            else:
                assert answer.status_code == 404, (rev, answer.text)


async def test_the_go_proxy_shares_ensure_revisions_fetch_throttle(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    upstream: Path,
    git_server: GitHttpServer,
) -> None:
    # Unknown versions of a public module, asked by anyone: one upstream fetch per
    # `ensure_fetch_interval` for the repository, whether the Go proxy or EnsureRevision
    # asks first.
    for n in range(6):
        answer = await client.get(f"/goproxy/{MODULE}/@v/v1.9.{n}.info")
        assert answer.status_code == 404
        branch = await client.get(f"/goproxy/{MODULE}/@v/no-such-branch-{n}.info")
        assert branch.status_code == 404
    assert fetches(git_server) == 1

    missing = await client.get(commit_url("0" * 40), headers=admin_headers)
    assert missing.status_code == 404
    for n in range(3):
        assert (await client.get(f"/goproxy/{MODULE}/@v/v0.8.{n}.info")).status_code == 404
    assert fetches(git_server) == 1


async def test_the_go_proxy_does_not_fetch_after_ensure_revision_did(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    upstream: Path,
    git_server: GitHttpServer,
) -> None:
    missing = await client.get(commit_url("0" * 40), headers=admin_headers)
    assert missing.status_code == 404
    assert fetches(git_server) == 1
    for n in range(3):
        assert (await client.get(f"/goproxy/{MODULE}/@v/v1.7.{n}.info")).status_code == 404
    assert fetches(git_server) == 1
