"""Pins: a tag version, once served, keeps its first commit (go.sum pins its bytes).

A tag that moves later is reported (logged and recorded in `moved_to`), never followed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from repodepot.db.models import GoVersion
from repodepot.goproxy.records import Module, VersionInfo

logger = logging.getLogger(__name__)
MAX_KEPT = 20_000


@dataclass(frozen=True, slots=True)
class Pin:
    """The commit a version was first served from."""

    commit: str
    commit_time: int
    ref: str
    subdir: str
    moved_to: str | None

    def info(self, version: str) -> VersionInfo:
        """The version as it was first served."""
        return VersionInfo(
            version=version,
            commit=self.commit,
            commit_time=self.commit_time,
            ref=self.ref,
            subdir=self.subdir,
        )

    @classmethod
    def from_row(cls, row: GoVersion) -> Pin:
        """From its `go_versions` row."""
        return cls(row.commit, row.commit_time, row.ref, row.subdir, row.moved_to)


class Pins:
    """The `go_versions` table.

    A pin never changes its commit, so pins found are kept in memory (the most recently
    used MAX_KEPT); only `moved_to` changes, here, and the kept pin with it. Concurrent
    first requests of one version share one write: each used to wait for the write
    lock on its own, to insert a row the first had inserted.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._kept: OrderedDict[tuple[int, str, str], Pin] = OrderedDict()
        self._saving: dict[tuple[int, str, str], asyncio.Task[VersionInfo]] = {}

    async def get(self, module: Module, version: str) -> Pin | None:
        """The version's pin, if it was served before."""
        key = (module.repository_id, module.path, version)
        kept = self._kept.get(key)
        if kept is not None:
            self._kept.move_to_end(key)
            return kept
        async with self._sessions() as session:
            row = await session.get(GoVersion, key)
        if row is None:
            return None
        self._keep(key, Pin.from_row(row))
        return self._kept[key]

    def _keep(self, key: tuple[int, str, str], pin: Pin) -> None:
        self._kept[key] = pin
        self._kept.move_to_end(key)
        while len(self._kept) > MAX_KEPT:
            self._kept.popitem(last=False)

    async def save(self, module: Module, found: VersionInfo) -> VersionInfo:
        """Pin a tag version to its commit; when another request pinned it first, that wins."""
        key = (module.repository_id, module.path, found.version)
        task = self._saving.get(key)
        if task is None:
            task = asyncio.create_task(self._save(module, found))
            self._saving[key] = task
            task.add_done_callback(lambda _: self._saving.pop(key, None))
        return await asyncio.shield(task)

    async def _save(self, module: Module, found: VersionInfo) -> VersionInfo:
        row = GoVersion(
            repository_id=module.repository_id,
            module=module.path,
            version=found.version,
            commit=found.commit,
            commit_time=found.commit_time,
            ref=found.ref or "",
            subdir=found.subdir,
            first_served_at=datetime.now(UTC),
        )
        try:
            async with self._sessions.begin() as session:
                session.add(row)
        except IntegrityError:
            pinned = await self.get(module, found.version)
            assert pinned is not None
            return pinned.info(found.version)
        self._keep((module.repository_id, module.path, found.version), Pin.from_row(row))
        return found

    async def report_move(self, module: Module, version: str, pinned: Pin, now: str) -> None:
        """Record (once) and log that the version's tag now names another commit."""
        if pinned.moved_to == now:
            return
        logger.warning(
            "a served Go module version's tag moved; the first content is kept",
            extra={
                "action": "goproxy.tag_moved",
                "go_module": module.path,
                "version": version,
                "commit": pinned.commit,
                "moved_to": now,
            },
        )
        async with self._sessions.begin() as session:
            await session.execute(
                update(GoVersion)
                .where(
                    GoVersion.repository_id == module.repository_id,
                    GoVersion.module == module.path,
                    GoVersion.version == version,
                )
                .values(moved_to=now, moved_at=datetime.now(UTC))
            )
        self._keep((module.repository_id, module.path, version), replace(pinned, moved_to=now))

    async def moved(self, repository_id: int) -> dict[str, list[str]]:
        """Module path → its versions whose tags moved after they were served."""
        statement = select(GoVersion.module, GoVersion.version).where(
            GoVersion.repository_id == repository_id, GoVersion.moved_to.is_not(None)
        )
        async with self._sessions() as session:
            rows = (await session.execute(statement)).all()
        moved: dict[str, list[str]] = {}
        for path, version in rows:
            moved.setdefault(path, []).append(version)
        return moved
