"""Identity and repository lookups kept in memory stop the moment they change.

Two `Services` on one database stand for two processes (a server and the CLI, or two
servers): a change made through one reaches the other's memory by NOTIFY (PostgreSQL)
or by the change counters (SQLite), within a second.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import update

from repodepot.accounts import operator
from repodepot.caches import Caches, Lookup
from repodepot.db.models import Repository, Visibility
from repodepot.exceptions import NotAuthenticated, NotFound
from repodepot.services import Services
from repodepot.settings import Settings
from tests.support.eventually import eventually


@pytest.fixture
async def other(settings: Settings) -> AsyncIterator[Services]:
    """A second process's services on the same database."""
    svc = await Services.open(settings)
    try:
        yield svc
    finally:
        await svc.close()


async def test_a_token_revoked_here_is_refused_at_once(services: Services) -> None:
    await services.accounts.create_user("dev")
    record, token = await services.accounts.create_token("dev")
    assert (await services.accounts.authenticate(token)).user.name == "dev"

    await services.accounts.revoke_token(record.id)

    with pytest.raises(NotAuthenticated):
        await services.accounts.authenticate(token)


async def test_a_token_revoked_by_another_process_is_refused_within_a_second(
    services: Services, other: Services
) -> None:
    await services.accounts.create_user("dev")
    record, token = await services.accounts.create_token("dev")
    assert (await services.accounts.authenticate(token)).user.name == "dev"
    assert services.caches.stats()["tokens"][2] == 1  # kept in memory

    await other.accounts.revoke_token(record.id)

    async def refused() -> bool:
        try:
            await services.accounts.authenticate(token)
        except NotAuthenticated:
            return True
        return False

    await eventually(refused, timeout=3.0)


async def test_a_repository_made_private_elsewhere_disappears_for_members_within_a_second(
    services: Services, other: Services
) -> None:
    dev = await services.accounts.create_user("dev")
    _, token = await services.accounts.create_token("dev")
    caller = await services.accounts.authenticate(token)
    await services.repositories.create(
        name="acme/open", visibility=Visibility.public, owner_id=None
    )
    assert (await services.repositories.get(caller, "acme/open")).visibility is Visibility.public

    async with other.sessions.begin() as session:
        await session.execute(
            update(Repository)
            .where(Repository.name == "acme/open")
            .values(visibility=Visibility.private)
        )

    async def hidden() -> bool:
        try:
            await services.repositories.get(caller, "acme/open")
        except NotFound:
            return True
        return False

    await eventually(hidden, timeout=3.0)
    assert dev.name == "dev"
    assert (await services.repositories.get(operator(), "acme/open")).visibility is (
        Visibility.private
    )


async def test_a_write_committed_here_drops_what_the_lookups_kept(services: Services) -> None:
    await services.repositories.create(name="acme/one", visibility=Visibility.public, owner_id=None)

    async def kept() -> bool:
        # On PostgreSQL the create's own notification may arrive after a first read and
        # drop what it kept, as it should: read again until the entry stays.
        await services.repositories.get(operator(), "acme/one")
        return services.caches.stats()["repositories"][2] == 1

    await eventually(kept, timeout=3.0)

    async with services.sessions.begin() as session:
        await session.execute(
            update(Repository).where(Repository.name == "acme/one").values(description="new")
        )

    assert services.caches.stats()["repositories"][2] == 0
    assert (await services.repositories.get(operator(), "acme/one")).description == "new"


def test_a_lookup_read_while_a_change_landed_keeps_nothing() -> None:
    caches = Caches(ttl=60)
    lookup: Lookup[str, int] = caches.lookup("identity", "tokens")
    generation = lookup.generation  # a read starts
    caches.changed(["identity"])  # a change lands meanwhile
    lookup.put("key", 1, generation)  # the read ends with what it saw before
    assert lookup.get("key") is None


def test_a_lookup_keeps_at_most_its_size_and_forgets_the_least_recently_used() -> None:
    lookup: Lookup[int, int] = Lookup("t", ttl=60, size=2)
    for key in (1, 2):
        lookup.put(key, key, lookup.generation)
    assert lookup.get(1) == 1  # 2 is now the least recently used
    lookup.put(3, 3, lookup.generation)
    assert (lookup.get(1), lookup.get(2), lookup.get(3)) == (1, None, 3)


async def test_concurrent_misses_share_one_read_and_a_change_starts_a_new_one() -> None:
    caches = Caches(ttl=60)
    lookup: Lookup[str, int] = caches.lookup("repositories", "names")
    reads: list[int] = []
    gate = asyncio.Event()

    async def read() -> int:
        reads.append(len(reads))
        await gate.wait()
        return len(reads)

    waiting = [asyncio.create_task(lookup.load("acme/one", read)) for _ in range(20)]
    for _ in range(3):  # the askers start, then the read they share
        await asyncio.sleep(0)
    assert len(reads) == 1  # twenty askers, one read
    caches.changed(["repositories"])  # a change lands while it runs
    after = asyncio.create_task(lookup.load("acme/one", read))
    for _ in range(3):
        await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*waiting) == [2] * 20
    assert await after == 2 and len(reads) == 2  # the one after the change read again
    assert lookup.get("acme/one") == 2  # only the read begun after the change is kept
