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

NAME = "acme/app"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # No updater: the fetches counted are the ones EnsureRevision makes.
    return settings.model_copy(update={"exec_max_bytes": 4096, "roles": ["web"]})


@pytest.fixture
async def upstream(app_services: Services, git_root: Path, git_server: GitHttpServer) -> Path:
    source = generate(git_root / "app.git", Spec(commits=40, files=30))
    mirror = app_services.storage.path(NAME)
    mirror.parent.mkdir(parents=True, exist_ok=True)
    git("clone", "--mirror", "--quiet", str(source), str(mirror))
    await app_services.repositories.create(
        name=NAME,
        owner_id=None,
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
    assert option.status_code == 404


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


@pytest.mark.parametrize(
    "args",
    [
        ["push", "origin"],
        ["config", "core.hooksPath", "/tmp"],
        ["log", "--output=/tmp/x"],
        ["diff", "--output", "/tmp/x"],
        ["archive", "--remote=http://evil/x", "HEAD"],
        ["archive", "--exec=/bin/sh", "HEAD"],
        ["archive", "-o", "/tmp/x.tar", "HEAD"],
        ["archive", "-o/tmp/x.tar", "HEAD"],
        ["log", "-c", "core.pager=sh"],
        ["log", "--git-dir=/etc"],
        ["log", "--work-tree=/"],
        ["log", "--upload-pack=sh"],
        ["log", "--config-env=core.pager=X"],
        ["diff", "--no-index", "/etc/passwd", "/etc/hosts"],
        ["blame", "--contents", "/etc/passwd", "HEAD", "--", "f0000.txt"],
        ["blame", "--ignore-revs-file=/etc/passwd", "HEAD", "--", "f0000.txt"],
        ["grep", "-O", "main"],
        ["grep", "-Ocat", "x", "main"],
        ["grep", "-f", "/etc/passwd", "main"],
        ["grep", "--open-files-in-pager=sh", "x"],
        ["diff", "--ext-diff", "HEAD~1"],
        ["cat-file", "--filters", "HEAD:f0000.txt"],
        ["log", "HEAD\n--output=/tmp/x"],
        [],
    ],
)
async def test_exec_refuses_every_injection(
    client: httpx.AsyncClient, admin_headers: dict[str, str], upstream: Path, args: list[str]
) -> None:
    answer = await client.post(
        f"/api/repos/{NAME}/exec", json={"args": args}, headers=admin_headers
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"].startswith("args")
    assert not Path("/tmp/x").exists() and not Path("/tmp/x.tar").exists()
