"""Syncing code host connections against fake GitHub, GitLab and Gitea APIs, on both databases."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import event, select, update

from repodepot.accounts import operator
from repodepot.clock import now
from repodepot.codehosts.service import CodeHostRecord
from repodepot.codehosts.syncer import Syncer
from repodepot.db.models import CodeHostKind, GitserverRepo, Repository, RepoSource, SyncStatus
from repodepot.repositories import MirrorFacts, record_mirror
from repodepot.secrets import SecretBox
from repodepot.services import Services
from repodepot.settings import Settings, ensure_secret_key
from tests.support.fakehosts import FakeHost, Kind

FAST = {
    "codehost_retry_base": 0.01,
    "codehost_requests_per_second": 1000.0,
    "codehost_max_rate_limit_wait": 10.0,
}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update=FAST)


@pytest.fixture
def github() -> Iterator[FakeHost]:
    with FakeHost("github") as host:
        yield host


@pytest.fixture
async def statements(services: Services) -> AsyncIterator[list[str]]:
    """Every SQL statement the syncer issues (it writes through the worker engine)."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    engine = services.worker_engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


def github_config(host: FakeHost, **extra: Any) -> dict[str, Any]:
    return {"url": host.url, "token": host.token, "repositoryQuery": ["affiliated"], **extra}


async def connect(
    services: Services, kind: str, config: dict[str, Any], name: str = "host"
) -> CodeHostRecord:
    return await services.codehosts.create(operator(), kind=kind, name=name, config=config)


async def live(services: Services) -> dict[str, tuple[int, str]]:
    """external id -> (row id, name) of every live repository from a code host."""
    async with services.sessions() as session:
        rows = await session.execute(
            select(Repository.external_id, Repository.id, Repository.name).where(
                Repository.deleted_at.is_(None), Repository.external_kind.is_not(None)
            )
        )
        return {str(external): (key, name) for external, key, name in rows}


async def test_first_sync_lists_every_page_and_a_resync_of_nothing_new_writes_nothing(
    services: Services, github: FakeHost, statements: list[str]
) -> None:
    github.add_many(250)
    host = await connect(services, "github", github_config(github))

    first = await services.codehosts.syncer.sync(host.id)

    assert first.status is SyncStatus.success, first.error
    assert (first.added, first.yielded) == (250, 250)
    assert first.api_calls == 3  # 100 + 100 + 50, by the Link header
    rows = await live(services)
    assert sorted(name for _, name in rows.values()) == [
        f"127.0.0.1/acme/repo-{index:05d}" for index in range(250)
    ]

    statements.clear()
    again = await services.codehosts.syncer.sync(host.id)

    assert (again.added, again.modified, again.deleted, again.unchanged) == (0, 0, 0, 250)
    assert again.not_modified == again.api_calls == 3  # every page answered 304 by ETag
    writes = [s for s in statements if s.split()[0].upper() in ("INSERT", "UPDATE", "DELETE")]
    touched = [s for s in writes if "repositories" in s.split("SET")[0] or "repo_sources" in s]
    assert touched == [], touched
    assert await live(services) == rows


async def test_rename_keeps_the_id_and_deletion_is_soft_and_a_return_restores_the_id(
    services: Services, github: FakeHost
) -> None:
    repos = github.add_many(30)
    host = await connect(services, "github", github_config(github))
    await services.codehosts.syncer.sync(host.id)
    before = await live(services)
    renamed, gone = repos[0], repos[1]
    external = {repo.id: f"R_kgDO{repo.id:08d}" for repo in repos}

    github.rename(renamed.id, "renamed", owner="other")
    github.delete(gone.id)
    outcome = await services.codehosts.syncer.sync(host.id)

    assert (outcome.modified, outcome.deleted, outcome.added) == (1, 1, 0)
    after = await live(services)
    assert after[external[renamed.id]] == (
        before[external[renamed.id]][0],
        "127.0.0.1/other/renamed",
    )
    assert external[gone.id] not in after
    page = await services.repositories.list(operator(), deleted=True)
    assert [repo.id for repo in page.items] == [before[external[gone.id]][0]]

    github.repos[gone.id] = gone  # the host yields it again
    outcome = await services.codehosts.syncer.sync(host.id)
    assert outcome.added == 1
    assert (await live(services))[external[gone.id]] == before[external[gone.id]]


