"""Import jobs: submit, read, list, cancel, and the worker's claim/progress/finish queries.

All SQL about import jobs lives here. Progress writes are single
`UPDATE … WHERE id = … AND status = 'running'` statements: no read first, no
RETURNING; a count of 0 rows tells the worker the job was cancelled meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from repodepot import audit, repositories
from repodepot.accounts import Principal
from repodepot.db.base import is_sqlite
from repodepot.db.models import ImportJob, ImportSecret, ImportStatus, Visibility
from repodepot.events import Broker, Event, Subscription
from repodepot.exceptions import AlreadyExists, NotFound, PermissionDenied
from repodepot.git.urls import Source, parse_source
from repodepot.gitserver.service import Placement, adopt_in
from repodepot.imports.errors import JobFinished, QueueFull, QuotaFull
from repodepot.imports.records import ImportJobRecord
from repodepot.imports.validation import validate_name
from repodepot.outbound import Policy
from repodepot.pagination import Page, paginate
from repodepot.repositories import MirrorFacts, credentials
from repodepot.secrets import SecretBox
from repodepot.settings import Settings

logger = logging.getLogger(__name__)
LIVE = (ImportStatus.pending, ImportStatus.running)
DEFAULT_USERNAME = credentials.DEFAULT_USERNAME


def snapshot(job: ImportJob) -> Event:
    """A job row as the JSON-able event every layer passes around."""
    return ImportJobRecord.from_row(job).as_event()


def topic(job_id: int) -> str:
    """The broker topic of one job's changes."""
    return f"import:{job_id}"


QUEUED_TOPIC = "imports:queued"


def event_order(event: Event) -> tuple[int, int]:
    """Where a job's event stands in its history: a status change outranks any progress."""
    status = event.get("status")
    rank = 0 if status == "pending" else 1 if status == "running" else 2
    seq = event.get("seq")
    return rank, seq if isinstance(seq, int) else -1


