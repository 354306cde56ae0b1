"""The mirrors' table: discovery, the durable queue, results, and each mirror's state.

The queue is `gitserver_repos` itself: one row per repository, so asking twice never
queues twice. A row is due when it is queued (`queued_priority`: 0 newly discovered,
1 asked for by a webhook, a visit or an admin) or its `next_update_at` has passed;
due rows go out by priority, then by due time, under a lease (so a restart loses
nothing and a crashed updater's work runs again once the lease expires).

A new row goes to the storage node that owns its repository: the rendezvous owner of the
repository's id among the active nodes (`Placement`), or this process's node while none
is registered (a single process before its first heartbeat, the CLI). A row is never
placed again here: it changes node only through a move.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    case,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from repodepot import events, repositories
from repodepot.batches import chunks
from repodepot.caches import MIRRORS, Caches, Lookup
from repodepot.clock import now
from repodepot.codehosts import tokens
from repodepot.db import leases
from repodepot.db.base import AnyRow, Sessions
from repodepot.db.models import CloneStatus, GitserverRepo
from repodepot.gitserver import mirror, schedule
from repodepot.gitserver.schedule import QueueReason
from repodepot.nodes import placement
from repodepot.nodes.placement import Candidate
from repodepot.repositories import MirrorFacts, credentials
from repodepot.secrets import SecretBox
from repodepot.settings import Settings

logger = logging.getLogger(__name__)
LEASE = timedelta(minutes=2)
DISCOVER_BATCH = 1000
QUEUED = "gitserver:queued"
"""The event topic of a queued mirror (PostgreSQL NOTIFY, for updaters elsewhere)."""
MOVES = "gitserver:moves"
"""The event topic of moves planned or done (NOTIFY): the target nodes claim the new ones
at once, and the plan's leader starts the next as one ends."""
MIRROR_TTL = 1.0
MAX_VISITED = 100_000
NODES_TTL = 5.0
"""Seconds the active nodes read for placement are kept: a node that joins, drains or dies
is seen by new placements within this (rows placed on a node meanwhile are moved as the
ones it held)."""
ActiveNodes = Callable[[], Awaitable[list[Candidate]]]


@dataclass(frozen=True, kw_only=True, slots=True)
class Placement:
    """Where new mirror rows go: each one's rendezvous owner among `nodes`.

    With no active node (none registered yet), every row goes to `fallback`, this
    process's node, as before storage nodes.
    """

    nodes: tuple[Candidate, ...]
    fallback: str

    def node_of(self, repository_id: int) -> str:
        """The node a new mirror row of `repository_id` is given."""
        if not self.nodes:
            return self.fallback
        return placement.owner(repository_id, self.nodes)


@dataclass(frozen=True, kw_only=True, slots=True)
class Due:
    """A claimed update: what to fetch, from where, with which credentials."""

    repository_id: int
    name: str
    upstream: mirror.Upstream
    host: str
    clone_status: CloneStatus
    refs_digest: str | None
    last_changed_at: datetime | None
    failures: int


@dataclass(frozen=True, kw_only=True, slots=True)
class MirrorState:
    """A mirror as its repository's page and API entry show it."""

    clone_status: CloneStatus
    node: str  # the storage node that owns the mirror (`gitserver_repos.shard`)
    shard: str  # the same, by its name before storage nodes (the API keeps it, deprecated)
    last_fetched_at: datetime | None
    last_changed_at: datetime | None
    last_error: str | None
    failure_kind: str | None
    next_update_at: datetime
    interval_seconds: float
    failures: int
    failing: bool
    queued: str | None
    schedule: str
    # A move: the node the mirror is being copied to (reads stay on `node` until it is
    # done), and the node it was on before its last move or relocation.
    move_to: str | None = None
    moved_from: str | None = None

    @property
    def relocating(self) -> bool:
        """Its node was lost and it is being cloned again on `node`: not readable yet."""
        return self.moved_from is not None and self.clone_status is not CloneStatus.cloned


