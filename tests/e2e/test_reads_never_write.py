"""Reads never write, and answer from memory: statements counted at the database driver.

The app runs with the web role only, so no background loop asks the database anything:
every statement counted comes from the requests (or what they start beside them).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from repodepot.db.base import READS
from repodepot.db.models import Visibility
from repodepot.services import Services
from repodepot.settings import Settings
from tests.support.engines import app_engines
from tests.support.members import member
from tests.support.seed import age_mirror, seed_mirror

WRITES = ("INSERT", "UPDATE", "DELETE", "BEGIN", "REPLACE")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"roles": ["web"]})


@dataclass
class Statements:
    """What the database was asked, by statement."""

    seen: list[str] = field(default_factory=list)

    @property
    def writes(self) -> list[str]:
        return [sql for sql in self.seen if sql.lstrip().upper().startswith(WRITES)]


@contextlib.contextmanager
def counted(services: Services) -> Iterator[Statements]:
    """Count the statements sent through the app's two engines, with their SQLite pools."""
    statements = Statements()

    def before(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        statements.seen.append(sql)

    def began(conn: Any) -> None:
        # A transaction's start (PostgreSQL's BEGIN is not a cursor statement); reads
        # run on connections without one, which SQLAlchemy still "begins" for itself.
        if not conn.get_execution_options().get(READS):
            statements.seen.append("BEGIN (transaction)")

    engines = app_engines(services)
    for engine in engines:
        event.listen(engine, "before_cursor_execute", before)
        event.listen(engine, "begin", began)
    try:
        yield statements
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", before)
            event.remove(engine, "begin", began)


async def test_a_thousand_reads_of_a_fresh_repository_write_nothing_and_hardly_ask(
    app_services: Services, client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    await seed_mirror(app_services, "acme/fresh", visibility=Visibility.public)
    headers = await member(client, admin_headers, "dev")
    # The token's first use is recorded (batched: at most once a minute per token).
    assert (await client.get("/api/repos/acme/fresh", headers=headers)).status_code == 200
    await app_services.accounts.flush_uses()

    with counted(app_services) as statements:
        for _ in range(1000):
            answer = await client.get("/api/repos/acme/fresh", headers=headers)
            assert answer.status_code == 200, answer.text
        page = await client.get("/repos/acme/fresh", headers=headers)
        assert page.status_code == 200

    assert statements.writes == []
    # Who calls and which repository it is come from memory; the mirror's state is
    # read again at most once a second, and on SQLite the change counters as often.
    assert len(statements.seen) < 100, statements.seen[:20]
    assert answer.json()["mirror"]["clone_status"] == "cloned"


async def test_the_visit_that_finds_a_stale_mirror_writes_once(
    app_services: Services, client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    record = await seed_mirror(app_services, "acme/stale", visibility=Visibility.public)
    await age_mirror(app_services, record.id, app_services.settings.update_on_visit_after * 2)
    headers = await member(client, admin_headers, "dev")
    assert (await client.get("/api/repos/acme/fresh-none", headers=headers)).status_code == 404

    await app_services.accounts.flush_uses()

    with counted(app_services) as statements:
        first = await client.get("/api/repos/acme/stale", headers=headers)
        rest = [await client.get("/api/repos/acme/stale", headers=headers) for _ in range(50)]
        await app_services.gitserver.visits_queued()

    assert first.status_code == 200 and all(answer.status_code == 200 for answer in rest)
    updates = [sql for sql in statements.writes if sql.lstrip().upper().startswith("UPDATE")]
    assert len(updates) == 1, statements.writes
    assert "gitserver_repos" in updates[0]
    queued = await client.get("/api/repos/acme/stale", headers=headers)
    assert queued.json()["mirror"]["queued"] == "visit"
