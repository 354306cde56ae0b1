"""Leases in a table's `lease_owner`/`lease_until` columns, freed when their holder died.

The table's owner module calls `release_dead` with its model: this module names no
table itself.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from repodepot.loops import died_here


async def release_dead(session: AsyncSession, model: Any, at: datetime, *where: Any) -> int:
    """Free the live leases of `model`'s rows (matching `where`) whose holder died here.

    A holder is dead when `loops.died_here` says so (this host, its pid gone); a lease
    of another host's process is left to expire. Returns how many rows were freed.
    """
    owners = await session.scalars(
        select(model.lease_owner).where(model.lease_until > at, *where).distinct()
    )
    dead = [owner for owner in owners if died_here(owner)]
    if not dead:
        return 0
    result = await session.execute(
        update(model).where(model.lease_owner.in_(dead)).values(lease_owner=None, lease_until=None)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
