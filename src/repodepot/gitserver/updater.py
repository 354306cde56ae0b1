"""The update scheduler's workers: clone or fetch due mirrors, within limits.

At start-up the mirrors a crashed updater on this host held are freed at once. Each
round leases as many due mirrors as there are free slots: at most
`max_concurrent_clones` and `background_concurrency` at once, and at most
`max_clones_per_host` against one host, and only while the backpressure gate is open.
git runs in subprocesses, as background work (`nice`, idle I/O); the event loop only
waits. A fetch that fails is followed by a connectivity check; a mirror that fails it
is removed and cloned again.

Between rounds the loop sleeps until the next mirror is due, or until woken: by an
enqueue in this process, by a notification from another (PostgreSQL), or, on SQLite,
when a look at the database's files (no query) every `update_poll_interval` shows a
commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from repodepot.backpressure import RECHECK, Gate
from repodepot.clock import now
from repodepot.db.models import CloneStatus
from repodepot.exceptions import RepodepotError
from repodepot.git import commands
from repodepot.git.errors import GitError
from repodepot.git.runner import GitRunner, background
from repodepot.gitserver import mirror
from repodepot.gitserver.failures import FailureKind, classify, credential_advice, message
from repodepot.gitserver.janitor import disk_free_percent
from repodepot.gitserver.service import LEASE, Due, Gitserver
from repodepot.loops import BackgroundLoop, new_worker_id, renewing
from repodepot.settings import Settings
from repodepot.storage import Storage

if TYPE_CHECKING:
    from repodepot.services import Services

logger = logging.getLogger(__name__)
IDLE_CEILING = 60.0
"""Seconds an idle updater sleeps at most without a look at the queue (missed wake-ups)."""


class UpdateLoop(BackgroundLoop):
    """Keeps every mirror cloned and fresh; `wake()` it when work is queued."""

    name = "update"

    def __init__(
        self,
        gitserver: Gitserver,
        git: GitRunner,
        storage: Storage,
        settings: Settings,
        *,
        gate: Gate | None = None,
        changed: Callable[[], bool] | None = None,
    ) -> None:
        super().__init__(
            interval=settings.update_poll_interval, ceiling=IDLE_CEILING, changed=changed
        )
        self._gitserver = gitserver
        self._git = git
        self._storage = storage
        self._settings = settings
        self._gate = gate
        self._slots = min(settings.max_concurrent_clones, settings.background_concurrency)
        self._owner = new_worker_id()
        self._running: dict[int, tuple[Due, asyncio.Task[None]]] = {}
        # Called with a repository's id after a fetch moved its refs (branch status).
        self.on_changed: Callable[[int], Awaitable[None]] | None = None

    @classmethod
    def from_services(
        cls,
        services: Services,
        *,
        gate: Gate | None = None,
        changed: Callable[[], bool] | None = None,
    ) -> UpdateLoop:
        """A loop over an opened set of services."""
        return cls(
            services.gitserver,
            services.git,
            services.storage,
            services.settings,
            gate=gate,
            changed=changed,
        )

    async def starting(self) -> None:
        """Free the mirrors a crashed updater on this host held; give rows to the rest.

        Syncs and imports queue the mirrors of the repositories they create in the same
        transaction, so discovery is needed once, for rows from before or made by hand.
        """
        await self._gitserver.discover()
        freed = await self._gitserver.release_dead_leases()
        if freed:
            logger.warning(
                "released %d mirrors leased by an updater that died",
                freed,
                extra={"action": "update.leases_released", "count": freed},
            )

    async def step(self) -> float | None:
        """Claim due mirrors for the free slots and update them; seconds until the next due."""
        if len(self._running) < self._slots and self._gate is not None and not self._gate.open():
            due_in = await self._due_in()
            if due_in is None or due_in > 0:
                return due_in
            self._gate.paused(self.name)  # running work goes on; nothing new starts
            return RECHECK
        await self._start_due()
        due_in = await self._due_in()
        if due_in is not None and due_in <= 0:
            # Due but not taken (no free slot, its host at its limit): a finished update
            # wakes the loop; without one running, look again after the poll interval.
            return None if self._running else self.interval
        return due_in

    async def _due_in(self) -> float | None:
        """Seconds until a mirror this loop could claim is due (0: now; None: no mirror)."""
        at = await self._gitserver.next_due(self._owner)
        return None if at is None else (at - now()).total_seconds()

    async def stopped(self) -> None:
        """Cancel running updates and give them back to the queue."""
        for _, task in list(self._running.values()):
            task.cancel()
        for due, task in list(self._running.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
            with contextlib.suppress(Exception):
                await self._gitserver.release(due)

    async def _start_due(self) -> None:
        free = self._slots - len(self._running)
        if free <= 0:
            return
        busy = Counter(due.host for due, _ in self._running.values())
        claimed = await self._gitserver.claim(
            self._owner, free, dict(busy), self._settings.max_clones_per_host
        )
        for due in claimed:
            task = asyncio.create_task(self._update(due), name=f"update-{due.repository_id}")
            self._running[due.repository_id] = (due, task)

    async def _update(self, due: Due) -> None:
        try:
            async with renewing(
                lambda: self._gitserver.renew(self._owner, due.repository_id),
                LEASE.total_seconds() / 3,
            ):
                with background(self._settings.background_nice):
                    await self.update(due)
        except asyncio.CancelledError:
            raise
        except Exception:  # recorded nowhere else: log it; the lease expiry retries it
            logger.exception("update crashed", extra={"action": "update", "repo": due.name})
        finally:
            self._running.pop(due.repository_id, None)
            self.wake()

    async def update(self, due: Due) -> None:
        """Clone or fetch one mirror and record the outcome."""
        settings, git, storage = self._settings, self._git, self._storage
        fetching = False
        try:
            path = storage.path(due.repository_id)
            if not path.is_dir() and (free := disk_free_percent(storage.repos_dir)) < (
                settings.disk_min_free_percent
            ):
                await self._gitserver.failed(
                    due,
                    kind=FailureKind.disk_full.value,
                    message=f"only {free:.1f}% of the disk is free, below the "
                    f"{settings.disk_min_free_percent:g}% watermark: new clones wait",
                )
                return
            async with storage.lock(due.repository_id):
                if path.is_dir() and due.clone_status is not CloneStatus.cloned:
                    # Not this mirror's clone (a crash between placing a clone and its
                    # row's commit left it): never fetch into what it may hold.
                    logger.warning(
                        "removing %s: a directory this mirror never finished cloning",
                        path,
                        extra={"action": "update.unowned", "repo": due.name},
                    )
                    storage.remove(due.repository_id)
                if not path.is_dir():
                    await mirror.clone(
                        git, storage, due.repository_id, due.upstream, settings=settings
                    )
                    before = None
                else:
                    fetching = True
                    before = due.refs_digest or await commands.refs_digest(git, path)
                    await mirror.fetch(git, path, due.upstream, settings=settings)
                after = await commands.refs_digest(git, path)
                # What the repository's page says moves only when refs do (the janitor
                # re-measures the size after repacking).
                facts = await mirror.facts(git, path) if before != after else None
                if fetching and before != after:
                    # The new commits join the commit-graph now (a small new layer), so
                    # ahead/behind walks keep their generation numbers between janitor runs.
                    await commands.write_commit_graph(git, path)
        except GitError as error:
            kind = classify(error)
            recloned = fetching and await self._recloned_if_corrupt(due, kind)
            logger.warning(
                "update of %s failed (%s): %s",
                due.name,
                kind.value,
                error.message,
                extra={"action": "update", "repo": due.name},
            )
            said = message(error)
            if kind is FailureKind.auth:
                advice = credential_advice(due.name, credential_of=due.upstream.credential_of)
                said = f"{advice}\n{said}"
            await self._gitserver.failed(due, kind=kind.value, message=said, recloned=recloned)
            return
        except RepodepotError as error:  # a name storage refuses, a clash on disk
            await self._gitserver.failed(due, kind=FailureKind.other.value, message=error.message)
            return
        await self._gitserver.succeeded(due, changed=before != after, digest=after, facts=facts)
        if before != after and self.on_changed is not None:
            try:
                await self.on_changed(due.repository_id)
            except Exception:  # the mirror is updated; what depends on it catches up later
                logger.exception(
                    "after-change hook failed", extra={"action": "update", "repo": due.name}
                )

    async def _recloned_if_corrupt(self, due: Due, kind: FailureKind) -> bool:
        """After a failed fetch: if the mirror fails `fsck --connectivity-only`, remove it."""
        if kind in (FailureKind.auth, FailureKind.not_found, FailureKind.network):
            return False
        path = self._storage.path(due.repository_id)
        async with self._storage.lock(due.repository_id):
            if await commands.is_connected(self._git, path):
                return False
            logger.warning(
                "mirror %s is corrupt; removing it to clone again",
                due.name,
                extra={"action": "update.reclone", "repo": due.name},
            )
            self._storage.remove(due.repository_id)
        return True
