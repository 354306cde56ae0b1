"""Reads answer while another process holds SQLite's one write lock.

A read's bookkeeping (a token's last use, a visit's update) waits for the lock, or gives
up past busy_timeout; the read itself never does. SQLite only: PostgreSQL has no
database-wide write lock.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.engine import make_url

from repodepot.db.models import GitserverRepo, Visibility
from repodepot.services import Services
from tests.support.members import member
from tests.support.seed import seed_mirror


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"


async def test_a_read_answers_while_another_process_holds_the_write_lock(
    app_services: Services, client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    record = await seed_mirror(app_services, "acme/stale", visibility=Visibility.public)
    old = datetime.now(UTC) - timedelta(seconds=app_services.settings.update_on_visit_after * 2)
    async with app_services.sessions.begin() as session:
        await session.execute(
            update(GitserverRepo)
            .where(GitserverRepo.repository_id == record.id)
            .values(last_fetched_at=old, next_update_at=old + timedelta(days=1))
        )
    headers = await member(client, admin_headers, "dev")
    database = make_url(app_services.settings.sqlalchemy_url).database
    assert database is not None
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process writing, for longer than busy_timeout
    try:
        # The token's first use and a stale mirror's visit both want to write.
        answer = await client.get("/api/repos/acme/stale", headers=headers)
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    assert answer.status_code == 200, answer.text
    assert answer.json()["name"] == "acme/stale"
    # The use was kept and is written once the lock is free.
    await app_services.accounts.flush_uses()
    tokens = await client.get("/api/tokens", params={"user": "dev"}, headers=admin_headers)
    assert [token["last_used_at"] is not None for token in tokens.json()["items"]] == [True]
