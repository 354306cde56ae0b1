"""The composition root: the background loops each role runs, built and wired in one place.

`Services.open` builds the domain services; `start(services)` adds the loops the
process's roles ask for and connects their wake-ups (a "sync now" wakes the sync loop,
an enqueue wakes the update loop), and `Background.stop()` ends them in order. The web
application starts it in its lifespan; nothing else builds a loop. The web layer itself
receives only the domain services.

Roles split by where the work's data lives: `updater` runs what is once per cluster
(the code host and permission syncs, and SQLite's maintenance), `gitserver` what lives
on this node's disk (its mirrors' updates, upstream fetches and janitor, and its
heartbeat in `storage_nodes`). One process runs all four roles by default.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from repodepot.branches.loop import UpstreamLoop
from repodepot.branches.service import REQUESTED
from repodepot.codehosts.loop import SyncLoop
from repodepot.db.base import is_sqlite
from repodepot.db.maintenance import SqliteMaintenance
from repodepot.db.watch import DatabaseWatch
from repodepot.gitserver.janitor import Janitor
from repodepot.gitserver.service import MOVES, QUEUED
from repodepot.gitserver.updater import UpdateLoop
from repodepot.imports.worker import ImportWorker
from repodepot.loops import BackgroundLoop
from repodepot.nodes.heartbeat import NodeHeartbeat
from repodepot.nodes.moves import MoveLoop
from repodepot.permsync import PermissionSyncLoop
from repodepot.services import Services


@dataclass
class Background:
    """The loops running in this process."""

    running: list[tuple[BackgroundLoop, asyncio.Task[None]]] = field(default_factory=list)

    def add(self, runner: BackgroundLoop, name: str) -> None:
        """Start `runner` as the task `name`."""
        self.running.append((runner, asyncio.create_task(runner.run(), name=name)))

    async def stop(self) -> None:
        """Stop each loop (it gives back what it holds), then end its task."""
        for runner, task in self.running:
            await runner.stop()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.running.clear()


def start(services: Services) -> Background:
    """Start the loops of `services.settings.roles`; the Background that stops them.

    `worker`: the import worker. `updater`, what runs once per cluster: code host syncs,
    linked accounts' permission syncs, and on SQLite the database's maintenance
    (checkpoints, `PRAGMA optimize`). `gitserver`, what lives on this node's disk: mirror
    updates (a fetch that moved refs recounts branch status), upstream fetches, the
    janitor, the node's heartbeat and, on PostgreSQL, its moves. `web` starts no loop.
    """
    roles = services.settings.roles
    background = Background()
    # Backpressure: background work starts only while the foreground is not suffering.
    services.gate.export()
    if "worker" in roles:
        background.add(ImportWorker.from_services(services), "import-worker")
    if "updater" in roles:
        _updater(services, background)
    if "gitserver" in roles:
        _gitserver(services, background)
    return background


# Idle loops sleep until due or woken: in this process by the services' hooks, from
# others by NOTIFY (PostgreSQL) or by a look at the database's files (SQLite).


def _updater(services: Services, background: Background) -> None:
    """The cluster's singletons: code host and permission syncs, SQLite's maintenance."""
    url = services.settings.sqlalchemy_url
    syncs = SyncLoop.from_services(services, changed=DatabaseWatch(url).changed)
    services.codehosts.on_sync_requested = syncs.wake
    background.add(syncs, "sync-loop")
    permissions = PermissionSyncLoop.from_services(services, changed=DatabaseWatch(url).changed)
    services.permsync.on_sync_requested = permissions.wake
    background.add(permissions, "permission-sync-loop")
    if is_sqlite(url):
        maintenance = SqliteMaintenance(
            services.worker_engine,
            optimize_interval=services.settings.sqlite_optimize_interval,
            metrics=services.metrics,
        )
        background.add(maintenance, "sqlite-maintenance")


def _gitserver(services: Services, background: Background) -> None:
    """The node's own loops: its heartbeat, moves, mirror updates, upstream fetches, the janitor.

    The moves loop plans moves for the whole cluster in the one process holding its lock.
    """
    url = services.settings.sqlalchemy_url
    gate = services.gate
    background.add(NodeHeartbeat.from_services(services), "node-heartbeat")
    if not is_sqlite(url):  # one SQLite process is one node: nothing to move
        moves = MoveLoop.from_services(services)
        services.broker.listen(MOVES, lambda _event: moves.wake())
        background.add(moves, "node-moves")
    updates = UpdateLoop.from_services(services, gate=gate, changed=DatabaseWatch(url).changed)
    services.gitserver.on_enqueued = updates.wake
    services.broker.listen(QUEUED, lambda _event: updates.wake())
    background.add(updates, "update-loop")
    upstreams = UpstreamLoop.from_services(services, gate=gate, changed=DatabaseWatch(url).changed)
    services.branches.on_request(upstreams.wake)
    services.broker.listen(REQUESTED, lambda _event: upstreams.wake())
    branches = services.branches

    async def mirror_moved(repository_id: int) -> None:
        # Its branches moved: their pairs against the upstream, and the upstreams
        # of repositories that track this one.
        await branches.recount(repository_id)
        await branches.request_dependents(repository_id)

    updates.on_changed = mirror_moved
    background.add(upstreams, "upstream-loop")
    background.add(Janitor.from_services(services, gate=gate), "janitor")
