"""A code host that is itself the attacker: it can fail a sync, never exhaust, hold or crash it.

Each test connects a fake host (tests/support/fakehosts.py) that answers as no real host
would: a page larger than the byte cap (plain, or a gzip bomb), pages without end, a
clone URL on another allowlisted origin, a body dripped a byte at a time, pages that are
not what the API documents. The sync must end, recorded in the history with a message
that says what the host did, and change nothing it should not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest
from sqlalchemy import select

from repodepot.accounts import operator
from repodepot.codehosts.service import CodeHostRecord, SyncRecord
from repodepot.db.models import Repository, SyncStatus
from repodepot.gitserver.updater import UpdateLoop
from repodepot.services import Services
from repodepot.settings import Settings
from tests.support.fakehosts import FakeHost
from tests.support.githttp import GitHttpServer
from tests.support.repogen import Spec, generate

CAP = 1 << 20
HUGE = 64 << 20
SITE_LIMIT = 250
ATTEMPTS = 2
HOSTILE = {
    "codehost_retry_base": 0.01,
    "codehost_requests_per_second": 1000.0,
    "codehost_max_response_bytes": CAP,
    "codehost_request_timeout": 1.0,
    "codehost_retries": ATTEMPTS - 1,
    "max_repos_per_site": SITE_LIMIT,
}
# Each sync here ends in seconds; on the code before these walls some never ended.
HANG = 60.0


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update=HOSTILE)


@pytest.fixture
def github() -> Iterator[FakeHost]:
    with FakeHost("github") as host:
        yield host


async def connect(services: Services, host: FakeHost) -> CodeHostRecord:
    config = {"url": host.url, "token": host.token, "repositoryQuery": ["affiliated"]}
    return await services.codehosts.create(operator(), kind="github", name="evil", config=config)


async def sync(services: Services, host_id: int) -> SyncRecord:
    """One sync, bounded so that a hang fails the test; the history row it recorded."""
    async with asyncio.timeout(HANG):
        outcome = await services.codehosts.syncer.sync(host_id)
    record = await services.codehosts.get(operator(), host_id)
    history = await services.codehosts.history(operator(), host_id)
    assert not record.syncing
    assert record.last_error == outcome.error
    assert history.items[0].status is outcome.status
    assert history.items[0].error == outcome.error
    return history.items[0]


async def names(services: Services) -> list[str]:
    async with services.sessions() as session:
        rows = await session.scalars(select(Repository.name).where(Repository.deleted_at.is_(None)))
        return sorted(rows)


@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzip-bomb"])
async def test_a_page_over_the_byte_cap_fails_the_sync_and_is_not_read_further(
    services: Services, github: FakeHost, gzipped: bool
) -> None:
    github.add_many(3)
    host = await connect(services, github)
    github.huge_next(HUGE, gzipped=gzipped)

    synced = await sync(services, host.id)

    assert synced.status is SyncStatus.failed
    assert synced.error is not None
    assert f"/api/v3/user/repos with more than {CAP} bytes" in synced.error
    assert "REPODEPOT_CODEHOST_MAX_RESPONSE_BYTES" in synced.error
    # Socket buffers hold a few megabytes; the rest of the 64 MiB never went out.
    assert github.sent < HUGE // 2
    assert await names(services) == []


@pytest.mark.parametrize("endless", ["new", "same"])
async def test_endless_pages_stop_past_the_site_limit_and_apply_nothing(
    services: Services, github: FakeHost, endless: Literal["new", "same"]
) -> None:
    # "same": every page repeats the same 100 repositories, so the set never grows.
    github.endless = endless
    host = await connect(services, github)

    synced = await sync(services, host.id)

    assert synced.status is SyncStatus.over_limit
    assert synced.error is not None
    assert f"more than max_repos_per_site ({SITE_LIMIT}) repositories" in synced.error
    assert await names(services) == []
    assert github.count("/api/v3/user/repos") <= SITE_LIMIT // 100 + 2  # pages fetched ahead


async def test_a_clone_url_on_another_allowlisted_origin_is_skipped_and_never_cloned(
    services: Services, github: FakeHost, tmp_path: Path
) -> None:
    # 127.0.0.1 is allowlisted, any port: the host names a repository on another server.
    generate(tmp_path / "internal" / "secret.git", Spec(commits=2))
    with GitHttpServer(tmp_path / "internal") as internal:
        github.add("evil", "internal", clone_url=internal.url("secret.git"))
        github.add("acme", "app")
        host = await connect(services, github)

        synced = await sync(services, host.id)
        loop = UpdateLoop.from_services(services)
        await services.gitserver.discover()
        for due in await services.gitserver.claim("test", 5, {}, 5):
            await loop.update(due)

    assert (synced.added, synced.skipped) == (1, 1)
    assert any(
        warning.startswith("evil/internal: its clone URL is on http://127.0.0.1:")
        and str(internal.port) in warning
        for warning in synced.warnings
    )
    assert await names(services) == ["127.0.0.1/acme/app"]
    assert internal.requests == []
    app = await services.repositories.get(operator(), "127.0.0.1/acme/app")
    assert set(services.storage.mirror_ids()) <= {app.id}  # no mirror of anything else


async def test_a_dripping_answer_is_a_timeout_and_the_sync_fails(
    services: Services, github: FakeHost
) -> None:
    github.add_many(3)
    host = await connect(services, github)
    for _ in range(2):  # the call and its one retry
        github.drip_next(interval=0.2)

    synced = await sync(services, host.id)

    assert synced.status is SyncStatus.failed
    assert synced.error is not None
    assert "did not answer after 2 attempts (last: no whole answer within 1 s)" in synced.error


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"[" * 200_000, "with invalid JSON: nested deeper than 64 levels"),
        (b'[{"id": 1}]', "with item 1: a repository without a full_name"),
        (b'{"message": "not a list"}', "with a JSON object where a list of repositories goes"),
        (b'[1, {"id": 2}]', "with item 1: a JSON number where a repository object goes"),
        (
            b'[{"id": 1, "full_name": "a/b", "clone_url": "http://x/a.git"}, {"id": 2}]',
            "with item 2: a repository without a full_name",
        ),
        (
            b'[{"id": 1, "full_name": "a/b", "clone_url": 7}]',
            "with item 1: a repository without a clone_url",
        ),
        (
            b'[{"id": 1e999, "full_name": "a/b", "clone_url": "x"}]',
            "with item 1: a repository without an id (node_id or id)",
        ),
        (
            b'[{"node_id": "' + b"R" * 300 + b'", "full_name": "a/b"}]',
            "with item 1: a repository whose node_id is longer than 255",
        ),
    ],
    ids=[
        "deep",
        "no-name",
        "not-a-list",
        "not-an-object",
        "second-no-name",
        "bad-url",
        "bad-id",
        "long-id",
    ],
)
async def test_a_malformed_page_is_a_failed_sync_in_the_history(
    services: Services, github: FakeHost, body: bytes, expected: str
) -> None:
    github.add_many(3)
    host = await connect(services, github)
    await sync(services, host.id)
    # The body for every attempt: on a loaded machine the first can outlast the 1 s
    # timeout and its retry would otherwise get the (valid) 304 of the cached page.
    for _ in range(ATTEMPTS):
        github.raw_next(body)

    synced = await sync(services, host.id)

    assert synced.status is SyncStatus.failed
    assert synced.error is not None
    assert f"github connection 'evil' answered /api/v3/user/repos {expected}" in synced.error
    assert len(await names(services)) == 3  # a failed listing deletes nothing
