"""A login session lives on the server: logging out ends it, even for a copy of the cookie."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text, update

from repodepot.accounts import hash_token
from repodepot.db.models import LoginSession
from repodepot.services import Services
from tests.conftest import ADMIN_TOKEN
from tests.support.websession import COOKIE, csrf_of, log_in, same_origin, session_data


@pytest.fixture
async def web(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def _replay(app: FastAPI, cookie: str) -> tuple[int, int, str]:
    """What a second browser holding a copy of `cookie` gets: /api/user, /repos, and where to
    or that it is logged out."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", cookies={COOKIE: cookie}
    ) as thief:
        api = await thief.get("/api/user")
        page = await thief.get("/repos")
    # Logged out, the page is the public list with a link to log in.
    logged_out = "login-link" if 'id="login-link"' in page.text else ""
    return api.status_code, page.status_code, page.headers.get("location", "") or logged_out


async def test_logging_out_ends_the_session_for_every_copy_of_the_cookie(
    web: httpx.AsyncClient, app: FastAPI
) -> None:
    token = await log_in(web, ADMIN_TOKEN)
    copied = web.cookies[COOKIE]
    assert await _replay(app, copied) == (200, 200, "")

    out = await web.post("/logout", data={"csrf_token": token}, headers=same_origin(web))

    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert await _replay(app, copied) == (401, 200, "login-link")


async def test_revoking_the_token_ends_its_sessions(
    web: httpx.AsyncClient, app: FastAPI, app_services: Services, admin_headers: dict[str, str]
) -> None:
    record, secret = await app_services.accounts.create_token("admin", "laptop")
    await log_in(web, secret)
    assert (await web.get("/api/user")).status_code == 200

    await app_services.accounts.revoke_token(record.id)

    assert (await web.get("/api/user")).status_code == 401
    assert (await web.get("/api/user", headers=admin_headers)).status_code == 200


async def test_an_expired_session_is_over(
    web: httpx.AsyncClient, app: FastAPI, app_services: Services
) -> None:
    await log_in(web, ADMIN_TOKEN)
    async with app_services.sessions.begin() as session:
        await session.execute(
            update(LoginSession).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )

    assert await _replay(app, web.cookies[COOKIE]) == (401, 200, "login-link")


async def test_the_cookie_names_a_session_the_database_keeps_only_hashed(
    web: httpx.AsyncClient, app_services: Services
) -> None:
    await log_in(web, ADMIN_TOKEN)

    data = session_data(web.cookies[COOKIE])
    session_id = data["sid"]
    assert isinstance(session_id, str) and len(session_id) >= 40
    assert ADMIN_TOKEN not in repr(data)
    async with app_services.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT * FROM sessions"))).all()
    assert session_id not in repr(rows)
    assert [row.id for row in rows] == [hash_token(session_id)]


async def test_a_new_login_ends_the_old_session_and_changes_the_token(
    web: httpx.AsyncClient, app: FastAPI
) -> None:
    before_login = csrf_of((await web.get("/login")).text)
    first = await log_in(web, ADMIN_TOKEN)
    first_cookie = web.cookies[COOKIE]
    second = await log_in(web, ADMIN_TOKEN)

    assert len({before_login, first, second}) == 3
    assert session_data(web.cookies[COOKIE])["sid"] != session_data(first_cookie)["sid"]
    assert (await _replay(app, first_cookie))[0] == 401
    assert (await web.get("/api/user")).status_code == 200
