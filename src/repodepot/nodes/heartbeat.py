"""A gitserver process's heartbeat: its node registered, alive, and the silent ones dead.

The first round registers the node (`REPODEPOT_NODE_NAME`, `REPODEPOT_NODE_URL`, the
data dir's free space); each round after it beats, every `node_heartbeat_interval`.
Each round also marks dead the nodes whose heartbeat is older than `node_dead_after`
(a look that writes nothing while every node beats), so a cluster notices a lost node
as long as one gitserver process runs.

On SQLite (one process, one node: the default) the node registers at start and does not
beat: nothing else could notice its silence, and every write to the database's files
wakes the other idle loops of the process to look (`db.watch`): reads for nothing at
every beat.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from repodepot.clock import now
from repodepot.db.base import is_sqlite
from repodepot.exceptions import NotFound
from repodepot.loops import BackgroundLoop
from repodepot.nodes.registry import NodeRegistry

if TYPE_CHECKING:
    from repodepot.services import Services

logger = logging.getLogger(__name__)
_ONCE_A_DAY = 24 * 3600.0  # a node that does not beat re-registers (its free space) daily


class NodeHeartbeat(BackgroundLoop):
    """Registers this node, then beats and marks the silent nodes dead, every interval."""

    name = "nodes.heartbeat"

    def __init__(
        self,
        registry: NodeRegistry,
        *,
        node: str,
        url: str | None,
        data_dir: Path,
        interval: float,
        beats: bool = True,
    ) -> None:
        super().__init__(interval=interval if beats else _ONCE_A_DAY)
        self._beats = beats
        self._registry = registry
        self._node = node
        self._url = url
        self._data_dir = data_dir
        self._registered = False

    @classmethod
    def from_services(cls, services: Services) -> NodeHeartbeat:
        """The heartbeat of the node the settings name (REPODEPOT_NODE_NAME)."""
        settings = services.settings
        return cls(
            services.nodes,
            node=settings.node_name,
            url=settings.node_url,
            data_dir=settings.data_dir,
            interval=settings.node_heartbeat_interval,
            beats=not is_sqlite(settings.sqlalchemy_url),
        )

    async def step(self) -> float | None:
        """Register (first round) or beat, then mark the overdue nodes dead."""
        free = await self.free_bytes()
        if not self._registered or not self._beats:
            await self._register(free)
            if not self._beats:
                return None
        else:
            try:
                if await self._registry.heartbeat(self._node, free):
                    logger.warning(
                        "storage node %s was marked dead and beats again",
                        self._node,
                        extra={"action": "nodes.back", "node": self._node},
                    )
            except NotFound:
                # An admin removed the node while this process ran: it is here, so it
                # registers again.
                await self._register(free)
        await self._registry.mark_dead(now())
        return None

    async def _register(self, free: int | None) -> None:
        await self._registry.register(self._node, self._url, free)
        self._registered = True

    async def free_bytes(self) -> int | None:
        """Free bytes of the file system holding the data dir; None when it cannot be read."""
        try:
            usage = await asyncio.to_thread(shutil.disk_usage, self._data_dir)
        except OSError:
            logger.warning(
                "the data dir's free space is unknown",
                exc_info=True,
                extra={"action": "nodes.disk_usage", "node": self._node},
            )
            return None
        return usage.free
