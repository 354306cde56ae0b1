"""The janitor: keeps the mirrors on this node fast and the disk clean.

Every `janitor_interval`:
- mirrors not maintained for `maintenance_interval` get `git maintenance run` with
  the incremental-repack and loose-objects tasks, then a commit-graph with
  changed-path Bloom filters (`git commit-graph write --reachable --changed-paths`),
  under the mirror's lock so no fetch runs meanwhile;
- mirrors of repositories soft-deleted longer than `deleted_grace` are removed from
  disk, and their rows with them;
- mirror directories that no mirror row owns (left by a crash, or by the layout before
  mirrors were kept by id) are removed once untouched for `deleted_grace`, logged; so
  are those of mirrors another node has owned for over `node_move_grace` (this node
  was lost and came back, or was down when they moved: the moves loop drops the rest);
- the passes over the whole database (branch status's aged-out pairs) run in the one
  process of the cluster that holds its lock (`db.leader`), not on every node.
(Corrupt mirrors are found by the updater: a failed fetch is followed by fsck.)

Maintenance is background git (`nice`, idle I/O), one mirror at a time, and starts only
while the backpressure gate is open: a pass the gate cuts short resumes, maintenance
only, once it opens.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from repodepot.backpressure import RECHECK, Gate
from repodepot.clock import now
from repodepot.git import commands
from repodepot.git.errors import GitError
from repodepot.git.runner import GitRunner, background
from repodepot.gitserver.service import Gitserver, Holder
from repodepot.loops import BackgroundLoop
from repodepot.repositories import Repositories
from repodepot.settings import Settings
from repodepot.storage import Storage

if TYPE_CHECKING:
    from repodepot.services import Services

logger = logging.getLogger(__name__)
BATCH = 100
ORPHAN_MIN_AGE = 3600.0  # seconds: a directory this new is never an orphan


def disk_free_percent(path: Path) -> float:
    """Free space on the file system holding `path`, in percent."""
    usage = shutil.disk_usage(path)
    return 100.0 * usage.free / usage.total if usage.total else 100.0


class Janitor(BackgroundLoop):
    """Maintenance and removal passes; `run()` until `stop()`."""

    name = "janitor"

    def __init__(
        self,
        gitserver: Gitserver,
        repositories: Repositories,
        git: GitRunner,
        storage: Storage,
        settings: Settings,
        *,
        prune: Callable[[], Awaitable[int]] | None = None,
        gate: Gate | None = None,
        leads: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        super().__init__(interval=settings.janitor_interval)
        self._gate = gate
        self._held = False  # the last pass's maintenance was cut short by the gate
        # Prunes rows of other owners that age out (branch status's deleted branches).
        self._prune = prune
        # Whether this process does the cluster's passes over the database (None: always).
        self._leads = leads
        self._gitserver = gitserver
        self._repositories = repositories
        self._git = git
        self._storage = storage
        self._settings = settings

    @classmethod
    def from_services(cls, services: Services, *, gate: Gate | None = None) -> Janitor:
        """A janitor over an opened set of services."""
        return cls(
            services.gitserver,
            services.repositories,
            services.git,
            services.storage,
            services.settings,
            prune=services.branches.prune_deleted,
            gate=gate,
            leads=services.leader.held,
        )

    async def step(self) -> float | None:
        """A pass every `janitor_interval`; a pass held by the gate resumes within seconds."""
        if self._held:
            await self.maintain_due()
        else:
            await self.pass_once()
        return RECHECK if self._held else None

    async def pass_once(self) -> tuple[int, int]:
        """One pass: (mirrors maintained, mirrors removed)."""
        removed = await self.remove_deleted()
        removed += await self.remove_orphans()
        maintained = await self.maintain_due()
        if self._prune is not None and (self._leads is None or await self._leads()):
            await self._prune()
        return maintained, removed

    async def maintain_due(self) -> int:
        """Maintain the mirrors whose last maintenance is older than the interval."""
        before = now() - timedelta(seconds=self._settings.maintenance_interval)
        done = 0
        self._held = False
        for repository_id in await self._gitserver.due_maintenance(before, BATCH):
            if self.stopping:
                break
            if self._gate is not None and not self._gate.open():
                self._gate.paused(self.name)  # the rest waits for the gate
                self._held = True
                break
            if await self.maintain(repository_id):
                done += 1
            size = await asyncio.to_thread(self._storage.size, repository_id)
            await self._gitserver.maintained(repository_id, size)
        return done

    async def maintain(self, repository_id: int) -> bool:
        """Repack incrementally, pack loose objects, write the commit-graph with Bloom filters."""
        path = self._storage.path(repository_id)
        if not path.is_dir():
            return False
        async with self._storage.lock(repository_id):
            try:
                with background(self._settings.background_nice):
                    await commands.maintain(self._git, path)
            except GitError as error:
                logger.warning(
                    "maintenance of mirror %s failed: %s",
                    repository_id,
                    error.message,
                    extra={"action": "janitor.maintain", "repository_id": repository_id},
                )
                return False
        return True

    async def remove_deleted(self) -> int:
        """Remove the mirrors of repositories soft-deleted longer than the grace period."""
        before = now() - timedelta(seconds=self._settings.deleted_grace)
        removed, after = 0, 0
        while gone := await self._repositories.deleted_before(before, after=after, limit=BATCH):
            after = max(gone)
            for repository_id in sorted(await self._gitserver.known(list(gone))):
                async with self._storage.lock(repository_id):
                    if not await self._repositories.still_deleted(repository_id):
                        continue  # a sync restored it meanwhile: its mirror stays
                    self._storage.remove(repository_id)
                await self._gitserver.forget(repository_id)
                removed += 1
                logger.info(
                    "removed the mirror of deleted repository %s",
                    gone[repository_id],
                    extra={
                        "action": "janitor.remove",
                        "repo": gone[repository_id],
                        "repository_id": repository_id,
                    },
                )
        return removed

    async def remove_orphans(self) -> int:
        """Remove mirror directories that are not this node's, untouched for the grace period.

        A directory appears under `repos/` only by an atomic rename, once its row is
        committed or inside the transaction that commits it, so one without a row on
        any node is left over: by a crash between removing a row and its directory.
        Untouched means its directory's mtime (a clone's last write, kept by the
        rename) is older than `deleted_grace`, and never less than an hour. One whose
        row names another node, not moving here, since over `node_move_grace` ago is a
        copy this node kept from before (it was lost, or down when the mirror moved).
        The row is looked for again under the mirror's lock just before the removal.
        """
        grace = max(self._settings.deleted_grace, ORPHAN_MIN_AGE)
        on_disk = await asyncio.to_thread(lambda: list(self._storage.mirror_ids()))
        removed = 0
        for start in range(0, len(on_disk), BATCH):
            batch = on_disk[start : start + BATCH]
            holders = await self._gitserver.holders(batch)
            for repository_id in batch:
                if self.stopping or not self._removable(holders.get(repository_id)):
                    continue
                path = self._storage.path(repository_id)
                if repository_id not in holders and not _untouched_for(path, grace):
                    continue
                async with self._storage.lock(repository_id):
                    again = await self._gitserver.holders([repository_id])
                    if not self._removable(again.get(repository_id)):
                        continue
                    self._storage.remove(repository_id)
                removed += 1
                holder = again.get(repository_id)
                logger.warning(
                    "removed mirror directory %s: %s",
                    path,
                    "no repository's mirror is kept there"
                    if holder is None
                    else f"the mirror is on storage node {holder.node} now",
                    extra={"action": "janitor.orphan", "path": str(path)},
                )
        return removed

    def _removable(self, holder: Holder | None) -> bool:
        """Whether a directory with this holder is not this node's to keep (see above)."""
        if holder is None:
            return True
        node = self._settings.node_name
        if node in (holder.node, holder.move_to) or holder.placed_at is None:
            return False
        moved_before = now() - timedelta(seconds=self._settings.node_move_grace)
        return holder.placed_at < moved_before


def _untouched_for(path: Path, seconds: float) -> bool:
    try:
        status = path.stat()
    except FileNotFoundError:
        return False
    return time.time() - status.st_mtime > seconds
