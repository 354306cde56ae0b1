"""SQLite under load: the connection's pragmas, scheduled optimize and passive checkpoints,
write transactions that cannot deadlock on the read-to-write upgrade, and reads that run
on the event loop's thread through read-only connections."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from repodepot import composition
from repodepot.db import base, migrate
from repodepot.db.base import create_engine, read_engine, session_factory, write_engine
from repodepot.db.maintenance import SqliteMaintenance
from repodepot.metrics import Metrics
from repodepot.services import Services
from tests.support.eventually import eventually

HOUR = 3600.0


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "maintenance.db"


@pytest.fixture
async def engine(db_path: Path) -> AsyncIterator[AsyncEngine]:
    """The app's engine on a freshly migrated SQLite file."""
    created = create_engine(f"sqlite+aiosqlite:///{db_path}")
    await migrate.upgrade(created)
    try:
        yield created
    finally:
        await created.dispose()


async def add_users(engine: AsyncEngine, count: int, *, prefix: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO users (name, role) VALUES (:name, 'member')"),
            [{"name": f"{prefix}{n}"} for n in range(count)],
        )


async def stat1(engine: AsyncEngine, table: str) -> list[str]:
    """The planner's statistics rows for `table` (none before the first ANALYZE of it)."""
    async with engine.connect() as conn:
        exists = await conn.scalar(
            text("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'")
        )
        if not exists:
            return []
        rows = await conn.execute(
            text("SELECT stat FROM sqlite_stat1 WHERE tbl = :t"), {"t": table}
        )
        return [row.stat for row in rows]


