"""Benchmark 4 of the seed: SQLite read latency during a steady write load, WAL against DELETE.

A database migrated with the app's migrations holds 1,000 repositories with their
mirror rows, 100 users with a token each, 300 tracked upstreams with 20 branch pairs
each and 100,000 audit rows (about 20 MB, so that a 2 MB page cache does not hold it).
Then, for `SECONDS` per configuration (in `ROUNDS` rounds, taking turns, so that the
machine's drift hits them alike), each on a copy of that file:

- `READERS` readers, each `READ_RATE` reads a second on average at random moments (a
  Poisson process, as independent requests arrive), run the app's hot reads through
  the app's engine and sessions (no transaction around a read): a repository by name
  with its owner, a mirror's state, a token lookup with its user, a repository's branch
  pairs. The services' in-memory caches are not in the way: this measures the database.
- one writer commits `WRITE_RATE` small write transactions a second, paced alike
  (`BEGIN IMMEDIATE`):
  a mirror's schedule moved and an audit row added, as an update round does.
- halfway through each round, the maintenance loop's passive checkpoint.

Configurations: the app's (WAL, 64 MiB cache), the same with a DELETE journal, and WAL
with SQLite's default cache (2 MB). Each changes one pragma of the app's list. And the
floor: the same reads with no writer, what the stack costs by itself in the same run.
"Connections opened" counts the pool's: each runs the pragmas and starts with a cold
page cache.

Target (issue 14): read p99 < 5 ms in WAL during the writes (the seed's: 10 ms).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, insert, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.branches import _ms, _target
from bench.common import percentile
from repodepot.accounts import _HOLDER as HOLDER
from repodepot.accounts import hash_token
from repodepot.branches import store as branch_store
from repodepot.db import base, migrate
from repodepot.db.base import Sessions, create_engine, session_factory
from repodepot.db.maintenance import SqliteMaintenance
from repodepot.db.models import (
    ApiToken,
    AuditEntry,
    BranchSyncStatus,
    GitserverRepo,
    Repository,
    UpstreamSync,
    User,
)
from repodepot.gitserver.service import _MIRROR as MIRROR
from repodepot.repositories import _BY_NAME as BY_NAME
from repodepot.web.app import settle_heap

REPOSITORIES = 1000
USERS = 100
UPSTREAMS = 300
BRANCHES = 20
AUDIT_ROWS = 100_000
SECONDS = 15.0  # per configuration, in ROUNDS interleaved rounds: drift hits all alike
ROUNDS = 5
DB_SECONDS = 10.0  # per configuration: the same load on plain sqlite3 connections
READERS = 10
READ_RATE = 50.0  # per reader and second: 500 reads a second in all
WRITE_RATE = 50.0
READ_P99_MS = 5.0
LOCKED = "database is locked"


@dataclass(frozen=True)
class Configuration:
    """One line of the table: the app's pragmas with the journal and cache swapped."""

    label: str
    journal: str
    cache_size: int
    writes: bool


# The first is the floor: the same reads with no writer, what the stack costs by itself.
CONFIGURATIONS = (
    Configuration("app (WAL, 64 MiB cache), no writes", "WAL", -65536, writes=False),
    Configuration("app (WAL, 64 MiB cache)", "WAL", -65536, writes=True),
    Configuration("DELETE journal, 64 MiB cache", "DELETE", -65536, writes=True),
    Configuration("WAL, default cache (2 MB)", "WAL", -2000, writes=True),
)


@dataclass
class Tally:
    """One configuration's samples and errors."""

    reads: list[float] = field(default_factory=list)  # from the read's start
    arrived: list[float] = field(default_factory=list)  # the same reads, from their arrival
    writes: list[float] = field(default_factory=list)
    locked: int = 0
    other_errors: int = 0
    checkpoints: int = 0
    connections: int = 0  # opened: each runs the pragmas and starts with a cold cache
    db_reads: list[float] = field(default_factory=list)
    db_writes: list[float] = field(default_factory=list)


