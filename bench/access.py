"""Access at scale (issue 15): a member's readable list with many grants; a permission sync.

The listing, on SQLite and PostgreSQL: a database migrated by the app holds 10,000 users,
20,000 private repositories and 250 public and 250 internal ones (half owned by a user,
half by nobody, as a code host's are), 500 groups of about 20 members, 4 connections
linking 1,000 repositories each in `repo_sources`, and about 200,000 grants: 100,000 to
groups (200 repositories each), 60,000 manual ones to users, 40,000 `codehost` ones to
users and 4 connection-wide ones to groups, all inserted in bulk through the app's engine.
One member, `reader`, may read exactly 5,000 repositories through every branch of the
query: the public and internal ones, 20 of their own, 5 groups' grants, a connection-wide
grant to one of those groups, 300 `codehost` grants and direct grants filling up the rest
(100 of them on repositories readable anyway). `Repositories.list` must count 5,000 for
them before anything is measured. Then one `repodepot serve` process (web role only, so
no loop shares its event loop) answers `GET /api/repos?per_page=100`, page 1 and a deep
page, as `reader` and as the admin (no grant filtering: the baseline), and `/healthz`
(the stack's floor): one request at a time from one keep-alive client, in interleaved
rounds, and (full run) `wrk -c20` for the rate. The plan of the reader's deep page is
printed (SQLite's `EXPLAIN QUERY PLAN`, PostgreSQL's `EXPLAIN ANALYZE`).

The permission sync, on both databases: a fake GitHub in its own process whose every
answer takes 25 ms holds 2,000 repositories, synced into repodepot by a real connection
sync; 1,000 users each have a linked account (a sealed token) allowed 50-200 of them.
The app's `PermissionSyncLoop` (its concurrency, the default settings' pacing) syncs every
account; then all are made due again and synced with nothing changed on the host, which
must write nothing to `repository_grants`. Statements are counted at the driver on every
engine the app has (as `tests/e2e/test_reads_never_write.py` does).

`REPODEPOT_BENCH_QUICK=1`: a tenth of every count, 100 requests a case, no wrk.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
from sqlalchemy import event, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bench import http as wrk_http
from bench.clones import SERVER_ENV
from bench.common import ADMIN, bench_settings, percentile
from repodepot import permsync as permsync_module
from repodepot.accounts import operator
from repodepot.clock import now
from repodepot.codehosts.permissions import Readable, readable_by
from repodepot.db.maintenance import SqliteMaintenance
from repodepot.db.models import (
    CodeHost,
    CodeHostAccount,
    CodeHostKind,
    GrantRole,
    GrantSource,
    Group,
    GroupMember,
    Repository,
    RepositoryGrant,
    RepoSource,
    User,
    Visibility,
)
from repodepot.permsync import Key, PermissionSyncLoop
from repodepot.repositories import visible_to
from repodepot.secrets import SecretBox
from repodepot.services import Services
from repodepot.settings import ensure_secret_key
from tests.support.engines import app_engines
from tests.support.fakehosts import FakeHost
from tests.support.postgres import PostgresCluster

QUICK = os.environ.get("REPODEPOT_BENCH_QUICK") == "1"
SCALE = 10 if QUICK else 1

# The listing's world.
USERS = 10_000 // SCALE
PRIVATE = 20_000 // SCALE
OPEN = 250 // SCALE  # public ones, and as many internal ones
GROUPS = 500 // SCALE
GROUP_GRANTS = 200 // SCALE  # repositories granted to each group
USER_GRANTS = 60_000 // SCALE  # manual, to users (the reader's among them)
CODEHOST_GRANTS = 40_000 // SCALE
CONNECTIONS = 4
LINKED = 1_000 // SCALE  # repositories each connection yields
READABLE = 5_000 // SCALE  # what `reader` may read
READER_GROUPS = 5
READER_OWNS = 20 // SCALE
READER_CODEHOST = 300 // SCALE
READER_REDUNDANT = 100 // SCALE  # direct grants on repositories readable anyway
PER_PAGE = 100
DEEP_PAGE = READABLE * 4 // 5 // PER_PAGE  # page 40 of 50
REQUESTS = 100 if QUICK else 500  # per case, one at a time
ROUNDS = 5
P99_MS = 50.0
READER_TOKEN = "rdp_bench-reader-token-0123456789"

# The permission sync's world.
HOST_REPOS = 2_000 // SCALE
ACCOUNTS = 1_000 // SCALE
ALLOWED = (50 // SCALE, 200 // SCALE)  # repositories each account's token reads
LATENCY = 0.025  # every API answer, 200 or 304
SYNC_TIMEOUT = 600.0


async def run() -> list[str]:
    """Both measurements on SQLite, then on PostgreSQL; their tables."""
    listings: dict[str, list[Case]] = {}
    plans: dict[str, list[str]] = {}
    syncs: dict[str, list[SyncRun]] = {}
    with tempfile.TemporaryDirectory(prefix="repodepot-bench-access-") as scratch:
        root = Path(scratch)
        host = _Host()
        cluster = PostgresCluster()
        await asyncio.to_thread(cluster.start)
        try:
            for database, url in (("sqlite", None), ("postgresql", cluster.url())):
                listing_url = await _database(cluster, url, "bench_listing")
                sync_url = await _database(cluster, url, "bench_permsync")
                world, plans[database] = await _seed_listing(
                    root / database / "listing", listing_url
                )
                listings[database] = await _measure_listing(
                    root / database / "listing", listing_url, world
                )
                syncs[database] = await _permission_sync(
                    root / database / "permsync", sync_url, host
                )
        finally:
            host.stop()
            await asyncio.to_thread(cluster.stop)
    return [*_listing_table(listings, plans), "", *_sync_table(syncs)]


async def _database(cluster: PostgresCluster, url: str | None, name: str) -> str | None:
    """A fresh PostgreSQL database named `name`, or None (SQLite) when `url` is None."""
    if url is None:
        return None
    import asyncpg

    conn = await asyncpg.connect(host="127.0.0.1", port=cluster.port, user="postgres")
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    return cluster.url(name)


# The listing ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class ListingWorld:
    """What was seeded: row counts by table and kind of grant."""

    counts: dict[str, int]
    deep_after: str  # the reader's last name before their deep page: its `after`


@dataclass(frozen=True, kw_only=True, slots=True)
class Case:
    """One request measured: its label, latencies (s) and wrk's rate (full run)."""

    label: str
    samples: list[float]
    rate: float | None
    baseline: str | None  # the label whose p99 this one's is compared with