async def test_a_new_connection_of_the_app_engine_has_the_pragmas(db_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{db_path}")
    try:
        async with engine.connect() as conn:
            pragmas = {
                name: await conn.scalar(text(f"PRAGMA {name}"))
                for name in (
                    "cache_size",
                    "journal_mode",
                    "busy_timeout",
                    "journal_size_limit",
                    "synchronous",
                    "foreign_keys",
                )
            }
    finally:
        await engine.dispose()
    assert pragmas == {
        "cache_size": -65536,  # 64 MiB, in KiB
        "journal_mode": "wal",
        "busy_timeout": 30000,
        "journal_size_limit": 64 * 1024 * 1024,
        "synchronous": 1,  # NORMAL
        "foreign_keys": 1,
    }


async def test_optimize_runs_at_start_up_and_again_once_its_interval_has_passed(
    engine: AsyncEngine,
) -> None:
    clock, metrics = FakeClock(), Metrics()
    maintenance = SqliteMaintenance(engine, optimize_interval=HOUR, metrics=metrics, clock=clock)
    await add_users(engine, 50, prefix="early")
    await maintenance.starting()
    at_start = await stat1(engine, "users")
    assert at_start, "start-up analyzes a table that was never analyzed"
    assert metrics.sqlite_maintenance_seconds.labels("optimize")._sum.get() > 0

    await add_users(engine, 2000, prefix="grown")  # 40 times bigger: the stats are stale
    clock.now += HOUR / 2
    await maintenance.step()
    assert await stat1(engine, "users") == at_start, "not due yet: only a checkpoint"

    clock.now += HOUR / 2
    await maintenance.step()
    rows_estimate = {int(stat.split()[0]) for stat in await stat1(engine, "users")}
    assert min(rows_estimate) > 1000, rows_estimate
    rendered = metrics.render().decode()
    assert 'repodepot_sqlite_maintenance_duration_seconds_count{task="optimize"} 2.0' in rendered
    assert 'repodepot_sqlite_maintenance_duration_seconds_count{task="checkpoint"} 2.0' in rendered
    assert 'repodepot_sqlite_maintenance_last_run_timestamp_seconds{task="optimize"}' in rendered


async def test_a_passive_checkpoint_copies_what_no_reader_needs_and_lets_the_reader_read(
    engine: AsyncEngine, db_path: Path
) -> None:
    metrics = Metrics()
    maintenance = SqliteMaintenance(engine, optimize_interval=HOUR, metrics=metrics)
    assert (await maintenance.checkpoint()).pending == 0  # the migration's frames copied
    await add_users(engine, 200, prefix="before")

    reader = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    try:
        reader.execute("BEGIN")  # a read transaction: its snapshot is the 200 users
        count = "SELECT count(*) FROM users"
        assert reader.execute(count).fetchone() == (200,)
        await add_users(engine, 200, prefix="after")  # WAL frames the reader must not lose

        seen: list[int] = []
        stop = threading.Event()

        def keep_reading() -> None:
            while not stop.is_set() or not seen:
                seen.append(reader.execute(count).fetchone()[0])

        reading = asyncio.create_task(asyncio.to_thread(keep_reading))
        try:
            done = await maintenance.checkpoint()
        finally:
            stop.set()
            await reading
        # Copied up to the reader's snapshot, not past it, and without waiting for it (a
        # FULL, RESTART or TRUNCATE checkpoint waits busy_timeout for the reader: busy).
        assert not done.busy
        assert 0 < done.checkpointed < done.frames
        assert set(seen) == {200}, "the reader kept reading its snapshot throughout"
        assert reader.in_transaction
    finally:
        reader.close()

    after = await maintenance.checkpoint()  # the reader is gone: everything is copied
    assert after.frames >= done.frames and after.pending == 0
    assert 'repodepot_sqlite_wal_frames{state="pending"} 0.0' in metrics.render().decode()


async def increment_twice_interleaved(engine: AsyncEngine) -> int:
    """Two write transactions that each read a counter, then write it plus one.

    The second reads while the first's transaction is open (if the engine lets it),
    then both write: the read-then-upgrade race of deferred BEGIN. Returns the counter.
    """
    select = text("SELECT size_bytes FROM repositories WHERE name = 'o/counter'")
    update = text("UPDATE repositories SET size_bytes = :v WHERE name = 'o/counter'")
    first_has_read, second_has_read = asyncio.Event(), asyncio.Event()

    async def first() -> None:
        async with engine.begin() as conn:
            value = await conn.scalar(select)
            first_has_read.set()
            # Deferred: the second reads meanwhile. Immediate: it waits for this commit.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1):
                    await second_has_read.wait()
            await conn.execute(update, {"v": value + 1})

    async def second() -> None:
        await first_has_read.wait()
        async with engine.begin() as conn:
            value = await conn.scalar(select)
            second_has_read.set()
            await conn.execute(update, {"v": value + 1})

    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO repositories (name, visibility) VALUES ('o/counter', 'public')")
        )
    await asyncio.gather(first(), second())
    async with engine.connect() as conn:
        counter: int = await conn.scalar(select)
    return counter


async def test_two_read_then_write_transactions_both_commit(engine: AsyncEngine) -> None:
    # With a deferred BEGIN one of them fails with "database is locked" (SQLITE_BUSY on
    # the upgrade of a stale snapshot); with no BEGIN before the read, one update is lost.
    assert await increment_twice_interleaved(engine) == 2


async def test_the_maintenance_loop_runs_on_sqlite_only(services: Services) -> None:
    background = composition.start(services)
    try:
        names = {task.get_name() for _, task in background.running}
        on_sqlite = services.engine.dialect.name == "sqlite"
        assert ("sqlite-maintenance" in names) == on_sqlite
        if on_sqlite:  # it optimizes at start-up, then checkpoints
            await eventually(
                lambda: (
                    'repodepot_sqlite_maintenance_duration_seconds_count{task="checkpoint"}'
                    in services.metrics.render().decode()
                )
            )
            assert 'task="optimize"' in services.metrics.render().decode()
    finally:
        await background.stop()


