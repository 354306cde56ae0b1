"""The declarative base and the one place engines are created."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar, overload

import aiosqlite
from sqlalchemy import (
    Connection,
    DateTime,
    Dialect,
    Engine,
    MetaData,
    Row,
    TypeDecorator,
    event,
)
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.ext.asyncio import AsyncSession as AsyncSession
from sqlalchemy.ext.asyncio.session import _AsyncSessionContextManager
from sqlalchemy.orm import DeclarativeBase, ORMExecuteState, Session
from sqlalchemy.util import await_only

T = TypeVar("T")
# A Core row of any columns, read by name (`Sessions.read`).
AnyRow = Row[*tuple[Any, ...]]

# Named constraints so that migrations are identical on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# 64 MiB of page cache per connection (negative: KiB), the seed's figure.
CACHE_SIZE = "PRAGMA cache_size=-65536"
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    # A writer waits this long for SQLite's one write lock: under load a short write (a Go
    # version's first pin) queued behind others past 5 s failed its request with a 500.
    "PRAGMA busy_timeout=30000",
    "PRAGMA foreign_keys=ON",
    CACHE_SIZE,
    # Keep the WAL file from growing past 64 MiB once checkpointed.
    "PRAGMA journal_size_limit=67108864",
)
# An execution option on the engine that reads use: no transaction around them.
READS = "repodepot_reads"
# SQLite connections for reads only (the journal mode is the file's, set by the others): a
# write through one fails at once instead of taking the write lock, and a read waits at
# most a second (WAL readers wait only while another connection recovers or closes the
# database, a few milliseconds).
SQLITE_READ_PRAGMAS = (CACHE_SIZE, "PRAGMA query_only=1", "PRAGMA busy_timeout=1000")
# SQLite connections for inline writes: no busy timeout, the lock is waited for, asleep,
# in `_sqlite_begin`.
SQLITE_WRITE_PRAGMAS = (*SQLITE_PRAGMAS, "PRAGMA busy_timeout=0")
# How long an inline write transaction waits for SQLite's write lock (as busy_timeout
# did), retrying after sleeps that double from the first to the most.
WRITE_WAIT = 30.0
WRITE_RETRY_FIRST = 0.0005
WRITE_RETRY_MOST = 0.02


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is stored in UTC and always read back timezone-aware.

    PostgreSQL keeps the zone; SQLite stores text without one, so reads would be
    naive. Doing it here means no model, query or record has to remember.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Store aware values as UTC."""
        return value.astimezone(UTC) if value is not None and value.tzinfo else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Read naive values as UTC."""
        return utc(value) if value is not None else None


class Base(DeclarativeBase):
    """Base of every model: timezone-aware timestamps, named constraints."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime()}  # noqa: RUF012  (SQLAlchemy's API)


@overload
def utc(value: datetime) -> datetime: ...
@overload
def utc(value: None) -> None: ...
def utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; they are UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def is_sqlite(url: str) -> bool:
    """Whether the URL points at SQLite."""
    return url.startswith("sqlite")


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """Create the async engine; SQLite gets WAL, synchronous=NORMAL, busy_timeout, foreign keys.

    On SQLite the driver never opens a transaction by itself (`isolation_level=None`):
    a write transaction is `BEGIN IMMEDIATE`, which takes the write lock up front, so two
    writers that both read first cannot deadlock on the upgrade (one waits for the other
    within busy_timeout); a read is a plain statement with no transaction around it.
    """
    if is_sqlite(url):
        # The pool keeps `pool_size` connections open: a new one reruns the pragmas and
        # starts with an empty page cache. A connection goes back to it rolled back: one
        # left inside BEGIN IMMEDIATE (`engine.connect()` begins one) would hold the lock.
        engine = create_async_engine(
            url,
            connect_args={"timeout": 30},
            pool_size=pool_size,
            max_overflow=pool_size,
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        isolation_level="READ COMMITTED",
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    _run_pragmas(dbapi_connection, SQLITE_PRAGMAS)


def _sqlite_begin(connection: Connection) -> None:
    if connection.get_execution_options().get(READS):
        return
    driver = connection.connection.driver_connection
    if not isinstance(driver, _InlineConnection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")  # waits in aiosqlite's thread
        return
    # Inline, with no busy timeout: try, and while another connection writes, sleep
    # without holding the loop (this runs in SQLAlchemy's greenlet, so it may await).
    raw, delay = driver.sqlite, WRITE_RETRY_FIRST
    deadline = time.monotonic() + WRITE_WAIT
    while time.monotonic() < deadline:
        try:
            raw.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error):
                break
        await_only(asyncio.sleep(delay))
        delay = min(delay * 2, WRITE_RETRY_MOST)
    # Once more through SQLAlchemy: a failure then reaches the caller as its other
    # database errors do (sqlalchemy.exc.OperationalError, "database is locked").
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def autocommit(engine: AsyncEngine) -> AsyncEngine:
    """The same pool with no transaction around statements: a SELECT is one round trip.

    PostgreSQL: the driver's autocommit (no BEGIN, no ROLLBACK). SQLite: no BEGIN is sent
    (`_sqlite_begin` skips it), so a statement sees the latest commit and holds no lock
    beyond itself (SQLite's maintenance pragmas run this way).
    """
    if engine.dialect.name == "sqlite":
        return engine.execution_options(**{READS: True})
    return engine.execution_options(isolation_level="AUTOCOMMIT", **{READS: True})


class _InlineConnection(aiosqlite.Connection):
    """An aiosqlite connection whose statements run on the event loop's thread.

    aiosqlite hands every call (cursor, execute, fetch, close of the cursor) to the
    connection's own thread and back: four thread hops per SELECT, about 0.8 ms of a
    1.2 ms read, where SQLite answers in 0.06 ms. A read in WAL mode never waits for the
    writer, and a write transaction waits for the lock only in `_sqlite_begin`, without
    blocking, so running statements inline costs the loop less than handing them off.
    Only opening and closing the connection still go through its thread.
    """

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)

    @property
    def sqlite(self) -> sqlite3.Connection:
        """The sqlite3 connection itself."""
        return self._conn


