"""Property: whatever the hosts do, syncing leaves `repositories` equal to what they yield.

Hypothesis draws a sequence of host changes (add, delete, rename, move to another
owner, with names from a small pool so that names are reused and swapped). After
each change both connections sync, in a drawn order: one lists the whole host, the
other one organization, so many repositories have two sources, round after round
until a round changes nothing (a name one connection must skip until the other has
synced settles in the next round; three at most). Then the live rows must be exactly
the host's repositories under their current names, and every repository must keep
the id it got when it first appeared.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st
from sqlalchemy import delete, select

from repodepot.accounts import operator
from repodepot.db.models import CodeHost, Repository
from repodepot.services import Services
from repodepot.settings import Settings
from tests.support.fakehosts import FakeHost

NAMES = ["a", "b", "c", "d", "e"]
OWNERS = ["team", "else"]

change = st.tuples(
    st.sampled_from(["add", "delete", "rename", "move"]),
    st.integers(min_value=0, max_value=20),
    st.sampled_from(NAMES),
    st.sampled_from(OWNERS),
)
step = st.tuples(st.lists(change, min_size=1, max_size=4), st.booleans())


@pytest.fixture(scope="module")
def host() -> Iterator[FakeHost]:
    with FakeHost("github") as fake:
        yield fake


def apply(host: FakeHost, kind: str, pick: int, name: str, owner: str) -> None:
    """One change, skipped when it would give two repositories one full name."""
    taken = {repo.full_name for repo in host.repos.values()}
    existing = sorted(host.repos)
    if kind == "add":
        if f"{owner}/{name}" not in taken:
            host.add(owner, name)
        return
    if not existing:
        return
    target = host.repos[existing[pick % len(existing)]]
    if kind == "delete":
        host.delete(target.id)
    elif kind == "rename" and f"{target.owner}/{name}" not in taken:
        host.rename(target.id, name)
    elif kind == "move" and f"{owner}/{target.name}" not in taken:
        host.rename(target.id, target.name, owner=owner)


async def scenario(settings: Settings, host: FakeHost, steps: list[Any]) -> None:
    services = await Services.open(settings)
    try:
        async with services.sessions.begin() as session:  # a clean slate per example
            await session.execute(delete(CodeHost))
            await session.execute(delete(Repository))
        base = {"url": host.url, "token": host.token}
        everything = await services.codehosts.create(
            operator(),
            kind="github",
            name="all",
            config={**base, "repositoryQuery": ["affiliated"]},
        )
        team = await services.codehosts.create(
            operator(), kind="github", name="team", config={**base, "orgs": ["team"]}
        )
        first_ids: dict[str | None, int] = {}
        for changes, team_first in steps:
            for change in changes:
                apply(host, *change)
            order = [team, everything] if team_first else [everything, team]
            # A name a repository still has until the connection that yielded it syncs
            # is skipped by the other one: the scheduled syncs settle it in a round or two.
            for _ in range(3):
                outcomes = [await services.codehosts.syncer.sync(each.id) for each in order]
                assert [outcome.error for outcome in outcomes] == [None, None]
                if not any(each.added or each.modified or each.deleted for each in outcomes):
                    break
            else:
                pytest.fail("three rounds of syncs did not settle")
            async with services.sessions() as session:
                rows = (
                    await session.execute(
                        select(Repository.external_id, Repository.id, Repository.name).where(
                            Repository.deleted_at.is_(None)
                        )
                    )
                ).all()
            expected = {
                f"R_kgDO{repo.id:08d}": f"127.0.0.1/{repo.full_name}"
                for repo in host.repos.values()
            }
            assert {external: name for external, _, name in rows} == expected
            for external, key, _ in rows:
                assert first_ids.setdefault(external, key) == key, "an id changed"
    finally:
        await services.close()


@given(steps=st.lists(step, min_size=1, max_size=6))
@examples(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_repositories_equal_the_union_of_what_connections_yield_with_stable_ids(
    settings: Settings, host: FakeHost, steps: list[Any]
) -> None:
    host.repos.clear()
    quiet = settings.model_copy(
        update={"sync_purge_threshold_min": 10_000, "codehost_requests_per_second": 1000.0}
    )
    asyncio.run(scenario(quiet, host, steps))
