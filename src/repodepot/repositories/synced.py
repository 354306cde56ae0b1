"""The statements a code host sync applies to `repositories`, in the sync's own session.

A sync is one transaction: the code host package lists, plans, then calls these with
its session, so that the repositories, their links to connections and their mirrors'
queue change together or not at all. Every statement is batched (`chunks`, executemany):
a sync of 20,000 repositories costs tens of statements, not thousands.

A sync owns the columns in `Fields` and the external identity; it never writes what
the mirror says of a repository (`default_branch`, `size_bytes`, `is_empty`): those come
from the mirror after each clone or fetch (`record_mirror`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, Select, Table, bindparam, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from repodepot.batches import chunks
from repodepot.db.models import Repository, Visibility

_REPOS = cast(Table, Repository.__table__)
# Rows per INSERT: each carries eleven values, well under the parameter limits.
_INSERTS = 1000


@dataclass(frozen=True, kw_only=True, slots=True)
class Fields:
    """The columns a sync owns; a row is unchanged when all of them are equal."""

    name: str
    description: str
    visibility: Visibility
    fork: bool
    archived: bool
    source_url: str | None
    go_default_root: str | None


_FIELDS = tuple(Fields.__dataclass_fields__)


@dataclass(frozen=True, kw_only=True, slots=True)
class SyncedRow:
    """A repository as a sync sees it: its host identity, its state and its `Fields`."""

    id: int
    external_kind: str | None
    external_host: str | None
    external_id: str | None
    deleted_at: datetime | None
    fields: Fields

    @classmethod
    def from_row(cls, row: Row[Any]) -> SyncedRow:
        """Build from a row of `_COLUMNS`."""
        return cls(
            id=row.id,
            external_kind=row.external_kind,
            external_host=row.external_host,
            external_id=row.external_id,
            deleted_at=row.deleted_at,
            fields=Fields(**{name: row._mapping[name] for name in _FIELDS}),
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class NewRow:
    """A repository a sync inserts: the host's id for it, and its fields."""

    external_kind: str
    external_host: str
    external_id: str
    fields: Fields


@dataclass(frozen=True, kw_only=True, slots=True)
class Change:
    """New fields for row `id`; a soft-deleted row is restored by it."""

    id: int
    fields: Fields


@dataclass(frozen=True, kw_only=True, slots=True)
class Holder:
    """The repository that has a name a sync wants."""

    id: int
    name: str
    deleted: bool


_COLUMNS = (
    _REPOS.c.id,
    _REPOS.c.external_kind,
    _REPOS.c.external_host,
    _REPOS.c.external_id,
    _REPOS.c.deleted_at,
    *(_REPOS.c[name] for name in _FIELDS),
)


def _values(fields: Fields) -> dict[str, Any]:
    return {name: getattr(fields, name) for name in _FIELDS}


def _of_connection(kind: str, host: str, linked: Select[tuple[int]]) -> Any:
    ours = (_REPOS.c.external_kind == kind) & (_REPOS.c.external_host == host)
    return or_(ours, _REPOS.c.id.in_(linked))


def ids_of_connection(kind: str, host: str, linked: Select[tuple[int]]) -> Select[tuple[int]]:
    """The ids `rows_of_connection` reads, as a subquery for the caller's own statement."""
    return select(_REPOS.c.id).where(_of_connection(kind, host, linked))


async def rows_of_connection(
    session: AsyncSession, *, kind: str, host: str, linked: Select[tuple[int]]
) -> list[SyncedRow]:
    """The rows one connection's sync diffs, live or soft-deleted.

    The host's (`kind`, `host`), and those whose ids `linked` selects (the connection's
    links, a subquery from their owner).
    """
    statement = select(*_COLUMNS).where(_of_connection(kind, host, linked))
    return [SyncedRow.from_row(row) for row in await session.execute(statement)]


async def live_ids_of(
    session: AsyncSession, *, kind: str, host: str, external_ids: Sequence[str]
) -> dict[str, int]:
    """The live repositories a host (`kind`, `host`) knows by one of `external_ids`: id by it."""
    found: dict[str, int] = {}
    for batch in chunks(sorted(set(external_ids))):
        rows = await session.execute(
            select(_REPOS.c.external_id, _REPOS.c.id).where(
                _REPOS.c.external_kind == kind,
                _REPOS.c.external_host == host,
                _REPOS.c.external_id.in_(batch),
                _REPOS.c.deleted_at.is_(None),
            )
        )
        found.update({external_id: key for external_id, key in rows})
    return found


async def holders_of(session: AsyncSession, names: Sequence[str]) -> list[Holder]:
    """The repositories, live or soft-deleted, that have one of `names`."""
    found: list[Holder] = []
    for batch in chunks(names):
        rows = await session.execute(
            select(_REPOS.c.id, _REPOS.c.name, _REPOS.c.deleted_at).where(_REPOS.c.name.in_(batch))
        )
        found.extend(Holder(id=key, name=name, deleted=at is not None) for key, name, at in rows)
    return found


async def count_live(session: AsyncSession) -> int:
    """How many repositories are live (not soft-deleted), from every source."""
    live = await session.scalar(
        select(func.count()).select_from(_REPOS).where(_REPOS.c.deleted_at.is_(None))
    )
    return live or 0


async def count_live_among(session: AsyncSession, ids: Select[tuple[int]]) -> int:
    """How many of the repositories whose ids `ids` selects are live."""
    live = await session.scalar(
        select(func.count())
        .select_from(_REPOS)
        .where(_REPOS.c.id.in_(ids), _REPOS.c.deleted_at.is_(None))
    )
    return live or 0


async def apply(
    session: AsyncSession,
    *,
    renames: Mapping[int, str],
    changes: Sequence[Change],
    inserts: Sequence[NewRow],
    deletes: Sequence[int],
    at: datetime,
) -> dict[str, int]:
    """Write a sync's plan; returns the new rows' ids by external id.

    In this order, so that no statement meets a name still held: `renames` (temporary
    or final names that free the names others take), `changes` (which also restore a
    soft-deleted row), `inserts`, then the soft deletion of `deletes`.
    """
    if renames:
        await session.execute(
            update(_REPOS).where(_REPOS.c.id == bindparam("b_id")).values(name=bindparam("b_name")),
            [{"b_id": key, "b_name": name} for key, name in renames.items()],
        )
    if changes:
        await session.execute(
            update(_REPOS)
            .where(_REPOS.c.id == bindparam("b_id"))
            .values(deleted_at=None, updated_at=at),
            [{"b_id": change.id, **_values(change.fields)} for change in changes],
        )
    created: dict[str, int] = {}
    for batch in chunks(inserts, _INSERTS):
        rows = await session.execute(
            insert(_REPOS).returning(_REPOS.c.id, _REPOS.c.external_id),
            [
                {
                    **_values(new.fields),
                    "external_kind": new.external_kind,
                    "external_host": new.external_host,
                    "external_id": new.external_id,
                }
                for new in batch
            ],
        )
        created.update({external_id: key for key, external_id in rows})
    await soft_delete(session, deletes, at)
    return created


async def soft_delete(session: AsyncSession, ids: Sequence[int], at: datetime) -> int:
    """Soft-delete the live repositories among `ids`; returns how many were live.

    The caller decides that nothing yields them any more (a sync, a connection removed).
    """
    deleted = 0
    for batch in chunks(ids):
        result = await session.execute(
            update(_REPOS)
            .where(_REPOS.c.id.in_(batch), _REPOS.c.deleted_at.is_(None))
            .values(deleted_at=at, updated_at=at)
        )
        deleted += result.rowcount  # type: ignore[attr-defined]
    return deleted
