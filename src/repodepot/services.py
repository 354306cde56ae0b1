"""Everything a role needs, opened once at start-up and passed explicitly."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from repodepot.accounts import Accounts
from repodepot.db import migrate
from repodepot.db.base import create_engine, session_factory
from repodepot.git.runner import GitRunner
from repodepot.metrics import Metrics
from repodepot.repositories import Repositories
from repodepot.settings import Settings, process_path
from repodepot.storage import Storage

logger = logging.getLogger(__name__)


@dataclass(kw_only=True, slots=True)
class Services:
    """The database, storage, git runner and the domain services built on them."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    storage: Storage
    git: GitRunner
    metrics: Metrics
    accounts: Accounts
    repositories: Repositories

    @classmethod
    async def open(
        cls, settings: Settings, *, metrics: Metrics | None = None, migrate_schema: bool = True
    ) -> Services:
        """Create the data dir layout, connect, migrate and wire the services."""
        metrics = metrics or Metrics()
        storage = Storage(settings.data_dir)
        storage.prepare()
        engine = create_engine(settings.sqlalchemy_url, pool_size=settings.db_pool_size)
        if migrate_schema:
            await migrate.upgrade(engine)
        sessions = session_factory(engine)
        git = GitRunner(
            runtime_dir=storage.runtime_dir,
            path=process_path(),
            binary=settings.git_binary,
            allowed_schemes=settings.allowed_schemes,
            timeout=settings.git_timeout,
            observer=metrics.observe_git,
        )
        return cls(
            settings=settings,
            engine=engine,
            sessions=sessions,
            storage=storage,
            git=git,
            metrics=metrics,
            accounts=Accounts(sessions),
            repositories=Repositories(sessions),
        )

    async def database_ready(self) -> bool:
        """Whether the database answers a trivial query."""
        try:
            async with self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception:  # any driver error means "not ready"; the reason is logged
            logger.warning(
                "database check failed", exc_info=True, extra={"action": "readyz.database"}
            )
            return False
        return True

    async def close(self) -> None:
        """Release the database connections."""
        await self.engine.dispose()
