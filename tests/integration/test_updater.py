"""The update scheduler against a loopback git server: clone, fetch, schedule, back off."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from repodepot.accounts import operator
from repodepot.clock import now
from repodepot.codehosts.syncer import Syncer
from repodepot.db.models import CloneStatus, GitserverRepo, Repository
from repodepot.exceptions import NotFound
from repodepot.gitserver.schedule import QueueReason
from repodepot.gitserver.service import Due
from repodepot.gitserver.updater import UpdateLoop
from repodepot.repositories import RepositoryRecord
from repodepot.secrets import SecretBox
from repodepot.services import Services
from repodepot.settings import Settings, ensure_secret_key
from tests.support.fakehosts import FakeHost
from tests.support.githttp import GitHttpServer
from tests.support.repogen import Spec, generate, git


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"update_failures_before_failing": 3})


def refs(path: Path) -> str:
    return git("--git-dir", str(path), "for-each-ref", "--format=%(objectname) %(refname)")


def advance(upstream: Path, message: str = "upstream change") -> str:
    """A new commit on main, as a push would leave it."""
    base = ["-c", "user.name=Up", "-c", "user.email=up@example.com", "--git-dir", str(upstream)]
    tree = git(*base, "rev-parse", "main^{tree}").strip()
    commit = git(*base, "commit-tree", tree, "-p", "main", "-m", message).strip()
    git(*base, "update-ref", "refs/heads/main", commit)
    return commit


async def mirror_all(services: Services, server: GitHttpServer, *names: str) -> None:
    """An `other` connection listing the upstreams, synced."""
    config = {"repos": [server.url(f"{name}.git") for name in names]}
    host = await services.codehosts.create(operator(), kind="other", name="up", config=config)
    outcome = await services.codehosts.syncer.sync(host.id)
    assert outcome.added == len(names), outcome


async def run_due(services: Services) -> list[Due]:
    """One round of the updater: discover, claim everything due, update it."""
    loop = UpdateLoop.from_services(services)
    await services.gitserver.discover()
    claimed = await services.gitserver.claim("test", 50, {}, 50)
    for due in claimed:
        await loop.update(due)
    return claimed


async def test_new_repositories_are_cloned_then_fetched_when_upstream_moves(
    services: Services, git_root: Path, git_server: GitHttpServer
) -> None:
    for name in ("one", "two"):
        generate(git_root / f"{name}.git", Spec(commits=5, branches=2, tags=2))
    await mirror_all(services, git_server, "one", "two")

    assert len(await run_due(services)) == 2

    record = await services.repositories.get(operator(), "127.0.0.1/one")
    local = services.storage.path(record.id)
    assert refs(local) == refs(git_root / "one.git")
    state = await services.gitserver.state(record.id)
    assert state is not None
    assert state.clone_status is CloneStatus.cloned
    assert state.last_changed_at is not None
    assert "next update in" in state.schedule
    # The clone wrote what the mirror says of its repository: one truth for page and API.
    assert (record.default_branch, record.is_empty) == ("main", False)
    assert record.size_bytes == services.storage.size(record.id) > 0
    assert await run_due(services) == []  # nothing due until the schedule says so

    commit = advance(git_root / "one.git")
    assert await services.gitserver.enqueue_existing(record.id, QueueReason.webhook)
    assert await services.gitserver.enqueue_existing(record.id, QueueReason.webhook)  # queued once
    updated = await run_due(services)

    assert [due.name for due in updated] == ["127.0.0.1/one"]
    assert commit in refs(local)
    after = await services.gitserver.state(record.id)
    assert after is not None and after.last_changed_at is not None
    assert after.last_changed_at > state.last_changed_at


async def test_an_unchanged_mirror_is_checked_less_and_less_often(
    services: Services, git_root: Path, git_server: GitHttpServer
) -> None:
    generate(git_root / "quiet.git", Spec(commits=3))
    await mirror_all(services, git_server, "quiet")
    await run_due(services)
    record = await services.repositories.get(operator(), "127.0.0.1/quiet")
    async with services.sessions.begin() as session:  # its refs last moved two hours ago
        await session.execute(
            update(GitserverRepo).values(
                last_changed_at=now() - timedelta(hours=2), next_update_at=now()
            )
        )

    await run_due(services)

    state = await services.gitserver.state(record.id)
    assert state is not None
    assert 0.9 * 3600 <= state.interval_seconds <= 1.1 * 3600  # half the age of the change
    assert "last changed 2.0 h ago" in state.schedule or "last changed 2 h ago" in state.schedule


async def test_failures_back_off_then_mark_the_mirror_failing_until_a_webhook(
    services: Services, git_root: Path, git_server: GitHttpServer
) -> None:
    generate(git_root / "gone.git", Spec(commits=3))
    await mirror_all(services, git_server, "gone")
    await run_due(services)
    record = await services.repositories.get(operator(), "127.0.0.1/gone")
    shutil.rmtree(git_root / "gone.git")
    intervals = []
    state = None
    for _ in range(3):
        async with services.sessions.begin() as session:
            await session.execute(update(GitserverRepo).values(next_update_at=now()))
        await run_due(services)
        state = await services.gitserver.state(record.id)
        assert state is not None
        intervals.append(state.interval_seconds)

    assert state is not None
    assert state.failure_kind == "not_found"
    assert state.clone_status is CloneStatus.cloned  # the old mirror stays readable
    assert intervals[0] < intervals[1]  # exponential backoff
    assert state.failing and intervals[2] == services.settings.update_max_interval
    assert "failing after 3 failed updates (not_found)" in state.schedule

    generate(git_root / "gone.git", Spec(commits=4))
    await services.gitserver.enqueue_existing(record.id, QueueReason.webhook)
    await run_due(services)
    healed = await services.gitserver.state(record.id)
    assert healed is not None and not healed.failing and healed.failures == 0


async def test_a_webhook_that_arrives_during_an_update_queues_the_next_one(
    services: Services, git_root: Path, git_server: GitHttpServer
) -> None:
    # The push landed after this update's fetch began: the update must not swallow it.
    upstream = generate(git_root / "busy.git", Spec(commits=3))
    await mirror_all(services, git_server, "busy")
    await run_due(services)
    record = await services.repositories.get(operator(), "127.0.0.1/busy")
    await services.gitserver.enqueue_existing(record.id, QueueReason.admin)
    loop = UpdateLoop.from_services(services)
    (due,) = await services.gitserver.claim("test", 5, {}, 5)
    fetching = asyncio.create_task(loop.update(due))
    commit = advance(upstream, "pushed while fetching")
    await services.gitserver.enqueue_existing(record.id, QueueReason.webhook)
    await fetching
    state = await services.gitserver.state(record.id)
    assert state is not None and state.queued == "webhook", state
    await run_due(services)
    assert commit in refs(services.storage.path(record.id))


async def test_a_corrupt_mirror_is_removed_and_cloned_again(
    services: Services, git_root: Path, git_server: GitHttpServer
) -> None:
    generate(git_root / "fragile.git", Spec(commits=5))
    await mirror_all(services, git_server, "fragile")
    await run_due(services)
    record = await services.repositories.get(operator(), "127.0.0.1/fragile")
    local = services.storage.path(record.id)
    # A half-written HEAD: git no longer sees a repository here. (A pack of garbage, or
    # missing objects, a fetch repairs by itself: it downloads what is missing.)
    (local / "HEAD").write_bytes(b"")
    advance(git_root / "fragile.git")
    await services.gitserver.enqueue_existing(record.id, QueueReason.admin)

    await run_due(services)  # the fetch fails, fsck fails, the mirror is removed
    broken = await services.gitserver.state(record.id)
    assert broken is not None and broken.queued == "new"
    assert not local.exists()
    await run_due(services)  # cloned again

    assert refs(local) == refs(git_root / "fragile.git")
    state = await services.gitserver.state(record.id)
    assert state is not None and state.clone_status is CloneStatus.cloned


async def test_the_janitor_maintains_mirrors_and_removes_deleted_ones(
    services: Services, git_root: Path, git_server: GitHttpServer
) -> None:
    from repodepot.gitserver.janitor import Janitor

    generate(git_root / "keep.git", Spec(commits=20))
    generate(git_root / "drop.git", Spec(commits=5))
    await mirror_all(services, git_server, "keep", "drop")
    await run_due(services)
    record = await services.repositories.get(operator(), "127.0.0.1/keep")
    drop = await services.repositories.get(operator(), "127.0.0.1/drop")
    keep = services.storage.path(record.id)
    assert services.storage.exists(drop.id)
    advance(git_root / "keep.git")
    await services.gitserver.enqueue_existing(record.id, QueueReason.admin)
    await run_due(services)  # a fetch leaves a second pack
    async with services.sessions.begin() as session:  # deleted long ago
        await session.execute(
            update(Repository)
            .where(Repository.name == "127.0.0.1/drop")
            .values(deleted_at=now() - timedelta(days=30))
        )
    janitor = Janitor.from_services(services)

    maintained, removed = await janitor.pass_once()

    assert (maintained, removed) == (1, 1)
    assert not services.storage.exists(drop.id)
    assert sorted(services.storage.mirror_ids()) == [record.id]
    graph = git("--git-dir", str(keep), "commit-graph", "verify", "--no-progress")
    assert graph == ""
    assert (keep / "objects" / "info" / "commit-graph").exists() or (
        keep / "objects" / "info" / "commit-graphs"
    ).exists()
    assert refs(keep) == refs(git_root / "keep.git")
    assert await janitor.pass_once() == (0, 0)  # maintained recently; nothing left to remove


async def test_new_clones_wait_below_the_disk_watermark(
    settings: Settings, git_root: Path, git_server: GitHttpServer
) -> None:
    services = await Services.open(settings.model_copy(update={"disk_min_free_percent": 100.0}))
    try:
        generate(git_root / "big.git", Spec(commits=3))
        await mirror_all(services, git_server, "big")
        await run_due(services)
        record = await services.repositories.get(operator(), "127.0.0.1/big")
        state = await services.gitserver.state(record.id)
        assert state is not None
        assert state.failure_kind == "disk_full"
        assert state.last_error is not None and "watermark" in state.last_error
        assert not services.storage.exists(record.id)
    finally:
        await services.close()


async def test_an_imported_repository_is_fetched_only_from_a_public_or_allowed_address(
    services: Services, git_root: Path, git_server: GitHttpServer
) -> None:
    # An import's URL came from a user: each fetch resolves it again, so a DNS answer that
    # later points at this network (here: loopback, no longer allowlisted) is refused.
    generate(git_root / "imp.git", Spec(commits=3))
    record = await services.repositories.create(
        name="alice/imp", owner_id=None, source_url=git_server.url("imp.git")
    )
    await run_due(services)
    local = services.storage.path(record.id)
    assert refs(local) == refs(git_root / "imp.git")  # 127.0.0.1 is allowlisted in tests

    before = refs(local)
    advance(git_root / "imp.git")
    assert await services.gitserver.enqueue_existing(record.id, QueueReason.admin)
    strict = services.settings.model_copy(update={"outbound_allowlist": []})
    loop = UpdateLoop(services.gitserver, services.git, services.storage, strict)
    for due in await services.gitserver.claim("test", 5, {}, 5):
        await loop.update(due)

    state = await services.gitserver.state(record.id)
    assert state is not None and state.last_error is not None
    assert "127.0.0.1" in state.last_error and "REPODEPOT_OUTBOUND_ALLOWLIST" in state.last_error
    assert refs(local) == before


@pytest.mark.parametrize(
    "allowlist", [["127.0.0.1"], ["127.0.0.1", "127.0.0.2"]], ids=["guarded", "allowlisted"]
)
async def test_a_clone_url_on_another_origin_is_skipped_and_never_cloned(
    services: Services, tmp_path: Path, allowlist: list[str]
) -> None:
    # The host's API names where to clone; it is trusted neither with where we connect
    # (127.0.0.2 is loopback, refused unless allowlisted) nor with the token: a clone
    # URL off the connection's origin is skipped by the sync, allowlisted or not.
    generate(tmp_path / "elsewhere" / "acme" / "app.git", Spec(commits=3))
    strict = services.settings.model_copy(update={"outbound_allowlist": allowlist})
    syncer = Syncer(
        sessions=services.sessions, box=SecretBox(ensure_secret_key(strict)), settings=strict
    )
    with (
        GitHttpServer(
            tmp_path / "elsewhere", host="127.0.0.2", auth=("x-access-token", "fake-token-0123")
        ) as elsewhere,
        FakeHost("github") as github,
    ):
        github.add("acme", "app", clone_url=elsewhere.url("acme/app.git"))
        config = {"url": github.url, "token": github.token, "repositoryQuery": ["affiliated"]}
        host = await services.codehosts.create(operator(), kind="github", name="gh", config=config)
        outcome = await syncer.sync(host.id)
        loop = UpdateLoop(services.gitserver, services.git, services.storage, strict)
        await services.gitserver.discover()
        for due in await services.gitserver.claim("test", 5, {}, 5):
            await loop.update(due)

    assert (outcome.added, outcome.skipped) == (0, 1)
    assert any(
        f"its clone URL is on http://127.0.0.2:{elsewhere.port}" in warning
        for warning in outcome.warnings
    )
    assert elsewhere.requests == []
    assert list(services.storage.mirror_ids()) == []
    assert (await services.repositories.list(operator())).items == []


async def _github_mirror(
    services: Services, github: FakeHost, owner: str, name: str
) -> tuple[int, RepositoryRecord]:
    """A GitHub connection yielding `owner/name`, synced and cloned: (its host id, its repo)."""
    config = {"url": github.url, "token": github.token, "repositoryQuery": ["affiliated"]}
    host = await services.codehosts.create(operator(), kind="github", name="gh", config=config)
    assert (await services.codehosts.syncer.sync(host.id)).added == 1
    assert len(await run_due(services)) == 1
    return host.id, await services.repositories.get(operator(), f"127.0.0.1/{owner}/{name}")


async def test_a_rename_upstream_keeps_the_mirror_and_reads_answer_at_once_under_the_new_name(
    services: Services, git_root: Path, git_server: GitHttpServer
) -> None:
    upstream = generate(git_root / "acme" / "app.git", Spec(commits=4))
    head = git("--git-dir", str(upstream), "rev-parse", "main").strip()
    with FakeHost("github", clone_base=git_server.url("")) as github:
        repo = github.add("acme", "app")
        host_id, before = await _github_mirror(services, github, "acme", "app")
        mirror = services.storage.path(before.id)
        github.rename(repo.id, "renamed")
        assert (await services.codehosts.syncer.sync(host_id)).modified == 1
    fetches = len(git_server.requests)

    after = await services.repositories.get(operator(), "127.0.0.1/acme/renamed")
    commit = await services.reads.ensure_revision(after.id, after.name, head)

    assert after.id == before.id and services.storage.path(after.id) == mirror
    assert list(services.storage.mirror_ids()) == [before.id]  # the same directory, no clone
    assert (commit.sha, commit.fetched) == (head, False)
    assert len(git_server.requests) == fetches  # answered before any fetch
    with pytest.raises(NotFound):
        await services.repositories.get(operator(), "127.0.0.1/acme/app")


async def test_a_name_given_up_by_a_deleted_repository_never_leads_to_its_commits(
    services: Services, git_root: Path, git_server: GitHttpServer
) -> None:
    first = generate(git_root / "acme" / "app.git", Spec(commits=4, seed=1))
    old = git("--git-dir", str(first), "rev-parse", "main").strip()
    with FakeHost("github", clone_base=git_server.url("")) as github:
        gone = github.add("acme", "app")
        host_id, deleted = await _github_mirror(services, github, "acme", "app")
        github.delete(gone.id)
        assert (await services.codehosts.syncer.sync(host_id)).deleted == 1
        # Another repository (another id, other commits) takes the name upstream.
        shutil.rmtree(first)
        generate(git_root / "acme" / "app.git", Spec(commits=3, seed=2))
        github.add("acme", "app")
        assert (await services.codehosts.syncer.sync(host_id)).added == 1
        await run_due(services)
    taker = await services.repositories.get(operator(), "127.0.0.1/acme/app")

    assert taker.id != deleted.id
    assert refs(services.storage.path(taker.id)) == refs(git_root / "acme" / "app.git")
    with pytest.raises(NotFound):
        await services.reads.ensure_revision(taker.id, taker.name, old)
    with pytest.raises(NotFound):
        await services.reads.ensure_revision(taker.id, taker.name, old[:12])


async def test_the_janitor_removes_directories_no_repository_owns_after_the_grace_period(
    services: Services,
    git_root: Path,
    git_server: GitHttpServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from repodepot.gitserver.janitor import Janitor

    generate(git_root / "kept.git", Spec(commits=3))
    await mirror_all(services, git_server, "kept")
    await run_due(services)
    kept = await services.repositories.get(operator(), "127.0.0.1/kept")
    storage = services.storage
    stale, fresh = kept.id + 100, kept.id + 101  # left by a crash: no row owns them
    for key in (stale, fresh):
        storage.path(key).parent.mkdir(parents=True, exist_ok=True)
        generate(storage.path(key), Spec(commits=2))
    long_ago = time.time() - services.settings.deleted_grace - 60
    for key in (kept.id, stale):
        os.utime(storage.path(key), (long_ago, long_ago))
    caplog.set_level(logging.WARNING, logger="repodepot.gitserver.janitor")

    removed = await Janitor.from_services(services).remove_orphans()

    assert removed == 1
    assert sorted(storage.mirror_ids()) == sorted([kept.id, fresh])  # owned, or too recent
    logged = [r for r in caplog.records if r.__dict__.get("action") == "janitor.orphan"]
    assert [r.__dict__["path"] for r in logged] == [str(storage.path(stale))]