async def run() -> list[str]:
    """Seed the database once, then measure each configuration on a copy of it."""
    with tempfile.TemporaryDirectory(prefix="repodepot-bench-sqlite-") as scratch:
        seeded = Path(scratch) / "seed.db"
        await _seed(seeded)
        settle_heap()  # as `repodepot serve` does once started
        async with contextlib.AsyncExitStack() as stack:
            runs = []
            for number, configuration in enumerate(CONFIGURATIONS):
                copy = Path(scratch) / f"run{number}.db"
                shutil.copyfile(seeded, copy)
                tally = Tally()
                engine = await stack.enter_async_context(_engine(copy, configuration, tally))
                runs.append((configuration, engine, tally))
            for _ in range(ROUNDS):
                for configuration, engine, tally in runs:
                    await _round(engine, tally, writes=configuration.writes)
                    ids = await _ids(session_factory(engine))
                    path = Path(str(engine.url.database))
                    await asyncio.to_thread(_db_round, path, configuration, ids, tally)
        return _table([(configuration.label, tally) for configuration, _, tally in runs])


def _table(tallies: list[tuple[str, Tally]]) -> list[str]:
    rows = [
        "| configuration | reads | read p50 / p95 / p99 ms, from arrival | from the read's start "
        f"| writes | write p99 ms | {LOCKED!r} | connections opened "
        "| database alone: read p50 / p95 / p99 ms | database alone: write p99 ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, tally in tallies:
        rows.append(
            f"| {label} | {len(tally.reads)} | {_ms(tally.arrived)} | {_ms(tally.reads)} "
            f"| {len(tally.writes)} | {_p99(tally.writes)} | {_errors(tally)} "
            f"| {tally.connections} | {_ms(tally.db_reads)} | {_p99(tally.db_writes)} |"
        )
    floor, app = tallies[0][1].arrived, tallies[1][1].arrived
    added = (percentile(app, 99) - percentile(floor, 99)) * 1000
    return [
        *rows,
        "",
        f"{READERS} readers at {READ_RATE:g} reads/s each, one writer at {WRITE_RATE:g} "
        f"transactions/s, {SECONDS:g} s per configuration in {ROUNDS} interleaved rounds, "
        "a passive checkpoint in each round. A read's latency is counted from the moment it "
        "was due (its arrival: it includes waiting for the event loop, busy with other "
        "reads, and the loop's timer granularity, up to 1 ms) and, beside it, from the "
        "moment it started. App configuration during writes: read from arrival "
        f"{_target(app, READ_P99_MS)}; the writes add {added:+.1f} ms to the read p99 of "
        "the same reads without them. Database alone: the same reads and writes as SQL on "
        f"sqlite3 connections in {READERS + 1} threads, {DB_SECONDS:g} s, timed around the "
        "statement only (no event loop, no thread hand-off): during writes, read "
        f"{_target(tallies[1][1].db_reads, READ_P99_MS)}.",
    ]


def _p99(samples: list[float]) -> str:
    return f"{percentile(samples, 99) * 1000:.1f}" if samples else "-"


def _errors(tally: Tally) -> str:
    other = f" (+{tally.other_errors} other)" if tally.other_errors else ""
    return f"{tally.locked}{other}"


@contextlib.asynccontextmanager
async def _engine(
    path: Path, configuration: Configuration | None = None, tally: Tally | None = None
) -> AsyncIterator[AsyncEngine]:
    """The app's engine; with a configuration, its pragmas swapped as that says."""
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    if configuration is not None:
        # In place of the app's listener (which would set WAL again on every connection
        # the pool opens): the same pragmas, two of them swapped.
        event.remove(engine.sync_engine, "connect", base._sqlite_pragmas)
        event.listen(
            engine.sync_engine, "connect", _swapped(configuration, tally, base.SQLITE_PRAGMAS)
        )
        for inline, listener, pragmas in (  # `sessions()` and `sessions.begin()`, own pools
            (base.read_engine(engine), base._sqlite_read_pragmas, base.SQLITE_READ_PRAGMAS),
            (base.write_engine(engine), base._sqlite_write_pragmas, base.SQLITE_WRITE_PRAGMAS),
        ):
            event.remove(inline.sync_engine, "connect", listener)
            event.listen(inline.sync_engine, "connect", _swapped(configuration, tally, pragmas))
        direct = base.direct_read_engine(engine)  # `sessions.read`, its own pool
        assert direct is not None
        event.remove(direct, "connect", base._sqlite_read_pragmas)
        event.listen(direct, "connect", _swapped(configuration, tally, base.SQLITE_READ_PRAGMAS))
    try:
        async with engine.connect() as conn:  # the journal mode is set by the first one
            mode = await conn.scalar(text("PRAGMA journal_mode"))
        assert configuration is None or str(mode).upper() == configuration.journal, mode
        yield engine
    finally:
        await engine.dispose()


def _pragmas(configuration: Configuration, pragmas: tuple[str, ...]) -> list[str]:
    def swap(pragma: str) -> str:
        if pragma.startswith("PRAGMA journal_mode="):
            return f"PRAGMA journal_mode={configuration.journal}"
        if pragma.startswith("PRAGMA cache_size="):
            return f"PRAGMA cache_size={configuration.cache_size}"
        return pragma

    return [swap(pragma) for pragma in pragmas]


def _swapped(
    configuration: Configuration, tally: Tally | None, pragmas: tuple[str, ...]
) -> Callable[[Any, Any], None]:
    def connect(dbapi_connection: Any, _record: Any) -> None:
        if tally is not None:
            tally.connections += 1
        dbapi_connection.isolation_level = None  # as the app's: BEGIN is sent by the app
        cursor = dbapi_connection.cursor()
        for pragma in _pragmas(configuration, pragmas):
            cursor.execute(pragma)
        cursor.close()

    return connect


async def _round(engine: AsyncEngine, tally: Tally, *, writes: bool) -> None:
    sessions = session_factory(engine)
    ids = await _ids(sessions)
    seconds = SECONDS / ROUNDS
    deadline = time.perf_counter() + seconds
    load = [_writer(sessions, ids, tally, deadline)] if writes else []
    await asyncio.gather(
        *(_reader(sessions, ids, tally, deadline, seed) for seed in range(READERS)),
        *load,
        _checkpoint(engine, tally, after=seconds / 2),
    )


@dataclass(frozen=True)
class _Ids:
    names: list[str]
    repository_ids: list[int]
    token_hashes: list[str]
    tracked: list[int]


async def _ids(sessions: Sessions) -> _Ids:
    async with sessions() as session:
        repos = (await session.execute(select(Repository.id, Repository.name))).all()
        hashes = list(await session.scalars(select(ApiToken.token_hash)))
        tracked = list(await session.scalars(select(UpstreamSync.repository_id)))
    return _Ids(
        names=[name for _, name in repos],
        repository_ids=[id_ for id_, _ in repos],
        token_hashes=hashes,
        tracked=tracked,
    )


def _hot_reads(sessions: Sessions, ids: _Ids) -> list[Callable[[random.Random], Any]]:
    """The reads a repository page and an API call do: the services' own statements.

    Each through `sessions.read`, as `Repositories`, `Accounts`, `Gitserver.state` and
    `Branches.sync_status` run them.
    """

    async def repository(rng: random.Random) -> object:
        name = rng.choice(ids.names)
        return await sessions.read(
            lambda connection: connection.execute(BY_NAME, {"name": name}).one_or_none()
        )

    async def mirror(rng: random.Random) -> object:
        chosen = rng.choice(ids.repository_ids)
        return await sessions.read(
            lambda connection: connection.execute(MIRROR, {"id": chosen}).one_or_none()
        )

    async def token(rng: random.Random) -> object:
        key = rng.choice(ids.token_hashes)
        return await sessions.read(
            lambda connection: connection.execute(HOLDER, {"key": key}).one_or_none()
        )

    async def pairs(rng: random.Random) -> object:
        chosen = rng.choice(ids.tracked)
        return await sessions.read(lambda connection: branch_store.rows(connection, chosen))

    return [repository, mirror, token, pairs]


async def _paced(
    rate: float, deadline: float, work: Callable[[float], Any], rng: random.Random
) -> None:
    """Call `work(arrival)` at the moments of a Poisson process of `rate` a second.

    Callers that are independent arrive at random, not in step: ten readers started
    together and paced alike would ask in bursts of ten, and the table would measure the
    burst. A call that ends after the next moment delays it (late calls are not made up).
    `arrival` is the moment (`time.perf_counter()`) the call was due: the loop may start
    it later, busy with other work.
    """
    next_at = time.perf_counter() + rng.expovariate(rate)
    while next_at < deadline:
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        await work(next_at)
        next_at = max(next_at + rng.expovariate(rate), time.perf_counter())


async def _reader(sessions: Sessions, ids: _Ids, tally: Tally, deadline: float, seed: int) -> None:
    rng = random.Random(seed)
    reads = _hot_reads(sessions, ids)

    async def one(arrival: float) -> None:
        read = rng.choice(reads)
        started = time.perf_counter()
        try:
            await read(rng)
        except OperationalError as error:
            _count(tally, error)
            return
        done = time.perf_counter()
        tally.reads.append(done - started)
        tally.arrived.append(done - arrival)

    await _paced(READ_RATE, deadline, one, rng)


async def _writer(sessions: Sessions, ids: _Ids, tally: Tally, deadline: float) -> None:
    rng = random.Random(-1)

    async def one(_arrival: float) -> None:
        repository_id = rng.choice(ids.repository_ids)
        at = datetime.now(UTC)
        started = time.perf_counter()
        try:
            async with sessions.begin() as session:
                await session.execute(
                    update(GitserverRepo)
                    .where(GitserverRepo.repository_id == repository_id)
                    .values(
                        last_fetched_at=at,
                        next_update_at=at + timedelta(minutes=rng.randint(5, 60)),
                        schedule_reason="unchanged",
                        updated_at=at,
                    )
                )
                await session.execute(
                    insert(AuditEntry).values(
                        action="mirror.fetched", target=str(repository_id), details="{}"
                    )
                )
        except OperationalError as error:
            _count(tally, error)
            return
        tally.writes.append(time.perf_counter() - started)

    await _paced(WRITE_RATE, deadline, one, rng)


async def _checkpoint(engine: AsyncEngine, tally: Tally, *, after: float) -> None:
    await asyncio.sleep(after)
    await SqliteMaintenance(engine, optimize_interval=3600).checkpoint()
    tally.checkpoints += 1


# The hot reads as plain SQL, with what each takes from `_Ids`.
DB_READS = (
    (
        "SELECT r.*, u.name FROM repositories r LEFT JOIN users u ON r.owner_id = u.id "
        "WHERE r.name = ? AND r.deleted_at IS NULL",
        "names",
    ),
    ("SELECT * FROM gitserver_repos WHERE repository_id = ?", "repository_ids"),
    (
        "SELECT t.id, t.last_used_at, u.* FROM api_tokens t JOIN users u ON u.id = t.user_id "
        "WHERE t.token_hash = ? AND t.revoked_at IS NULL AND u.disabled_at IS NULL",
        "token_hashes",
    ),
    (
        "SELECT * FROM branch_sync_status WHERE repository_id = ? AND deleted_at IS NULL "
        "ORDER BY branch, upstream_branch",
        "tracked",
    ),
)


def _db_round(path: Path, configuration: Configuration, ids: _Ids, tally: Tally) -> None:
    """The same load on plain sqlite3 connections, one thread each, timed in the thread."""
    deadline = time.monotonic() + DB_SECONDS / ROUNDS
    threads = [
        threading.Thread(target=_db_reader, args=(path, configuration, ids, tally, deadline, seed))
        for seed in range(READERS)
    ]
    if configuration.writes:
        writer_args = (path, configuration, ids, tally, deadline)
        threads.append(threading.Thread(target=_db_writer, args=writer_args))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _db_connect(path: Path, configuration: Configuration) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, timeout=5)
    for pragma in _pragmas(configuration, base.SQLITE_PRAGMAS):
        connection.execute(pragma)
    return connection