class Imports:
    """Import jobs over the web pool (requests) and the worker pool (progress writes)."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        worker_sessions: async_sessionmaker[AsyncSession],
        broker: Broker,
        box: SecretBox,
        settings: Settings,
    ) -> None:
        self._sessions = sessions
        self.worker_sessions = worker_sessions
        self._broker = broker
        self._box = box
        self._settings = settings
        self._postgres = not is_sqlite(settings.sqlalchemy_url)
        # Where a new mirror belongs (`Gitserver.placement`, wired by Services): the clone
        # lands on this worker's node, and a move to its owner starts with the job's end.
        self.placement: Callable[[], Awaitable[Placement]] | None = None

    # -- requests -------------------------------------------------------------------------

    async def submit(
        self,
        caller: Principal,
        *,
        url: str,
        owner: str,
        slug: str,
        token: str | None = None,
        username: str | None = None,
        visibility: Visibility = Visibility.private,
    ) -> Event:
        """Validate and queue an import; returns the pending job.

        Raises InvalidInput (422, naming the field), PermissionDenied when a member
        imports outside their own name, AlreadyExists (409) when the target exists or a
        live job targets it (a member sees both: `get`, `list_jobs` and the repository's
        owner), QuotaFull (429) when a member already has `import_queue_per_user` jobs
        pending or running (admins are exempt), QueueFull (429) when too many jobs wait.
        """
        validate_name(owner, "owner")
        validate_name(slug, "slug")
        source = parse_source(url, self._settings.allowed_schemes)
        if not caller.is_admin and owner != caller.user.name:
            raise PermissionDenied(
                f"members import into their own name only ({caller.user.name!r})"
            )
        await Policy.from_settings(self._settings).resolve(source.host, source.port)
        secret = _credential(source, token, username)
        if secret is not None:  # it outlives the job: held to what a kept credential may be
            secret = credentials.check(*secret)
        target = f"{owner}/{slug}"
        async with self._sessions.begin() as session:
            taken, waiting, live = (
                await session.execute(
                    select(
                        repositories.named(target),
                        select(func.count())
                        .select_from(ImportJob)
                        .where(ImportJob.status == ImportStatus.pending)
                        .scalar_subquery(),
                        select(func.count())
                        .select_from(ImportJob)
                        .where(
                            ImportJob.status.in_(LIVE),
                            ImportJob.requested_by == (caller.user.id or None),
                        )
                        .scalar_subquery(),
                    )
                )
            ).one()
            if taken:
                raise AlreadyExists(f"repository {target!r} already exists", field="slug")
            quota = self._settings.import_queue_per_user
            if not caller.is_admin and live >= quota:
                raise QuotaFull.of(quota, retry_after=30)
            if waiting >= self._settings.import_queue_max:
                raise QueueFull.waiting(waiting, retry_after=30)
            try:
                job = (
                    await session.execute(
                        insert(ImportJob)
                        .values(
                            url=source.url,
                            owner=owner,
                            slug=slug,
                            target=target,
                            visibility=visibility,
                            requested_by=caller.user.id or None,
                            status=ImportStatus.pending,
                            has_secret=secret is not None,
                        )
                        .returning(ImportJob)
                    )
                ).scalar_one()
            except IntegrityError:
                raise AlreadyExists(
                    f"an import into {target!r} is already queued or running", field="slug"
                ) from None
            if secret is not None:
                await session.execute(
                    insert(ImportSecret).values(
                        job_id=job.id, username=secret[0], sealed_token=self._box.seal(secret[1])
                    )
                )
            event = snapshot(job)
        self._broker.publish(topic(job.id), event)
        self._broker.publish(QUEUED_TOPIC, event)
        return {**event, "queue_position": waiting + 1}

    async def get(self, caller: Principal, job_id: int) -> Event:
        """One job with its queue position.

        NotFound unless the caller requested it, it imports into the caller's name, or the
        caller is an admin.
        """
        async with self._sessions() as session:
            job = await session.get(ImportJob, job_id)
            if job is None or not _may_see(caller, job):
                raise NotFound(f"no import with id {job_id}")
            event = snapshot(job)
            if job.status is ImportStatus.pending:
                ahead = await session.scalar(
                    select(func.count())
                    .select_from(ImportJob)
                    .where(ImportJob.status == ImportStatus.pending, ImportJob.id < job_id)
                )
                event["queue_position"] = (ahead or 0) + 1
        return event

    async def watch(
        self, caller: Principal, job_id: int, *, keepalive: float
    ) -> tuple[Event, AsyncGenerator[Event | None, None]]:
        """The job now, and its changes to come (None after `keepalive` quiet seconds).

        The changes end with the final state, or at once when the job has already
        ended. Raises NotFound as `get`. Subscribed before the state is read, so no change
        slips between the two.
        """
        subscription = self._broker.open(topic(job_id), event_order)
        try:
            current = await self.get(caller, job_id)
        except BaseException:
            self._broker.close(subscription)
            raise
        subscription.seen(current)
        return current, self._changes(subscription, current, keepalive)

    async def _changes(
        self, subscription: Subscription, current: Event, keepalive: float
    ) -> AsyncGenerator[Event | None, None]:
        try:
            if ImportStatus(current["status"]).finished:
                return
            while True:
                event = await subscription.get(keepalive)
                yield event
                if event is not None and ImportStatus(event["status"]).finished:
                    return
        finally:
            self._broker.close(subscription)

    def cancels(self, job_id: int) -> AbstractContextManager[Subscription]:
        """A subscription to one job's events, for its worker to hear of a cancel."""
        return self._broker.subscribe(topic(job_id), event_order)

    async def list_jobs(
        self,
        caller: Principal,
        *,
        status: ImportStatus | None = None,
        page: int = 1,
        per_page: int = 30,
    ) -> Page[Event]:
        """Jobs, newest first: the caller's and those into their name, or everyone's for admins."""
        statement = select(ImportJob).order_by(ImportJob.id.desc())
        if not caller.is_admin:
            statement = statement.where(
                (ImportJob.requested_by == caller.user.id) | (ImportJob.owner == caller.user.name)
            )
        if status is not None:
            statement = statement.where(ImportJob.status == status)
        async with self._sessions() as session:
            return await paginate(
                session,
                statement,
                page=page,
                per_page=per_page,
                convert=lambda row: snapshot(row[0]),
            )

    async def cancel(self, caller: Principal, job_id: int) -> Event:
        """Cancel a pending or running job (idempotent); JobFinished (409) if it has ended.

        A running job's worker hears of it through the broker (or its next write) and
        kills git and removes the temporary directory.
        """
        current = await self.get(caller, job_id)  # 404 for jobs the caller may not see
        now = datetime.now(UTC)
        async with self._sessions.begin() as session:
            changed = (
                await session.execute(
                    update(ImportJob)
                    .where(ImportJob.id == job_id, ImportJob.status.in_(LIVE))
                    .values(
                        status=ImportStatus.cancelled,
                        phase="cancelled",
                        finished_at=now,
                        seq=ImportJob.seq + 1,
                        eta_seconds=None,
                        duration_ms=ImportJobRecord.from_event(current).ms_since_start(now),
                    )
                )
            ).rowcount  # type: ignore[attr-defined]
            if changed:
                if current["has_secret"]:
                    await session.execute(delete(ImportSecret).where(ImportSecret.job_id == job_id))
                await audit.record(
                    session, caller.user.id, "import.cancelled", f"import:{job_id}", {}
                )
            job = await session.get(ImportJob, job_id)
            assert job is not None
            event = snapshot(job)
        if not changed and job.status is not ImportStatus.cancelled:
            raise JobFinished(f"import {job_id} has already finished ({job.status.value})")
        if changed:
            self._broker.publish(topic(job_id), event)
        return event

    # -- worker ---------------------------------------------------------------------------

    async def claim(
        self, worker_id: str, limit: int = 1
    ) -> list[tuple[ImportJobRecord, tuple[str, str] | None]]:
        """Take up to `limit` of the oldest pending jobs for `worker_id`, in one UPDATE.

        No job is ever taken by two workers (FOR UPDATE SKIP LOCKED on PostgreSQL; SQLite
        serialises writers). Returns the running jobs with their decrypted credentials;
        fewer than `limit` means the queue is empty now.
        """
        now = datetime.now(UTC)
        oldest = (
            select(ImportJob.id)
            .where(ImportJob.status == ImportStatus.pending)
            .order_by(ImportJob.id)
            .limit(limit)
        )
        if self._postgres:
            oldest = oldest.with_for_update(skip_locked=True)
        async with self.worker_sessions.begin() as session:
            jobs = (
                (
                    await session.execute(
                        update(ImportJob)
                        .where(ImportJob.id.in_(oldest), ImportJob.status == ImportStatus.pending)
                        .values(
                            status=ImportStatus.running,
                            attempt=ImportJob.attempt + 1,
                            worker_id=worker_id,
                            started_at=now,
                            heartbeat_at=now,
                            phase="starting",
                            seq=ImportJob.seq + 1,
                            error=None,
                        )
                        .returning(ImportJob)
                    )
                )
                .scalars()
                .all()
            )
            with_secret = [job.id for job in jobs if job.has_secret]
            secrets = (
                {}
                if not with_secret
                else {
                    secret.job_id: secret
                    for secret in (
                        await session.execute(
                            select(ImportSecret).where(ImportSecret.job_id.in_(with_secret))
                        )
                    ).scalars()
                }
            )
            claimed = []
            for job in sorted(jobs, key=lambda job: job.id):
                secret = secrets.get(job.id)
                credential = (
                    (secret.username, self._box.open(secret.sealed_token)) if secret else None
                )
                claimed.append((ImportJobRecord.from_row(job), credential))
        return claimed

    async def write_progress(self, job_id: int, fields: dict[str, Any]) -> bool:
        """One UPDATE of a running job's progress; False when the job is no longer running."""
        async with self.worker_sessions.begin() as session:
            result = await session.execute(
                update(ImportJob)
                .where(ImportJob.id == job_id, ImportJob.status == ImportStatus.running)
                .values({**fields, "heartbeat_at": datetime.now(UTC)})
            )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def finish_success(
        self,
        job: ImportJobRecord,
        *,
        seq: int,
        facts: MirrorFacts,
        credential: tuple[str, str] | None,
        fields: dict[str, Any],
        place: Callable[[int], object],
        unplace: Callable[[int], None],
    ) -> Event | None:
        """End the job and create its repository, all in one transaction.

        The repository (with what the clone found: default branch, emptiness, size),
        its mirror's row, its fetch credential (the import's, kept so that it can be
        fetched later), the audit entry and the job's end commit together; `place(id)`
        puts the clone where the repository's id says, before the commit makes the row
        visible (`unplace(id)` takes it back if the commit fails). The repository
        belongs to the user whose name it is under when there is one (an admin's import
        into a member's name is the member's), else to whoever asked.

        Returns the final job, or None when it was cancelled meanwhile (nothing is written).
        """
        now = datetime.now(UTC)
        placed: int | None = None
        # Read before the transaction: on SQLite it holds the one writer.
        where = await self.placement() if self.placement is not None else None
        try:
            async with self.worker_sessions.begin() as session:
                repository_id = await repositories.insert_in(
                    session,
                    name=job.target,
                    owner_name=job.owner,
                    owner_id=job.requested_by,
                    visibility=job.visibility,
                    source_url=job.url,
                    facts=facts,
                )
                final = await _finish(
                    session,
                    job,
                    {
                        **fields,
                        "status": ImportStatus.success,
                        "phase": "done",
                        "percent": 100.0,
                        "eta_seconds": None,
                        "finished_at": now,
                        "seq": seq,
                        "heartbeat_at": now,
                        "repository_id": repository_id,
                        "duration_ms": job.ms_since_start(now),
                    },
                )
                if final is None:
                    await session.rollback()
                    return None
                if credential is not None:
                    username, token = credential
                    await credentials.put_in(
                        session,
                        self._box,
                        repository_id,
                        url=job.url,
                        username=username,
                        token=token,
                    )
                here = self._settings.node_name
                await adopt_in(
                    session,
                    repository_id,
                    shard=here,
                    at=now,
                    interval=self._settings.update_min_interval,
                    move_to=_owner_elsewhere(where, repository_id, here),
                )
                await audit.record(
                    session,
                    job.requested_by,
                    "repository.imported",
                    job.target,
                    {
                        "job": job.id,
                        "url": job.url,
                        "size_bytes": facts.size_bytes,
                        "attempt": job.attempt,
                        "credential_kept": credential is not None,
                    },
                )
                place(repository_id)
                placed = repository_id
        except BaseException:
            if placed is not None:
                try:
                    unplace(placed)
                except OSError:  # the error that matters is the one being raised
                    logger.exception(
                        "could not take back the clone of repository %s",
                        placed,
                        extra={"action": "imports.unplace_failed"},
                    )
            raise
        return final

    async def finish_failure(
        self, job: ImportJobRecord, *, seq: int, error: str, fields: dict[str, Any]
    ) -> Event | None:
        """Mark a running job failed with `error` and delete its secret; None if it had ended."""
        now = datetime.now(UTC)
        async with self.worker_sessions.begin() as session:
            return await _finish(
                session,
                job,
                {
                    **fields,
                    "status": ImportStatus.failed,
                    "phase": "failed",
                    "error": error,
                    "eta_seconds": None,
                    "finished_at": now,
                    "seq": seq,
                    "heartbeat_at": now,
                    "duration_ms": job.ms_since_start(now),
                },
            )

    async def requeue(self, job_id: int, *, worker_id: str | None = None) -> Event | None:
        """Put a running job back in the queue (shutdown or a dead worker); None if it had ended.

        A job already tried `MAX_ATTEMPTS` times fails instead, saying how often it was
        interrupted.
        """
        async with self.worker_sessions.begin() as session:
            job = await session.get(ImportJob, job_id)
            if (
                job is None
                or job.status is not ImportStatus.running
                or (worker_id is not None and job.worker_id != worker_id)
            ):
                return None
            if job.attempt >= MAX_ATTEMPTS:
                job.status, job.phase = ImportStatus.failed, "failed"
                job.error = f"The import was interrupted {job.attempt} times and was given up."
                job.finished_at = datetime.now(UTC)
                if job.has_secret:
                    await session.execute(delete(ImportSecret).where(ImportSecret.job_id == job_id))
            else:
                job.status, job.phase = ImportStatus.pending, "queued"
            job.worker_id, job.eta_seconds = None, None
            job.seq += 1
            await session.flush()
            await session.refresh(job)
            return snapshot(job)

    async def running_jobs(self) -> list[tuple[int, str | None, datetime | None]]:
        """(id, worker id, last heartbeat) of every running job, for recovery."""
        async with self.worker_sessions() as session:
            rows = await session.execute(
                select(ImportJob.id, ImportJob.worker_id, ImportJob.heartbeat_at).where(
                    ImportJob.status == ImportStatus.running
                )
            )
            return [(row[0], row[1], row[2]) for row in rows]


