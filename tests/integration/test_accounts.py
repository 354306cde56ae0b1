"""Users, tokens and the bootstrap admin, on both databases."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, text

from repodepot.accounts import Accounts, hash_token
from repodepot.db.base import write_engine
from repodepot.db.models import Role
from repodepot.exceptions import AlreadyExists, ConfigurationError, InvalidInput, NotAuthenticated
from repodepot.services import Services


async def _dump(services: Services) -> str:
    async with services.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT * FROM api_tokens"))).all()
        users = (await conn.execute(text("SELECT * FROM users"))).all()
    return repr(rows) + repr(users)


async def test_first_start_creates_an_admin_with_a_one_time_token(services: Services) -> None:
    token = await services.accounts.bootstrap_admin(None)
    assert token is not None and token.startswith("rdp_")
    caller = await services.accounts.authenticate(token)
    assert caller.user.name == "admin" and caller.is_admin
    assert await services.accounts.bootstrap_admin(None) is None  # only on an empty database
    assert token not in await _dump(services)


async def test_bootstrap_uses_the_configured_admin_token(services: Services) -> None:
    configured = "my-configured-admin-token-123"
    assert await services.accounts.bootstrap_admin(configured) is None
    assert (await services.accounts.authenticate(configured)).is_admin
    assert configured not in await _dump(services)


async def test_a_short_admin_token_is_refused(services: Services) -> None:
    with pytest.raises(ConfigurationError, match="REPODEPOT_ADMIN_TOKEN"):
        await services.accounts.bootstrap_admin("short")


async def test_tokens_are_stored_only_hashed(services: Services) -> None:
    await services.accounts.create_user("alice")
    record, token = await services.accounts.create_token("alice", "laptop")
    dump = await _dump(services)
    assert token not in dump
    assert hash_token(token) in dump
    assert record.prefix == token[:8] and record.user_name == "alice"


async def test_revoked_and_unknown_tokens_do_not_authenticate(services: Services) -> None:
    accounts: Accounts = services.accounts
    await accounts.create_user("bob")
    record, token = await accounts.create_token("bob")
    assert (await accounts.authenticate(token)).user.name == "bob"
    await accounts.revoke_token(record.id)
    await accounts.revoke_token(record.id)  # idempotent
    with pytest.raises(NotAuthenticated):
        await accounts.authenticate(token)
    with pytest.raises(NotAuthenticated):
        await accounts.authenticate("rdp_" + "x" * 43)


async def test_authentication_records_last_use(services: Services) -> None:
    await services.accounts.create_user("carol")
    _, token = await services.accounts.create_token("carol")
    await services.accounts.authenticate(token)
    await services.accounts.flush_uses()  # written beside the request, not in its way
    listed = await services.accounts.list_tokens(user_name="carol")
    assert listed.items[0].last_used_at is not None


async def test_many_tokens_last_uses_are_written_together(services: Services) -> None:
    tokens = []
    for n in range(30):
        await services.accounts.create_user(f"user{n}")
        tokens.append((await services.accounts.create_token(f"user{n}"))[1])
    rows: list[int] = []  # per UPDATE statement sent, the tokens it wrote

    def seen(_conn: Any, _cursor: Any, sql: str, params: Any, _context: Any, many: bool) -> None:
        if sql.lstrip().upper().startswith("UPDATE"):
            rows.append(len(params) if many else 1)

    event.listen(write_engine(services.engine).sync_engine, "before_cursor_execute", seen)
    try:
        await asyncio.gather(*(services.accounts.authenticate(token) for token in tokens))
        await services.accounts.flush_uses()
    finally:
        event.remove(write_engine(services.engine).sync_engine, "before_cursor_execute", seen)
    # The uses pending at a flush go in one statement (a round trip while the write lock
    # is held), not one statement per token.
    assert sum(rows) == 30
    assert len(rows) < 30 and max(rows) > 1
    for n in range(30):
        listed = await services.accounts.list_tokens(user_name=f"user{n}")
        assert listed.items[0].last_used_at is not None


async def test_user_names_are_validated_and_unique(services: Services) -> None:
    await services.accounts.create_user("dave", Role.admin)
    with pytest.raises(AlreadyExists):
        await services.accounts.create_user("dave")
    for bad in ("", "Dave", "-dave", "da ve", "x" * 65):
        with pytest.raises(InvalidInput) as info:
            await services.accounts.create_user(bad)
        assert info.value.field == "name"


async def test_a_session_lasts_until_logout_expiry_or_its_token_is_revoked(
    services: Services,
) -> None:
    accounts: Accounts = services.accounts
    await accounts.create_user("erin")
    record, token = await accounts.create_token("erin")
    caller = await accounts.authenticate(token)
    hour = timedelta(hours=1)

    logged_out = await accounts.open_session(caller, lifetime=hour)
    assert (await accounts.check_session(logged_out)) == caller
    await accounts.close_session(logged_out)
    await accounts.close_session(logged_out)  # idempotent
    expired = await accounts.open_session(caller, lifetime=timedelta(seconds=-1))
    revoked = await accounts.open_session(caller, lifetime=hour)
    await accounts.revoke_token(record.id)

    for session_id in (logged_out, expired, revoked, "not-a-session"):
        with pytest.raises(NotAuthenticated, match="log in again"):
            await accounts.check_session(session_id)


async def test_sessions_are_stored_hashed_and_ended_ones_are_dropped(services: Services) -> None:
    accounts: Accounts = services.accounts
    await accounts.create_user("frank")
    _, token = await accounts.create_token("frank")
    caller = await accounts.authenticate(token)
    ended = await accounts.open_session(caller, lifetime=timedelta(hours=1))
    await accounts.close_session(ended)

    live = await accounts.open_session(caller, lifetime=timedelta(hours=1))

    async with services.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT id FROM sessions"))).scalars().all()
    assert rows == [hash_token(live)]
    assert live not in repr(rows)
