"""The mirrors' table: discovery, the durable queue, results, and each mirror's state.

The queue is `gitserver_repos` itself: one row per repository, so asking twice never
queues twice. A row is due when it is queued (`queued_priority`: 0 newly discovered,
1 asked for by a webhook, a visit or an admin) or its `next_update_at` has passed;
due rows go out by priority, then by due time, under a lease (so a restart loses
nothing and a crashed updater's work runs again once the lease expires).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import and_, case, exists, func, insert, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from repodepot.codehosts.config import parse_config
from repodepot.codehosts.sources import clone_origins
from repodepot.codehosts.syncer import now
from repodepot.db.models import (
    CloneStatus,
    CodeHost,
    CodeHostKind,
    GitserverRepo,
    Repository,
    RepoSource,
)
from repodepot.exceptions import InvalidInput
from repodepot.git.runner import Credentials
from repodepot.gitserver import mirror, schedule
from repodepot.outbound import Origin, origin
from repodepot.secrets import SecretBox, SecretUnreadable
from repodepot.settings import Settings

LEASE = timedelta(minutes=2)
NEW, ASKED = 0, 1
# The user name each host wants next to a token over HTTPS.
TOKEN_USER = {
    CodeHostKind.github: "x-access-token",
    CodeHostKind.gitlab: "oauth2",
    CodeHostKind.gitea: "token",
    CodeHostKind.other: "token",
}


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
    shard: str
    last_fetched_at: datetime | None
    last_changed_at: datetime | None
    last_error: str | None
    failure_kind: str | None
    size_bytes: int
    next_update_at: datetime
    interval_seconds: float
    failures: int
    failing: bool
    queued: str | None
    schedule: str


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


def _origins(kind: CodeHostKind, raw_config: str) -> frozenset[Origin]:
    """A connection's clone origins, where its token may go (none if its config is bad)."""
    try:
        config, _ = parse_config(kind, json.loads(raw_config))
    except (InvalidInput, ValueError):
        return frozenset()
    return clone_origins(config)


def _origin_of(url: str) -> Origin | None:
    try:
        return origin(url)
    except (InvalidInput, ValueError):
        return None


def _due_now(at: datetime) -> Any:
    return or_(GitserverRepo.queued_priority.is_not(None), GitserverRepo.next_update_at <= at)


def _lease_free(at: datetime) -> Any:
    return or_(GitserverRepo.lease_until.is_(None), GitserverRepo.lease_until < at)