MAX_ATTEMPTS = 3


async def _finish(
    session: AsyncSession, job: ImportJobRecord, values: dict[str, Any]
) -> Event | None:
    """End a running job with `values` and drop its secret.

    Returns the final state, built without reading the row back, or None when the job
    was no longer running.
    """
    done = await session.execute(
        update(ImportJob)
        .where(ImportJob.id == job.id, ImportJob.status == ImportStatus.running)
        .values(values)
    )
    if not done.rowcount:  # type: ignore[attr-defined]
        return None
    if job.has_secret:
        await session.execute(delete(ImportSecret).where(ImportSecret.job_id == job.id))
    return job.with_values(values).as_event()


def _may_see(caller: Principal, job: ImportJob) -> bool:
    # A job into a member's name is theirs to see (and cancel) whoever asked for it: else
    # their own import's 409 would name a job they get 404 for.
    return caller.is_admin or job.requested_by == caller.user.id or job.owner == caller.user.name


def _credential(source: Source, token: str | None, username: str | None) -> tuple[str, str] | None:
    if token:
        return username or source.username or DEFAULT_USERNAME, token
    if source.password:
        return source.username or DEFAULT_USERNAME, source.password
    if source.username and not token:
        return DEFAULT_USERNAME, source.username  # `https://TOKEN@host/…`
    return None


def _owner_elsewhere(where: Placement | None, repository_id: int, here: str) -> str | None:
    """The node a new import's mirror moves to from this worker's node; None: it stays."""
    if where is None or not where.nodes:
        return None
    target = where.node_of(repository_id)
    return None if target == here else target
