"""The SQL of a sync: `code_hosts`, `code_host_syncs` and `repo_sources`, in the caller's session.

The code host package owns those three tables; this module is where a sync reads and
writes them: the connection, its lease, its history and its links. What a sync does to
`repositories` goes through their owner (`repositories.synced`), and the mirrors of the
repositories it creates or restores are queued through the mirror queue's
(`gitserver.service.enqueue_in`), in the same session: one sync, one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    Select,
    Table,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from repodepot.batches import chunks
from repodepot.codehosts.config import parse_config
from repodepot.codehosts.outcome import SyncOutcome
from repodepot.codehosts.planner import Connection, Plan, Snapshot
from repodepot.db import leases
from repodepot.db.models import CodeHost, CodeHostSync, RepoSource, SyncStatus
from repodepot.exceptions import InvalidInput
from repodepot.gitserver.schedule import QueueReason
from repodepot.gitserver.service import Placement, enqueue_in
from repodepot.repositories import synced
from repodepot.secrets import SecretBox

_SOURCES = cast(Table, RepoSource.__table__)


async def load(session: AsyncSession, host_id: int, box: SecretBox) -> Connection:
    """The connection with its token opened.

    Raises InvalidInput when there is no such connection or its config is stale,
    SecretUnreadable when its token cannot be opened.
    """
    row = await session.get(CodeHost, host_id)
    if row is None:
        raise InvalidInput(f"no code host connection {host_id}")
    config, _ = parse_config(row.kind, json.loads(row.config))
    return Connection(
        id=row.id,
        kind=row.kind,
        name=row.name,
        config=config,
        token=box.open(row.sealed_token) if row.sealed_token else None,
        applied_digest=row.applied_digest,
        applied_at=row.applied_at,
    )


def linked_ids(host_id: int) -> Select[tuple[int]]:
    """The ids of the repositories connection `host_id` yields, as a subquery."""
    return select(_SOURCES.c.repository_id).where(_SOURCES.c.code_host_id == host_id)


async def linked(session: AsyncSession, host_id: int) -> list[int]:
    """The ids of the repositories connection `host_id` yields."""
    return list(await session.scalars(linked_ids(host_id)))


async def linked_among(session: AsyncSession, host_id: int, ids: Sequence[int]) -> set[int]:
    """Those of `ids` that connection `host_id` yields (a batch at a time)."""
    found: set[int] = set()
    for batch in chunks(sorted(ids)):
        found.update(
            await session.scalars(linked_ids(host_id).where(_SOURCES.c.repository_id.in_(batch)))
        )
    return found


async def snapshot(session: AsyncSession, connection: Connection) -> Snapshot:
    """The rows a sync of `connection` diffs, their links and the peers naming them."""
    kind, host = connection.identity
    mine = linked_ids(connection.id)
    rows = await synced.rows_of_connection(session, kind=kind, host=host, linked=mine)
    links: dict[int, dict[int, str]] = {}
    if rows:
        statement = select(
            _SOURCES.c.repository_id, _SOURCES.c.code_host_id, _SOURCES.c.clone_url
        ).where(_SOURCES.c.repository_id.in_(synced.ids_of_connection(kind, host, mine)))
        for repository_id, code_host_id, clone_url in await session.execute(statement):
            links.setdefault(repository_id, {})[code_host_id] = clone_url
    return Snapshot(rows=rows, links=links, peers=await _peers(session, connection, links))


async def _peers(
    session: AsyncSession, connection: Connection, links: dict[int, dict[int, str]]
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


async def write(
    session: AsyncSession,
    connection: Connection,
    plan: Plan,
    *,
    at: datetime,
    shard: str | Placement,
) -> None:
    """Apply `plan`: the repositories, their links, and a queued mirror for each new one."""
    created = await synced.apply(
        session,
        renames=plan.renames,
        changes=plan.changes,
        inserts=plan.inserts,
        deletes=plan.deletes,
        at=at,
    )
    new_links = [
        {
            "repository_id": link.repository_id,
            "code_host_id": connection.id,
            "clone_url": link.clone_url,
        }
        for link in plan.new_links
    ]
    new_links.extend(
        {
            "repository_id": created[new.external_id],
            "code_host_id": connection.id,
            "clone_url": new.fields.source_url,
        }
        for new in plan.inserts
    )
    if new_links:
        await session.execute(insert(_SOURCES), new_links)
    if plan.moved_links:
        await session.execute(
            update(_SOURCES)
            .where(
                _SOURCES.c.repository_id == bindparam("b_id"),
                _SOURCES.c.code_host_id == connection.id,
            )
            .values(clone_url=bindparam("b_url")),
            [{"b_id": link.repository_id, "b_url": link.clone_url} for link in plan.moved_links],
        )
    await _unlink(session, connection.id, plan.unlinks)
    for batch in chunks([*created.values(), *plan.restores], 1000):
        await enqueue_in(session, batch, QueueReason.new, shard=shard)


async def _unlink(session: AsyncSession, host_id: int, ids: Sequence[int]) -> None:
    for batch in chunks(ids):
        await session.execute(
            delete(_SOURCES).where(
                _SOURCES.c.code_host_id == host_id, _SOURCES.c.repository_id.in_(batch)
            )
        )


async def release(session: AsyncSession, host_id: int, ids: Sequence[int], at: datetime) -> int:
    """Unlink `ids` from connection `host_id` and soft-delete those nothing else yields.

    Returns how many live repositories were deleted.
    """
    await _unlink(session, host_id, ids)
    deleted = 0
    for batch in chunks(ids):
        kept = set(
            await session.scalars(
                select(_SOURCES.c.repository_id).where(_SOURCES.c.repository_id.in_(batch))
            )
        )
        orphaned = [key for key in batch if key not in kept]
        deleted += await synced.soft_delete(session, orphaned, at)
    return deleted


async def apply_held(session: AsyncSession, host_id: int, at: datetime) -> int:
    """Carry out the deletions a sync held; returns how many repositories were deleted."""
    raw = await session.scalar(select(CodeHost.held_deletions).where(CodeHost.id == host_id))
    held: list[int] = json.loads(raw or "[]")
    deleted = await release(session, host_id, held, at)
    await session.execute(
        update(CodeHost).where(CodeHost.id == host_id).values(held_deletions=None)
    )
    return deleted


async def record(
    session: AsyncSession,
    host_id: int,
    outcome: SyncOutcome,
    *,
    started: datetime,
    finished: datetime,
    next_in: timedelta,
) -> None:
    """The history row, and the connection's last sync, lease release and next time."""
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
    values: dict[str, Any] = {
        "last_sync_at": finished,
        "last_status": outcome.status,
        "last_error": outcome.error,
        "lease_owner": None,
        "lease_until": None,
        # A "sync now" that arrived while this one ran is kept.
        "next_sync_at": case(
            (CodeHost.next_sync_at > started, CodeHost.next_sync_at), else_=finished + next_in
        ),
    }
    if outcome.applied_digest is not None:
        values.update(applied_digest=outcome.applied_digest, applied_at=finished)
    elif outcome.unchanged != outcome.yielded or outcome.error:
        values.update(applied_digest=None, applied_at=None)
    if outcome.status in (SyncStatus.success, SyncStatus.held):
        values["held_deletions"] = json.dumps(outcome.held_ids) if outcome.held_ids else None
    await session.execute(update(CodeHost).where(CodeHost.id == host_id).values(**values))