class Gitserver:
    """Queries of `gitserver_repos`, for the updater, the API and the pages."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, box: SecretBox, settings: Settings
    ) -> None:
        self._sessions = sessions
        self._box = box
        self._settings = settings
        self.on_enqueued: Callable[[], None] | None = None

    async def discover(self) -> int:
        """Give every live repository with a source a row, queued first; returns how many."""
        missing = ~exists().where(GitserverRepo.repository_id == Repository.id)
        chosen = select(
            Repository.id,
            literal(self._settings.shard),
            literal(NEW),
            literal("new"),
        ).where(Repository.deleted_at.is_(None), Repository.source_url.is_not(None), missing)
        async with self._sessions.begin() as session:
            result = await session.execute(
                insert(GitserverRepo).from_select(
                    ["repository_id", "shard", "queued_priority", "queued_reason"], chosen
                )
            )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def claim(self, owner: str, slots: int, busy: dict[str, int], per_host: int) -> list[Due]:
        """Lease up to `slots` due mirrors, skipping hosts already at `per_host` updates."""
        at = now()
        g = GitserverRepo

        def walk(condition: Any, *order: Any) -> Any:
            # The queue's index is walked first, a few rows, and only those are joined:
            # however many mirrors there are, a claim reads a handful of rows.
            head = (
                select(g.repository_id)
                .where(condition, g.shard == self._settings.shard, _lease_free(at))
                .order_by(*order)
                .limit(slots * 4)
                .subquery()
            )
            return (
                select(
                    g.repository_id,
                    Repository.name,
                    Repository.source_url,
                    Repository.external_host,
                    Repository.deleted_at,
                    g.clone_status,
                    g.refs_digest,
                    g.last_changed_at,
                    g.failures,
                )
                .join(head, head.c.repository_id == g.repository_id)
                .join(Repository, Repository.id == g.repository_id)
                .order_by(*order)
            )

        queued = walk(g.queued_priority.is_not(None), g.queued_priority, g.next_update_at)
        due = walk(and_(g.queued_priority.is_(None), g.next_update_at <= at), g.next_update_at)
        taken: list[Due] = []
        counts = dict(busy)
        async with self._sessions.begin() as session:
            rows = list((await session.execute(queued.limit(slots * 4))).all())
            if len(rows) < slots * 4:
                rows += (await session.execute(due.limit(slots * 4))).all()
            gone = [row.repository_id for row in rows if row.deleted_at or not row.source_url]
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
                if row.repository_id in gone:
                    continue
                host = row.external_host or urlsplit(row.source_url).netloc
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
                        name=row.name,
                        upstream=mirror.Upstream(url=row.source_url),
                        host=host,
                        clone_status=row.clone_status,
                        refs_digest=row.refs_digest,
                        last_changed_at=row.last_changed_at,
                        failures=row.failures,
                    )
                )
            if taken:
                taken = await self._with_credentials(session, taken)
        return taken

    async def _with_credentials(self, session: AsyncSession, taken: list[Due]) -> list[Due]:
        urls = {due.repository_id: due.upstream.url for due in taken}
        tokens = await self._tokens(session, urls)
        return [
            replace(due, upstream=replace(due.upstream, credentials=tokens.get(due.repository_id)))
            for due in taken
        ]

    async def _tokens(self, session: AsyncSession, urls: dict[int, str]) -> dict[int, Credentials]:
        """The token of the lowest-id connection yielding each repository, if any.

        A token goes only to its connection's clone origin(s): a clone URL elsewhere
        (whatever the host's API said) is fetched without credentials.
        """
        rows = await session.execute(
            select(
                RepoSource.repository_id,
                CodeHost.id,
                CodeHost.kind,
                CodeHost.config,
                CodeHost.sealed_token,
            )
            .join(CodeHost, CodeHost.id == RepoSource.code_host_id)
            .where(RepoSource.repository_id.in_(list(urls)), CodeHost.sealed_token.is_not(None))
            .order_by(RepoSource.code_host_id)
        )
        # A batch has many repositories of few connections: each config parsed, each
        # token opened, once.
        origins: dict[int, frozenset[Origin]] = {}
        opened: dict[int, Credentials | None] = {}
        tokens: dict[int, Credentials] = {}
        for repository_id, host_id, kind, config, sealed in rows:
            if repository_id in tokens or sealed is None:
                continue
            if host_id not in origins:
                origins[host_id] = _origins(kind, config)
            if _origin_of(urls[repository_id]) not in origins[host_id]:
                continue
            if host_id not in opened:
                try:
                    token = self._box.open(sealed)
                    opened[host_id] = Credentials(username=TOKEN_USER[kind], password=token)
                except SecretUnreadable:
                    opened[host_id] = None
            if (credentials := opened[host_id]) is not None:
                tokens[repository_id] = credentials
        return tokens

    async def source(self, repository_id: int) -> mirror.Upstream | None:
        """Where a mirror fetches from, with which credentials (None: nowhere)."""
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(Repository.source_url).where(Repository.id == repository_id)
                )
            ).one_or_none()
            if row is None or row.source_url is None:
                return None
            tokens = await self._tokens(session, {repository_id: row.source_url})
        return mirror.Upstream(url=row.source_url, credentials=tokens.get(repository_id))

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

    async def succeeded(self, due: Due, *, changed: bool, digest: str, size: int | None) -> None:
        """Record a clone or fetch, and schedule the next from the age of the last change."""
        at = now()
        last_changed = at if changed or due.last_changed_at is None else due.last_changed_at
        settings = self._settings
        following = schedule.after_success(
            at,
            last_changed,
            minimum=settings.update_min_interval,
            maximum=settings.update_max_interval,
        )
        sized = {} if size is None else {"size_bytes": size}
        await self._finish(
            due,
            **sized,
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
            schedule_reason=following.reason,
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
            "schedule_reason": following.reason,
        }
        if recloned:  # the corrupt mirror is gone: clone it again first thing
            values.update(queued_priority=NEW, queued_reason="new", refs_digest=None)
        await self._finish(due, **values)

    async def _finish(self, due: Due, **values: Any) -> None:
        async with self._sessions.begin() as session:
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

    async def enqueue(self, repository_id: int, reason: str) -> bool:
        """Queue a mirror's update at high priority, once; False if it has no mirror row yet.

        A webhook or an admin also lifts `failing`.
        """
        values: dict[str, Any] = {
            "queued_priority": case(
                (GitserverRepo.queued_priority < ASKED, GitserverRepo.queued_priority),
                else_=ASKED,
            ),
            "queued_reason": func.coalesce(GitserverRepo.queued_reason, reason),
        }
        if reason in ("webhook", "admin"):
            values.update(failing=False, failures=0)
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(GitserverRepo)
                .where(GitserverRepo.repository_id == repository_id)
                .values(**values)
            )
        queued = bool(result.rowcount)  # type: ignore[attr-defined]
        if queued and self.on_enqueued is not None:
            self.on_enqueued()
        return queued

    async def find(self, kind: str, host: str, external_id: str) -> int | None:
        """The live repository a host knows as `external_id`, if any."""
        async with self._sessions() as session:
            found: int | None = await session.scalar(
                select(Repository.id).where(
                    Repository.external_kind == kind,
                    Repository.external_host == host,
                    Repository.external_id == external_id,
                    Repository.deleted_at.is_(None),
                )
            )
        return found

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
                .values(queued_priority=ASKED, queued_reason="visit")
            )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def state(self, repository_id: int) -> MirrorState | None:
        """The mirror of a repository, with its schedule in words."""
        async with self._sessions() as session:
            row = await session.get(GitserverRepo, repository_id)
        if row is None:
            return None
        at = now()
        return MirrorState(
            clone_status=row.clone_status,
            shard=row.shard,
            last_fetched_at=row.last_fetched_at,
            last_changed_at=row.last_changed_at,
            last_error=row.last_error,
            failure_kind=row.failure_kind,
            size_bytes=row.size_bytes,
            next_update_at=row.next_update_at,
            interval_seconds=row.interval_seconds,
            failures=row.failures,
            failing=row.failing,
            queued=row.queued_reason,
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
            rows = (
                await session.execute(
                    select(
                        Repository.name,
                        g.clone_status,
                        g.queued_reason,
                        g.next_update_at,
                        g.failures,
                        g.failing,
                        g.failure_kind,
                        g.lease_until,
                    )
                    .join(Repository, Repository.id == g.repository_id)
                    .where(g.shard == self._settings.shard, Repository.deleted_at.is_(None))
                    .order_by(func.coalesce(g.queued_priority, 9), g.next_update_at)
                    .limit(limit)
                )
            ).all()
        return [
            QueueEntry(
                name=row.name,
                clone_status=row.clone_status,
                queued=row.queued_reason,
                next_update_at=row.next_update_at,
                running=row.lease_until is not None and row.lease_until > at,
                failures=row.failures,
                failing=row.failing,
                failure_kind=row.failure_kind,
            )
            for row in rows
        ]

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
                    ).where(g.shard == self._settings.shard)
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