# A SQLite engine's inline engines for `sessions()` reads and `sessions.begin()` writes,
# and its plain one for `sessions.read`, disposed with it.
_inline: weakref.WeakKeyDictionary[Engine, dict[str, Any]] = weakref.WeakKeyDictionary()


def read_engine(engine: AsyncEngine) -> AsyncEngine:
    """The engine `sessions()` reads through: no transaction around a statement.

    PostgreSQL: `autocommit(engine)`. SQLite: read-only connections to the same file
    whose statements run inline (`_InlineConnection`), in their own pool as large as
    `engine`'s and disposed with it; `query_only`, so a write sent to a read session
    fails loudly rather than holding the write lock on the event loop's thread.
    """
    if not _inline_sqlite(engine):
        return autocommit(engine)
    return _inline_engine(engine, "reads", _sqlite_read_pragmas, {READS: True})


def write_engine(engine: AsyncEngine) -> AsyncEngine:
    """The engine `sessions.begin()` writes through.

    PostgreSQL: `engine`. SQLite: connections to the same file whose statements run
    inline, with no busy timeout: `BEGIN IMMEDIATE` is tried and, while another
    connection holds the write lock, tried again after an asynchronous sleep
    (`_sqlite_begin`), so the loop never waits for the lock, and once it is taken the
    transaction's statements run without handing the loop back between them. Through
    aiosqlite's thread, every statement of a write transaction was a turn of the event
    loop with the lock held: on a busy server a three-statement transaction held it
    for half a second, and writers queued behind each other for up to 10 s.
    """
    if not _inline_sqlite(engine):
        return engine
    return _inline_engine(engine, "writes", _sqlite_write_pragmas, {})


def direct_read_engine(engine: AsyncEngine) -> Engine | None:
    """SQLite: the plain (not asynchronous) engine `Sessions.read` runs on; else None.

    Read-only connections to `engine`'s file with the read pragmas, in their own pool as
    large as `engine`'s and disposed with it. A read through one is a function call on
    the event loop's thread: no greenlet, no task, no turn of the loop (an `AsyncSession`
    closes in a shielded task of its own, and each turn lets other work in).
    """
    if not _inline_sqlite(engine):
        return None
    made = _inline.setdefault(engine.sync_engine, {})
    if "direct" not in made:
        size = engine.pool.size()  # type: ignore[attr-defined]
        direct = create_sync_engine(
            f"sqlite:///{engine.url.database}",
            connect_args={"check_same_thread": False},
            pool_size=size,
            max_overflow=size,
        ).execution_options(**{READS: True})
        event.listen(direct, "connect", _sqlite_read_pragmas)
        event.listen(engine.sync_engine, "engine_disposed", lambda _engine: direct.dispose())
        made["direct"] = direct
    found: Engine = made["direct"]
    return found


def _inline_sqlite(engine: AsyncEngine) -> bool:
    path = engine.url.database
    return engine.dialect.name == "sqlite" and bool(path) and path != ":memory:"


def _inline_engine(
    engine: AsyncEngine,
    role: str,
    pragmas: Callable[[Any, Any], None],
    options: dict[str, Any],
) -> AsyncEngine:
    """Inline connections to `engine`'s SQLite file for `role`, made once per engine."""
    made = _inline.setdefault(engine.sync_engine, {})
    if role in made:
        found: AsyncEngine = made[role]
        return found
    path = str(engine.url.database)

    async def connect() -> aiosqlite.Connection:
        connector = partial(sqlite3.connect, path, check_same_thread=False, isolation_level=None)
        return await _InlineConnection(connector, iter_chunk_size=64)

    size = engine.pool.size()  # type: ignore[attr-defined]
    inline = create_async_engine(
        engine.url, async_creator=connect, pool_size=size, max_overflow=size
    ).execution_options(**options)
    event.listen(inline.sync_engine, "connect", pragmas)
    if role == "writes":
        event.listen(inline.sync_engine, "begin", _sqlite_begin)

    def dispose(_engine: Engine) -> None:  # in the disposing greenlet: may close connections
        inline.sync_engine.dispose()

    event.listen(engine.sync_engine, "engine_disposed", dispose)
    made[role] = inline
    return inline


