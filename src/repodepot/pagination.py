"""Pages of results: `page` and `per_page` (at most 100) in, `{items, total, page, per_page}`.

A listing may also continue after a key (`rows`: the listing's statement narrowed to the
keys after it), so a deep page is an index range, not an OFFSET walking every row before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

MAX_PER_PAGE = 100
DEFAULT_PER_PAGE = 30
MAX_PAGE = 1_000_000  # offsets stay far inside the databases' 64-bit integers

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True, slots=True)
class Page(Generic[T]):
    """One page of a listing and the size of the whole listing."""

    items: Sequence[T]
    total: int
    page: int
    per_page: int
    more: bool = False  # rows follow this page


async def paginate(
    session: AsyncSession,
    statement: Select[*tuple[Any, ...]],
    *,
    page: int,
    per_page: int,
    convert: Callable[[Any], T],
    rows: Select[*tuple[Any, ...]] | None = None,
    total: int | None = None,
) -> Page[T]:
    """Run `statement` (or `rows`, a part of it) for one page (1-based); count all of it.

    `total`: the count, known already (kept by the caller); not asked again.
    """
    if total is None:
        total = await session.scalar(
            select(func.count()).select_from(statement.order_by(None).subquery())
        )
    found = (
        await session.execute(
            (statement if rows is None else rows).limit(per_page + 1).offset((page - 1) * per_page)
        )
    ).all()
    return Page(
        items=[convert(row) for row in found[:per_page]],
        total=total or 0,
        page=page,
        per_page=per_page,
        more=len(found) > per_page,
    )
