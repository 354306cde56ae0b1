"""EnsureRevision and exec over a mirror: answers, one shared fetch, refused injections."""

from __future__ import annotations

import asyncio
import io
import tarfile
from pathlib import Path

import httpx
import pytest

from repodepot.accounts import operator
from repodepot.db.models import Visibility
from repodepot.exceptions import NotFound
from repodepot.gitserver.reads import Reads
from repodepot.services import Services
from repodepot.settings import Settings
from tests.integration.test_updater import advance
from tests.support.githttp import GitHttpServer
from tests.support.repogen import Spec, generate, git
from tests.support.seed import seed_mirror

NAME = "acme/app"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # No updater: the fetches counted are the ones EnsureRevision makes.
    return settings.model_copy(update={"exec_max_bytes": 4096, "roles": ["web"]})


@pytest.fixture
async def upstream(app_services: Services, git_root: Path, git_server: GitHttpServer) -> Path:
    source = generate(git_root / "app.git", Spec(commits=40, files=30))
    await seed_mirror(
        app_services,
        NAME,
        source=source,
        visibility=Visibility.public,
        source_url=git_server.url("app.git"),
    )
    return source


async def test_ensure_revision_answers_from_the_mirror_then_fetches_once(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    upstream: Path,
    git_server: GitHttpServer,
) -> None:
    head = git("--git-dir", str(upstream), "rev-parse", "main").strip()
    present = await client.get(f"/api/repos/{NAME}/commits/main", headers=admin_headers)
    assert present.status_code == 200, present.text
    assert (present.json()["sha"], present.json()["fetched"]) == (head, False)

    new = advance(upstream, "made after the mirror")
    answers = await asyncio.gather(
        *(client.get(f"/api/repos/{NAME}/commits/{new}", headers=admin_headers) for _ in range(10))
    )

    assert {answer.status_code for answer in answers} == {200}
    assert {answer.json()["subject"] for answer in answers} == {"made after the mirror"}
    advertisements = [r for r in git_server.requests if "info/refs" in r[1]]
    assert len(advertisements) == 1  # ten requests, one fetch

    missing = await client.get(f"/api/repos/{NAME}/commits/{'0' * 40}", headers=admin_headers)
    assert missing.status_code == 404
    assert "even after a fetch" in missing.json()["error"]["message"]
    option = await client.get(f"/api/repos/{NAME}/commits/--all", headers=admin_headers)
    assert option.status_code == 422
    assert option.json()["error"]["field"] == "rev"


async def test_ensure_revision_of_an_import_fetches_only_from_an_allowed_address(
    app_services: Services, upstream: Path, git_server: GitHttpServer
) -> None:
    # The repository is an import (no code host): its URL is checked again before a fetch,
    # and loopback is refused once the allowlist no longer names it.
    strict = app_services.settings.model_copy(update={"outbound_allowlist": []})
    reads = Reads(app_services.git, app_services.storage, app_services.gitserver, strict)
    record = await app_services.repositories.get(operator(), NAME)
    new = advance(upstream, "made after the mirror")

    with pytest.raises(NotFound, match="even after a fetch"):
        await reads.ensure_revision(record.id, NAME, new)
    assert not [r for r in git_server.requests if "info/refs" in r[1]]


async def test_exec_streams_allowed_commands(
    client: httpx.AsyncClient, admin_headers: dict[str, str], upstream: Path
) -> None:
    log = await client.post(
        f"/api/repos/{NAME}/exec",
        json={"args": ["log", "--format=%s", "-3"]},
        headers=admin_headers,
    )
    assert log.status_code == 200
    assert (
        log.text.splitlines()
        == git("--git-dir", str(upstream), "log", "--format=%s", "-3").splitlines()
    )

    first = git("--git-dir", str(upstream), "ls-tree", "-r", "--name-only", "HEAD").split()[0]
    archive = await client.post(
        f"/api/repos/{NAME}/exec",
        json={"args": ["archive", "--format=tar", "HEAD", "--", first]},
        headers=admin_headers,
    )
    assert archive.status_code == 200, archive.text
    with tarfile.open(fileobj=io.BytesIO(archive.content)) as tar:
        assert first in tar.getnames()

    failing = await client.post(
        f"/api/repos/{NAME}/exec", json={"args": ["show", "nope"]}, headers=admin_headers
    )
    assert failing.status_code == 422
    assert (
        "unknown revision" in failing.json()["error"]["message"] or "bad revision" in failing.text
    )

    long = await client.post(
        f"/api/repos/{NAME}/exec", json={"args": ["log", "-p"]}, headers=admin_headers
    )
    assert long.status_code == 200 and len(long.content) == 4096  # the cap


