"""Seed a repository with its mirror on disk, and the facts a clone writes from it.

The row comes first (the mirror lives under the repository's id), then the mirror at
`storage.path(id)`, then what the mirror says of its repository (default branch,
emptiness, size), written by the repositories module as after a clone, and its mirror
row, cloned and due at once (as an import's clone is adopted): an updater that runs
fetches into it; one that finds a directory without a cloned row clones afresh.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import update

from repodepot.accounts import operator
from repodepot.db.models import GitserverRepo, Visibility
from repodepot.gitserver import mirror
from repodepot.gitserver.service import adopt_in
from repodepot.gitserver.updater import UpdateLoop
from repodepot.repositories import RepositoryRecord, record_mirror
from repodepot.services import Services
from tests.support.repogen import Spec, generate, git


async def seed_mirror(
    services: Services,
    name: str,
    *,
    source: Path | None = None,
    spec: Spec | None = None,
    owner_id: int | None = None,
    visibility: Visibility = Visibility.private,
    source_url: str | None = None,
    description: str = "",
) -> RepositoryRecord:
    """Create repository `name` with a mirror: a `git clone --mirror` of `source`, else `spec`'s.

    Returns the repository as read back, with the mirror's facts recorded.
    """
    if source is not None and spec is not None:
        raise ValueError("a mirror is cloned from `source` or generated from `spec`, not both")
    record = await services.repositories.create(
        name=name,
        owner_id=owner_id,
        visibility=visibility,
        source_url=source_url,
        description=description,
    )
    path = services.storage.path(record.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    if source is not None:
        await asyncio.to_thread(git, "clone", "--mirror", "--quiet", str(source), str(path))
    else:
        await asyncio.to_thread(generate, path, spec or Spec())
    await record_facts(services, record.id)
    async with services.sessions.begin() as session:
        await adopt_in(
            session,
            record.id,
            shard=services.settings.node_name,
            at=datetime.now(UTC),
            interval=0.0,
        )
    return await services.repositories.get(operator(), name)


async def record_facts(services: Services, repository_id: int) -> None:
    """Write the mirror's default branch, emptiness and size to its repository."""
    found = await mirror.facts(services.git, services.storage.path(repository_id))
    async with services.sessions.begin() as session:
        await record_mirror(session, repository_id, found, changed_at=datetime.now(UTC))


async def connected_mirror(services: Services, url: str, name: str) -> RepositoryRecord:
    """Repository `name` from an `other` connection listing `url`, cloned by one update."""
    config = {"repos": [url]}
    host = await services.codehosts.create(operator(), kind="other", name="up", config=config)
    await services.codehosts.syncer.sync(host.id)
    loop = UpdateLoop.from_services(services)
    for due in await services.gitserver.claim("test", 5, {}, 5):
        await loop.update(due)
    return await services.repositories.get(operator(), name)


async def age_mirror(services: Services, repository_id: int, seconds: float) -> None:
    """Date the mirror's last fetch `seconds` back, its next scheduled update a day away."""
    old = datetime.now(UTC) - timedelta(seconds=seconds)
    async with services.sessions.begin() as session:
        await session.execute(
            update(GitserverRepo)
            .where(GitserverRepo.repository_id == repository_id)
            .values(last_fetched_at=old, next_update_at=old + timedelta(days=1))
        )