async def test_a_name_freed_by_a_rename_in_the_same_sync_is_reused(
    services: Services, github: FakeHost
) -> None:
    first, second = github.add("acme", "one"), github.add("acme", "two")
    host = await connect(services, "github", github_config(github))
    await services.codehosts.syncer.sync(host.id)
    ids = {name: key for key, name in (await live(services)).values()}

    github.rename(first.id, "two-tmp")
    github.rename(second.id, "one")
    github.rename(first.id, "two")  # a swap
    outcome = await services.codehosts.syncer.sync(host.id)

    assert outcome.status is SyncStatus.success, outcome.error
    swapped = {name: key for key, name in (await live(services)).values()}
    assert swapped["127.0.0.1/acme/one"] == ids["127.0.0.1/acme/two"]
    assert swapped["127.0.0.1/acme/two"] == ids["127.0.0.1/acme/one"]


async def test_rate_limits_are_waited_out_and_server_errors_retried(
    services: Services, github: FakeHost
) -> None:
    github.add_many(150)
    host = await connect(services, "github", github_config(github))
    github.rate_limit_next(reset_in=1.0)
    github.secondary_limit_next(retry_after=1)
    github.fail_next(500)
    github.fail_next(502)

    started = time.monotonic()
    outcome = await services.codehosts.syncer.sync(host.id)

    assert outcome.status is SyncStatus.success, outcome.error
    assert outcome.added == 150
    assert time.monotonic() - started >= 1.0  # waited for the reset, and Retry-After
    assert outcome.api_calls == 2 + 4  # two pages, and the four refused attempts


async def test_a_rate_limit_longer_than_the_wait_fails_with_the_reset_time(
    services: Services, github: FakeHost
) -> None:
    github.add_many(5)
    host = await connect(services, "github", github_config(github))
    github.rate_limit_next(reset_in=3600)

    outcome = await services.codehosts.syncer.sync(host.id)

    assert outcome.status is SyncStatus.failed
    assert outcome.error is not None and "rate-limited until" in outcome.error


async def test_bad_credentials_stop_the_sync_and_delete_nothing(
    services: Services, github: FakeHost
) -> None:
    github.add_many(40)
    host = await connect(services, "github", github_config(github))
    await services.codehosts.syncer.sync(host.id)
    github.token = "rotated"

    outcome = await services.codehosts.syncer.sync(host.id)

    assert outcome.status is SyncStatus.failed
    assert outcome.error is not None and "refused the token" in outcome.error
    assert "fake-token" not in outcome.error
    assert len(await live(services)) == 40
    record = await services.codehosts.get(operator(), host.id)
    assert record.last_error == outcome.error and record.repo_count == 40
    assert github.count("/api/v3/user/repos", 401) == 1  # no retrying a refused token


async def test_an_unreachable_host_is_retried_then_reported(services: Services) -> None:
    with FakeHost("github") as gone:
        url = gone.url
    host = await connect(services, "github", {"url": url, "repositoryQuery": ["affiliated"]})

    outcome = await services.codehosts.syncer.sync(host.id)

    assert outcome.status is SyncStatus.failed
    assert outcome.error is not None and "did not answer after 6 attempts" in outcome.error


async def test_mass_deletion_is_held_until_an_admin_confirms(
    services: Services, github: FakeHost
) -> None:
    repos = github.add_many(100)
    host = await connect(services, "github", github_config(github))
    await services.codehosts.syncer.sync(host.id)
    for repo in repos[:30]:  # 30 > max(20, 5% of 100)
        github.delete(repo.id)

    outcome = await services.codehosts.syncer.sync(host.id)

    assert outcome.status is SyncStatus.held
    assert (outcome.held, outcome.deleted) == (30, 0)
    assert len(await live(services)) == 100
    record = await services.codehosts.get(operator(), host.id)
    assert record.held_deletions == 30
    assert record.held_repositories[0] == "127.0.0.1/acme/repo-00000"

    assert await services.codehosts.confirm_deletions(operator(), host.id) == 30
    assert len(await live(services)) == 70
    assert (await services.codehosts.get(operator(), host.id)).held_deletions == 0


