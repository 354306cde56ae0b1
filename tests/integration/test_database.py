"""One schema on both databases: migrations, SQLite pragmas, constraints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from repodepot.db import migrate
from repodepot.services import Services


async def test_schema_is_at_the_newest_migration(services: Services) -> None:
    assert await migrate.current_revision(services.engine) == migrate.head_revision()


async def test_migrating_twice_changes_nothing(services: Services) -> None:
    await migrate.upgrade(services.engine)
    assert await migrate.current_revision(services.engine) == migrate.head_revision()


async def test_foreign_keys_are_enforced(services: Services) -> None:
    with pytest.raises(IntegrityError):
        async with services.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO api_tokens (user_id, name, token_hash, prefix) "
                    "VALUES (424242, 'x', 'h', 'p')"
                )
            )


async def test_roles_are_checked_by_the_database(services: Services) -> None:
    with pytest.raises(IntegrityError):
        async with services.engine.begin() as conn:
            await conn.execute(text("INSERT INTO users (name, role) VALUES ('eve', 'root')"))


async def test_sqlite_runs_in_wal_with_the_documented_pragmas(services: Services) -> None:
    if services.engine.dialect.name != "sqlite":
        assert services.engine.dialect.name == "postgresql"
        async with services.engine.connect() as conn:
            version = await conn.scalar(text("SHOW server_version_num"))
        assert int(version) // 10000 == 15
        return
    async with services.engine.connect() as conn:
        assert await conn.scalar(text("PRAGMA journal_mode")) == "wal"
        assert await conn.scalar(text("PRAGMA synchronous")) == 1  # NORMAL
        assert await conn.scalar(text("PRAGMA busy_timeout")) == 30000
        assert await conn.scalar(text("PRAGMA foreign_keys")) == 1


async def test_timestamps_come_back_timezone_aware(services: Services) -> None:
    user = await services.accounts.create_user("tz")
    await services.accounts.create_token("tz")
    tokens = await services.accounts.list_tokens(user_name="tz")
    repo = await services.repositories.create(name="tz/r", owner_id=user.id)
    for stamp in (user.created_at, tokens.items[0].created_at, repo.created_at):
        assert stamp.tzinfo is not None and stamp.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - user.created_at) < timedelta(minutes=5)


async def test_the_migrations_build_exactly_the_models(services: Services) -> None:
    """Hand-written migrations and the models must not drift apart."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from repodepot.db.base import Base

    def same_float(change: Any) -> bool:
        # REAL/FLOAT vs DOUBLE PRECISION: one type on both engines, named two ways.
        first = change[0] if isinstance(change, list) else change
        return first[0] == "modify_type" and all(isinstance(kind, sa.Float) for kind in first[-2:])

    def differences(connection: Any) -> list[Any]:
        context = MigrationContext.configure(connection)
        return [
            change
            for change in compare_metadata(context, Base.metadata)
            if not same_float(change)
            and not (isinstance(change, tuple) and change[1].name == "alembic_version")
        ]

    async with services.engine.connect() as connection:
        found = await connection.run_sync(differences)
    assert [_describe(change) for change in found] == []


def _describe(change: Any) -> str:
    first = change[0] if isinstance(change, list) else change
    return " ".join(str(part) for part in first[:4] if not isinstance(part, dict))
