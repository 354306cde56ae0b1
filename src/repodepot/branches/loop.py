"""The upstream fetcher: fetches due upstreams in the background, a few at a time.

Woken by "fetch now" (and by a repository upstream that moved), otherwise it sleeps
until the next upstream is due (on SQLite, a look at the database's files every
`interval` wakes it for a change made by another process). Each fetch holds a lease on
its row, renewed while it runs, so a crash loses nothing: at start-up the leases of a
fetcher that died on this host are freed at once, another host's expire. Fetches run
as background git subprocesses (`nice`, idle I/O; the event loop only waits), at most
`upstream_max_concurrent` and `background_concurrency` at once and
`max_clones_per_host` against one host, only while the backpressure gate is open, and
each holds the mirror's lock (`Storage.lock`) while git writes. It claims only the
upstreams of mirrors on its own storage node; an upstream that is a repository on
another node is fetched from that node (`ClusterSources`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

from repodepot.backpressure import RECHECK, Gate
from repodepot.branches.service import Branches, NodeSource, NodeSources
from repodepot.branches.store import LEASE
from repodepot.clock import now
from repodepot.git.runner import background
from repodepot.loops import BackgroundLoop, new_worker_id, renewing
from repodepot.nodes.forward import NodeUnavailable, node_of

if TYPE_CHECKING:
    from repodepot.services import Services

logger = logging.getLogger(__name__)
IDLE_CEILING = 60.0
"""Seconds an idle fetcher sleeps at most without a look at the table (missed wake-ups)."""


class UpstreamLoop(BackgroundLoop):
    """Keeps every upstream's tracked branches and their counts fresh."""

    name = "upstream"

    def __init__(
        self,
        branches: Branches,
        *,
        slots: int,
        interval: float = 5.0,
        gate: Gate | None = None,
        changed: Callable[[], bool] | None = None,
        nice: bool = True,
        nodes: NodeSources | None = None,
    ) -> None:
        super().__init__(interval=interval, jitter=0.1, ceiling=IDLE_CEILING, changed=changed)
        self._branches = branches
        self._slots = slots
        self._gate = gate
        self._nice = nice
        self._nodes = nodes
        self._owner = new_worker_id()
        self._running: dict[int, tuple[str, asyncio.Task[None]]] = {}

    @classmethod
    def from_services(
        cls,
        services: Services,
        *,
        gate: Gate | None = None,
        changed: Callable[[], bool] | None = None,
    ) -> UpstreamLoop:
        """A loop over an opened set of services."""
        settings = services.settings
        return cls(
            services.branches,
            slots=min(settings.upstream_max_concurrent, settings.background_concurrency),
            gate=gate,
            changed=changed,
            nice=settings.background_nice,
            nodes=ClusterSources(services),
        )

    async def starting(self) -> None:
        """Free the leases of a fetcher on this host that died."""
        freed = await self._branches.release_dead_leases()
        if freed:
            logger.warning(
                "released %d upstream fetches leased by a fetcher that died",
                freed,
                extra={"action": "upstream.leases_released", "count": freed},
            )

    async def step(self) -> float | None:
        """Lease due upstreams for the free slots and fetch them; seconds until the next due."""
        free = self._slots - len(self._running)
        if free <= 0:
            return None  # a finished fetch wakes the loop
        if self._gate is not None and not self._gate.open():
            due_in = await self._due_in()
            if due_in is None or due_in > 0:
                return due_in
            self._gate.paused(self.name)  # running fetches go on; nothing new starts
            return RECHECK
        busy = Counter(host for host, _ in self._running.values())
        for repository_id, host in await self._branches.claim(self._owner, free, dict(busy)):
            task = asyncio.create_task(self._fetch(repository_id), name=f"upstream-{repository_id}")
            self._running[repository_id] = (host, task)
        due_in = await self._due_in()
        if due_in is not None and due_in <= 0:  # due, but no slot or its host is busy
            return None if self._running else self.interval
        return due_in

    async def _due_in(self) -> float | None:
        at = await self._branches.next_due(self._owner)
        return None if at is None else (at - now()).total_seconds()

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
                with background(self._nice):
                    await self._branches.refresh(self._owner, repository_id, nodes=self._nodes)
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


class ClusterSources:
    """Another storage node's mirror as a fetch's source: its internal smart HTTP."""

    def __init__(self, services: Services) -> None:
        self._services = services

    async def source(self, repository_id: int) -> NodeSource | None:
        """The node's internal URL of the repository and the secret; None when on this disk.

        Raises NodeUnavailable, naming the node (never the repository: the readers of
        the fetching repository may not read this one), when it cannot answer now.
        """
        node = await node_of(self._services, repository_id)
        if node is None:
            return None
        forwarder = self._services.forwarder
        try:
            base = await forwarder.url(node, "the upstream repository")
        except NodeUnavailable:
            raise NodeUnavailable(
                f"the upstream repository is on storage node {node!r}, which cannot be "
                "reached now; fetching again later"
            ) from None
        assert forwarder.secret is not None  # `url` answers only when there is one
        return NodeSource(url=f"{base}/internal/repos/{repository_id}", secret=forwarder.secret)
