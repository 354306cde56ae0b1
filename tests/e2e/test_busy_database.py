"""Reads answer while another process holds SQLite's one write lock.

A read's bookkeeping (a token's last use, a visit's update) waits for the lock, or gives
up past busy_timeout; the read itself never does. SQLite only: PostgreSQL has no
database-wide write lock.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from repodepot.db.models import Visibility
from repodepot.services import Services
from tests.support.members import member
from tests.support.seed import age_mirror, seed_mirror


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"


async def test_a_read_answers_while_another_process_holds_the_write_lock(
    app_services: Services, client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    record = await seed_mirror(app_services, "acme/stale", visibility=Visibility.public)
    await age_mirror(app_services, record.id, app_services.settings.update_on_visit_after * 2)
    headers = await member(client, admin_headers, "dev")
    database = make_url(app_services.settings.sqlalchemy_url).database
    assert database is not None
    holder = sqlite3.connect(database, isolation_level=None, timeout=60)
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