def _repositories(rng: random.Random, reader: int, user_ids: list[int]) -> list[dict[str, Any]]:
    """Private ones first (ids 1..PRIVATE), then public, then internal ones."""
    rows = []
    for n in range(PRIVATE + 2 * OPEN):
        visibility = (
            Visibility.private
            if n < PRIVATE
            else Visibility.public
            if n < PRIVATE + OPEN
            else Visibility.internal
        )
        owner = rng.choice(user_ids) if n % 2 else None
        if owner == reader:  # the reader owns exactly READER_OWNS
            owner = None
        rows.append(
            {
                "name": f"org{n % 97:02d}/project-{n:05d}",
                "owner_id": owner,
                "visibility": visibility,
                "description": f"Project {n}",
                "default_branch": "main",
            }
        )
    for n in range(READER_OWNS):  # private ones spread over the names
        rows[n * (PRIVATE // READER_OWNS)]["owner_id"] = reader
    return rows


def _pairs(
    rng: random.Random,
    count: int,
    grantees: list[int],
    taken: set[tuple[int, int]],
    within: tuple[int, int] = (1, PRIVATE),
) -> list[tuple[int, int]]:
    """`count` new (repository id, grantee id) pairs, the ids `within` (both included)."""
    found: list[tuple[int, int]] = []
    while len(found) < count:
        pair = (rng.randint(*within), rng.choice(grantees))
        if pair not in taken:
            taken.add(pair)
            found.append(pair)
    return found


def _grant(
    repository_id: int | None,
    *,
    user: int | None = None,
    group: int | None = None,
    code_host: int | None = None,
    kept_by: int | None = None,
) -> dict[str, Any]:
    """A row of `repository_grants`: a `codehost` one when a connection keeps it."""
    return {
        "repository_id": repository_id,
        "code_host_id": code_host,
        "user_id": user,
        "group_id": group,
        "role": GrantRole.read,
        "source": GrantSource.manual if kept_by is None else GrantSource.codehost,
        "kept_by": kept_by,
    }


async def _seed_listing(data: Path, url: str | None) -> tuple[ListingWorld, list[str]]:
    """The world of the module's docstring; the reader's count checked; the deep page's plan."""
    services = await Services.open(bench_settings(data, url))
    try:
        await services.accounts.bootstrap_admin(ADMIN)
        engine = services.engine
        rng = random.Random(15)
        async with engine.begin() as conn:
            await conn.execute(
                insert(User),
                [{"name": "reader", "role": "member"}]
                + [{"name": f"user{n:05d}", "role": "member"} for n in range(USERS - 1)],
            )
            users = dict((await conn.execute(select(User.name, User.id))).tuples().all())
        reader = users.pop("reader")
        user_ids = sorted(users.values())
        await services.accounts.create_token("reader", token=READER_TOKEN)
        readable: set[int] = set()
        grants: list[dict[str, Any]] = []
        async with engine.begin() as conn:
            await conn.execute(insert(Repository), _repositories(rng, reader, user_ids))
            readable.update(range(PRIVATE + 1, PRIVATE + 2 * OPEN + 1))
            readable.update(
                await conn.scalars(select(Repository.id).where(Repository.owner_id == reader))
            )
            await conn.execute(insert(Group), [{"name": f"group-{n:03d}"} for n in range(GROUPS)])
            group_ids = sorted(await conn.scalars(select(Group.id)))
            mine = group_ids[:READER_GROUPS]
            members = [{"group_id": group_ids[uid % GROUPS], "user_id": uid} for uid in user_ids]
            members += [{"group_id": gid, "user_id": reader} for gid in mine]
            await conn.execute(insert(GroupMember), members)
            for repository_id, gid in _pairs(rng, GROUPS * GROUP_GRANTS, group_ids, set()):
                grants.append(_grant(repository_id, group=gid))
            readable.update(g["repository_id"] for g in grants if g["group_id"] in mine)
            await conn.execute(
                insert(CodeHost),
                [
                    {
                        "kind": CodeHostKind.other,
                        "name": f"connection-{n}",
                        "config": "{}",
                        "next_sync_at": datetime(2100, 1, 1, tzinfo=UTC),
                    }
                    for n in range(CONNECTIONS)
                ],
            )
            host_ids = sorted(await conn.scalars(select(CodeHost.id)))
            await conn.execute(
                insert(RepoSource),
                [
                    {"repository_id": n * LINKED + i + 1, "code_host_id": hid, "clone_url": ""}
                    for n, hid in enumerate(host_ids)
                    for i in range(LINKED)
                ],
            )
            wide = [mine[0], *group_ids[READER_GROUPS : READER_GROUPS + CONNECTIONS - 1]]
            grants += [
                _grant(None, group=gid, code_host=hid)
                for gid, hid in zip(wide, host_ids, strict=True)
            ]
            readable.update(
                range(1, LINKED + 1)
            )  # the first connection's, to a group of the reader's
            # A connection's permission sync keeps grants on the repositories it yields.
            linked = (1, CONNECTIONS * LINKED)
            codehost = _pairs(rng, CODEHOST_GRANTS - READER_CODEHOST, user_ids, set(), linked)
            codehost += _pairs(rng, READER_CODEHOST, [reader], set(), (LINKED + 1, linked[1]))
            grants += [_grant(r, user=u, kept_by=host_ids[(r - 1) // LINKED]) for r, u in codehost]
            readable.update(r for r, u in codehost if u == reader)
            fill = sorted(set(range(1, PRIVATE + 1)) - readable)
            direct = rng.sample(fill, READABLE - len(readable))
            direct += rng.sample(sorted(readable & set(range(1, PRIVATE + 1))), READER_REDUNDANT)
            readable.update(direct)
            taken = {(r, reader) for r in direct}
            others = _pairs(rng, USER_GRANTS - len(direct), user_ids, taken)
            grants += [_grant(r, user=u) for r, u in [*others, *((r, reader) for r in direct)]]
            await conn.execute(insert(RepositoryGrant), grants)
        assert len(readable) == READABLE, len(readable)
        principal = await services.accounts.authenticate(READER_TOKEN)
        listed = await services.repositories.list(principal, per_page=1)
        assert listed.total == READABLE, f"the reader may read {listed.total}, not {READABLE}"
        before = await services.repositories.list(principal, page=DEEP_PAGE - 1, per_page=PER_PAGE)
        deep_after = before.items[-1].name
        plan = await _plan(engine, principal, deep_after)  # statistics refreshed first
        counts = await _counts(engine)
    finally:
        await services.close()
    return ListingWorld(counts=counts, deep_after=deep_after), plan


async def _counts(engine: AsyncEngine) -> dict[str, int]:
    g = RepositoryGrant
    async with engine.connect() as conn:
        found = {
            "users": await conn.scalar(select(func.count()).select_from(User)),
            "repositories": await conn.scalar(select(func.count()).select_from(Repository)),
            "group members": await conn.scalar(select(func.count()).select_from(GroupMember)),
            "repo_sources": await conn.scalar(select(func.count()).select_from(RepoSource)),
        }
        kinds = (
            await conn.execute(
                select(
                    g.source,
                    g.group_id.is_not(None),
                    g.code_host_id.is_not(None),
                    func.count(),
                ).group_by(g.source, g.group_id.is_not(None), g.code_host_id.is_not(None))
            )
        ).all()
    for source, to_group, wide, count in kinds:
        kind = "connection-wide" if wide else "group" if to_group else f"user, {source.value}"
        found[f"grants ({kind})"] = count
    return {name: int(count or 0) for name, count in found.items()}


async def _plan(engine: AsyncEngine, principal: Any, deep_after: str) -> list[str]:
    """The deep page's statement (by `after`) as `Repositories.list` builds it; its plan.

    With the planner's statistics as the bulk insert left them (the app's SQLite
    maintenance, PostgreSQL's autovacuum, have not run yet), then refreshed as they do.
    """
    statement = (
        select(Repository, User.name)
        .outerjoin(User, Repository.owner_id == User.id)
        .where(visible_to(principal), Repository.deleted_at.is_(None))
        .where(Repository.name > deep_after)
        .order_by(Repository.name)
        .limit(PER_PAGE + 1)
        .offset(0)
    )
    sql = str(statement.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
    if engine.dialect.name == "sqlite":
        before = await _timed(engine, sql)
        await SqliteMaintenance(engine, optimize_interval=3600).optimize()
        after = await _timed(engine, sql)
        return [
            f"Before `PRAGMA optimize`: {before:.1f} ms; after: {after:.1f} ms.",
            "",
            "```",
            *await _sqlite_plan(engine, sql),
            "```",
        ]
    async with engine.connect() as conn:
        analyzed = await conn.scalar(
            text(
                "SELECT last_autoanalyze IS NOT NULL FROM pg_stat_user_tables "
                "WHERE relname = 'repository_grants'"
            )
        )
        before = await _timed(engine, sql)
        await conn.exec_driver_sql("ANALYZE")
        await conn.commit()
        after = await _timed(engine, sql)
        rows = (await conn.exec_driver_sql("EXPLAIN ANALYZE " + sql)).all()
    return [
        f"Before `ANALYZE` ({'autovacuum had analyzed' if analyzed else 'no statistics yet'}): "
        f"{before:.1f} ms; after: {after:.1f} ms.",
        "",
        "```",
        *(str(row[0]) for row in rows),
        "```",
    ]


async def _timed(engine: AsyncEngine, sql: str) -> float:
    """Milliseconds `sql` takes, the best of three."""
    async with engine.connect() as conn:
        took = []
        for _ in range(3):
            started = time.perf_counter()
            (await conn.exec_driver_sql(sql)).all()
            took.append((time.perf_counter() - started) * 1000)
    return min(took)


async def _sqlite_plan(engine: AsyncEngine, sql: str) -> list[str]:
    async with engine.connect() as conn:
        rows: list[Any] = list((await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)).all())
    depth: dict[int, int] = {}  # EXPLAIN QUERY PLAN's rows: id, parent, -, detail
    lines = []
    for node, parent, _, detail in rows:
        depth[node] = depth.get(parent, -1) + 1
        lines.append("  " * depth[node] + str(detail))
    return lines


async def _measure_listing(data: Path, url: str | None, world: ListingWorld) -> list[Case]:
    """Each request one at a time in interleaved rounds, then wrk's rate (full run)."""
    env = SERVER_ENV | {"REPODEPOT_ROLES": "web"} | ({"REPODEPOT_DATABASE_URL": url} if url else {})
    everything = world.counts["repositories"]
    deep = f"/api/repos?per_page={PER_PAGE}&page={DEEP_PAGE}"
    first = f"/api/repos?per_page={PER_PAGE}&page=1"
    keyset = f"/api/repos?per_page={PER_PAGE}&after={world.deep_after}"
    by_after = f"page {DEEP_PAGE} by `after`"
    by_offset = f"page {DEEP_PAGE} by `page=` (OFFSET)"
    cases = [
        ("`/healthz` (the floor)", "/healthz", None, None, None),
        ("admin, page 1", first, ADMIN, everything, None),
        (f"admin, {by_after}", keyset, ADMIN, everything, None),
        (f"admin, {by_offset}", deep, ADMIN, everything, None),
        ("reader, page 1", first, READER_TOKEN, READABLE, "admin, page 1"),
        (f"reader, {by_after}", keyset, READER_TOKEN, READABLE, f"admin, {by_after}"),
        (f"reader, {by_offset}", deep, READER_TOKEN, READABLE, f"admin, {by_offset}"),
    ]
    samples: dict[str, list[float]] = {label: [] for label, *_ in cases}
    rates: dict[str, float | None] = {}
    async with (
        wrk_http.serving(data, env) as server,
        httpx.AsyncClient(base_url=server.url, timeout=60) as client,
    ):
        for _label, path, token, total, _ in cases:  # warm up, and check the answers
            answer = await client.get(path, headers=_bearer(token))
            assert answer.status_code == 200, answer.text
            if total is not None:
                body = answer.json()
                assert body["total"] == total, body["total"]
                assert len(body["items"]) == PER_PAGE, len(body["items"])
        for _ in range(ROUNDS):
            for label, path, token, *_ in cases:
                for _ in range(REQUESTS // ROUNDS):
                    started = time.perf_counter()
                    answer = await client.get(path, headers=_bearer(token))
                    samples[label].append(time.perf_counter() - started)
                    assert answer.status_code == 200, answer.text
        for label, path, token, *_ in cases:
            rates[label] = (
                None
                if QUICK
                else (await asyncio.to_thread(wrk_http.wrk, server.url + path, token)).rate
            )
    return [
        Case(label=label, samples=samples[label], rate=rates[label], baseline=base)
        for label, *_, base in cases
    ]


def _bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _listing_table(listings: dict[str, list[Case]], plans: dict[str, list[str]]) -> list[str]:
    lines = [
        f"`GET /api/repos?per_page={PER_PAGE}` through one `repodepot serve` (web role), "
        f"{REQUESTS} requests a case one at a time from one keep-alive client in {ROUNDS} "
        "interleaved rounds"
        + ("" if QUICK else f", then `wrk {' '.join(wrk_http.WRK)}` for the rate")
        + f". The reader may read {READABLE:,} repositories; the admin reads all, unfiltered.",
        "",
        "| database | request | p50 / p95 / p99 ms | p99 of the admin's "
        "| wrk -c20 requests/s | target |",
        "|---|---|---|---|---|---|",
    ]
    for database, cases in listings.items():
        by_label = {case.label: case for case in cases}
        for case in cases:
            p = [percentile(case.samples, q) * 1000 for q in (50, 95, 99)]
            ratio, target = "", ""
            if case.baseline is not None:
                ratio = f"{p[2] / (percentile(by_label[case.baseline].samples, 99) * 1000):.2f}x"
                target = f"{'met' if p[2] < P99_MS else 'MISSED'} (p99 < {P99_MS:g} ms)"
                if "OFFSET" in case.label:  # shown for comparison: `after` is the deep path
                    target = f"(p99 {'<' if p[2] < P99_MS else '>='} {P99_MS:g} ms; not a target)"
            rate = "-" if case.rate is None else f"{case.rate:,.0f}"
            lines.append(
                f"| {database} | {case.label} | {p[0]:.1f} / {p[1]:.1f} / {p[2]:.1f} | {ratio} "
                f"| {rate} | {target} |"
            )
    for database, plan in plans.items():
        lines += ["", f"The reader's page {DEEP_PAGE} by `after` on {database}:", "", *plan]
    return lines


# The permission sync ---------------------------------------------------------------------------


@dataclass
class Statements:
    """What the database was asked, as (verb, table)."""

    seen: list[tuple[str, str]] = field(default_factory=list)

    def take(self) -> list[tuple[str, str]]:
        seen, self.seen = self.seen, []
        return seen


def _verb_table(sql: str) -> tuple[str, str]:
    words = sql.split()
    verb = words[0].upper() if words else ""
    upper = [word.upper().strip('"') for word in words]
    table = ""
    if verb == "SELECT" and "FROM" in upper:
        table = words[upper.index("FROM") + 1]
    elif verb in ("INSERT", "DELETE") and len(words) > 2:
        table = words[2]
    elif verb == "UPDATE" and len(words) > 1:
        table = words[1]
    return verb, table.strip('"()')


@contextlib.contextmanager
def counted(services: Services) -> Iterator[Statements]:
    """Every statement sent through the app's engines and their SQLite pools."""
    statements = Statements()

    def before(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        statements.seen.append(_verb_table(sql))

    engines = app_engines(services)
    for engine in engines:
        event.listen(engine, "before_cursor_execute", before)
    try:
        yield statements
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", before)


@dataclass(frozen=True, kw_only=True, slots=True)
class SyncRun:
    """One pass of the loop over every account."""

    label: str
    seconds: float
    calls: int
    not_modified: int
    grants: int  # `codehost` grants after it
    statements: list[tuple[str, str]]


class _Host:
    """The fake GitHub in its own process (as a real host: no share of our CPU time)."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.access", "host"], stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        found = json.loads(self.process.stdout.readline())
        self.url: str = found["url"]
        self.token: str = found["token"]
        self.users: list[tuple[str, int]] = [(token, count) for token, count in found["users"]]

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


def serve_host() -> None:
    """`python -m bench.access host`: the fake, its repositories and users; prints them."""
    rng = random.Random(15)
    host = FakeHost("github", latency=LATENCY)
    ids = [repo.id for repo in host.add_many(HOST_REPOS)]
    users = []
    for n in range(ACCOUNTS):
        token = host.user(f"member{n:04d}")
        allowed = rng.sample(ids, rng.randint(*ALLOWED))
        host.allow(token, *allowed)
        users.append((token, len(allowed)))
    with host:
        print(json.dumps({"url": host.url, "token": host.token, "users": users}), flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            time.sleep(3600)


class _CountedLoop(PermissionSyncLoop):
    """The app's loop, telling when `total` syncs have ended."""

    def __init__(self, services: Services, total: int) -> None:
        super().__init__(services.permsync, poll_interval=services.settings.sync_poll_interval)
        self.total = total
        self.done = 0
        self.finished = asyncio.Event()

    async def _sync(self, key: Key) -> None:
        await super()._sync(key)
        self.done += 1
        if self.done >= self.total:
            self.finished.set()


@contextlib.contextmanager
def _listings_counted(stats: list[Readable]) -> Iterator[None]:
    """Keep what each listing cost (`Readable.stats`), which the outcome does not carry."""

    async def counting(*args: Any, **kwargs: Any) -> Readable:
        readable = await readable_by(*args, **kwargs)
        stats.append(readable)
        return readable

    with mock.patch.object(permsync_module, "readable_by", counting):
        yield


async def _permission_sync(data: Path, url: str | None, host: _Host) -> list[SyncRun]:
    """A connection sync of the host, the accounts linked, then two passes of the loop."""
    settings = bench_settings(data, url)
    services = await Services.open(settings)
    try:
        record = await services.codehosts.create(
            operator(),
            kind="github",
            name="bench",
            config={"url": host.url, "token": host.token, "repositoryQuery": ["affiliated"]},
        )
        synced = await services.codehosts.syncer.sync(record.id)
        assert synced.added == HOST_REPOS, synced
        box = SecretBox(ensure_secret_key(settings))
        linked_at = now()
        async with services.engine.begin() as conn:
            await conn.execute(
                insert(User),
                [{"name": f"member{n:04d}", "role": "member"} for n in range(ACCOUNTS)],
            )
            ids = list(
                await conn.scalars(
                    select(User.id).where(User.name.like("member%")).order_by(User.name)
                )
            )
            await conn.execute(
                insert(CodeHostAccount),
                [
                    {
                        "user_id": uid,
                        "code_host_id": record.id,
                        "sealed_token": box.seal(token),
                        "linked_at": linked_at,  # as `PermissionSync.link` writes them
                        "next_sync_at": linked_at,
                    }
                    for uid, (token, _) in zip(ids, host.users, strict=True)
                ],
            )
        expected = sum(count for _, count in host.users)
        runs = []
        for label in ("first: every grant added", "second: nothing changed"):
            runs.append(await _pass(services, label))
            async with services.engine.begin() as conn:  # every account due again
                await conn.execute(
                    update(CodeHostAccount).values(
                        next_sync_at=datetime.now(UTC) - timedelta(seconds=1)
                    )
                )
        assert runs[0].grants == expected, (runs[0].grants, expected)
        return runs
    finally:
        await services.close()


async def _pass(services: Services, label: str) -> SyncRun:
    stats: list[Readable] = []
    loop = _CountedLoop(services, ACCOUNTS)
    with counted(services) as statements, _listings_counted(stats):
        started = time.perf_counter()
        task = asyncio.create_task(loop.run())
        await asyncio.wait_for(loop.finished.wait(), SYNC_TIMEOUT)
        seconds = time.perf_counter() - started
        await loop.stop()
        await task
        seen = statements.take()
    g = RepositoryGrant
    async with services.engine.connect() as conn:
        grants = await conn.scalar(
            select(func.count()).select_from(g).where(g.source == GrantSource.codehost)
        )
    return SyncRun(
        label=label,
        seconds=seconds,
        calls=sum(r.stats.calls for r in stats),
        not_modified=sum(r.stats.not_modified for r in stats),
        grants=int(grants or 0),
        statements=seen,
    )


def _kinds(seen: list[tuple[str, str]], table: str | None = None) -> str:
    counts = Counter(verb for verb, on in seen if table is None or on == table)
    return " / ".join(str(counts[verb]) for verb in ("SELECT", "INSERT", "UPDATE", "DELETE"))


def _sync_table(syncs: dict[str, list[SyncRun]]) -> list[str]:
    low, high = ALLOWED
    lines = [
        f"Permission sync: {ACCOUNTS:,} linked accounts, each token reading {low}-{high} of a "
        f"fake GitHub's {HOST_REPOS:,} repositories (synced by the connection), every answer "
        f"{LATENCY * 1000:g} ms; the app's `PermissionSyncLoop` with its default concurrency "
        "and the default settings' pacing. Statements: SELECT / INSERT / UPDATE / DELETE.",
        "",
        "| database | pass | wall s | API calls (304) | `codehost` grants after | statements "
        "| on `repository_grants` | target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for database, runs in syncs.items():
        for run_ in runs:
            writes = sum(
                1 for verb, on in run_.statements if verb != "SELECT" and on == "repository_grants"
            )
            target = ""
            if run_ is runs[-1]:
                target = f"{'met' if writes == 0 else 'MISSED'} (no write to `repository_grants`)"
            lines.append(
                f"| {database} | {run_.label} | {run_.seconds:.2f} "
                f"| {run_.calls} ({run_.not_modified}) "
                f"| {run_.grants:,} | {len(run_.statements)}: {_kinds(run_.statements)} "
                f"| {_kinds(run_.statements, 'repository_grants')} | {target} |"
            )
    detail = {
        database: sorted({f"{verb} {on}" for verb, on in runs[-1].statements})
        for database, runs in syncs.items()
    }
    lines.append(f"\nA pass with nothing changed sends: {detail}.")
    return lines


if __name__ == "__main__":
    if sys.argv[1:] == ["host"]:
        serve_host()
    else:
        sys.exit("usage: python -m bench.access host")