async def test_a_few_deletions_are_not_held(services: Services, github: FakeHost) -> None:
    repos = github.add_many(100)
    host = await connect(services, "github", github_config(github))
    await services.codehosts.syncer.sync(host.id)
    for repo in repos[:20]:
        github.delete(repo.id)

    outcome = await services.codehosts.syncer.sync(host.id)

    assert (outcome.status, outcome.deleted) == (SyncStatus.success, 20)


async def test_the_site_limit_stops_a_sync_without_changing_anything(
    settings: Settings, github: FakeHost
) -> None:
    services = await Services.open(settings.model_copy(update={"max_repos_per_site": 120}))
    try:
        repos = github.add_many(100)
        host = await connect(services, "github", github_config(github))
        await services.codehosts.syncer.sync(host.id)
        github.delete(repos[0].id)
        github.add_many(30, prefix="more")

        outcome = await services.codehosts.syncer.sync(host.id)

        assert outcome.status is SyncStatus.over_limit
        assert outcome.error is not None and "max_repos_per_site (120)" in outcome.error
        assert len(await live(services)) == 100  # nothing added, nothing deleted
    finally:
        await services.close()


async def test_two_connections_to_one_host_share_one_row(
    services: Services, github: FakeHost
) -> None:
    github.add_many(5, owner="team")
    github.add_many(5, owner="else")
    everything = await connect(services, "github", github_config(github), name="all")
    team = await connect(
        services, "github", {"url": github.url, "token": github.token, "orgs": ["team"]}, "team"
    )
    await services.codehosts.syncer.sync(everything.id)
    before = await live(services)
    await services.codehosts.syncer.sync(team.id)

    assert await live(services) == before
    async with services.sessions() as session:
        sources = (await session.execute(select(RepoSource.code_host_id))).scalars().all()
    assert sorted(sources) == [everything.id] * 10 + [team.id] * 5

    await services.codehosts.remove(operator(), everything.id)
    remaining = await live(services)
    assert remaining == {key: value for key, value in before.items() if "/team/" in value[1]}


@pytest.mark.parametrize("kind", ["gitlab", "gitea"])
async def test_gitlab_and_gitea_page_through_retry_and_keep_ids_across_renames(
    services: Services, kind: Kind
) -> None:
    with FakeHost(kind) as fake:
        repos = fake.add_many(250, owner="group")
        query = {"gitlab": {"projectQuery": ["?membership=true"]}}.get(
            kind, {"repositoryQuery": ["affiliated"]}
        )
        host = await connect(services, kind, {"url": fake.url, "token": fake.token, **query})
        if kind == "gitlab":
            fake.rate_limit_next(reset_in=1.0)  # 429 with Retry-After and RateLimit-Reset
        fake.fail_next(500)

        first = await services.codehosts.syncer.sync(host.id)
        assert first.status is SyncStatus.success, first.error
        assert first.added == 250
        pages = 3 if kind == "gitlab" else 5  # 100 or 50 a page
        assert first.api_calls == pages + (2 if kind == "gitlab" else 1)
        before = await live(services)

        fake.rename(repos[7].id, "moved")
        fake.delete(repos[8].id)
        again = await services.codehosts.syncer.sync(host.id)
        after = await live(services)

        fake.token = "revoked"
        refused = await services.codehosts.syncer.sync(host.id)

    assert (again.modified, again.deleted, again.unchanged) == (1, 1, 248)
    assert after[str(repos[7].id)] == (before[str(repos[7].id)][0], "127.0.0.1/group/moved")
    assert str(repos[8].id) not in after
    assert refused.status is SyncStatus.failed
    assert refused.error is not None and "refused the token (401" in refused.error
    assert len(await live(services)) == 249


