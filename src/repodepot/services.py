"""Everything a role needs, opened once at start-up and passed explicitly."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from repodepot.access import Access
from repodepot.accounts import Accounts
from repodepot.backpressure import Gate
from repodepot.branches.service import Branches
from repodepot.caches import TOPIC as CACHE_TOPIC
from repodepot.caches import Caches
from repodepot.codehosts.service import CodeHosts
from repodepot.codehosts.syncer import Syncer
from repodepot.db import migrate
from repodepot.db.base import create_engine, is_sqlite, read_engine, session_factory
from repodepot.db.leader import Leadership
from repodepot.events import Broker, PostgresRelay, asyncpg_dsn
from repodepot.git.runner import GitRunner
from repodepot.git.sandbox import Sandbox
from repodepot.gitserver.history import History
from repodepot.gitserver.reads import Reads
from repodepot.gitserver.service import Gitserver
from repodepot.goproxy.service import GoProxy
from repodepot.imports.service import Imports
from repodepot.metrics import Metrics
from repodepot.nodes.forward import Forwarder
from repodepot.nodes.registry import NodeRegistry
from repodepot.permsync import PermissionSync
from repodepot.repositories import Repositories
from repodepot.secrets import SecretBox
from repodepot.settings import Settings, ensure_secret_key, process_path
from repodepot.storage import Storage

logger = logging.getLogger(__name__)


@dataclass(kw_only=True, slots=True)
class Services:
    """The database, storage, git runner, events and the domain services built on them."""

    settings: Settings
    engine: AsyncEngine
    worker_engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    storage: Storage
    git: GitRunner
    metrics: Metrics
    broker: Broker
    relay: PostgresRelay | None
    caches: Caches
    gate: Gate
    accounts: Accounts
    access: Access
    permsync: PermissionSync
    repositories: Repositories
    imports: Imports
    codehosts: CodeHosts
    gitserver: Gitserver
    nodes: NodeRegistry
    forwarder: Forwarder
    leader: Leadership
    reads: Reads
    goproxy: GoProxy
    branches: Branches
    history: History

    @classmethod
    async def open(
        cls, settings: Settings, *, metrics: Metrics | None = None, migrate_schema: bool = True
    ) -> Services:
        """Create the data dir layout, connect, migrate, listen for events, wire the services."""
        metrics = metrics or Metrics()
        storage = Storage(settings.data_dir)
        storage.prepare()
        git = GitRunner(
            runtime_dir=storage.runtime_dir,
            path=process_path(),
            binary=settings.git_binary,
            allowed_schemes=settings.allowed_schemes,
            timeout=settings.git_timeout,
            observer=metrics.observe_git,
            sandbox=_sandbox(settings),
        )
        await git.verify_sandbox()
        engine = create_engine(settings.sqlalchemy_url, pool_size=settings.db_pool_size)
        if migrate_schema:
            await migrate.upgrade(engine, data_dir=settings.data_dir)
        # Lookups in memory, dropped when a transaction here writes their tables, and when
        # another process does (NOTIFY on PostgreSQL, a counter SQLite's triggers bump).
        caches = Caches(ttl=settings.identity_cache_ttl)
        metrics.watch_caches(caches.stats)
        sessions = session_factory(engine, on_commit=caches.committed)
        # Workers write through their own small pool, so an import never starves requests.
        worker_engine = create_engine(
            settings.sqlalchemy_url, pool_size=settings.worker_db_pool_size
        )
        worker_sessions = session_factory(worker_engine, on_commit=caches.committed)
        broker = Broker()
        relay = None
        if is_sqlite(settings.sqlalchemy_url):
            caches.watch_epochs(sessions)
        else:
            broker.listen(CACHE_TOPIC, lambda group: caches.changed([group]))
            relay = PostgresRelay(asyncpg_dsn(settings.sqlalchemy_url), broker)
            await relay.start()
        box = SecretBox(ensure_secret_key(settings))
        imports = Imports(
            sessions=sessions,
            worker_sessions=worker_sessions,
            broker=broker,
            box=box,
            settings=settings,
        )
        # Connections' syncs and accounts' permission syncs share the site's API slots.
        site_slots = asyncio.Semaphore(settings.codehost_max_concurrent_requests)
        syncer = Syncer(sessions=worker_sessions, box=box, settings=settings, site_slots=site_slots)
        gitserver = Gitserver(worker_sessions, box=box, settings=settings, caches=caches)
        reads = Reads(git, storage, gitserver, settings, pool_observer=metrics)
        access = Access(sessions, caches=caches)
        repositories = Repositories(sessions, box=box, caches=caches, access=access)
        branches = Branches(
            sessions=sessions,
            repositories=repositories,
            git=git,
            storage=storage,
            box=box,
            settings=settings,
        )
        # A synced fork whose parent is mirrored here tracks it (CLI syncs too).
        syncer.on_fork_parents = branches.track_parents
        # Background writes (heartbeats) and admins' changes, beside the mirrors'.
        nodes = NodeRegistry(worker_sessions, gitserver=gitserver, settings=settings)
        gitserver.active_nodes = nodes.active  # new mirrors go to their node
        syncer.placement = gitserver.placement  # a sync's new mirrors too
        imports.placement = gitserver.placement  # and an import's, moved from its worker
        return cls(
            settings=settings,
            engine=engine,
            worker_engine=worker_engine,
            sessions=sessions,
            storage=storage,
            git=git,
            metrics=metrics,
            broker=broker,
            relay=relay,
            caches=caches,
            # One gate per process: the loops ask it, the scheduler page and API show it.
            gate=Gate.from_settings(settings, metrics),
            accounts=Accounts(sessions, caches=caches),
            access=access,
            permsync=PermissionSync(
                sessions=sessions,
                worker_sessions=worker_sessions,
                access=access,
                box=box,
                settings=settings,
                site_slots=site_slots,
            ),
            repositories=repositories,
            imports=imports,
            codehosts=CodeHosts(sessions, box=box, settings=settings, syncer=syncer),
            gitserver=gitserver,
            nodes=nodes,
            forwarder=Forwarder.from_settings(settings, nodes.addresses),
            # Once per cluster: the move plan, the janitor's passes over the database.
            leader=Leadership(worker_engine, "repodepot.cluster"),
            reads=reads,
            goproxy=GoProxy(
                sessions=sessions,
                repositories=repositories,
                git=git,
                storage=storage,
                reads=reads,
            ),
            history=History(git=git, reads=reads),
            branches=branches,
        )

    async def database_ready(self) -> bool:
        """Whether the database answers a trivial query."""
        try:
            async with read_engine(self.engine).connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception:  # any driver error means "not ready"; the reason is logged
            logger.warning(
                "database check failed", exc_info=True, extra={"action": "readyz.database"}
            )
            return False
        return True

    async def close(self) -> None:
        """Stop listening for events, end long-lived git readers, release the database."""
        await self.accounts.flush_uses()
        await self.gitserver.visits_queued()
        if self.relay is not None:
            await self.relay.stop()
        await self.reads.close()
        await self.forwarder.close()
        await self.leader.close()
        self.history.close()
        await self.engine.dispose()
        await self.worker_engine.dispose()


def _sandbox(settings: Settings) -> Sandbox | None:
    """The sandbox of git reads; ConfigurationError when bwrap is wanted but missing."""
    if settings.git_sandbox == "none":
        logger.warning(
            "git reads run without a sandbox: an exec allowlist hole reaches the whole server",
            extra={"action": "git.sandbox", "sandbox": "none"},
        )
        return None
    return Sandbox.locate(process_path())
