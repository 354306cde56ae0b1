"""The syncer: make `repositories` equal to what the connections yield.

One sync of one connection lists its source, then diffs the listing against the rows
of that host in a single transaction:

- identity is the host's own id (kind, host, external id): a rename updates the row,
  a repository yielded again after deletion gets its old row (and id) back, and two
  connections to one host share one row, recorded in `repo_sources` with both;
- new repositories are inserted, changed ones updated, and rows no connection yields
  any more are soft-deleted (`deleted_at`), all in batched statements; a listing
  with no change writes nothing to `repositories`;
- a failed listing applies what it got and deletes nothing; any failure, expected or
  not, ends in a recorded sync with its message (and the lease released);
- purge protection: more deletions than the threshold are held for an admin;
- `max_repos_per_site`: a sync that would exceed it changes nothing, and a listing
  longer than it is stopped there (a host can list without end) and applies nothing;
- the host's API is not trusted to name where we connect: a repository whose clone
  URL is not on one of the connection's clone origins is skipped, never cloned.

`SyncLoop` runs each connection every `sync_interval` and on request, one sync of a
connection at a time across processes (a lease row in `code_hosts`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import urlsplit

from sqlalchemy import (
    Row,
    Table,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from repodepot.codehosts.config import AnyConfig, OtherConfig, parse_config
from repodepot.codehosts.http import ApiLimits, CachedPage, CodeHostError, HostApi, ListingTooLong
from repodepot.codehosts.sources import (
    SourceRepo,
    api_settings,
    clone_origins,
    make_source,
    render_name,
)
from repodepot.db.base import session_factory
from repodepot.db.models import (
    CodeHost,
    CodeHostKind,
    CodeHostSync,
    Repository,
    RepoSource,
    SyncStatus,
    Visibility,
)
from repodepot.exceptions import AlreadyExists, InvalidInput
from repodepot.git.redact import strip_credentials
from repodepot.goproxy.versions import default_root
from repodepot.imports.worker import new_worker_id
from repodepot.outbound import Origin, Policy, origin
from repodepot.secrets import SecretBox, SecretUnreadable
from repodepot.settings import Settings
from repodepot.storage import validate_repo_name

if TYPE_CHECKING:
    from repodepot.services import Services

logger = logging.getLogger(__name__)

REPOS = cast(Table, Repository.__table__)
SOURCES = cast(Table, RepoSource.__table__)
BATCH = 500
LEASE = timedelta(seconds=60)
# However unchanged a listing, the table is diffed against it at least this often.
FULL_DIFF_EVERY = timedelta(hours=1)
T = TypeVar("T")

# The columns a sync owns; a row is "unchanged" when all of them are equal. Rows are read
# as KEYS + FIELDS, so the fields compare as one tuple.
FIELDS = (
    "name",
    "description",
    "visibility",
    "default_branch",
    "fork",
    "archived",
    "source_url",
    "go_default_root",
)
KEYS = ("id", "external_kind", "external_host", "external_id", "deleted_at")


def now() -> datetime:
    """The current time, UTC, timezone-aware."""
    return datetime.now(UTC)


def chunks(items: Sequence[T], size: int = BATCH) -> Iterator[Sequence[T]]:
    """`items` in slices of at most `size` (statement parameter limits)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(frozen=True, slots=True)
class Connection:
    """What a sync needs to know about a connection."""

    id: int
    kind: CodeHostKind
    name: str
    config: AnyConfig
    token: str | None
    applied_digest: str | None = None
    applied_at: datetime | None = None

    @property
    def identity(self) -> tuple[str, str]:
        """(kind, host): the namespace in which the host's repository ids are unique."""
        if isinstance(self.config, OtherConfig):
            return (self.kind.value, "")
        return (self.kind.value, self.config.identity_host)

    def name_for(self, repo: SourceRepo) -> str:
        """The repository's name here under this connection's pattern."""
        if isinstance(self.config, OtherConfig):
            host = (urlsplit(repo.clone_url).hostname or "").lower()
        else:
            host = self.config.host
        return render_name(self.config.pattern, host, repo)

    @property
    def fingerprint(self) -> str:
        """Changes when the config or token does: cached pages are per fingerprint."""
        text = json.dumps(self.config.model_dump(mode="json"), sort_keys=True) + (self.token or "")
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(slots=True)
class SyncOutcome:
    """What one sync did and cost."""

    status: SyncStatus = SyncStatus.success
    yielded: int = 0
    added: int = 0
    modified: int = 0
    deleted: int = 0
    unchanged: int = 0
    held: int = 0
    skipped: int = 0
    api_calls: int = 0
    not_modified: int = 0
    duration_ms: int = 0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    held_ids: list[int] = field(default_factory=list)
    applied_digest: str | None = None  # set when this sync applied a complete listing