def _db_paced(rate: float, deadline: float, work: Callable[[], None], rng: random.Random) -> None:
    """`_paced` for a thread."""
    next_at = time.monotonic() + rng.expovariate(rate)
    while next_at < deadline:
        time.sleep(max(0.0, next_at - time.monotonic()))
        work()
        next_at = max(next_at + rng.expovariate(rate), time.monotonic())


def _db_reader(
    path: Path, configuration: Configuration, ids: _Ids, tally: Tally, deadline: float, seed: int
) -> None:
    rng, connection = random.Random(seed), _db_connect(path, configuration)

    def one() -> None:
        sql, pool = rng.choice(DB_READS)
        value = rng.choice(getattr(ids, pool))
        started = time.perf_counter()
        try:
            connection.execute(sql, (value,)).fetchall()
        except sqlite3.OperationalError as error:
            _count(tally, error)
            return
        tally.db_reads.append(time.perf_counter() - started)

    try:
        _db_paced(READ_RATE, deadline, one, rng)
    finally:
        connection.close()


def _db_writer(
    path: Path, configuration: Configuration, ids: _Ids, tally: Tally, deadline: float
) -> None:
    rng, connection = random.Random(-2), _db_connect(path, configuration)

    def one() -> None:
        repository_id = rng.choice(ids.repository_ids)
        at = datetime.now(UTC).isoformat(sep=" ")
        started = time.perf_counter()
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute(
                "UPDATE gitserver_repos SET last_fetched_at = ?, next_update_at = ?, "
                "updated_at = ? WHERE repository_id = ?",
                (at, at, at, repository_id),
            )
            connection.execute(
                "INSERT INTO audit_log (action, target, details) VALUES (?, ?, '{}')",
                ("mirror.fetched", str(repository_id)),
            )
            connection.execute("COMMIT")
        except sqlite3.OperationalError as error:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            _count(tally, error)
            return
        tally.db_writes.append(time.perf_counter() - started)

    try:
        _db_paced(WRITE_RATE, deadline, one, rng)
    finally:
        connection.close()