async def test_exclusions_and_explicit_repositories(services: Services, github: FakeHost) -> None:
    github.add("acme", "keep")
    github.add("acme", "old", archived=True)
    github.add("acme", "copy", fork=True)
    github.add("acme", "skip-me")
    github.add("solo", "explicit")
    config = {
        "url": github.url,
        "token": github.token,
        "orgs": ["acme"],
        "repos": ["solo/explicit", "solo/missing"],
        "exclude": [{"archived": True}, {"forks": True}, {"pattern": "^acme/skip-"}],
        "repositoryPathPattern": "gh/{nameWithOwner}",
    }
    host = await connect(services, "github", config)

    outcome = await services.codehosts.syncer.sync(host.id)

    assert sorted(name for _, name in (await live(services)).values()) == [
        "gh/acme/keep",
        "gh/solo/explicit",
    ]
    assert any("solo/missing" in warning for warning in outcome.warnings)


async def test_other_kind_lists_its_clone_urls(services: Services) -> None:
    config = {
        "url": "https://git.example.com",
        "repos": ["tools/lint.git", "https://mirror.example.org/a/b.git"],
    }
    host = await connect(services, "other", config)

    outcome = await services.codehosts.syncer.sync(host.id)

    assert outcome.api_calls == 0
    assert sorted(name for _, name in (await live(services)).values()) == [
        "git.example.com/tools/lint",
        "mirror.example.org/a/b",
    ]
    record = await services.codehosts.get(operator(), host.id)
    assert (record.kind, record.repo_count, record.token_set) == (CodeHostKind.other, 2, False)


async def test_a_name_taken_by_an_imported_repository_is_skipped_with_a_warning(
    services: Services, github: FakeHost
) -> None:
    github.add("acme", "taken")
    github.add("acme", "free")
    await services.repositories.create(name="127.0.0.1/acme/taken", owner_id=None)
    host = await connect(services, "github", github_config(github))

    outcome = await services.codehosts.syncer.sync(host.id)

    assert (outcome.added, outcome.skipped) == (1, 1)
    assert any("taken by another repository" in warning for warning in outcome.warnings)


async def test_pages_revalidated_together_still_follow_a_listing_that_grew(
    services: Services, github: FakeHost
) -> None:
    github.add_many(250)
    host = await connect(services, "github", github_config(github))
    await services.codehosts.syncer.sync(host.id)
    github.add_many(60, prefix="new")  # page 3 fills up and links to a new page 4

    outcome = await services.codehosts.syncer.sync(host.id)

    assert (outcome.added, outcome.unchanged) == (60, 250)
    assert (outcome.api_calls, outcome.not_modified) == (4, 2)


async def test_a_new_naming_pattern_renames_every_repository_in_place(
    services: Services, github: FakeHost
) -> None:
    github.add_many(3)
    host = await connect(services, "github", github_config(github))
    await services.codehosts.syncer.sync(host.id)
    before = await live(services)

    await services.codehosts.update(
        operator(),
        host.id,
        name=None,
        config={
            "url": github.url,
            "repositoryQuery": ["affiliated"],
            "repositoryPathPattern": "gh/{name}",
        },
    )
    outcome = await services.codehosts.syncer.sync(host.id)

    assert outcome.modified == 3  # a new config means a new digest: the table is diffed
    after = await live(services)
    assert {key: value[0] for key, value in after.items()} == {
        key: value[0] for key, value in before.items()
    }
    assert sorted(name for _, name in after.values()) == [
        "gh/repo-00000",
        "gh/repo-00001",
        "gh/repo-00002",
    ]
    assert (await services.codehosts.get(operator(), host.id)).token_set  # kept without a token