@dataclass(slots=True)
class _Plan:
    inserts: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    restores: int = 0
    new_links: list[dict[str, Any]] = field(default_factory=list)
    moved_links: list[dict[str, Any]] = field(default_factory=list)
    unlinks: list[int] = field(default_factory=list)
    deletes: list[int] = field(default_factory=list)
    renames: dict[int, str] = field(default_factory=dict)  # temporary or final names, first


class Syncer:
    """Lists a connection's source and applies the difference to `repositories`."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        box: SecretBox,
        settings: Settings,
        site_slots: asyncio.Semaphore | None = None,
    ) -> None:
        self._sessions = sessions
        self._box = box
        self._settings = settings
        self._slots = site_slots or asyncio.Semaphore(settings.codehost_max_concurrent_requests)
        self._caches: dict[str, dict[str, CachedPage]] = {}
        self._limits = ApiLimits(
            requests_per_second=settings.codehost_requests_per_second,
            max_concurrent=settings.codehost_max_concurrent_requests,
            timeout=settings.codehost_request_timeout,
            retries=settings.codehost_retries,
            retry_base=settings.codehost_retry_base,
            max_rate_limit_wait=settings.codehost_max_rate_limit_wait,
            max_response_bytes=settings.codehost_max_response_bytes,
            max_items=settings.max_repos_per_site,
        )

    async def load(self, host_id: int) -> Connection:
        """The connection with its token opened; raises InvalidInput if its config is stale."""
        async with self._sessions() as session:
            row = await session.get(CodeHost, host_id)
            if row is None:
                raise InvalidInput(f"no code host connection {host_id}")
        config, _ = parse_config(row.kind, json.loads(row.config))
        token = self._box.open(row.sealed_token) if row.sealed_token else None
        return Connection(
            id=row.id,
            kind=row.kind,
            name=row.name,
            config=config,
            token=token,
            applied_digest=row.applied_digest,
            applied_at=row.applied_at,
        )

    async def sync(self, host_id: int) -> SyncOutcome:
        """List the connection and apply; always records the sync, even a failed one."""
        started = now()
        clock = time.monotonic()
        outcome = SyncOutcome()
        listed: dict[str, SourceRepo] = {}
        connection = None
        try:
            connection = await self.load(host_id)
            listed = await self._list(connection, outcome)
        except ListingTooLong as error:
            outcome.status, outcome.error = SyncStatus.over_limit, error.message
        except (CodeHostError, SecretUnreadable, InvalidInput) as error:
            outcome.status, outcome.error = SyncStatus.failed, error.message
        except Exception as error:  # a bug must still end in a recorded sync, not a held lease
            logger.exception("code host listing crashed", extra={"action": "codehost.sync"})
            outcome.status, outcome.error = SyncStatus.failed, _unexpected(error)
        outcome.yielded = len(listed)
        outcome.duration_ms = int((time.monotonic() - clock) * 1000)
        try:
            async with self._sessions.begin() as session:
                if connection is not None:
                    digest = listing_digest(connection, listed)
                    if self._unchanged(connection, digest, outcome):
                        outcome.unchanged = len(listed)
                    else:
                        await self._apply(session, connection, listed, outcome)
                        if outcome.status is SyncStatus.success and not outcome.skipped:
                            outcome.applied_digest = digest
                outcome.duration_ms = int((time.monotonic() - clock) * 1000)
                await self._record(session, host_id, started, outcome)
        except Exception as error:
            if isinstance(error, IntegrityError):
                # A name taken between our read and write (an import, another connection).
                logger.warning(
                    "code host sync conflicted: %s", error.orig, extra={"action": "codehost.sync"}
                )
                message = (
                    "another change to the repositories conflicted with this sync; "
                    "nothing was changed and the next sync retries"
                )
            else:  # recorded all the same, so that the history says the sync failed
                logger.exception("code host sync crashed", extra={"action": "codehost.sync"})
                message = _unexpected(error)
            outcome = SyncOutcome(
                status=SyncStatus.failed,
                yielded=outcome.yielded,
                api_calls=outcome.api_calls,
                not_modified=outcome.not_modified,
                error=message,
            )
            async with self._sessions.begin() as session:
                await self._record(session, host_id, started, outcome)
        log = logger.warning if outcome.error else logger.info
        log(
            "code host sync %s: +%d ~%d -%d =%d held %d in %d ms, %d API calls (%d not modified)%s",
            outcome.status.value,
            outcome.added,
            outcome.modified,
            outcome.deleted,
            outcome.unchanged,
            outcome.held,
            outcome.duration_ms,
            outcome.api_calls,
            outcome.not_modified,
            f": {outcome.error}" if outcome.error else "",
            extra={"action": "codehost.sync", "code_host_id": host_id},
        )
        return outcome

    async def _list(self, connection: Connection, outcome: SyncOutcome) -> dict[str, SourceRepo]:
        listed: dict[str, SourceRepo] = {}
        api = None
        if not isinstance(connection.config, OtherConfig):
            base_url, headers = api_settings(connection.config, connection.token)
            api = HostApi(
                base_url=base_url,
                headers=headers,
                policy=Policy.from_settings(self._settings),
                limits=self._limits,
                site_slots=self._slots,
                cache=self._caches.setdefault(connection.fingerprint, {}),
                what=f"{connection.kind.value} connection {connection.name!r}",
            )
        source = make_source(connection.config, api)
        limit = self._settings.max_repos_per_site
        try:
            async for repo in source.list_repos():
                listed.setdefault(repo.external_id, repo)
                if len(listed) > limit:
                    raise ListingTooLong(
                        f"{connection.kind.value} connection {connection.name!r} listed more "
                        f"than max_repos_per_site ({limit}) repositories; nothing was changed. "
                        "Raise REPODEPOT_MAX_REPOS_PER_SITE or narrow the connection's query"
                    )
        except ListingTooLong:
            raise
        except CodeHostError as error:
            outcome.status, outcome.error = SyncStatus.failed, error.message
        finally:
            outcome.warnings.extend(source.warnings)
            if api is not None:
                outcome.api_calls = api.stats.calls
                outcome.not_modified = api.stats.not_modified
                await api.aclose()
        return listed

    @staticmethod
    def _unchanged(connection: Connection, digest: str, outcome: SyncOutcome) -> bool:
        """Whether this complete listing is the one the last full sync applied, recently."""
        return (
            outcome.error is None
            and connection.applied_digest == digest
            and connection.applied_at is not None
            and now() - connection.applied_at < FULL_DIFF_EVERY
        )

    async def _apply(
        self,
        session: AsyncSession,
        connection: Connection,
        listed: dict[str, SourceRepo],
        outcome: SyncOutcome,
    ) -> None:
        kind, host = connection.identity
        ours = and_(REPOS.c.external_kind == kind, REPOS.c.external_host == host)
        touched = or_(
            ours,
            REPOS.c.id.in_(
                select(SOURCES.c.repository_id).where(SOURCES.c.code_host_id == connection.id)
            ),
        )
        rows = (
            await session.execute(select(*(REPOS.c[name] for name in KEYS + FIELDS)).where(touched))
        ).all()
        by_id = {row.id: row for row in rows}
        # Rows linked under another host (the connection's URL changed) match nothing
        # and so end up unlinked.
        by_external = {
            row.external_id: row
            for row in rows
            if row.external_kind == kind and row.external_host == host
        }
        links: dict[int, dict[int, str]] = {}
        if rows:
            statement = select(
                SOURCES.c.repository_id, SOURCES.c.code_host_id, SOURCES.c.clone_url
            ).where(SOURCES.c.repository_id.in_(select(REPOS.c.id).where(touched)))
            for repository_id, code_host_id, clone_url in await session.execute(statement):
                links.setdefault(repository_id, {})[code_host_id] = clone_url
        peers = await self._peers(session, connection, links)
        origins = (
            None if isinstance(connection.config, OtherConfig) else clone_origins(connection.config)
        )
        plan = _Plan()
        claims: dict[str, int | str] = {}  # name -> row id, or external id of a new row
        for external_id, repo in listed.items():
            row = by_external.get(external_id)
            sources = links.get(row.id, {}) if row is not None else {}
            primary = min([*sources, connection.id])
            name = peers.get(primary, connection).name_for(repo)
            try:
                validate_repo_name(name)
                where = origin(repo.clone_url)  # the outbound policy guards it when fetched
            except InvalidInput as error:
                outcome.skipped += 1
                why = f"{name!r} is not a valid name" if error.field != "url" else error.message
                outcome.warnings.append(f"{repo.name_with_owner}: {why}")
                continue
            if origins is not None and where not in origins:
                outcome.skipped += 1
                outcome.warnings.append(_elsewhere(repo, where, origins))
                continue
            url = strip_credentials(repo.clone_url)
            desired = (
                name,
                repo.description,
                Visibility.private if repo.private else Visibility.public,
                repo.default_branch,
                repo.fork,
                repo.archived,
                url,
                default_root(url),
            )
            values = dict(zip(FIELDS, desired, strict=True))
            claimant: int | str = row.id if row is not None else external_id
            if name in claims:
                outcome.skipped += 1
                outcome.warnings.append(f"{repo.name_with_owner}: name {name!r} is yielded twice")
                continue
            claims[name] = claimant
            if row is None:
                plan.inserts.append(
                    {
                        **values,
                        "external_kind": kind,
                        "external_host": host,
                        "external_id": external_id,
                    }
                )
                continue
            if row.deleted_at is not None:
                plan.restores += 1
                plan.updates.append({"b_id": row.id, **values})
            elif tuple(row[len(KEYS) :]) != desired:
                plan.updates.append({"b_id": row.id, **values})
            else:
                outcome.unchanged += 1
            clone_url = values["source_url"]
            if connection.id not in sources:
                plan.new_links.append(
                    {"repository_id": row.id, "code_host_id": connection.id, "clone_url": clone_url}
                )
            elif sources[connection.id] != clone_url:
                plan.moved_links.append({"b_id": row.id, "clone_url": clone_url})
        if outcome.error is None:
            self._plan_deletions(connection, listed, by_id, links, plan)
        held = await self._hold(session, connection, by_id, links, plan, outcome)
        await self._resolve_names(session, claims, by_id, plan, outcome)
        added = len(plan.inserts) + plan.restores
        if added and await self._over_limit(session, added - len(plan.deletes), outcome):
            return
        await self._write(session, connection, plan)
        outcome.added = added
        outcome.modified = len(plan.updates) - plan.restores
        outcome.deleted = len(plan.deletes)
        outcome.held, outcome.held_ids = len(held), held
        if held and outcome.status is SyncStatus.success:
            outcome.status = SyncStatus.held

    async def _peers(
        self, session: AsyncSession, connection: Connection, links: dict[int, dict[int, str]]
    ) -> dict[int, Connection]:
        """Connections to the same host with a lower id: theirs is the name pattern in force."""
        lower = {host_id for sources in links.values() for host_id in sources}
        lower = {host_id for host_id in lower if host_id < connection.id}
        if not lower:
            return {}
        peers: dict[int, Connection] = {}
        rows = await session.execute(
            select(CodeHost.id, CodeHost.kind, CodeHost.name, CodeHost.config).where(
                CodeHost.id.in_(lower)
            )
        )
        for host_id, kind, name, raw in rows:
            try:
                config, _ = parse_config(kind, json.loads(raw))
            except InvalidInput:
                continue
            peers[host_id] = Connection(id=host_id, kind=kind, name=name, config=config, token=None)
        return peers

    @staticmethod
    def _plan_deletions(
        connection: Connection,
        listed: dict[str, SourceRepo],
        by_id: dict[int, Row[Any]],
        links: dict[int, dict[int, str]],
        plan: _Plan,
    ) -> None:
        kind, host = connection.identity
        for repository_id, sources in links.items():
            if connection.id not in sources:
                continue
            row = by_id[repository_id]
            still = (
                row.external_kind == kind
                and row.external_host == host
                and row.external_id in listed
            )
            if still:
                continue
            plan.unlinks.append(repository_id)
            if len(sources) == 1 and row.deleted_at is None:
                plan.deletes.append(repository_id)

    async def _hold(
        self,
        session: AsyncSession,
        connection: Connection,
        by_id: dict[int, Row[Any]],
        links: dict[int, dict[int, str]],
        plan: _Plan,
        outcome: SyncOutcome,
    ) -> list[int]:
        """Purge protection: too many deletions are held (and nothing is unlinked)."""
        live = sum(
            1
            for repository_id, sources in links.items()
            if connection.id in sources and by_id[repository_id].deleted_at is None
        )
        settings = self._settings
        threshold = max(
            settings.sync_purge_threshold_min, live * settings.sync_purge_threshold_percent / 100
        )
        if len(plan.deletes) <= threshold:
            return []
        held, plan.deletes, plan.unlinks = plan.deletes, [], []
        outcome.warnings.append(
            f"{len(held)} of {live} repositories would be deleted, more than the "
            f"threshold of {threshold:.0f}: held until an admin confirms"
        )
        return held

    async def _resolve_names(
        self,
        session: AsyncSession,
        claims: dict[str, int | str],
        by_id: dict[int, Row[Any]],
        plan: _Plan,
        outcome: SyncOutcome,
    ) -> None:
        """Free the names this sync hands out, or skip the repositories that cannot have them.

        A name held by a soft-deleted row is taken from it (the row keeps its id under
        `~deleted-{id}/…`); a name held by a row this sync renames or deletes is freed
        first; a name held by any other live repository is a conflict.
        """
        wanted = [
            name
            for name, claimant in claims.items()
            if isinstance(claimant, str) or by_id[claimant].name != name
        ]
        if not wanted:
            return
        renamed = {
            update["b_id"]
            for update in plan.updates
            if update["name"] != by_id[update["b_id"]].name
        }
        leaving = set(plan.deletes)
        conflicts: set[int | str] = set()
        for batch in chunks(wanted):
            holders = await session.execute(
                select(REPOS.c.id, REPOS.c.name, REPOS.c.deleted_at).where(REPOS.c.name.in_(batch))
            )
            for holder_id, name, deleted_at in holders:
                if holder_id in renamed:
                    plan.renames.setdefault(holder_id, f"~renaming-{holder_id}")
                elif holder_id in leaving or deleted_at is not None:
                    plan.renames[holder_id] = f"~deleted-{holder_id}/{name}"[:255]
                else:
                    conflicts.add(claims[name])
                    outcome.warnings.append(f"name {name!r} is taken by another repository")
        if not conflicts:
            return
        outcome.skipped += len(conflicts)
        plan.inserts = [row for row in plan.inserts if row["external_id"] not in conflicts]
        for update_row in plan.updates:
            if update_row["b_id"] in conflicts:  # keep its current name, take the rest
                update_row["name"] = by_id[update_row["b_id"]].name
                plan.renames.pop(update_row["b_id"], None)

    async def _over_limit(self, session: AsyncSession, growth: int, outcome: SyncOutcome) -> bool:
        if growth <= 0:
            return False
        live = await session.scalar(
            select(func.count()).select_from(REPOS).where(REPOS.c.deleted_at.is_(None))
        )
        limit = self._settings.max_repos_per_site
        if (live or 0) + growth <= limit:
            return False
        outcome.status = SyncStatus.over_limit
        outcome.error = (
            f"this sync would make {(live or 0) + growth} repositories, more than "
            f"max_repos_per_site ({limit}); nothing was changed. Raise "
            "REPODEPOT_MAX_REPOS_PER_SITE or narrow the connection's query"
        )
        return True

    async def _write(self, session: AsyncSession, connection: Connection, plan: _Plan) -> None:
        at = now()
        if plan.renames:
            await session.execute(
                update(REPOS)
                .where(REPOS.c.id == bindparam("b_id"))
                .values(name=bindparam("b_name")),
                [{"b_id": key, "b_name": name} for key, name in plan.renames.items()],
            )
        if plan.updates:
            await session.execute(
                update(REPOS)
                .where(REPOS.c.id == bindparam("b_id"))
                .values(deleted_at=None, updated_at=at),
                plan.updates,
            )
        new_links = list(plan.new_links)
        for batch in chunks(plan.inserts, 1000):
            created = await session.execute(
                insert(REPOS).returning(REPOS.c.id, REPOS.c.source_url),
                list(batch),
            )
            new_links.extend(
                {"repository_id": key, "code_host_id": connection.id, "clone_url": url}
                for key, url in created
            )
        if new_links:
            await session.execute(insert(SOURCES), new_links)
        if plan.moved_links:
            await session.execute(
                update(SOURCES)
                .where(
                    SOURCES.c.repository_id == bindparam("b_id"),
                    SOURCES.c.code_host_id == connection.id,
                )
                .values(clone_url=bindparam("clone_url")),
                plan.moved_links,
            )
        for ids_batch in chunks(plan.unlinks):
            await session.execute(
                delete(SOURCES).where(
                    SOURCES.c.code_host_id == connection.id, SOURCES.c.repository_id.in_(ids_batch)
                )
            )
        for ids_batch in chunks(plan.deletes):
            await session.execute(
                update(REPOS).where(REPOS.c.id.in_(ids_batch)).values(deleted_at=at, updated_at=at)
            )

    async def _record(
        self, session: AsyncSession, host_id: int, started: datetime, outcome: SyncOutcome
    ) -> None:
        """The history row, and the connection's last sync, lease release and next time."""
        finished = now()
        await session.execute(
            insert(CodeHostSync).values(
                code_host_id=host_id,
                started_at=started,
                finished_at=finished,
                status=outcome.status,
                yielded=outcome.yielded,
                added=outcome.added,
                modified=outcome.modified,
                deleted=outcome.deleted,
                unchanged=outcome.unchanged,
                held=outcome.held,
                skipped=outcome.skipped,
                api_calls=outcome.api_calls,
                not_modified=outcome.not_modified,
                duration_ms=outcome.duration_ms,
                error=outcome.error,
                warnings=json.dumps(outcome.warnings[:100]),
            )
        )
        interval = self._settings.sync_interval * random.uniform(0.9, 1.1)
        values: dict[str, Any] = {
            "last_sync_at": finished,
            "last_status": outcome.status,
            "last_error": outcome.error,
            "lease_owner": None,
            "lease_until": None,
            # A "sync now" that arrived while this one ran is kept.
            "next_sync_at": case(
                (CodeHost.next_sync_at > started, CodeHost.next_sync_at),
                else_=finished + timedelta(seconds=interval),
            ),
        }
        if outcome.applied_digest is not None:
            values.update(applied_digest=outcome.applied_digest, applied_at=finished)
        elif outcome.unchanged != outcome.yielded or outcome.error:
            values.update(applied_digest=None, applied_at=None)
        if outcome.status in (SyncStatus.success, SyncStatus.held):
            values["held_deletions"] = json.dumps(outcome.held_ids) if outcome.held_ids else None
        await session.execute(update(CodeHost).where(CodeHost.id == host_id).values(**values))

    async def claim(self, host_id: int, owner: str, *, due_only: bool) -> bool:
        """Take the connection's sync lease (free or expired); `due_only`: only if it is due."""
        at = now()
        conditions = [
            CodeHost.id == host_id,
            or_(CodeHost.lease_until.is_(None), CodeHost.lease_until < at),
        ]
        if due_only:
            conditions.append(CodeHost.next_sync_at <= at)
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(CodeHost)
                .where(*conditions)
                .values(lease_owner=owner, lease_until=at + LEASE)
            )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def sync_now(self, host_id: int) -> SyncOutcome:
        """Sync here and now (the CLI); AlreadyExists if a sync of it is running elsewhere."""
        owner = new_worker_id()
        if not await self.claim(host_id, owner, due_only=False):
            raise AlreadyExists(f"a sync of code host connection {host_id} is running; try later")
        return await self.run_leased(host_id, owner)

    async def run_leased(self, host_id: int, owner: str) -> SyncOutcome:
        """Sync a claimed connection, renewing the lease until the sync records its release."""
        renew = asyncio.create_task(self._renew(host_id, owner))
        try:
            return await self.sync(host_id)
        finally:
            renew.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renew

    async def _renew(self, host_id: int, owner: str) -> None:
        while True:
            await asyncio.sleep(LEASE.total_seconds() / 3)
            async with self._sessions.begin() as session:
                await session.execute(
                    update(CodeHost)
                    .where(CodeHost.id == host_id, CodeHost.lease_owner == owner)
                    .values(lease_until=now() + LEASE)
                )

    async def apply_held(self, host_id: int) -> int:
        """Carry out the deletions a sync held; returns how many repositories were deleted."""
        async with self._sessions.begin() as session:
            raw = await session.scalar(
                select(CodeHost.held_deletions).where(CodeHost.id == host_id)
            )
            held: list[int] = json.loads(raw or "[]")
            deleted = 0
            at = now()
            for batch in chunks(held):
                await session.execute(
                    delete(SOURCES).where(
                        SOURCES.c.code_host_id == host_id, SOURCES.c.repository_id.in_(batch)
                    )
                )
                orphaned = (
                    ~select(SOURCES.c.repository_id)
                    .where(SOURCES.c.repository_id == REPOS.c.id)
                    .exists()
                )
                result = await session.execute(
                    update(REPOS)
                    .where(REPOS.c.id.in_(batch), REPOS.c.deleted_at.is_(None), orphaned)
                    .values(deleted_at=at, updated_at=at)
                )
                deleted += result.rowcount  # type: ignore[attr-defined]
            await session.execute(
                update(CodeHost).where(CodeHost.id == host_id).values(held_deletions=None)
            )
        return deleted


