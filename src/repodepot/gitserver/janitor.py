"""The janitor: keeps the mirrors on this node fast and the disk clean.

Every `janitor_interval`:
- mirrors not maintained for `maintenance_interval` get `git maintenance run` with
  the incremental-repack and loose-objects tasks, then a commit-graph with
  changed-path Bloom filters (`git commit-graph write --reachable --changed-paths`),
  under the mirror's lock so no fetch runs meanwhile;
- mirrors of repositories soft-deleted longer than `deleted_grace` are removed from
  disk, and their rows with them.
(Corrupt mirrors are found by the updater: a failed fetch is followed by fsck.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from repodepot.codehosts.syncer import now
from repodepot.db.base import session_factory
from repodepot.db.models import CloneStatus, GitserverRepo, Repository
from repodepot.exceptions import InvalidInput
from repodepot.git.errors import GitError
from repodepot.git.runner import GitRunner
from repodepot.settings import Settings
from repodepot.storage import Storage

if TYPE_CHECKING:
    from repodepot.services import Services

logger = logging.getLogger(__name__)
BATCH = 100


def disk_free_percent(path: Path) -> float:
    """Free space on the file system holding `path`, in percent."""
    usage = shutil.disk_usage(path)
    return 100.0 * usage.free / usage.total if usage.total else 100.0


class Janitor:
    """Maintenance and removal passes; `run()` until `stop()`."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        git: GitRunner,
        storage: Storage,
        settings: Settings,
    ) -> None:
        self._sessions = sessions
        self._git = git
        self._storage = storage
        self._settings = settings
        self._stopping = asyncio.Event()

    @classmethod
    def from_services(cls, services: Services) -> Janitor:
        """A janitor over an opened set of services."""
        return cls(
            session_factory(services.worker_engine),
            services.git,
            services.storage,
            services.settings,
        )

    async def run(self) -> None:
        """A pass every `janitor_interval` until stopped."""
        while not self._stopping.is_set():
            try:
                await self.pass_once()
            except Exception:  # one bad pass must not end the janitor; it is logged
                logger.exception("janitor pass failed", extra={"action": "janitor"})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._settings.janitor_interval)

    async def stop(self) -> None:
        """End after the current step."""
        self._stopping.set()

    async def pass_once(self) -> tuple[int, int]:
        """One pass: (mirrors maintained, mirrors removed)."""
        removed = await self.remove_deleted()
        maintained = await self.maintain_due()
        return maintained, removed

    async def _mirrors(self, *conditions: Any) -> list[tuple[int, str]]:
        """(repository id, name) of up to BATCH mirrors on this node matching `conditions`."""
        async with self._sessions() as session:
            rows = await session.execute(
                select(GitserverRepo.repository_id, Repository.name)
                .join(Repository, Repository.id == GitserverRepo.repository_id)
                .where(GitserverRepo.shard == self._settings.shard, *conditions)
                .limit(BATCH)
            )
            return [(row.repository_id, row.name) for row in rows]

    async def maintain_due(self) -> int:
        """Maintain the mirrors whose last maintenance is older than the interval."""
        before = now() - timedelta(seconds=self._settings.maintenance_interval)
        rows = await self._mirrors(
            GitserverRepo.clone_status == CloneStatus.cloned,
            Repository.deleted_at.is_(None),
            or_(GitserverRepo.maintained_at.is_(None), GitserverRepo.maintained_at < before),
        )
        done = 0
        for repository_id, name in rows:
            if self._stopping.is_set():
                break
            if await self.maintain(name):
                done += 1
            async with self._sessions.begin() as session:
                await session.execute(
                    update(GitserverRepo)
                    .where(GitserverRepo.repository_id == repository_id)
                    .values(
                        maintained_at=now(),
                        size_bytes=await asyncio.to_thread(self._storage.size, name),
                    )
                )
        return done

    async def maintain(self, name: str) -> bool:
        """Repack incrementally, pack loose objects, write the commit-graph with Bloom filters."""
        try:
            path = self._storage.path(name)
        except InvalidInput:
            return False
        if not path.is_dir():
            return False
        async with self._storage.lock(name):
            try:
                await self._git.run(
                    [
                        "maintenance",
                        "run",
                        "--task=loose-objects",
                        "--task=incremental-repack",
                        "--quiet",
                    ],
                    git_dir=path,
                )
                await self._git.run(
                    ["commit-graph", "write", "--reachable", "--changed-paths", "--no-progress"],
                    git_dir=path,
                )
            except GitError as error:
                logger.warning(
                    "maintenance of %s failed: %s",
                    name,
                    error.message,
                    extra={"action": "janitor.maintain", "repo": name},
                )
                return False
        return True

    async def remove_deleted(self) -> int:
        """Remove the mirrors of repositories soft-deleted longer than the grace period."""
        before = now() - timedelta(seconds=self._settings.deleted_grace)
        rows = await self._mirrors(
            Repository.deleted_at.is_not(None), Repository.deleted_at < before
        )
        for repository_id, name in rows:
            with contextlib.suppress(InvalidInput):  # a `~deleted-…` name has no mirror path
                async with self._storage.lock(name):
                    self._storage.remove(name)
            async with self._sessions.begin() as session:
                await session.execute(
                    delete(GitserverRepo).where(GitserverRepo.repository_id == repository_id)
                )
            logger.info(
                "removed the mirror of deleted repository %s",
                name,
                extra={"action": "janitor.remove", "repo": name},
            )
        return len(rows)
