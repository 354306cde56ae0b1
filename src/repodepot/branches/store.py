"""The owner of `upstream_syncs` and `branch_sync_status`.

`upstream_syncs` is a repository's upstream (where, which branches, a sealed credential
bound to one origin) and its fetch schedule: due rows are leased like the mirror
queue's, so a crash loses nothing. A fetch writes into the upstream copy beside the
mirror, so only the storage node holding the mirror (`gitserver_repos.shard`, read in
the lease's own query) leases it. `branch_sync_status` keeps each tracked pair's two
commits and counts; `record_pairs` writes only rows whose commits moved, and marks
pairs that went away deleted (pruned after 30 days by `prune_deleted`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import (
    Connection,
    Select,
    and_,
    bindparam,
    delete,
    false,
    func,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from repodepot.db import leases
from repodepot.db.base import AnyRow
from repodepot.db.models import BranchSyncStatus, GitserverRepo, UpstreamSync

LEASE = timedelta(minutes=2)
BULK = 1000  # rows changed at once past which SQLite's statistics are refreshed


@dataclass(frozen=True, kw_only=True, slots=True)
class UpstreamRecord:
    """A repository's upstream as configured, and how its fetches go (no credential)."""

    repository_id: int
    generation: int
    """Which configuration this is: a fetch records its outcome only for its own."""
    url: str | None
    upstream_repository_id: int | None
    branches: list[str]
    automatic: bool
    has_token: bool
    interval_seconds: float
    next_fetch_at: datetime
    requested: bool
    last_fetched_at: datetime | None
    last_changed_at: datetime | None
    last_error: str | None
    error_kind: str | None
    failures: int
    fetch_ms: dict[str, int] | None

    @classmethod
    def from_row(cls, row: UpstreamSync | AnyRow) -> UpstreamRecord:
        """Build from a row."""
        parts = (row.network_ms, row.pack_ms, row.refs_ms, row.db_ms)
        return cls(
            repository_id=row.repository_id,
            generation=row.generation,
            url=row.url,
            upstream_repository_id=row.upstream_repository_id,
            branches=json.loads(row.branches),
            automatic=row.automatic,
            has_token=row.sealed_token is not None,
            interval_seconds=row.interval_seconds,
            next_fetch_at=row.next_fetch_at,
            requested=row.requested,
            last_fetched_at=row.last_fetched_at,
            last_changed_at=row.last_changed_at,
            last_error=row.last_error,
            error_kind=row.error_kind,
            failures=row.failures,
            fetch_ms=None
            if parts[0] is None
            else dict(zip(("network", "pack", "refs", "db"), [p or 0 for p in parts], strict=True)),
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Sealed:
    """A sealed credential and the only origin it goes to."""

    username: str
    sealed_token: str
    origin: str


@dataclass(frozen=True, kw_only=True, slots=True)
class PairRow:
    """One tracked pair as computed: both commits (None: that side has no such branch)."""

    branch: str
    upstream_branch: str
    local_sha: str | None
    upstream_sha: str | None
    ahead: int | None
    behind: int | None

    @property
    def missing(self) -> bool:
        """One side has no such branch."""
        return self.local_sha is None or self.upstream_sha is None


@dataclass(frozen=True, kw_only=True, slots=True)
class StatusRow:
    """A row of `branch_sync_status` as callers see it."""

    repository_id: int
    branch: str
    upstream_branch: str
    local_sha: str | None
    upstream_sha: str | None
    ahead: int | None
    behind: int | None
    needs_pull: bool
    needs_push: bool
    diverged: bool
    missing: bool
    computed_at: datetime

    @classmethod
    def from_row(cls, row: BranchSyncStatus | AnyRow) -> StatusRow:
        """Build from a row."""
        return cls(
            repository_id=row.repository_id,
            branch=row.branch,
            upstream_branch=row.upstream_branch,
            local_sha=row.local_sha,
            upstream_sha=row.upstream_sha,
            ahead=row.ahead,
            behind=row.behind,
            needs_pull=row.needs_pull,
            needs_push=row.needs_push,
            diverged=row.diverged,
            missing=row.missing,
            computed_at=row.computed_at,
        )


# The upstream's configuration ----------------------------------------------------------------


# The hot reads of sync status (`Sessions.read`), built once.
_UPSTREAM = select(*UpstreamSync.__table__.c).where(UpstreamSync.repository_id == bindparam("id"))
_PAIRS = (
    select(*BranchSyncStatus.__table__.c)
    .where(BranchSyncStatus.repository_id == bindparam("id"), BranchSyncStatus.deleted_at.is_(None))
    .order_by(BranchSyncStatus.branch, BranchSyncStatus.upstream_branch)
)


def get(connection: Connection, repository_id: int) -> UpstreamRecord | None:
    """The repository's upstream, if it has one (a reader for `Sessions.read`)."""
    row = connection.execute(_UPSTREAM, {"id": repository_id}).one_or_none()
    return None if row is None or row.dismissed else UpstreamRecord.from_row(row)


async def sealed(session: AsyncSession, repository_id: int) -> Sealed | None:
    """The upstream's sealed credential and its origin, if it has one."""
    row = await session.get(UpstreamSync, repository_id)
    if row is None or row.dismissed or row.sealed_token is None or row.token_origin is None:
        return None
    return Sealed(
        username=row.username or "", sealed_token=row.sealed_token, origin=row.token_origin
    )


async def put(
    session: AsyncSession,
    repository_id: int,
    *,
    url: str | None,
    upstream_repository_id: int | None,
    branches: Sequence[str],
    interval_seconds: float,
    credential: Sealed | None,
    keep_credential: bool,
    automatic: bool,
    at: datetime,
) -> None:
    """Set (or replace) the upstream and ask for a fetch now.

    `keep_credential` keeps the stored one when no new one is given and the origin is
    the same (the caller decides). A changed upstream drops the old pairs' rows.
    """
    row = await session.get(UpstreamSync, repository_id)
    values: dict[str, Any] = {
        "url": url,
        "upstream_repository_id": upstream_repository_id,
        "branches": json.dumps(list(branches)),
        "interval_seconds": interval_seconds,
        "automatic": automatic,
        "updated_at": at,
        "next_fetch_at": at,
        "requested": True,
        "failures": 0,
        "dismissed": False,
        "generation": (row.generation if row is not None else 0) + 1,
    }
    if credential is not None:
        values |= {
            "username": credential.username,
            "sealed_token": credential.sealed_token,
            "token_origin": credential.origin,
        }
    elif not keep_credential:
        values |= {"username": None, "sealed_token": None, "token_origin": None}
    if row is None:
        session.add(UpstreamSync(repository_id=repository_id, created_at=at, **values))
    else:
        if (row.url, row.upstream_repository_id) != (url, upstream_repository_id):
            await session.execute(
                delete(BranchSyncStatus).where(BranchSyncStatus.repository_id == repository_id)
            )
            values |= {"last_error": None, "error_kind": None, "last_fetched_at": None}
        for key, value in values.items():
            setattr(row, key, value)
    await session.flush()


async def remove(session: AsyncSession, repository_id: int, at: datetime) -> bool:
    """Forget the upstream and its pairs; False when there was none.

    An automatic upstream (a fork's parent) is remembered as dismissed instead, so the
    next code host sync does not set it again; setting one by hand undoes that.
    """
    await session.execute(
        delete(BranchSyncStatus).where(BranchSyncStatus.repository_id == repository_id)
    )
    row = await session.get(UpstreamSync, repository_id)
    if row is None or row.dismissed:
        return False
    if not row.automatic:
        await session.delete(row)
        await session.flush()
        return True
    for key, value in {
        "dismissed": True,
        "url": None,
        "upstream_repository_id": None,
        "username": None,
        "sealed_token": None,
        "token_origin": None,
        "requested": False,
        "last_error": None,
        "error_kind": None,
        "updated_at": at,
    }.items():
        setattr(row, key, value)
    await session.flush()
    return True


async def request(
    session: AsyncSession, repository_id: int, at: datetime, *, min_gap: float
) -> bool:
    """Ask for a fetch now, or `min_gap` seconds after the last one ended if that is later.

    False when the repository has no upstream.
    """
    row = await session.get(UpstreamSync, repository_id)
    if row is None or row.dismissed:
        return False
    due = at
    if row.last_attempt_at is not None:  # failed or not: a failing upstream is no cheaper
        due = max(at, row.last_attempt_at + timedelta(seconds=min_gap))
    row.requested = True
    row.next_fetch_at = min(row.next_fetch_at, due)
    await session.flush()
    return True


async def request_dependents(session: AsyncSession, repository_id: int, at: datetime) -> int:
    """Ask for a fetch of every upstream that is repository `repository_id`."""
    result = await session.execute(
        update(UpstreamSync)
        .where(
            UpstreamSync.upstream_repository_id == repository_id,
            UpstreamSync.dismissed == false(),
        )
        .values(requested=True, next_fetch_at=at)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Kept:
    """What a repository's upstream row says, for an automatic setter."""

    automatic: bool
    dismissed: bool
    upstream_repository_id: int | None


async def kept_of(session: AsyncSession, ids: Sequence[int]) -> dict[int, Kept]:
    """The upstream rows of `ids` that exist, in one query."""
    u = UpstreamSync
    rows = await session.execute(
        select(u.repository_id, u.automatic, u.dismissed, u.upstream_repository_id).where(
            u.repository_id.in_(list(ids))
        )
    )
    return {
        row.repository_id: Kept(row.automatic, row.dismissed, row.upstream_repository_id)
        for row in rows
    }


# The fetch schedule ---------------------------------------------------------------------------


def _lease_free(at: datetime) -> Any:
    return or_(UpstreamSync.lease_until.is_(None), UpstreamSync.lease_until < at)


async def next_due(session: AsyncSession, at: datetime, owner: str, node: str) -> datetime | None:
    """When an upstream fetch `owner` (on storage node `node`) could claim is next due.

    None when there is none. A fetch another fetcher holds counts from the end of its lease.
    """
    u = UpstreamSync
    row = (
        await session.execute(
            select(
                func.min(u.next_fetch_at).filter(u.dismissed == false(), _lease_free(at)),
                func.min(u.lease_until).filter(
                    u.dismissed == false(), u.lease_until >= at, u.lease_owner != owner
                ),
            ).where(_on_node(node))
        )
    ).one()
    times = [when for when in row if when is not None]
    return min(times) if times else None


def _on_node(node: str) -> Any:
    """The upstream's repository has its mirror on storage node `node` (none yet: nowhere)."""
    g = GitserverRepo
    return (
        select(g.repository_id)
        .where(g.repository_id == UpstreamSync.repository_id, g.shard == node)
        .exists()
    )


async def claim(
    session: AsyncSession,
    owner: str,
    slots: int,
    at: datetime,
    *,
    busy: dict[str, int],
    per_host: int,
    node: str | None = None,
) -> list[tuple[int, str]]:
    """Lease up to `slots` due upstreams: asked for first, then by due time.

    Only those whose mirror is on storage node `node` when one is named (None: any).
    Hosts with `per_host` fetches running (`busy`, then these) are skipped. Returns
    (repository id, host) pairs; an upstream that is a repository here is host `local`.
    """
    u = UpstreamSync
    rows = await session.execute(
        select(u.repository_id, u.url)
        .where(u.next_fetch_at <= at, u.dismissed == false(), _lease_free(at))
        .where(true() if node is None else _on_node(node))
        .order_by(u.requested.desc(), u.next_fetch_at)
        .limit(slots * 4)
    )
    taken: list[tuple[int, str]] = []
    counts = dict(busy)
    for repository_id, url in rows:
        host = (urlsplit(url).hostname or "") if url else "local"
        if len(taken) >= slots or counts.get(host, 0) >= per_host:
            continue
        claimed = await session.execute(
            update(u)
            .where(u.repository_id == repository_id, _lease_free(at))
            .values(lease_owner=owner, lease_until=at + LEASE, requested=False)
        )
        if claimed.rowcount == 1:  # type: ignore[attr-defined]
            taken.append((repository_id, host))
            counts[host] = counts.get(host, 0) + 1
    return taken


async def claim_one(
    session: AsyncSession, owner: str, repository_id: int, at: datetime, node: str
) -> bool:
    """Lease repository `repository_id`'s upstream whether due or not.

    False when leased, or when its mirror is not on storage node `node` (`mirror_node`).
    """
    u = UpstreamSync
    claimed = await session.execute(
        update(u)
        .where(u.repository_id == repository_id, _lease_free(at), _on_node(node))
        .values(lease_owner=owner, lease_until=at + LEASE, requested=False)
    )
    return bool(claimed.rowcount == 1)  # type: ignore[attr-defined]


async def mirror_node(session: AsyncSession, repository_id: int) -> str | None:
    """The storage node holding the repository's mirror; None before it has one."""
    return await session.scalar(
        select(GitserverRepo.shard).where(GitserverRepo.repository_id == repository_id)
    )


async def renew(session: AsyncSession, owner: str, repository_id: int, at: datetime) -> None:
    """Keep a lease alive."""
    await session.execute(
        update(UpstreamSync)
        .where(UpstreamSync.repository_id == repository_id, UpstreamSync.lease_owner == owner)
        .values(lease_until=at + LEASE)
    )


async def release_dead(session: AsyncSession, at: datetime) -> int:
    """Free the leases of processes on this host that died."""
    return await leases.release_dead(session, UpstreamSync, at)


async def finish(
    session: AsyncSession,
    repository_id: int,
    owner: str,
    *,
    at: datetime,
    next_at: datetime,
    changed: bool,
    error: tuple[str, str] | None,
    fetch_ms: dict[str, int] | None,
    min_gap: float,
    generation: int,
) -> None:
    """Record a fetch's outcome and the next one's time, and free the lease.

    A "fetch now" asked for while it ran stays asked for, due `min_gap` seconds on. A
    fetch of a configuration changed meanwhile (`generation`) records nothing: the new
    one is due already.
    """
    u = UpstreamSync
    await session.execute(
        update(u)
        .where(u.repository_id == repository_id, u.lease_owner == owner, u.generation != generation)
        .values(lease_owner=None, lease_until=None)
    )
    values: dict[str, Any] = {
        "lease_owner": None,
        "lease_until": None,
        "next_fetch_at": next_at,
        "last_attempt_at": at,
    }
    if error is None:
        values |= {"last_fetched_at": at, "last_error": None, "error_kind": None, "failures": 0}
        if changed:
            values["last_changed_at"] = at
    else:
        values |= {"error_kind": error[0], "last_error": error[1], "failures": u.failures + 1}
    if fetch_ms is not None:
        values |= {
            "network_ms": fetch_ms["network"],
            "pack_ms": fetch_ms["pack"],
            "refs_ms": fetch_ms["refs"],
            "db_ms": fetch_ms["db"],
        }
    await session.execute(
        update(u)
        .where(u.repository_id == repository_id, u.lease_owner == owner, u.generation == generation)
        .values(values)
    )
    # Asked for while it ran: due again soon, not at once (no back-to-back fetches).
    await session.execute(
        update(u)
        .where(u.repository_id == repository_id, u.requested == true())
        .values(next_fetch_at=at + timedelta(seconds=min_gap))
    )


# The pairs -----------------------------------------------------------------------------------


def rows(connection: Connection, repository_id: int) -> list[StatusRow]:
    """The repository's live pairs, by branch (a reader for `Sessions.read`)."""
    found = connection.execute(_PAIRS, {"id": repository_id})
    return [StatusRow.from_row(row) for row in found]


async def record_pairs(
    session: AsyncSession,
    repository_id: int,
    pairs: Sequence[PairRow],
    at: datetime,
    *,
    generation: int,
) -> int:
    """Make the repository's rows say `pairs`; returns how many rows were written.

    A row whose commits did not move is left alone (its counts cannot have changed);
    a pair no longer tracked or present on either side is marked deleted. Nothing is
    written when the upstream was removed or changed (`generation`) since they were
    computed.
    """
    # Locked (PostgreSQL): a removal or change waits for this write, or this one sees it.
    config = await session.scalar(
        select(UpstreamSync).where(UpstreamSync.repository_id == repository_id).with_for_update()
    )
    if config is None or config.dismissed or config.generation != generation:
        return 0
    b = BranchSyncStatus
    kept = {
        (row.branch, row.upstream_branch): row
        for row in await session.scalars(select(b).where(b.repository_id == repository_id))
    }
    written = 0
    for pair in pairs:
        values = {
            "local_sha": pair.local_sha,
            "upstream_sha": pair.upstream_sha,
            "ahead": pair.ahead,
            "behind": pair.behind,
            "needs_pull": bool(pair.behind),
            "needs_push": bool(pair.ahead),
            "diverged": bool(pair.ahead) and bool(pair.behind),
            "missing": pair.missing,
        }
        row = kept.pop((pair.branch, pair.upstream_branch), None)
        if row is None:
            session.add(
                b(
                    repository_id=repository_id,
                    branch=pair.branch,
                    upstream_branch=pair.upstream_branch,
                    computed_at=at,
                    **values,
                )
            )
            written += 1
        elif row.deleted_at is not None or any(
            getattr(row, key) != value for key, value in values.items()
        ):
            for key, value in values.items():
                setattr(row, key, value)
            row.computed_at = at
            row.deleted_at = None
            written += 1
    gone = [row.id for row in kept.values() if row.deleted_at is None]
    if gone:
        await session.execute(update(b).where(b.id.in_(gone)).values(deleted_at=at))
        written += len(gone)
    await session.flush()
    if written >= BULK and session.get_bind().dialect.name == "sqlite":
        await session.execute(text("PRAGMA optimize"))
    return written


def known_pairs(connection: Connection, repository_id: int) -> list[StatusRow]:
    """The live pairs with both commits and counts (to warm the pair cache)."""
    return [
        row
        for row in rows(connection, repository_id)
        if row.ahead is not None and row.behind is not None
    ]


def org_query(
    readable: Select[Any],
    *,
    needs_pull: bool | None,
    needs_push: bool | None,
    diverged: bool | None,
) -> Select[Any]:
    """Live pairs of the repositories `readable` (a SELECT of ids) matching the filters."""
    b = BranchSyncStatus
    conditions: list[Any] = [b.deleted_at.is_(None), b.repository_id.in_(readable)]
    for column, wanted in (
        (b.needs_pull, needs_pull),
        (b.needs_push, needs_push),
        (b.diverged, diverged),
    ):
        if wanted is not None:
            conditions.append(column == (true() if wanted else false()))
    return select(b).where(and_(*conditions))


async def failing_of(session: AsyncSession, ids: Sequence[int]) -> set[int]:
    """Those of `ids` whose upstream's last fetch failed."""
    found = await session.scalars(
        select(UpstreamSync.repository_id).where(
            UpstreamSync.repository_id.in_(list(ids)), UpstreamSync.last_error.is_not(None)
        )
    )
    return set(found)


async def org_page(
    session: AsyncSession, query: Select[Any], *, page: int, per_page: int
) -> tuple[list[StatusRow], int]:
    """One page of `query` (from `org_query`), by repository and branch, and the total."""
    total = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
    b = BranchSyncStatus
    found = await session.scalars(
        query.order_by(b.repository_id, b.branch, b.upstream_branch)
        .limit(per_page)
        .offset((page - 1) * per_page)
    )
    return [StatusRow.from_row(row) for row in found], total


async def prune_deleted(session: AsyncSession, before: datetime) -> int:
    """Remove pairs marked deleted before `before`; returns how many.

    After a bulk removal SQLite's planner statistics are refreshed (`PRAGMA optimize`,
    which runs ANALYZE only where it would change plans).
    """
    result = await session.execute(
        delete(BranchSyncStatus).where(BranchSyncStatus.deleted_at < before)
    )
    removed = int(result.rowcount or 0)  # type: ignore[attr-defined]
    if removed >= BULK and session.get_bind().dialect.name == "sqlite":
        await session.execute(text("PRAGMA optimize"))
    return removed