def stale(state: MirrorState, older_than: float, at: datetime) -> bool:
    """Whether a visit should queue the mirror's update: cloned, not queued, not fresh."""
    return (
        state.clone_status is CloneStatus.cloned
        and state.queued is None
        and (
            state.last_fetched_at is None
            or state.last_fetched_at < at - timedelta(seconds=older_than)
        )
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class QueueEntry:
    """One mirror in the queue, for the admin page."""

    name: str
    clone_status: CloneStatus
    queued: str | None
    next_update_at: datetime
    running: bool
    failures: int
    failing: bool
    failure_kind: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class SchedulerStatus:
    """The queue at a glance."""

    mirrors: int
    queued: int
    due: int
    running: int
    failing: int
    cloned: int
    next_due_at: datetime | None


def _lease_free(at: datetime) -> Any:
    return or_(GitserverRepo.lease_until.is_(None), GitserverRepo.lease_until < at)


async def enqueue_in(
    session: AsyncSession,
    ids: Iterable[int],
    reason: QueueReason,
    *,
    shard: str | Placement | None,
    priority: int | None = None,
) -> int:
    """Queue the mirrors of `ids` in `session`'s transaction; returns how many rows it touched.

    A repository without a mirror row gets one on `shard`: that node, or the node a
    `Placement` gives it (with None, only mirrors that have a row are queued).
    Enqueueing only ever raises a mirror's priority (lower comes first): a queued `new`
    clone is not demoted by a visit. A webhook or an admin also lifts `failing`. The one
    way into the queue. On PostgreSQL the transaction also notifies `QUEUED` when it
    commits: updaters in other processes wake up.
    """
    wanted = sorted(set(ids))
    if not wanted:
        return 0
    level = reason.priority if priority is None else priority
    dialect = session.get_bind().dialect.name
    added: set[int] = set()
    if shard is not None:
        rows = [
            {
                "repository_id": key,
                "shard": shard if isinstance(shard, str) else shard.node_of(key),
                "queued_priority": level,
                "queued_reason": reason.value,
            }
            for key in wanted
        ]
        upsert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(GitserverRepo)
        statement = upsert.on_conflict_do_nothing(index_elements=["repository_id"]).returning(
            GitserverRepo.repository_id
        )
        added = set((await session.execute(statement, rows)).scalars())
    rest = [key for key in wanted if key not in added]  # rows made just now are queued already
    queued = len(added)
    if rest:
        queued += await _raise_priority(
            session, GitserverRepo.repository_id.in_(rest), reason, level
        )
    if queued:
        await _notify_queued(session, shard if isinstance(shard, str) else None)
    return queued


async def _notify_queued(session: AsyncSession, shard: str | None) -> None:
    """On PostgreSQL, tell updaters in other processes at commit that mirrors were queued."""
    await events.notify_in(session, QUEUED, {"shard": shard})


async def resume_failing_in(session: AsyncSession, ids: Iterable[int]) -> int:
    """Queue those of `ids` whose mirrors are `failing` (new credentials arrived)."""
    wanted = sorted(set(ids))
    if not wanted:
        return 0
    g = GitserverRepo
    admin = QueueReason.admin
    return await _raise_priority(
        session, and_(g.repository_id.in_(wanted), g.failing), admin, admin.priority
    )


async def _raise_priority(session: AsyncSession, rows: Any, reason: QueueReason, level: int) -> int:
    """Queue `rows` at `level`, never lowering a priority already higher; how many."""
    g = GitserverRepo
    keep = and_(g.queued_priority.is_not(None), g.queued_priority <= level)
    values: dict[str, Any] = {
        "queued_priority": case((keep, g.queued_priority), else_=level),
        "queued_reason": case((keep, g.queued_reason), else_=reason.value),
    }
    if reason.resumes:
        values.update(failing=False, failures=0)
    result = await session.execute(update(g).where(rows).values(**values))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def adopt_in(
    session: AsyncSession,
    repository_id: int,
    *,
    shard: str,
    at: datetime,
    interval: float,
    move_to: str | None = None,
) -> None:
    """A mirror made elsewhere (an import's clone): cloned at `at`, fetched `interval` later.

    `move_to`: the node it belongs on, when not `shard` (where the import cloned it): it
    is copied there as any move (`nodes.moves`).
    """
    session.add(
        GitserverRepo(
            repository_id=repository_id,
            shard=shard,
            move_to=move_to,
            placed_at=at,
            clone_status=CloneStatus.cloned,
            last_fetched_at=at,
            last_changed_at=at,
            interval_seconds=interval,
            next_update_at=at + timedelta(seconds=interval),
            schedule_reason=schedule.ScheduleReason.new.value,
        )
    )
    await session.flush()


async def mirrors_on_in(session: AsyncSession, node: str) -> int:
    """How many mirror rows `node` owns, in `session`'s transaction (a node's removal)."""
    statement = select(func.count()).select_from(GitserverRepo).where(GitserverRepo.shard == node)
    return int(await session.scalar(statement) or 0)


# Moves between storage nodes (`nodes.moves` plans them and copies) ---------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class Holding:
    """Where a mirror is, as the move planner sees it."""

    repository_id: int
    node: str
    move_to: str | None
    cloned: bool
    leased: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class Move:
    """A claimed move: copy the mirror from `source`'s internal smart HTTP to this node."""

    repository_id: int
    source: str


@dataclass(frozen=True, kw_only=True, slots=True)
class MoveEntry:
    """A move in flight, for the nodes page."""

    repository_id: int
    source: str
    target: str
    copying: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class Holder:
    """Who owns a mirror found on a node's disk, and since when."""

    node: str
    move_to: str | None
    placed_at: datetime | None


Pairs = dict[tuple[str, str], list[int]]


class Plan(Protocol):
    """What a pass of the move planner changes (`nodes.moves.Decisions`)."""

    relocate: Pairs  # (lost node, new node): mirrors to clone anew there
    replace: Pairs  # (node, new node): mirrors not cloned yet, given to another
    start: Pairs  # (node, new node): moves to start
    cancel: list[int]  # planned moves no longer wanted


PlanT = TypeVar("PlanT", bound=Plan)


async def holdings_in(session: AsyncSession) -> list[Holding]:
    """Every mirror row's node, move and state, by repository id (the planner's pass)."""
    g = GitserverRepo
    at = now()
    rows = await session.execute(
        select(g.repository_id, g.shard, g.move_to, g.clone_status, g.lease_until).order_by(
            g.repository_id
        )
    )
    return [
        Holding(
            repository_id=row.repository_id,
            node=row.shard,
            move_to=row.move_to,
            cloned=row.clone_status is CloneStatus.cloned,
            leased=row.lease_until is not None and row.lease_until >= at,
        )
        for row in rows
    ]


async def relocate_in(session: AsyncSession, ids: Sequence[int], *, lost: str, to: str) -> int:
    """Give node `to` the mirrors of `ids` that the lost node `lost` held, to clone anew.

    They are cloned from their upstream first thing (queued `new`); until then reads
    answer 503 (`MirrorState.relocating`). A move or update under way is dropped with its
    lease: its node is gone. Only rows still on `lost` change; returns how many.
    """
    g = GitserverRepo
    at = now()
    result = await session.execute(
        update(g)
        .where(g.repository_id.in_(ids), g.shard == lost)
        .values(
            shard=to,
            moved_from=lost,
            placed_at=at,
            move_to=None,
            clone_status=CloneStatus.not_cloned,
            refs_digest=None,
            lease_owner=None,
            lease_until=None,
            maintained_at=None,
            queued_priority=QueueReason.new.priority,
            queued_reason=QueueReason.new.value,
            updated_at=at,
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def replace_in(session: AsyncSession, ids: Sequence[int], *, was: str, to: str) -> int:
    """Give node `to` the mirrors of `ids` not cloned yet on live node `was`, nothing running.

    There is nothing to copy: `to` clones them from their upstream as it would have.
    Returns how many rows changed.
    """
    g = GitserverRepo
    at = now()
    result = await session.execute(
        update(g)
        .where(
            g.repository_id.in_(ids),
            g.shard == was,
            g.clone_status != CloneStatus.cloned,
            _lease_free(at),
        )
        .values(shard=to, placed_at=at, move_to=None, updated_at=at)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def start_moves_in(session: AsyncSession, ids: Sequence[int], *, was: str, to: str) -> int:
    """Mark the cloned mirrors of `ids` on `was` to be copied to `to`; returns how many.

    Nothing changes for readers: the mirror stays on `was` until the copy is whole and one
    UPDATE flips it (`Gitserver.moved`).
    """
    g = GitserverRepo
    result = await session.execute(
        update(g)
        .where(
            g.repository_id.in_(ids),
            g.shard == was,
            g.move_to.is_(None),
            g.clone_status == CloneStatus.cloned,
        )
        .values(move_to=to)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def cancel_moves_in(session: AsyncSession, ids: Sequence[int]) -> int:
    """Drop the planned moves of `ids` that no copy is running for (their target changed)."""
    g = GitserverRepo
    result = await session.execute(
        update(g)
        .where(g.repository_id.in_(ids), g.move_to.is_not(None), _lease_free(now()))
        .values(move_to=None)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# A mirror's row as `state` shows it: built once (a hot read, `Sessions.read`).
_MIRROR = select(*GitserverRepo.__table__.c).where(GitserverRepo.repository_id == bindparam("id"))


class Gitserver:
    """The owner of `gitserver_repos`: the queue, each mirror's state, for everyone."""

    def __init__(
        self,
        sessions: Sessions,
        *,
        box: SecretBox,
        settings: Settings,
        caches: Caches | None = None,
    ) -> None:
        self._sessions = sessions
        self._box = box
        self._settings = settings
        self.on_enqueued: Callable[[], None] | None = None
        # The registry's `active` (wired by Services: the registry is built on this
        # service); without it every new row goes to this process's node.
        self.active_nodes: ActiveNodes | None = None
        self._placement: Placement | None = None
        self._placed_at = 0.0
        # Mirror rows as a page shows them: dropped when this process writes any, and
        # kept at most MIRROR_TTL (the updater may be another process; nothing decides
        # access from them).
        self._rows: Lookup[int, AnyRow] = (caches or Caches(ttl=0)).lookup(
            MIRRORS, "mirrors", ttl=MIRROR_TTL
        )
        # When this process last queued a visit's update, by repository: at most once
        # per stale period each, whatever the readers see meanwhile.
        self._visited: dict[int, float] = {}
        self._visits: set[asyncio.Task[None]] = set()

    async def discover(self) -> int:
        """Give every live repository with a source a mirror row, queued first; returns how many.

        Creators queue their repositories themselves (`enqueue_in` in their transaction);
        this walk at start-up catches rows made before that, or by hand. Each new row goes
        to its repository's node (`placement`).
        """
        where = await self.placement()
        added, after = 0, 0
        while True:
            async with self._sessions.begin() as session:
                ids = await repositories.live_with_source(
                    session, after=after, limit=DISCOVER_BATCH
                )
                if not ids:
                    return added
                known = set(
                    await session.scalars(
                        select(GitserverRepo.repository_id).where(
                            GitserverRepo.repository_id.in_(ids)
                        )
                    )
                )
                missing = [key for key in ids if key not in known]
                if missing:
                    added += await enqueue_in(session, missing, QueueReason.new, shard=where)
            after = ids[-1]

    async def claim(self, owner: str, slots: int, busy: dict[str, int], per_host: int) -> list[Due]:
        """Lease up to `slots` due mirrors, skipping hosts already at `per_host` updates."""
        at = now()
        g = GitserverRepo

        def walk(condition: Any, *order: Any) -> Any:
            # The queue's index is walked, a few rows: however many mirrors there are, a
            # claim reads a handful of rows.
            return (
                select(
                    g.repository_id, g.clone_status, g.refs_digest, g.last_changed_at, g.failures
                )
                .where(condition, g.shard == self._settings.node_name, _lease_free(at))
                .order_by(*order)
                .limit(slots * 4)
            )

        queued = walk(g.queued_priority.is_not(None), g.queued_priority, g.next_update_at)
        due = walk(and_(g.queued_priority.is_(None), g.next_update_at <= at), g.next_update_at)
        taken: list[Due] = []
        counts = dict(busy)
        async with self._sessions.begin() as session:
            rows = list((await session.execute(queued)).all())
            if len(rows) < slots * 4:
                rows += (await session.execute(due)).all()
            found = await repositories.sources_of(session, [row.repository_id for row in rows])
            gone = [
                row.repository_id
                for row in rows
                if (source := found.get(row.repository_id)) is None
                or source.deleted
                or not source.source_url
            ]
            if gone:  # deleted repositories leave the schedule
                await session.execute(
                    update(g)
                    .where(g.repository_id.in_(gone))
                    .values(
                        queued_priority=None,
                        queued_reason=None,
                        next_update_at=at + timedelta(days=365),
                    )
                )
            for row in rows:
                source = found.get(row.repository_id)
                if row.repository_id in gone or source is None or source.source_url is None:
                    continue
                host = source.host or urlsplit(source.source_url).netloc
                if len(taken) >= slots or counts.get(host, 0) >= per_host:
                    continue
                claimed = await session.execute(
                    update(GitserverRepo)
                    .where(GitserverRepo.repository_id == row.repository_id, _lease_free(at))
                    .values(
                        lease_owner=owner,
                        lease_until=at + LEASE,
                        # Taken off the queue with the lease: a webhook arriving while
                        # this update runs queues the next one, which _finish keeps.
                        queued_priority=None,
                        queued_reason=None,
                        clone_status=(
                            CloneStatus.cloning
                            if row.clone_status is not CloneStatus.cloned
                            else CloneStatus.cloned
                        ),
                    )
                )
                if claimed.rowcount != 1:  # type: ignore[attr-defined]
                    continue
                counts[host] = counts.get(host, 0) + 1
                taken.append(
                    Due(
                        repository_id=row.repository_id,
                        name=source.name,
                        upstream=mirror.Upstream(url=source.source_url),
                        host=host,
                        clone_status=row.clone_status,
                        refs_digest=row.refs_digest,
                        last_changed_at=row.last_changed_at,
                        failures=row.failures,
                    )
                )
            if taken:
                upstreams = await self._upstreams(
                    session, {due.repository_id: due.upstream.url for due in taken}
                )
                taken = [replace(due, upstream=upstreams[due.repository_id]) for due in taken]
        return taken

    async def next_due(self, owner: str) -> datetime | None:
        """When `owner` could next claim a mirror on this node; None when there is none.

        Now for a queued one, its `next_update_at` for the rest, and a lease's end for
        those another updater holds (`owner`'s own end with a wake-up). One statement.
        """
        at = now()
        g = GitserverRepo
        free = _lease_free(at)
        statement = select(
            func.count().filter(and_(g.queued_priority.is_not(None), free)),
            func.min(g.next_update_at).filter(and_(g.queued_priority.is_(None), free)),
            func.min(g.lease_until).filter(g.lease_until >= at, g.lease_owner != owner),
        ).where(g.shard == self._settings.node_name)
        async with self._sessions() as session:
            row = (await session.execute(statement)).one()
        if row[0]:
            return at
        times = [when for when in row[1:] if when is not None]
        return min(times) if times else None

    async def _upstreams(
        self, session: AsyncSession, urls: dict[int, str]
    ) -> dict[int, mirror.Upstream]:
        """Each repository's own credential, else its code host connection's token."""
        own = await credentials.for_fetch(session, self._box, urls)
        rest = {key: url for key, url in urls.items() if key not in own}
        hosts = await tokens.for_fetch(session, self._box, rest)
        return {
            key: mirror.Upstream(
                url=url,
                credentials=own.get(key) or hosts.get(key),
                credential_of="repository"
                if key in own
                else "connection"
                if key in hosts
                else None,
            )
            for key, url in urls.items()
        }

    async def source(self, repository_id: int) -> mirror.Upstream | None:
        """Where a mirror fetches from, with which credentials (None: nowhere)."""
        async with self._sessions() as session:
            found = (await repositories.sources_of(session, [repository_id])).get(repository_id)
            if found is None or found.source_url is None:
                return None
            upstreams = await self._upstreams(session, {repository_id: found.source_url})
        return upstreams[repository_id]

    async def fetched(self, repository_id: int, *, digest: str, facts: MirrorFacts | None) -> None:
        """A fetch outside the schedule (EnsureRevision, the Go proxy) moved the mirror.

        Recorded as the updater records its own: when, the refs' digest, and with
        `facts` (refs moved) the last change and what the repository's page says.
        """
        at = now()
        values: dict[str, Any] = {"last_fetched_at": at, "refs_digest": digest}
        if facts is not None:
            values["last_changed_at"] = at
        async with self._sessions.begin() as session:
            await session.execute(
                update(GitserverRepo)
                .where(GitserverRepo.repository_id == repository_id)
                .values(**values)
            )
            if facts is not None:
                await repositories.record_mirror(session, repository_id, facts, changed_at=at)

    async def release_dead_leases(self) -> int:
        """Free the leases of updaters that died on this host (after `kill -9`, at once).

        Their updates would otherwise wait out the lease; a lease of another host's
        updater is left to expire. Returns how many mirrors were freed.
        """
        async with self._sessions.begin() as session:
            return await leases.release_dead(
                session, GitserverRepo, now(), GitserverRepo.shard == self._settings.node_name
            )

    async def renew(self, owner: str, repository_id: int) -> None:
        """Extend a running update's lease."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(GitserverRepo)
                .where(
                    GitserverRepo.repository_id == repository_id,
                    GitserverRepo.lease_owner == owner,
                )
                .values(lease_until=now() + LEASE)
            )

    async def succeeded(
        self, due: Due, *, changed: bool, digest: str, facts: MirrorFacts | None
    ) -> None:
        """Record a clone or fetch, and schedule the next from the age of the last change.

        `facts` (from a clone, or a fetch that moved refs) go to the repository in the
        same transaction: its page never shows a state the mirror does not have.
        """
        at = now()
        last_changed = at if changed or due.last_changed_at is None else due.last_changed_at
        settings = self._settings
        following = schedule.after_success(
            at,
            last_changed,
            minimum=settings.update_min_interval,
            maximum=settings.update_max_interval,
        )
        async with self._sessions.begin() as session:
            await self._finish(
                session,
                due,
                clone_status=CloneStatus.cloned,
                last_fetched_at=at,
                last_changed_at=last_changed,
                refs_digest=digest,
                last_error=None,
                failure_kind=None,
                failures=0,
                failing=False,
                interval_seconds=following.interval,
                next_update_at=at + timedelta(seconds=following.interval),
                schedule_reason=following.reason.value,
            )
            if facts is not None:
                await repositories.record_mirror(
                    session, due.repository_id, facts, changed_at=last_changed
                )

    async def failed(self, due: Due, *, kind: str, message: str, recloned: bool = False) -> None:
        """Record a failure; back off, or mark the mirror failing after too many in a row."""
        at = now()
        failures = due.failures + 1
        settings = self._settings
        following = schedule.after_failure(
            failures,
            minimum=settings.update_min_interval,
            maximum=settings.update_max_interval,
            limit=settings.update_failures_before_failing,
            kind=kind,
        )
        status = (
            CloneStatus.cloned if due.clone_status is CloneStatus.cloned else CloneStatus.failed
        )
        values: dict[str, Any] = {
            "clone_status": CloneStatus.not_cloned if recloned else status,
            "last_error": message[:4000],
            "failure_kind": kind,
            "failures": failures,
            "failing": following.reason == "failing",
            "interval_seconds": following.interval,
            "next_update_at": at + timedelta(seconds=following.interval),
            "schedule_reason": following.reason.value,
        }
        if recloned:  # the corrupt mirror is gone: clone it again first thing
            values.update(
                queued_priority=QueueReason.new.priority,
                queued_reason=QueueReason.new.value,
                refs_digest=None,
            )
        async with self._sessions.begin() as session:
            await self._finish(session, due, **values)

    @staticmethod
    async def _finish(session: AsyncSession, due: Due, **values: Any) -> None:
        await session.execute(
            update(GitserverRepo)
            .where(GitserverRepo.repository_id == due.repository_id)
            .values(
                lease_owner=None,
                lease_until=None,
                updated_at=now(),
                queued_priority=values.pop("queued_priority", GitserverRepo.queued_priority),
                queued_reason=values.pop("queued_reason", GitserverRepo.queued_reason),
                **values,
            )
        )

    async def release(self, due: Due) -> None:
        """Give a claimed update back untouched (shutdown): it stays due."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(GitserverRepo)
                .where(GitserverRepo.repository_id == due.repository_id)
                .values(lease_owner=None, lease_until=None)
            )

    async def enqueue(
        self, ids: Iterable[int], reason: QueueReason, *, priority: int | None = None
    ) -> int:
        """Queue the mirrors of `ids`, giving rows to those without; returns how many.

        A new row goes to its repository's node (`placement`).
        """
        where = await self.placement()
        return await self._enqueue(ids, reason, shard=where, priority=priority)

    async def placement(self) -> Placement:
        """Where new mirror rows go now: the active nodes, read at most once per NODES_TTL.

        They change rarely (a node joins, drains or dies), and a batch of rows needs them
        once; this process's node alone while `active_nodes` is not wired.
        """
        at = time.monotonic()
        if self._placement is None or at - self._placed_at >= NODES_TTL:
            nodes = await self.active_nodes() if self.active_nodes is not None else []
            self._placement = Placement(nodes=tuple(nodes), fallback=self._settings.node_name)
            self._placed_at = at
        return self._placement

    async def enqueue_existing(self, repository_id: int, reason: QueueReason) -> bool:
        """Queue a mirror that already has a row; False when it has none yet."""
        return await self._enqueue([repository_id], reason, shard=None) > 0

    async def _enqueue(
        self,
        ids: Iterable[int],
        reason: QueueReason,
        *,
        shard: str | Placement | None,
        priority: int | None = None,
    ) -> int:
        async with self._sessions.begin() as session:
            queued = await enqueue_in(session, ids, reason, shard=shard, priority=priority)
        if queued and self.on_enqueued is not None:
            self.on_enqueued()
        return queued

    async def enqueue_stale(self, repository_id: int, older_than: float) -> bool:
        """A visit: queue the update when the mirror was last fetched over `older_than` ago."""
        limit = now() - timedelta(seconds=older_than)
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(GitserverRepo)
                .where(
                    GitserverRepo.repository_id == repository_id,
                    GitserverRepo.queued_priority.is_(None),
                    or_(
                        GitserverRepo.last_fetched_at.is_(None),
                        GitserverRepo.last_fetched_at < limit,
                    ),
                    GitserverRepo.clone_status == CloneStatus.cloned,
                )
                .values(
                    queued_priority=QueueReason.visit.priority,
                    queued_reason=QueueReason.visit.value,
                )
            )
            queued = bool(result.rowcount)  # type: ignore[attr-defined]
            if queued:
                await _notify_queued(session, None)
        if queued and self.on_enqueued is not None:
            self.on_enqueued()
        return queued

    def visit(self, state: MirrorState | None, repository_id: int) -> None:
        """A page or entry of the repository was opened, its mirror's `state` read.

        Decided from `state`: when the mirror is cloned, not queued and last fetched over
        `update_on_visit_after` ago, its update is queued, at most once per that period
        per repository in this process, beside the request and never in its way (a busy
        database, SQLite's one writer, delays or costs the update, not the page).
        """
        older_than = self._settings.update_on_visit_after
        if state is None or not stale(state, older_than, now()):
            return
        at = time.monotonic()
        if at - self._visited.get(repository_id, -older_than) < older_than:
            return
        if len(self._visited) >= MAX_VISITED:
            self._visited.clear()
        self._visited[repository_id] = at
        task = asyncio.create_task(self._visit(repository_id), name=f"visit-{repository_id}")
        self._visits.add(task)
        task.add_done_callback(self._visits.discard)

    async def _visit(self, repository_id: int) -> None:
        try:
            await self.enqueue_stale(repository_id, self._settings.update_on_visit_after)
        except DBAPIError:
            logger.warning(
                "a visit's update was not queued",
                exc_info=True,
                extra={"action": "gitserver.visit", "repository_id": repository_id},
            )

    async def visits_queued(self) -> None:
        """Wait for the visits' updates under way (for a clean stop, and tests)."""
        while self._visits:
            await asyncio.gather(*self._visits, return_exceptions=True)

    async def state(self, repository_id: int) -> MirrorState | None:
        """The mirror of a repository, with its schedule in words."""

        def get(connection: Connection) -> AnyRow | None:
            return connection.execute(_MIRROR, {"id": repository_id}).one_or_none()

        async def read() -> AnyRow | None:
            return await self._sessions.read(get)

        row = await self._rows.load(repository_id, read)
        if row is None:
            return None
        at = now()
        return MirrorState(
            clone_status=row.clone_status,
            node=row.shard,
            shard=row.shard,
            last_fetched_at=row.last_fetched_at,
            last_changed_at=row.last_changed_at,
            last_error=row.last_error,
            failure_kind=row.failure_kind,
            next_update_at=row.next_update_at,
            interval_seconds=row.interval_seconds,
            failures=row.failures,
            failing=row.failing,
            queued=row.queued_reason,
            move_to=row.move_to,
            moved_from=row.moved_from,
            schedule=schedule.explain(
                now=at,
                next_update_at=row.next_update_at,
                reason=row.schedule_reason,
                queued_reason=row.queued_reason,
                last_changed_at=row.last_changed_at,
                failures=row.failures,
                failure_kind=row.failure_kind,
            ),
        )

    async def queue(self, limit: int = 50) -> list[QueueEntry]:
        """The next mirrors to update, in the order the updater takes them."""
        at = now()
        g = GitserverRepo
        async with self._sessions() as session:
            rows = list(
                (
                    await session.execute(
                        select(g)
                        .where(g.shard == self._settings.node_name)
                        .order_by(func.coalesce(g.queued_priority, 9), g.next_update_at)
                        .limit(limit * 2)
                    )
                ).scalars()
            )
            found = await repositories.sources_of(session, [row.repository_id for row in rows])
        return [
            QueueEntry(
                name=source.name,
                clone_status=row.clone_status,
                queued=row.queued_reason,
                next_update_at=row.next_update_at,
                running=row.lease_until is not None and row.lease_until > at,
                failures=row.failures,
                failing=row.failing,
                failure_kind=row.failure_kind,
            )
            for row in rows
            if (source := found.get(row.repository_id)) is not None and not source.deleted
        ][:limit]

    async def status(self) -> SchedulerStatus:
        """Counts for `GET /api/scheduler` and the admin page."""
        at = now()
        g = GitserverRepo
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(
                        func.count(),
                        func.count().filter(g.queued_priority.is_not(None)),
                        func.count().filter(
                            and_(g.queued_priority.is_(None), g.next_update_at <= at)
                        ),
                        func.count().filter(g.lease_until > at),
                        func.count().filter(g.failing),
                        func.count().filter(g.clone_status == CloneStatus.cloned),
                        func.min(g.next_update_at).filter(g.queued_priority.is_(None)),
                    ).where(g.shard == self._settings.node_name)
                )
            ).one()
        return SchedulerStatus(
            mirrors=row[0],
            queued=row[1],
            due=row[2],
            running=row[3],
            failing=row[4],
            cloned=row[5],
            next_due_at=row[6],
        )

    async def counts_by_node(self) -> dict[str, int]:
        """How many mirrors each storage node owns, by node name (nodes owning none absent)."""
        g = GitserverRepo
        async with self._sessions() as session:
            rows = await session.execute(select(g.shard, func.count()).group_by(g.shard))
            return {shard: count for shard, count in rows}

    # Moves: the plan, and this node's copies of mirrors that come to it ------------------

    async def replan(self, decide: Callable[[list[Holding]], PlanT]) -> PlanT:
        """Read every mirror's holding, `decide`, and apply the plan: one transaction.

        Relocated mirrors are queued to clone (their new node is woken at commit).
        """
        async with self._sessions.begin() as session:
            plan = decide(await holdings_in(session))
            for (lost, to), ids in plan.relocate.items():
                for batch in chunks(ids):
                    await relocate_in(session, batch, lost=lost, to=to)
            for (was, to), ids in plan.replace.items():
                for batch in chunks(ids):
                    await replace_in(session, batch, was=was, to=to)
            for (was, to), ids in plan.start.items():
                for batch in chunks(ids):
                    await start_moves_in(session, batch, was=was, to=to)
            for batch in chunks(plan.cancel):
                await cancel_moves_in(session, batch)
            if plan.relocate or plan.replace:
                await _notify_queued(session, None)
            if plan.start:
                await events.notify_in(session, MOVES, {})
        if (plan.relocate or plan.replace) and self.on_enqueued is not None:
            self.on_enqueued()
        return plan

    # Moves: this node's copies of mirrors that come to it --------------------------------

    async def claim_moves(self, owner: str, slots: int) -> list[Move]:
        """Lease up to `slots` mirrors planned to move to this node, nothing else running.

        The lease keeps the old node's updater off the mirror while it is copied, so the
        copy is of a mirror that does not change under it.
        """
        at = now()
        g = GitserverRepo
        node = self._settings.node_name
        async with self._sessions.begin() as session:
            rows = list(
                await session.execute(
                    select(g.repository_id, g.shard)
                    .where(g.move_to == node, _lease_free(at))
                    .order_by(g.repository_id)
                    .limit(slots)
                )
            )
            taken = []
            for row in rows:
                claimed = await session.execute(
                    update(g)
                    .where(g.repository_id == row.repository_id, g.move_to == node, _lease_free(at))
                    .values(lease_owner=owner, lease_until=at + LEASE)
                )
                if claimed.rowcount == 1:  # type: ignore[attr-defined]
                    taken.append(Move(repository_id=row.repository_id, source=row.shard))
        return taken

    async def moved(self, owner: str, move: Move, *, digest: str) -> bool:
        """Flip the mirror's owner to this node: its copy here is whole. One UPDATE.

        True when the row was still this move's (on `move.source`, moving here, leased by
        `owner`); False when the plan changed meanwhile (the copy is not the mirror's).
        Reads go to this node from now on; the old node keeps its copy for the grace
        period, for reads sent to it just before.
        """
        at = now()
        g = GitserverRepo
        node = self._settings.node_name
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(g)
                .where(
                    g.repository_id == move.repository_id,
                    g.shard == move.source,
                    g.move_to == node,
                    g.lease_owner == owner,
                )
                .values(
                    shard=node,
                    moved_from=move.source,
                    placed_at=at,
                    move_to=None,
                    lease_owner=None,
                    lease_until=None,
                    refs_digest=digest,
                    maintained_at=None,  # this node's janitor repacks its copy soon
                    updated_at=at,
                )
            )
            flipped = bool(result.rowcount)  # type: ignore[attr-defined]
            if flipped:
                await events.notify_in(session, MOVES, {})
            return flipped

    async def move_failed(self, owner: str, move: Move, *, retry_in: float) -> None:
        """A copy failed: the move stays planned and is tried again in `retry_in` seconds.

        The old node may update the mirror meanwhile (its lease is released).
        """
        g = GitserverRepo
        async with self._sessions.begin() as session:
            await session.execute(
                update(g)
                .where(g.repository_id == move.repository_id, g.lease_owner == owner)
                .values(lease_owner=None, lease_until=now() + timedelta(seconds=retry_in))
            )

    async def moved_away(self, before: datetime, *, since: datetime, limit: int) -> list[int]:
        """Mirrors that left this node between `since` and `before` (their copies may go)."""
        g = GitserverRepo
        node = self._settings.node_name
        async with self._sessions() as session:
            rows = await session.scalars(
                select(g.repository_id)
                .where(
                    g.moved_from == node,
                    g.shard != node,
                    or_(g.move_to.is_(None), g.move_to != node),
                    g.placed_at < before,
                    g.placed_at >= since,
                )
                .order_by(g.placed_at)
                .limit(limit)
            )
            return list(rows)

    async def holders(self, ids: list[int]) -> dict[int, Holder]:
        """Who owns each of `ids` that has a mirror row (any node)."""
        g = GitserverRepo
        async with self._sessions() as session:
            rows = await session.execute(
                select(g.repository_id, g.shard, g.move_to, g.placed_at).where(
                    g.repository_id.in_(ids)
                )
            )
            return {
                row.repository_id: Holder(
                    node=row.shard, move_to=row.move_to, placed_at=row.placed_at
                )
                for row in rows
            }

    async def moves(self, limit: int = 100) -> list[MoveEntry]:
        """The moves planned or copying now, by repository id (the nodes page)."""
        at = now()
        g = GitserverRepo
        async with self._sessions() as session:
            rows = await session.execute(
                select(g.repository_id, g.shard, g.move_to, g.lease_owner, g.lease_until)
                .where(g.move_to.is_not(None))
                .order_by(g.repository_id)
                .limit(limit)
            )
            return [
                MoveEntry(
                    repository_id=row.repository_id,
                    source=row.shard,
                    target=row.move_to,
                    copying=row.lease_owner is not None
                    and row.lease_until is not None
                    and row.lease_until >= at,
                )
                for row in rows
            ]

    # The janitor's questions -------------------------------------------------------------

    async def due_maintenance(self, before: datetime, limit: int) -> list[int]:
        """Cloned mirrors on this node last maintained before `before`."""
        g = GitserverRepo
        async with self._sessions() as session:
            rows = await session.scalars(
                select(g.repository_id)
                .where(
                    g.shard == self._settings.node_name,
                    g.clone_status == CloneStatus.cloned,
                    or_(g.maintained_at.is_(None), g.maintained_at < before),
                )
                .order_by(g.maintained_at.is_not(None), g.maintained_at)
                .limit(limit)
            )
            return list(rows)

    async def maintained(self, repository_id: int, size_bytes: int) -> None:
        """A mirror was maintained: when, and its size after repacking (its repository's)."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(GitserverRepo)
                .where(GitserverRepo.repository_id == repository_id)
                .values(maintained_at=now())
            )
            await repositories.record_size(session, repository_id, size_bytes)

    async def forget(self, repository_id: int) -> None:
        """Drop a mirror's row (its directory is gone)."""
        async with self._sessions.begin() as session:
            await session.execute(
                delete(GitserverRepo).where(GitserverRepo.repository_id == repository_id)
            )

    async def known(self, ids: list[int], *, any_node: bool = False) -> set[int]:
        """Which of `ids` have a mirror row on this node (`any_node`: on any node)."""
        g = GitserverRepo
        here = [] if any_node else [g.shard == self._settings.node_name]
        async with self._sessions() as session:
            rows = await session.scalars(
                select(g.repository_id).where(g.repository_id.in_(ids), *here)
            )
            return set(rows)
