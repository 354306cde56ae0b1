"""Pages of results: `page` and `per_page` (at most 100) in, `{items, total, page, per_page}`."""

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


async def paginate(
    session: AsyncSession,
    statement: Select[*tuple[Any, ...]],
    *,
    page: int,
    per_page: int,
    convert: Callable[[Any], T],
) -> Page[T]:
    """Run `statement` for one page (1-based) and count all its rows."""
    total = await session.scalar(
        select(func.count()).select_from(statement.order_by(None).subquery())
    )
    rows = await session.execute(statement.limit(per_page).offset((page - 1) * per_page))
    return Page(
        items=[convert(row) for row in rows], total=total or 0, page=page, per_page=per_page
    )