def _sqlite_read_pragmas(dbapi_connection: Any, _record: Any) -> None:
    _run_pragmas(dbapi_connection, SQLITE_READ_PRAGMAS)


def _sqlite_write_pragmas(dbapi_connection: Any, _record: Any) -> None:
    _run_pragmas(dbapi_connection, SQLITE_WRITE_PRAGMAS)


def _run_pragmas(dbapi_connection: Any, pragmas: tuple[str, ...]) -> None:
    # aiosqlite opens transactions implicitly; pragmas must run outside one, and from now
    # on the driver leaves BEGIN to `_sqlite_begin`.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in pragmas:
        cursor.execute(pragma)
    cursor.close()


class Sessions(async_sessionmaker[AsyncSession]):
    """Sessions of one engine: `sessions()` reads, `sessions.begin()` writes.

    `async with sessions() as session` runs each statement on its own, without a
    transaction (reads; a write there would commit statement by statement, so writes
    never go there). `async with sessions.begin() as session` is one transaction,
    committed at the end (`BEGIN IMMEDIATE` on SQLite). Both keep loaded objects usable
    after the block.
    """

    def __init__(
        self, engine: AsyncEngine, *, on_commit: Callable[[set[str]], None] | None = None
    ) -> None:
        super().__init__(
            write_engine(engine), expire_on_commit=False, sync_session_class=_tracking(on_commit)
        )
        self._read_engine = read_engine(engine)
        self._reads = async_sessionmaker(self._read_engine, expire_on_commit=False)
        self._direct = direct_read_engine(engine)

    def __call__(self, **local_kw: Any) -> AsyncSession:
        """A session for reads: no transaction around its statements."""
        return self._reads(**local_kw)

    async def read(self, reader: Callable[[Connection], T]) -> T:
        """`reader(connection)`: the hot reads, Core statements on a plain connection.

        A token, a repository, a mirror, branch pairs: what nearly every request reads.
        On a SQLite file the call is direct (`direct_read_engine`): no greenlet, no task,
        no turn of the event loop, no ORM objects (`python -m bench sqlite`: the read p50
        under its write load, from the read's start, 0.27 ms against 1.66 through
        `async with sessions()` and the ORM). Elsewhere it runs
        on the connection `sessions()` reads through, with `run_sync`. No transaction
        around it either way; `in_transaction` runs the same reader inside one.
        """
        if self._direct is None:
            async with self._read_engine.connect() as connection:
                return await connection.run_sync(reader)
        with self._direct.connect() as connection:
            return reader(connection)

    def begin(self) -> _AsyncSessionContextManager[AsyncSession]:
        """A session in one write transaction, committed when the block ends."""
        return super().__call__()._maker_context_manager()


async def in_transaction(session: AsyncSession, reader: Callable[[Connection], T]) -> T:
    """A reader written for `Sessions.read`, inside `session`'s transaction."""
    connection = await session.connection()
    return await connection.run_sync(reader)


def session_factory(
    engine: AsyncEngine, *, on_commit: Callable[[set[str]], None] | None = None
) -> Sessions:
    """Reads without a transaction, writes in one; loaded objects stay usable after commit.

    `on_commit(tables)` is called after each committed write transaction with the names
    of the tables it wrote (ORM statements and flushed objects), for caches to drop.
    """
    return Sessions(engine, on_commit=on_commit)


WRITTEN = "repodepot_written"


def uncached(session: AsyncSession) -> None:
    """The session's writes so far change nothing a cache keeps (a token's last use)."""
    session.info.pop(WRITTEN, None)


def _tracking(on_commit: Callable[[set[str]], None] | None) -> type[Session]:
    """A Session class that tells `on_commit` which tables a committed transaction wrote."""
    if on_commit is None:
        return Session

    class Tracked(Session):
        pass

    def written(session: Session) -> set[str]:
        found: set[str] = session.info.setdefault(WRITTEN, set())
        return found

    @event.listens_for(Tracked, "do_orm_execute")
    def _statement(state: ORMExecuteState) -> None:
        if state.is_insert or state.is_update or state.is_delete:
            table = getattr(state.statement, "table", None)
            if table is not None:
                written(state.session).add(str(table.name))

    @event.listens_for(Tracked, "after_flush")
    def _flushed(session: Session, _context: object) -> None:
        for row in (*session.new, *session.dirty, *session.deleted):
            written(session).add(str(row.__table__.name))

    @event.listens_for(Tracked, "after_commit")
    def _committed(session: Session) -> None:
        tables = session.info.pop(WRITTEN, None)
        if tables:
            on_commit(tables)

    @event.listens_for(Tracked, "after_rollback")
    def _rolled_back(session: Session) -> None:
        session.info.pop(WRITTEN, None)

    return Tracked