def _free(at: datetime) -> Any:
    return or_(CodeHost.lease_until.is_(None), CodeHost.lease_until < at)


async def next_due(session: AsyncSession, at: datetime) -> datetime | None:
    """When a connection is next due (a leased one: when its lease ends); None: none."""
    row = (
        await session.execute(
            select(
                func.min(CodeHost.next_sync_at).filter(_free(at)),
                func.min(CodeHost.lease_until).filter(CodeHost.lease_until >= at),
            )
        )
    ).one()
    times = [when for when in row if when is not None]
    return min(times) if times else None


async def claim(
    session: AsyncSession,
    host_id: int,
    owner: str,
    *,
    at: datetime,
    lease: timedelta,
    due_only: bool,
) -> bool:
    """Take the connection's sync lease if it is free or expired (and due, if `due_only`)."""
    conditions = [CodeHost.id == host_id, _free(at)]
    if due_only:
        conditions.append(CodeHost.next_sync_at <= at)
    result = await session.execute(
        update(CodeHost).where(*conditions).values(lease_owner=owner, lease_until=at + lease)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def release_dead(session: AsyncSession, at: datetime) -> int:
    """Free the sync leases held by processes that died on this host."""
    return await leases.release_dead(session, CodeHost, at)


async def renew(session: AsyncSession, host_id: int, owner: str, *, until: datetime) -> None:
    """Extend `owner`'s lease on the connection, if it still holds it."""
    await session.execute(
        update(CodeHost)
        .where(CodeHost.id == host_id, CodeHost.lease_owner == owner)
        .values(lease_until=until)
    )


async def due(session: AsyncSession, at: datetime, limit: int) -> list[int]:
    """Up to `limit` connections due at `at` and not leased, the longest due first."""
    rows = await session.scalars(
        select(CodeHost.id)
        .where(CodeHost.next_sync_at <= at, _free(at))
        .order_by(CodeHost.next_sync_at)
        .limit(limit)
    )
    return list(rows)