@pytest.mark.parametrize(
    ("kind", "queries", "expected"),
    [
        ("github", ["tool"], ["acme/tool-a", "other/tool-b"]),
        ("github", ["org:other"], ["other/lib", "other/tool-b"]),
        ("github", ["public"], ["acme/lib", "acme/tool-a", "other/lib", "other/tool-b"]),
        ("gitea", ["public"], ["acme/lib", "acme/tool-a", "other/lib", "other/tool-b"]),
        ("gitea", ["lib", "org:acme"], ["acme/lib", "acme/tool-a", "other/lib"]),
    ],
)
async def test_search_public_and_org_queries(
    services: Services, kind: Kind, queries: list[str], expected: list[str]
) -> None:
    with FakeHost(kind) as fake:
        for full_name in ("acme/tool-a", "acme/lib", "other/tool-b", "other/lib"):
            fake.add(*full_name.split("/"))
        config = {"url": fake.url, "token": fake.token, "repositoryQuery": queries}
        host = await connect(services, kind, {**config, "repositoryPathPattern": "{nameWithOwner}"})
        outcome = await services.codehosts.syncer.sync(host.id)
    assert outcome.status is SyncStatus.success, outcome.error
    assert sorted(name for _, name in (await live(services)).values()) == expected


# 127.0.0.2 plays another host: loopback like the fakes, but not in the test allowlist.
OTHER = "127.0.0.2"


@pytest.mark.parametrize(
    "allowlist", [["127.0.0.1"], ["127.0.0.1", OTHER]], ids=["guarded", "allowlisted"]
)
async def test_a_next_page_link_to_another_origin_is_not_followed_with_the_token(
    services: Services, github: FakeHost, allowlist: list[str]
) -> None:
    # Allowlisted or not, the other origin gets nothing: the token belongs to the API's.
    syncer = Syncer(
        sessions=services.sessions,
        box=SecretBox(ensure_secret_key(services.settings)),
        settings=services.settings.model_copy(update={"outbound_allowlist": allowlist}),
    )
    with FakeHost("github", token=github.token, address=OTHER) as other:
        other.add_many(250)
        github.add_many(150)
        github.link_base = other.url  # page 1's rel="next" points at the other host
        host = await connect(services, "github", github_config(github))

        outcome = await syncer.sync(host.id)

    assert outcome.status is SyncStatus.failed
    assert outcome.error is not None
    assert f"next page for /api/v3/user/repos on http://{OTHER}:{other.port}" in outcome.error
    assert "another origin" in outcome.error
    assert other.seen == [] and not other.saw_token()


async def test_a_redirect_is_followed_on_the_same_origin_only_and_never_takes_the_token(
    services: Services,
) -> None:
    with FakeHost("gitlab") as gitlab, FakeHost("gitlab", address=OTHER) as other:
        other.token = gitlab.token
        gitlab.add_many(3, owner="group")
        config = {"url": gitlab.url, "token": gitlab.token, "projectQuery": ["?membership=true"]}
        host = await connect(services, "gitlab", config)
        gitlab.redirect_next(f"{gitlab.url}/api/v4/projects?membership=true&per_page=100", 301)
        gitlab.redirect_next(f"{other.url}/api/v4/projects?membership=true&per_page=100")

        outcome = await services.codehosts.syncer.sync(host.id)

    assert outcome.status is SyncStatus.failed
    assert outcome.error is not None
    assert f"a redirect for /api/v4/projects on http://{OTHER}:{other.port}" in outcome.error
    assert gitlab.count("/api/v4/projects") == 2  # the same-origin 301 was followed
    assert other.seen == [] and not other.saw_token()  # PRIVATE-TOKEN went nowhere else


async def test_api_calls_to_an_internal_address_are_refused(services: Services) -> None:
    with FakeHost("gitea", address=OTHER) as inside:
        inside.add_many(3)
        config = {"url": inside.url, "token": inside.token, "repositoryQuery": ["affiliated"]}
        host = await connect(services, "gitea", config)

        outcome = await services.codehosts.syncer.sync(host.id)

    assert outcome.status is SyncStatus.failed
    assert outcome.error is not None
    assert f"resolves to {OTHER}, not a public address" in outcome.error
    assert "REPODEPOT_OUTBOUND_ALLOWLIST" in outcome.error
    assert inside.seen == []


