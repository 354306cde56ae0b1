"""The sync loop: each connection synced every `sync_interval`, and at once on request.

One sync of a connection runs at a time across processes: a sync first takes the
connection's lease (a row in `code_hosts`), renewed while it runs. Between syncs the
loop sleeps until the next connection is due, or until woken: by a connection created,
changed or asked to sync in this process, or on SQLite by a look at the database's
files (no query) every `sync_poll_interval` that shows a commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from repodepot.clock import now
from repodepot.codehosts import store
from repodepot.codehosts.syncer import Syncer
from repodepot.db.base import session_factory
from repodepot.loops import BackgroundLoop, cancel_all, new_worker_id, until_due
from repodepot.settings import Settings

if TYPE_CHECKING:
    from repodepot.services import Services

logger = logging.getLogger(__name__)
IDLE_CEILING = 60.0
"""Seconds an idle sync loop sleeps at most without a look at the table (missed wake-ups)."""


class SyncLoop(BackgroundLoop):
    """Syncs each due connection; `wake()` it after a "sync now"; `stop()` it at shutdown."""

    name = "codehost.sync"

    def __init__(
        self,
        syncer: Syncer,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        *,
        owner: str,
        concurrency: int = 4,
        changed: Callable[[], bool] | None = None,
    ) -> None:
        super().__init__(
            interval=settings.sync_poll_interval, ceiling=IDLE_CEILING, changed=changed
        )
        self._syncer = syncer
        self._sessions = sessions
        self._settings = settings
        self._owner = owner
        self._concurrency = concurrency
        self._running: dict[int, asyncio.Task[None]] = {}

    @classmethod
    def from_services(
        cls, services: Services, *, changed: Callable[[], bool] | None = None
    ) -> SyncLoop:
        """A loop over an opened set of services."""
        return cls(
            services.codehosts.syncer,
            session_factory(services.worker_engine),
            services.settings,
            owner=new_worker_id(),
            changed=changed,
        )

    async def starting(self) -> None:
        """Free the connections a crashed syncer on this host held, at once."""
        freed = await self._syncer.release_dead_leases()
        if freed:
            logger.warning(
                "released %d code host syncs leased by a process that died",
                freed,
                extra={"action": "codehost.leases_released", "count": freed},
            )

    async def step(self) -> float | None:
        """Claim due connections and sync them, a few at a time; seconds until the next due."""
        await self._start_due()
        async with self._sessions() as session:
            at = await store.next_due(session, now())
        return until_due(at, busy=bool(self._running), interval=self.interval)

    async def stopped(self) -> None:
        """Cancel running syncs (their leases expire, so they run again)."""
        await cancel_all(self._running.values())

    async def _start_due(self) -> None:
        free = self._concurrency - len(self._running)
        if free <= 0:
            return
        async with self._sessions() as session:
            due = await store.due(session, now(), free)
        for host_id in due:
            if host_id not in self._running and await self._syncer.claim(
                host_id, self._owner, due_only=True
            ):
                task = asyncio.create_task(self._sync(host_id), name=f"codehost-sync-{host_id}")
                self._running[host_id] = task

    async def _sync(self, host_id: int) -> None:
        try:
            await self._syncer.run_leased(host_id, self._owner)
        except Exception:  # recorded nowhere else: log it; the lease expiry retries it
            logger.exception("code host sync crashed", extra={"action": "codehost.sync"})
        finally:
            self._running.pop(host_id, None)
            self.wake()
