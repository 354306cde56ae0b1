"""SQLite kept healthy on a schedule: fresh planner statistics, a WAL that stays small.

- At start-up, after migration: `PRAGMA optimize=0x10002`, SQLite's advice for a
  long-lived connection (every table is checked, not only those this connection used).
- Every `CHECKPOINT_INTERVAL` seconds: `PRAGMA wal_checkpoint(PASSIVE)`. PASSIVE copies
  what no reader still needs and waits for nobody, so readers never stall; FULL, RESTART
  and TRUNCATE wait for readers and block writers, and are never run. Checkpointing here
  keeps the WAL below the auto-checkpoint threshold, so a request's commit rarely pays for
  one, and `journal_size_limit` (set on every connection in `db.base`) trims the file
  once a writer starts it over.
- Every `sqlite_optimize_interval` seconds: `PRAGMA optimize` again.

Each run is logged and recorded in the metrics (duration, when it last ran, the WAL's
frames). PostgreSQL needs none of this (autovacuum analyzes and the WAL is the
server's), so the loop is started for SQLite only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from repodepot.db.base import autocommit
from repodepot.loops import BackgroundLoop
from repodepot.metrics import Metrics

logger = logging.getLogger(__name__)

CHECKPOINT_INTERVAL = 60.0  # seconds; well before 1,000 pages of WAL at our write rates
# ANALYZE looks at about this many rows per index: bounded work, estimates good enough
# for the planner (SQLite's own choice for `PRAGMA optimize` since 3.46).
ANALYSIS_LIMIT = 400
# 0x10000: check every table, not only those this connection used; 0x02: analyze them.
OPTIMIZE_ALL = 0x10002
OPTIMIZE_ALL_SINCE = (3, 46, 0)  # older versions ignore 0x10000


@dataclass(frozen=True, kw_only=True, slots=True)
class Checkpoint:
    """What one passive checkpoint found and did.

    `frames` is the WAL's length, `checkpointed` how many of them are now in the database
    file; frames that a reader's snapshot still needs stay behind until it ends. `busy`
    is SQLite's word that the checkpoint waited for a reader or writer and gave up (only
    the modes that wait, never PASSIVE, can say so).
    """

    busy: bool
    frames: int
    checkpointed: int
    seconds: float

    @property
    def pending(self) -> int:
        """Frames still to copy into the database file."""
        return self.frames - self.checkpointed


class SqliteMaintenance(BackgroundLoop):
    """Passive checkpoints every minute, `PRAGMA optimize` every `optimize_interval`."""

    name = "sqlite-maintenance"

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        optimize_interval: float,
        metrics: Metrics | None = None,
        checkpoint_interval: float = CHECKPOINT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(interval=min(checkpoint_interval, optimize_interval), jitter=0.1)
        # No transaction around the pragmas: a checkpoint inside one could not copy
        # past its own snapshot, and an optimize would hold the write lock longer.
        self._engine = autocommit(engine)
        self._optimize_interval = optimize_interval
        self._metrics = metrics
        self._clock = clock
        self._optimize_due = clock() + optimize_interval
        self.last_checkpoint: Checkpoint | None = None

    async def starting(self) -> None:
        """Optimize once at start-up (the schema is migrated by then)."""
        await self.optimize()

    async def step(self) -> None:
        """A passive checkpoint; `PRAGMA optimize` too when its interval has passed."""
        await self.checkpoint()
        if self._clock() >= self._optimize_due:
            await self.optimize()

    async def optimize(self) -> float:
        """Refresh the planner's statistics where they are missing or stale; the seconds taken.

        On SQLite older than 3.46 `PRAGMA optimize` only considers tables the running
        connection has used, which a maintenance connection has not: a bounded `ANALYZE`
        stands in for it there.
        """
        started = time.perf_counter()
        async with self._engine.connect() as connection:
            await connection.exec_driver_sql(f"PRAGMA analysis_limit={ANALYSIS_LIMIT}")
            if await _version(connection) >= OPTIMIZE_ALL_SINCE:
                await connection.exec_driver_sql(f"PRAGMA optimize={OPTIMIZE_ALL:#x}")
            else:
                await connection.exec_driver_sql("ANALYZE")
        seconds = time.perf_counter() - started
        self._optimize_due = self._clock() + self._optimize_interval
        self._record("optimize", seconds)
        logger.info(
            "sqlite optimize took %.1f ms",
            seconds * 1000,
            extra={"action": "sqlite.optimize", "seconds": seconds},
        )
        return seconds

    async def checkpoint(self) -> Checkpoint:
        """Copy the WAL's frames no reader still needs into the database; never waits."""
        started = time.perf_counter()
        async with self._engine.connect() as connection:
            result = await connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
            # (busy, frames, checkpointed); both counts are -1 when not in WAL mode.
            busy, frames, checkpointed = (int(value) for value in result.one())
        done = Checkpoint(
            busy=bool(busy),
            frames=max(frames, 0),
            checkpointed=max(checkpointed, 0),
            seconds=time.perf_counter() - started,
        )
        self.last_checkpoint = done
        self._record("checkpoint", done.seconds)
        if self._metrics is not None:
            self._metrics.observe_sqlite_wal(done.frames, done.checkpointed)
        logger.info(
            "sqlite checkpoint took %.1f ms: %d of %d WAL frames in the database",
            done.seconds * 1000,
            done.checkpointed,
            done.frames,
            extra={
                "action": "sqlite.checkpoint",
                "seconds": done.seconds,
                "busy": done.busy,
                "frames": done.frames,
                "checkpointed": done.checkpointed,
            },
        )
        return done

    def _record(self, task: str, seconds: float) -> None:
        if self._metrics is not None:
            self._metrics.observe_sqlite_maintenance(task, seconds)


async def _version(connection: AsyncConnection) -> tuple[int, ...]:
    # The library the driver is linked with, which may not be the one Python reports.
    version = await connection.scalar(text("SELECT sqlite_version()"))
    return tuple(int(part) for part in str(version).split("."))
