"""Once per cluster: the process that holds a PostgreSQL advisory lock does the work.

Some background work must run in one process of a cluster, not in each: the plan of moves
between storage nodes, the janitor's passes over the whole database. Every process that
could do it asks `Leadership.held()` before each round; the first to ask takes a
session-level advisory lock on a connection it keeps for the purpose (autocommit, so no
transaction stays open), and keeps it until it stops or its connection breaks. When that
process dies, PostgreSQL ends its session and frees the lock, and the next process to ask
takes it: no lease to expire, no clock to trust.

Work that is claimed row by row (code host syncs, permission syncs, mirror updates, import
jobs) needs none of this: each row's lease already makes it run once.

On SQLite there is one process: it always leads.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

logger = logging.getLogger(__name__)


def lock_key(name: str) -> int:
    """The advisory lock's key for `name`: a signed 64-bit number, the same in every process."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class Leadership:
    """Whether this process is the one that does `name`'s work in the cluster."""

    def __init__(self, engine: AsyncEngine, name: str) -> None:
        self._engine = engine
        self._name = name
        self._key = lock_key(name)
        self._single = engine.dialect.name != "postgresql"
        self._connection: AsyncConnection | None = None

    async def held(self) -> bool:
        """True while this process holds the lock: taken now if it is free.

        A connection that broke since the last call lost the lock with it: it is given up,
        and the lock is asked for again on a new one.
        """
        if self._single:
            return True
        if self._connection is not None:
            try:
                await self._connection.execute(text("SELECT 1"))
                return True
            except DBAPIError:
                logger.warning(
                    "lost the %s lock with its connection",
                    self._name,
                    extra={"action": "leader.lost", "lock": self._name},
                )
                await self._drop()
        connection = await self._engine.connect()
        try:
            connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
            taken = await connection.scalar(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": self._key}
            )
        except BaseException:
            await connection.close()
            raise
        if not taken:
            await connection.close()
            return False
        self._connection = connection
        logger.info(
            "this process now does the cluster's %s",
            self._name,
            extra={"action": "leader.taken", "lock": self._name},
        )
        return True

    async def close(self) -> None:
        """Give the lock up (another process takes it at its next round)."""
        if self._connection is not None:
            # A broken session is gone, and the lock with it.
            with contextlib.suppress(DBAPIError):
                await self._connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": self._key}
                )
            await self._drop()

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                await connection.close()
            except Exception:  # a broken connection may fail to close: it is gone either way
                logger.debug("closing a broken connection failed", exc_info=True)