def _count(tally: Tally, error: Exception) -> None:
    if LOCKED in str(error):
        tally.locked += 1
    else:
        tally.other_errors += 1


async def _seed(path: Path) -> None:
    """The app's schema and realistic rows, checkpointed into the main file."""
    async with _engine(path) as engine:
        await migrate.upgrade(engine)
        rng = random.Random(4)
        at = datetime.now(UTC)
        async with engine.begin() as conn:
            await conn.execute(
                insert(User), [{"name": f"user{n}", "role": "member"} for n in range(USERS)]
            )
            await conn.execute(
                insert(ApiToken),
                [
                    {
                        "user_id": n + 1,
                        "name": "cli",
                        "token_hash": hash_token(f"rdp_bench_{n}"),
                        "prefix": "rdp_bench",
                    }
                    for n in range(USERS)
                ],
            )
            await conn.execute(
                insert(Repository),
                [
                    {
                        "name": f"org{n % 20}/project-{n}",
                        "owner_id": n % USERS + 1,
                        "visibility": "public" if n % 3 else "private",
                        "description": f"Project {n}, mirrored",
                        "default_branch": "main",
                    }
                    for n in range(REPOSITORIES)
                ],
            )
            await conn.execute(
                insert(GitserverRepo),
                [
                    {
                        "repository_id": n + 1,
                        "clone_status": "cloned",
                        "last_fetched_at": at,
                        "interval_seconds": 900.0,
                        "next_update_at": at + timedelta(seconds=rng.randint(0, 3600)),
                        "schedule_reason": "unchanged",
                    }
                    for n in range(REPOSITORIES)
                ],
            )
            await conn.execute(
                insert(UpstreamSync),
                [
                    {
                        "repository_id": n + 1,
                        "url": f"http://127.0.0.1/upstream/{n}.git",
                        "branches": '["main", "release/*"]',
                    }
                    for n in range(UPSTREAMS)
                ],
            )
            await conn.execute(
                insert(BranchSyncStatus),
                [
                    {
                        "repository_id": n + 1,
                        "branch": f"release/{b}",
                        "upstream_branch": f"release/{b}",
                        "local_sha": f"{rng.getrandbits(160):040x}",
                        "upstream_sha": f"{rng.getrandbits(160):040x}",
                        "ahead": rng.randint(0, 5),
                        "behind": rng.randint(0, 50),
                        "needs_pull": b % 2 == 0,
                        "computed_at": at,
                    }
                    for n in range(UPSTREAMS)
                    for b in range(BRANCHES)
                ],
            )
            await conn.execute(
                insert(AuditEntry),
                [
                    {
                        "action": "mirror.fetched",
                        "target": f"org{n % 20}/project-{n % REPOSITORIES}",
                        "details": json.dumps({"refs": n % 97, "took_ms": n % 1013}),
                    }
                    for n in range(AUDIT_ROWS)
                ],
            )
        await SqliteMaintenance(engine, optimize_interval=3600).optimize()
        async with base.autocommit(engine).connect() as conn:
            await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")  # seeding, no readers
