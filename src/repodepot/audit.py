"""The audit log: who did what to which target, written in the transaction that did it."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from repodepot.db.models import AuditEntry


async def record(
    session: AsyncSession, actor_id: int | None, action: str, target: str, details: dict[str, Any]
) -> None:
    """Add an audit entry to `session`'s transaction (actor 0, the CLI operator, is stored NULL)."""
    await session.execute(
        insert(AuditEntry).values(
            actor_id=actor_id or None,
            action=action,
            target=target,
            details=json.dumps(details, sort_keys=True),
        )
    )
