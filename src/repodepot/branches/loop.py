"""The upstream fetcher: fetches due upstreams in the background, a few at a time.

Woken by "fetch now" (and by a repository upstream that moved), otherwise it looks
for due upstreams every `interval`. Each fetch holds a lease on its row, renewed while
it runs, so a crash loses nothing: at start-up the leases of a fetcher that died on
this host are freed at once, another host's expire. Fetches run as git subprocesses
(the event loop only waits), at most `upstream_max_concurrent` at once (by default
the cores less one, so the foreground keeps a core) and `max_clones_per_host` against
one host, and each holds the mirror's lock (`Storage.lock`) while git writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from typing import TYPE_CHECKING

from repodepot.branches.service import Branches
from repodepot.branches.store import LEASE
from repodepot.loops import BackgroundLoop, new_worker_id, renewing

if TYPE_CHECKING:
    from repodepot.services import Services

logger = logging.getLogger(__name__)


class UpstreamLoop(BackgroundLoop):
    """Keeps every upstream's tracked branches and their counts fresh."""

    name = "upstream"

    def __init__(self, branches: Branches, *, slots: int, interval: float = 5.0) -> None:
        super().__init__(interval=interval, jitter=0.1)
        self._branches = branches
        self._slots = slots
        self._owner = new_worker_id()
        self._running: dict[int, tuple[str, asyncio.Task[None]]] = {}

    @classmethod
    def from_services(cls, services: Services) -> UpstreamLoop:
        """A loop over an opened set of services."""
        return cls(services.branches, slots=services.settings.upstream_max_concurrent)

    async def starting(self) -> None:
        """Free the leases of a fetcher on this host that died."""
        freed = await self._branches.release_dead_leases()
        if freed:
            logger.warning(
                "released %d upstream fetches leased by a fetcher that died",
                freed,
                extra={"action": "upstream.leases_released", "count": freed},
            )

    async def step(self) -> None:
        """Lease due upstreams for the free slots and fetch them."""
        free = self._slots - len(self._running)
        if free <= 0:
            return
        busy = Counter(host for host, _ in self._running.values())
        for repository_id, host in await self._branches.claim(self._owner, free, dict(busy)):
            task = asyncio.create_task(self._fetch(repository_id), name=f"upstream-{repository_id}")
            self._running[repository_id] = (host, task)

    async def stopped(self) -> None:
        """Cancel running fetches; their leases expire or are freed at the next start."""
        for _, task in list(self._running.values()):
            task.cancel()
        for _, task in list(self._running.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _fetch(self, repository_id: int) -> None:
        try:
            async with renewing(
                lambda: self._branches.renew(self._owner, repository_id),
                LEASE.total_seconds() / 3,
            ):
                await self._branches.refresh(self._owner, repository_id)
        except asyncio.CancelledError:
            raise
        except Exception:  # recorded nowhere else: log it; the lease expiry retries it
            logger.exception(
                "upstream fetch crashed",
                extra={"action": "upstream.fetch", "repository_id": repository_id},
            )
        finally:
            self._running.pop(repository_id, None)
            self.wake()