async def test_exec_runs_what_users_need(
    client: httpx.AsyncClient, admin_headers: dict[str, str], upstream: Path
) -> None:
    # Each rebuilt command (options, --end-of-options where git takes it, revisions,
    # paths) must still mean the same to this git, inside the sandbox.
    head = git("--git-dir", str(upstream), "rev-parse", "main").strip()
    first = git("--git-dir", str(upstream), "ls-tree", "-r", "--name-only", "HEAD").split()[0]
    changed = git("--git-dir", str(upstream), "diff", "--name-only", "HEAD~1", "HEAD").split()[0]
    commands: list[tuple[list[str], str]] = [
        (["log", "-n", "5", "--format=%H"], head),
        (["log", "--oneline", "-5"], head[:7]),
        (["grep", "-n", "-e", "a"], f"HEAD:{first}:1:"),
        (["grep", "-n", "-e", "a", "HEAD"], f"HEAD:{first}:1:"),
        (["grep", "-c", "-e", "a", "HEAD"], f"HEAD:{first}:"),
        (["blame", "-L", "1,1", "HEAD", "--", first], " 1) "),
        (["diff", "--stat", "HEAD~1", "HEAD", "--", changed], changed),
        (["diff", "HEAD~1", "HEAD"], f"diff --git a/{changed}"),
        (["show", f"HEAD:{first}"], git("--git-dir", str(upstream), "show", f"HEAD:{first}")),
        (["rev-parse", "HEAD"], head),
        (["ls-tree", "-r", "HEAD"], first),
        (["cat-file", "-p", head], "author "),
        (["for-each-ref", "--format=%(refname)"], "refs/heads/main"),
        (["rev-list", "--count", "HEAD"], "40"),
        (["rev-parse", "--is-bare-repository"], "true"),
    ]
    for args, expected in commands:
        answer = await client.post(
            f"/api/repos/{NAME}/exec", json={"args": args}, headers=admin_headers
        )
        assert answer.status_code == 200, (args, answer.text)
        assert expected in answer.text, (args, answer.text[:300])


async def test_exec_refuses_options_that_reach_outside(
    client: httpx.AsyncClient, admin_headers: dict[str, str], upstream: Path, tmp_path: Path
) -> None:
    target = tmp_path / "written"
    for args in (
        ["log", f"--output={target}"],
        ["diff", "--output", str(target), "HEAD~1", "HEAD"],
        ["archive", "-o", str(target), "HEAD"],
        ["archive", f"-o{target}", "HEAD"],
        ["log", "-c", "core.pager=sh"],
        ["grep", "--open-f=touch " + str(target), "-e", "x"],
        ["diff", "/etc/hostname", "/etc/hosts"],
        ["log", f"HEAD\n--output={target}"],
        [],
    ):
        answer = await client.post(
            f"/api/repos/{NAME}/exec", json={"args": args}, headers=admin_headers
        )
        assert answer.status_code == 422, (args, answer.text)
        assert answer.json()["error"]["field"].startswith("args")
    assert not target.exists()


async def test_unknown_revisions_fetch_once_per_interval(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    app_services: Services,
    upstream: Path,
    git_server: GitHttpServer,
) -> None:
    # A stream of made-up revisions: one fetch, then answers from what is there.
    for n in range(6):
        answer = await client.get(f"/api/repos/{NAME}/commits/{n:040x}", headers=admin_headers)
        assert answer.status_code == 404
    fetches = [r for r in git_server.requests if "info/refs" in r[1]]
    assert len(fetches) == 1
    # Within the interval even a real new commit waits for the next allowed fetch...
    new = advance(upstream, "made within the interval")
    late = await client.get(f"/api/repos/{NAME}/commits/{new}", headers=admin_headers)
    assert late.status_code == 404
    assert len([r for r in git_server.requests if "info/refs" in r[1]]) == 1

    # ...and with no interval every miss fetches (the setting is what throttles).
    eager = app_services.settings.model_copy(update={"ensure_fetch_interval": 0})
    reads = Reads(app_services.git, app_services.storage, app_services.gitserver, eager)
    record = await app_services.repositories.get(operator(), NAME)
    try:
        assert (await reads.ensure_revision(record.id, NAME, new)).fetched
        for n in range(2):
            with pytest.raises(NotFound):
                await reads.ensure_revision(record.id, NAME, f"{n:040x}")
    finally:
        await reads.close()
    assert len([r for r in git_server.requests if "info/refs" in r[1]]) == 4
