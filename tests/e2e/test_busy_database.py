"""Reads answer while another process holds SQLite's one write lock.

A read's bookkeeping (a token's last use, a visit's update) runs beside it and waits for
the lock; the read itself never does. SQLite only: PostgreSQL has no database-wide
write lock.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from repodepot.db.models import Visibility
from repodepot.services import Services
from repodepot.settings import Settings
from tests.support.eventually import eventually
from tests.support.members import member
from tests.support.seed import age_mirror, seed_mirror


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # The web role alone: no updater takes the queued mirror before the test looks.
    return settings.model_copy(update={"roles": ["web"]})


def _begin(connection: sqlite3.Connection) -> bool:
    # In WAL mode SQLite answers "locked" at once, without waiting, in some states (a
    # checkpoint or the app's own start-up writes under way): ask again.
    try:
        connection.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError:
        return False
    return True


async def test_a_read_answers_while_another_process_holds_the_write_lock(
    app_services: Services, client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    record = await seed_mirror(app_services, "acme/stale", visibility=Visibility.public)
    await age_mirror(app_services, record.id, app_services.settings.update_on_visit_after * 2)
    headers = await member(client, admin_headers, "dev")
    database = make_url(app_services.settings.sqlalchemy_url).database
    assert database is not None
    # No waiting inside sqlite3 (it would stop this event loop, and the app in it).
    holder = sqlite3.connect(database, isolation_level=None, timeout=0)
    await eventually(lambda: _begin(holder), timeout=30)  # another process, writing
    try:
        # The token's first use and a stale mirror's visit both want to write.
        answer = await client.get("/api/repos/acme/stale", headers=headers)
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    assert answer.status_code == 200, answer.text
    assert answer.json()["name"] == "acme/stale"
    # Both are written once the lock is free.
    await app_services.accounts.flush_uses()
    await app_services.gitserver.visits_queued()
    queued = await client.get("/api/repos/acme/stale", headers=headers)
    assert queued.json()["mirror"]["queued"] == "visit"
    tokens = await client.get("/api/tokens", params={"user": "dev"}, headers=admin_headers)
    assert [token["last_used_at"] is not None for token in tokens.json()["items"]] == [True]