async def test_a_read_session_runs_on_the_event_loops_thread_and_sees_every_commit(
    engine: AsyncEngine,
) -> None:
    sessions = session_factory(engine)
    seen: list[str] = []

    def on_thread(*_args: object) -> None:
        seen.append(threading.current_thread().name)

    reads = read_engine(engine)
    event.listen(reads.sync_engine, "before_cursor_execute", on_thread)
    for n in range(3):
        async with sessions.begin() as session:
            await session.execute(text(f"INSERT INTO users (name, role) VALUES ('u{n}', 'member')"))
        async with sessions() as session:  # a read right after a commit sees it
            assert await session.scalar(text("SELECT count(*) FROM users")) == n + 1
    # No hand-off to a connection's own thread: the statement ran where the loop runs.
    assert seen == [threading.current_thread().name] * 3


async def test_a_write_sent_to_a_read_session_fails_and_takes_no_lock(
    engine: AsyncEngine, db_path: Path
) -> None:
    sessions = session_factory(engine)
    async with sessions() as session:
        with pytest.raises(OperationalError, match="readonly"):
            await session.execute(text("INSERT INTO users (name, role) VALUES ('x', 'member')"))
        # Whatever the failed write did, the write lock is free for another process.
        other = sqlite3.connect(db_path, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
        finally:
            other.close()
    async with sessions() as session:
        assert await session.scalar(text("SELECT count(*) FROM users WHERE name = 'x'")) == 0


async def test_disposing_the_engine_closes_the_read_connections_and_their_threads(
    db_path: Path,
) -> None:
    created = create_engine(f"sqlite+aiosqlite:///{db_path}")
    await migrate.upgrade(created)
    before = set(threading.enumerate())
    sessions = session_factory(created)
    async with sessions() as first, sessions() as second:  # two read connections open
        await first.scalar(text("SELECT 1"))
        await second.scalar(text("SELECT 1"))
    assert len(set(threading.enumerate()) - before) >= 2
    await created.dispose()
    await eventually(lambda: not set(threading.enumerate()) - before, timeout=5.0)


async def test_a_write_waits_for_the_lock_without_holding_the_loop_then_runs_inline(
    engine: AsyncEngine, db_path: Path
) -> None:
    sessions = session_factory(engine)
    threads: list[str] = []
    event.listen(
        write_engine(engine).sync_engine,
        "before_cursor_execute",
        lambda *_: threads.append(threading.current_thread().name),
    )
    other = sqlite3.connect(db_path, isolation_level=None)  # another process's writer
    other.execute("BEGIN IMMEDIATE")

    async def write() -> None:
        async with sessions.begin() as session:
            await session.execute(text("INSERT INTO users (name, role) VALUES ('w', 'member')"))

    try:
        task = asyncio.create_task(write())
        ticks = 0
        for _ in range(20):  # the loop keeps turning while the write waits for the lock
            await asyncio.sleep(0.01)
            ticks += 1
        assert ticks == 20 and not task.done()
    finally:
        other.execute("ROLLBACK")
        other.close()
    await asyncio.wait_for(task, timeout=10)
    async with sessions() as session:
        assert await session.scalar(text("SELECT count(*) FROM users WHERE name = 'w'")) == 1
    # Once the lock was taken, the transaction's statements ran on the loop's thread: no
    # turn of the loop between them with the lock held.
    assert set(threads) == {threading.current_thread().name}


async def test_a_write_that_never_gets_the_lock_fails_as_a_database_error(
    engine: AsyncEngine, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(base, "WRITE_WAIT", 0.2)
    sessions = session_factory(engine)
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(OperationalError, match="database is locked"):
            async with sessions.begin() as session:
                await session.execute(text("INSERT INTO users (name, role) VALUES ('x', 'member')"))
    finally:
        other.execute("ROLLBACK")
        other.close()
    async with sessions.begin() as session:  # the connection is still good once it is free
        await session.execute(text("INSERT INTO users (name, role) VALUES ('x', 'member')"))