def _elsewhere(repo: SourceRepo, where: Origin, origins: frozenset[Origin]) -> str:
    ours = ", ".join(sorted(str(each) for each in origins))
    return (
        f"{repo.name_with_owner}: its clone URL is on {where}, not on the connection's "
        f"origin ({ours}); skipped: a host's API does not choose what repodepot clones"
    )


def _unexpected(error: Exception) -> str:
    return (
        f"the sync failed unexpectedly ({type(error).__name__}); nothing more was "
        "changed and the next sync retries. The server log has the details"
    )


def listing_digest(connection: Connection, listed: dict[str, SourceRepo]) -> str:
    """A digest of what a listing would write: the connection's config and every repository."""
    digest = hashlib.sha256(connection.fingerprint.encode())
    for external_id in sorted(listed):
        digest.update(repr(listed[external_id]).encode())
    return digest.hexdigest()


class SyncLoop:
    """Syncs each due connection; `wake()` it after a "sync now"; `stop()` it at shutdown."""

    def __init__(
        self,
        syncer: Syncer,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        *,
        owner: str,
        concurrency: int = 4,
    ) -> None:
        self._syncer = syncer
        self._sessions = sessions
        self._settings = settings
        self._owner = owner
        self._concurrency = concurrency
        self._wake = asyncio.Event()
        self._stopping = False
        self._running: dict[int, asyncio.Task[None]] = {}

    @classmethod
    def from_services(cls, services: Services) -> SyncLoop:
        """A loop over an opened set of services."""
        return cls(
            services.codehosts.syncer,
            session_factory(services.worker_engine),
            services.settings,
            owner=new_worker_id(),
        )

    def wake(self) -> None:
        """Look for due connections now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Until stopped: claim due connections and sync them, a few at a time."""
        while not self._stopping:
            try:
                await self._start_due()
            except Exception:  # a database hiccup must not end the loop; it is logged
                logger.exception("sync loop iteration failed", extra={"action": "codehost.loop"})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._settings.sync_poll_interval)
            self._wake.clear()

    async def stop(self) -> None:
        """Stop claiming; cancel running syncs (their leases expire, so they run again)."""
        self._stopping = True
        self._wake.set()
        for task in list(self._running.values()):
            task.cancel()
        for task in list(self._running.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _start_due(self) -> None:
        free = self._concurrency - len(self._running)
        if free <= 0:
            return
        at = now()
        async with self._sessions() as session:
            due = (
                await session.scalars(
                    select(CodeHost.id)
                    .where(
                        CodeHost.next_sync_at <= at,
                        or_(CodeHost.lease_until.is_(None), CodeHost.lease_until < at),
                    )
                    .order_by(CodeHost.next_sync_at)
                    .limit(free)
                )
            ).all()
        for host_id in due:
            if host_id not in self._running and await self._syncer.claim(
                host_id, self._owner, due_only=True
            ):
                task = asyncio.create_task(self._sync(host_id), name=f"codehost-sync-{host_id}")
                self._running[host_id] = task

    async def _sync(self, host_id: int) -> None:
        try:
            await self._syncer.run_leased(host_id, self._owner)
        except Exception:  # recorded nowhere else: log it; the lease expiry retries it
            logger.exception("code host sync crashed", extra={"action": "codehost.sync"})
        finally:
            self._running.pop(host_id, None)
            self._wake.set()
