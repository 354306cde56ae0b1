"""Permission sync's client against the fake hosts: what a user's own token can read."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from repodepot.codehosts.config import parse_config
from repodepot.codehosts.http import ApiLimits, CachedPage, HostApi, ListingTooLong
from repodepot.codehosts.permissions import Readable, TokenRejected, readable_by
from repodepot.codehosts.planner import Connection
from repodepot.codehosts.sources import api_settings, make_source
from repodepot.db.models import CodeHostKind
from repodepot.exceptions import InvalidInput
from repodepot.outbound import Policy
from tests.support.fakehosts import FakeHost, Kind

POLICY = Policy(("127.0.0.1",))
LIMITS = ApiLimits(
    requests_per_second=1000.0,
    max_concurrent=4,
    timeout=10.0,
    retries=2,
    retry_base=0.01,
    max_rate_limit_wait=10.0,
    max_response_bytes=1 << 22,
    max_items=10_000,
)
# The listing each kind answers a user's token with (the fake counts by path).
LISTED = {
    "github": "/api/v3/user/repos",
    "gitlab": "/api/v4/projects",
    "gitea": "/api/v1/user/repos",
}
QUERY: dict[Kind, dict[str, Any]] = {
    "github": {"repositoryQuery": ["affiliated"]},
    "gitlab": {"projectQuery": ["?membership=true"]},
    "gitea": {"repositoryQuery": ["affiliated"]},
}


@pytest.fixture(params=["github", "gitlab", "gitea"])
def host(request: pytest.FixtureRequest) -> Iterator[FakeHost]:
    with FakeHost(request.param) as fake:
        fake.add_many(130)
        yield fake


def connection(host: FakeHost) -> Connection:
    kind = CodeHostKind(host.kind)
    config, _ = parse_config(kind, {"url": host.url, **QUERY[host.kind]})
    return Connection(id=1, kind=kind, name=f"acme-{host.kind}", config=config, token=host.token)


async def readable(
    host: FakeHost, token: str, *, cache: dict[str, CachedPage] | None = None, most: int = 1000
) -> Readable:
    return await readable_by(
        connection(host),
        token,
        policy=POLICY,
        limits=LIMITS,
        site_slots=asyncio.Semaphore(4),
        cache={} if cache is None else cache,
        most=most,
    )


async def synced_ids(host: FakeHost, repo_ids: list[int]) -> frozenset[str]:
    """The external ids a sync of the connection stores for these repositories of the host."""
    names = {host.repos[repo_id].full_name for repo_id in repo_ids}
    config = connection(host).config
    base_url, headers = api_settings(config, host.token)
    api = HostApi(
        base_url=base_url,
        headers=headers,
        policy=POLICY,
        limits=LIMITS,
        site_slots=asyncio.Semaphore(4),
        cache={},
        what="the connection",
    )
    try:
        listed = [repo async for repo in make_source(config, api).list_repos()]
    finally:
        await api.aclose()
    return frozenset(repo.external_id for repo in listed if repo.name_with_owner in names)


def allowed_user(host: FakeHost, count: int = 120) -> tuple[str, list[int]]:
    token = host.user("dev")
    repo_ids = sorted(host.repos)[:count]
    host.allow(token, *repo_ids)
    return token, repo_ids


async def test_a_user_reads_exactly_the_allowed_repositories_across_pages(host: FakeHost) -> None:
    token, repo_ids = allowed_user(host)
    host.add("acme", "open-to-all", private=False)  # public, but no affiliation or membership
    other = host.user("other")  # another user's allowances are not this one's
    host.allow(other, sorted(host.repos)[-2])

    found = await readable(host, token)

    assert host.count(LISTED[host.kind], 200) >= 2  # several pages
    assert found.external_ids == await synced_ids(host, repo_ids)
    assert len(found.external_ids) == 120


async def test_gitlab_lists_guest_access_and_not_minimal_access() -> None:
    with FakeHost("gitlab") as host:
        guest, reporter, minimal = (
            host.add("g", "guest"),
            host.add("g", "rep"),
            host.add("g", "min"),
        )
        token = host.user("dev")
        host.allow(token, guest.id, level=10)
        host.allow(token, reporter.id, level=20)
        host.allow(token, minimal.id, level=5)

        found = await readable(host, token)

        assert found.external_ids == {str(guest.id), str(reporter.id)}


async def test_a_disallowed_repository_disappears_from_the_next_listing(host: FakeHost) -> None:
    token, repo_ids = allowed_user(host)
    cache: dict[str, CachedPage] = {}
    before = await readable(host, token, cache=cache)

    host.disallow(token, repo_ids[7])
    after = await readable(host, token, cache=cache)

    gone = await synced_ids(host, [repo_ids[7]])
    assert after.external_ids == before.external_ids - gone
    assert len(after.external_ids) == 119


async def test_a_revoked_token_is_rejected_naming_the_connection_never_the_token(
    host: FakeHost, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token, _ = allowed_user(host)
    await readable(host, token)
    host.revoke(token)

    with pytest.raises(TokenRejected) as raised:
        await readable(host, token)

    error = raised.value
    assert f"acme-{host.kind}" in str(error)
    assert error.answer.startswith("401")
    assert token not in str(error)
    assert token not in repr(error)
    assert token not in caplog.text


async def test_a_rate_limited_page_is_waited_for_and_the_listing_completes(
    host: FakeHost,
) -> None:
    token, repo_ids = allowed_user(host)
    host.rate_limit_next(reset_in=1.0)

    found = await readable(host, token)

    assert found.stats.rate_limit_waits == 1
    assert found.external_ids == await synced_ids(host, repo_ids)


async def test_an_unchanged_relisting_is_answered_not_modified(host: FakeHost) -> None:
    token, _ = allowed_user(host)
    cache: dict[str, CachedPage] = {}
    first = await readable(host, token, cache=cache)
    pages = host.count(LISTED[host.kind], 200)

    again = await readable(host, token, cache=cache)

    assert again.external_ids == first.external_ids
    assert host.count(LISTED[host.kind], 304) == pages >= 2
    assert again.stats.not_modified == pages


async def test_a_listing_past_most_fails_instead_of_counting_as_complete(host: FakeHost) -> None:
    token, _ = allowed_user(host)

    with pytest.raises(ListingTooLong, match="more than 60 repositories"):
        await readable(host, token, most=60)


async def test_an_other_connection_has_no_account_to_link() -> None:
    config, _ = parse_config(CodeHostKind.other, {"repos": ["https://git.example.com/a/b"]})
    plain = Connection(id=2, kind=CodeHostKind.other, name="plain", config=config, token=None)

    with pytest.raises(InvalidInput, match="no account to link"):
        await readable_by(
            plain,
            "some-token",
            policy=POLICY,
            limits=LIMITS,
            site_slots=asyncio.Semaphore(1),
            cache={},
            most=10,
        )