async def mirror_queue(services: Services) -> dict[str, tuple[int | None, str | None, bool]]:
    """name -> (queued priority, queued reason, failing) of every mirror row."""
    async with services.sessions() as session:
        rows = await session.execute(
            select(
                Repository.name,
                GitserverRepo.queued_priority,
                GitserverRepo.queued_reason,
                GitserverRepo.failing,
            ).join(GitserverRepo, GitserverRepo.repository_id == Repository.id)
        )
        return {name: (priority, reason, failing) for name, priority, reason, failing in rows}


async def test_new_and_restored_repositories_are_queued_for_their_mirror_by_the_sync(
    services: Services, github: FakeHost
) -> None:
    repos = github.add_many(3)
    host = await connect(services, "github", github_config(github))

    await services.codehosts.syncer.sync(host.id)

    names = [f"127.0.0.1/acme/repo-{index:05d}" for index in range(3)]
    # Queued first (priority 0) by the sync itself, not at the updater's next discovery.
    assert await mirror_queue(services) == {name: (0, "new", False) for name in names}

    async with services.sessions.begin() as session:  # the updater cloned them all
        await session.execute(
            update(GitserverRepo).values(queued_priority=None, queued_reason=None)
        )
    gone = repos[0]
    github.delete(gone.id)
    await services.codehosts.syncer.sync(host.id)
    github.repos[gone.id] = gone
    outcome = await services.codehosts.syncer.sync(host.id)

    assert outcome.added == 1
    queue = await mirror_queue(services)
    assert queue[names[0]] == (0, "new", False)  # restored: its mirror is fetched first
    assert queue[names[1]] == queue[names[2]] == (None, None, False)


async def test_the_sync_leaves_the_default_branch_to_the_mirror(
    services: Services, github: FakeHost
) -> None:
    repo = github.add("acme", "app", default_branch="develop")
    host = await connect(services, "github", github_config(github))
    await services.codehosts.syncer.sync(host.id)
    name = "127.0.0.1/acme/app"

    synced = await services.repositories.get(operator(), name)
    assert (synced.default_branch, synced.is_empty, synced.size_bytes) == (None, True, 0)

    async with services.sessions.begin() as session:  # what a clone found in the mirror
        await record_mirror(
            session,
            synced.id,
            MirrorFacts(default_branch="main", is_empty=False, size_bytes=125_000),
            changed_at=now(),
        )
    github.repos[repo.id] = replace(repo, description="changed", default_branch="release")
    outcome = await services.codehosts.syncer.sync(host.id)

    assert outcome.modified == 1
    after = await services.repositories.get(operator(), name)
    assert after.description == "changed"
    assert (after.default_branch, after.is_empty, after.size_bytes) == ("main", False, 125_000)


async def test_a_new_token_resumes_failing_mirrors_without_demoting_queued_ones(
    services: Services, github: FakeHost
) -> None:
    github.add_many(3)
    host = await connect(services, "github", github_config(github))
    await services.codehosts.syncer.sync(host.id)
    await services.gitserver.discover()  # the updater's walk: changes nothing queued
    first, second, third = (f"127.0.0.1/acme/repo-{index:05d}" for index in range(3))
    ids = {name: key for key, name in (await live(services)).values()}
    async with services.sessions.begin() as session:
        await session.execute(  # first: failing, still queued for its first clone
            update(GitserverRepo)
            .where(GitserverRepo.repository_id == ids[first])
            .values(failing=True, failures=4)
        )
        await session.execute(  # second: failing, out of the queue
            update(GitserverRepo)
            .where(GitserverRepo.repository_id == ids[second])
            .values(failing=True, failures=4, queued_priority=None, queued_reason=None)
        )
        await session.execute(  # third: healthy, out of the queue
            update(GitserverRepo)
            .where(GitserverRepo.repository_id == ids[third])
            .values(queued_priority=None, queued_reason=None)
        )

    await services.codehosts.update(
        operator(), host.id, name=None, config={**github_config(github), "token": "rotated"}
    )

    assert await mirror_queue(services) == {
        first: (0, "new", False),  # still first in line, not pushed behind the asked-for
        second: (1, "admin", False),
        third: (None, None, False),  # nothing wrong with it: not fetched for the token
    }
